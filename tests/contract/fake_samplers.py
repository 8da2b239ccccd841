"""WebUI v1.10.1's samplers as the glue meets them: the same calls, in the same order.

The k-diffusion functions are the real ones (``kdiffusion.py``: PyPI k-diffusion 0.0.16,
the commit the WebUI pins). The WebUI's own sampling code is re-expressed here call for
call; each piece names the file and lines of AUTOMATIC1111 stable-diffusion-webui v1.10.1
(82a973c) it mirrors. What a sampler does between model calls follows the host closely
enough that a still window must end exactly on the picture; the order of model calls,
progress callbacks and callback arguments is the host's exactly, which is what the
glue's step labels depend on.
"""

from __future__ import annotations

import inspect
import itertools
import math
import types
from typing import Any

import kdiffusion
import torch

K, EXTERNAL = kdiffusion.load()

# ------------------------------------------------------------------- sampler tables
#: modules/sd_samplers_kdiffusion.py:11-27 (name → k-diffusion function, options)
KDIFFUSION = {
    "DPM++ 2M": ("sample_dpmpp_2m", {"scheduler": "karras"}),
    "DPM++ SDE": (
        "sample_dpmpp_sde",
        {"scheduler": "karras", "second_order": True, "brownian_noise": True},
    ),
    "DPM++ 2M SDE": ("sample_dpmpp_2m_sde", {"scheduler": "exponential", "brownian_noise": True}),
    "DPM++ 2M SDE Heun": (
        "sample_dpmpp_2m_sde",
        {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"},
    ),
    "DPM++ 2S a": (
        "sample_dpmpp_2s_ancestral",
        {"scheduler": "karras", "uses_ensd": True, "second_order": True},
    ),
    "DPM++ 3M SDE": (
        "sample_dpmpp_3m_sde",
        {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True},
    ),
    "Euler a": ("sample_euler_ancestral", {"uses_ensd": True}),
    "Euler": ("sample_euler", {}),
    "LMS": ("sample_lms", {}),
    "Heun": ("sample_heun", {"second_order": True}),
    "DPM2": (
        "sample_dpm_2",
        {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True},
    ),
    "DPM2 a": (
        "sample_dpm_2_ancestral",
        {
            "scheduler": "karras",
            "discard_next_to_last_sigma": True,
            "uses_ensd": True,
            "second_order": True,
        },
    ),
    "DPM fast": ("sample_dpm_fast", {"uses_ensd": True}),
    "DPM adaptive": ("sample_dpm_adaptive", {"uses_ensd": True}),
    "Restart": ("restart_sampler", {"scheduler": "karras", "second_order": True}),
}
#: modules/sd_samplers_kdiffusion.py:36-46
EXTRA_PARAMS = {
    "sample_euler": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_heun": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_dpm_2": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_dpm_fast": ["s_noise"],
    "sample_dpm_2_ancestral": ["s_noise"],
    "sample_dpmpp_2s_ancestral": ["s_noise"],
    "sample_dpmpp_sde": ["s_noise"],
    "sample_dpmpp_2m_sde": ["s_noise"],
    "sample_dpmpp_3m_sde": ["s_noise"],
}
TIMESTEP_SAMPLERS = ("DDIM", "DDIM CFG++", "PLMS", "UniPC")  # sd_samplers_timesteps.py:11-16
ALL_SAMPLERS = (*KDIFFUSION, "LCM", *TIMESTEP_SAMPLERS)  # sd_samplers.py: all_samplers

#: modules/shared_options.py defaults the samplers read (Settings → Sampler parameters)
DEFAULT_OPTS = {
    "eta_ancestral": 1.0,
    "eta_ddim": 0.0,
    "s_churn": 0.0,
    "s_tmin": 0.0,
    "s_tmax": 0.0,
    "s_noise": 1.0,
    "sigma_min": 0.0,
    "sigma_max": 0.0,
    "rho": 0.0,
    "always_discard_next_to_last_sigma": False,
    "use_old_karras_scheduler_sigmas": False,
    "no_dpmpp_sde_batch_determinism": False,
    "uni_pc_variant": "bh1",
    "uni_pc_skip_type": "time_uniform",
    "uni_pc_order": 3,
    "uni_pc_lower_order_final": True,
    "img2img_extra_noise": 0.0,
    "skip_early_cond": 0.0,
    "s_min_uncond_all": False,
    "batch_cond_uncond": True,
    "img2img_fix_steps": False,
}


class InterruptedException(BaseException):  # modules/sd_samplers_common.py
    pass


# ---------------------------------------------------------------------- a toy "UNet"
def linear_alphas_cumprod(squared: bool = True) -> torch.Tensor:
    """SD's "scaled linear" ᾱ (ldm), or AnimateDiff's plain linear one (animatediff_mm.py:161-180)."""
    if squared:
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    else:
        betas = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


class ToyUNet:
    """Stands in for the checkpoint: ``apply_model(x, t, cond) → ε`` on the VP scale.

    Frames of a video are mixed only while the motion module is injected (AnimateDiff
    adds temporal layers to the UNet); then the batch must be whole videos, or it fails
    the way AnimateDiff's motion layers do on a txt2img batch of the wrong size.
    """

    parameterization = "eps"
    cond_stage_key = "txt"

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.mix_logits = torch.randn(64, 64, generator=g)
        self.shift = torch.randn(4, generator=g).view(1, 4, 1, 1)
        self.alphas_cumprod = linear_alphas_cumprod()
        self.alphas_cumprod_original = self.alphas_cumprod
        self.motion_frames: int | None = None  # set while AnimateDiff's module is injected
        self.model = types.SimpleNamespace(conditioning_key="crossattn")
        self.is_sdxl = False
        self.calls = 0

    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        table = self.alphas_cumprod.double()
        t = t.double().clamp(0, 999)
        low = t.floor().long()
        high = (low + 1).clamp(max=999)
        frac = t - low
        return torch.exp(table[low].log() * (1 - frac) + table[high].log() * frac).float()

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        self.calls += 1
        sign = cond["c_crossattn"][0].view(-1, 1, 1, 1)
        abar = self._alpha(t).view(-1, 1, 1, 1)
        s = ((1 - abar) / abar).sqrt()
        xs = x / abar.sqrt()
        mixed = xs
        if self.motion_frames is not None:
            frames = self.motion_frames
            if x.shape[0] % frames:
                raise RuntimeError(
                    f"einops: shape mismatch, can't divide axis of length {x.shape[0]} in "
                    f"chunks of {frames}"
                )
            videos = xs.reshape(-1, frames, *xs.shape[1:])
            mix = torch.softmax(self.mix_logits[:frames, :frames], dim=1)
            mixed = torch.einsum("fg,bgchw->bfchw", mix, videos).reshape(xs.shape)
        denoised = torch.tanh(mixed / (1 + s)) + sign * 0.1 * self.shift / (1 + s)
        return (xs - denoised) / s


# ------------------------------------------------------------------------ callbacks
class State:  # modules/shared.py: shared.state (the parts samplers touch)
    sampling_step = 0
    sampling_steps = 0
    interrupted = False
    skipped = False


class CFGDenoiserParams:  # modules/script_callbacks.py:45
    def __init__(
        self,
        x,
        image_cond,
        sigma,
        sampling_step,
        total_sampling_steps,
        text_cond,
        text_uncond,
        denoiser=None,
    ):
        self.x, self.image_cond, self.sigma = x, image_cond, sigma
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.text_cond, self.text_uncond, self.denoiser = text_cond, text_uncond, denoiser


class CFGDenoisedParams:  # modules/script_callbacks.py:70
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x, self.sampling_step = x, sampling_step
        self.total_sampling_steps, self.inner_model = total_sampling_steps, inner_model


class AfterCFGCallbackParams:  # modules/script_callbacks.py:87
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x, self.sampling_step, self.total_sampling_steps = (
            x,
            sampling_step,
            total_sampling_steps,
        )


class Host:
    """What the samplers reach through ``modules.shared`` and ``script_callbacks``."""

    def __init__(self) -> None:
        self.opts = types.SimpleNamespace(**DEFAULT_OPTS)
        self.sd_model = ToyUNet()
        self.state = State()
        self.callbacks: dict[str, list[Any]] = {}
        self.reported: list[str] = []

    def fire(self, kind: str, params: Any) -> None:
        # modules/script_callbacks.py:346-371: each callback in try/except Exception
        for callback in self.callbacks.get(kind, []):
            try:
                callback(params)
            except Exception as error:
                self.reported.append(f"{kind}: {error!r}")


HOST = Host()


# ------------------------------------------------------------------- the CFG denoiser
class CFGDenoiser:
    """modules/sd_samplers_cfg_denoiser.py:33-311, without AND prompts or edit models."""

    mask_before_denoising = False

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.model_wrap = None
        self.mask = self.nmask = self.init_latent = None
        self.steps = self.total_steps = None
        self.step = 0
        self.p = None
        self.cond_scale_miltiplier = 1.0
        self.need_last_noise_uncond = False
        self.last_noise_uncond = None

    def combine_denoised(self, x_out, uncond_rows, cond_scale):  # :74-82
        denoised_uncond = x_out[-uncond_rows:]
        return denoised_uncond + (x_out[:uncond_rows] - denoised_uncond) * cond_scale

    def get_pred_x0(self, x_in, x_out, sigma):  # :90-91
        return x_out

    def __call__(self, x, sigma, uncond, cond, cond_scale, s_min_uncond, image_cond):  # :156
        if HOST.state.interrupted or HOST.state.skipped:  # :157-158
            raise InterruptedException
        batch = x.shape[0]

        def apply_blend(current):  # :174-183
            return current * self.nmask + self.init_latent * self.mask

        if self.mask_before_denoising and self.mask is not None:  # :186-187
            x = apply_blend(x)
        x_in = torch.cat([x, x])  # :203-205, one cond per image
        sigma_in = torch.cat([sigma, sigma])
        image_cond_in = torch.cat([image_cond, image_cond])
        params = CFGDenoiserParams(
            x_in,
            image_cond_in,
            sigma_in,
            HOST.state.sampling_step,
            HOST.state.sampling_steps,
            cond,
            uncond,
            self,
        )
        HOST.fire("cfg_denoiser", params)  # :211-217
        x_in, image_cond_in, sigma_in = params.x, params.image_cond, params.sigma
        cond, uncond = params.text_cond, params.text_uncond
        skip_uncond = False
        if (
            HOST.opts.skip_early_cond != 0
            and self.step / self.total_steps <= HOST.opts.skip_early_cond
        ):
            skip_uncond = True  # :220-222
            self.p.extra_generation_params["Skip Early CFG"] = HOST.opts.skip_early_cond
        elif self.step % 2 and s_min_uncond > 0 and sigma[0] < s_min_uncond:  # :223-225
            skip_uncond = True
            self.p.extra_generation_params["NGMS"] = s_min_uncond
        if skip_uncond:  # :229-231
            x_in, sigma_in = x_in[:-batch], sigma_in[:-batch]
        cond_in = cond if skip_uncond else torch.cat([cond, uncond])  # :240-246
        x_out = self.inner_model(
            x_in,
            sigma_in,
            cond={"c_crossattn": [cond_in], "c_concat": [image_cond_in[: len(x_in)]]},
        )
        if skip_uncond:  # :273-276
            x_out = torch.cat([x_out, x_out[:batch]])
        HOST.fire(
            "cfg_denoised", CFGDenoisedParams(x_out, HOST.state.sampling_step, 0, self.inner_model)
        )
        if self.need_last_noise_uncond:  # :281-282
            self.last_noise_uncond = torch.clone(x_out[-batch:])
        scale = 1.0 if skip_uncond else cond_scale * self.cond_scale_miltiplier  # :284-289
        denoised = self.combine_denoised(x_out, batch, scale)
        if not self.mask_before_denoising and self.mask is not None:  # :291-293
            denoised = apply_blend(denoised)
        self.sampler.last_latent = self.get_pred_x0(x_in[:batch], x_out[:batch], sigma)  # :295
        after = AfterCFGCallbackParams(
            denoised, HOST.state.sampling_step, HOST.state.sampling_steps
        )
        HOST.fire("cfg_after_cfg", after)  # :306-308
        self.step += 1
        return after.x


class CFGDenoiserKDiffusion(CFGDenoiser):  # sd_samplers_kdiffusion.py:52-64
    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = EXTERNAL.CompVisDenoiser(HOST.sd_model, quantize=False)
        return self.model_wrap


class CompVisTimestepsDenoiser:  # sd_samplers_timesteps.py:25-31
    def __init__(self, model):
        self.inner_model = model

    def __call__(self, x, timesteps, **kwargs):
        return self.inner_model.apply_model(x, timesteps, **kwargs)


class CFGDenoiserTimesteps(CFGDenoiser):  # sd_samplers_timesteps.py:48-72
    mask_before_denoising = True

    def __init__(self, sampler):
        super().__init__(sampler)
        self.alphas = HOST.sd_model.alphas_cumprod

    def get_pred_x0(self, x_in, x_out, sigma):
        a_t = self.alphas[sigma.to(dtype=int)][:, None, None, None]
        return (x_in - (1 - a_t).sqrt() * x_out) / a_t.sqrt()

    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = CompVisTimestepsDenoiser(HOST.sd_model)
        return self.model_wrap


# ------------------------------------------------------------------------- samplers
class TorchHijack:  # sd_samplers_common.py:205-226: k-diffusion's randn_like → p.rng
    def __init__(self, p):
        self.rng = p.rng

    def __getattr__(self, item):
        if item == "randn_like":
            return lambda x: self.rng.next()
        return getattr(torch, item)


class SamplerData:  # sd_samplers_common.py:11-19
    def __init__(self, name, options):
        self.name, self.options = name, options

    def total_steps(self, steps):
        return steps * 2 if self.options.get("second_order", False) else steps


class Sampler:  # sd_samplers_common.py:229-342
    def __init__(self, funcname):
        self.funcname = funcname
        self.func = funcname
        self.extra_params = []
        self.stop_at = None
        self.eta = None
        self.config: SamplerData | None = None
        self.last_latent = None
        self.s_min_uncond = None
        self.s_churn, self.s_tmin, self.s_tmax, self.s_noise = 0.0, 0.0, float("inf"), 1.0
        self.eta_option_field = "eta_ancestral"
        self.eta_default = 1.0
        self.p = None
        self.model_wrap_cfg = None
        self.sampler_extra_args = None
        self.options = {}
        self.steps_seen: list[int] = []  # test aid: every callback's 'i'

    def callback_state(self, d):  # :256-263
        step = d["i"]
        self.steps_seen.append(step)
        if self.stop_at is not None and step > self.stop_at:
            raise InterruptedException
        HOST.state.sampling_step = step

    def launch_sampling(self, steps, func):  # :265-281
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = self.config.total_steps(steps)
        HOST.state.sampling_steps = steps
        HOST.state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def initialize(self, p) -> dict:  # :286-332
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.mask = getattr(p, "mask", None)
        self.model_wrap_cfg.nmask = getattr(p, "nmask", None)
        self.model_wrap_cfg.step = 0
        self.eta = p.eta if p.eta is not None else getattr(HOST.opts, self.eta_option_field, 0.0)
        self.s_min_uncond = getattr(p, "s_min_uncond", 0.0)
        K.torch = TorchHijack(p)
        parameters = inspect.signature(self.func).parameters
        kwargs = {}
        for name in self.extra_params:
            if hasattr(p, name) and name in parameters:
                kwargs[name] = getattr(p, name)
        if "eta" in parameters:
            if self.eta != self.eta_default:
                p.extra_generation_params["Eta"] = self.eta
            kwargs["eta"] = self.eta
        if self.extra_params:
            s_churn, s_tmin = HOST.opts.s_churn, HOST.opts.s_tmin
            s_tmax, s_noise = HOST.opts.s_tmax or self.s_tmax, HOST.opts.s_noise
            for name, value, default in (
                ("s_churn", s_churn, self.s_churn),
                ("s_tmin", s_tmin, self.s_tmin),
                ("s_tmax", s_tmax, self.s_tmax),
                ("s_noise", s_noise, self.s_noise),
            ):
                if name in kwargs and value != default:
                    kwargs[name] = value
                    setattr(p, name, value)
        return kwargs

    def create_noise_sampler(self, x, sigmas, p):  # :334-342
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        seeds = p.all_seeds[p.iteration * p.batch_size : (p.iteration + 1) * p.batch_size]
        return K.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seeds)

    def run_function(self, steps, x, kwargs):
        """The call every sampler ends with (sd_samplers_kdiffusion.py:184, timesteps.py:135)."""
        return self.launch_sampling(
            steps,
            lambda: self.func(
                self.model_wrap_cfg,
                x,
                extra_args=self.sampler_extra_args,
                disable=False,
                callback=self.callback_state,
                **kwargs,
            ),
        )

    def sampler_args(self, p, cond, uncond, image_cond):
        return {
            "cond": cond,
            "image_cond": image_cond,
            "uncond": uncond,
            "cond_scale": p.cfg_scale,
            "s_min_uncond": self.s_min_uncond,
        }


class KDiffusionSampler(Sampler):  # sd_samplers_kdiffusion.py:67-234
    def __init__(self, funcname, options=None):
        super().__init__(funcname)
        self.extra_params = EXTRA_PARAMS.get(funcname, []) if isinstance(funcname, str) else []
        self.options = options or {}
        self.func = funcname if callable(funcname) else getattr(K, funcname)
        self.model_wrap_cfg = CFGDenoiserKDiffusion(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_sigmas(self, p, steps):  # :79-132 (the schedulers used here)
        discard = self.config.options.get("discard_next_to_last_sigma", False)
        steps += 1 if discard else 0
        scheduler = p.scheduler or "Automatic"
        if scheduler == "Automatic":
            scheduler = self.config.options.get("scheduler", None)
        sigma_min, sigma_max = self.model_wrap.sigmas[0].item(), self.model_wrap.sigmas[-1].item()
        if scheduler is None:
            sigmas = self.model_wrap.get_sigmas(steps)
        elif scheduler in ("karras", "Karras"):
            sigmas = K.get_sigmas_karras(n=steps, sigma_min=sigma_min, sigma_max=sigma_max)
        elif scheduler in ("exponential", "Exponential"):
            sigmas = K.get_sigmas_exponential(n=steps, sigma_min=sigma_min, sigma_max=sigma_max)
        elif scheduler in ("uniform", "Uniform"):  # sd_schedulers.py:552-553
            sigmas = self.model_wrap.get_sigmas(steps)
        elif scheduler in ("kl_optimal", "KL Optimal"):  # sd_schedulers.py:596-601
            a_min, a_max = math.atan(sigma_min), math.atan(sigma_max)
            i = torch.arange(steps + 1)
            sigmas = torch.tan(i / steps * a_min + (1.0 - i / steps) * a_max)
        else:
            raise ValueError(f"schedule type {scheduler} is not in the fake")
        if discard:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        return sigmas.cpu()

    def sample_img2img(
        self,
        p,
        x,
        noise,
        conditioning,
        unconditional_conditioning,
        steps=None,
        image_conditioning=None,
    ):
        steps, t_enc = setup_img2img_steps(p, steps)  # :134-188
        sigmas = self.get_sigmas(p, steps)
        sigma_sched = sigmas[steps - t_enc - 1 :]
        xi = x + noise * sigma_sched[0]
        kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        if "sigma_min" in parameters:
            kwargs["sigma_min"] = sigma_sched[-2]
        if "sigma_max" in parameters:
            kwargs["sigma_max"] = sigma_sched[0]
        if "n" in parameters:
            kwargs["n"] = len(sigma_sched) - 1
        if "sigma_sched" in parameters:
            kwargs["sigma_sched"] = sigma_sched
        if "sigmas" in parameters:
            kwargs["sigmas"] = sigma_sched
        if self.config.options.get("brownian_noise", False):
            kwargs["noise_sampler"] = self.create_noise_sampler(x, sigmas, p)
        if self.config.options.get("solver_type", None) == "heun":
            kwargs["solver_type"] = "heun"
        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        self.sampler_extra_args = self.sampler_args(
            p, conditioning, unconditional_conditioning, image_conditioning
        )
        return self.run_function(t_enc + 1, xi, kwargs)

    def sample(
        self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None
    ):
        steps = steps or p.steps  # :190-234
        sigmas = self.get_sigmas(p, steps)
        x = x * sigmas[0]
        kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        if "n" in parameters:
            kwargs["n"] = steps
        if "sigma_min" in parameters:
            kwargs["sigma_min"] = self.model_wrap.sigmas[0].item()
            kwargs["sigma_max"] = self.model_wrap.sigmas[-1].item()
        if "sigmas" in parameters:
            kwargs["sigmas"] = sigmas
        if self.config.options.get("brownian_noise", False):
            kwargs["noise_sampler"] = self.create_noise_sampler(x, sigmas, p)
        if self.config.options.get("solver_type", None) == "heun":
            kwargs["solver_type"] = "heun"
        self.last_latent = x
        self.sampler_extra_args = self.sampler_args(
            p, conditioning, unconditional_conditioning, image_conditioning
        )
        return self.run_function(steps, x, kwargs)


# -------------------------------------------------------------- Restart (extra.py)
#: Test aid: which Restart calls open a Heun step and which close it, with their σ.
RESTART_CALLS: list[tuple[str, float]] = []


def restart_sampler(
    model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, restart_list=None
):
    """modules/sd_samplers_extra.py:7-74: Heun steps, with passes back up in noise."""
    RESTART_CALLS.clear()
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    step_id = 0

    def heun_step(x, old_sigma, new_sigma):  # :17-35
        nonlocal step_id
        RESTART_CALLS.append(("first", float(old_sigma)))
        denoised = model(x, old_sigma * s_in, **extra_args)
        d = K.to_d(x, old_sigma, denoised)
        if callback is not None:
            callback(
                {
                    "x": x,
                    "i": step_id,
                    "sigma": new_sigma,
                    "sigma_hat": old_sigma,
                    "denoised": denoised,
                }
            )
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            RESTART_CALLS.append(("second", float(new_sigma)))
            d_2 = K.to_d(x_2, new_sigma, model(x_2, new_sigma * s_in, **extra_args))
            x = x + (d + d_2) / 2 * dt
        step_id += 1
        return x

    steps = sigmas.shape[0] - 1  # :37-48
    if restart_list is None:
        if steps >= 20:
            restart_steps, restart_times = 9, 1
            if steps >= 36:
                restart_steps, restart_times = steps // 4, 2
            sigmas = K.get_sigmas_karras(
                steps - restart_steps * restart_times,
                sigmas[-2].item(),
                sigmas[0].item(),
                device=sigmas.device,
            )
            restart_list = {0.1: [restart_steps + 1, restart_times, 2]}
        else:
            restart_list = {}
    restart_list = {
        int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restart_list.items()
    }
    step_list = []  # :52-63
    for i in range(len(sigmas) - 1):
        step_list.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in restart_list:
            restart_steps, restart_times, restart_max = restart_list[i + 1]
            min_idx, max_idx = i + 1, int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if max_idx < min_idx:
                sigma_restart = K.get_sigmas_karras(
                    restart_steps,
                    sigmas[min_idx].item(),
                    sigmas[max_idx].item(),
                    device=sigmas.device,
                )[:-1]
                for _ in range(restart_times):
                    step_list.extend(itertools.pairwise(sigma_restart))
    last_sigma = None  # :65-72
    for old_sigma, new_sigma in step_list:
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            x = x + K.torch.randn_like(x) * s_noise * (old_sigma**2 - last_sigma**2) ** 0.5
        x = heun_step(x, old_sigma, new_sigma)
        last_sigma = new_sigma
    return x


# ------------------------------------------------------------------- LCM (lcm.py)
class LCMCompVisDenoiser(EXTERNAL.DiscreteEpsDDPMDenoiser):
    """modules/sd_samplers_lcm.py:10-64: 50 of the model's 1000 timesteps, LCM scalings."""

    def __init__(self, model):
        timesteps, original = 1000, 50
        self.skip_steps = timesteps // original
        valid = torch.zeros(original, dtype=torch.float32)
        for i in range(original):
            valid[original - 1 - i] = model.alphas_cumprod[timesteps - 1 - i * self.skip_steps]
        super().__init__(model, valid, quantize=None)

    def get_sigmas(self, n=None):
        if n is None:
            return K.append_zero(self.sigmas.flip(0))
        start, end = self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min)
        return K.append_zero(self.t_to_sigma(torch.linspace(start, end, n)))

    def sigma_to_t(self, sigma, quantize=None):
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape) * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, timestep):
        t = torch.clamp(
            ((timestep - (self.skip_steps - 1)) / self.skip_steps).float(),
            min=0,
            max=len(self.sigmas) - 1,
        )
        return super().t_to_sigma(t)

    def get_eps(self, *args, **kwargs):
        return self.inner_model.apply_model(*args, **kwargs)

    def forward(self, input, sigma, **kwargs):
        c_out, c_in = (K.utils.append_dims(v, input.ndim) for v in self.get_scalings(sigma))
        eps = self.get_eps(input * c_in, self.sigma_to_t(sigma), **kwargs)
        scaled_t = K.utils.append_dims(self.sigma_to_t(sigma), input.ndim) * 10.0
        c_skip = 0.25 / (scaled_t**2 + 0.25)
        c_out2 = scaled_t / (scaled_t**2 + 0.25) ** 0.5
        return c_out2 * (input + eps * c_out) + c_skip * input


def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """modules/sd_samplers_lcm.py:66-80: one call per step, then fresh noise."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = K.default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised}
            )
        x = denoised
        if sigmas[i + 1] > 0:
            x += sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


class CFGDenoiserLCM(CFGDenoiser):  # sd_samplers_lcm.py:83-90
    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = LCMCompVisDenoiser(HOST.sd_model)
        return self.model_wrap


class LCMSampler(KDiffusionSampler):  # sd_samplers_lcm.py:93-97
    def __init__(self, funcname, options=None):
        super().__init__(funcname, options)
        self.model_wrap_cfg = CFGDenoiserLCM(self)
        self.model_wrap = self.model_wrap_cfg.inner_model


# ---------------------------------------------------- timestep samplers (timesteps*.py)
def _alphas_prev(alphas_cumprod, timesteps):
    return alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))]


def ddim(model, x, timesteps, extra_args=None, callback=None, disable=None, eta=0.0):
    """sd_samplers_timesteps_impl.py:12-41."""
    return _ddim_loop(model, x, timesteps, extra_args, callback, eta, cfgpp=False)


def ddim_cfgpp(model, x, timesteps, extra_args=None, callback=None, disable=None, eta=0.0):
    """sd_samplers_timesteps_impl.py:44-81: x̂₀ from the CFG ε, direction from the saved uncond ε."""
    model.cond_scale_miltiplier = 1 / 12.5
    model.need_last_noise_uncond = True
    return _ddim_loop(model, x, timesteps, extra_args, callback, eta, cfgpp=True)


def _ddim_loop(model, x, timesteps, extra_args, callback, eta, cfgpp):
    alphas_cumprod = model.inner_model.inner_model.alphas_cumprod
    alphas = alphas_cumprod[timesteps]
    alphas_prev = _alphas_prev(alphas_cumprod, timesteps).double()
    sigmas = eta * ((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev)).sqrt()
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones(x.shape[0])
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in, **extra_args)
        direction = model.last_noise_uncond if cfgpp else e_t
        a_t, a_prev = alphas[index].item() * s_x, alphas_prev[index].item() * s_x
        sigma_t = sigmas[index].item() * s_x
        pred_x0 = (x - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * direction
        x = a_prev.sqrt() * pred_x0 + dir_xt + sigma_t * K.torch.randn_like(x)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


def plms(model, x, timesteps, extra_args=None, callback=None, disable=None):
    """sd_samplers_timesteps_impl.py:84-142: a second call in the first step, before its callback."""
    alphas_cumprod = model.inner_model.inner_model.alphas_cumprod
    alphas = alphas_cumprod[timesteps]
    alphas_prev = _alphas_prev(alphas_cumprod, timesteps).double()
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    old_eps = []

    def step_to(e_t, index):
        a_t, a_prev = alphas[index].item() * s_x, alphas_prev[index].item() * s_x
        pred_x0 = (x - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t, pred_x0

    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        ts = timesteps[index].item() * s_in
        t_next = timesteps[max(index - 1, 0)].item() * s_in
        e_t = model(x, ts, **extra_args)
        if not old_eps:
            x_prev, _ = step_to(e_t, index)
            e_t_prime = (e_t + model(x_prev, t_next, **extra_args)) / 2
        elif len(old_eps) == 1:
            e_t_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_t_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_t_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x_prev, pred_x0 = step_to(e_t_prime, index)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
        x = x_prev
        if callback is not None:
            callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


def unipc(model, x, timesteps, extra_args=None, callback=None, disable=None, is_img2img=False):
    """sd_samplers_timesteps_impl.py:145-177 + models/diffusion/uni_pc/uni_pc.py (bh, x₀
    prediction, multistep): one model call per grid point but the last, the corrector
    call of step k made before the callback of step k−1."""
    alphas_cumprod = model.inner_model.inner_model.alphas_cumprod.double()
    extra_args = {} if extra_args is None else extra_args
    t_grid = torch.linspace(0, 1, 1001, dtype=torch.float64)[1:]  # uni_pc.py:107-108
    log_alpha_grid = 0.5 * alphas_cumprod.log()

    def log_alpha(t):  # piecewise linear in t
        t = t.double().clamp(t_grid[0], t_grid[-1])
        pos = (t - t_grid[0]) / (t_grid[1] - t_grid[0])
        low = pos.floor().long().clamp(max=len(t_grid) - 2)
        frac = pos - low
        return log_alpha_grid[low] * (1 - frac) + log_alpha_grid[low + 1] * frac

    def alpha_sigma_lambda(t):
        la = log_alpha(t)
        sigma = (1 - torch.exp(2 * la)).sqrt()
        return la.exp(), sigma, la - sigma.log()

    index = 0

    def data_prediction(x_t, t):  # uni_pc.py:435-457 via UniPCCFG.model (impl.py:162-167)
        t_input = (t - 1.0 / 1000) * 1000.0
        eps = model(x_t, t_input.float().expand(x_t.shape[0]), **extra_args)
        alpha, sigma, _ = alpha_sigma_lambda(t)
        return (x_t - sigma.float() * eps) / alpha.float()

    def after_update(x_t, model_x):  # impl.py:149-151
        nonlocal index
        if callback is not None:
            callback({"x": x_t, "i": index, "sigma": 0, "sigma_hat": 0, "denoised": model_x})
        index += 1

    steps = len(timesteps)
    t_start = timesteps[-1] / 1000 + 1 / 1000 if is_img2img else torch.tensor(1.0)
    grid = torch.linspace(
        float(t_start), 1.0 / 1000, steps + 1, dtype=torch.float64
    )  # time_uniform
    order = min(HOST.opts.uni_pc_order, steps)
    model_prev = [data_prediction(x, grid[0])]
    t_prev = [grid[0]]

    def update(x, t, step_order, use_corrector):  # uni_pc.py:625-743 (bh, predict_x0)
        alpha_t, sigma_t, lambda_t = alpha_sigma_lambda(t)
        _, sigma_p, lambda_p = alpha_sigma_lambda(t_prev[-1])
        h = lambda_t - lambda_p
        m0 = model_prev[-1]
        rks, d1s = [], []
        for i in range(1, step_order):
            _, _, lambda_i = alpha_sigma_lambda(t_prev[-(i + 1)])
            rk = (lambda_i - lambda_p) / h
            rks.append(rk)
            d1s.append((model_prev[-(i + 1)] - m0) / float(rk))
        rks.append(torch.tensor(1.0, dtype=torch.float64))
        hh = -h
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = hh if HOST.opts.uni_pc_variant == "bh1" else torch.expm1(hh)
        factorial, rows, b = 1, [], []
        rk_t = torch.stack(rks)
        for i in range(1, step_order + 1):
            rows.append(rk_t ** (i - 1))
            b.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        r_mat, b_vec = torch.stack(rows), torch.stack(b)
        x_base = (sigma_t / sigma_p).float() * x - (alpha_t * h_phi_1).float() * m0
        x_t = x_base
        if d1s:
            rhos_p = (
                torch.tensor([0.5], dtype=torch.float64)
                if step_order == 2
                else torch.linalg.solve(r_mat[:-1, :-1], b_vec[:-1])
            )
            pred = sum(float(r) * d for r, d in zip(rhos_p, d1s, strict=True))
            x_t = x_base - (alpha_t * b_h).float() * pred
        model_t = None
        if use_corrector:
            rhos_c = (
                torch.tensor([0.5], dtype=torch.float64)
                if step_order == 1
                else torch.linalg.solve(r_mat, b_vec)
            )
            model_t = data_prediction(x_t, t)
            corr = sum(
                (float(r) * d for r, d in zip(rhos_c[:-1], d1s, strict=True)), torch.zeros_like(x)
            )
            x_t = x_base - (alpha_t * b_h).float() * (corr + float(rhos_c[-1]) * (model_t - m0))
        return x_t, model_t

    for step in range(1, steps + 1):  # uni_pc.py:758-799 (warm-up and main loop)
        if step < order:
            step_order = step
        else:
            step_order = (
                min(order, steps + 1 - step) if HOST.opts.uni_pc_lower_order_final else order
            )
        x, model_x = update(x, grid[step], step_order, use_corrector=step < steps)
        after_update(x, model_x)
        if step < steps:
            model_prev.append(model_x)
            t_prev.append(grid[step])
            if len(model_prev) > order:
                model_prev.pop(0)
                t_prev.pop(0)
    return x


TIMESTEP_FUNCTIONS = {"DDIM": ddim, "DDIM CFG++": ddim_cfgpp, "PLMS": plms, "UniPC": unipc}


class CompVisSampler(Sampler):  # sd_samplers_timesteps.py:75-163
    def __init__(self, funcname):
        super().__init__(funcname)
        self.eta_option_field = "eta_ddim"
        self.eta_default = 0.0
        self.model_wrap_cfg = CFGDenoiserTimesteps(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_timesteps(self, p, steps):  # :86-96
        return torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)

    def sample_img2img(
        self,
        p,
        x,
        noise,
        conditioning,
        unconditional_conditioning,
        steps=None,
        image_conditioning=None,
    ):
        steps, t_enc = setup_img2img_steps(p, steps)  # :98-139
        timesteps = self.get_timesteps(p, steps)
        timesteps_sched = timesteps[:t_enc]
        alphas_cumprod = HOST.sd_model.alphas_cumprod
        a = alphas_cumprod[timesteps[t_enc]]
        xi = x * a.sqrt() + noise * (1 - a).sqrt()
        kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        if "timesteps" in parameters:
            kwargs["timesteps"] = timesteps_sched
        if "is_img2img" in parameters:
            kwargs["is_img2img"] = True
        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        self.sampler_extra_args = self.sampler_args(
            p, conditioning, unconditional_conditioning, image_conditioning
        )
        return self.run_function(t_enc + 1, xi, kwargs)

    def sample(
        self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None
    ):
        steps = steps or p.steps  # :141-163
        kwargs = self.initialize(p)
        if "timesteps" in inspect.signature(self.func).parameters:
            kwargs["timesteps"] = self.get_timesteps(p, steps)
        self.last_latent = x
        self.sampler_extra_args = self.sampler_args(
            p, conditioning, unconditional_conditioning, image_conditioning
        )
        return self.run_function(steps, x, kwargs)


def create_sampler(name: str) -> Sampler:
    """modules/sd_samplers.py:create_sampler for the names of ALL_SAMPLERS."""
    if name in KDIFFUSION:
        funcname, options = KDIFFUSION[name]
        sampler = KDiffusionSampler(
            restart_sampler if funcname == "restart_sampler" else funcname, options
        )
    elif name == "LCM":
        sampler, options = LCMSampler(sample_lcm), {}
    elif name in TIMESTEP_FUNCTIONS:
        sampler, options = CompVisSampler(TIMESTEP_FUNCTIONS[name]), {}
    else:
        raise ValueError(name)
    sampler.config = SamplerData(name, options)
    return sampler


def setup_img2img_steps(p, steps=None):  # sd_samplers_common.py:22-31
    if HOST.opts.img2img_fix_steps or steps is not None:
        requested = steps or p.steps
        steps = int(requested / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        t_enc = requested - 1
    else:
        steps = p.steps
        t_enc = int(min(p.denoising_strength, 0.999) * steps)
    return steps, t_enc
