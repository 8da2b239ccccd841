"""The example workflows: each ends in a video, and each has a canvas twin that is the same
workflow (same nodes, links and widget values). That they load and run in the pinned ComfyUI
is checked live (tests/comfyui/live, tests/browser/test_comfyui_page.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "workflows"
API = sorted(f for f in FOLDER.glob("*.json") if not f.name.endswith(".ui.json"))
# widget values the frontend adds after a widget (KSampler's "control after generate",
# LoadImage's upload button); not inputs of the prompt
EXTRA_WIDGET_VALUES = {"fixed", "increment", "decrement", "randomize", "image"}


def test_every_example_has_a_canvas_twin_and_nothing_else_is_there():
    assert {f.stem for f in API} >= {"sd15_animatediff_evolved", "two_anchors", "sdxl_hotshotxl"}
    twins = {f.name.removesuffix(".ui.json") for f in FOLDER.glob("*.ui.json")}
    assert twins == {f.stem for f in API}


@pytest.mark.parametrize("path", API, ids=lambda p: p.stem)
def test_every_example_ends_in_a_video_made_by_comfyuis_own_nodes(path):
    workflow = json.loads(path.read_text())
    kinds = {node["class_type"] for node in workflow.values()}
    assert not kinds & {"SaveImage", "PreviewImage"}, "a folder of frames is not a video"
    saves = [n for n in workflow.values() if n["class_type"] in ("SaveVideo", "SaveAnimatedWEBP")]
    assert len(saves) == 1
    save = saves[0]
    if save["class_type"] == "SaveVideo":
        source = workflow[save["inputs"]["video"][0]]
        assert source["class_type"] == "CreateVideo"
        decoded = workflow[source["inputs"]["images"][0]]
    else:
        decoded = workflow[save["inputs"]["images"][0]]
    assert decoded["class_type"] == "VAEDecode"


def links_of_api(workflow: dict) -> set[tuple[int, int, int, str]]:
    return {
        (int(value[0]), int(value[1]), int(node_id), name)
        for node_id, node in workflow.items()
        for name, value in node["inputs"].items()
        if isinstance(value, list)
    }


@pytest.mark.parametrize("path", API, ids=lambda p: p.stem)
def test_the_canvas_twin_is_the_same_workflow(path):
    workflow = json.loads(path.read_text())
    graph = json.loads(path.with_name(path.stem + ".ui.json").read_text())
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert {int(k): v["class_type"] for k, v in workflow.items()} == {
        i: n["type"] for i, n in nodes.items()
    }
    links = {link[0]: link for link in graph["links"]}
    ui_links = set()
    for node in graph["nodes"]:
        for slot, entry in enumerate(node["inputs"]):
            if entry.get("link") is not None:
                link = links[entry["link"]]
                assert (link[3], link[4]) == (node["id"], slot), link
                ui_links.add((link[1], link[2], node["id"], entry["name"]))
    assert ui_links == links_of_api(workflow)
    for node_id, node in workflow.items():
        ui = nodes[int(node_id)]
        names = [entry["name"] for entry in ui["inputs"] if "widget" in entry]
        values = list(ui.get("widgets_values") or [])
        paired = {}
        for name in names:
            paired[name] = values.pop(0)
            while values and values[0] in EXTRA_WIDGET_VALUES and name in ("seed", "image"):
                values.pop(0)
        assert not values, (node_id, values)
        widgets = {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}
        assert paired == widgets, (node_id, paired, widgets)
