"""ComfyUI nodes for noise rectification, beside ComfyUI-AnimateDiff-Evolved.

``nodes.py`` declares the nodes, ``patch.py`` is what a node puts on its MODEL clone
(a sampling wrapper and a post-CFG function), ``samplers.py`` knows how each ComfyUI
sampler walks its schedule. The maths is ``lib_rectify``'s; nothing here imports
ComfyUI, so it is tested with plain pytest against a fake of ComfyUI's sampling path.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
