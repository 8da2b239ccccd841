"""Euler on the rectified-flow ODE for the flow-matching tiny model, calling `lib_rectify`.

The model (`python -m bench.tinyvideo.train --objective flow`) predicts the velocity
`v = n − x0` of `x = (1−σ)·x0 + σ·n` (Wan / SD3 / diffusers FlowMatch convention), with
timestep input `σ·1000`. One step is `x_{i+1} = x_i + (σ_{i+1} − σ_i)·v`; the last step
goes to σ = 0, where `x = x − σ·v` is the clean estimate (no noise left over).

The σ schedule is diffusers' `FlowMatchEulerDiscreteScheduler` / ComfyUI's
`time_snr_shift`: `σ = shift·t / (1 + (shift−1)·t)` over `t` linear from 1 to 0, scaled by
`sigma_start` so that it starts at `sigma_start` instead of 1. The start latent is
`(1 − σ_start)·Z + σ_start·n`, Z the picture repeated over the frames: σ_start = 1 is pure
noise carrying nothing of the picture, σ_start < 1 is SDEdit at strength σ_start. With a
`Rectifier`, the pivot is captured from that first model input
(`capture_pivot_flow`) and the velocity is rectified at every step inside the window
(`rectify_flow(..., prediction="velocity")`), in the rectifier's own layout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange

from lib_rectify import Rectifier

from .samplers import repeat_reference

NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_SHIFT = 3.0
VelocityModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flow_sigmas(steps: int, sigma_start: float = 1.0, shift: float = DEFAULT_SHIFT) -> list[float]:
    """`steps + 1` descending σ: the shifted schedule from `sigma_start` down to exactly 0."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if not 0.0 < sigma_start <= 1.0:
        raise ValueError("sigma_start must be in (0, 1]")
    if shift <= 0:
        raise ValueError("shift must be > 0")
    out = []
    for i in range(steps + 1):
        t = 1.0 - i / steps
        out.append(sigma_start * shift * t / (1.0 + (shift - 1.0) * t))
    out[-1] = 0.0
    return out


def start_latent(
    noise: torch.Tensor, clean: torch.Tensor | None, sigma_start: float
) -> torch.Tensor:
    """`(1 − σ)·Z + σ·n`; without a picture, `σ·n` (pure noise `n` at σ = 1)."""
    if clean is None:
        return sigma_start * noise
    return (1.0 - sigma_start) * clean + sigma_start * noise


def _to(rect: Rectifier, x: torch.Tensor) -> torch.Tensor:
    """`[B, C, L, H, W]` to the rectifier's layout."""
    return rearrange(x, "b c l h w -> (b l) c h w") if rect.layout == "frames" else x


def _back(rect: Rectifier, x: torch.Tensor, frames: int) -> torch.Tensor:
    return rearrange(x, "(b l) c h w -> b c l h w", l=frames) if rect.layout == "frames" else x


@torch.no_grad()
def flow_sample(
    model: VelocityModel,
    noise: torch.Tensor,
    *,
    reference: torch.Tensor | None,
    steps: int = 25,
    sigma_start: float = 1.0,
    shift: float = DEFAULT_SHIFT,
    rectifier: Rectifier | None = None,
    clean: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Generate videos `[B, C, L, H, W]` from `noise` (same shape) with Euler on the flow ODE.

    `reference` (`[B, C, H, W]`) is repeated over the frames into `Z` and mixed into the
    start latent at `sigma_start` (SDEdit); `None` starts from `σ_start·noise` with nothing
    of a picture. `clean` (`[B, C, L, H, W]`) replaces the repeated reference (two anchors);
    `reference` must then be given too. `rectifier` (optional) is called as a host
    would: pivot from the first model input, then the velocity of every step; `finish()`
    is called at the end (it raises if a deferred check failed). `callback(i, x)` sees
    each step's result.
    """
    if rectifier is not None and reference is None:
        raise ValueError("rectification needs a reference image")
    frames = noise.shape[2]
    sigmas = flow_sigmas(steps, sigma_start, shift)
    if clean is None and reference is not None:
        clean = repeat_reference(reference, frames)
    x = start_latent(noise, clean, sigmas[0])
    if rectifier is not None:
        rectifier.capture_pivot_flow(
            _to(rectifier, x), clean=_to(rectifier, clean), sigma=sigmas[0]
        )
    for i in range(steps):
        sigma = sigmas[i]
        v = model(x, torch.full((x.shape[0],), sigma * NUM_TRAIN_TIMESTEPS))
        if rectifier is not None:
            v = _back(
                rectifier,
                rectifier.rectify_flow(
                    _to(rectifier, v),
                    x=_to(rectifier, x),
                    sigma=sigma,
                    step=i,
                    total_steps=steps,
                    prediction="velocity",
                ),
                frames,
            )
        x = x + (sigmas[i + 1] - sigma) * v
        if callback is not None:
            callback(i, x)
    if rectifier is not None:
        rectifier.finish()
    return x
