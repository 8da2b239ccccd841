"""tests/live/tools/launch_webui.sh --background against a fake WebUI (no WebUI, no torch).

The real hazard (issue 24; SETUP.md section 4): with ``--ui``, WebUI v1.10.1 starts serving
at ``shared.demo.launch`` (webui.py:79) and only then adds the API's middleware
(webui.py:106-112). Any HTTP request in between makes starlette build the middleware stack
(applications.py:120-121), and the next ``add_middleware`` raises "Cannot add middleware after
an application has started" (applications.py:138-139): the WebUI exits. The fake below does
the same in a longer window, so a script that polls the port before the WebUI's
"Startup time:" line kills it every time; the launch script must not.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "live" / "tools" / "launch_webui.sh"

pytestmark = pytest.mark.skipif(
    os.name == "nt" or not all(shutil.which(tool) for tool in ("bash", "curl", "setsid")),
    reason="needs bash, curl and setsid (as launch_webui.sh does)",
)

# The fake WebUI's launch.py. Like webui.py with --ui: loads (FAKE_BEFORE s), starts serving,
# resets the middleware stack and takes FAKE_WINDOW s to add the API (a request meanwhile
# builds the stack, and adding the middleware then fails as in starlette), then prints
# "Startup time:". With --nowebui (webui.py api_only): prints "Startup time:" first and opens
# the port FAKE_AFTER s later. FAKE_DIE: exits with an error while loading. FAKE_NO_STARTUP:
# never finishes. FAKE_SELF_HIT: sends itself a request in the window (another client would).
FAKE_LAUNCH = r"""
import http.server, json, os, sys, threading, time, urllib.request

port = int(sys.argv[sys.argv.index("--port") + 1])
nowebui = "--nowebui" in sys.argv
env = lambda name, default: float(os.environ.get(name, default))
state = {"stack_built": False, "api": False}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        state["stack_built"] = True  # Starlette.__call__ builds the middleware stack
        print(f"request {self.path}", flush=True)
        if self.path == "/sdapi/v1/sd-models" and state["api"]:
            body = json.dumps([{"title": "random-sd15.safetensors"}]).encode()
            self.send_response(200)
        else:
            body = b'{"detail":"Not Found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


print("Launching Web UI with arguments: " + " ".join(sys.argv[1:]), flush=True)
time.sleep(env("FAKE_BEFORE", 0.5))
if os.environ.get("FAKE_DIE"):
    print("Traceback (most recent call last):\nRuntimeError: fake load failure", flush=True)
    sys.exit(3)
if nowebui:
    state["api"] = True
    print("Startup time: 0.5s (fake).", flush=True)
    time.sleep(env("FAKE_AFTER", 1.0))
    serve()
else:
    serve()
    print(f"Running on local URL:  http://127.0.0.1:{port}", flush=True)
    state["stack_built"] = False  # initialize_util.setup_middleware: middleware_stack = None
    if os.environ.get("FAKE_SELF_HIT"):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/")
        except Exception:
            pass
    time.sleep(env("FAKE_WINDOW", 1.5))
    if state["stack_built"]:  # create_api -> api_middleware -> add_middleware
        print("RuntimeError: Cannot add middleware after an application has started", flush=True)
        os._exit(1)
    state["api"] = True
    if os.environ.get("FAKE_NO_STARTUP"):
        time.sleep(3600)
    print("Startup time: 2.0s (fake).", flush=True)
while True:
    time.sleep(1)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_webui(tmp_path):
    """A folder that passes launch_webui.sh's checks, with the fake launch.py; stops what it
    started (by the PID the script wrote) afterwards."""
    webui = tmp_path / "webui"
    (webui / "venv" / "bin").mkdir(parents=True)
    (webui / "models" / "Stable-diffusion").mkdir(parents=True)
    (webui / "hf_home" / "hub").mkdir(parents=True)
    (webui / "models" / "Stable-diffusion" / "random-sd15.safetensors").write_bytes(b"")
    python = webui / "venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (webui / "launch.py").write_text(FAKE_LAUNCH)
    started: list[int] = []
    yield webui, started
    for pid_file in webui.glob("webui-*.pid"):
        try:
            started.append(int(pid_file.read_text()))
        except ValueError:
            pass
    for pid in started:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _launch(webui: Path, port: int, *args: str, **fake_env: str):
    env = {**os.environ, **fake_env}
    env.pop("WEBUI_DIR", None)
    return subprocess.run(
        ["bash", str(SCRIPT), "--webui", str(webui), "--port", str(port), "--background", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _pid(webui: Path, port: int) -> int:
    return int((webui / f"webui-{port}.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(path: Path, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def test_an_early_poll_kills_the_fake_as_it_kills_the_webui(fake_webui):
    """The fake is faithful: the old launch script's wait (curl the API once a second from the
    start) lands in the window and the 'WebUI' dies, as 1 of 5 real starts did."""
    webui, started = fake_webui
    port = _free_port()
    log = webui / "old.log"
    with open(log, "w") as out:
        fake = subprocess.Popen(
            [str(webui / "venv" / "bin" / "python"), "launch.py", "--port", str(port)],
            cwd=webui,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started.append(fake.pid)
    url = f"http://127.0.0.1:{port}/sdapi/v1/sd-models"
    curl = ["curl", "-sf", "--noproxy", "*", "-o", "/dev/null", url]
    for _ in range(30):  # the old script's wait: is it alive? does the API answer? sleep 1
        if fake.poll() is not None or subprocess.run(curl, timeout=30).returncode == 0:
            break
        time.sleep(1)
    assert fake.wait(timeout=10) == 1
    assert "Cannot add middleware after an application has started" in log.read_text()


def test_ui_start_sends_no_request_before_the_startup_line(fake_webui):
    webui, _ = fake_webui
    port = _free_port()
    result = _launch(webui, port, "--ui")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"WebUI answering on http://127.0.0.1:{port}" in result.stdout
    pid = _pid(webui, port)
    assert _alive(pid)
    lines = (webui / f"webui-{port}.log").read_text().splitlines()
    assert "Cannot add middleware" not in "\n".join(lines)
    startup = next(i for i, line in enumerate(lines) if line.startswith("Startup time: "))
    requests = [i for i, line in enumerate(lines) if line.startswith("request ")]
    assert requests and min(requests) > startup, lines
    # and an immediate request after the script returns is answered
    out = subprocess.run(
        ["curl", "-sf", "--noproxy", "*", f"http://127.0.0.1:{port}/sdapi/v1/sd-models"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "random-sd15" in out.stdout
    os.kill(pid, signal.SIGTERM)
    assert _wait_gone(webui / f"webui-{port}.pid")


def test_api_only_start_waits_for_the_port_after_the_startup_line(fake_webui):
    webui, _ = fake_webui
    port = _free_port()
    result = _launch(webui, port, FAKE_AFTER="1.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _alive(_pid(webui, port))
    assert "Startup time" in result.stdout


def test_a_webui_that_dies_while_starting_is_reported(fake_webui):
    webui, _ = fake_webui
    port = _free_port()
    result = _launch(webui, port, "--ui", FAKE_DIE="1")
    assert result.returncode == 1
    assert "WebUI exited after" in result.stderr
    assert "fake load failure" in result.stderr  # the log's tail
    assert "something else sent it a request" not in result.stderr
    assert _wait_gone(webui / f"webui-{port}.pid")


def test_a_crash_from_another_clients_early_request_is_named(fake_webui):
    webui, _ = fake_webui
    port = _free_port()
    result = _launch(webui, port, "--ui", FAKE_SELF_HIT="1")
    assert result.returncode == 1
    assert "Cannot add middleware after an application has started" in result.stderr
    assert "something else sent it a request while it was still starting" in result.stderr


def test_a_webui_that_never_finishes_starting_times_out_and_is_left_running(fake_webui):
    webui, _ = fake_webui
    port = _free_port()
    result = _launch(webui, port, "--ui", "--timeout", "2", FAKE_NO_STARTUP="1")
    assert result.returncode == 1
    assert 'no "Startup time:" line' in result.stderr
    assert "after 2 s" in result.stderr
    assert _alive(_pid(webui, port))


def test_timeout_takes_whole_seconds(fake_webui):
    webui, _ = fake_webui
    result = _launch(webui, _free_port(), "--timeout", "soon")
    assert result.returncode == 2
    assert "--timeout takes whole seconds" in result.stderr
