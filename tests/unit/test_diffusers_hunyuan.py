"""diffusers' HunyuanVideoPipeline through image_to_video, on the tiny random-weight
pipeline of tests/unit/tiny_video_pipelines.py: FlowMatch Euler (shift 7), the pipeline's
own ``sigmas`` and ``set_begin_index(0)``, embedded guidance, the causal VAE with its
scaling factor (docs/diffusers-video-pipelines.md §4)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

import test_diffusers_adapter
from tiny_video_pipelines import BUILDERS, flow_unipc, recording
from video_adapter_checks import (
    STEPS,
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
def hunyuan():
    torch.manual_seed(0)
    return BUILDERS["hunyuan-video"]()


def test_the_picture_is_a_still_video_in_the_space_the_pipeline_decodes(hunyuan):
    """Z = mode(VAE(still video))·scaling_factor, and the pipeline decodes it to what the
    VAE decodes of the raw latent (a zero-velocity transformer keeps the latents)."""
    pipe, facts = hunyuan
    image = picture(facts)
    z = target(pipe, facts, image)
    raw = raw_still_video(pipe, facts, image)
    assert tuple(z.shape) == video_shape(facts)
    assert torch.allclose(z, raw * 0.476986, atol=1e-6)
    call = facts["call"]
    with zero_prediction(pipe):
        decoded = pipe(
            prompt="a", num_inference_steps=2, latents=z.clone(), output_type="pt", **call
        ).frames
    with torch.no_grad():
        direct = pipe.vae.decode(raw).sample
    direct = pipe.video_processor.postprocess_video(direct, output_type="pt")
    assert (decoded - direct).abs().max() < 5e-4  # float32 rounding of ·s then /s


def test_still_window_ends_on_the_still_videos_latent(hunyuan):
    pipe, facts = hunyuan
    video, image = run(pipe, facts, {"omega": "still", "tau": [0, 1]})
    assert tuple(video.shape) == tuple(facts["latent_shape"])
    assert torch.allclose(video.float(), target(pipe, facts, image), atol=1e-4)
    assert pipe.noise_rectification["rectified_steps"] == list(range(STEPS))


@pytest.mark.parametrize("reference", [0, -1])
def test_free_window_to_the_end_keeps_the_reference_frame_only(hunyuan, reference):
    pipe, facts = hunyuan
    params = {"omega": "free", "tau": [0, 1], "reference_frame": reference}
    video, image = run(pipe, facts, params)
    z = target(pipe, facts, image)
    assert torch.allclose(video[:, :, reference].float(), z[:, :, reference], atol=1e-4)
    others = [f for f in range(z.shape[2]) if f != reference % z.shape[2]]
    assert (video[:, :, others].float() - z[:, :, others]).abs().max() > 0.05


def test_sampling_starts_at_sigma_start_from_the_noised_picture(hunyuan):
    """The first step runs at σ_start·1000 on (1 − σ_start)·Z + σ_start·n, and the schedule
    (the pipeline's linspace sigmas, shift 7, begin index 0) is rescaled, ending at 0."""
    pipe, facts = hunyuan
    noise = torch.randn(video_shape(facts), generator=torch.Generator().manual_seed(5))
    with recording(pipe) as events:
        _, image = run(pipe, facts, {"sigma_start": 0.8}, noise=noise)
    first = steps_of(events)[0]
    assert abs(float(torch.as_tensor(first["args"][1]).reshape(-1)[0]) - 800) <= 1e-3
    start = 0.2 * target(pipe, facts, image) + 0.8 * noise
    assert torch.allclose(first["args"][2], start, atol=1e-6)
    model = next(e for e in events if e["event"] == "model")
    assert torch.equal(model["kwargs"]["hidden_states"], first["args"][2])
    sigmas = first["sigmas"]  # the table the scheduler steps with
    assert abs(float(sigmas[0]) - 0.8) < 1e-6 and float(sigmas[-1]) == 0.0
    assert len(steps_of(events)) == STEPS


@pytest.mark.parametrize("params", [{"enabled": False}, {"tau": [0.3, 0.3]}], ids=["off", "empty"])
def test_disabled_or_empty_window_is_the_stock_pipeline_from_the_same_latents(hunyuan, params):
    pipe, facts = hunyuan
    ours, stock = stock_from_same_start(pipe, facts, params)
    assert torch.equal(ours, stock)


def test_true_cfg_with_a_negative_prompt_is_rectified_on_the_combined_prediction(hunyuan):
    """true_cfg_scale > 1 with a negative prompt: two transformer calls per step, one step."""
    pipe, facts = hunyuan
    with recording(pipe) as events:
        video, image = run(
            pipe,
            facts,
            {"omega": "still", "tau": [0, 1]},
            negative_prompt="b",
            true_cfg_scale=3.0,
        )
    assert len([e for e in events if e["event"] == "model"]) == 2 * STEPS
    assert torch.allclose(video.float(), target(pipe, facts, image), atol=1e-4)


def test_several_videos_per_prompt(hunyuan):
    pipe, facts = hunyuan
    video, image = run(pipe, facts, {"omega": "still", "tau": [0, 1]}, num_videos_per_prompt=2)
    z = target(pipe, facts, image)
    assert video.shape[0] == 2
    assert torch.allclose(video.float(), z.expand_as(video), atol=1e-4)


@pytest.mark.parametrize(
    "params",
    [
        {"omega": "free", "tau": [0.0, 0.6]},
        {"omega": "paper", "tau": [0.0, 1.0], "reference_frame": -1},
    ],
    ids=["free", "paper-last"],
)
def test_no_step_waits_for_the_gpu(hunyuan, sync_guard, params):
    pipe, facts = hunyuan
    run(pipe, facts, params)
    assert sync_guard.sites == [], "synchronising calls per step:\n" + sync_guard.report()
    want = [i for i in range(STEPS) if STEPS * params["tau"][0] <= i < STEPS * params["tau"][1]]
    assert pipe.noise_rectification["rectified_steps"] == want


def test_refusals_name_the_field(hunyuan):
    pipe, facts = hunyuan
    with pytest.raises(RectifyError, match="sigmas"):
        run(pipe, facts, {}, sigmas=[1.0, 0.5, 0.25, 0.1])
    with pytest.raises(RectifyError, match="strength"):
        run(pipe, facts, {}, strength=0.5)
    with pytest.raises(RectifyError, match="noise"):
        run(pipe, facts, {}, noise=torch.zeros(1, 16, 2, 2, 2))
    saved = pipe.scheduler
    pipe.scheduler = flow_unipc()
    try:
        with pytest.raises(RectifyError, match=r"scheduler.*FlowMatchEulerDiscreteScheduler"):
            run(pipe, facts, {})
    finally:
        pipe.scheduler = saved


# ------------------------------------------------------------------- two anchors
@pytest.mark.parametrize("reference", [0, -1])
def test_an_end_picture_holds_the_other_end_on_its_still_video(hunyuan, reference):
    check_two_anchors(*hunyuan, reference)


def test_end_anchor_off_is_the_run_without_an_end_picture(hunyuan):
    check_end_anchor_off_is_one_picture(*hunyuan)


def test_end_latent_is_the_end_pictures_still_video_other_shapes_refused(hunyuan):
    check_end_latent(*hunyuan)


# ------------------------------------------------------------------- num_frames
def test_num_frames_left_out_is_the_pipelines_own_default(hunyuan):
    check_default_num_frames(*hunyuan, default=129, temporal=4)


@pytest.mark.parametrize(("num_frames", "generated"), [(16, 13), (14, 13)])
def test_the_still_video_is_as_long_as_what_the_pipeline_generates(hunyuan, num_frames, generated):
    check_num_frames_as_the_pipeline(*hunyuan, num_frames, generated)
