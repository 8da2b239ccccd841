"""lib_rectify_diffusers on the three stock diffusers video pipelines (tiny random models, CPU).

For AnimateDiffPipeline, AnimateDiffSDXLPipeline and TextToVideoSDPipeline (ModelScope)
and each scheduler family they are used with: a still window ends every frame on the
picture; ω ``free`` keeps the reference frame exact; disabled or an empty window is bit
for bit the stock pipeline started from the same latents; and the rectified run calls
the UNet as often as the stock one. Latents are compared (``output_type="latent"``),
and once through the VAE against the picture's reconstruction.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_diffusers as td

from lib_rectify import RectifyError, RectifyParams
from lib_rectify_diffusers import image_to_video, start_latents

FRAMES, STEPS = 4, 4
STILL = {"omega": "still", "tau": [0.0, 1.0]}
BUILDERS = {
    "AnimateDiff": td.animatediff,
    "AnimateDiff-SDXL": td.animatediff_sdxl,
    "ModelScope": td.modelscope,
}
#: (id, scheduler class, config, pipeline kwargs). DDIM here stops at ᾱ of timestep 0
#: (set_alpha_to_one=False, SD's config): the last step is landed.
SCHEDULERS = [
    ("DDIM", "DDIMScheduler", {}, {}),
    ("DDIM-eta", "DDIMScheduler", {}, {"eta": 1.0}),
    ("DDIM-v", "DDIMScheduler", {"prediction_type": "v_prediction"}, {}),
    ("Euler", "EulerDiscreteScheduler", {}, {}),
    ("Euler-v", "EulerDiscreteScheduler", {"prediction_type": "v_prediction"}, {}),
    ("EulerA", "EulerAncestralDiscreteScheduler", {}, {}),
    ("DPM++2M", "DPMSolverMultistepScheduler", {}, {}),
    ("DPM++2M-Karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, {}),
    ("DPM++SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, {}),
    ("UniPC", "UniPCMultistepScheduler", {}, {}),
    ("LCM", "LCMScheduler", {}, {}),
]
FRESH_NOISE = {"DDIM-eta", "EulerA", "DPM++SDE", "LCM"}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_diffusers")


_PIPES: dict[str, object] = {}


def pipeline(kind: str, tmp: Path, scheduler: str = "DDIMScheduler", **config):
    if kind not in _PIPES:
        _PIPES[kind] = BUILDERS[kind](tmp)
    pipe = _PIPES[kind]
    pipe.scheduler = td.scheduler(scheduler, **config)
    return pipe


def picture(seed: int = 0) -> torch.Tensor:
    """A smooth 16×16 picture in [0, 1] (left-right and top-bottom ramps)."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, 16)
    base = torch.stack(
        [ramp[None].expand(16, 16), ramp[:, None].expand(16, 16), 0.5 * torch.ones(16, 16)]
    )
    return (base + 0.1 * torch.rand(3, 16, 16, generator=g)).clamp(0, 1)[None]


def run(pipe, params, *, seed=0, **kwargs):
    kwargs.setdefault("num_frames", FRAMES)
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "latent")
    kwargs.setdefault("prompt", "a cat")
    out = image_to_video(
        pipe, picture(), params, generator=torch.Generator().manual_seed(seed), **kwargs
    )
    return out.frames if hasattr(out, "frames") else out[0]


def reference_latent(pipe) -> torch.Tensor:
    from lib_rectify_diffusers import encode_picture

    return encode_picture(pipe, picture(), 16, 16)[:, :, None]


def count_unet_calls(pipe):
    calls = []
    handle = pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize(
    ("sid", "name", "config", "extra"), SCHEDULERS, ids=[s[0] for s in SCHEDULERS]
)
def test_still_window_ends_every_frame_on_the_picture(tmp, kind, sid, name, config, extra):
    pipe = pipeline(kind, tmp, name, **config)
    latents = run(pipe, STILL, **extra)
    z = reference_latent(pipe)
    tolerance = 2e-3 if sid == "LCM" else 1e-4  # LCM's boundary condition keeps c_skip·x
    assert float((latents - z).abs().max()) < tolerance * float(z.abs().max())
    report = pipe.noise_rectification
    assert report["rectified_steps"] == list(range(STEPS))
    assert report["pivot"].startswith("per step") == (sid in FRESH_NOISE), report
    if name == "DDIMScheduler":
        assert report["landed"]  # stops at ᾱ(0) < 1: landed on the clean estimate


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize(
    ("sid", "name", "config", "extra"), SCHEDULERS, ids=[s[0] for s in SCHEDULERS]
)
@pytest.mark.parametrize("reference", [0, -1])
def test_free_omega_keeps_the_reference_frame_exact(tmp, kind, sid, name, config, extra, reference):
    pipe = pipeline(kind, tmp, name, **config)
    latents = run(pipe, {"omega": "free", "tau": [0.0, 1.0], "reference_frame": reference}, **extra)
    z = reference_latent(pipe)[:, :, 0]
    tolerance = 2e-3 if sid == "LCM" else 1e-4
    scale = float(z.abs().max())
    assert float((latents[:, :, reference] - z).abs().max()) < tolerance * scale
    others = [f for f in range(FRAMES) if f != reference % FRAMES]
    assert max(float((latents[:, :, f] - z).abs().max()) for f in others) > 1e-2 * scale


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize(
    ("sid", "name", "config", "extra"), SCHEDULERS, ids=[s[0] for s in SCHEDULERS]
)
def test_disabled_or_empty_window_is_the_stock_pipeline(tmp, kind, sid, name, config, extra):
    pipe = pipeline(kind, tmp, name, **config)
    z = reference_latent(pipe).expand(-1, -1, FRAMES, -1, -1)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(5))
    start, _ = start_latents(pipe.scheduler, z, noise, num_inference_steps=STEPS)
    stock = pipe(
        prompt="a cat",
        num_frames=FRAMES,
        height=16,
        width=16,
        num_inference_steps=STEPS,
        latents=start.clone(),
        generator=torch.Generator().manual_seed(1),
        output_type="latent",
        **extra,
    )
    stock = stock.frames if hasattr(stock, "frames") else stock[0]
    for params in (
        RectifyParams(enabled=False, omega="still"),
        {"omega": "still", "tau": [0.5, 0.5]},
    ):
        ours = image_to_video(
            pipe,
            params=params,
            reference_latent=reference_latent(pipe)[:, :, 0],
            noise=noise,
            prompt="a cat",
            num_frames=FRAMES,
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(1),
            output_type="latent",
            **extra,
        )
        ours = ours.frames if hasattr(ours, "frames") else ours[0]
        assert torch.equal(ours, stock)
        assert pipe.noise_rectification["rectified_steps"] == []


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize(
    ("sid", "name", "config", "extra"),
    SCHEDULERS[:1] + SCHEDULERS[6:7] + SCHEDULERS[5:6],
    ids=["DDIM", "DPM++2M", "EulerA"],
)
def test_rectified_run_calls_the_unet_as_often_as_stock(tmp, kind, sid, name, config, extra):
    pipe = pipeline(kind, tmp, name, **config)
    counts = []
    for params in ({"enabled": False}, {"omega": "paper", "tau": [0.0, 0.6]}):
        calls, handle = count_unet_calls(pipe)
        try:
            run(pipe, params, **extra)
        finally:
            handle.remove()
        counts.append(len(calls))
    assert counts[0] == counts[1] == STEPS  # CFG is batched: one call per step


def test_a_partial_window_rectifies_only_its_steps(tmp):
    pipe = pipeline("AnimateDiff", tmp, "EulerDiscreteScheduler")
    run(pipe, {"omega": "paper", "tau": [0.25, 0.75]})
    assert pipe.noise_rectification["rectified_steps"] == [1, 2]


@pytest.mark.parametrize("kind", ["AnimateDiff", "AnimateDiff-SDXL"])
def test_several_videos_per_prompt_each_keep_the_picture(tmp, kind):
    """The AnimateDiff pipelines ignore num_videos_per_prompt (diffusers 0.42.1 sets it
    to 1); the adapter repeats the prompts instead, so it works the same everywhere."""
    pipe = pipeline(kind, tmp, "DPMSolverMultistepScheduler")
    latents = run(pipe, STILL, num_videos_per_prompt=2, negative_prompt="blurry")
    assert latents.shape[0] == 2
    z = reference_latent(pipe)
    assert float((latents - z).abs().max()) < 1e-4 * float(z.abs().max())
    free = run(pipe, {"omega": "free", "tau": [0.0, 1.0]}, num_videos_per_prompt=2)
    assert float((free[0] - free[1]).abs().max()) > 1e-3  # two different videos
    assert float((free[:, :, 0] - z[:, :, 0]).abs().max()) < 1e-4 * float(z.abs().max())


def test_modelscope_takes_several_prompts_and_videos_per_prompt(tmp):
    pipe = pipeline("ModelScope", tmp, "DDIMScheduler")
    latents = run(pipe, STILL, prompt=["a cat", "a dog"])
    z = reference_latent(pipe)
    assert latents.shape[0] == 2
    assert float((latents - z).abs().max()) < 1e-4 * float(z.abs().max())
    free = run(
        pipe,
        {"omega": "free", "tau": [0.0, 1.0]},
        prompt=["a cat", "a dog"],
        num_videos_per_prompt=2,
    )
    assert free.shape[0] == 4
    assert float((free[:, :, 0] - z[:, :, 0]).abs().max()) < 1e-4 * float(z.abs().max())


def test_strength_below_one_starts_later_and_keeps_the_picture(tmp):
    for name in ("DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"):
        pipe = pipeline("AnimateDiff", tmp, name)
        calls, handle = count_unet_calls(pipe)
        try:
            latents = run(pipe, STILL, strength=0.5, num_inference_steps=8)
        finally:
            handle.remove()
        assert len(calls) == 4
        assert pipe.noise_rectification["steps"] == 4
        z = reference_latent(pipe)
        assert float((latents - z).abs().max()) < 1e-4 * float(z.abs().max())
        assert len(pipe.scheduler.timesteps) == 8  # the scheduler is left whole


def test_ip_adapter_image_steers_the_video_and_the_picture_is_kept(tmp):
    pipe = td.animatediff(tmp / "ip", "DDIMScheduler", ip_adapter=True)
    face = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    from PIL import Image

    face = Image.fromarray((face.permute(1, 2, 0).numpy() * 255).astype("uint8"))
    free = {"omega": "free", "tau": [0.0, 1.0], "reference_frame": 0}
    with_ip = run(pipe, free, ip_adapter_image=face)
    pipe.set_ip_adapter_scale(0.0)
    without = run(pipe, free, ip_adapter_image=face)
    pipe.set_ip_adapter_scale(1.0)
    assert float((with_ip - without).abs().max()) > 1e-3  # the adapter really acts
    z = reference_latent(pipe)[:, :, 0]
    assert float((with_ip[:, :, 0] - z).abs().max()) < 1e-4 * float(z.abs().max())
    still = run(pipe, STILL, ip_adapter_image=face)
    assert float((still - z[:, :, None]).abs().max()) < 1e-4 * float(z.abs().max())


def test_decoded_frames_are_the_pictures_reconstruction(tmp):
    pipe = pipeline("AnimateDiff", tmp, "EulerDiscreteScheduler")
    frames = run(pipe, STILL, output_type="pt")  # [B, F, 3, H, W] in [0, 1]
    z = reference_latent(pipe)[:, :, 0]
    with torch.no_grad():
        reconstruction = pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample
    reconstruction = (reconstruction / 2 + 0.5).clamp(0, 1)
    for f in range(FRAMES):
        assert float((frames[0, f] - reconstruction[0]).abs().max()) < 1e-3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: setattr(p, "scheduler", td.scheduler("HeunDiscreteScheduler")), "scheduler"),
        (lambda p: setattr(p, "scheduler", td.scheduler("PNDMScheduler")), "scheduler"),
        (lambda p: p.enable_free_init(num_iters=2), "FreeInit"),
    ],
    ids=["Heun", "PNDM", "FreeInit"],
)
def test_unsupported_setups_are_refused_by_name(tmp, change, field):
    pipe = td.animatediff(tmp / "refuse")
    change(pipe)
    with pytest.raises(RectifyError) as error:
        run(pipe, STILL)
    assert error.value.field == field
    if field == "FreeInit":
        pipe.disable_free_init()
    assert "step" not in pipe.scheduler.__dict__  # nothing left patched


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"params": {"omega": 2.0}}, "omega"),
        ({"params": {"tau": [0.8, 0.2]}}, "tau"),
        ({"params": {"speed": 1}}, "args key"),
        ({"strength": 0.0}, "strength"),
        ({"strength": 0.1}, "strength"),
        ({"latents": torch.zeros(1)}, "latents"),
        ({"num_frames": 0}, "num_frames"),
    ],
)
def test_bad_input_names_the_field(tmp, kwargs, field):
    pipe = pipeline("AnimateDiff", tmp)
    params = kwargs.pop("params", STILL)
    with pytest.raises(RectifyError) as error:
        run(pipe, params, **kwargs)
    assert error.value.field == field
    assert "step" not in pipe.scheduler.__dict__


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_fresh_noise_comes_from_the_callers_generator(tmp, kind):
    """The hook keeps scheduler.step's signature, so the pipeline still passes it
    ``generator`` (and ``eta``): a seeded rectified run is reproducible."""
    pipe = pipeline(kind, tmp, "EulerAncestralDiscreteScheduler")
    free = {"omega": "free", "tau": [0.0, 1.0]}
    torch.manual_seed(1)
    a = run(pipe, free, seed=3)
    torch.manual_seed(2)
    b = run(pipe, free, seed=3)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "name",
    [
        "LMSDiscreteScheduler",
        "DPMSolverSinglestepScheduler",
        "DEISMultistepScheduler",
        "DDPMScheduler",
    ],
)
def test_the_other_supported_schedulers(tmp, name):
    pipe = pipeline("AnimateDiff", tmp, name)
    z = reference_latent(pipe)
    scale = float(z.abs().max())
    still = run(pipe, STILL)
    assert float((still - z).abs().max()) < 1e-4 * scale
    free = run(pipe, {"omega": "free", "tau": [0.0, 1.0], "reference_frame": -1})
    assert float((free[:, :, -1] - z[:, :, 0]).abs().max()) < 1e-4 * scale
    assert float((free[:, :, 0] - z[:, :, 0]).abs().max()) > 1e-2 * scale
    assert pipe.noise_rectification["pivot"].startswith("per step") == (name == "DDPMScheduler")


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("name", ["DDIMScheduler", "EulerAncestralDiscreteScheduler"])
def test_an_end_picture_holds_the_last_frame(tmp, kind, name):
    """Two anchors (docs/two-anchors.md): the first frame on the picture, the last on the
    end picture, the middle moving with ω free."""
    pipe = pipeline(kind, tmp, name)
    from lib_rectify_diffusers import encode_picture

    end = encode_picture(pipe, 1 - picture(), 16, 16)
    z = reference_latent(pipe)[:, :, 0]
    scale = float(z.abs().max())
    free = run(pipe, {"omega": "free", "tau": [0.0, 1.0]}, end_image=1 - picture())
    assert float((free[:, :, 0] - z).abs().max()) < 1e-4 * scale
    assert float((free[:, :, -1] - end).abs().max()) < 1e-4 * scale
    assert pipe.noise_rectification["anchors"] == [0, FRAMES - 1]
    still = run(pipe, STILL, end_image=1 - picture())
    assert float((still[:, :, 1:-1] - free[:, :, 1:-1]).abs().max()) > 1e-2 * scale
    # end_anchor off: one picture, as without an end image
    off = run(pipe, {**STILL, "end_anchor": False}, end_image=1 - picture())
    assert float((off - z[:, :, None]).abs().max()) < 1e-4 * scale
    with pytest.raises(RectifyError, match="reference_frame"):
        run(pipe, {**STILL, "reference_frame": 2}, end_image=1 - picture())


def test_num_frames_left_out_is_16_on_the_unet_pipelines(tmp):
    """``num_frames=None`` (the default) is the pipeline's own: 16 for the UNet pipelines, as
    before; the transformer pipelines' own defaults are tested with them."""
    pipe = pipeline("AnimateDiff", tmp)
    latents = run(pipe, STILL, num_frames=None, num_inference_steps=2)
    assert latents.shape[2] == 16
    assert pipe.noise_rectification["num_frames"] == 16


# ------------------------------------------------------- no GPU synchronisation per step
OTHER_SCHEDULERS = [
    ("LMS", "LMSDiscreteScheduler", {}, {}),
    ("DPM-single", "DPMSolverSinglestepScheduler", {}, {}),
    ("DEIS", "DEISMultistepScheduler", {}, {}),
    ("DDPM", "DDPMScheduler", {}, {}),
]


@pytest.fixture
def sync_guard(monkeypatch):
    """Record every synchronising call made by the hook's per-step code (bench/syncs.py);
    the scheduler's own ``step``, which the hook calls, is the host's and is not judged."""
    from bench.syncs import SyncRecorder
    from lib_rectify_diffusers import hook as hook_module

    recorder = SyncRecorder()
    hooked_step = hook_module.SchedulerHook.step

    def watched(self, original, *args, **kwargs):
        def host_step(*a, **k):
            with recorder.paused():
                return original(*a, **k)

        with recorder.watching():
            return hooked_step(self, host_step, *args, **kwargs)

    monkeypatch.setattr(hook_module.SchedulerHook, "step", watched)
    return recorder


@pytest.mark.parametrize("kind", ["AnimateDiff", "ModelScope"])
@pytest.mark.parametrize(
    ("sid", "name", "config", "extra"),
    SCHEDULERS + OTHER_SCHEDULERS,
    ids=[s[0] for s in SCHEDULERS + OTHER_SCHEDULERS],
)
@pytest.mark.parametrize(
    "params",
    [
        {"omega": "paper", "tau": [0.0, 0.6]},
        {"omega": "free", "tau": [0.0, 1.0], "reference_frame": -1},
    ],
    ids=["paper", "free-last"],
)
def test_no_step_waits_for_the_gpu(tmp, sync_guard, kind, sid, name, config, extra, params):
    """Issue 17: no item()/float()/bool()/tolist()/nonzero() or blocking host-to-device copy
    in the per-step path, for every scheduler family; the steps are still all rectified."""
    pipe = pipeline(kind, tmp, name, **config)
    run(pipe, params, **extra)
    assert sync_guard.sites == [], "synchronising calls per step:\n" + sync_guard.report()
    tau = params["tau"]
    want = [i for i in range(STEPS) if STEPS * tau[0] <= i < STEPS * tau[1]]
    assert pipe.noise_rectification["rectified_steps"] == want


def test_the_guard_sees_a_synchronising_hook(tmp, sync_guard, monkeypatch):
    """The guard itself: a per-step float() of the timestep (what the hook did before
    issue 17) is caught and named."""
    from lib_rectify_diffusers import hook as hook_module

    original = hook_module.SchedulerHook._start

    def reading_start(self, s, sample, x, abar, layout, k):
        float(abar)  # a host read of a device value, as the old per-step code made
        return original(self, s, sample, x, abar, layout, k)

    monkeypatch.setattr(hook_module.SchedulerHook, "_start", reading_start)
    run(pipeline("AnimateDiff", tmp), STILL)
    assert any("hook.py" in s.where and "float(tensor)" in s.what for s in sync_guard.sites)


def test_a_non_finite_picture_latent_fails_after_sampling_naming_it(tmp):
    """Checks that used to read values every step now run on the device; they still fail."""
    pipe = pipeline("AnimateDiff", tmp)
    bad = picture()
    bad[..., 0, 0] = float("nan")
    with pytest.raises(RectifyError, match="noisy latent"):
        image_to_video(
            pipe,
            bad,
            {"omega": "paper"},
            num_frames=FRAMES,
            num_inference_steps=STEPS,
            output_type="latent",
            prompt="a cat",
        )
