"""ComfyUI entry point: ComfyUI imports this folder as a package from custom_nodes/.

Cloned into ``ComfyUI/custom_nodes/``, this repository is a ComfyUI node pack; the
same folder is an AUTOMATIC1111 WebUI extension (which reads ``scripts/`` and never
imports this file) and a pip package (``lib_rectify``, ``lib_rectify_diffusers``).
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # the packages import each other by their top-level names
    sys.path.insert(0, _HERE)

from lib_rectify_comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
