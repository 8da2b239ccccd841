"""Synthetic video clips whose appearance cannot be memorised.

Every clip draws a fresh random smooth texture (scrolling at a random sub-pixel speed)
and a few soft shapes that move and grow or shrink. A model trained on them learns
*motion* (how frames relate), while the *appearance* of a generated clip can only come
from the reference image: exactly the situation in which image-to-video fidelity is
lost and the paper's rectification should win it back.

Pixels are in [-1, 1]; clips are `[B, 3, L, H, W]` (channels, frames, height, width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClipConfig:
    """Shape and motion ranges of the synthetic clips."""

    frames: int = 8
    size: int = 16
    max_speed: float = 1.0  # texture scroll, pixels per frame
    max_shapes: int = 2
    max_shape_speed: float = 0.8  # pixels per frame
    max_growth: float = 0.06  # relative radius change per frame


def _smooth_texture(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Periodic low-pass random fields `[n, 3, size, size]` (spectrum, not pixels)."""
    noise = torch.randn(n, 3, size, size, generator=g)
    spec = torch.fft.fft2(noise)
    k = torch.fft.fftfreq(size) * size  # integer frequencies
    radius = (k[:, None] ** 2 + k[None, :] ** 2).sqrt()
    # random cutoff per clip: from very smooth to fairly detailed
    cutoff = 1.0 + 3.0 * torch.rand(n, 1, 1, 1, generator=g)
    spec = spec * torch.exp(-((radius / cutoff) ** 2))
    spec[..., 0, 0] = 0  # mean set separately
    return spec


def _shift_spectrum(spec: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Translate periodic fields by sub-pixel offsets (Fourier shift theorem), real output."""
    size = spec.shape[-1]
    k = torch.fft.fftfreq(size)
    phase = -2j * math.pi * (k[None, :] * dx[:, None, None] + k[:, None] * dy[:, None, None])
    return torch.fft.ifft2(spec * torch.exp(phase)[:, None]).real


def make_clips(n: int, seed: int, config: ClipConfig | None = None) -> torch.Tensor:
    """Generate `n` clips `[n, 3, L, H, W]` in [-1, 1], fully determined by `seed`."""
    cfg = config or ClipConfig()
    g = torch.Generator().manual_seed(seed)
    L, S = cfg.frames, cfg.size

    # --- scrolling texture background
    spec = _smooth_texture(n, S, g)
    field = torch.fft.ifft2(spec).real
    std = field.flatten(1).std(dim=1).clamp_min(1e-6)
    contrast = 0.25 + 0.45 * torch.rand(n, generator=g)
    base = (torch.rand(n, 3, generator=g) * 2 - 1) * 0.6
    vel = (torch.rand(n, 2, generator=g) * 2 - 1) * cfg.max_speed
    frames = []
    for t in range(L):
        shifted = _shift_spectrum(spec, vel[:, 0] * t, vel[:, 1] * t)
        frames.append(shifted / std[:, None, None, None] * contrast[:, None, None, None])
    video = torch.stack(frames, dim=2) + base[:, :, None, None, None]  # [n,3,L,S,S]

    # --- moving, growing/shrinking soft shapes
    ys, xs = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    time = torch.arange(L, dtype=torch.float32)
    for _ in range(cfg.max_shapes):
        present = torch.rand(n, generator=g) < 0.75
        centre = torch.rand(n, 2, generator=g) * S * 0.7 + S * 0.15
        speed = (torch.rand(n, 2, generator=g) * 2 - 1) * cfg.max_shape_speed
        radius = S * (0.12 + 0.18 * torch.rand(n, generator=g))
        growth = (torch.rand(n, generator=g) * 2 - 1) * cfg.max_growth
        square = torch.rand(n, generator=g) < 0.5
        colour = torch.rand(n, 3, generator=g) * 2 - 1
        cx = centre[:, 0, None] + speed[:, 0, None] * time  # [n, L]
        cy = centre[:, 1, None] + speed[:, 1, None] * time
        r = (radius[:, None] * (1 + growth[:, None] * time)).clamp_min(1.0)
        dx = xs[None, None] - cx[..., None, None]  # [n, L, S, S]
        dy = ys[None, None] - cy[..., None, None]
        dist_disc = (dx**2 + dy**2).sqrt()
        dist_square = torch.maximum(dx.abs(), dy.abs())
        dist = torch.where(square[:, None, None, None], dist_square, dist_disc)
        alpha = torch.sigmoid((r[..., None, None] - dist) * 2.0)
        alpha = alpha * present[:, None, None, None]
        alpha = alpha[:, None]  # [n,1,L,S,S]
        video = video * (1 - alpha) + colour[:, :, None, None, None] * alpha
    return video.clamp(-1.0, 1.0)


def held_out_references(n: int, seed: int = 987_654_321_000, config: ClipConfig | None = None):
    """Held-out clips (a seed stream never used in training) and their first frames.

    Returns `(clips [n,3,L,H,W], references [n,3,H,W])`.
    """
    clips = make_clips(n, seed, config)
    return clips, clips[:, :, 0]
