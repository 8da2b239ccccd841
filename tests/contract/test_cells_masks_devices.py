"""XYZ cells stay independent, inpainting keeps the host's mask blend, no float64 per call."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.no_float64 import NoFloat64

import fake_host as host

SCRIPT = host.install()
from lib_rectify import RectifyParams  # noqa: E402
from lib_rectify_webui import infotext, job, xyz  # noqa: E402
from lib_rectify_webui.args import from_positional  # noqa: E402

Script = SCRIPT.NoiseRectificationScript


@pytest.fixture(autouse=True)
def _fresh_host():
    host.reset_host()
    yield
    host.reset_host()


# ----------------------------------------------------------------------------- XYZ
def _axes():
    return {o.label: o for o in xyz.register(host.fake_xyz_module())}


def _cell(parent, overrides):
    """scripts/xyz_grid.py:707-731: a shallow copy per cell, axes applied, process_images."""
    options = _axes()
    pc = copy.copy(parent)
    for label, value in overrides.items():
        options["[Noise Rectification] " + label].apply(pc, value, None)
    torch.manual_seed(0)
    return host.process_images(pc)


def _restored(entries) -> RectifyParams:
    """PNG Info → Send to img2img: the accordion's paste fields read the cell's infotext."""
    script = Script()
    components = script.ui(True)
    values = {
        id(c): fn({k: str(v) for k, v in entries.items()}) for c, fn in script.infotext_fields
    }
    defaults = [c.value for c in components]
    restored = [
        values[id(c)] if values.get(id(c)) is not None else d
        for c, d in zip(components, defaults, strict=True)
    ]
    return from_positional(restored)


def test_a_cell_with_rectification_off_carries_nothing_from_the_cell_before():
    parent = host.make_job(Script, [{"enabled": False, "omega": "still", "tau": [0, 1]}])
    on = _cell(parent, {"Enable": "True"})
    off = _cell(parent, {"Enable": "False"})
    on_again = _cell(parent, {"Enable": "True", "τ end %": 50.0})
    assert "NR tau" in on.extra_generation_params and "NR steps" in on.extra_generation_params
    assert not [k for k in off.extra_generation_params if infotext.is_ours(k)]
    assert not [k for k in parent.extra_generation_params if infotext.is_ours(k)]
    assert on_again.extra_generation_params["NR tau"] == "[0.0, 0.5]"
    assert _restored(on.extra_generation_params) == RectifyParams(
        enabled=True, omega="still", tau=(0, 1)
    )
    assert _restored(off.extra_generation_params) == RectifyParams()
    assert _restored(on_again.extra_generation_params) == RectifyParams(
        enabled=True, omega="still", tau=(0, 0.5)
    )


def test_a_cells_warning_comment_does_not_reach_the_next_cell():
    parent = host.make_job(Script, [{"enabled": False}], ad={"enable": False})
    skipped = _cell(parent, {"Enable": "True"})
    plain = _cell(parent, {"Enable": "False"})
    assert "AnimateDiff is not enabled" in skipped.comments
    assert "Noise Rectification" not in plain.comments
    assert infotext.SKIPPED_KEY not in plain.extra_generation_params


def test_stochastic_note_belongs_to_its_cell_only():
    parent = host.make_job(
        Script, [{"enabled": True, "omega": "still", "tau": [0, 1]}], sampler="Euler a"
    )
    first = _cell(parent, {})
    parent_euler = copy.copy(parent)
    parent_euler.sampler_name = "Euler"
    second = _cell(parent_euler, {})
    assert infotext.PIVOT_KEY in first.extra_generation_params
    assert infotext.PIVOT_KEY not in second.extra_generation_params


# ------------------------------------------------------------------------ inpainting
class Shifter(host.Script):
    """Another extension whose post_sample changes the samples."""

    def title(self):
        return "Shifter"

    def post_sample(self, p, ps, *args):
        ps.samples = ps.samples + 1.0


@pytest.mark.parametrize("sampler", ["DDIM", "Euler", "UniPC"])
def test_inpainting_keeps_the_hosts_mask_blend_and_other_scripts_post_sample(sampler):
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1.0  # repaint the left half, keep the right half

    def job_with(extra_scripts):
        torch.manual_seed(0)
        rect = {"enabled": True, "omega": "free", "tau": [0, 1]}
        p = host.make_job(Script, [rect], sampler=sampler, seed=7)
        p.image_mask = mask
        for script in extra_scripts:
            script.args_from = script.args_to = len(p.script_args)
            p.scripts.alwayson_scripts.append(script)
        return p, host.run_job(p)

    p, plain = job_with([])
    out = plain.samples[0]
    picture = p.first_encoding.expand(8, -1, -1, -1)
    assert torch.equal(out[..., 4:], picture[..., 4:])  # the host's blend, after the landing
    assert not torch.allclose(out[3, :, :, :4], picture[3, :, :, :4], atol=1e-3)  # frames move
    assert torch.allclose(out[0], picture[0], atol=1e-4)  # the reference frame is the picture
    _q, shifted = job_with([Shifter()])
    assert torch.allclose(shifted.samples[0], out + 1.0, atol=1e-6)


# --------------------------------------------------------------------------- devices
@pytest.mark.parametrize("sampler", ["DDIM", "UniPC", "Euler", "DPM++ 2M SDE", "DDIM CFG++"])
def test_the_glue_computes_no_float64_per_call(sampler):
    wrapped = {}
    for kind, callback in (
        ("cfg_denoiser", job.on_cfg_denoiser),
        ("cfg_after_cfg", job.on_cfg_after_cfg),
    ):

        def guarded(params, _callback=callback):
            with NoFloat64():
                _callback(params)

        index = host.CALLBACKS[kind].index(callback)
        host.CALLBACKS[kind][index] = guarded
        wrapped[kind] = (index, callback)
    try:
        torch.manual_seed(0)
        p = host.make_job(
            Script, [{"enabled": True, "omega": "paper", "tau": [0, 1]}], sampler=sampler
        )
        host.run_job(p)
    finally:
        for kind, (index, callback) in wrapped.items():
            host.CALLBACKS[kind][index] = callback
    assert not [r for r in host.REPORTED if "float64" in r]
