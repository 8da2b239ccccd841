"""What the glue reads from sd-webui-animatediff, and the one thing it undoes for it.

Checked against sd-webui-animatediff a88e889 (2024-09-21) in WebUI v1.10.1:
- Its single script argument is an ``AnimateDiffProcess`` (UI) or, over the API, a dict
  that its ``before_process`` converts in place (scripts/animatediff_utils.py:29-46).
- ``before_process`` can stop half-way: over the API, any ControlNet unit makes
  ``get_controlnet_units`` raise (animatediff_utils.py:48-71, called from
  animatediff_ui.py:175), as does an enabled UI unit without its own image. The motion
  module is in and ``p.batch_size`` set, but its prompt scheduler, infotext, context
  windows (animatediff_infv2v.py:98-175) and the removal of the motion module in
  ``postprocess`` are skipped. A completed setup always makes a new prompt scheduler
  (animatediff.py:66), which is how the glue tells the two apart.
- ``before_process`` injects the motion module into the UNet and swaps the model's
  ᾱ table (scripts/animatediff.py:62-71, animatediff_mm.py:62-115); only its
  ``postprocess`` takes them out again (animatediff.py:92-96). When a job raises, the
  WebUI skips every ``postprocess`` (modules/processing.py:819-860), so the motion
  layers stay in the UNet and the next txt2img job (whose AnimateDiff script instance
  is a different one, with nothing to restore) runs with them. When a rectified job
  fails or is refused, the glue calls AnimateDiff's own ``restore``.
"""

from __future__ import annotations

import sys
from typing import Any

TITLE = "animatediff"


def script_of(p: Any) -> Any:
    """AnimateDiff's script object on this job, or None."""
    for script in getattr(getattr(p, "scripts", None), "alwayson_scripts", None) or []:
        if script.title().lower() == TITLE:
            return script
    return None


def args_of(p: Any) -> Any:
    """AnimateDiff's single argument on this job (``AnimateDiffProcess`` or API dict)."""
    script = script_of(p)
    return None if script is None else p.script_args[script.args_from]


def arg(args: Any, name: str, default: Any = None) -> Any:
    return args.get(name, default) if isinstance(args, dict) else getattr(args, name, default)


#: Attribute on the job: AnimateDiff's prompt scheduler before its ``before_process``.
_SCHEDULER_BEFORE = "_noise_rectification_animatediff_scheduler"


def remember_setup_state(p: Any) -> None:
    """In ``setup`` (before every ``before_process``): what a completed setup must replace."""
    p.__dict__[_SCHEDULER_BEFORE] = arg(args_of(p), "prompt_scheduler", None)


def setup_completed(p: Any) -> bool:
    """After AnimateDiff's ``before_process``: did it run to the end for this job?"""
    scheduler = arg(args_of(p), "prompt_scheduler", None)
    return scheduler is not None and scheduler is not p.__dict__.get(_SCHEDULER_BEFORE)


def _motion_module() -> Any:
    """AnimateDiff's process-wide ``AnimateDiffMM`` (scripts/animatediff_mm.py:215)."""
    for name, module in list(sys.modules.items()):
        if name.endswith("animatediff_mm") and hasattr(module, "mm_animatediff"):
            return module.mm_animatediff
    return None


def undo_injection(p: Any) -> bool:
    """Take AnimateDiff's motion module out of the UNet if a failed job left it in.

    Returns True when something was restored. Safe to call at any time: AnimateDiff's
    ``restore`` does nothing unless its module is injected.
    """
    motion_module = _motion_module()
    if motion_module is None or not getattr(type(motion_module), "mm_injected", False):
        return False
    motion_module.restore(p.sd_model)
    script = script_of(p)
    if script is not None and hasattr(script, "hacked"):
        script.hacked = False
    return True
