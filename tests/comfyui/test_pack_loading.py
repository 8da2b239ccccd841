"""The repository loaded as a node pack, the way ComfyUI v0.12.1 loads one.

``load_custom_node`` (nodes.py:2196-2252 at 3be0175) imports ``custom_nodes/<folder>`` with
``importlib.util.spec_from_file_location(<path with '.' as '_x_'>, <path>/__init__.py)``,
puts the module in ``sys.modules`` under that name, runs it, and reads ``WEB_DIRECTORY``,
``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS`` with ``hasattr``/``getattr``
(``comfy_entrypoint`` only without mappings). Done here in a fresh interpreter, beside a
planted module named ``scripts``: loading the pack must not make this repository's own
``scripts``, ``tests``, ``bench`` or ``docs`` folders importable under those bare names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOAD_LIKE_COMFYUI = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    module_path = sys.argv[1]
    sys_module_name = module_path.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(
        sys_module_name, os.path.join(module_path, "__init__.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[sys_module_name] = module
    spec.loader.exec_module(module)
    report = {"torch_after_import": "torch" in sys.modules, "sys_path": list(sys.path)}
    report["web_directory"] = hasattr(module, "WEB_DIRECTORY")
    if sys.argv[2] == "nodes":
        assert hasattr(module, "NODE_CLASS_MAPPINGS") and module.NODE_CLASS_MAPPINGS is not None
        report["nodes"] = sorted(module.NODE_CLASS_MAPPINGS)
        report["names"] = sorted(module.NODE_DISPLAY_NAME_MAPPINGS)
        import lib_rectify, lib_rectify_comfyui
        report["core"] = lib_rectify.__file__
        report["glue"] = lib_rectify_comfyui.__file__
    import scripts
    report["scripts"] = scripts.__file__
    for name in ("tests", "bench", "docs"):
        try:
            report[name] = getattr(importlib.import_module(name), "__file__", None) or "namespace"
        except ImportError:
            report[name] = None
    print(json.dumps(report))
    """
)


def load(tmp_path: Path, what: str) -> dict:
    planted = tmp_path / "planted"
    planted.mkdir(exist_ok=True)
    (planted / "scripts.py").write_text("WHO = 'the planted module'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(planted)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_LIKE_COMFYUI, str(ROOT), what],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: ComfyUI runs from its own folder
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_comfyui_finds_the_nodes_and_the_planted_scripts_module_stays_the_one_imported(tmp_path):
    report = load(tmp_path, "nodes")
    assert {"NoiseRectification", "NoiseRectificationPreview"} <= set(report["nodes"])
    assert set(report["names"]) == set(report["nodes"])
    assert report["core"].startswith(str(ROOT / "lib_rectify"))
    assert report["glue"].startswith(str(ROOT / "lib_rectify_comfyui"))
    assert report["scripts"] == str(tmp_path / "planted" / "scripts.py")
    assert report["tests"] is None and report["bench"] is None and report["docs"] is None
    assert str(ROOT) not in report["sys_path"]
    assert report["web_directory"] is False


def test_importing_the_pack_needs_nothing(tmp_path):
    """pytest imports the checkout's root ``__init__.py`` (a package to pytest 8+) from
    whatever Python runs the opt-in suites: importing it must not pull in torch."""
    report = load(tmp_path, "import only")
    assert report["torch_after_import"] is False
    assert report["scripts"] == str(tmp_path / "planted" / "scripts.py")
    assert str(ROOT) not in report["sys_path"]


def test_the_pack_carries_the_license_and_the_comfy_registry_metadata():
    """What the Registry's publishing checks read (comfy-cli comfy_cli/registry/
    config_parser.py extract_node_configuration, api.py publish_node_version): the name,
    a version X.Y.Z, PublisherId; DisplayName, Icon, the repository; the license."""
    import re

    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project, comfy = config["project"], config["tool"]["comfy"]
    # the node id: letters, digits, - _ . without two in a row, not starting with either
    assert re.fullmatch(r"[A-Za-z](?:[A-Za-z0-9]|[-_.](?=[A-Za-z0-9]))*", project["name"])
    assert len(project["name"]) < 100 and "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"])
    assert comfy["DisplayName"] == "Noise Rectification (image to video)"
    assert project["urls"]["Repository"].startswith("https://github.com/")
    assert comfy["Icon"].endswith("/docs/images/icon.png")
    assert (ROOT / "docs" / "images" / "icon.png").is_file()
    assert re.fullmatch(r">=\d+\.\d+\.\d+", comfy["requires-comfyui"])
    assert project["license"] == {"text": "MIT"}
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n")
    assert "Copyright (c) 2026 sd-webui-noise-rectification contributors" in license_text


def test_comfyui_managers_run_of_install_py_does_nothing(tmp_path):
    """ComfyUI-Manager runs ``python install.py`` in the pack's folder after a clone
    (glob/manager_core.py execute_install_script); install.py is the WebUI's, which imports
    the WebUI's ``launch``: without it, it must exit cleanly."""
    result = subprocess.run(
        [sys.executable, "install.py"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
