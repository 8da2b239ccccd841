"""Stable Diffusion's noise schedule and the sampler timesteps used by the benchmark.

The tiny model is trained on exactly SD 1.x's "scaled linear" schedule (betas from
0.00085 to 0.012, T = 1000) so that the signal-to-noise ratios the rectification sees
match the ones it meets in the WebUI.
"""

from __future__ import annotations

import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012


def scaled_linear_alphas_cumprod(
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    beta_start: float = BETA_START,
    beta_end: float = BETA_END,
) -> torch.Tensor:
    """ā_t for t = 0..T-1 (float64), as in SD 1.x / diffusers' `scaled_linear`."""
    betas = (
        torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64)
        ** 2
    )
    return torch.cumprod(1.0 - betas, dim=0)


def sampler_timesteps(
    steps: int, strength: float = 1.0, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> list[int]:
    """Descending "trailing" timesteps, one per model call.

    strength 1 starts at t = T-1 (the paper's AddNoise(..., T)); strength s starts at
    about s·T, like img2img's denoising strength. The last call is near t = T/steps and
    the sampler then jumps to the clean sample (ā = 1), so no noise is left over.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if not 0.0 < strength <= 1.0:
        raise ValueError("strength must be in (0, 1]")
    top = strength * num_train_timesteps
    return [max(0, round(top * (steps - i) / steps) - 1) for i in range(steps)]


def sigmas_from_alphas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """σ = sqrt((1-ā)/ā): the k-diffusion (denoiser form) noise level of each timestep."""
    return ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt()
