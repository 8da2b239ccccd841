"""diffusers' MochiPipeline through image_to_video, on the tiny random-weight pipeline of
tests/unit/tiny_video_pipelines.py: FlowMatch Euler with ``invert_sigmas=True`` (its table
holds 1 − σ, the model gets (1 − σ)·1000 and predicts x0 − n, minus the flow velocity),
Genmo's linear-quadratic sigmas, batched CFG, the causal VAE with its 12-channel mean/std
(docs/diffusers-video-pipelines.md §6)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

import test_diffusers_adapter
from tiny_video_pipelines import BUILDERS, flow_euler, recording
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
def mochi():
    torch.manual_seed(0)
    return BUILDERS["mochi"]()


def test_the_picture_is_a_still_video_in_the_space_the_pipeline_decodes(mochi):
    """Z = (mode(VAE(still video)) − mean)·scaling/std with the VAE config's 12 values; the
    pipeline decodes it (zero prediction: an inverted table keeps the latents) to what the
    VAE decodes of the raw latent."""
    pipe, facts = mochi
    image = picture(facts)
    z = target(pipe, facts, image)
    raw = raw_still_video(pipe, facts, image)
    assert tuple(z.shape) == video_shape(facts)
    config = pipe.vae.config
    mean = torch.tensor(config.latents_mean).view(1, 12, 1, 1, 1)
    std = torch.tensor(config.latents_std).view(1, 12, 1, 1, 1)
    assert torch.allclose(z, (raw - mean) * config.scaling_factor / std, atol=1e-5)
    with zero_prediction(pipe):
        decoded = pipe(
            prompt="a", num_inference_steps=2, latents=z.clone(), output_type="pt", **facts["call"]
        ).frames
    with torch.no_grad():
        direct = pipe.vae.decode(raw).sample
    direct = pipe.video_processor.postprocess_video(direct, output_type="pt")
    assert (decoded - direct).abs().max() < 5e-4


def test_still_window_ends_on_the_still_videos_latent(mochi):
    """The sign proof: with the prediction read as −v (and σ as 1 − table) a still window
    lands exactly on the picture's latent."""
    pipe, facts = mochi
    video, image = run(pipe, facts, {"omega": "still", "tau": [0, 1]})
    assert tuple(video.shape) == tuple(facts["latent_shape"])
    assert torch.allclose(video.float(), target(pipe, facts, image), atol=1e-4)
    assert pipe.noise_rectification["rectified_steps"] == list(range(STEPS))


def test_reading_the_prediction_as_plus_v_misses_the_picture(mochi, monkeypatch):
    """The control: the same run with the sign not flipped does not end on the picture."""
    from lib_rectify_diffusers import schedulers

    pipe, facts = mochi
    monkeypatch.setattr(schedulers, "flow_sign", lambda scheduler: 1.0)
    video, image = run(pipe, facts, {"omega": "still", "tau": [0, 1]})
    assert (video.float() - target(pipe, facts, image)).abs().max() > 0.05


@pytest.mark.parametrize("reference", [0, -1])
def test_free_window_to_the_end_keeps_the_reference_frame_only(mochi, reference):
    pipe, facts = mochi
    params = {"omega": "free", "tau": [0, 1], "reference_frame": reference}
    video, image = run(pipe, facts, params)
    z = target(pipe, facts, image)
    assert torch.allclose(video[:, :, reference].float(), z[:, :, reference], atol=1e-4)
    others = [f for f in range(z.shape[2]) if f != reference % z.shape[2]]
    assert (video[:, :, others].float() - z[:, :, others]).abs().max() > 0.05


def test_sampling_starts_at_sigma_start_from_the_noised_picture(mochi):
    """σ_start 0.8: the inverted table starts at 1 − 0.8, the model gets timestep 200 and
    the first step's sample is (1 − σ_start)·Z + σ_start·n; the table ends at 1 (σ = 0)."""
    pipe, facts = mochi
    noise = torch.randn(video_shape(facts), generator=torch.Generator().manual_seed(5))
    with recording(pipe) as events:
        _, image = run(pipe, facts, {"sigma_start": 0.8}, noise=noise)
    first = steps_of(events)[0]
    assert abs(float(torch.as_tensor(first["args"][1]).reshape(-1)[0]) - 200) <= 1e-3
    start = 0.2 * target(pipe, facts, image) + 0.8 * noise
    assert torch.allclose(first["args"][2], start, atol=1e-6)
    model = next(e for e in events if e["event"] == "model")
    assert torch.equal(model["kwargs"]["hidden_states"][:1], first["args"][2])  # [uncond, cond]
    assert abs(float(model["kwargs"]["timestep"][0]) - 200) <= 1e-3
    table = first["sigmas"]
    assert abs(float(table[0]) - 0.2) < 1e-6 and float(table[-1]) == 1.0
    assert len(steps_of(events)) == STEPS


@pytest.mark.parametrize("params", [{"enabled": False}, {"tau": [0.3, 0.3]}], ids=["off", "empty"])
def test_disabled_or_empty_window_is_the_stock_pipeline_from_the_same_latents(mochi, params):
    pipe, facts = mochi
    ours, stock = stock_from_same_start(pipe, facts, params)
    assert torch.equal(ours, stock)


@pytest.mark.parametrize(
    "params",
    [
        {"omega": "free", "tau": [0.0, 0.6]},
        {"omega": "paper", "tau": [0.0, 1.0], "reference_frame": -1},
    ],
    ids=["free", "paper-last"],
)
def test_no_step_waits_for_the_gpu(mochi, sync_guard, params):
    pipe, facts = mochi
    run(pipe, facts, params)
    assert sync_guard.sites == [], "synchronising calls per step:\n" + sync_guard.report()
    want = [i for i in range(STEPS) if STEPS * params["tau"][0] <= i < STEPS * params["tau"][1]]
    assert pipe.noise_rectification["rectified_steps"] == want


def test_refusals_name_the_field(mochi):
    pipe, facts = mochi
    with pytest.raises(RectifyError, match="timesteps"):
        run(pipe, facts, {}, timesteps=[100, 300, 600, 900])
    with pytest.raises(RectifyError, match="strength"):
        run(pipe, facts, {}, strength=0.5)
    saved = pipe.scheduler
    pipe.scheduler = flow_euler(1.0)  # not inverted: not what Mochi's model was trained on
    try:
        with pytest.raises(RectifyError, match="invert_sigmas"):
            run(pipe, facts, {})
    finally:
        pipe.scheduler = saved


# ------------------------------------------------------------------- two anchors
@pytest.mark.parametrize("reference", [0, -1])
def test_an_end_picture_holds_the_other_end_on_its_still_video(mochi, reference):
    check_two_anchors(*mochi, reference)


def test_end_anchor_off_is_the_run_without_an_end_picture(mochi):
    check_end_anchor_off_is_one_picture(*mochi)


def test_end_latent_is_the_end_pictures_still_video_other_shapes_refused(mochi):
    check_end_latent(*mochi)


# ------------------------------------------------------------------- num_frames
def test_num_frames_left_out_is_the_pipelines_own_default(mochi):
    check_default_num_frames(*mochi, default=19, temporal=6)


@pytest.mark.parametrize(("num_frames", "generated"), [(16, 13), (10, 7)])
def test_the_still_video_is_as_long_as_what_the_pipeline_generates(mochi, num_frames, generated):
    check_num_frames_as_the_pipeline(*mochi, num_frames, generated)
