"""Shared checks of ``image_to_video`` on the tiny transformer video pipelines
(tests/unit/tiny_video_pipelines.py): HunyuanVideo, LTX-Video, Mochi, CogVideoX.

Every helper takes a ``(pipe, facts)`` pair from ``BUILDERS``. Latents are compared in the
canonical ``[B, C, T, h, w]`` layout; :func:`as_video` turns what a pipeline returns with
``output_type="latent"`` (LTX: packed tokens, CogVideoX: frames-first) into it, written out
here rather than taken from the adapter under test.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from tiny_video_pipelines import recording

from lib_rectify import RectifyError
from lib_rectify_diffusers import image_to_video
from lib_rectify_diffusers.pipeline import encode_picture

STEPS = 4  # divides 1000: CogVideoX's schedulers step exactly to the next timestep


def picture(facts: dict, seed: int = 7) -> torch.Tensor:
    call = facts["call"]
    return torch.rand(
        3, call["height"], call["width"], generator=torch.Generator().manual_seed(seed)
    )


def run(pipe, facts, params, *, steps: int = STEPS, image=None, **kw):
    """``image_to_video`` with the builder's call (``num_frames``, ``height``, ``width`` in
    ``kw`` replace the builder's); returns (latents as returned, picture)."""
    image = picture(facts) if image is None else image
    call = dict(facts["call"])
    call.update({k: kw.pop(k) for k in list(call) if k in kw})
    out = image_to_video(
        pipe,
        image,
        params,
        prompt="a",
        num_inference_steps=steps,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        **call,
        **kw,
    )
    return out.frames, image


def as_video(facts: dict, latents: torch.Tensor) -> torch.Tensor:
    """A pipeline's latents as ``[B, C, T, h, w]`` (independent of the adapter's views)."""
    layout = facts["layout"]
    if layout.startswith("packed"):  # LTX, transformer patch 1×1×1: [B, T·h·w, C]
        _, c, _, h, w = facts["unpacked_shape"]
        t = latents.shape[1] // (h * w)  # any number of latent frames
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


def target(pipe, facts, image, frames: int | None = None) -> torch.Tensor:
    """The still video's latent ``[1, C, T, h, w]`` the adapter rectifies toward (the picture
    held over ``frames`` pictures, default the builder's ``num_frames``)."""
    call = facts["call"]
    frames = call["num_frames"] if frames is None else frames
    return encode_picture(pipe, image, call["height"], call["width"], frames=frames)


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


# ------------------------------------------------------------------- two anchors
FREE = {"omega": "free", "tau": [0.0, 1.0]}
STILL = {"omega": "still", "tau": [0.0, 1.0]}


def linear_blend(first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """``first`` to ``last`` linearly over the latent frames (written out here)."""
    frames = first.shape[2]
    s = torch.linspace(0.0, 1.0, frames).view(1, 1, frames, 1, 1)
    return first + (last - first) * s


def check_two_anchors(pipe, facts, reference: int, atol: float = 1e-4) -> None:
    """An end picture with a window to 100 %: the reference latent frame (0 or −1) is the
    picture's still video there, the other end the end picture's (ω free: the middle moves);
    ω still ends every latent frame on the linear blend of the two still videos."""
    end = picture(facts, 8)
    video, image = run(pipe, facts, {**FREE, "reference_frame": reference}, end_image=end)
    video = as_video(facts, video).float()
    z, z_end = target(pipe, facts, image), target(pipe, facts, end)
    frames = z.shape[2]
    first, last = (z, z_end) if reference == 0 else (z_end, z)
    assert tuple(video.shape) == video_shape(facts)
    assert torch.allclose(video[:, :, 0], first[:, :, 0], atol=atol)
    assert torch.allclose(video[:, :, -1], last[:, :, -1], atol=atol)
    assert (z_end[:, :, -1] - z[:, :, -1]).abs().max() > 100 * atol  # two different pictures
    assert pipe.noise_rectification["anchors"] == [
        reference % frames,
        frames - 1 - reference % frames,
    ]
    blend = linear_blend(first, last)
    if frames > 2:  # frames between the anchors move with ω free
        assert (video[:, :, 1:-1] - blend[:, :, 1:-1]).abs().max() > 1e-2
    still, _ = run(pipe, facts, {**STILL, "reference_frame": reference}, end_image=end)
    assert torch.allclose(as_video(facts, still).float(), blend, atol=atol)


def check_end_anchor_off_is_one_picture(pipe, facts) -> None:
    """``end_anchor`` false with an end picture (rectification on, or disabled): bit for bit
    the run without one."""
    noise = torch.randn(video_shape(facts), generator=torch.Generator().manual_seed(3))
    end = picture(facts, 8)
    for params in (FREE, {"enabled": False}):
        one, _ = run(pipe, facts, params, noise=noise)
        off, _ = run(pipe, facts, {**params, "end_anchor": False}, noise=noise, end_image=end)
        assert torch.equal(off, one)


def check_end_latent(pipe, facts) -> None:
    """``end_latent``: the end picture's still video ``[1, C, T, h, w]`` gives what
    ``end_image`` gives; any other shape, too few latent frames for two anchors and a
    reference frame between the ends are refused naming the field."""
    noise = torch.randn(video_shape(facts), generator=torch.Generator().manual_seed(3))
    end = picture(facts, 8)
    z_end = target(pipe, facts, end)
    by_image, _ = run(pipe, facts, FREE, noise=noise, end_image=end)
    by_latent, _ = run(pipe, facts, FREE, noise=noise, end_latent=z_end)
    assert torch.equal(by_image, by_latent)
    shape = tuple(z_end.shape)
    for bad in (z_end[:, :, 0], z_end[:, :, :-1], z_end[:, :1].expand(2, -1, -1, -1, -1)):
        with pytest.raises(RectifyError, match="end_latent") as refused:
            run(pipe, facts, FREE, end_latent=bad)
        message = str(refused.value)
        assert str(tuple(bad.shape)) in message and str(list(shape)).replace(" ", "") in (
            message.replace(" ", "")
        )
    with pytest.raises(RectifyError, match="end_latent = 'list'"):
        run(pipe, facts, FREE, end_latent=z_end.tolist())
    with pytest.raises(RectifyError, match=r"num_frames = 1 .*two latent frames"):
        run(pipe, facts, FREE, num_frames=1, end_image=end)
    if shape[2] > 2:
        with pytest.raises(RectifyError, match=r"reference_frame = 1 .*0 or -1"):
            run(pipe, facts, {**FREE, "reference_frame": 1}, end_image=end)


# ------------------------------------------------------------------- num_frames
def check_default_num_frames(pipe, facts, default: int, temporal: int) -> None:
    """``num_frames`` left out is the pipeline's own default (its ``__call__``'s): the still
    video is the picture held over that many pictures, and the pipeline samples its latent
    frames."""
    video, image = run(pipe, facts, STILL, steps=2, num_frames=None)
    assert pipe.noise_rectification["num_frames"] == default
    video = as_video(facts, video).float()
    assert video.shape[2] == (default - 1) // temporal + 1
    assert torch.allclose(video, target(pipe, facts, image, default), atol=1e-4)


def check_num_frames_as_the_pipeline(pipe, facts, num_frames: int, generated: int) -> None:
    """A length the pipeline changes (WanPipeline rounds it; the others decode fewer
    pictures): the adapter samples the latent frames the stock pipeline samples for it, the
    still video is held over the ``generated`` pictures the stock pipeline decodes, and a
    still window ends on that still video's latent."""
    call = {**facts["call"], "num_frames": num_frames}
    stock = pipe(prompt="a", num_inference_steps=2, output_type="latent", **call).frames
    decoded = pipe(prompt="a", num_inference_steps=2, output_type="pt", **call).frames
    assert decoded.shape[1] == generated  # [B, F, 3, H, W]: diffusers' own length
    video, image = run(pipe, facts, STILL, num_frames=num_frames)
    assert video.shape == stock.shape
    assert pipe.noise_rectification["num_frames"] == generated
    z = target(pipe, facts, image, generated)
    assert torch.allclose(as_video(facts, video).float(), z, atol=1e-4)
