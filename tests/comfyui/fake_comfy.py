"""ComfyUI's sampling path as the nodes meet it: the same calls, in the same order.

Re-expressed from ComfyUI v0.12.1 (upstream 3be0175, as merged into the hiddenswitch
fork 87606c5f); each piece names the file:line it mirrors. The sampler loops are the
real k-diffusion 0.0.16 functions where ComfyUI's ``comfy/k_diffusion/sampling.py``
makes the same model calls and callbacks in the same order (euler, euler_ancestral,
heun, dpm_2, dpm_2_ancestral, lms, dpm_fast, dpm_adaptive, dpmpp_2s_ancestral,
dpmpp_sde, dpmpp_2m, dpmpp_2m_sde, dpmpp_3m_sde; ComfyUI adds seeded noise samplers and
``sigmas[i+1] == 0`` shortcuts that change values, not the call order). Samplers that
exist only in ComfyUI and whose call order the labels depend on are re-expressed here:
heunpp2, exp_heun_2_x0 (SEEDS-2 with r = 1) and lcm. The rest of ComfyUI's list runs in
the live suite (tests/comfyui/live) against the real ComfyUI.

The model is a toy ε model (no weights) whose frames are mixed as AnimateDiff's motion
module mixes them, so ω and the reference frame matter. The flow path has its own toy: a
Wan-like video model on 5-D latents ``[B, C, T, h, w]`` with ``ModelSamplingDiscreteFlow``
and the ``CONST`` prediction (model_sampling.py:62-76, 244-284), Wan 2.1's latent format
(latent_formats.py:471-516), a VAE that encodes time causally as Wan's does
(comfy/sd.py:995-1004), the ``simple`` scheduler (samplers.py:405-412) and the ``_RF``
forms the ancestral samplers hand over to for ``CONST`` models (sampling.py:244-295,
367-431, 674-760).
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
import kdiffusion

K, _EXTERNAL = kdiffusion.load()


# ------------------------------------------------------ comfy/patcher_extension.py
class WrappersMP:  # :49-56
    OUTER_SAMPLE = "outer_sample"
    SAMPLER_SAMPLE = "sampler_sample"
    PREDICT_NOISE = "predict_noise"


def get_all_wrappers(wrapper_type: str, model_options: dict) -> list:  # :84-91
    wrappers = model_options.get("transformer_options", {}).get("wrappers", {})
    out: list = []
    for w in wrappers.get(wrapper_type, {}).values():
        out.extend(w)
    return out


class WrapperExecutor:  # :91-130
    def __init__(self, original, class_obj, wrappers, idx):
        self.original, self.class_obj = original, class_obj
        self.wrappers, self.idx = list(wrappers), idx
        self.is_last = idx == len(wrappers)

    def __call__(self, *args, **kwargs):
        return WrapperExecutor(self.original, self.class_obj, self.wrappers, self.idx + 1).execute(
            *args, **kwargs
        )

    def execute(self, *args, **kwargs):
        if self.is_last:
            return self.original(*args, **kwargs)
        return self.wrappers[self.idx](self, *args, **kwargs)


def copy_nested_dicts(d: dict) -> dict:  # :136-141
    new = d.copy()
    for k, v in d.items():
        if isinstance(v, dict):
            new[k] = copy_nested_dicts(v)
    return new


# ------------------------------------------------------------ comfy/model_sampling.py
class ModelSamplingDiscreteEPS:
    """``ModelSamplingDiscrete`` with ``EPS`` (model_sampling.py:30-50, 106-175)."""

    def __init__(self, linear_start=0.00085, linear_end=0.012, squared=True):
        if squared:  # SD's "linear" schedule is linear in √β (model_sampling.py make_beta_schedule)
            betas = (
                torch.linspace(linear_start**0.5, linear_end**0.5, 1000, dtype=torch.float64) ** 2
            )
        else:
            betas = torch.linspace(linear_start, linear_end, 1000, dtype=torch.float64)
        alphas_cumprod = torch.cumprod(1 - betas, 0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()
        self.sigma_data = 1.0

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape)

    def sigma(self, timestep):
        t = torch.clamp(timestep.float(), min=0, max=len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def calculate_input(self, sigma, noise):
        return noise / (sigma.view(-1, 1, 1, 1) ** 2 + 1) ** 0.5

    def calculate_denoised(self, sigma, model_output, model_input):
        return model_input - model_output * sigma.view(-1, 1, 1, 1)

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        sigma = sigma.view(())
        noise = noise * torch.sqrt(1.0 + sigma**2.0) if max_denoise else noise * sigma
        noise += latent_image
        return noise

    def inverse_noise_scaling(self, sigma, latent):
        return latent


class LatentFormatSD15:  # latent_formats.py:3-40
    latent_channels = 4
    latent_dimensions = 2


class CONST:  # model_sampling.py:62-76
    def calculate_input(self, sigma, noise):
        return noise

    def calculate_denoised(self, sigma, model_output, model_input):
        return model_input - model_output * sigma.view(-1, *[1] * (model_output.ndim - 1))

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        sigma = sigma.view(-1, *[1] * (noise.ndim - 1)) if sigma.ndim else sigma
        return sigma * noise + (1.0 - sigma) * latent_image

    def inverse_noise_scaling(self, sigma, latent):
        return latent / (1.0 - sigma)


def time_snr_shift(alpha, t):  # model_sampling.py:244-247
    if alpha == 1.0:
        return t
    return alpha * t / (1 + (alpha - 1) * t)


class ModelSamplingDiscreteFlow:  # model_sampling.py:249-284
    def __init__(self, shift=8.0, timesteps=1000, multiplier=1000):
        self.shift, self.multiplier = shift, multiplier
        self.sigmas = self.sigma(torch.arange(1, timesteps + 1, 1) / timesteps * multiplier)

    @property
    def sigma_min(self):
        return self.sigmas[0]

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def timestep(self, sigma):
        return sigma * self.multiplier

    def sigma(self, timestep):
        return time_snr_shift(self.shift, timestep / self.multiplier)


class WanFlowSampling(ModelSamplingDiscreteFlow, CONST):
    """What ``model_sampling()`` builds for Wan 2.1 (model_base.py: the sampling class
    and the prediction type mixed into one class; supported_models.py WAN21_T2V: shift 8)."""


class LatentFormatWan21:  # latent_formats.py:471-516 (per-channel mean and std)
    latent_channels = 16
    latent_dimensions = 3

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(21)
        self.mean = (0.5 * torch.randn(16, generator=g)).view(1, 16, 1, 1, 1)
        self.std = (1.5 + torch.rand(16, generator=g)).view(1, 16, 1, 1, 1)
        self.scale_factor = 1.0

    def process_in(self, latent):
        return (latent - self.mean) * self.scale_factor / self.std

    def process_out(self, latent):
        return latent * self.std / self.scale_factor + self.mean


class ToyWanModel:
    """A toy flow video model on ``[B, 16, T, h, w]``: the latent frames mixed in time (as
    Wan's attention mixes them), a velocity out (``BaseModel.apply_model``: the model's
    output through ``calculate_denoised``)."""

    def __init__(self, seed: int = 0, shift: float = 8.0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.model_sampling = WanFlowSampling(shift=shift)
        self.latent_format = LatentFormatWan21()
        self.mix_logits = torch.randn(64, 64, generator=g)
        self.shift = torch.randn(16, generator=g).view(1, 16, 1, 1, 1)
        self.calls = 0
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def process_latent_in(self, latent):
        return self.latent_format.process_in(latent)

    def process_latent_out(self, latent):
        return self.latent_format.process_out(latent)

    def apply_model(self, x, t, cond_sign):
        self.calls += 1
        self.inputs.append((x[: x.shape[0] // len(cond_sign)].clone(), t.clone()))
        s = t.view(-1, 1, 1, 1, 1)
        frames = x.shape[2]
        mix = torch.softmax(self.mix_logits[:frames, :frames], dim=1)
        mixed = torch.einsum("fg,bcghw->bcfhw", mix, x)
        sign = torch.cat([torch.full((x.shape[0] // len(cond_sign),), c) for c in cond_sign])
        denoised = torch.tanh(mixed) * (1 - s) + sign.view(-1, 1, 1, 1, 1) * 0.2 * self.shift
        velocity = (x - denoised) / s
        return self.model_sampling.calculate_denoised(t, velocity, x)


class CausalVideoVAE:
    """``VAE.encode`` of a video VAE (comfy/sd.py:995-1004, ``latent_dim = 3``): the IMAGE
    batch ``[N, H, W, 3]`` becomes one video ``[1, 3, N, H, W]``; latent frame 0 encodes
    picture 0 alone and each later one the next 4 pictures (Wan's causal VAE), so a still
    video's latent frames are not one picture's latent repeated."""

    latent_dim = 3

    def __init__(self, channels: int = 16, seed: int = 5) -> None:
        g = torch.Generator().manual_seed(seed)
        self.first = torch.randn(channels, 3, generator=g)
        self.rest = torch.randn(channels, 3, generator=g)

    def encode(self, pixels):
        video = pixels.movedim(-1, 1).movedim(1, 0).unsqueeze(0)  # [1, 3, N, H, W]
        pooled = torch.nn.functional.avg_pool3d(video, (1, 8, 8))
        frames = [torch.einsum("oc,bchw->bohw", self.first, pooled[:, :, 0])]
        for start in range(1, pooled.shape[2], 4):
            group = pooled[:, :, start : start + 4].mean(dim=2)
            frames.append(torch.einsum("oc,bchw->bohw", self.rest, group))
        return torch.stack(frames, dim=2)


class ImageVAE:
    """``VAE.encode`` of an image VAE (``latent_dim = 2``): one latent per picture."""

    latent_dim = 2

    def __init__(self, seed: int = 6) -> None:
        self.weight = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))

    def encode(self, pixels):
        pooled = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1), 8)
        return torch.einsum("oc,bchw->bohw", self.weight, pooled)


class ToyVideoModel:
    """``BaseModel.apply_model`` (comfy/model_base.py) around a toy ε network."""

    scale_factor = 0.18215  # latent_formats.SD15
    latent_format = LatentFormatSD15()

    def __init__(self, seed: int = 0, frames_mixed: bool = True) -> None:
        g = torch.Generator().manual_seed(seed)
        self.model_sampling = ModelSamplingDiscreteEPS()
        self.mix_logits = torch.randn(64, 64, generator=g)
        self.shift = torch.randn(4, generator=g).view(1, 4, 1, 1)
        self.frames_mixed = frames_mixed
        self.calls = 0

    def process_latent_in(self, latent):
        return latent * self.scale_factor

    def process_latent_out(self, latent):
        return latent / self.scale_factor

    def apply_model(self, x, t, cond_sign):
        self.calls += 1
        ms = self.model_sampling
        sigma = t
        xc = ms.calculate_input(sigma, x)
        s = sigma.view(-1, 1, 1, 1)
        mixed = x
        if self.frames_mixed:
            frames = x.shape[0] // len(cond_sign) if len(cond_sign) > 1 else x.shape[0]
            mix = torch.softmax(self.mix_logits[:frames, :frames], dim=1)
            videos = x.reshape(-1, frames, *x.shape[1:])
            mixed = torch.einsum("fg,bgchw->bfchw", mix, videos).reshape(x.shape)
        sign = torch.cat([torch.full((x.shape[0] // len(cond_sign),), c) for c in cond_sign])
        denoised = torch.tanh(mixed / (1 + s)) + sign.view(-1, 1, 1, 1) * 0.1 * self.shift / (1 + s)
        eps = (x - denoised) / s
        del xc
        return ms.calculate_denoised(sigma, eps, x)


# ------------------------------------------------------------- comfy/model_patcher.py
class ModelPatcher:
    def __init__(self, model: ToyVideoModel) -> None:
        self.model = model
        self.model_options: dict = {"transformer_options": {}}
        self.wrappers: dict = {}
        self.load_device = torch.device("cpu")

    def clone(self) -> ModelPatcher:  # :311-350
        n = ModelPatcher(self.model)
        n.model_options = copy.deepcopy(self.model_options)
        n.wrappers = {k: {k1: list(w1) for k1, w1 in w.items()} for k, w in self.wrappers.items()}
        return n

    def set_model_sampler_post_cfg_function(self, fn, disable_cfg1_optimization=False):  # :418
        opts = self.model_options
        opts["sampler_post_cfg_function"] = [*opts.get("sampler_post_cfg_function", []), fn]
        if disable_cfg1_optimization:
            opts["disable_cfg1_optimization"] = True

    def add_wrapper_with_key(self, wrapper_type, key, wrapper):  # :1064-1066
        self.wrappers.setdefault(wrapper_type, {}).setdefault(key, []).append(wrapper)

    def get_model_object(self, name):
        return getattr(self.model, name)


def prepare_model_patcher(patcher: ModelPatcher, model_options: dict) -> None:
    """comfy/sampler_helpers.py prepare_model_patcher: the patcher's wrappers join the
    model options' ``transformer_options["wrappers"]`` for this sampling."""
    to = model_options.setdefault("transformer_options", {})
    wrappers = to.setdefault("wrappers", {})
    for wrapper_type, by_key in patcher.wrappers.items():
        for key, ws in by_key.items():
            wrappers.setdefault(wrapper_type, {}).setdefault(key, []).extend(ws)


# ----------------------------------------------------------------- comfy/samplers.py
def cfg_function(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options):  # :352-366
    cfg_result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        args = {
            "denoised": cfg_result,
            "cond": None,
            "uncond": None,
            "cond_scale": cond_scale,
            "model": model,
            "uncond_denoised": uncond_pred,
            "cond_denoised": cond_pred,
            "sigma": timestep,
            "model_options": model_options,
            "input": x,
        }
        cfg_result = fn(args)
    return cfg_result


def sampling_function(model, x, timestep, cond_scale, model_options):  # :369-388
    # calc_cond_batch (:200-346) batches cond and uncond in one apply_model call
    both = model.apply_model(torch.cat([x, x]), torch.cat([timestep, timestep]), (1.0, -1.0))
    cond_pred, uncond_pred = both.chunk(2)
    return cfg_function(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options)


class KSamplerX0Inpaint:  # :390-405
    def __init__(self, model, sigmas):
        self.inner_model, self.sigmas = model, sigmas

    def __call__(self, x, sigma, denoise_mask, model_options={}, seed=None):  # noqa: B006
        return self.inner_model(x, sigma, model_options=model_options, seed=seed)


class Sampler:  # :713-720
    def max_denoise(self, model_wrap, sigmas):
        max_sigma = float(model_wrap.inner_model.model_sampling.sigma_max)
        sigma = float(sigmas[0])
        return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma


class KSAMPLER(Sampler):  # :728-753
    def __init__(self, sampler_function, extra_options=None, inpaint_options=None):
        self.sampler_function = sampler_function
        self.extra_options = extra_options or {}
        self.inpaint_options = inpaint_options or {}

    def sample(
        self,
        model_wrap,
        sigmas,
        extra_args,
        callback,
        noise,
        latent_image=None,
        denoise_mask=None,
        disable_pbar=False,
    ):
        extra_args["denoise_mask"] = denoise_mask
        model_k = KSamplerX0Inpaint(model_wrap, sigmas)
        model_k.latent_image = latent_image
        model_k.noise = noise
        ms = model_wrap.inner_model.model_sampling
        noise = ms.noise_scaling(
            sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas)
        )
        k_callback = None
        total_steps = len(sigmas) - 1
        if callback is not None:
            k_callback = lambda x: callback(x["i"], x["denoised"], x["x"], total_steps)  # noqa: E731
        samples = self.sampler_function(
            model_k,
            noise,
            sigmas,
            extra_args=extra_args,
            callback=k_callback,
            disable=disable_pbar,
            **self.extra_options,
        )
        return ms.inverse_noise_scaling(sigmas[-1], samples)


# ---- ComfyUI-only sampler loops (comfy/k_diffusion/sampling.py), call order kept
def sample_heunpp2(
    model,
    x,
    sigmas,
    extra_args=None,
    callback=None,
    disable=None,
    s_churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
):
    """sampling.py:1055-1110 (without churn)."""
    s_in = x.new_ones([x.shape[0]])
    s_end = sigmas[-1]
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i]
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = K.to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised}
            )
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == s_end:
            x = x + d * dt
        elif sigmas[i + 2] == s_end:
            x_2 = x + d * dt
            d_2 = K.to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
        else:
            x_2 = x + d * dt
            d_2 = K.to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            d_3 = K.to_d(x_3, sigmas[i + 2], model(x_3, sigmas[i + 2] * s_in, **extra_args))
            w = 3 * sigmas[0]
            w2, w3 = sigmas[i + 1] / w, sigmas[i + 2] / w
            x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x


def sample_exp_heun_2_x0(
    model, x, sigmas, extra_args=None, callback=None, disable=None, solver_type="phi_2"
):
    """sampling.py:1594-1660 with r = 1, η = 0 (:1656-1659): a second call at σ_(i+1),
    after the step's callback, unless σ_(i+1) = 0. The update is Heun's in σ (the labels
    depend on the call order only)."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised}
            )
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        d = K.to_d(x, sigmas[i], denoised)
        x_2 = x + d * (sigmas[i + 1] - sigmas[i])
        d_2 = K.to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
        x = x + (d + d_2) / 2 * (sigmas[i + 1] - sigmas[i])
    return x


def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """sampling.py:1037-1052: the clean estimate, re-noised to the next σ."""
    g = torch.Generator().manual_seed(int(extra_args.get("seed", 0) or 0))
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised}
            )
        x = denoised
        if sigmas[i + 1] > 0:
            noise = torch.randn(x.shape, generator=g)
            x = model.inner_model.inner_model.model_sampling.noise_scaling(sigmas[i + 1], noise, x)
    return x


def _is_const(model) -> bool:
    return isinstance(model.inner_model.inner_model.model_sampling, CONST)


def _rf_down(sigma, sigma_next, eta):
    """The RF forms' σ_down and re-noise factor (sampling.py:268-295, 399-431, 712-760)."""
    down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    a_next, a_down = 1 - sigma_next, 1 - down
    renoise = (sigma_next**2 - down**2 * a_next**2 / a_down**2) ** 0.5
    return down, a_next / a_down, renoise


def sample_euler_ancestral(
    model,
    x,
    sigmas,
    extra_args=None,
    callback=None,
    disable=None,
    eta=1.0,
    s_noise=1.0,
    noise_sampler=None,
):
    """sampling.py:244-295: the RF form for ``CONST`` models (one call per step)."""
    if not _is_const(model):
        return K.sample_euler_ancestral(
            model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler
        )
    g = torch.Generator().manual_seed(int(extra_args.get("seed", 0) or 0))
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised}
            )
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        down, ratio, renoise = _rf_down(sigmas[i], sigmas[i + 1], eta)
        x = (down / sigmas[i]) * x + (1 - down / sigmas[i]) * denoised
        if eta > 0:
            x = ratio * x + torch.randn(x.shape, generator=g) * s_noise * renoise
    return x


def sample_dpm_2_ancestral(
    model,
    x,
    sigmas,
    extra_args=None,
    callback=None,
    disable=None,
    eta=1.0,
    s_noise=1.0,
    noise_sampler=None,
):
    """sampling.py:367-431: the RF form's second call at the log-midpoint of σ_i and its
    own σ_down, after the callback, unless σ_down = 0."""
    if not _is_const(model):
        return K.sample_dpm_2_ancestral(
            model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler
        )
    g = torch.Generator().manual_seed(int(extra_args.get("seed", 0) or 0))
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        down, ratio, renoise = _rf_down(sigmas[i], sigmas[i + 1], eta)
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised}
            )
        d = K.to_d(x, sigmas[i], denoised)
        if down == 0:
            x = x + d * (down - sigmas[i])
            continue
        mid = sigmas[i].log().lerp(down.log(), 0.5).exp()
        x_2 = x + d * (mid - sigmas[i])
        d_2 = K.to_d(x_2, mid, model(x_2, mid * s_in, **extra_args))
        x = x + d_2 * (down - sigmas[i])
        x = ratio * x + torch.randn(x.shape, generator=g) * s_noise * renoise
    return x


def sample_dpmpp_2s_ancestral(
    model,
    x,
    sigmas,
    extra_args=None,
    callback=None,
    disable=None,
    eta=1.0,
    s_noise=1.0,
    noise_sampler=None,
):
    """sampling.py:674-760: the RF form's second call (at σ_s, between σ_i and its σ_down)
    after the callback whenever σ_(i+1) > 0."""
    if not _is_const(model):
        return K.sample_dpmpp_2s_ancestral(
            model, x, sigmas, extra_args, callback, disable, eta, s_noise, noise_sampler
        )
    g = torch.Generator().manual_seed(int(extra_args.get("seed", 0) or 0))
    s_in = x.new_ones([x.shape[0]])
    lam = lambda sigma: ((1 - sigma) / sigma).log()  # noqa: E731
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        down, ratio, renoise = _rf_down(sigmas[i], sigmas[i + 1], eta)
        if callback is not None:
            callback(
                {"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised}
            )
        if sigmas[i + 1] == 0:
            x = x + K.to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        else:
            if sigmas[i] == 1.0:  # log((1 - σ)/σ) has no value there
                sigma_s = torch.tensor(0.9999)
            else:
                s = lam(sigmas[i]) + 0.5 * (lam(down) - lam(sigmas[i]))
                sigma_s = 1 / (s.exp() + 1)
            u = (sigma_s / sigmas[i]) * x + (1 - sigma_s / sigmas[i]) * denoised
            d_i = model(u, sigma_s * s_in, **extra_args)
            x = (down / sigmas[i]) * x + (1 - down / sigmas[i]) * d_i
        if sigmas[i + 1] > 0 and eta > 0:
            x = ratio * x + torch.randn(x.shape, generator=g) * s_noise * renoise
    return x


_COMFY_ONLY = {
    "heunpp2": sample_heunpp2,
    "exp_heun_2_x0": sample_exp_heun_2_x0,
    "lcm": sample_lcm,
    "euler_ancestral": sample_euler_ancestral,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
}


def ksampler(sampler_name, extra_options=None, inpaint_options=None):  # :756-777
    if sampler_name == "dpm_fast":

        def dpm_fast_function(model, noise, sigmas, extra_args, callback, disable):
            sigma_min = sigmas[-1]
            if sigma_min == 0:
                sigma_min = sigmas[-2]
            total_steps = len(sigmas) - 1
            return K.sample_dpm_fast(
                model,
                noise,
                sigma_min,
                sigmas[0],
                total_steps,
                extra_args=extra_args,
                callback=callback,
                disable=disable,
            )

        function = dpm_fast_function
    elif sampler_name == "dpm_adaptive":

        def dpm_adaptive_function(model, noise, sigmas, extra_args, callback, disable, **options):
            sigma_min = sigmas[-1]
            if sigma_min == 0:
                sigma_min = sigmas[-2]
            return K.sample_dpm_adaptive(
                model,
                noise,
                sigma_min,
                sigmas[0],
                extra_args=extra_args,
                callback=callback,
                disable=disable,
                **options,
            )

        function = dpm_adaptive_function
    elif sampler_name in _COMFY_ONLY:
        function = _COMFY_ONLY[sampler_name]
    else:
        function = getattr(K, f"sample_{sampler_name}")
    return KSAMPLER(function, extra_options, inpaint_options)


def sampler_object(name):  # :1102-1111
    if name == "ddim":
        return ksampler("euler", inpaint_options={"random": True})
    return ksampler(name)


#: The samplers this fake runs (ComfyUI's KSAMPLER_NAMES, :722-726, that k-diffusion 0.0.16
#: or this file provides).
SAMPLERS = [
    "euler",
    "euler_ancestral",
    "heun",
    "heunpp2",
    "exp_heun_2_x0",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_3m_sde",
    "lcm",
    "ddim",
]
STOCHASTIC = {
    "euler_ancestral",
    "dpm_2_ancestral",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
    "dpmpp_2m_sde",
    "dpmpp_3m_sde",
    "lcm",
}


def normal_scheduler(ms: ModelSamplingDiscreteEPS, steps: int) -> torch.Tensor:  # :431-455
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    timesteps = torch.linspace(float(start), float(end), steps)
    return torch.FloatTensor([*(float(ms.sigma(t)) for t in timesteps), 0.0])


def simple_scheduler(ms, steps: int) -> torch.Tensor:  # :405-412
    stride = len(ms.sigmas) / steps
    return torch.FloatTensor(
        [*(float(ms.sigmas[-(1 + int(i * stride))]) for i in range(steps)), 0.0]
    )


def calculate_sigmas(ms, scheduler: str, steps: int) -> torch.Tensor:  # :1092-1100
    if scheduler == "simple":
        return simple_scheduler(ms, steps)
    if scheduler == "karras":
        return K.get_sigmas_karras(
            n=steps, sigma_min=float(ms.sigma_min), sigma_max=float(ms.sigma_max)
        )
    if scheduler == "exponential":
        return K.get_sigmas_exponential(
            n=steps, sigma_min=float(ms.sigma_min), sigma_max=float(ms.sigma_max)
        )
    return normal_scheduler(ms, steps)


class CFGGuider:  # :920-1063
    def __init__(self, model_patcher: ModelPatcher, cfg: float = 5.0):
        self.model_patcher = model_patcher
        self.model_options = model_patcher.model_options
        self.cfg = cfg

    def __call__(self, x, timestep, model_options={}, seed=None):  # noqa: B006  :951-962
        return sampling_function(self.inner_model, x, timestep, self.cfg, model_options)

    def inner_sample(
        self, noise, latent_image, sampler, sigmas, denoise_mask, callback, seed
    ):  # :964-980
        if latent_image is not None and torch.count_nonzero(latent_image) > 0:
            latent_image = self.inner_model.process_latent_in(latent_image)
        extra_model_options = copy_nested_dicts(self.model_options)
        extra_model_options.setdefault("transformer_options", {})["sample_sigmas"] = sigmas
        extra_args = {"model_options": extra_model_options, "seed": seed}
        executor = WrapperExecutor(
            sampler.sample,
            sampler,
            get_all_wrappers(WrappersMP.SAMPLER_SAMPLE, extra_args["model_options"]),
            0,
        )
        samples = executor.execute(
            self, sigmas, extra_args, callback, noise, latent_image, denoise_mask, False
        )
        return self.inner_model.process_latent_out(samples.to(torch.float32))

    def outer_sample(
        self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, seed=None
    ):  # :982-1001
        self.inner_model = self.model_patcher.model
        try:
            return self.inner_sample(
                noise, latent_image, sampler, sigmas, denoise_mask, callback, seed
            )
        finally:
            del self.inner_model

    def sample(
        self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, seed=None
    ):  # :1003-1063
        if sigmas.shape[-1] == 0:
            return latent_image
        orig = self.model_options
        try:
            self.model_options = copy_nested_dicts(self.model_options)
            prepare_model_patcher(self.model_patcher, self.model_options)
            executor = WrapperExecutor(
                self.outer_sample,
                self,
                get_all_wrappers(WrappersMP.OUTER_SAMPLE, self.model_options),
                0,
            )
            return executor.execute(
                noise, latent_image, sampler, sigmas, denoise_mask, callback, seed
            )
        finally:
            self.model_options = orig


class KSampler:  # :1113-1179
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset(
        {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"}
    )

    def __init__(self, model: ModelPatcher, steps, sampler, scheduler, denoise=None):
        self.model, self.sampler, self.scheduler = model, sampler, scheduler
        self.set_steps(steps, denoise)

    def calculate_sigmas(self, steps):
        discard = self.sampler in self.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
        sigmas = calculate_sigmas(self.model.model.model_sampling, self.scheduler, steps + discard)
        if discard:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        return sigmas

    def set_steps(self, steps, denoise=None):
        if denoise is None or denoise > 0.9999:
            self.sigmas = self.calculate_sigmas(steps)
        else:
            new_steps = int(steps / denoise)
            self.sigmas = self.calculate_sigmas(new_steps)[-(steps + 1) :]

    def sample(
        self,
        noise,
        cfg,
        latent_image,
        start_step=None,
        last_step=None,
        force_full_denoise=False,
        callback=None,
        seed=None,
        sigmas=None,
    ):
        if sigmas is None:
            sigmas = self.sigmas
        if last_step is not None and last_step < (len(sigmas) - 1):
            sigmas = sigmas[: last_step + 1]
            if force_full_denoise:
                sigmas[-1] = 0
        if start_step is not None:
            if start_step < (len(sigmas) - 1):
                sigmas = sigmas[start_step:]
            else:
                return latent_image
        guider = CFGGuider(self.model, cfg)
        return guider.sample(
            noise, latent_image, sampler_object(self.sampler), sigmas, None, callback, seed
        )


# --------------------------------------------------------------- nodes.py KSampler(Advanced)
def common_ksampler(
    model,
    seed,
    steps,
    cfg,
    sampler_name,
    scheduler,
    latent,
    denoise=1.0,
    disable_noise=False,
    start_step=None,
    last_step=None,
    force_full_denoise=False,
):  # nodes.py:1539-1561
    latent_image = latent["samples"]
    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype)
    else:
        noise = torch.randn(
            latent_image.size(), dtype=latent_image.dtype, generator=torch.manual_seed(seed)
        )
    previews: list[int] = []
    callback = lambda step, x0, x, total: previews.append(step)  # noqa: E731  latent_preview.prepare_callback
    sampler = KSampler(model, steps, sampler_name, scheduler, denoise)
    samples = sampler.sample(
        noise, cfg, latent_image, start_step, last_step, force_full_denoise, callback, seed
    )
    return {"samples": samples}


def ksampler_node(
    model, seed, steps, cfg, sampler_name, scheduler, latent, denoise=1.0
):  # nodes.py KSampler.sample
    return common_ksampler(
        model, seed, steps, cfg, sampler_name, scheduler, latent, denoise=denoise
    )


def ksampler_advanced_node(
    model,
    add_noise,
    seed,
    steps,
    cfg,
    sampler_name,
    scheduler,
    latent,
    start_at_step,
    end_at_step,
    return_with_leftover_noise,
):  # nodes.py KSamplerAdvanced.sample
    return common_ksampler(
        model,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        latent,
        denoise=1.0,
        disable_noise=add_noise == "disable",
        start_step=start_at_step,
        last_step=end_at_step,
        force_full_denoise=return_with_leftover_noise != "enable",
    )


def sampler_custom_node(
    model, add_noise, seed, cfg, sampler_name, sigmas, latent
):  # comfy_extras/nodes_custom_sampler.py SamplerCustom
    latent_image = latent["samples"]
    noise = (
        torch.randn(latent_image.size(), generator=torch.manual_seed(seed))
        if add_noise
        else torch.zeros(latent_image.size())
    )
    guider = CFGGuider(model, cfg)
    return {
        "samples": guider.sample(
            noise, latent_image, sampler_object(sampler_name), sigmas, None, None, seed
        )
    }
