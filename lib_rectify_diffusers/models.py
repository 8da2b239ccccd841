"""The transformer video pipelines the adapter serves, as diffusers 0.42.1 writes them.

Each differs from the UNet pipelines (and from the others) in where its latents live and
how it reads them (docs/diffusers-video-pipelines.md, file:line there):

* the VAE factors (attribute names differ) and the latent frames ``(F − 1)//t + 1``;
* the picture's latent: a still video (the picture held over every frame) through the
  pipeline's own VAE and its own normalisation (mean/std, scaling factor), since every one
  of these VAEs is causal in time;
* the layout ``scheduler.step`` sees: ``[B, C, T, h, w]`` (Wan, HunyuanVideo, Mochi), LTX's
  packed tokens ``[B, T·h·w, C]``, CogVideoX's frames-first ``[B, T, C, h, w]``;
* the ``set_timesteps`` call the pipeline makes (its sigmas, LTX's ``mu``), so that the
  start latents sit exactly at the first σ the pipeline will use.

``VideoModel`` holds those facts; :func:`model_for` finds a pipeline's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lib_rectify import RectifyError

from . import schedulers as sch


@dataclass(frozen=True)
class VideoModel:
    """What the adapter must know of one transformer video pipeline class."""

    name: str
    spatial: str  # the pipeline's attribute holding the VAE's spatial factor
    temporal: str  # ... and its temporal factor
    schedulers: tuple[str, ...]  # scheduler classes served (UniPC: its flow mode)
    space: str  # what the model predicts: "flow" (a velocity) or "vp" (CogVideoX's v)
    layout: str  # what step sees: "video" [B,C,T,h,w], "tokens" (LTX), "frames-first"
    normalise: Callable[[Any, torch.Tensor], torch.Tensor]  # raw VAE latent -> sampling space
    schedule: Callable[[Any, int, int, int, int], dict]  # the pipeline's set_timesteps kwargs
    inverted: bool = False  # the flow table holds 1 − σ and the model predicts x0 − n (Mochi)


# ---------------------------------------------------------------- picture -> sampling space
def _per_channel(values: Any, c: int) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32).reshape(-1)[:c].view(1, c, 1, 1, 1).cpu()


def _normalise_wan(pipe: Any, z: torch.Tensor) -> torch.Tensor:
    """``(z − latents_mean)/latents_std`` (pipeline_wan.py decodes ``z·std + mean``)."""
    c, config = z.shape[1], pipe.vae.config
    return (z - _per_channel(config.latents_mean, c)) / _per_channel(config.latents_std, c)


def _normalise_hunyuan(pipe: Any, z: torch.Tensor) -> torch.Tensor:
    """``z·scaling_factor`` (pipeline_hunyuan_video.py:726 decodes ``z/scaling_factor``)."""
    return z * float(pipe.vae.config.scaling_factor)


def _normalise_ltx(pipe: Any, z: torch.Tensor) -> torch.Tensor:
    """LTX's own ``_normalize_latents`` with the VAE's ``latents_mean``/``latents_std`` buffers
    (pipeline_ltx.py:455-463; decoded by ``_denormalize_latents``, 817-827)."""
    vae = pipe.vae
    return pipe._normalize_latents(
        z,
        vae.latents_mean.detach().float().cpu(),
        vae.latents_std.detach().float().cpu(),
        float(vae.config.scaling_factor),
    )


def _normalise_mochi(pipe: Any, z: torch.Tensor) -> torch.Tensor:
    """``(z − mean)·scaling/std`` with the VAE config's 12 values, else ``z·scaling``
    (pipeline_mochi.py:700-711 decodes the inverse)."""
    config = pipe.vae.config
    scale = float(config.scaling_factor)
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is None or std is None:
        return z * scale
    c = z.shape[1]
    return (z - _per_channel(mean, c)) * scale / _per_channel(std, c)


def _normalise_cogvideox(pipe: Any, z: torch.Tensor) -> torch.Tensor:
    """``z·scaling_factor`` (pipeline_cogvideox.py:351-356 decodes ``z/scaling_factor``)."""
    return z * float(pipe.vae_scaling_factor_image)


# ---------------------------------------------------------------- the pipelines' schedules
def _plain(pipe: Any, steps: int, frames: int, height: int, width: int) -> dict:
    return {"num_inference_steps": steps}


def _hunyuan_schedule(pipe: Any, steps: int, frames: int, height: int, width: int) -> dict:
    """pipeline_hunyuan_video.py:635-642."""
    return {"sigmas": np.linspace(1.0, 0.0, steps + 1)[:-1]}


def _ltx_schedule(pipe: Any, steps: int, frames: int, height: int, width: int) -> dict:
    """pipeline_ltx.py:725-745: linear sigmas and ``mu`` from the latent sequence length."""
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

    config = pipe.scheduler.config
    tokens = frames * height * width
    mu = calculate_shift(
        tokens,
        config.get("base_image_seq_len", 256),
        config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.5),
        config.get("max_shift", 1.15),
    )
    return {"sigmas": np.linspace(1.0, 1 / steps, steps), "mu": mu}


def _mochi_schedule(pipe: Any, steps: int, frames: int, height: int, width: int) -> dict:
    """pipeline_mochi.py:617-631 (Genmo's linear-quadratic schedule, threshold 0.025)."""
    from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule

    return {"sigmas": np.array(linear_quadratic_schedule(steps, 0.025))}


FLOW_EULER = "FlowMatchEulerDiscreteScheduler"

#: Pipeline class name -> facts (diffusers 0.42.1).
MODELS: dict[str, VideoModel] = {
    "WanPipeline": VideoModel(
        "WanPipeline",
        "vae_scale_factor_spatial",
        "vae_scale_factor_temporal",
        (FLOW_EULER, "UniPCMultistepScheduler"),
        "flow",
        "video",
        _normalise_wan,
        _plain,
    ),
    "HunyuanVideoPipeline": VideoModel(
        "HunyuanVideoPipeline",
        "vae_scale_factor_spatial",
        "vae_scale_factor_temporal",
        (FLOW_EULER,),
        "flow",
        "video",
        _normalise_hunyuan,
        _hunyuan_schedule,
    ),
    "LTXPipeline": VideoModel(
        "LTXPipeline",
        "vae_spatial_compression_ratio",
        "vae_temporal_compression_ratio",
        (FLOW_EULER,),
        "flow",
        "tokens",
        _normalise_ltx,
        _ltx_schedule,
    ),
    "MochiPipeline": VideoModel(
        "MochiPipeline",
        "vae_spatial_scale_factor",
        "vae_temporal_scale_factor",
        (FLOW_EULER,),
        "flow",
        "video",
        _normalise_mochi,
        _mochi_schedule,
        inverted=True,
    ),
    "CogVideoXPipeline": VideoModel(
        "CogVideoXPipeline",
        "vae_scale_factor_spatial",
        "vae_scale_factor_temporal",
        ("CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"),
        "vp",
        "frames-first",
        _normalise_cogvideox,
        _plain,
    ),
}

#: Arguments of these pipelines that would replace the schedule the adapter starts from.
SCHEDULE_ARGUMENTS = ("sigmas", "timesteps")


def model_for(pipe: Any) -> VideoModel | None:
    """The facts of ``pipe``'s class (a transformer video pipeline), or None (a UNet one)."""
    return MODELS.get(type(pipe).__name__)


def check_scheduler(model: VideoModel, scheduler: Any) -> None:
    """Refuse a scheduler the pipeline's model was not checked with, naming the allowed ones."""
    name = type(scheduler).__name__
    allowed = f"one of {', '.join(model.schedulers)} with {model.name}"
    if name not in model.schedulers:
        raise RectifyError("scheduler", name, allowed)
    if sch.facts_for(scheduler).space != model.space:  # UniPC outside its flow mode
        flow = "in flow mode (use_flow_sigmas, flow_prediction)" if model.space == "flow" else ""
        raise RectifyError("scheduler", name, f"{allowed}, {flow}".rstrip(", "))
    if model.space == "flow" and sch.inverted(scheduler) != model.inverted:
        why = (
            "the model takes timestep 0 as noise and predicts x0 − noise "
            "(genmo/mochi-1-preview's scheduler config)"
            if model.inverted
            else "the model predicts the velocity noise − x0 on σ from 1 to 0"
        )
        raise RectifyError(
            "scheduler invert_sigmas",
            sch.inverted(scheduler),
            f"{model.inverted} with {model.name}: {why}",
        )


def spatial_scale(model: VideoModel, pipe: Any) -> int:
    return int(getattr(pipe, model.spatial))


def default_frames(model: VideoModel, pipe: Any) -> int:
    """The pipeline's own default ``num_frames``: its ``__call__`` signature's (Wan 81,
    HunyuanVideo 129, LTX 161, Mochi 19), or for CogVideoX, whose signature says None, the
    transformer's ``sample_frames`` (pipeline_cogvideox.py:621).

    CogVideoX 1.5 (``patch_size_t`` 2) defaults to 81 pictures, 21 latent frames, which it
    pads at the front and so drops the picture's frame (pipeline_cogvideox.py:682-687,
    refused in ``image_to_video``); its default here is the longest length up to that
    whose latent frames are a multiple of ``patch_size_t`` (81 → 77, 20 latent frames).
    """
    parameter = inspect.signature(pipe.__call__).parameters.get("num_frames")
    value = None if parameter is None else parameter.default
    if value is None or value is inspect.Parameter.empty:
        value = pipe.transformer.config.sample_frames
    value = int(value)
    patch_t = getattr(pipe.transformer.config, "patch_size_t", None) or 1
    if model.name == "CogVideoXPipeline" and patch_t > 1:
        t = int(getattr(pipe, model.temporal))
        while value > t and latent_frames(model, pipe, value) % patch_t:
            value -= t
    return value


def pipeline_frames(model: VideoModel, pipe: Any, num_frames: int) -> int:
    """The number of pictures the pipeline really generates for ``num_frames``: the length
    the still video is encoded over (it encodes to exactly the pipeline's latent frames).

    WanPipeline does not refuse a length with ``num_frames − 1`` not divisible by its
    temporal factor t: it logs a warning and generates ``num_frames // t · t + 1`` (16 → 17,
    14 → 13; pipeline_wan.py:494-499), so this rounds exactly as it does (refusing would fail
    calls the pipeline runs). The others take any length and sample
    ``T = (num_frames − 1)//t + 1`` latent frames (pipeline_hunyuan_video.py:405,
    pipeline_ltx.py:722, pipeline_mochi.py:404, pipeline_cogvideox.py:680), which their VAEs
    decode to ``(T − 1)·t + 1`` pictures (HunyuanVideo, LTX, Mochi; 16 → 13 with t = 4), or
    for CogVideoX's, which decodes latent frames in pairs, ``t·T`` for an even ``T`` (48 → 48,
    14 → 16) and ``(T − 1)·t + 1`` for an odd one (49 → 49; autoencoder_kl_cogvideox.py:
    1058-1068, 1185-1200).
    """
    t = int(getattr(pipe, model.temporal))
    latent = latent_frames(model, pipe, num_frames)
    if model.name == "CogVideoXPipeline" and latent % 2 == 0:
        return t * latent
    return (latent - 1) * t + 1


def latent_frames(model: VideoModel, pipe: Any, num_frames: int) -> int:
    """Latent frames of a ``num_frames`` video, as the pipeline's ``prepare_latents`` counts
    them after WanPipeline's rounding of ``num_frames`` (:func:`pipeline_frames`)."""
    t = int(getattr(pipe, model.temporal))
    if model.name == "WanPipeline" and num_frames % t != 1:  # pipeline_wan.py:494-499
        num_frames = max(num_frames // t * t + 1, 1)  # its rounding, with its warning
    return (num_frames - 1) // t + 1


def default_size(model: VideoModel, pipe: Any) -> tuple[int, int]:
    """The pipeline's own default height and width (its signature, else what it computes)."""
    defaults = inspect.signature(pipe.__call__).parameters
    size = []
    for name in ("height", "width"):
        value = defaults[name].default if name in defaults else None
        if value is None or value is inspect.Parameter.empty:
            value = getattr(pipe, f"default_{name}", None)
        if value is None:  # CogVideoX: sample size × the VAE's factor (pipeline_cogvideox.py:621)
            value = getattr(pipe.transformer.config, f"sample_{name}") * spatial_scale(model, pipe)
        size.append(int(value))
    return size[0], size[1]


def encode_still_video(model: VideoModel, pipe: Any, pixels: torch.Tensor, frames: int):
    """The picture held still over ``frames`` pictures, encoded once (posterior mode) and
    normalised as the pipeline decodes: ``[1, C, T, h, w]``, float32 on the CPU.

    These VAEs are causal in time (each later latent frame encodes several pictures, and
    HunyuanVideo's and CogVideoX's normalise over time), so the picture's own latent
    repeated is not a still video's latent; this is.
    """
    vae = pipe.vae
    video = pixels[:, :, None].expand(-1, -1, frames, -1, -1)
    with torch.no_grad():
        posterior = vae.encode(video.to(device=vae.device, dtype=vae.dtype)).latent_dist
        z = posterior.mode().float().cpu()
    return model.normalise(pipe, z)


def to_pipeline(model: VideoModel, pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, h, w]`` as the pipeline takes its ``latents`` (and step sees them)."""
    if model.layout == "tokens":
        return pipe._pack_latents(
            latents, pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        )
    if model.layout == "frames-first":
        return latents.permute(0, 2, 1, 3, 4).contiguous()
    return latents


@dataclass(frozen=True)
class LatentView:
    """Between the layout ``scheduler.step`` sees and the core's ``[B, C, T, h, w]``."""

    to_video: Callable[[torch.Tensor], torch.Tensor]
    from_video: Callable[[torch.Tensor], torch.Tensor]


def latent_view(model: VideoModel, pipe: Any, shape: tuple[int, ...]) -> LatentView | None:
    """The view for latents of ``shape`` ``[B, C, T, h, w]``; None when step sees that layout.

    Reshapes and permutes only (LTX: the pipeline's own static ``_unpack_latents`` /
    ``_pack_latents``): nothing is read back to the host.
    """
    if model.layout == "tokens":
        _, _, t, h, w = shape
        p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        unpack, pack = pipe._unpack_latents, pipe._pack_latents
        return LatentView(
            lambda x: unpack(x, t // pt, h // p, w // p, p, pt),
            lambda x: pack(x, p, pt),
        )
    if model.layout == "frames-first":
        return LatentView(lambda x: x.transpose(1, 2), lambda x: x.transpose(1, 2))
    return None
