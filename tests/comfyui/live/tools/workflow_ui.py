#!/usr/bin/env python3
"""Write the canvas (UI-format) twin of an API-format example workflow.

    python3 tests/comfyui/live/tools/workflow_ui.py --url http://127.0.0.1:8188 workflows/*.json

For each ``NAME.json`` (API format: node id -> class_type and inputs) it writes
``NAME.ui.json``: the same nodes, ids, links and widget values in the litegraph format the
ComfyUI frontend saves (version 0.4), laid out in columns by the longest path from the
loaders. The widget order and the output slots come from the server's ``/object_info``
(standard library only; any Python 3). The frontend fills in what it needs on load;
``tests/browser/test_comfyui_page.py`` loads every twin in the real page and checks that it
queues the same prompt as its API file.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
COLUMN_WIDTH, ROW_GAP = 380, 30
WIDE = {"NoiseRectification": 340, "CLIPTextEncode": 320, "ADE_UseEvolvedSampling": 320}
TALL = {"LoadImage": 320, "SaveVideo": 300, "PreviewImage": 260, "CLIPTextEncode": 60}


def object_info(url: str, classes: set[str]) -> dict:
    info = {}
    for name in sorted(classes):
        with urllib.request.urlopen(f"{url.rstrip('/')}/object_info/{name}") as answer:
            info[name] = json.loads(answer.read())[name]
    return info


def is_widget(spec: list) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def inputs_in_order(info: dict) -> list[tuple[str, list, bool]]:
    """(name, spec, optional) in the order the frontend makes slots and widgets."""
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items()}
    out = []
    for group in ("required", "optional"):
        for name in order.get(group, []):
            out.append((name, info["input"][group][name], group == "optional"))
    return out


def depth_of(workflow: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(node_id: str) -> int:
        if node_id not in depth:
            links = [v for v in workflow[node_id]["inputs"].values() if isinstance(v, list)]
            depth[node_id] = 1 + max((visit(str(v[0])) for v in links), default=-1)
        return depth[node_id]

    for node_id in workflow:
        visit(node_id)
    return depth


def to_ui(workflow: dict, info: dict, layout: dict | None = None) -> dict:
    """``layout``: node id -> (pos, size) to keep (``--layout``); the rest in columns below."""
    layout = layout or {}
    below = max((p[1] + z[1] for p, z in layout.values()), default=-ROW_GAP) + ROW_GAP
    depth = depth_of(workflow)
    links: list[list] = []
    nodes: list[dict] = []
    out_links: dict[tuple[str, int], list[int]] = {}
    link_of: dict[tuple[str, str], int] = {}
    for node_id, node in workflow.items():  # links first: the outputs list them
        slot = 0
        for name, spec, _ in inputs_in_order(info[node["class_type"]]):
            if is_widget(spec):
                continue
            value = node["inputs"].get(name)
            if isinstance(value, list):
                source, source_slot = str(value[0]), int(value[1])
                kind = info[workflow[source]["class_type"]]["output"][source_slot]
                link = [len(links) + 1, int(source), source_slot, int(node_id), slot, kind]
                links.append(link)
                link_of[(node_id, name)] = link[0]
                out_links.setdefault((source, source_slot), []).append(link[0])
            slot += 1
    columns: dict[int, float] = {}
    order = sorted(workflow, key=lambda n: (depth[n], int(n)))
    for position, node_id in enumerate(order):
        node = workflow[node_id]
        spec = info[node["class_type"]]
        inputs, widgets_values = [], []
        widget_count = 0
        for name, input_spec, optional in inputs_in_order(spec):
            value = node["inputs"].get(name)
            entry = {"name": name, "localized_name": name}
            if is_widget(input_spec):
                kind = "COMBO" if isinstance(input_spec[0], list) else input_spec[0]
                entry.update(type=kind, widget={"name": name}, link=None)
                widgets_values.append(value)
                widget_count += 1
                options = input_spec[1] if len(input_spec) > 1 else {}
                if options.get("control_after_generate"):
                    widgets_values.append("fixed")
                    widget_count += 1
                if name == "image" and options.get("image_upload"):
                    widgets_values.append("image")
            else:
                entry.update(type=input_spec[0], link=link_of.get((node_id, name)))
                if optional:
                    entry["shape"] = 7
            inputs.append(entry)
        inputs.sort(key=lambda entry: "widget" in entry)  # sockets first, as the frontend saves
        outputs = [
            {
                "name": (spec.get("output_name") or spec["output"])[i],
                "localized_name": (spec.get("output_name") or spec["output"])[i],
                "type": kind,
                "links": out_links.get((node_id, i)) or None,
            }
            for i, kind in enumerate(spec["output"])
        ]
        links_in = sum(1 for e in inputs if "widget" not in e)
        height = 46 + 22 * max(links_in, len(outputs)) + 24 * widget_count
        height += TALL.get(node["class_type"], 0)
        width = WIDE.get(node["class_type"], 290)
        column = depth[node_id]
        if int(node_id) in layout:
            pos, (width, height) = layout[int(node_id)]
        else:
            y = columns.get(column, float(below))
            columns[column] = y + height + ROW_GAP
            pos = [column * COLUMN_WIDTH, y]
        nodes.append(
            {
                "id": int(node_id),
                "type": node["class_type"],
                "pos": list(pos),
                "size": [width, height],
                "flags": {},
                "order": position,
                "mode": 0,
                "inputs": inputs,
                "outputs": outputs,
                "properties": {"Node name for S&R": node["class_type"]},
                "widgets_values": widgets_values,
            }
        )
    return {
        "id": "00000000-0000-0000-0000-000000000000",
        "revision": 0,
        "last_node_id": max(int(n) for n in workflow),
        "last_link_id": len(links),
        "nodes": sorted(nodes, key=lambda n: n["id"]),
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.7, "offset": [40, 40]}},
        "version": 0.4,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8188", help="a running ComfyUI")
    parser.add_argument(
        "--layout", type=Path, help="a .ui.json whose node positions (by id) are kept"
    )
    parser.add_argument("workflows", nargs="+", type=Path, help="API-format .json files")
    args = parser.parse_args(argv)
    layout = {}
    if args.layout:
        for node in json.loads(args.layout.read_text())["nodes"]:
            layout[node["id"]] = (node["pos"], node["size"])
    for path in args.workflows:
        if path.name.endswith(".ui.json"):
            continue
        workflow = json.loads(path.read_text())
        info = object_info(args.url, {n["class_type"] for n in workflow.values()})
        out = path.with_name(path.stem + ".ui.json")
        out.write_text(json.dumps(to_ui(workflow, info, layout), indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
