"""Shared checks of ``image_to_video`` on the tiny transformer video pipelines
(tests/unit/tiny_video_pipelines.py): HunyuanVideo, LTX-Video, Mochi, CogVideoX.

Every helper takes a ``(pipe, facts)`` pair from ``BUILDERS``. Latents are compared in the
canonical ``[B, C, T, h, w]`` layout; :func:`as_video` turns what a pipeline returns with
``output_type="latent"`` (LTX: packed tokens, CogVideoX: frames-first) into it, written out
here rather than taken from the adapter under test.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from tiny_video_pipelines import recording

from lib_rectify_diffusers import image_to_video
from lib_rectify_diffusers.pipeline import encode_picture

STEPS = 4  # divides 1000: CogVideoX's schedulers step exactly to the next timestep


def picture(facts: dict, seed: int = 7) -> torch.Tensor:
    call = facts["call"]
    return torch.rand(
        3, call["height"], call["width"], generator=torch.Generator().manual_seed(seed)
    )


def run(pipe, facts, params, *, steps: int = STEPS, image=None, **kw):
    """``image_to_video`` with the builder's call; returns (latents as returned, picture)."""
    image = picture(facts) if image is None else image
    out = image_to_video(
        pipe,
        image,
        params,
        prompt="a",
        num_inference_steps=steps,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        **facts["call"],
        **kw,
    )
    return out.frames, image


def as_video(facts: dict, latents: torch.Tensor) -> torch.Tensor:
    """A pipeline's latents as ``[B, C, T, h, w]`` (independent of the adapter's views)."""
    layout = facts["layout"]
    if layout.startswith("packed"):  # LTX, transformer patch 1×1×1: [B, T·h·w, C]
        _, c, t, h, w = facts["unpacked_shape"]
        return latents.reshape(latents.shape[0], t, h, w, c).permute(0, 4, 1, 2, 3)
    if layout.startswith("frames-first"):  # CogVideoX: [B, T, C, h, w]
        return latents.permute(0, 2, 1, 3, 4)
    return latents


def video_shape(facts: dict) -> tuple[int, ...]:
    if "unpacked_shape" in facts:
        return tuple(facts["unpacked_shape"])
    shape = tuple(facts["latent_shape"])
    if facts["layout"].startswith("frames-first"):
        return (shape[0], shape[2], shape[1], *shape[3:])
    return shape


def target(pipe, facts, image) -> torch.Tensor:
    """The still video's latent ``[1, C, T, h, w]`` the adapter rectifies toward."""
    call = facts["call"]
    return encode_picture(pipe, image, call["height"], call["width"], frames=call["num_frames"])


def raw_still_video(pipe, facts, image) -> torch.Tensor:
    """The picture held still over the frames, through the VAE (posterior mode), unnormalised."""
    from diffusers.video_processor import VideoProcessor

    call = facts["call"]
    pixels = VideoProcessor(vae_scale_factor=facts["vae_scale_factor_spatial"]).preprocess(
        image, height=call["height"], width=call["width"]
    )
    video = pixels[:, :, None].expand(-1, -1, call["num_frames"], -1, -1)
    with torch.no_grad():
        return pipe.vae.encode(video).latent_dist.mode()


def steps_of(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "step"]


def stock_from_same_start(pipe, facts, params, *, steps: int = STEPS, **kw):
    """Run the adapter (``params`` disabled or empty), then the stock pipeline from the
    latents the adapter passed; returns both outputs."""
    shape = video_shape(facts)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    with recording(pipe) as events:
        ours, _ = run(pipe, facts, params, steps=steps, noise=noise, **kw)
    first = next(e for e in events if e["event"] == "model")
    start = first["kwargs"]["hidden_states"]
    if start.shape[0] != shape[0]:  # batched CFG: [uncond, cond] (LTX, Mochi, CogVideoX)
        start = start[: shape[0]]
    stock = pipe(
        prompt="a",
        num_inference_steps=steps,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        latents=start.clone(),
        **facts["call"],
        **kw,
    ).frames
    return ours, stock


@contextmanager
def zero_prediction(pipe):
    """The transformer predicts 0 everywhere (a flow pipeline then returns its latents)."""
    model = pipe.transformer

    def forward(hidden_states, *a, return_dict=True, **k):
        return (torch.zeros_like(hidden_states),)

    model.forward = forward
    try:
        yield
    finally:
        model.__dict__.pop("forward", None)
