"""Where a model call sits in a sampler's noise schedule, on any device.

A sampler's steps are the intervals between consecutive noise levels of its schedule
(σ for denoiser-form samplers, the model timestep for ε-form ones), from the noisiest
level down. A model call belongs to the step whose interval holds its noise level, so
the window τ means the same fraction of the schedule whatever order or number of calls
a sampler makes. (Second calls that a two-call step makes at the *next* level, such as
Heun's, are the host adapter's to pair with their step: the level alone cannot tell.)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .errors import RectifyError

#: Levels closer than this (relative) count as the same level: samplers pass their
#: schedule's values through float32 arithmetic, sometimes on another device.
LEVEL_RTOL = 1e-5


def step_of_level(levels: Sequence[float], level: float) -> int:
    """The step ``i`` whose interval ``(levels[i+1], levels[i]]`` holds ``level``.

    ``levels`` runs from the noisiest level down (``N + 1`` values for ``N`` steps; the
    last may be 0). A call exactly at ``levels[i]`` starts step ``i``; a level above the
    first (sigma churn) belongs to step 0 and one at or below the last to step ``N − 1``.
    """
    count = len(levels) - 1
    if count < 1:
        raise RectifyError("schedule", list(levels), "at least two noise levels (one step)")
    for i in range(count):
        below = float(levels[i + 1])
        if level > below + LEVEL_RTOL * max(abs(below), 1e-12):
            return i
    return count - 1


def alpha_cumprod_at(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """ᾱ at (possibly fractional) model timesteps, in float32 on the timesteps' device.

    Integer timesteps (DDIM, PLMS) index the table exactly; fractional ones (UniPC)
    interpolate log ᾱ linearly, as a discrete VP noise schedule does. No float64, so
    it runs on devices without it (Apple MPS, Intel XPU).
    """
    table = alphas_cumprod.detach().to(device=timesteps.device, dtype=torch.float32)
    t = timesteps.detach().to(torch.float32).clamp(0, table.numel() - 1)
    low = t.floor()
    frac = t - low
    low_index = low.long()
    high_index = (low_index + 1).clamp(max=table.numel() - 1)
    below, above = table[low_index], table[high_index]
    between = torch.exp(torch.lerp(below.log(), above.log(), frac))
    return torch.where(frac == 0, below, between)


class LevelSteps:
    """:func:`step_of_level` on the device, for hosts that meet the noise level as a GPU tensor.

    Built once per sampling run from the schedule; :meth:`step` then answers with a 0-d
    index tensor on the same device, so labelling a model call never waits for the GPU
    (reading ``float(sigma)`` would, once per call). Same rule, same tolerance.
    """

    def __init__(self, levels: Sequence[float] | torch.Tensor, device: torch.device) -> None:
        if isinstance(levels, torch.Tensor):
            values = levels.detach().to(dtype=torch.float32)
        else:
            values = torch.tensor([float(v) for v in levels], dtype=torch.float32)
        # From the host: an asynchronous copy (a pageable source is staged at once).
        values = values.to(device=device, non_blocking=True)
        self.count = values.numel() - 1
        if self.count < 1:
            raise RectifyError("schedule", values.numel(), "at least two noise levels (one step)")
        below = values[1:]
        self._threshold = below + LEVEL_RTOL * below.abs().clamp_min(1e-12)
        self._index = torch.arange(self.count, device=device)

    def step(self, level: torch.Tensor) -> torch.Tensor:
        """The step of ``level`` (a 0-d or one-element tensor), as a 0-d long tensor."""
        above = level.detach().to(torch.float32).reshape(()) > self._threshold
        return torch.where(above, self._index, self.count - 1).min()


# ---------------------------------------- facts of k-diffusion-style sampler functions
# The WebUI's and ComfyUI's samplers are k-diffusion's functions (with additions); both
# hosts' adapters need these the same way.
def host_levels(values: Any) -> tuple[float, ...]:
    """A schedule on the host: one transfer for a device tensor (once a sampling run)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).tolist()
    return tuple(float(v) for v in values)


def sampler_option(
    function: Callable, options: Mapping[str, Any], name: str, fallback: float
) -> float:
    """An option as the sampler function will see it: passed in ``options``, else the
    default of its signature, else ``fallback``."""
    if name in options:
        return float(options[name])
    try:
        parameter = inspect.signature(function).parameters.get(name)
    except (TypeError, ValueError):
        parameter = None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return fallback
    return float(parameter.default)


def ancestral_sigma_down(sigma_from: float, sigma_to: float, eta: float) -> float:
    """k-diffusion's ancestral split (``get_ancestral_step``): the level the step's
    deterministic part aims at, below ``sigma_to`` when ``eta`` adds noise."""
    if not eta or sigma_from <= 0:
        return sigma_to
    up = min(sigma_to, eta * math.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2))
    return math.sqrt(max(sigma_to**2 - up**2, 0.0))
