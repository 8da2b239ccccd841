"""The opt-in suites run from a plain Python with pytest, numpy and Pillow (no torch).

README and both SETUP.md guides say so: the live suites (``tests/live``,
``tests/comfyui/live``) and the browser suite (``tests/browser``) talk to a server over HTTP
and need nothing of the project's own stack. pytest 8+ collects the checkout's root as a
package and imports its ``__init__.py`` (the ComfyUI entry point), so that file, and every
conftest and test module of these suites, must import without torch.

A venv with only ``pytest numpy pillow`` (built once, kept under the temp folder) runs the
three suites three times: with no server named, everything skips; with every server
variable pointing at a closed port, every test fails on the connection or skips, none on an
import; and against a stub that passes the suites' session checks (it lists the extension,
AnimateDiff and the nodes) and answers everything else with HTTP 500, so that each test's
own fixtures and code run up to their first real request: none may fail on an import.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITES = ["tests/live", "tests/browser", "tests/comfyui/live"]
SERVER_VARIABLES = [
    "SD_WEBUI_URL",
    "SD_WEBUI_SDXL_URL",
    "SD_WEBUI_UI_URL",
    "COMFYUI_URL",
    "COMFYUI_UI_URL",
]
PLAIN = Path(tempfile.gettempdir()) / (
    f"nr-plain-python-{sys.version_info.major}.{sys.version_info.minor}"
)


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _works(python: Path) -> bool:
    probe = "import pytest, numpy, PIL\ntry:\n import torch\nexcept ImportError:\n pass\nelse:\n raise SystemExit(3)"
    return python.exists() and subprocess.run([str(python), "-c", probe]).returncode == 0


@pytest.fixture(scope="module")
def plain_python() -> Path:
    python = _python(PLAIN)
    if _works(python):
        return python
    # built where it stays (a venv's scripts name their folder); --clear redoes a broken one
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PLAIN)], check=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "pytest", "numpy", "pillow"],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert _works(python), "the plain venv has torch, or lacks pytest/numpy/Pillow"
    return python


def _run_suites(python: Path, tmp_path: Path, env_extra: dict[str, str]) -> tuple[int, str, list]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES and k != "PYTHONPATH"}
    env.update(env_extra)
    junit = tmp_path / "junit.xml"
    command = [str(python), "-m", "pytest", *SUITES, "-p", "no:cacheprovider", "-q"]
    result = subprocess.run(
        [*command, f"--junitxml={junit}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    cases = list(ET.parse(junit).getroot().iter("testcase")) if junit.exists() else []
    return result.returncode, result.stdout + result.stderr, cases


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_a_server_every_opt_in_test_skips(plain_python, tmp_path):
    code, output, cases = _run_suites(plain_python, tmp_path, {})
    assert code == 0, output
    assert len(cases) > 50, output
    assert all(case.find("skipped") is not None for case in cases), output


def test_against_an_absent_server_every_test_fails_on_the_connection_or_skips(
    plain_python, tmp_path
):
    url = f"http://127.0.0.1:{_closed_port()}"
    code, output, cases = _run_suites(
        plain_python, tmp_path, {name: url for name in SERVER_VARIABLES}
    )
    assert code == 1, output  # tests failed; 2 or more: collection or usage errors
    assert len(cases) > 50, output
    wrong = []
    for case in cases:
        for problem in [*case.iter("failure"), *case.iter("error")]:
            text = (problem.get("message") or "") + (problem.text or "")
            if "ImportError" in text or "ModuleNotFoundError" in text or "refused" not in text:
                wrong.append(f"{case.get('classname')}::{case.get('name')}: {text[-400:]}")
    assert wrong == [], "\n\n".join(wrong[:5])
    assert any(case.find("skipped") is None for case in cases)  # the connection was tried


class _Stub(BaseHTTPRequestHandler):
    """Enough for the suites' session and module fixtures (tests/live/conftest.py reads
    /sdapi/v1/scripts; tests/comfyui/live: /object_info/NoiseRectification, and uploads its
    pictures); HTTP 500 otherwise."""

    ANSWERS = {  # noqa: RUF012
        "/sdapi/v1/scripts": {"img2img": ["noise rectification", "animatediff"], "txt2img": []},
        "/object_info/NoiseRectification": {"NoiseRectification": {"input": {}}},
        "/upload/image": {"name": "stub.png", "subfolder": "", "type": "input"},
    }

    def _answer(self) -> None:
        body = self.ANSWERS.get(self.path.split("?")[0])
        payload = json.dumps(body if body is not None else {"error": "stub"}).encode()
        self.send_response(200 if body is not None else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


def test_against_a_stub_server_no_test_fails_on_an_import(plain_python, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, output, cases = _run_suites(
            plain_python, tmp_path, {name: url for name in SERVER_VARIABLES}
        )
    finally:
        server.shutdown()
        server.server_close()
    assert code in (0, 1), output
    assert len(cases) > 50, output
    wrong = []
    for case in cases:
        for problem in [*case.iter("failure"), *case.iter("error")]:
            text = (problem.get("message") or "") + (problem.text or "")
            if "ImportError" in text or "ModuleNotFoundError" in text:
                wrong.append(f"{case.get('classname')}::{case.get('name')}: {text[-400:]}")
    assert wrong == [], "\n\n".join(wrong[:5])
