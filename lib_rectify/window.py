"""The rectification window τ over a sampler's steps."""

from __future__ import annotations

import math
from fractions import Fraction

from .errors import RectifyError


def _exact(value: float) -> Fraction:
    # The decimal a user typed (0.7), not its binary neighbour: 10 * 0.7 must be 7, not 7.000…1.
    return Fraction(repr(float(value)))


def step_in_window(step: int, total_steps: int, tau: tuple[float, float]) -> bool:
    """Whether step ``step`` of ``total_steps`` is rectified: ``N·start ≤ i < N·end``.

    Exact rational arithmetic makes the answer the same on every machine and for any
    N. Both model calls of a two-call step (Heun, DPM2) pass the same ``step``.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise RectifyError("total_steps", total_steps, "a whole number of steps ≥ 1")
    if isinstance(step, bool) or not isinstance(step, int):
        raise RectifyError("step", step, f"a whole number from 0 to {total_steps - 1}")
    if not 0 <= step < total_steps:
        return False
    start, end = _exact(tau[0]), _exact(tau[1])
    return total_steps * start <= step < total_steps * end


def window_bounds(total_steps: int, tau: tuple[float, float]) -> tuple[int, int]:
    """``(first, stop)``: step ``i`` is rectified iff ``first ≤ i < stop``.

    The same rule as :func:`step_in_window` (``N·start ≤ i < N·end`` holds for a whole
    ``i`` exactly when ``⌈N·start⌉ ≤ i < ⌈N·end⌉``), as two whole numbers a host can
    compare with a step index that lives on the GPU, without reading it back.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise RectifyError("total_steps", total_steps, "a whole number of steps ≥ 1")
    start, end = _exact(tau[0]), _exact(tau[1])
    first = max(math.ceil(total_steps * start), 0)
    stop = min(math.ceil(total_steps * end), total_steps)
    return first, max(stop, first)


def window_steps(total_steps: int, tau: tuple[float, float]) -> list[int]:
    """All rectified step indices, for infotext notes and previews."""
    return [i for i in range(total_steps) if step_in_window(i, total_steps, tau)]
