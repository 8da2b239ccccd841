"""The nodes in the real ComfyUI page (opt-in: COMFYUI_UI_URL, headless Chromium).

Against the server of tests/comfyui/live/tools/SETUP.md (ComfyUI v0.12.1, its frontend
comfyui-frontend-package 1.37.11, AnimateDiff-Evolved, this pack, the random models):
every example's canvas twin loads with no missing node and queues its API twin; the node's
widgets show their hover hints; a bad ω queued from the page marks the node, with the field
and the message; a run queued from the page finishes and shows its video; the ω preview
node shows its picture. Writes the README's docs/images/comfyui_workflow.png.

    COMFYUI_UI_URL=http://127.0.0.1:8188 python -m pytest tests/browser/test_comfyui_page.py -v
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "comfyui" / "live"))
from comfyui_client import ComfyUI, png_bytes  # noqa: E402

pytestmark = pytest.mark.browser
EXAMPLES = sorted(f for f in (REPO / "workflows").glob("*.json") if not f.name.endswith(".ui.json"))
SD15 = REPO / "workflows" / "sd15_animatediff_evolved.ui.json"
RUN_TIMEOUT = float(os.environ.get("NR_BROWSER_GENERATION_TIMEOUT", "1200"))
SIZE, FRAMES = 64, 8


@pytest.fixture(scope="module")
def client(comfyui_url) -> ComfyUI:
    return ComfyUI(comfyui_url)


@pytest.fixture(scope="module")
def page(browser_context, comfyui_url, client):
    # the template gallery a first visit opens (and Escape does not close): as after a
    # user's first visit (app/app_settings.py, POST /settings/<id>)
    client._request(
        "/settings/Comfy.TutorialCompleted", b"true", {"Content-Type": "application/json"}
    )
    page = browser_context.new_page()
    page.goto(comfyui_url)
    page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=120_000)
    page.wait_for_timeout(1000)
    close_dialogs(page)
    yield page
    page.close()


def dialogs(page) -> list[str]:
    """The texts of the dialogs on screen (a missing-nodes warning would be one)."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('[role=dialog]'))
            .filter(e => e.offsetParent !== null).map(e => e.innerText)"""
    )


def close_dialogs(page) -> None:
    for _ in range(20):
        if not dialogs(page):
            return
        page.evaluate(  # the dialog's own close button (Escape does not close them all)
            """() => { for (const d of document.querySelectorAll('[role=dialog]')) {
                if (d.offsetParent === null) continue;
                const close = Array.from(d.querySelectorAll('button')).find(b =>
                    /close/i.test((b.getAttribute('aria-label') || '') + ' ' + b.className));
                if (close) close.click(); } }"""
        )
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)
    raise AssertionError(f"a dialog stays open: {[d[:200] for d in dialogs(page)]}")


def load(page, path: Path) -> list[str]:
    """Load a canvas workflow as dropping it does; the dialogs it opened (then closed)."""
    close_dialogs(page)
    page.evaluate(
        "async (graph) => { await window.app.loadGraphData(graph); }", json.loads(path.read_text())
    )
    page.wait_for_timeout(1000)
    opened = dialogs(page)
    close_dialogs(page)
    fit_view(page)
    return opened


def fit_view(page) -> None:
    """The whole graph in view: the frontend builds a node's DOM previews (the video) only
    for nodes on screen."""
    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    page.wait_for_timeout(500)


def set_widget(page, node: int, name: str, value) -> None:
    page.evaluate(
        """([node, name, value]) => {
            const w = window.app.graph.getNodeById(node).widgets.find(w => w.name === name);
            w.value = value; if (w.callback) w.callback(value);
        }""",
        [node, name, value],
    )


def queue(page) -> dict:
    """Queue from the page as the Run button does; the node errors the server answered."""
    return page.evaluate(
        "async () => { await window.app.queuePrompt(0, 1); return window.app.lastNodeErrors || {}; }"
    )


def for_this_server(page, client: ComfyUI) -> None:
    """The example's model files, picture, size, frames and steps -> this server's."""
    picture = Image.open(REPO / "bench" / "assets" / "sample.png").convert("RGB")
    pixels = np.asarray(picture.resize((SIZE, SIZE)), dtype=np.float32) / 255
    name = client.upload_png(png_bytes(pixels), "nr_browser_picture.png")
    set_widget(page, 1, "ckpt_name", "random-sd15.safetensors")
    listed = client.object_info("ADE_LoadAnimateDiffModel")["input"]["required"]["model_name"][0]
    motion = "mm_sd15_v3.safetensors" if "mm_sd15_v3.safetensors" in listed else listed[0]
    set_widget(page, 10, "model_name", motion)
    set_widget(page, 20, "image", name)
    set_widget(page, 21, "width", SIZE)
    set_widget(page, 21, "height", SIZE)
    set_widget(page, 30, "frames", FRAMES)
    set_widget(page, 40, "steps", 2)
    set_widget(page, 40, "seed", int(time.time()) % 100_000)  # a new run, not the server's cache


def wait_idle(page, client: ComfyUI) -> dict:
    """Wait until the server's queue is empty; the newest history entry."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        queue_state = json.loads(client._request("/queue"))
        if not queue_state["queue_running"] and not queue_state["queue_pending"]:
            history = json.loads(client._request("/history?max_items=1"))
            return next(iter(history.values()))
        page.wait_for_timeout(1000)
    raise TimeoutError(f"the prompt did not finish in {RUN_TIMEOUT} s")


def save_workflow_picture(page, path: Path) -> None:
    """A README picture: the whole workflow in a wider window, every node at its full size,
    fitted at a zoom where the canvas draws text."""
    viewport = page.viewport_size
    page.set_viewport_size({"width": 2200, "height": 1000})
    page.evaluate(
        """() => { for (const n of window.app.graph._nodes) {
            const want = n.computeSize();
            n.setSize([Math.max(n.size[0], want[0]), Math.max(n.size[1], want[1])]); } }"""
    )
    page.add_style_tag(
        content=".litegraph-minimap, [class*='minimap'] { display: none !important; }"
    )
    fit_view(page)
    page.mouse.move(1100, 990)
    page.wait_for_timeout(1500)
    shot = page.screenshot(clip={"x": 60, "y": 40, "width": 2140, "height": 960})
    page.set_viewport_size(viewport)
    Image.open(io.BytesIO(shot)).save(path, optimize=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_loads_without_missing_nodes_and_queues_its_api_twin(page, path):
    opened = load(page, path.with_name(path.stem + ".ui.json"))
    assert not [text for text in opened if "missing" in text.lower()], opened
    types = page.evaluate(
        "() => window.app.graph._nodes.map(n => [n.type, !!window.LiteGraph.registered_node_types[n.type]])"
    )
    assert types and all(known for _, known in types), types
    prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
    api = json.loads(path.read_text())
    assert {k: (v["class_type"], v["inputs"]) for k, v in prompt.items()} == {
        k: (v["class_type"], v["inputs"]) for k, v in api.items()
    }


def test_the_nodes_widgets_show_their_hover_hints(page, client):
    load(page, SD15)
    declared = client.object_info("NoiseRectification")["input"]
    hints = {
        name: spec[1].get("tooltip")
        for group in ("required", "optional")
        for name, spec in declared.get(group, {}).items()
        if len(spec) > 1 and isinstance(spec[1], dict)
    }
    names = page.evaluate("() => window.app.graph.getNodeById(30).widgets.map(w => w.name)")
    assert set(names) == {
        "frames",
        "omega",
        "tau_start_percent",
        "tau_end_percent",
        "reference_frame",
        "enabled",
    }
    for name in names:
        page.mouse.move(5, 5)
        page.wait_for_timeout(300)
        x, y = page.evaluate(
            """(name) => {
                const n = window.app.graph.getNodeById(30);
                const w = n.widgets.find(w => w.name === name);
                const at = [n.pos[0] + n.size[0] * 0.5, n.pos[1] + (w.last_y ?? w.y) + 10];
                const c = window.app.canvas.ds.convertOffsetToCanvas(at);
                const r = window.app.canvas.canvas.getBoundingClientRect();
                const scale = window.devicePixelRatio || 1;
                return [c[0] / scale + r.left, c[1] / scale + r.top];
            }""",
            name,
        )
        page.mouse.move(x, y)
        page.mouse.move(x + 2, y + 1)
        tooltip = page.wait_for_selector(".node-tooltip", state="visible", timeout=10_000)
        assert tooltip.inner_text().strip() == hints[name].strip(), name


def test_a_bad_omega_queued_from_the_page_marks_the_node_with_the_field_and_the_message(
    page, client
):
    load(page, SD15)
    for_this_server(page, client)
    set_widget(page, 30, "omega", "0.5, nan")
    errors = queue(page)
    assert set(errors) == {"30"}, errors
    omega = [e for e in errors["30"]["errors"] if e["extra_info"]["input_name"] == "omega"]
    assert omega and "omega = '0.5, nan' is invalid" in omega[0]["details"], errors
    assert page.evaluate("() => window.app.graph.getNodeById(30).has_errors") is True
    page.wait_for_function(
        "() => document.body.innerText.includes(\"omega = '0.5, nan' is invalid\")", timeout=10_000
    )
    close_dialogs(page)


def test_a_run_queued_from_the_page_finishes_and_shows_the_video(page, client, screenshot_dir):
    load(page, SD15)
    for_this_server(page, client)
    assert queue(page) == {}
    entry = wait_idle(page, client)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (video,) = entry["outputs"]["61"]["images"]
    assert video["filename"].endswith(".mp4")
    page.wait_for_function(
        """(name) => Array.from(document.querySelectorAll('video')).some(
            v => (v.currentSrc || v.src).includes(name) && v.readyState >= 1 && v.videoWidth > 0)""",
        arg=video["filename"],
        timeout=60_000,
    )
    size = page.evaluate(
        """(name) => { const v = Array.from(document.querySelectorAll('video')).find(
            v => (v.currentSrc || v.src).includes(name)); return [v.videoWidth, v.videoHeight, v.duration]; }""",
        video["filename"],
    )
    assert size[:2] == [SIZE, SIZE] and size[2] > 0, size
    # the README's picture: the whole workflow, its video shown in Save Video, at a zoom
    # where the canvas draws text (a wider window, fitted)
    save_workflow_picture(page, screenshot_dir / "comfyui_workflow.png")


def test_the_omega_preview_node_shows_its_picture(page, client):
    load(page, SD15)
    for_this_server(page, client)
    page.evaluate(
        """() => { const g = window.app.graph;
            const preview = window.LiteGraph.createNode('NoiseRectificationPreview');
            preview.pos = [1100, 420]; g.add(preview); preview.id === undefined;
            const show = window.LiteGraph.createNode('PreviewImage');
            show.pos = [1500, 420]; g.add(show); preview.connect(0, show, 0);
            window.nrPreview = [preview.id, show.id]; }"""
    )
    assert queue(page) == {}
    entry = wait_idle(page, client)
    assert entry["status"]["status_str"] == "success", entry["status"]
    show = str(page.evaluate("() => window.nrPreview[1]"))
    (picture,) = entry["outputs"][show]["images"]
    page.wait_for_function(
        """(id) => { const n = window.app.graph.getNodeById(id);
            return n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth > 0; }""",
        arg=int(show),
        timeout=60_000,
    )
    pixels = np.asarray(Image.open(io.BytesIO(client.view(picture))).convert("RGB"), dtype=int)
    orange = (pixels[..., 0] > 200) & (pixels[..., 1] > 100) & (pixels[..., 2] < 80)
    blue = (pixels[..., 2] > 200) & (pixels[..., 0] < 140)
    assert orange.any() and blue.any()  # the reference frame's bar and the others'


def test_the_wan_workflow_shows_the_node_between_the_model_and_the_sampler(page, screenshot_dir):
    """The README's Wan picture: the example as the real frontend draws it, the node fed by
    Load Image and the Wan VAE, between ModelSamplingSD3 and the KSampler."""
    opened = load(page, REPO / "workflows" / "wan21_t2v_1.3b.ui.json")
    assert not [text for text in opened if "missing" in text.lower()], opened
    links = page.evaluate(
        """() => { const g = window.app.graph, n = g.getNodeById(30);
            return n.inputs.filter(i => i.link != null).map(
                i => [i.name, g.getNodeById(g.links[i.link].origin_id).type]); }"""
    )
    assert sorted(links) == [
        ["image", "ImageScale"],
        ["model", "ModelSamplingSD3"],
        ["vae", "VAELoader"],
    ], links
    save_workflow_picture(page, screenshot_dir / "comfyui_wan_workflow.png")
