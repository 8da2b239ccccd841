"""One call: a picture and a stock diffusers video pipeline in, a rectified video out."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch

from lib_rectify import RectifyError, RectifyParams
from lib_rectify.anchors import anchor_positions, end_anchored_clean
from lib_rectify.weights import resolve_reference_frame

from . import models as vm
from . import schedulers as sch
from .hook import SchedulerHook, hooked_scheduler

#: Pipelines whose loop the hook was checked against (diffusers 0.42.1).
PIPELINES = (
    "AnimateDiffPipeline",
    "AnimateDiffSDXLPipeline",
    "TextToVideoSDPipeline",
    *vm.MODELS,
)


def as_params(params: RectifyParams | Mapping[str, Any] | None) -> RectifyParams:
    """``RectifyParams``, or its dict form (the WebUI API's keys); ``None`` = enabled defaults."""
    if params is None:
        return RectifyParams(enabled=True)
    if isinstance(params, RectifyParams):
        return params
    if isinstance(params, Mapping):
        return RectifyParams.from_api({"enabled": True, **params})
    raise RectifyError("params", type(params).__name__, "RectifyParams or a dict of its fields")


def _spatial_scale(pipe: Any) -> int:
    model = vm.model_for(pipe)
    if model is not None:
        return vm.spatial_scale(model, pipe)
    return getattr(pipe, "vae_scale_factor", None) or pipe.vae_scale_factor_spatial


def encode_picture(
    pipe: Any, image: Any, height: int, width: int, generator: Any = None, frames: int = 1
) -> torch.Tensor:
    """The picture's latent ``Z`` ``[1, C, h, w]``: one VAE encoding (its mean), scaled.

    The paper encodes the picture once and repeats it; the posterior mean keeps the
    result independent of the random state. For the transformer pipelines (Wan,
    HunyuanVideo, LTX, Mochi, CogVideoX: causal VAEs) it is the picture held still over
    ``frames`` pictures, encoded once and normalised as that pipeline decodes:
    ``[1, C, T, h, w]`` (``models.encode_still_video``).
    """
    from diffusers.image_processor import VaeImageProcessor

    vae = pipe.vae
    processor = VaeImageProcessor(vae_scale_factor=_spatial_scale(pipe))
    pixels = processor.preprocess(image, height=height, width=width)
    if pixels.shape[0] != 1:
        raise RectifyError("image", f"{pixels.shape[0]} images", "one picture")
    model = vm.model_for(pipe)
    if model is not None:
        return vm.encode_still_video(model, pipe, pixels, frames or 1)
    dtype = vae.dtype
    upcast = dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        with torch.no_grad():
            posterior = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist
            latent = posterior.mode()
    finally:
        if upcast:
            vae.to(dtype)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((latent - shift) * vae.config.scaling_factor).to(dtype)


def start_index(steps: int, strength: float) -> int:
    """How many of ``steps`` to skip for ``strength`` (as diffusers' img2img pipelines do)."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise RectifyError("strength", strength, "a number in (0, 1]")
    if not (math.isfinite(strength) and 0.0 < strength <= 1.0):
        raise RectifyError("strength", strength, "a number in (0, 1]")
    kept = min(int(steps * strength), steps)
    if kept < 1:
        raise RectifyError(
            "strength", strength, f"large enough to keep one of {steps} steps (≥ {1 / steps:g})"
        )
    return steps - kept


def start_latents(
    scheduler: Any,
    clean: torch.Tensor,
    noise: torch.Tensor,
    *,
    num_inference_steps: int,
    strength: float = 1.0,
    device: torch.device | str | None = None,
    sigma_start: float = 1.0,
    schedule: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, int]:
    """The paper's noising stage for ``scheduler``: ``Z`` noised to the first timestep.

    Returns what to pass as the pipeline's ``latents`` (divided by ``init_noise_sigma``,
    which the pipeline multiplies back) and the first step's schedule position.
    ``clean`` and ``noise`` are ``[B, C, L, h, w]``. A flow scheduler's schedule is first
    rescaled to start at ``sigma_start``: ``x = (1 − σ₀)·Z + σ₀·n``. A VP schedule that
    starts at ᾱ = 0 (zero terminal SNR, CogVideoX) starts, with ``sigma_start`` < 1, at its
    first step whose noise level is at most ``sigma_start`` as a flow σ
    (``schedulers.zero_snr_start``). ``schedule``: the keyword arguments the pipeline
    gives ``set_timesteps`` (default ``num_inference_steps`` alone).
    """
    facts = sch.facts_for(scheduler)
    first = start_index(num_inference_steps, strength)
    if schedule is None:
        scheduler.set_timesteps(num_inference_steps, device=device)
    else:
        scheduler.set_timesteps(device=device, **schedule)
    if facts.space == "flow":
        if first:
            raise RectifyError(
                "strength",
                strength,
                "1 with a flow-matching scheduler (params.sigma_start sets where sampling starts)",
            )
        sch.rescale_flow_schedule(scheduler, sigma_start)
        sigma = sch.step_sigmas(scheduler, 0, 1, noise.device)[0]  # an inverted table: 1 − it
        x = (1 - sigma) * clean.to(torch.float32) + sigma * noise.to(torch.float32)
        return x.to(noise.dtype), first
    if sigma_start < 1.0:
        first = sch.zero_snr_start(scheduler, facts, first, sigma_start)
    t0 = scheduler.timesteps[first]
    abar = sch.alpha_cumprod(scheduler, facts, first, t0, noise.device)
    x = abar.sqrt() * clean.to(torch.float32) + (1 - abar).sqrt() * noise.to(torch.float32)
    sample = sch.from_vp(x, facts, abar)
    init_sigma = scheduler.init_noise_sigma  # a number, or a tensor the division keeps where it is
    return (sample / init_sigma).to(noise.dtype), first


def _batch_size(prompt: Any, prompt_embeds: Any) -> int:
    if prompt_embeds is not None:
        return int(prompt_embeds.shape[0])
    if isinstance(prompt, list):
        return len(prompt)
    return 1


#: Per-prompt tensors a pipeline may be given instead of prompts (the SDXL one adds pooled;
#: HunyuanVideo, LTX and Mochi take attention masks alongside their embeddings).
EMBEDDINGS = (
    "prompt_embeds",
    "negative_prompt_embeds",
    "pooled_prompt_embeds",
    "negative_pooled_prompt_embeds",
    "prompt_attention_mask",
    "negative_prompt_attention_mask",
)


def repeat_per_prompt(prompt: Any, kwargs: dict[str, Any], copies: int) -> Any:
    """Each prompt ``copies`` times over: several videos per prompt.

    The AnimateDiff pipelines of diffusers 0.42.1 set ``num_videos_per_prompt = 1``
    whatever they are given, and ModelScope's has no such argument; repeating the
    prompts (and negative prompts and embeddings alongside) gives every pipeline the
    same batch of videos. Returns the new prompt; ``kwargs`` is updated in place.
    """
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise RectifyError("num_videos_per_prompt", copies, "a whole number ≥ 1")
    if copies == 1:
        return prompt

    def repeat(value: Any) -> Any:
        if isinstance(value, str):
            return [value] * copies
        if isinstance(value, list):
            return [item for item in value for _ in range(copies)]
        return value

    for name in EMBEDDINGS:
        if kwargs.get(name) is not None:
            kwargs[name] = kwargs[name].repeat_interleave(copies, dim=0)
    if prompt is not None and kwargs.get("negative_prompt") is not None:
        kwargs["negative_prompt"] = repeat(kwargs["negative_prompt"])
    for name in ("prompt_2", "negative_prompt_2"):
        if kwargs.get(name) is not None:
            kwargs[name] = repeat(kwargs[name])
    return repeat(prompt)


def image_to_video(
    pipe: Any,
    image: Any = None,
    params: RectifyParams | Mapping[str, Any] | None = None,
    *,
    prompt: Any = None,
    num_frames: int | None = None,
    num_inference_steps: int = 25,
    strength: float = 1.0,
    height: int | None = None,
    width: int | None = None,
    num_videos_per_prompt: int = 1,
    generator: torch.Generator | list[torch.Generator] | None = None,
    reference_latent: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    end_image: Any = None,
    end_latent: torch.Tensor | None = None,
    **pipe_kwargs: Any,
) -> Any:
    """Animate ``image`` with ``pipe`` (a stock diffusers video pipeline), keeping the picture.

    The picture is encoded once, repeated over ``num_frames`` frames and noised to the
    first timestep of ``pipe.scheduler`` (the paper's noising stage; ``strength`` < 1
    starts later in the schedule). The pipeline then runs as usual, with its guided
    noise prediction rectified inside the window τ of ``params``: ω per frame, the
    reference frame exact. Everything else (prompt, guidance, IP-Adapter images,
    ``output_type`` ...) goes to the pipeline unchanged; its output is returned.

    ``num_frames`` None is the pipeline's own default: 16 for the UNet pipelines, the
    ``__call__`` default of a transformer pipeline (Wan 81, ...; ``models.default_frames``).
    A transformer pipeline's picture is held still over the pictures that pipeline really
    generates for ``num_frames`` (WanPipeline rounds a length that is not ``4k + 1`` as it
    does itself, with its warning: ``models.pipeline_frames``).

    ``end_image`` (or its latent, ``end_latent``) holds the other end of the video on a
    second picture (docs/two-anchors.md; ``params.reference_frame`` 0 or -1, and a
    window to 100 % for exact ends); ``params.end_anchor`` false ignores it. For the
    transformer pipelines it is a still video too (``end_latent`` ``[1, C, T, h, w]``, as
    ``encode_picture`` gives it), and the clean video is the linear blend of the two still
    videos over the latent frames, as in the ComfyUI node.

    ``reference_latent`` (``[1, C, h, w]``, already scaled) replaces ``image``;
    ``noise`` (``[B, C, L, h, w]``) replaces the random per-frame noise. Disabled
    ``params`` or an empty window give exactly the stock pipeline started from the
    same latents.
    """
    params = as_params(params)
    name = type(pipe).__name__
    if not hasattr(pipe, "scheduler") or not hasattr(pipe, "vae"):
        raise RectifyError("pipe", name, "a diffusers video pipeline: " + ", ".join(PIPELINES))
    for flag, what in (("free_init_enabled", "FreeInit"), ("free_noise_enabled", "FreeNoise")):
        if getattr(pipe, flag, False):
            raise RectifyError(
                what,
                "enabled",
                f"disabled (pipe.{'disable_free_init' if what == 'FreeInit' else 'disable_free_noise'}())",
            )
    if "latents" in pipe_kwargs:
        raise RectifyError(
            "latents", "given", "not given: the start latents are the noised picture"
        )
    model = vm.model_for(pipe)  # a transformer video pipeline (Wan, HunyuanVideo, ...)
    if num_frames is None:  # the pipeline's own default
        num_frames = vm.default_frames(model, pipe) if model is not None else 16
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise RectifyError(
            "num_frames", num_frames, "a whole number ≥ 1 (or None: the pipeline's default)"
        )
    if (
        isinstance(num_inference_steps, bool)
        or not isinstance(num_inference_steps, int)
        or num_inference_steps < 1
    ):
        raise RectifyError("num_inference_steps", num_inference_steps, "a whole number ≥ 1")
    if model is None and not hasattr(pipe, "unet"):
        raise RectifyError("pipe", name, "one of " + ", ".join(PIPELINES))
    scheduler = pipe.scheduler
    if model is not None:
        vm.check_scheduler(model, scheduler)
        for field in vm.SCHEDULE_ARGUMENTS:
            if pipe_kwargs.get(field) is not None:
                raise RectifyError(
                    field,
                    "given",
                    f"not given: the adapter starts from {name}'s own schedule "
                    "(params.sigma_start sets where it starts)",
                )
    unet = pipe.transformer if model is not None else pipe.unet
    scale = _spatial_scale(pipe)
    if model is not None:  # the pipeline's own defaults; latent frames (F − 1)//t + 1
        default_height, default_width = vm.default_size(model, pipe)
        height = height or default_height
        width = width or default_width
        latent_frames = vm.latent_frames(model, pipe, num_frames)
        pictures = vm.pipeline_frames(model, pipe, num_frames)  # what the pipeline generates
        patch_t = getattr(unet.config, "patch_size_t", None)
        if model.name == "CogVideoXPipeline" and patch_t and latent_frames % patch_t:
            # CogVideoX 1.5 pads the latent frames at the front, then drops them
            # (pipeline_cogvideox.py:682-687, 786): the picture's frame would be dropped.
            raise RectifyError(
                "num_frames",
                num_frames,
                f"a length whose latent frames ((num_frames − 1)//"
                f"{getattr(pipe, model.temporal)} + 1) are a multiple of {patch_t} "
                f"with {name} (patch_size_t {patch_t})",
            )
    else:
        sample_size = unet.config.sample_size
        if isinstance(sample_size, (list, tuple)):
            sample_size = sample_size[0]
        height = height or sample_size * scale
        width = width or sample_size * scale
        latent_frames = pictures = num_frames
    device = getattr(pipe, "_execution_device", unet.device)
    dtype = unet.dtype
    still_video = None  # transformer pipelines: the still video's latent frames [1, C, T, h, w]

    if reference_latent is None:
        if image is None:
            raise RectifyError("image", None, "a picture (PIL image, array or tensor)")
        encoded = encode_picture(pipe, image, height, width, frames=pictures)
        if model is not None:
            still_video, reference_latent = encoded, encoded[:, :, 0]
        else:
            reference_latent = encoded
    if reference_latent.ndim == 3:
        reference_latent = reference_latent[None]
    expected = (unet.config.in_channels, height // scale, width // scale)
    if reference_latent.ndim != 4 or tuple(reference_latent.shape[1:]) != expected:
        raise RectifyError(
            "reference_latent",
            tuple(reference_latent.shape),
            f"[1, {', '.join(map(str, expected))}]",
        )
    if still_video is not None and still_video.shape[2] != latent_frames:
        raise RectifyError(
            "num_frames",
            num_frames,
            f"a length {name}'s VAE encodes into {latent_frames} latent frames "
            f"(it gave {still_video.shape[2]})",
        )
    pipe_kwargs = dict(pipe_kwargs)
    prompt = repeat_per_prompt(prompt, pipe_kwargs, num_videos_per_prompt)
    videos = _batch_size(prompt, pipe_kwargs.get("prompt_embeds"))
    anchors = None
    two_anchors = params.end_anchor and (end_image is not None or end_latent is not None)
    if two_anchors and model is not None:
        start = still_video
        if start is None:  # reference_latent: one latent repeated over the latent frames
            start = reference_latent[:, :, None].expand(-1, -1, latent_frames, -1, -1)
        if end_latent is None:
            end_latent = encode_picture(pipe, end_image, height, width, frames=pictures)
        clean, anchors = two_still_videos(
            start, end_latent, params.reference_frame, num_frames=num_frames, pipeline=name
        )
        clean = clean.to(device=device, dtype=dtype)
        clean = clean.expand(videos, -1, -1, -1, -1).contiguous()
    elif two_anchors:
        if end_latent is None:
            end_latent = encode_picture(pipe, end_image, height, width)
        if end_latent.ndim == 3:
            end_latent = end_latent[None]
        rows, anchors = end_anchored_clean(
            reference_latent.float(), end_latent.float(), num_frames, params.reference_frame
        )
        clean = rows.transpose(1, 2).to(device=device, dtype=dtype)  # [1, C, L, h, w]
        clean = clean.expand(videos, -1, -1, -1, -1).contiguous()
    elif still_video is not None:
        clean = still_video.to(device=device, dtype=dtype)
        clean = clean.expand(videos, -1, -1, -1, -1).contiguous()
    else:
        clean = reference_latent.to(device=device, dtype=dtype)[:, :, None]
        clean = clean.expand(videos, -1, latent_frames, -1, -1).contiguous()
    if noise is None:
        from diffusers.utils.torch_utils import randn_tensor

        noise = randn_tensor(tuple(clean.shape), generator=generator, device=device, dtype=dtype)
    elif tuple(noise.shape) != tuple(clean.shape):
        raise RectifyError("noise", tuple(noise.shape), f"{tuple(clean.shape)} ([B, C, L, h, w])")

    facts = sch.facts_for(scheduler)
    latents, first = start_latents(
        scheduler,
        clean,
        noise.to(device=device, dtype=dtype),
        num_inference_steps=num_inference_steps,
        strength=strength,
        device=device,
        sigma_start=params.sigma_start if params.active else 1.0,
        schedule=None
        if model is None
        else model.schedule(
            pipe, num_inference_steps, latent_frames, height // scale, width // scale
        ),
    )
    if params.active and facts.space != "flow":  # a start at ᾱ = 0 keeps nothing: refused
        sch.zero_snr_start(scheduler, facts, first, params.sigma_start)
    view = None
    if model is not None:
        latents = vm.to_pipeline(model, pipe, latents)
        view = vm.latent_view(model, pipe, tuple(clean.shape))
    call = dict(
        prompt=prompt,
        num_frames=num_frames,
        height=height,
        width=width,
        num_inference_steps=num_inference_steps,
        generator=generator,
        latents=latents,
        **pipe_kwargs,
    )
    accepted = inspect.signature(pipe.__call__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = [k for k in call if k not in accepted]
        if unknown:
            raise RectifyError(unknown[0], call[unknown[0]], f"not an argument of {name}")
    hook = SchedulerHook(
        scheduler, params, clean=clean, start_index=first, anchors=anchors, view=view
    )
    if not params.active and first == 0:
        result = pipe(**call)  # exactly the stock pipeline from the same latents
    else:
        with hooked_scheduler(hook):
            result = pipe(**call)
            hook.finish()
    pipe.noise_rectification = report(hook, pictures)
    return result


def two_still_videos(
    start: torch.Tensor,
    end: Any,
    reference_frame: int,
    *,
    num_frames: int,
    pipeline: str,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The clean video between two still videos ``[1, C, T, h, w]`` and its two anchors.

    A transformer pipeline's VAE is causal in time, so each picture is its own still video
    (``start``: the picture's, ``end``: the end picture's, ``end_latent``); the clean video is
    their linear blend over the latent frames (``DEFAULT_BLEND``; ``torch.lerp`` with
    ``s = anchor_positions((0, T − 1), T)``), as the ComfyUI node makes it for a video VAE.
    Latent frame 0 is then exactly the first still video's frame 0 and frame ``T − 1`` the
    other's last frame. ``reference_frame`` (counted in latent frames) must be the first or
    the last; the end picture goes to the other end. Returns float32 ``[1, C, T, h, w]`` and
    ``(reference, T − 1 − reference)``.
    """
    allowed = f"a still video's latent [{', '.join(map(str, start.shape))}] ([1, C, T, h, w])"
    if not isinstance(end, torch.Tensor):
        raise RectifyError("end_latent", type(end).__name__, allowed)
    if tuple(end.shape) != tuple(start.shape):
        raise RectifyError(
            "end_latent",
            tuple(end.shape),
            f"{allowed} with {pipeline}: the end picture held still over the video, as "
            "encode_picture(pipe, end_image, height, width, frames=...) gives it",
        )
    steps = int(start.shape[2])
    if steps < 2:
        raise RectifyError(
            "num_frames",
            num_frames,
            f"enough frames for two latent frames with an end picture ({pipeline} makes "
            f"{steps} of {num_frames})",
        )
    reference = resolve_reference_frame(reference_frame, steps)
    if reference not in (0, steps - 1):
        raise RectifyError(
            "reference_frame",
            reference_frame,
            "0 or -1 with an end picture: it goes to the other end of the video",
        )
    first, last = (start, end) if reference == 0 else (end, start)
    s = anchor_positions((0, steps - 1), steps).view(1, 1, steps, 1, 1)
    clean = torch.lerp(first.float().cpu(), last.float().cpu(), s)
    return clean, (reference, steps - 1 - reference)


def report(hook: SchedulerHook, num_frames: int | None = None) -> dict[str, Any]:
    """What the last call did, for logs and tests (``pipe.noise_rectification``);
    ``num_frames``: the pictures the pipeline generates (the still video's length)."""
    return {
        "params": hook.params.to_api(),
        "num_frames": num_frames,
        "steps": hook.total,
        "rectified_steps": list(hook.rectified),
        "pivot": "per step: " + hook.pivot_reason if hook.pivot_reason else "initial",
        "landed": hook.landed,
        "anchors": list(hook.anchors) if hook.anchors else [hook.params.reference_frame],
    }
