"""Opt-in: runs only when SD_WEBUI_URL names a running WebUI with AnimateDiff and this extension
(the SDXL tests: SD_WEBUI_SDXL_URL, see test_live_sdxl.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from webui_client import WebUI  # noqa: E402

URL = os.environ.get("SD_WEBUI_URL", "")


def pytest_collection_modifyitems(config, items):
    if URL:
        return
    skip = pytest.mark.skip(
        reason="set SD_WEBUI_URL to a running WebUI (see tests/live/tools/SETUP.md)"
    )
    for item in items:  # the SDXL tests have their own server and switch (SD_WEBUI_SDXL_URL)
        if "webui" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def webui() -> WebUI:
    client = WebUI(URL)
    scripts = client.get("/sdapi/v1/scripts")
    assert "noise rectification" in scripts["img2img"], "this extension is not loaded in the WebUI"
    assert "animatediff" in scripts["img2img"], "sd-webui-animatediff is not loaded in the WebUI"
    return client
