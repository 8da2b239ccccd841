"""The node on flow-matching video models (Wan 2.1 / 2.2 in ComfyUI), through the fake's
flow path: ``ModelSamplingDiscreteFlow`` + ``CONST`` (model_sampling.py:62-76, 244-284),
5-D latents ``[B, C, T, h, w]``, Wan 2.1's latent format and a VAE that encodes time
causally (fake_comfy.py). What a Wan user sees: the schedule starts at ``sigma_start``
instead of pure noise, a still window ends on the still video's latent, ω free keeps the
reference latent frame exact, two anchors hold both ends, off and an empty window are the
workflow without the node, partial windows rectify exactly their steps, and bad input is
refused naming the field, with nothing left for the next prompt.
"""

from __future__ import annotations

import pytest
import torch

from lib_rectify import DEFAULT_SIGMA_START
from lib_rectify_comfyui import nodes, patch, samplers

import fake_comfy as comfy

FRAMES, STEPS, SIZE = 17, 8, 32  # 17 pictures -> 5 latent frames of 4 x 4
LATENT_FRAMES = (FRAMES - 1) // 4 + 1
STILL = {"omega": "still", "tau_start_percent": 0.0, "tau_end_percent": 100.0}
FREE = {"omega": "free", "tau_start_percent": 0.0, "tau_end_percent": 100.0}
#: Deterministic samplers, then the ancestral ones that hand over to their RF forms.
FLOW_SAMPLERS = ["euler", "heun", "dpmpp_2m", "lms", "dpm_2", "heunpp2", "exp_heun_2_x0"]
RF_SAMPLERS = ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "lcm"]


def image(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, SIZE, SIZE, 3, generator=g)


def fresh_wan() -> comfy.ModelPatcher:
    return comfy.ModelPatcher(comfy.ToyWanModel())


def apply(model, settings: dict, *, reference_frame=0, enabled=True, **inputs):
    values = {"omega": "paper", "tau_start_percent": 0.0, "tau_end_percent": 60.0, **settings}
    inputs.setdefault("image", image())
    inputs.setdefault("vae", comfy.CausalVideoVAE())
    return nodes.NoiseRectification().apply(
        model,
        inputs.pop("picture", None),
        FRAMES,
        values["omega"],
        values["tau_start_percent"],
        values["tau_end_percent"],
        reference_frame,
        enabled,
        inputs.pop("end_picture", None),
        unique_id="9",
        **inputs,
    )


def sample(model, latent, sampler="euler", scheduler="simple", steps=STEPS, seed=3, **kwargs):
    return comfy.ksampler_node(model, seed, steps, 5.0, sampler, scheduler, latent, **kwargs)[
        "samples"
    ]


def rectification_of(model) -> patch.Rectification:
    (wrapper,) = model.wrappers[patch.SAMPLER_SAMPLE][patch.WRAPPER_KEY]
    return wrapper.__self__


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference in the sampler's own scale (Wan's latent format divides by a
    per-channel std of 1.5-2.5: the LATENT is that much larger than what is sampled)."""
    diff = a - b
    if diff.ndim >= 4 and diff.shape[1] == 16:  # a video [1, 16, T, h, w] or one of its frames
        std = comfy.LatentFormatWan21().std.view(1, 16, *[1] * (diff.ndim - 2))
        diff = diff / std
    return diff.abs().max().item()


# ------------------------------------------------------------------------ the target
def test_the_latent_is_the_still_video_as_the_vae_encodes_it():
    vae = comfy.CausalVideoVAE()
    _, latent = apply(fresh_wan(), STILL, vae=vae)
    still = vae.encode(image()[..., :3].expand(FRAMES, -1, -1, -1))
    assert latent["samples"].shape == (1, 16, LATENT_FRAMES, SIZE // 8, SIZE // 8)
    assert torch.equal(latent["samples"], still)
    # causal: the first latent frame is not the others (not one latent repeated)
    assert gap(still[:, :, 0], still[:, :, 1]) > 1e-2


# ----------------------------------------------------------------------- the picture
@pytest.mark.parametrize("sampler", FLOW_SAMPLERS + RF_SAMPLERS)
def test_a_still_window_ends_on_the_still_video(sampler):
    model, latent = apply(fresh_wan(), STILL)
    out = sample(model, latent, sampler)
    error = gap(out, latent["samples"])
    assert error < 1e-4, error
    off = sample(fresh_wan(), latent, sampler)
    assert gap(off, latent["samples"]) > 100 * max(error, 1e-6)


@pytest.mark.parametrize("scheduler", ["simple", "normal"])
def test_sampling_starts_from_the_picture_noised_to_sigma_start(scheduler):
    base = fresh_wan()
    model, latent = apply(base, STILL, sigma_start=0.9)
    sample(model, latent, "euler", scheduler, seed=11)
    x0, sigma0 = base.model.inputs[0]
    sigma0 = sigma0[0]
    stock = comfy.KSampler(base, STEPS, "euler", scheduler).sigmas
    assert stock[0].item() == pytest.approx(1.0)
    assert sigma0.item() == pytest.approx(0.9 * stock[0].item(), rel=1e-6)
    noise = torch.randn(latent["samples"].size(), generator=torch.manual_seed(11))
    z = base.model.process_latent_in(latent["samples"])
    assert gap(x0, 0.9 * noise + 0.1 * z) < 1e-5
    assert rectification_of(model).report.first_sigma == pytest.approx(0.9, rel=1e-6)
    # and every call's σ comes from the scaled schedule: 8 steps, none at σ = 1
    levels = [t[0].item() for _, t in base.model.inputs]
    assert len(levels) == STEPS and max(levels) < 0.9 + 1e-6


def test_context_windows_see_the_schedule_the_sampler_runs():
    """ComfyUI's context windows match each call's σ in ``sample_sigmas``
    (comfy/context_windows.py:214): it must be the scaled schedule the sampler runs."""
    seen = []
    model, latent = apply(fresh_wan(), STILL)

    def inner(executor, guider, sigmas, extra_args, *args):  # a wrapper added after ours
        seen.append((sigmas, extra_args["model_options"]["transformer_options"]["sample_sigmas"]))
        return executor(guider, sigmas, extra_args, *args)

    model.add_wrapper_with_key(comfy.WrappersMP.SAMPLER_SAMPLE, "inner", inner)
    sample(model, latent)
    ((runs, listed),) = seen
    assert runs[0].item() == pytest.approx(DEFAULT_SIGMA_START)
    assert torch.equal(runs, listed)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral", "dpm_2_ancestral"])
@pytest.mark.parametrize("reference", [0, -1])
def test_free_omega_keeps_the_reference_latent_frame_exact(sampler, reference):
    model, latent = apply(fresh_wan(), FREE, reference_frame=reference)
    out = sample(model, latent, sampler)
    z = latent["samples"]
    assert gap(out[:, :, reference], z[:, :, reference]) < 1e-4
    others = [f for f in range(LATENT_FRAMES) if f != reference % LATENT_FRAMES]
    assert max(gap(out[:, :, f], z[:, :, f]) for f in others) > 1e-2


@pytest.mark.parametrize("sampler", ["euler", "heun", "euler_ancestral"])
@pytest.mark.parametrize("reference", [0, -1])
def test_an_end_image_holds_both_ends(sampler, reference):
    vae = comfy.CausalVideoVAE()
    model, latent = apply(
        fresh_wan(), FREE, reference_frame=reference, vae=vae, end_image=image(seed=4)
    )
    out = sample(model, latent, sampler)
    start = vae.encode(image()[..., :3].expand(FRAMES, -1, -1, -1))
    end = vae.encode(image(seed=4)[..., :3].expand(FRAMES, -1, -1, -1))
    first, last = (start, end) if reference == 0 else (end, start)
    assert gap(out[:, :, 0], first[:, :, 0]) < 1e-4
    assert gap(out[:, :, -1], last[:, :, -1]) < 1e-4
    middle = LATENT_FRAMES // 2
    assert gap(latent["samples"][:, :, middle], (first + last)[:, :, middle] / 2) < 1e-5


# ----------------------------------------------------------------- nothing changed
@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral"])
@pytest.mark.parametrize(
    "settings", [{"enabled": False}, {"tau_start_percent": 30.0, "tau_end_percent": 30.0}]
)
def test_off_or_an_empty_window_is_the_workflow_without_the_node(sampler, settings):
    settings = dict(settings)
    enabled = settings.pop("enabled", True)
    base = fresh_wan()
    model, latent = apply(base, settings, enabled=enabled)
    assert model is base  # nothing on the MODEL: the stock schedule from σ = 1
    stock = comfy.ModelPatcher(comfy.ToyWanModel())
    assert torch.equal(sample(model, latent, sampler), sample(stock, latent, sampler))


def test_an_image_model_keeps_its_latent_path_bit_for_bit():
    """image + vae on SD1.5 is VAE Encode of the picture repeated over the frames."""
    vae = comfy.ImageVAE()
    sd = comfy.ModelPatcher(comfy.ToyVideoModel())
    model, latent = nodes.NoiseRectification().apply(
        sd, None, 6, "still", 0.0, 100.0, 0, True, None, image=image(), vae=vae
    )
    encoded = {"samples": vae.encode(image()[..., :3])}
    _, latent2 = nodes.NoiseRectification().apply(
        comfy.ModelPatcher(comfy.ToyVideoModel()), encoded, 6, "still", 0.0, 100.0, 0, True
    )
    assert torch.equal(latent["samples"], latent2["samples"])
    assert latent["samples"].shape == (6, 4, SIZE // 8, SIZE // 8)
    out = comfy.ksampler_node(model, 3, STEPS, 5.0, "euler", "normal", latent)["samples"]
    assert gap(out, latent["samples"]) < 1e-4


# ------------------------------------------------------------------------ the steps
@pytest.mark.parametrize("sampler", FLOW_SAMPLERS + RF_SAMPLERS)
@pytest.mark.parametrize("tau", [(0.0, 50.0), (25.0, 75.0)])
def test_exactly_the_steps_of_the_window_are_rectified(sampler, tau):
    model, latent = apply(fresh_wan(), {"tau_start_percent": tau[0], "tau_end_percent": tau[1]})
    sample(model, latent, sampler)
    report = rectification_of(model).report
    n = report.steps
    assert n == STEPS
    assert report.rectified_steps == [
        i for i in range(n) if n * tau[0] / 100 <= i < n * tau[1] / 100
    ]
    assert report.pivot.startswith("per step") == (sampler in RF_SAMPLERS)


@pytest.mark.parametrize(
    ("sampler", "second_call"),
    [("dpm_2_ancestral", "unless its σ_down is 0"), ("dpmpp_2s_ancestral", "unless σ_next = 0")],
)
def test_rf_ancestral_second_calls_keep_their_step(sampler, second_call, monkeypatch):
    """The RF forms' second call comes after the callback (sampling.py:399-431, 712-760)."""
    seen: list[int] = []
    original = samplers.CallLabeler.label

    def recording(self, sigma):
        label = original(self, sigma)
        seen.append(int(label))
        return label

    monkeypatch.setattr(samplers.CallLabeler, "label", recording)
    base = fresh_wan()
    model, latent = apply(base, {"tau_end_percent": 50.0})
    sample(model, latent, sampler)
    assert seen == [i for i in range(STEPS) for _ in range(1 if i == STEPS - 1 else 2)], second_call
    assert base.model.calls == len(seen)


def test_a_later_start_keeps_its_schedule_and_the_picture():
    """KSamplerAdvanced from step 2 and denoise 0.6 start below σ = 1: the first input
    already carries the picture, so the schedule is kept as it is."""
    base = fresh_wan()
    model, latent = apply(base, STILL)
    out = comfy.ksampler_advanced_node(
        model, "enable", 3, 10, 5.0, "euler", "simple", latent, 2, 10, "disable"
    )["samples"]
    assert gap(out, latent["samples"]) < 1e-4
    stock = comfy.KSampler(base, 10, "euler", "simple").sigmas
    assert base.model.inputs[0][1][0].item() == pytest.approx(stock[2].item(), rel=1e-6)
    assert rectification_of(model).report.steps == 8
    out = sample(model, latent, denoise=0.6)
    assert gap(out, latent["samples"]) < 1e-4


def test_sigma_start_one_is_the_hosts_own_start_and_cannot_keep_the_picture():
    model, latent = apply(fresh_wan(), STILL, sigma_start=1.0)
    out = sample(model, latent)
    assert rectification_of(model).report.first_sigma == pytest.approx(1.0)
    assert gap(out, latent["samples"]) > 1e-2


# -------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"image": None, "vae": None}, r"picture = 'not connected' is invalid"),
        ({"vae": None}, r"vae = 'not connected' is invalid"),
        (
            {"picture": {"samples": torch.zeros(1, 16, 1, 4, 4)}, "image": None},
            r"picture = \(1, 16, 1, 4, 4\) is invalid.*connect image and vae",
        ),
        (
            {"picture": {"samples": torch.zeros(1, 16, 4, 4)}, "image": None},
            r"picture = \(1, 16, 4, 4\) is invalid.*connect image and vae",
        ),
        ({"vae": comfy.CausalVideoVAE(channels=48)}, r"image channels = 48 is invalid.*16"),
        ({"vae": comfy.ImageVAE()}, r"image = \(1, 4, 4, 4\) is invalid.*video model"),
        ({"image": torch.rand(2, SIZE, SIZE, 3)}, r"image batch = 2 is invalid"),
        ({"picture": {"samples": torch.zeros(1, 4, 4, 4)}}, r"picture = 'connected with image'"),
        (
            {"end_picture": {"samples": torch.zeros(1, 4, 4, 4)}},
            r"end_picture = 'a LATENT with image \+ vae'",
        ),
        ({"sigma_start": 0.0}, r"sigma_start = 0.0 is invalid.*\(0, 1\]"),
        ({"sigma_start": 1.5}, r"sigma_start = 1.5 is invalid"),
    ],
)
def test_bad_inputs_name_the_node_and_the_field(inputs, message):
    with pytest.raises(ValueError, match=message) as info:
        apply(fresh_wan(), STILL, **inputs)
    assert str(info.value).startswith("Noise Rectification (image to video) (node 9): ")


def test_sigma_start_is_checked_when_the_prompt_is_queued():
    verdict = nodes.NoiseRectification.VALIDATE_INPUTS(sigma_start=0.0)
    assert isinstance(verdict, str) and "sigma_start = 0.0" in verdict
    assert nodes.NoiseRectification.VALIDATE_INPUTS(sigma_start=0.8) is True


def test_a_refused_run_leaves_nothing_for_the_next_prompt():
    model, latent = apply(fresh_wan(), STILL)
    before = sample(model, latent)
    wrong = {"samples": torch.zeros(1, 16, LATENT_FRAMES + 1, 4, 4) + 0.5}
    with pytest.raises(ValueError, match=r"\(node 9\): picture latent = \(1, 16, 5, 4, 4\)"):
        sample(model, wrong)
    with pytest.raises(ValueError, match=r"\(node 9\): last σ"):
        comfy.ksampler_advanced_node(
            model, "enable", 3, 10, 5.0, "euler", "simple", latent, 0, 6, "enable"
        )
    assert rectification_of(model).run is None
    assert torch.equal(sample(model, latent), before)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_no_model_call_waits_for_the_gpu(sampler, monkeypatch):
    from bench.syncs import SyncRecorder

    recorder = SyncRecorder()

    def watched(function):
        def call(*args, **kwargs):
            with recorder.watching():
                return function(*args, **kwargs)

        return call

    monkeypatch.setattr(patch.Rectification, "post_cfg", watched(patch.Rectification.post_cfg))
    monkeypatch.setattr(samplers.CallLabeler, "progress", watched(samplers.CallLabeler.progress))
    model, latent = apply(fresh_wan(), {"tau_start_percent": 25.0, "tau_end_percent": 75.0})
    sample(model, latent, sampler)
    assert recorder.sites == [], recorder.report()
    assert rectification_of(model).report.rectified_steps
