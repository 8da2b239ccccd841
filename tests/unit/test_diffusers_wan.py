"""diffusers' WanPipeline (Wan 2.1 T2V, Wan 2.2 A14B and TI2V-5B) through image_to_video,
on tiny random-weight pipelines (tests/unit/tiny_video_pipelines.py), with
FlowMatchEulerDiscreteScheduler and UniPC in flow mode: the flow form of the core."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

import test_diffusers_adapter
from tiny_video_pipelines import BUILDERS, recording
from video_adapter_checks import (
    check_default_num_frames,
    check_end_anchor_off_is_one_picture,
    check_end_latent,
    check_num_frames_as_the_pipeline,
    check_two_anchors,
)

from lib_rectify import RectifyError
from lib_rectify_diffusers import image_to_video
from lib_rectify_diffusers.pipeline import encode_picture

sync_guard = test_diffusers_adapter.sync_guard  # the issue-17 guard, shared

WAN = ["wan2.1", "wan2.1-unipc", "wan2.2-a14b", "wan2.2-a14b-unipc", "wan2.2-ti2v-5b"]
STEPS = 4


@pytest.fixture(scope="module")
def pipes():
    torch.manual_seed(0)
    return {name: BUILDERS[name]() for name in WAN}


def _run(pipe, facts, params, **kw):
    call = dict(facts["call"])
    image = torch.Generator().manual_seed(7)
    picture = torch.rand(3, call["height"], call["width"], generator=image)
    out = image_to_video(
        pipe,
        picture,
        params,
        prompt="a",
        num_inference_steps=STEPS,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        **call,
        **kw,
    )
    return out.frames, picture


@pytest.mark.parametrize("name", WAN)
def test_still_window_ends_on_the_still_videos_latent(pipes, name):
    pipe, facts = pipes[name]
    video, picture = _run(pipe, facts, {"omega": "still", "tau": [0, 1]})
    call = facts["call"]
    target = encode_picture(pipe, picture, call["height"], call["width"], frames=call["num_frames"])
    assert tuple(video.shape) == tuple(facts["latent_shape"])
    assert torch.allclose(video.float(), target, atol=1e-4)
    assert pipe.noise_rectification["rectified_steps"] == list(range(STEPS))


@pytest.mark.parametrize("name", ["wan2.1", "wan2.1-unipc"])
def test_free_window_to_the_end_keeps_the_reference_frame_only(pipes, name):
    pipe, facts = pipes[name]
    call = facts["call"]
    video, picture = _run(pipe, facts, {"omega": "free", "tau": [0, 1]})
    target = encode_picture(pipe, picture, call["height"], call["width"], frames=call["num_frames"])
    assert torch.allclose(video[:, :, 0].float(), target[:, :, 0], atol=1e-4)
    assert (video[:, :, 1:].float() - target[:, :, 1:]).abs().max() > 0.1


@pytest.mark.parametrize("name", ["wan2.1", "wan2.1-unipc"])
def test_sampling_starts_at_sigma_start(pipes, name):
    pipe, facts = pipes[name]
    with recording(pipe) as calls:
        _run(pipe, facts, {"sigma_start": 0.8})
    first = next(c for c in calls if c.get("event") == "step")
    assert abs(float(torch.as_tensor(first["args"][1]).reshape(-1)[0]) - 800) <= 1.0
    assert abs(float(pipe.scheduler.sigmas[0]) - 0.8) < 1e-5  # the rescaled schedule


@pytest.mark.parametrize("name", ["wan2.1", "wan2.1-unipc"])
def test_disabled_is_the_stock_pipeline_from_the_same_latents(pipes, name):
    pipe, facts = pipes[name]
    call = dict(facts["call"])
    shape = facts["latent_shape"]
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    with recording(pipe) as calls:
        off, _ = _run(pipe, facts, {"enabled": False}, noise=noise)
    start = next(c for c in calls if c.get("event") == "step")["args"][2]
    stock = pipe(
        prompt="a",
        num_inference_steps=STEPS,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
        latents=start.clone(),
        **call,
    ).frames
    assert torch.equal(off, stock)
    empty, _ = _run(pipe, facts, {"tau": [0.3, 0.3]}, noise=noise)
    assert torch.equal(empty, stock)


def test_strength_below_one_is_refused_for_flow(pipes):
    pipe, facts = pipes["wan2.1"]
    with pytest.raises(RectifyError, match="strength"):
        _run(pipe, facts, {}, strength=0.5)


def test_bad_sigma_start_is_refused_by_name(pipes):
    pipe, facts = pipes["wan2.1"]
    with pytest.raises(RectifyError, match="sigma_start"):
        _run(pipe, facts, {"sigma_start": 1.5})


@pytest.mark.parametrize("name", ["wan2.1", "wan2.1-unipc", "wan2.2-a14b"])
@pytest.mark.parametrize(
    "params",
    [
        {"omega": "free", "tau": [0.0, 0.6]},
        {"omega": "paper", "tau": [0.0, 1.0], "reference_frame": -1},
    ],
    ids=["free", "paper-last"],
)
def test_no_flow_step_waits_for_the_gpu(pipes, sync_guard, name, params):
    """The flow path reads nothing back per step (the guard of issue 17, bench/syncs.py)."""
    pipe, facts = pipes[name]
    _run(pipe, facts, params)
    assert sync_guard.sites == [], "synchronising calls per step:\n" + sync_guard.report()
    want = [i for i in range(STEPS) if STEPS * params["tau"][0] <= i < STEPS * params["tau"][1]]
    assert pipe.noise_rectification["rectified_steps"] == want


def test_an_unknown_transformer_pipeline_is_refused_naming_the_served_ones(pipes):
    """A pipeline class whose loop was not checked (here Wan under another name, as an
    image-to-video variant would be) is refused, naming the pipelines that are served."""
    pipe, _facts = pipes["wan2.1"]
    other = type("WanImageToVideoPipeline", (type(pipe),), {})
    stranger = other.__new__(other)
    stranger.__dict__.update(pipe.__dict__)
    with pytest.raises(RectifyError, match="pipe") as refused:
        image_to_video(stranger, torch.rand(3, 32, 32), {}, prompt="a", num_inference_steps=2)
    for served in ("WanPipeline", "HunyuanVideoPipeline", "LTXPipeline", "MochiPipeline"):
        assert served in str(refused.value)
    assert "CogVideoXPipeline" in str(refused.value)


# ------------------------------------------------------------------- two anchors
@pytest.mark.parametrize("reference", [0, -1])
@pytest.mark.parametrize("name", ["wan2.1", "wan2.1-unipc", "wan2.2-a14b", "wan2.2-ti2v-5b"])
def test_an_end_picture_holds_the_other_end_on_its_still_video(pipes, name, reference):
    """Two anchors (docs/two-anchors.md) as the ComfyUI node makes them for a video VAE: the
    reference latent frame on the picture's still video, the other end on the end picture's,
    the frames between on their linear blend with ω still."""
    check_two_anchors(*pipes[name], reference)


@pytest.mark.parametrize("name", ["wan2.1", "wan2.1-unipc"])
def test_end_anchor_off_or_disabled_is_the_run_without_an_end_picture(pipes, name):
    check_end_anchor_off_is_one_picture(*pipes[name])


def test_end_latent_is_the_end_pictures_still_video_other_shapes_refused(pipes):
    check_end_latent(*pipes["wan2.1"])


# ------------------------------------------------------------------- num_frames
@pytest.mark.parametrize("name", ["wan2.1", "wan2.2-ti2v-5b"])
def test_num_frames_left_out_is_wans_own_default(pipes, name):
    check_default_num_frames(*pipes[name], default=81, temporal=4)


@pytest.mark.parametrize(("num_frames", "generated"), [(16, 17), (14, 13), (12, 13), (3, 1)])
def test_a_length_wan_rounds_is_rounded_as_wan_does(pipes, num_frames, generated):
    """WanPipeline turns a length that is not 4k + 1 into num_frames // 4 · 4 + 1 with a
    warning (pipeline_wan.py:494-499); 16, the adapter's old default, becomes 17."""
    check_num_frames_as_the_pipeline(*pipes["wan2.1"], num_frames, generated)


@pytest.mark.parametrize("name", ["wan2.2-a14b", "wan2.2-a14b-unipc"])
def test_a14b_switches_expert_on_the_rescaled_timesteps(pipes, name):
    """Wan 2.2 A14B runs ``transformer`` while t ≥ boundary_ratio·1000 and ``transformer_2``
    after (pipeline_wan.py, the boundary test in the denoising loop): with σ_start the rule
    meets the rescaled timesteps, so the high-noise expert runs fewer steps, none from
    σ_start 0.8 (σ is what each expert was trained on)."""
    pipe, facts = pipes[name]
    boundary = facts["boundary_timestep"]
    high = {}
    for sigma_start in (1.0, 0.95, 0.8):
        with recording(pipe) as calls:
            _run(pipe, facts, {"sigma_start": sigma_start, "omega": "free"})
        used, per_step = [], []
        for event in calls:
            if event.get("event") == "model":
                used.append(event["component"])
            elif event.get("event") == "step":
                t = float(torch.as_tensor(event["args"][1]).reshape(-1)[0])
                per_step.append((t, set(used)))
                used = []
        assert len(per_step) == STEPS
        for t, components in per_step:
            expected = "transformer" if t >= boundary else "transformer_2"
            assert components == {expected}, (sigma_start, t, components)
        high[sigma_start] = sum(t >= boundary for t, _ in per_step)
    assert high[1.0] >= high[0.95] >= 1 and high[0.8] == 0
