"""Pixel metrics for fidelity and motion, chosen so that noise cannot pass for motion.

Videos are `[B, C, L, H, W]` in [-1, 1]; metrics are computed on [0, 1] pixels, one value
per video. See docs/measuring.md: raw frame differences reward speckle, so motion is also
measured on 4×4 average-pooled frames, and the speckle itself (|x − blur3×3(x)|) is shown.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0  # an exact match reports this instead of infinity


def _unit(video: torch.Tensor) -> torch.Tensor:
    return ((video.float().clamp(-1, 1) + 1) / 2).float()


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return (10 * torch.log10(1.0 / mse.clamp_min(10 ** (-PSNR_CAP_DB / 10)))).clamp_max(PSNR_CAP_DB)


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).flatten(1).mean(1)


def pool(video: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Average-pool each frame by `factor` (robust to per-pixel grain)."""
    b, c, frames, h, w = video.shape
    flat = video.permute(0, 2, 1, 3, 4).reshape(b * frames, c, h, w)
    pooled = F.avg_pool2d(flat, factor)
    return pooled.reshape(b, frames, c, *pooled.shape[-2:]).permute(0, 2, 1, 3, 4)


def speckle(video: torch.Tensor) -> torch.Tensor:
    """Mean |x − blur3×3(x)| per video: high-frequency grain (reflect padding)."""
    b, c, frames, h, w = video.shape
    flat = video.permute(0, 2, 1, 3, 4).reshape(b * frames, c, h, w)
    blurred = F.avg_pool2d(F.pad(flat, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    return (flat - blurred).abs().reshape(b, -1).mean(1)


def video_metrics(video: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """All per-video metrics of `video` against its `reference` image `[B, C, H, W]`.

    PSNR in dB (capped at 100); motion, drift and speckle as mean absolute differences in
    percent of the full pixel range.
    - `psnr_all` / `psnr_nonref`: fidelity to the reference over all frames / frames 1..L-1
    - `psnr_first` / `psnr_last`: fidelity of the first and last frame
    - `coherence`: PSNR between consecutive frames (temporal coherence)
    - `motion_raw`: mean |frame i − frame i−1|; `motion_pooled`: the same on 4×4-pooled
      frames; `drift`: pooled |last − first| (net change, vs. motion's path length)
    - `speckle`: high-frequency grain
    """
    v = _unit(video)
    ref = _unit(reference)[:, :, None]
    frames = v.shape[2]
    diff_ref = (v - ref).pow(2)
    consecutive = v[:, :, 1:] - v[:, :, :-1]
    pooled = pool(v)
    pooled_steps = pooled[:, :, 1:] - pooled[:, :, :-1]
    out = {
        "psnr_all": psnr_from_mse(diff_ref.flatten(1).mean(1)),
        "psnr_nonref": psnr_from_mse(diff_ref[:, :, 1:].flatten(1).mean(1)),
        "psnr_first": psnr_from_mse(_mse(v[:, :, 0], ref[:, :, 0])),
        "psnr_last": psnr_from_mse(_mse(v[:, :, frames - 1], ref[:, :, 0])),
        "coherence": psnr_from_mse(consecutive.pow(2).flatten(1).mean(1)),
        "motion_raw": 100 * consecutive.abs().flatten(1).mean(1),
        "motion_pooled": 100 * pooled_steps.abs().flatten(1).mean(1),
        "drift": 100 * (pooled[:, :, -1] - pooled[:, :, 0]).abs().flatten(1).mean(1),
        "speckle": 100 * speckle(v),
    }
    return out


def per_frame_psnr(video: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`[B, L]` PSNR of every frame to the reference (for the per-frame plot)."""
    v = _unit(video)
    ref = _unit(reference)[:, :, None]
    mse = (v - ref).pow(2).mean(dim=(1, 3, 4))
    return psnr_from_mse(mse)


def mean_ci(values: torch.Tensor) -> tuple[float, float]:
    """Mean and 95 % half-width (normal approximation) over the first axis."""
    values = values.double()
    n = values.numel()
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan
    return mean, float(1.96 * values.std(unbiased=True) / math.sqrt(n))
