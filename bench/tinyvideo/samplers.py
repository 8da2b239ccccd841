"""Two deterministic samplers on the same timesteps, calling `lib_rectify` like the WebUI glue.

- `ddim`: ε form, like the WebUI's timestep samplers (DDIM/PLMS/UniPC). The pivot is
  captured from the first model input with ā of the sampler's first timestep, and the
  combined ε is rectified (`Rectifier.rectify_eps`, with landing on the last step).
- `euler`: denoiser form, like the WebUI's k-diffusion samplers: `x = Z + σ·n`, the model
  is wrapped as a denoiser `D(x, σ)`, and `D` is rectified (`Rectifier.rectify_denoised`).

Both pass the rectifier tensors in the WebUI's `"frames"` layout (`[B·L, C, H, W]`,
frame-major per video). DDIM with η = 0 *is* Euler on `x/√ā`, so without x0 clipping
the two agree to float precision: a cross-check of both code paths of the core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from einops import rearrange

from lib_rectify import Rectifier

from .schedule import sampler_timesteps, scaled_linear_alphas_cumprod

SAMPLERS = ("ddim", "euler")
EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _frames(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b c l h w -> (b l) c h w")


def _video(x: torch.Tensor, frames: int) -> torch.Tensor:
    return rearrange(x, "(b l) c h w -> b c l h w", l=frames)


def repeat_reference(reference: torch.Tensor, frames: int) -> torch.Tensor:
    """Repeat(z0): `[B, C, H, W] -> [B, C, L, H, W]`, the paper's noising-stage latent."""
    return reference[:, :, None].expand(-1, -1, frames, -1, -1).contiguous()


@torch.no_grad()
def sample(
    model: EpsModel,
    noise: torch.Tensor,
    *,
    reference: torch.Tensor | None,
    sampler: str = "ddim",
    steps: int = 25,
    strength: float = 1.0,
    rectifier: Rectifier | None = None,
    final_alpha_cumprod: float = 1.0,
    alphas_cumprod: torch.Tensor | None = None,
    callback: Callable[[int], None] | None = None,
    clean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate videos `[B, C, L, H, W]` from `noise` (same shape).

    `reference` (`[B, C, H, W]`) is noised into the start latent (SDEdit / the paper's
    noising stage); `None` starts from pure noise (no reference at all). `rectifier`
    (optional) applies the paper's rectification; it must have been made for `L`
    frames and layout `"frames"`. `final_alpha_cumprod` < 1 makes the last step stop
    short of a clean sample, as the WebUI's DDIM does (then landing matters).
    `clean` (`[B, C, L, H, W]`) replaces the repeated reference as the per-frame clean
    latent that is noised and rectified toward (two anchors, AnimateDiff's last-frame
    blend); `reference` must then be given too (it is not used otherwise).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if rectifier is not None and reference is None:
        raise ValueError("rectification needs a reference image")
    frames = noise.shape[2]
    abar_all = alphas_cumprod if alphas_cumprod is not None else scaled_linear_alphas_cumprod()
    timesteps: Sequence[int] = sampler_timesteps(steps, strength, abar_all.numel())
    abar = [float(abar_all[t]) for t in timesteps] + [float(final_alpha_cumprod)]
    if clean is None:
        clean = repeat_reference(reference, frames) if reference is not None else None
    n = len(timesteps)

    if sampler == "ddim":
        if clean is None:
            x = noise.clone()
        else:
            x = abar[0] ** 0.5 * clean + (1 - abar[0]) ** 0.5 * noise
        if rectifier is not None:
            rectifier.capture_pivot_eps(_frames(x), clean=_frames(clean), alpha_cumprod=abar[0])
        for i, t in enumerate(timesteps):
            eps = model(x, torch.full((x.shape[0],), t))
            if rectifier is not None:
                eps = _video(
                    rectifier.rectify_eps(
                        _frames(eps),
                        step=i,
                        total_steps=n,
                        x=_frames(x),
                        alpha_cumprod=abar[i],
                        alpha_cumprod_prev=abar[i + 1],
                    ),
                    frames,
                )
            x0 = (x - (1 - abar[i]) ** 0.5 * eps) / abar[i] ** 0.5
            x = abar[i + 1] ** 0.5 * x0 + (1 - abar[i + 1]) ** 0.5 * eps
            if callback is not None:
                callback(i)
        return x

    # euler, denoiser form: x = Z + σ·n, σ = sqrt((1-ā)/ā); model input x·sqrt(ā)
    sigmas = [((1 - a) / a) ** 0.5 for a in abar]
    # no reference: the same start as DDIM's x = n, in the denoiser's scale
    x = noise / abar[0] ** 0.5 if clean is None else clean + sigmas[0] * noise
    if rectifier is not None:
        rectifier.capture_pivot_denoiser(_frames(x), clean=_frames(clean), sigma=sigmas[0])
    for i, t in enumerate(timesteps):
        sigma = sigmas[i]
        eps = model(x * abar[i] ** 0.5, torch.full((x.shape[0],), t))
        denoised = x - sigma * eps
        if rectifier is not None:
            denoised = _video(
                rectifier.rectify_denoised(
                    _frames(denoised), x=_frames(x), sigma=sigma, step=i, total_steps=n
                ),
                frames,
            )
        derivative = (x - denoised) / sigma
        x = x + derivative * (sigmas[i + 1] - sigma)
        if callback is not None:
            callback(i)
    # back to the data scale the DDIM result is in (identical when the last ā is 1)
    return x * abar[-1] ** 0.5
