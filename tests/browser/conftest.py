"""Opt-in browser suite: the WebUI tests run only when SD_WEBUI_UI_URL names a running WebUI
served WITH its UI, the ComfyUI tests (test_comfyui_*.py) only when COMFYUI_UI_URL names a
running ComfyUI (its frontend is always served).

Start one with ``tests/live/tools/launch_webui.sh --ui --port 7862 --background`` (see
tests/live/tools/SETUP.md), then ``SD_WEBUI_UI_URL=http://127.0.0.1:7862 pytest tests/browser``;
for ComfyUI see tests/comfyui/live/tools/SETUP.md, then
``COMFYUI_UI_URL=http://127.0.0.1:8188 pytest tests/browser``.
Drives a headless Chromium that is already installed (Debian's ``chromium``; override the
path with CHROMIUM_PATH) through Playwright's Python package. Never downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

URL = os.environ.get("SD_WEBUI_UI_URL", "").rstrip("/")
COMFYUI_URL = os.environ.get("COMFYUI_UI_URL", "").rstrip("/")
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# Where the README's pictures go; the suite rewrites them on every run so they match the code.
SCREENSHOTS = Path(os.environ.get("NR_SCREENSHOT_DIR") or REPO / "docs" / "images")
# The machine may have no network: keep Chromium from calling home (and being refused).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config, items):
    skip_webui = pytest.mark.skip(
        reason="set SD_WEBUI_UI_URL to a WebUI started with its UI (launch_webui.sh --ui; see tests/live/tools/SETUP.md)"
    )
    skip_comfyui = pytest.mark.skip(
        reason="set COMFYUI_UI_URL to a running ComfyUI (see tests/comfyui/live/tools/SETUP.md)"
    )
    for item in items:
        path = str(item.fspath).replace("\\", "/")
        if "tests/browser" not in path:
            continue
        if Path(path).name.startswith("test_comfyui"):
            if not COMFYUI_URL:
                item.add_marker(skip_comfyui)
        elif not URL:
            item.add_marker(skip_webui)


@pytest.fixture(scope="session")
def browser_context() -> Iterator[object]:
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no `playwright install`)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)")
    profile = tempfile.mkdtemp(prefix="nr-chromium-")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1100},
            device_scale_factor=1,
            color_scheme="light",
            accept_downloads=True,
        )
        context.set_default_timeout(60_000)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def ui_url() -> str:
    return URL


@pytest.fixture(scope="session")
def comfyui_url() -> str:
    return COMFYUI_URL


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives headless Chromium against a WebUI or ComfyUI page"
    )
