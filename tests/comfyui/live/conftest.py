"""Opt-in live suite: a running ComfyUI with AnimateDiff-Evolved and the random models of
tests/comfyui/live/tools/SETUP.md, named by COMFYUI_URL (skipped otherwise)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from comfyui_client import ComfyUI  # noqa: E402


@pytest.fixture(scope="session")
def comfyui() -> ComfyUI:
    url = os.environ.get("COMFYUI_URL")
    if not url:
        pytest.skip("set COMFYUI_URL to a running ComfyUI (tests/comfyui/live/tools/SETUP.md)")
    client = ComfyUI(url)
    try:
        client.object_info("NoiseRectification")
    except Exception as error:  # the node pack is not loaded: say so rather than skip
        pytest.fail(f"{url} has no NoiseRectification node ({error}); see SETUP.md")
    return client
