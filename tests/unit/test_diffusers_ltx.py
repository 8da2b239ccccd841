"""diffusers' LTXPipeline through image_to_video, on the tiny random-weight pipeline of
tests/unit/tiny_video_pipelines.py: latents packed into tokens ``[B, T·h·w, 128]``,
FlowMatch Euler with dynamic shifting (``mu``) and ``shift_terminal`` 0.1, no begin index
(the step finds its index by searching the timesteps), batched CFG, and the causal VAE with
its ``latents_mean``/``latents_std`` normalisation (docs/diffusers-video-pipelines.md §5)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

import test_diffusers_adapter
from tiny_video_pipelines import BUILDERS, flow_unipc, recording
from video_adapter_checks import (
    STEPS,
    as_video,
    check_default_num_frames,
    check_end_anchor_off_is_one_picture,
    check_end_latent,
    check_num_frames_as_the_pipeline,
    check_two_anchors,
    picture,
    raw_still_video,
    run,
    steps_of,
    stock_from_same_start,
    target,
    video_shape,
    zero_prediction,
)

from lib_rectify import RectifyError

sync_guard = test_diffusers_adapter.sync_guard  # the issue-17 guard, shared


@pytest.fixture(scope="module")
def ltx():
    torch.manual_seed(0)
    pipe, facts = BUILDERS["ltx-video"]()
    # The real VAE carries per-channel statistics (buffers); the tiny one starts at 0 and 1,
    # which would hide a missing normalisation: give it some.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        pipe.vae.latents_mean.copy_(torch.randn(128, generator=g) * 0.3)
        pipe.vae.latents_std.copy_(torch.rand(128, generator=g) + 0.5)
    return pipe, facts


def test_the_picture_is_a_still_video_in_the_space_the_pipeline_decodes(ltx):
    """Z = (mode(VAE(still video)) − latents_mean)·scaling/latents_std, packed; the pipeline
    unpacks and denormalises it back to what the VAE decodes of the raw latent."""
    pipe, facts = ltx
    image = picture(facts)
    z = target(pipe, facts, image)
    raw = raw_still_video(pipe, facts, image)
    assert tuple(z.shape) == video_shape(facts)
    mean = pipe.vae.latents_mean.view(1, -1, 1, 1, 1)
    std = pipe.vae.latents_std.view(1, -1, 1, 1, 1)
    assert torch.allclose(z, (raw - mean) * pipe.vae.config.scaling_factor / std, atol=1e-5)
    packed = z.permute(0, 2, 3, 4, 1).reshape(1, -1, 128)  # patch 1×1×1: [B, T·h·w, C]
    with zero_prediction(pipe):
        decoded = pipe(
            prompt="a", num_inference_steps=2, latents=packed, output_type="pt", **facts["call"]
        ).frames
    with torch.no_grad():
        direct = pipe.vae.decode(raw, None).sample
    direct = pipe.video_processor.postprocess_video(direct, output_type="pt")
    assert (decoded - direct).abs().max() < 5e-4


def test_still_window_ends_on_the_still_videos_latent(ltx):
    pipe, facts = ltx
    video, image = run(pipe, facts, {"omega": "still", "tau": [0, 1]})
    assert tuple(video.shape) == tuple(facts["latent_shape"])  # packed, as the pipeline returns
    assert torch.allclose(as_video(facts, video).float(), target(pipe, facts, image), atol=1e-4)
    assert pipe.noise_rectification["rectified_steps"] == list(range(STEPS))


def test_still_window_with_guidance_rescale(ltx):
    """The hook sees the prediction after CFG and guidance_rescale: still exact."""
    pipe, facts = ltx
    video, image = run(pipe, facts, {"omega": "still", "tau": [0, 1]}, guidance_rescale=0.7)
    assert torch.allclose(as_video(facts, video).float(), target(pipe, facts, image), atol=1e-4)


@pytest.mark.parametrize("reference", [0, -1])
def test_free_window_to_the_end_keeps_the_reference_frame_only(ltx, reference):
    pipe, facts = ltx
    params = {"omega": "free", "tau": [0, 1], "reference_frame": reference}
    video, image = run(pipe, facts, params)
    video, z = as_video(facts, video).float(), target(pipe, facts, image)
    assert torch.allclose(video[:, :, reference], z[:, :, reference], atol=1e-4)
    others = [f for f in range(z.shape[2]) if f != reference % z.shape[2]]
    assert (video[:, :, others] - z[:, :, others]).abs().max() > 0.05


def test_sampling_starts_at_sigma_start_from_the_noised_picture(ltx):
    """The first step runs at σ_start·1000 on the packed (1 − σ_start)·Z + σ_start·n; the
    rescaled table (mu, terminal 0.1·σ_start) is walked to 0 by timestep search."""
    pipe, facts = ltx
    noise = torch.randn(video_shape(facts), generator=torch.Generator().manual_seed(5))
    with recording(pipe) as events:
        _, image = run(pipe, facts, {"sigma_start": 0.8}, noise=noise)
    steps = steps_of(events)
    first = steps[0]
    assert abs(float(torch.as_tensor(first["args"][1]).reshape(-1)[0]) - 800) <= 1e-3
    start = 0.2 * target(pipe, facts, image) + 0.8 * noise
    assert torch.allclose(as_video(facts, first["args"][2]), start, atol=1e-6)
    model = next(e for e in events if e["event"] == "model")
    assert torch.equal(model["kwargs"]["hidden_states"][:1], first["args"][2])  # [uncond, cond]
    sigmas = first["sigmas"]
    assert abs(float(sigmas[0]) - 0.8) < 1e-6 and float(sigmas[-1]) == 0.0
    assert abs(float(sigmas[-2]) - 0.1 * 0.8) < 1e-6  # shift_terminal, rescaled
    assert [e["step_index"] for e in steps[1:]] == list(range(1, STEPS))
    assert len(steps) == STEPS


@pytest.mark.parametrize("params", [{"enabled": False}, {"tau": [0.3, 0.3]}], ids=["off", "empty"])
def test_disabled_or_empty_window_is_the_stock_pipeline_from_the_same_latents(ltx, params):
    pipe, facts = ltx
    ours, stock = stock_from_same_start(pipe, facts, params)
    assert torch.equal(ours, stock)


def test_several_videos_per_prompt(ltx):
    pipe, facts = ltx
    video, image = run(pipe, facts, {"omega": "still", "tau": [0, 1]}, num_videos_per_prompt=2)
    z = target(pipe, facts, image)
    assert video.shape[0] == 2
    assert torch.allclose(as_video(facts, video).float(), z.expand(2, -1, -1, -1, -1), atol=1e-4)


@pytest.mark.parametrize(
    "params",
    [
        {"omega": "free", "tau": [0.0, 0.6]},
        {"omega": "paper", "tau": [0.0, 1.0], "reference_frame": -1},
    ],
    ids=["free", "paper-last"],
)
def test_no_step_waits_for_the_gpu(ltx, sync_guard, params):
    pipe, facts = ltx
    run(pipe, facts, params)
    assert sync_guard.sites == [], "synchronising calls per step:\n" + sync_guard.report()
    want = [i for i in range(STEPS) if STEPS * params["tau"][0] <= i < STEPS * params["tau"][1]]
    assert pipe.noise_rectification["rectified_steps"] == want


def test_refusals_name_the_field(ltx):
    pipe, facts = ltx
    with pytest.raises(RectifyError, match="timesteps"):
        run(pipe, facts, {}, timesteps=[900, 600, 300, 100])
    with pytest.raises(RectifyError, match="strength"):
        run(pipe, facts, {}, strength=0.5)
    with pytest.raises(RectifyError, match="reference_latent"):
        run(pipe, facts, {}, reference_latent=torch.zeros(1, 16, 2, 2))
    saved = pipe.scheduler
    pipe.scheduler = flow_unipc()
    try:
        with pytest.raises(RectifyError, match=r"scheduler.*FlowMatchEulerDiscreteScheduler"):
            run(pipe, facts, {})
    finally:
        pipe.scheduler = saved


# ------------------------------------------------------------------- two anchors
@pytest.mark.parametrize("reference", [0, -1])
def test_an_end_picture_holds_the_other_end_on_its_still_video(ltx, reference):
    check_two_anchors(*ltx, reference)


def test_end_anchor_off_is_the_run_without_an_end_picture(ltx):
    check_end_anchor_off_is_one_picture(*ltx)


def test_end_latent_is_the_end_pictures_still_video_other_shapes_refused(ltx):
    check_end_latent(*ltx)


# ------------------------------------------------------------------- num_frames
def test_num_frames_left_out_is_the_pipelines_own_default(ltx):
    check_default_num_frames(*ltx, default=161, temporal=8)


@pytest.mark.parametrize(("num_frames", "generated"), [(16, 9), (12, 9)])
def test_the_still_video_is_as_long_as_what_the_pipeline_generates(ltx, num_frames, generated):
    check_num_frames_as_the_pipeline(*ltx, num_frames, generated)
