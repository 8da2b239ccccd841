"""Small models and samplers for testing the core on CPU in milliseconds.

The denoiser-form samplers follow k-diffusion's definitions (the code the WebUI
runs; k-diffusion itself does not install cleanly on CPU: it needs torchvision):
Euler and Heun (Karras et al. 2022, Alg. 1-2), DPM++ 2M (Lu et al. 2022) and
Euler ancestral. Each model call receives the step index, as the glue derives it
from the sampler's schedule; both calls of a Heun step get the same index.
The ε-form sampler is diffusers' real ``DDIMScheduler``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMScheduler

from lib_rectify import Rectifier, RectifyParams

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, sigma) -> D
StepDenoiser = Callable[[torch.Tensor, float, int], torch.Tensor]  # (x, sigma, step) -> D

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def sd_alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def ddim_scheduler(steps: int, final_clean: bool) -> DDIMScheduler:
    scheduler = DDIMScheduler(
        **SD_BETAS, set_alpha_to_one=final_clean, steps_offset=1, clip_sample=False
    )
    scheduler.set_timesteps(steps)
    return scheduler


# ---------------------------------------------------------------- models
class GaussianDenoiser:
    """Exact denoiser for data ~ N(mean, s²·I), optionally with a bias on the predicted noise.

    ``noise_bias`` (per frame, constant over steps) is the kind of error the paper
    rectifies: a model whose noise prediction drifts from the noise it was given.
    """

    def __init__(self, mean: torch.Tensor, spread: float, noise_bias: torch.Tensor | None = None):
        self.mean = mean
        self.spread2 = spread**2
        self.noise_bias = noise_bias

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        denoised = self.mean + self.spread2 / (self.spread2 + sigma**2) * (x - self.mean)
        if self.noise_bias is not None:
            denoised = denoised - sigma * self.noise_bias
        return denoised


class RandomVideoDenoiser:
    """A fixed random nonlinear model that mixes frames, like a motion module would."""

    def __init__(self, frames: int, channels: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.frames = frames
        self.channel_mix = torch.randn(channels, channels, generator=g) / channels**0.5
        self.frame_mix = torch.softmax(torch.randn(frames, frames, generator=g), dim=1)
        self.bias = torch.randn(channels, generator=g)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        b = x.shape[0] // self.frames
        video = x.reshape(b, self.frames, *x.shape[1:])
        mixed = torch.einsum("fg,bgchw->bfchw", self.frame_mix, video).reshape(x.shape)
        mixed = torch.einsum("dc,nchw->ndhw", self.channel_mix, mixed)
        return torch.tanh(mixed / (1 + sigma)) + self.bias.view(1, -1, 1, 1) / (1 + sigma)


# -------------------------------------------------------------- samplers
def karras_like_sigmas(
    steps: int, sigma_max: float = 14.6146, sigma_min: float = 0.0292
) -> torch.Tensor:
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    rho = 7.0
    sigmas = (
        sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    ) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)]).float()


def sample_euler(model: StepDenoiser, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = model(x, float(sigmas[i]), i)
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def sample_heun(model: StepDenoiser, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    for i in range(len(sigmas) - 1):
        denoised = model(x, float(sigmas[i]), i)
        d = (x - denoised) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, float(sigmas[i + 1]), i)
            d_2 = (x_2 - denoised_2) / sigmas[i + 1]
            x = x + (d + d_2) / 2 * dt
    return x


def sample_dpmpp_2m(model: StepDenoiser, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    def t_fn(sigma: torch.Tensor) -> torch.Tensor:
        return sigma.log().neg()

    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, float(sigmas[i]), i)
        if sigmas[i + 1] == 0:
            x = denoised
            break
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None:
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * denoised
        else:
            h_last = t - t_fn(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


def sample_euler_ancestral(
    model: StepDenoiser, x: torch.Tensor, sigmas: torch.Tensor, seed: int = 0
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    for i in range(len(sigmas) - 1):
        denoised = model(x, float(sigmas[i]), i)
        s, s_next = sigmas[i], sigmas[i + 1]
        sigma_up = min(s_next, (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
        sigma_down = (s_next**2 - sigma_up**2) ** 0.5
        d = (x - denoised) / s
        x = x + d * (sigma_down - s)
        if s_next > 0:
            x = x + torch.randn(x.shape, generator=g) * sigma_up
    return x


DENOISER_SAMPLERS = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
}


# -------------------------------------------------------- rectified runs
def run_denoiser_form(
    model: Denoiser,
    clean: torch.Tensor,
    noise: torch.Tensor,
    params: RectifyParams,
    frames: int,
    sampler: Callable[..., torch.Tensor] = sample_euler,
    steps: int = 12,
    sigmas: torch.Tensor | None = None,
    pivot: str = "initial",
) -> torch.Tensor:
    """img2img at strength 1 with a k-diffusion-style sampler, rectified as the glue does."""
    sigmas = karras_like_sigmas(steps) if sigmas is None else sigmas
    rect = Rectifier(params, frames=frames, layout="frames", pivot=pivot)
    x_t = clean + noise * sigmas[0]
    total = len(sigmas) - 1

    def rectified(x: torch.Tensor, sigma: float, step: int) -> torch.Tensor:
        if step == 0 and not rect.has_pivot:
            rect.capture_pivot_denoiser(x, clean=clean, sigma=sigma)
        denoised = model(x, torch.full((x.shape[0],), sigma))
        return rect.rectify_denoised(denoised, x=x, sigma=sigma, step=step, total_steps=total)

    return sampler(rectified, x_t, sigmas)


def eps_model_from_denoiser(model: Denoiser) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """The same model in ε form: ``x_vp = √ᾱ·(Z + σ·n)`` with ``σ = √((1−ᾱ)/ᾱ)``."""

    def eps(x_vp: torch.Tensor, abar: float) -> torch.Tensor:
        scale = abar**0.5
        sigma = ((1 - abar) / abar) ** 0.5
        x = x_vp / scale
        return (x - model(x, torch.full((x.shape[0],), sigma))) / sigma

    return eps


def run_eps_form_ddim(
    model: Denoiser,
    clean: torch.Tensor,
    noise: torch.Tensor,
    params: RectifyParams,
    frames: int,
    steps: int = 12,
    final_clean: bool = True,
    layout: str = "frames",
    land: bool = True,
) -> torch.Tensor:
    """img2img at strength 1 with diffusers' DDIM, rectified as the glue does."""
    scheduler = ddim_scheduler(steps, final_clean)
    abars = scheduler.alphas_cumprod.double()
    eps_model = eps_model_from_denoiser(model)
    rect = Rectifier(params, frames=frames, layout=layout)
    timesteps = scheduler.timesteps
    first = float(abars[timesteps[0]])
    x = first**0.5 * clean + (1 - first) ** 0.5 * noise
    to_rows, from_rows = _layout_converters(layout, frames)
    for i, t in enumerate(timesteps):
        abar_t = float(abars[t])
        prev_t = int(t) - scheduler.config.num_train_timesteps // steps
        abar_prev = float(abars[prev_t]) if prev_t >= 0 else float(scheduler.final_alpha_cumprod)
        if i == 0:
            rect.capture_pivot_eps(x, clean=clean, alpha_cumprod=abar_t)
        eps = from_rows(eps_model(to_rows(x), abar_t))
        eps = rect.rectify_eps(
            eps,
            step=i,
            total_steps=len(timesteps),
            x=x if land else None,
            alpha_cumprod=abar_t,
            alpha_cumprod_prev=abar_prev,
        )
        x = scheduler.step(eps, t, x).prev_sample
    return x


def _layout_converters(layout: str, frames: int):
    if layout == "frames":
        return (lambda t: t), (lambda t: t)

    def to_rows(t: torch.Tensor) -> torch.Tensor:  # [B, C, L, h, w] -> [B·L, C, h, w]
        return t.permute(0, 2, 1, 3, 4).reshape(-1, t.shape[1], *t.shape[3:])

    def from_rows(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, frames, *t.shape[1:]).permute(0, 2, 1, 3, 4)

    return to_rows, from_rows


def repeated_clean(
    videos: int, frames: int, channels: int = 4, size: int = 8, seed: int = 1
) -> torch.Tensor:
    """``Z``: one random image latent per video, repeated over its frames ([B·L, C, h, w])."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(videos, channels, size, size, generator=g)
    return images.repeat_interleave(frames, dim=0)
