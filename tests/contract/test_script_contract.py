"""The real script module against a fake of the host: arguments, infotext, bad input, XYZ.

Samplers are in test_sampler_loops.py, failure paths in test_failure_paths.py.
"""

from __future__ import annotations

import copy
import types

import pytest
import torch

import fake_host as host

SCRIPT = host.install()
from lib_rectify import RectifyError, RectifyParams  # noqa: E402
from lib_rectify_webui import infotext, job, xyz  # noqa: E402
from lib_rectify_webui.args import POSITIONAL_ARGS, from_positional  # noqa: E402

Script = SCRIPT.NoiseRectificationScript
STILL = {"enabled": True, "omega": "still", "tau": [0.0, 1.0]}


def run(rect_args, seed=0, **kwargs):
    torch.manual_seed(seed)  # the fake encoder's posterior noise is unseeded, like the host's
    p = host.make_job(Script, rect_args, **kwargs)
    return p, host.run_job(p)


def picture(p):
    """The paper's Z: one encoding of the picture (the first), repeated over the frames."""
    return p.first_encoding.expand(p.batch_size, -1, -1, -1)


@pytest.fixture(autouse=True)
def _fresh_host():
    host.reset_host()
    yield


# ------------------------------------------------------------------------ ui and args
def test_ui_returns_the_positional_order_and_is_idempotent():
    before = {k: len(v) for k, v in host.CALLBACKS.items()}
    script = Script()
    first = script.ui(True)
    labels = [c.label for c in first]
    second = script.ui(True)
    assert len(first) == len(POSITIONAL_ARGS) == 8
    assert [c.label for c in second] == labels
    assert {k: len(v) for k, v in host.CALLBACKS.items()} == before  # ui() registers nothing
    enabled, preset, custom, start, end, reference, end_anchor, end_picture = first
    assert enabled.value is False and preset.value == "paper" and custom.value == ""
    assert (start.value, end.value, reference.value) == (0.0, 60.0, 0)
    assert end_anchor.value is True and end_picture.value is None
    assert preset.kwargs["choices"] == ["paper", "still", "free", "custom"]
    assert all(
        c.elem_id and c.elem_id.startswith("script_img2img_noise_rectification_") for c in first
    )
    # the defaults the API copies over are the core's defaults
    assert from_positional([c.value for c in first]) == RectifyParams()


def test_every_control_has_a_hover_hint():
    script = Script()
    components = script.ui(True)
    hints = next(
        c for c in host.Component.created[::-1] if c.elem_id and c.elem_id.endswith("_hints")
    )
    for component in components:
        assert component.elem_id in hints.value, component.label


@pytest.mark.parametrize(
    "rect_args",
    [
        [STILL],
        [True, "still", "", 0, 100, 0],
        [
            {"enabled": True, "omega": 0.0, "tau": [0, 1]},
            False,
            "paper",
            "",
            0,
            60,
            0,
        ],  # dict + UI defaults
    ],
)
def test_dict_and_positional_args_pin_every_frame_to_the_picture(rect_args):
    p, processed = run(rect_args)
    assert torch.allclose(processed.samples[0], picture(p), atol=1e-4)
    assert processed.extra_generation_params["NR omega"] in ("still", "0.0")
    assert infotext.INIT_KEY in processed.extra_generation_params
    assert processed.extra_generation_params[infotext.STEPS_KEY] == "0-7 of 8"


def test_reference_frame_last_is_exact():
    p, processed = run([{"enabled": True, "omega": "paper", "tau": [0, 1], "reference_frame": -1}])
    out, pic = processed.samples[0], picture(p)
    assert torch.allclose(out[-1], pic[-1], atol=1e-4)
    assert not torch.allclose(out[1], pic[1], atol=1e-2)


@pytest.mark.parametrize(
    "rect_args",
    [
        [],
        [False, "paper", "", 0, 60, 0],
        [{"enabled": False}],
        [{"enabled": True, "tau": [0.3, 0.3]}],
    ],
)
def test_disabled_or_empty_window_leaves_tensors_untouched(rect_args):
    _, reference = run([], seed=5)
    p, processed = run(rect_args, seed=5)
    assert torch.equal(processed.samples[0], reference.samples[0])
    assert not hasattr(p, job.STATE_ATTR)


def test_stochastic_sampler_uses_the_per_step_pivot_and_says_so():
    p, processed = run([STILL], sampler="Euler a")
    assert torch.allclose(processed.samples[0], picture(p), atol=1e-4)
    note = processed.extra_generation_params[infotext.PIVOT_KEY]
    assert note.startswith("per step:") and "η = 1" in note


# ---------------------------------------------------------------------------- infotext
def test_infotext_round_trip_restores_every_control():
    wanted = RectifyParams(
        enabled=True, omega=(1.0, 0.25, 0.5), tau=(0.1, 0.75), reference_frame=-1, end_anchor=False
    )
    _p, processed = run([wanted.to_api()])
    entries = {k: str(v) for k, v in processed.extra_generation_params.items()}
    script = Script()
    components = script.ui(True)
    values = {id(c): fn(entries) for c, fn in script.infotext_fields}
    # every control but the end picture (an image, not in the infotext) has a paste field
    assert [c for c in components if id(c) not in values] == [components[-1]]
    restored = [values.get(id(c)) for c in components]
    assert from_positional(restored) == wanted


def test_infotext_without_our_keys_disables_and_leaves_the_rest():
    script = Script()
    components = script.ui(True)
    values = {id(c): fn({"Steps": "20"}) for c, fn in script.infotext_fields}
    assert values[id(components[0])] is False
    assert all(values.get(id(c)) is None for c in components[1:])


def test_infotext_from_a_newer_version_is_an_error_and_is_shown():
    script = Script()
    components = script.ui(True)
    entries = RectifyParams(enabled=True).to_infotext() | {"NR version": "9"}
    fields = dict((id(c), fn) for c, fn in script.infotext_fields)
    with pytest.raises(RectifyError, match="NR version"):
        fields[id(components[0])](entries)
    preview = next(fn for c, fn in script.infotext_fields if c.elem_id.endswith("_preview"))
    assert "NR version" in preview(entries)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("rect_args", "fragment"),
    [
        ([{"enabled": True, "omega": "wobbly"}], "omega"),
        ([{"enabled": True, "tau": [0.8, 0.2]}], "tau"),
        ([{"enabled": True, "speed": 2}], "speed"),
        ([True, "custom", "1, nope"], "omega_custom"),
        ([{"enabled": True, "reference_frame": 8}], "reference_frame"),  # 8 frames: 0..7
    ],
)
def test_bad_input_fails_the_job_with_the_field_and_the_next_job_is_clean(rect_args, fragment):
    with pytest.raises(RectifyError, match=fragment):
        run(rect_args)
    _, reference = run([], seed=3)
    p, again = run([], seed=3)
    assert torch.equal(again.samples[0], reference.samples[0])
    assert not hasattr(p, job.STATE_ATTR)
    assert job._in_flight.call is None


def test_an_error_during_sampling_fails_the_job_and_leaves_nothing_behind():
    calls = []

    def another_extension(params):  # runs before ours; changes the batch at the 3rd call
        calls.append(params)
        if len(calls) == 3:
            params.x = torch.zeros(3, *params.x.shape[1:])

    host.CALLBACKS["cfg_after_cfg"].insert(0, another_extension)
    try:
        with pytest.raises(RectifyError, match="prediction batch"):
            run([STILL])
    finally:
        host.CALLBACKS["cfg_after_cfg"].remove(another_extension)
    assert job._in_flight.call is None
    p, processed = run([STILL])
    assert torch.allclose(processed.samples[0], picture(p), atol=1e-4)


def test_freeinit_is_refused_with_a_message():
    with pytest.raises(RectifyError, match="FreeInit"):
        run([STILL], ad={"freeinit_enable": True})


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"ad": {"enable": False}}, "AnimateDiff is not enabled"),
        ({"p_class": host.StableDiffusionProcessingTxt2Img}, "img2img"),
    ],
)
def test_not_applicable_runs_unchanged_with_a_visible_warning(kwargs, reason):
    if kwargs.get("p_class") is host.StableDiffusionProcessingTxt2Img:
        p = host.make_job(Script, [STILL], **kwargs)
        p.scripts.before_process(p)
        assert reason in p.extra_generation_params[infotext.SKIPPED_KEY]
        assert any(reason in c for c in p.comments)
        assert not hasattr(p, job.STATE_ATTR)
        return
    _, reference = run([], seed=4, **kwargs)
    p, processed = run([STILL], seed=4, **kwargs)
    assert torch.equal(processed.samples[0], reference.samples[0])
    assert reason in processed.extra_generation_params[infotext.SKIPPED_KEY]
    assert reason in processed.comments


# ----------------------------------------------------------------------- callbacks
def test_callbacks_ignore_calls_of_other_jobs():
    _p, _ = run([STILL])
    stranger = types.SimpleNamespace(p=types.SimpleNamespace())
    params = host.CFGDenoiserParams(
        torch.ones(16, 4, 8, 8), None, torch.ones(16), 0, 0, None, None, stranger
    )
    job.on_cfg_denoiser(params)
    assert job._in_flight.call is None
    after = host.AfterCFGCallbackParams(torch.ones(8, 4, 8, 8), 0, 0)
    job.on_cfg_after_cfg(after)
    assert torch.equal(after.x, torch.ones(8, 4, 8, 8))


def test_batch_count_above_one_rectifies_every_video():
    p, processed = run([STILL], n_iter=2)
    for samples in processed.samples:
        assert torch.allclose(samples, picture(p), atol=1e-4)


# ----------------------------------------------------------------------------- XYZ
def test_xyz_axes_register_once_and_unregister():
    module = host.fake_xyz_module()
    added = xyz.register(module)
    assert [o.label for o in added] == [
        "[Noise Rectification] Enable",
        "[Noise Rectification] ω",
        "[Noise Rectification] τ start %",
        "[Noise Rectification] τ end %",
        "[Noise Rectification] Reference frame",
        "[Noise Rectification] End on the end picture",
    ]
    assert xyz.register(module) == []
    xyz.unregister(module, added)
    assert [o.label for o in module.axis_options] == ["Nothing"]


def test_xyz_overrides_live_on_each_cell_copy_only():
    module = host.fake_xyz_module()
    options = {o.label: o for o in xyz.register(module)}
    parent = host.make_job(Script, [{"enabled": False}])
    cell_a, cell_b = copy.copy(parent), copy.copy(parent)
    options["[Noise Rectification] Enable"].apply(cell_a, "True", None)
    options["[Noise Rectification] ω"].apply(cell_a, "still", None)
    options["[Noise Rectification] τ end %"].apply(cell_a, 100.0, None)
    options["[Noise Rectification] ω"].apply(cell_b, "free", None)
    assert not hasattr(parent, job.OVERRIDES_ATTR)
    assert getattr(cell_b, job.OVERRIDES_ATTR) == {"omega": "free"}
    torch.manual_seed(0)
    processed = host.run_job(cell_a)
    assert torch.allclose(processed.samples[0], picture(cell_a), atol=1e-4)
    assert processed.extra_generation_params["NR omega"] == "still"
    assert job.parse_job_params(cell_b, [{"enabled": False}]) == RectifyParams(omega="free")


def test_xyz_confirm_rejects_bad_values_before_the_grid():
    options = {o.label: o for o in xyz.register(host.fake_xyz_module())}
    options["[Noise Rectification] τ start %"].confirm(None, [0.0, 50.0, 100.0])
    with pytest.raises(RectifyError, match=r"τ end %.*percent"):
        options["[Noise Rectification] τ end %"].confirm(None, [60.0, 140.0])
    with pytest.raises(RectifyError, match="ω"):
        options["[Noise Rectification] ω"].confirm(None, ["paper", "wavy"])
