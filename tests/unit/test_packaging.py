"""The wheel: the core and the diffusers adapter, installable without the WebUI.

Builds the wheel from this checkout (setuptools, no build isolation: nothing fetched),
checks what it holds and declares, installs it into an empty folder and imports the
adapter from there in a fresh interpreter whose working folder is not the checkout.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("setuptools")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # a copy of the checkout, so the build's own folders never land in it
    source = build / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", "*.egg-info"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        cwd=build,
        env={"PIP_NO_INDEX": "1", "PATH": "", "HOME": str(build)},
    )
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_holds_the_core_and_the_adapter_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"lib_rectify", "lib_rectify_diffusers"}
    for module in ("params", "rectifier", "noise_math", "schedule", "layout", "weights", "window"):
        assert f"lib_rectify/{module}.py" in names
    for module in ("__init__", "hook", "pipeline", "schedulers"):
        assert f"lib_rectify_diffusers/{module}.py" in names


def test_the_wheel_declares_the_diffusers_extra(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_string(z.read(meta_name).decode())
    assert meta["Name"] == "sd-webui-noise-rectification"
    assert "diffusers" in meta.get_all("Provides-Extra")
    requires = meta.get_all("Requires-Dist")
    plain = [r for r in requires if "extra ==" not in r]
    assert {r.split(">")[0].split("=")[0].strip() for r in plain} == {"torch", "numpy", "einops"}
    extra = [r for r in requires if 'extra == "diffusers"' in r]
    assert any(r.startswith("diffusers") for r in extra)
    assert any(r.startswith("transformers") for r in extra)
    assert not any("gradio" in r for r in requires)


def test_the_installed_wheel_imports_without_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    code = (
        "import sys, lib_rectify, lib_rectify_diffusers as d; "
        "assert lib_rectify.__file__.startswith(sys.argv[1]), lib_rectify.__file__; "
        "assert 'modules' not in sys.modules and 'gradio' not in sys.modules; "
        "print('DDIMScheduler' in d.SCHEDULERS, 'LTXPipeline' in d.PIPELINES, "
        "d.RectifyParams(enabled=True).tau)"
    )
    env_path = str(target)
    result = subprocess.run(
        [sys.executable, "-c", code, env_path],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": env_path, "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True (0.0, 0.6)"
