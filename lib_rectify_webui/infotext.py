"""This extension's infotext entries and comments, kept per job.

WebUI v1.10.1's XYZ plot runs each cell on a shallow ``copy(p)`` (scripts/xyz_grid.py:
707-715), so until a cell finishes, its ``extra_generation_params`` and ``comments`` are
the *same* dicts as every other cell's. Writing into them would leak one cell's
settings and notes into the next cell's image. Every job therefore first drops entries
of ours it inherited, and writes only into dicts of its own.
"""

from __future__ import annotations

from typing import Any

from lib_rectify import FIELDS, VERSION_INFOTEXT_KEY

INIT_KEY = "NR init"
INIT_NOTE = "image latent repeated over the frames (AnimateDiff latent blending off)"
INIT_NOTE_TWO = "image latent blended linearly into the end picture's over the frames"
END_KEY = "NR end picture"  # where the end picture came from; the picture is not in it
PIVOT_KEY = "NR pivot"
STEPS_KEY = "NR steps"
SKIPPED_KEY = "NR skipped"
ANIMATEDIFF_KEY = "NR AnimateDiff"
COMMENT_PREFIX = "Noise Rectification "

SETTING_KEYS = frozenset({f.infotext_key for f in FIELDS} | {VERSION_INFOTEXT_KEY})


def is_ours(key: str) -> bool:
    return key in SETTING_KEYS or key.startswith("NR ")


def forget_inherited(p: Any) -> None:
    """Drop our entries and comments that came with a shared dict (XYZ cells)."""
    params = getattr(p, "extra_generation_params", None)
    if isinstance(params, dict) and any(is_ours(k) for k in params):
        p.extra_generation_params = {k: v for k, v in params.items() if not is_ours(k)}
    comments = getattr(p, "comments", None)
    if isinstance(comments, dict) and any(str(k).startswith(COMMENT_PREFIX) for k in comments):
        p.comments = {k: v for k, v in comments.items() if not str(k).startswith(COMMENT_PREFIX)}


def write(p: Any, entries: dict[str, str]) -> None:
    """Add entries to this job's own copy of ``extra_generation_params``."""
    p.extra_generation_params = {**p.extra_generation_params, **entries}


def comment(p: Any, text: str) -> None:
    """``p.comment`` (modules/processing.py:296) into this job's own copy of ``comments``."""
    p.comments = dict(p.comments)
    p.comment(COMMENT_PREFIX + text)


def format_steps(steps: set[int], total: int) -> str:
    """``{0, 1, 2, 5}`` of 8 → ``"0-2, 5 of 8"``; no steps → ``"none of 8"``."""
    if not steps:
        return f"none of {total}"
    ordered = sorted(steps)
    runs: list[str] = []
    start = previous = ordered[0]
    for step in [*ordered[1:], None]:
        if step is not None and step == previous + 1:
            previous = step
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        if step is not None:
            start = previous = step
    return f"{', '.join(runs)} of {total}"
