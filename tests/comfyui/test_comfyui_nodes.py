"""The ComfyUI nodes and their hook, through a fake of ComfyUI's sampling path that keeps
its call order (fake_comfy.py, ComfyUI v0.12.1), with real k-diffusion sampler loops.

What is checked is what a user sees: a still window ends every frame on the picture,
ω free keeps the reference frame exact, two anchors hold both ends, the node off or an
empty window changes nothing bit for bit, a partial window rectifies exactly its steps
(the labels come from the host's call order, written out here, not from the node's own
rule), bad input fails with the node, the field, the value and what is allowed, and
nothing stays behind after a failure.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lib_rectify_comfyui import nodes, patch, samplers

import fake_comfy as comfy

FRAMES, STEPS, SIZE = 6, 8, 8
STILL = {"omega": "still", "tau_start_percent": 0.0, "tau_end_percent": 100.0}
PAPER = {"omega": "paper", "tau_start_percent": 0.0, "tau_end_percent": 60.0}


def picture(seed: int = 0, scale: float = 1.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"samples": scale * torch.randn(1, 4, SIZE, SIZE, generator=g)}


def apply(
    model,
    settings: dict,
    *,
    end_picture=None,
    frames=FRAMES,
    reference_frame=0,
    enabled=True,
    pic=None,
):
    node = nodes.NoiseRectification()
    values = {"omega": "paper", "tau_start_percent": 0.0, "tau_end_percent": 60.0, **settings}
    return node.apply(
        model,
        pic if pic is not None else picture(),
        frames,
        values["omega"],
        values["tau_start_percent"],
        values["tau_end_percent"],
        reference_frame,
        enabled,
        end_picture,
        unique_id="7",
    )


def fresh_model() -> comfy.ModelPatcher:
    return comfy.ModelPatcher(comfy.ToyVideoModel())


def sample(model, latent, sampler="euler", scheduler="normal", steps=STEPS, seed=3, **kwargs):
    return comfy.ksampler_node(model, seed, steps, 5.0, sampler, scheduler, latent, **kwargs)[
        "samples"
    ]


def rectification_of(model) -> patch.Rectification:
    (wrapper,) = model.wrappers[patch.SAMPLER_SAMPLE][patch.WRAPPER_KEY]
    return wrapper.__self__


def expected_labels(sampler: str, levels: list[float]) -> list[int]:
    """Each model call's step, from the host's call order (fake_comfy.py, sampling.py)."""
    n = len(levels) - 1
    if sampler in ("heun", "exp_heun_2_x0"):  # a second call after the callback unless σ_(i+1) = 0
        return [i for i in range(n) for _ in range(1 if levels[i + 1] == 0 else 2)]
    if sampler == "heunpp2":
        out = []
        for i in range(n):
            extra = 0 if levels[i + 1] == levels[-1] else (1 if levels[i + 2] == levels[-1] else 2)
            out += [i] * (1 + extra)
        return out
    if sampler in ("dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde"):
        return [i for i in range(n) for _ in range(1 if levels[i + 1] == 0 else 2)]
    return list(range(n))


@pytest.fixture
def labels(monkeypatch):
    seen: list[int] = []
    original = samplers.CallLabeler.label

    def recording(self, sigma):
        label = original(self, sigma)
        seen.append(int(label))
        return label

    monkeypatch.setattr(samplers.CallLabeler, "label", recording)
    return seen


# ----------------------------------------------------------------------- the picture
@pytest.mark.parametrize("sampler", comfy.SAMPLERS)
def test_still_window_ends_every_frame_on_the_picture(sampler):
    model, latent = apply(fresh_model(), STILL)
    out = sample(model, latent, sampler)
    error = (out - latent["samples"]).abs().max().item()
    assert error < 1e-4, error
    off = sample(fresh_model(), latent, sampler)
    assert (off - latent["samples"]).abs().max().item() > 100 * max(error, 1e-6)


@pytest.mark.parametrize("sampler", comfy.SAMPLERS)
@pytest.mark.parametrize("reference", [0, -1])
def test_free_omega_keeps_the_reference_frame_exact(sampler, reference):
    model, latent = apply(
        fresh_model(), {"omega": "free", "tau_end_percent": 100.0}, reference_frame=reference
    )
    out = sample(model, latent, sampler)
    z = latent["samples"][0]
    assert (out[reference] - z).abs().max().item() < 1e-4
    others = [f for f in range(FRAMES) if f != reference % FRAMES]
    assert max((out[f] - z).abs().max().item() for f in others) > 1e-2


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "euler_ancestral", "lcm"])
@pytest.mark.parametrize("reference", [0, -1])
def test_an_end_picture_holds_both_ends(sampler, reference):
    end = picture(seed=5)
    model, latent = apply(
        fresh_model(),
        {"omega": "free", "tau_end_percent": 100.0},
        end_picture=end,
        reference_frame=reference,
    )
    out = sample(model, latent, sampler)
    first, last = (picture()["samples"][0], end["samples"][0])
    if reference == -1:
        first, last = last, first
    assert (out[0] - first).abs().max().item() < 1e-4
    assert (out[-1] - last).abs().max().item() < 1e-4
    assert (
        latent["samples"][FRAMES // 2] - (first + last) / 2
    ).abs().max().item() < 0.5  # blended start


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "euler_ancestral", "dpm_fast"])
@pytest.mark.parametrize(
    "settings", [{"enabled": False}, {"tau_start_percent": 30.0, "tau_end_percent": 30.0}]
)
def test_off_or_an_empty_window_is_the_workflow_without_the_node(sampler, settings):
    settings = dict(settings)
    enabled = settings.pop("enabled", True)
    base = fresh_model()
    model, latent = apply(base, settings, enabled=enabled)
    repeated = {"samples": picture()["samples"].repeat(FRAMES, 1, 1, 1)}  # Repeat Latent Batch
    assert torch.equal(latent["samples"], repeated["samples"])
    assert torch.equal(sample(model, latent, sampler), sample(base, repeated, sampler))


def test_the_input_model_is_never_changed():
    base = fresh_model()
    before = copy.deepcopy(base.model_options), copy.deepcopy(base.wrappers)
    model, latent = apply(base, STILL)
    assert model is not base
    assert (base.model_options, base.wrappers) == before
    stock = sample(base, latent)
    assert not torch.allclose(
        stock, latent["samples"], atol=1e-3
    )  # the input model does not rectify


def test_a_clone_made_after_the_node_still_rectifies():
    """AnimateDiff-Evolved's nodes clone the MODEL (copy.deepcopy of model_options):
    the post-CFG function must keep pointing at the same rectification as the wrapper."""
    model, latent = apply(fresh_model(), STILL)
    later = model.clone().clone()
    out = sample(later, latent)
    assert (out - latent["samples"]).abs().max().item() < 1e-4


# ------------------------------------------------------------------------ the steps
@pytest.mark.parametrize(
    "sampler", [s for s in comfy.SAMPLERS if s not in ("dpm_fast", "dpm_adaptive")]
)
def test_every_call_is_labelled_with_its_step(sampler, labels):
    model, latent = apply(fresh_model(), PAPER)
    sample(model, latent, sampler)
    levels = comfy.KSampler(model, STEPS, sampler, "normal").sigmas.tolist()
    assert labels == expected_labels(sampler, levels)


@pytest.mark.parametrize("sampler", comfy.SAMPLERS)
@pytest.mark.parametrize("tau", [(0.0, 50.0), (25.0, 75.0), (0.0, 30.0)])
def test_exactly_the_steps_of_the_window_are_rectified(sampler, tau):
    model, latent = apply(fresh_model(), {"tau_start_percent": tau[0], "tau_end_percent": tau[1]})
    sample(model, latent, sampler)
    report = rectification_of(model).report
    n = report.steps
    want = [i for i in range(n) if n * tau[0] / 100 <= i < n * tau[1] / 100]
    if sampler in ("dpm_fast", "dpm_adaptive"):  # their own points: some steps may see no call
        assert set(report.rectified_steps) <= set(want) and report.rectified_steps
    else:
        assert report.rectified_steps == want
    assert report.pivot.startswith("per step") == (sampler in comfy.STOCHASTIC)


@pytest.mark.parametrize("sampler", ["heun", "heunpp2", "dpm_2", "exp_heun_2_x0", "euler"])
def test_equivalent_windows_are_bit_identical_and_different_ones_differ(sampler):
    n = STEPS
    half = 4

    def run(end_percent):
        model, latent = apply(fresh_model(), {"tau_end_percent": end_percent})
        return sample(model, latent, sampler)

    a, b, c = run(100 * half / n), run(100 * (half - 0.5) / n), run(100 * (half + 1) / n)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-4)


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m"])
def test_ksampler_advanced_windows_are_fractions_of_the_steps_it_runs(sampler):
    """start_at_step 2, end_at_step 8 of 10: the run has 6 steps; τ 0-50 % rectifies 3."""
    model, latent = apply(fresh_model(), {"tau_end_percent": 50.0})
    comfy.ksampler_advanced_node(
        model, "enable", 3, 10, 5.0, sampler, "normal", latent, 2, 8, "disable"
    )
    report = rectification_of(model).report
    assert (report.steps, report.rectified_steps) == (6, [0, 1, 2])
    still, latent = apply(fresh_model(), STILL)
    out = comfy.ksampler_advanced_node(
        still, "enable", 3, 10, 5.0, sampler, "normal", latent, 2, 8, "disable"
    )
    assert (out["samples"] - latent["samples"]).abs().max().item() < 1e-4


def test_leftover_noise_is_refused_and_nothing_stays_behind():
    model, latent = apply(fresh_model(), STILL)
    before = sample(model, latent)
    with pytest.raises(
        ValueError, match=r"Noise Rectification \(image to video\) \(node 7\): last σ"
    ):
        comfy.ksampler_advanced_node(
            model, "enable", 3, 10, 5.0, "euler", "normal", latent, 0, 6, "enable"
        )
    assert rectification_of(model).run is None
    assert torch.equal(sample(model, latent), before)


def test_a_second_pass_in_one_sampling_is_refused_then_all_is_as_before():
    """What AnimateDiff-Evolved's FreeInit does (ADE sampling.py:538-583): an OUTER_SAMPLE
    wrapper that runs ComfyUI's sampling twice inside one CFGGuider.sample."""
    model, latent = apply(fresh_model(), STILL)
    before = sample(model, latent)
    twice = model.clone()

    def two_passes(executor, *args, **kwargs):
        executor(*args, **kwargs)
        return executor(*args, **kwargs)

    twice.add_wrapper_with_key(comfy.WrappersMP.OUTER_SAMPLE, "iterations", two_passes)
    with pytest.raises(ValueError, match=r"\(node 7\): sampling pass = 2 is invalid"):
        sample(twice, latent)
    assert torch.equal(sample(model, latent), before)  # nothing left on the node


def test_denoise_below_one_and_custom_sigmas():
    model, latent = apply(fresh_model(), STILL)
    out = sample(model, latent, denoise=0.6)
    assert (out - latent["samples"]).abs().max().item() < 1e-4
    sigmas = torch.tensor([6.0, 3.0, 1.5, 0.5, 0.0])
    out = comfy.sampler_custom_node(model, True, 3, 5.0, "dpmpp_2m", sigmas, latent)["samples"]
    assert (out - latent["samples"]).abs().max().item() < 1e-4
    assert rectification_of(model).report.steps == 4


@pytest.mark.parametrize("scheduler", ["normal", "karras", "exponential"])
def test_every_schedule_keeps_the_picture(scheduler):
    model, latent = apply(fresh_model(), STILL)
    out = sample(model, latent, "heun", scheduler)
    assert (out - latent["samples"]).abs().max().item() < 1e-4


# -------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        ({"omega": "nan"}, "omega", "[0, 1]"),
        ({"omega": "1, 1.5"}, "omega", "[0, 1]"),
        ({"tau_start_percent": 70.0, "tau_end_percent": 60.0}, "tau_start_percent", "at most"),
        ({"tau_end_percent": 140.0}, "tau_end_percent", "0 to 100"),
        ({"reference_frame": 6}, "reference_frame", "0 to 5"),
        ({"reference_frame": 2, "end": True}, "reference_frame", "0 or -1"),
    ],
)
def test_bad_settings_name_the_node_the_field_the_value_and_what_is_allowed(change, field, allowed):
    change = dict(change)
    reference = change.pop("reference_frame", 0)
    end = picture(seed=2) if change.pop("end", False) else None
    with pytest.raises(ValueError) as info:
        apply(fresh_model(), change, reference_frame=reference, end_picture=end)
    text = str(info.value)
    assert text.startswith("Noise Rectification (image to video) (node 7): ")
    assert f"{field} = " in text and allowed in text
    # the same check when the prompt is queued (widget values)
    values = {
        "frames": FRAMES,
        "omega": "paper",
        "tau_start_percent": 0.0,
        "tau_end_percent": 60.0,
        "reference_frame": reference,
        **change,
    }
    if end is None:
        verdict = nodes.NoiseRectification.VALIDATE_INPUTS(**values)
        assert isinstance(verdict, str) and f"{field} = " in verdict


def test_a_picture_that_does_not_fit_the_sampled_latent_is_refused_then_all_is_as_before():
    model, latent = apply(fresh_model(), STILL)
    before = sample(model, latent)
    wrong = {"samples": torch.zeros(FRAMES + 2, 4, SIZE, SIZE) + 0.5}
    with pytest.raises(ValueError, match=r"\(node 7\): picture latent = \(6, 4, 8, 8\) is invalid"):
        sample(model, wrong)
    assert torch.equal(sample(model, latent), before)


def test_a_picture_batch_of_several_images_is_refused():
    with pytest.raises(ValueError, match=r"picture batch = \(2, 4, 8, 8\).*one picture"):
        apply(fresh_model(), STILL, pic={"samples": torch.zeros(2, 4, SIZE, SIZE)})


# ------------------------------------------------------------------ GPU-free per call
@pytest.mark.parametrize("sampler", comfy.SAMPLERS)
def test_no_model_call_waits_for_the_gpu(sampler, monkeypatch):
    """Issue 17's guarantee on the third host: no synchronising call in the post-CFG
    function or the progress callback (bench/syncs.py)."""
    from bench.syncs import SyncRecorder

    recorder = SyncRecorder()

    def watched(function):
        def call(*args, **kwargs):
            with recorder.watching():
                return function(*args, **kwargs)

        return call

    monkeypatch.setattr(patch.Rectification, "post_cfg", watched(patch.Rectification.post_cfg))
    monkeypatch.setattr(samplers.CallLabeler, "progress", watched(samplers.CallLabeler.progress))
    model, latent = apply(fresh_model(), {"tau_start_percent": 25.0, "tau_end_percent": 75.0})
    sample(model, latent, sampler)
    assert recorder.sites == [], recorder.report()
    assert rectification_of(model).report.rectified_steps


def test_omega_preview_draws_the_anchors():
    node = nodes.NoiseRectificationPreview()
    (image,) = node.preview(16, "paper", 0.0, 60.0, 0, end_picture=True)
    assert image.shape[0] == 1 and image.shape[-1] == 3
    assert image.min() >= 0 and image.max() <= 1
    orange = (image[0, :, :, 0] > 0.9) & (image[0, :, :, 2] < 0.2)
    columns = orange.any(dim=0).nonzero().flatten()
    assert columns.min() < image.shape[2] / 16 and columns.max() > image.shape[2] * 15 / 16


def test_the_example_workflows_use_the_nodes_as_declared():
    """workflows/*.json (API format, dropped onto the canvas or POSTed to /prompt)."""
    import json
    from pathlib import Path

    declared = nodes.NoiseRectification.INPUT_TYPES()
    names = set(declared["required"]) | set(declared["optional"])
    folder = Path(__file__).resolve().parents[2] / "workflows"
    files = sorted(f for f in folder.glob("*.json") if not f.name.endswith(".ui.json"))
    assert {f.stem for f in files} >= {"sd15_animatediff_evolved", "two_anchors", "sdxl_hotshotxl"}
    for ui in folder.glob("*.ui.json"):  # the canvas's own format: our node is in it
        graph = json.loads(ui.read_text())
        assert [n["type"] for n in graph["nodes"]].count("NoiseRectification") == 1, ui
    for path in files:
        workflow = json.loads(path.read_text())
        ours = [n for n in workflow.values() if n["class_type"] == "NoiseRectification"]
        assert len(ours) == 1, path
        inputs = ours[0]["inputs"]
        assert set(inputs) <= names and set(declared["required"]) <= set(inputs), path
        widgets = {k: v for k, v in inputs.items() if not isinstance(v, list)}
        widgets.pop("enabled")
        assert nodes.NoiseRectification.VALIDATE_INPUTS(**widgets) is True, path
        for node in workflow.values():  # every link points at a node of the workflow
            for value in node["inputs"].values():
                if isinstance(value, list):
                    assert value[0] in workflow, (path, value)
