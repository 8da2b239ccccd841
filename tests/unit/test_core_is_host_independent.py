"""lib_rectify must never import the WebUI (modules, launch) or gradio, nor carry its forms.

lib_rectify_webui/args.py (the WebUI's forms of the settings) must not import them
either, so that it can be tested without a WebUI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"modules", "launch", "gradio"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_source_file_imports_the_host():
    files = sorted((ROOT / "lib_rectify").rglob("*.py"))
    assert files, "lib_rectify has no Python files"
    offenders = {str(f.relative_to(ROOT)): sorted(_imported_roots(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_the_core_loads_no_host_module():
    code = (
        "import sys, lib_rectify, lib_rectify.rectifier, lib_rectify.params;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r});"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_webui_args_import_no_host_module():
    assert not _imported_roots(ROOT / "lib_rectify_webui" / "args.py") & FORBIDDEN
    code = (
        "import sys, lib_rectify_webui.args;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r});"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_core_settings_carry_no_webui_form():
    """The ui() positional order, script-args slots and AnimateDiff hints are the WebUI's."""
    text = (ROOT / "lib_rectify" / "params.py").read_text(encoding="utf-8")
    for word in ("AnimateDiff", "positional", "script_args", "CUSTOM_OMEGA", "omega_preset"):
        assert word not in text, word
