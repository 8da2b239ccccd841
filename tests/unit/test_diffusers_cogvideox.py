"""diffusers' CogVideoXPipeline through image_to_video, on the tiny random-weight pipelines
of tests/unit/tiny_video_pipelines.py: frames-first latents ``[B, T, C, h, w]``, VP
v-prediction on a zero-terminal-SNR schedule (ᾱ = 0 at t = 999), CogVideoXDDIMScheduler
(CogVideoX-2b) and CogVideoXDPMScheduler (5b: stochastic, and ``step`` takes
``(model_output, old_pred_original_sample, timestep, timestep_back, sample)``), the core's
ε form (docs/diffusers-video-pipelines.md §7)."""

from __future__ import annotations

import itertools

import pytest
import torch

pytest.importorskip("diffusers")

import test_diffusers_adapter
from tiny_video_pipelines import BUILDERS, recording
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
    stock_from_same_start,
    target,
    video_shape,
)

from lib_rectify import RectifyError
from lib_rectify_diffusers.schedulers import flow_equivalent_sigma

sync_guard = test_diffusers_adapter.sync_guard  # the issue-17 guard, shared

KINDS = ["cogvideox-ddim", "cogvideox-dpm"]


@pytest.fixture(scope="module")
def pipes():
    torch.manual_seed(0)
    return {name: BUILDERS[name]() for name in KINDS}


def step_calls(events: list[dict]) -> list[dict]:
    """Each ``step`` by name (the DPM scheduler's positional order differs)."""
    calls = []
    for e in events:
        if e["event"] != "step":
            continue
        a, k = e["args"], e["kwargs"]
        if len(a) >= 5:  # CogVideoXDPMScheduler
            calls.append({"model_output": a[0], "timestep": a[2], "sample": a[4], **k})
        else:
            calls.append({"model_output": a[0], "timestep": a[1], "sample": a[2], **k})
    return calls


@pytest.mark.parametrize("name", KINDS)
def test_the_picture_is_a_still_video_in_the_space_the_pipeline_decodes(pipes, name):
    """Z = mode(VAE(still video))·scaling_factor (1.1526 for 2b, 0.7 for 5b); frames-first it
    is what the pipeline's own ``decode_latents`` turns back into the VAE's decoding."""
    pipe, facts = pipes[name]
    image = picture(facts)
    z = target(pipe, facts, image)
    raw = raw_still_video(pipe, facts, image)
    assert tuple(z.shape) == video_shape(facts)
    assert torch.allclose(z, raw * pipe.vae.config.scaling_factor, atol=1e-6)
    with torch.no_grad():
        decoded = pipe.decode_latents(z.permute(0, 2, 1, 3, 4))
        direct = pipe.vae.decode(raw).sample
    assert (decoded - direct).abs().max() < 5e-4


@pytest.mark.parametrize("name", KINDS)
def test_still_window_ends_on_the_still_videos_latent(pipes, name):
    pipe, facts = pipes[name]
    video, image = run(pipe, facts, {"omega": "still", "tau": [0, 1]})
    assert tuple(video.shape) == tuple(facts["latent_shape"])  # frames-first, as returned
    assert torch.allclose(as_video(facts, video).float(), target(pipe, facts, image), atol=1e-4)
    report = pipe.noise_rectification
    assert report["steps"] == STEPS - 1  # the ᾱ = 0 step is above σ_start: skipped
    assert report["rectified_steps"] == list(range(STEPS - 1))
    if name.endswith("ddim"):
        assert report["pivot"] == "initial"
    else:  # fresh noise every step: the pivot is re-read per step, as for DDPM or Euler a
        assert report["pivot"].startswith("per step")


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("reference", [0, -1])
def test_free_window_to_the_end_keeps_the_reference_frame_only(pipes, name, reference):
    pipe, facts = pipes[name]
    params = {"omega": "free", "tau": [0, 1], "reference_frame": reference}
    video, image = run(pipe, facts, params)
    video, z = as_video(facts, video).float(), target(pipe, facts, image)
    assert torch.allclose(video[:, :, reference], z[:, :, reference], atol=1e-4)
    others = [f for f in range(z.shape[2]) if f != reference % z.shape[2]]
    assert (video[:, :, others] - z[:, :, others]).abs().max() > 0.05


@pytest.mark.parametrize("name", KINDS)
def test_sampling_starts_at_the_first_step_below_sigma_start(pipes, name):
    """The schedule starts at ᾱ(999) = 0, pure noise: sampling starts at its first step whose
    noise level, as a flow σ of the same SNR, is at most σ_start (t = 749 of 999, 749, 499,
    249), on √ᾱ·Z + √(1 − ᾱ)·n, frames-first, which the transformer gets."""
    pipe, facts = pipes[name]
    s = pipe.scheduler
    noise = torch.randn(video_shape(facts), generator=torch.Generator().manual_seed(5))
    with recording(pipe) as events:
        _, image = run(pipe, facts, {"sigma_start": 0.95}, noise=noise)
    calls = step_calls(events)
    assert [int(c["timestep"]) for c in calls] == [749, 499, 249]
    abar = s.alphas_cumprod[749].float()
    assert 0 < abar and flow_equivalent_sigma(float(abar)) <= 0.95
    assert flow_equivalent_sigma(float(s.alphas_cumprod[999])) == 1.0
    z = target(pipe, facts, image)
    start = (abar.sqrt() * z + (1 - abar).sqrt() * noise).permute(0, 2, 1, 3, 4)
    assert torch.allclose(calls[0]["sample"], start, atol=1e-6)
    model = next(e for e in events if e["event"] == "model")
    assert torch.equal(model["kwargs"]["hidden_states"][:1], calls[0]["sample"])  # [neg, cond]
    assert int(model["kwargs"]["timestep"][0]) == 749


@pytest.mark.parametrize("name", KINDS)
def test_the_dpm_step_gets_its_arguments_in_its_own_order(pipes, name):
    """CogVideoXDPMScheduler: the previous step's x0 and timestep come through the hook."""
    pipe, facts = pipes[name]
    with recording(pipe) as events:
        run(pipe, facts, {"omega": "paper", "tau": [0, 1]})
    steps = [e for e in events if e["event"] == "step"]
    if name.endswith("ddim"):
        assert all(len(e["args"]) == 3 for e in steps)
        return
    assert steps[0]["args"][1] is None and steps[0]["args"][3] is None
    for before, after in itertools.pairwise(steps):
        assert torch.equal(after["args"][1], before["out"][1])  # old_pred_original_sample
        assert int(after["args"][3]) == int(before["args"][2])  # timestep_back


@pytest.mark.parametrize("name", KINDS)
def test_strength_below_one_starts_later_still_exact(pipes, name):
    pipe, facts = pipes[name]
    video, image = run(pipe, facts, {"omega": "still", "tau": [0, 1]}, strength=0.5)
    assert pipe.noise_rectification["steps"] == 2
    assert torch.allclose(as_video(facts, video).float(), target(pipe, facts, image), atol=1e-4)


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("params", [{"enabled": False}, {"tau": [0.3, 0.3]}], ids=["off", "empty"])
def test_disabled_or_empty_window_is_the_stock_pipeline_from_the_same_latents(pipes, name, params):
    pipe, facts = pipes[name]
    ours, stock = stock_from_same_start(pipe, facts, params)
    assert torch.equal(ours, stock)


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize(
    "params",
    [
        {"omega": "free", "tau": [0.0, 0.6]},
        {"omega": "paper", "tau": [0.0, 1.0], "reference_frame": -1},
    ],
    ids=["free", "paper-last"],
)
def test_no_step_waits_for_the_gpu(pipes, sync_guard, name, params):
    pipe, facts = pipes[name]
    run(pipe, facts, params)
    assert sync_guard.sites == [], "synchronising calls per step:\n" + sync_guard.report()
    total = STEPS - 1
    want = [i for i in range(total) if total * params["tau"][0] <= i < total * params["tau"][1]]
    assert pipe.noise_rectification["rectified_steps"] == want


def test_refusals_name_the_field(pipes):
    from diffusers import DDIMScheduler

    pipe, facts = pipes["cogvideox-ddim"]
    with pytest.raises(RectifyError, match=r"sigma_start.*zero terminal SNR"):
        run(pipe, facts, {"sigma_start": 1.0})
    with pytest.raises(RectifyError, match="sigma_start"):
        run(pipe, facts, {"sigma_start": 0.1})  # below the schedule's lowest level
    with pytest.raises(RectifyError, match="timesteps"):
        run(pipe, facts, {}, timesteps=[999, 749, 499, 249])
    saved = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(saved.config)
    try:
        with pytest.raises(RectifyError, match=r"scheduler.*CogVideoXDDIMScheduler"):
            run(pipe, facts, {})
    finally:
        pipe.scheduler = saved
    pipe.transformer.register_to_config(patch_size_t=2)  # CogVideoX 1.5 pads latent frames
    try:
        with pytest.raises(RectifyError, match="num_frames"):
            run(pipe, facts, {})  # 9 frames: 3 latent frames, not a multiple of 2
    finally:
        pipe.transformer.register_to_config(patch_size_t=None)


def test_a_zero_terminal_snr_schedule_on_a_unet_pipeline_starts_below_sigma_start(tmp_path):
    """The same start rule serves any VP schedule that begins at ᾱ = 0: AnimateDiff with a
    zero-terminal-SNR, trailing, v-prediction DDIM (which before failed at the pivot)."""
    pipe = test_diffusers_adapter.pipeline(
        "AnimateDiff",
        tmp_path,
        "DDIMScheduler",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        prediction_type="v_prediction",
    )
    assert float(pipe.scheduler.alphas_cumprod[-1]) == 0.0
    latents = test_diffusers_adapter.run(pipe, test_diffusers_adapter.STILL)
    z = test_diffusers_adapter.reference_latent(pipe)
    assert float((latents - z).abs().max()) < 1e-4 * float(z.abs().max())
    steps = pipe.noise_rectification["steps"]
    assert 0 < steps < test_diffusers_adapter.STEPS  # the first (ᾱ = 0) steps skipped
    with pytest.raises(RectifyError, match="sigma_start"):
        test_diffusers_adapter.run(pipe, {**test_diffusers_adapter.STILL, "sigma_start": 1.0})


# ------------------------------------------------------------------- two anchors
@pytest.mark.parametrize("reference", [0, -1])
@pytest.mark.parametrize("name", KINDS)
def test_an_end_picture_holds_the_other_end_on_its_still_video(pipes, name, reference):
    check_two_anchors(*pipes[name], reference)


@pytest.mark.parametrize("name", KINDS)
def test_end_anchor_off_is_the_run_without_an_end_picture(pipes, name):
    check_end_anchor_off_is_one_picture(*pipes[name])


def test_end_latent_is_the_end_pictures_still_video_other_shapes_refused(pipes):
    check_end_latent(*pipes["cogvideox-ddim"])


# ------------------------------------------------------------------- num_frames
def test_num_frames_left_out_is_the_pipelines_own_default(pipes):
    check_default_num_frames(*pipes["cogvideox-ddim"], default=9, temporal=4)


@pytest.mark.parametrize(("num_frames", "generated"), [(16, 16), (13, 16), (10, 9)])
def test_the_still_video_is_as_long_as_what_the_pipeline_generates(pipes, num_frames, generated):
    check_num_frames_as_the_pipeline(*pipes["cogvideox-ddim"], num_frames, generated)


def test_cogvideox_15s_default_length_is_one_its_patches_keep_whole():
    """CogVideoX 1.5 (patch_size_t 2) defaults to 81 pictures = 21 latent frames, which it
    would pad at the front (dropping the picture's frame, refused): left out, num_frames is
    77 (20 latent frames); CogVideoX 1.0 (no temporal patch) keeps its own 49."""
    from types import SimpleNamespace

    from lib_rectify_diffusers import models as vm

    model = vm.MODELS["CogVideoXPipeline"]

    def pipe(sample_frames, patch_size_t):
        config = SimpleNamespace(sample_frames=sample_frames, patch_size_t=patch_size_t)
        return SimpleNamespace(
            __call__=lambda num_frames=None: None,
            transformer=SimpleNamespace(config=config),
            vae_scale_factor_temporal=4,
        )

    assert vm.default_frames(model, pipe(81, 2)) == 77
    assert vm.latent_frames(model, pipe(81, 2), 77) == 20
    assert vm.default_frames(model, pipe(49, None)) == 49
