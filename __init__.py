"""ComfyUI entry point: ComfyUI imports this folder as a package from custom_nodes/.

Cloned into ``ComfyUI/custom_nodes/``, this repository is a ComfyUI node pack; the
same folder is an AUTOMATIC1111 WebUI extension (which reads ``scripts/`` and never
imports this file) and a pip package (``lib_rectify``, ``lib_rectify_diffusers``).

ComfyUI v0.12.1 imports this file under its full path as module name and then reads
``NODE_CLASS_MAPPINGS`` (and ``NODE_DISPLAY_NAME_MAPPINGS``) with ``hasattr``/``getattr``
(nodes.py:2196-2252). Both are resolved on first access (PEP 562), so importing this file
needs nothing: pytest imports it too (the checkout's root is a package to pytest 8+,
whose ``Package.setup`` imports its ``__init__.py``), from a Python that may have no torch.

The nodes import the core by its top-level name (``import lib_rectify``). This folder is
NOT put on ``sys.path``: that would make every folder here (``scripts``, ``tests``,
``bench``, ``docs``) importable under its bare name, shadowing other node packs' or
libraries' modules. A finder on ``sys.meta_path`` answers for this pack's own two
top-level packages, from this folder, and for nothing else.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGES = ("lib_rectify", "lib_rectify_comfyui")
_EXPORTS = ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS")

__all__ = list(_EXPORTS)


class _PackFinder(importlib.abc.MetaPathFinder):
    """Finds ``lib_rectify`` and ``lib_rectify_comfyui`` (and their submodules, through
    their ``__path__``) in this folder; every other name is left to the other finders."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _PACKAGES:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.folder])


def _install_finder() -> None:
    for finder in sys.meta_path:  # once per folder, also when ComfyUI imports this file again
        if type(finder).__name__ == "_PackFinder" and getattr(finder, "folder", None) == _HERE:
            return
    sys.meta_path.insert(0, _PackFinder(_HERE))


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _install_finder()
    nodes = importlib.import_module("lib_rectify_comfyui")
    for export in _EXPORTS:
        globals()[export] = getattr(nodes, export)
    return globals()[name]
