"""Beside ControlNet / IP-Adapter units, and AnimateDiff's half-finished setup they cause.

Over the API, sd-webui-animatediff a88e889's ``before_process`` raises on ControlNet unit
dicts after injecting its motion module (animatediff_utils.py:48-71); the host only logs
it, and AnimateDiff's postprocess then fails before taking the module out. The fake
reproduces that (fake_host.FakeAnimateDiff / FakeControlNet).
"""

from __future__ import annotations

import types

import pytest
import torch

import fake_host as host

SCRIPT = host.install()
from lib_rectify import RectifyError  # noqa: E402
from lib_rectify_webui import infotext, job  # noqa: E402

Script = SCRIPT.NoiseRectificationScript
STILL = {"enabled": True, "omega": "still", "tau": [0.0, 1.0]}
TILE = {"enabled": True, "module": "tile_resample", "model": "control_v11f1e_sd15_tile"}
IP_ADAPTER = {
    "enabled": True,
    "module": "ip-adapter_clip_sd15",
    "model": "ip-adapter_sd15",
    "weight": 0.8,
}


@pytest.fixture(autouse=True)
def _fresh_host():
    host.reset_host()
    yield
    host.reset_host()


def run(rect_args, seed=0, **kwargs):
    torch.manual_seed(seed)
    p = host.make_job(Script, rect_args, **kwargs)
    return p, host.run_job(p)


def picture(p):
    return p.first_encoding.expand(p.batch_size, -1, -1, -1)


def plain_txt2img():
    p = host.make_job(
        Script, [], p_class=host.StableDiffusionProcessingTxt2Img, ad={"enable": False}
    )
    p.batch_size = 2
    return host.run_job(p).samples[0]


@pytest.mark.parametrize(
    "units", [[TILE], [IP_ADAPTER], [TILE, IP_ADAPTER]], ids=["tile", "ip-adapter", "both"]
)
def test_over_the_api_a_still_window_works_and_says_animatediff_was_half_set_up(units):
    p, out = run([STILL], controlnet=units)
    assert torch.allclose(out.samples[0], picture(p), atol=1e-4)
    assert out.extra_generation_params[infotext.ANIMATEDIFF_KEY].startswith("setup incomplete")
    assert "AnimateDiff did not finish setting up" in out.comments
    assert "AnimateDiff" not in out.extra_generation_params  # its own infotext is missing
    assert not host.AnimateDiffMM.mm_injected  # AnimateDiff's postprocess could not
    plain_txt2img()


def test_the_half_set_up_host_is_restored_even_with_an_empty_window():
    run([{"enabled": True, "tau": [0.3, 0.3]}], controlnet=[TILE])
    assert not host.AnimateDiffMM.mm_injected


def test_with_rectification_off_nothing_changes_not_even_animatediffs_leak():
    _p, reference = run([], controlnet=[TILE], seed=3)
    host.reset_host()
    _p, off = run([{"enabled": False}], controlnet=[TILE], seed=3)
    assert torch.equal(reference.samples[0], off.samples[0])
    assert not [k for k in off.extra_generation_params if infotext.is_ours(k)]
    assert host.AnimateDiffMM.mm_injected  # the host's own bug, left as the WebUI has it


def test_context_windows_that_animatediff_did_not_set_up_are_refused():
    with pytest.raises(RectifyError, match=r"AnimateDiff setup.*context size \(batch_size\) to 12"):
        run([STILL], controlnet=[TILE], frames=12, ad={"batch_size": 8})
    assert not host.AnimateDiffMM.mm_injected


def test_in_the_ui_animatediff_sets_up_fully_and_there_is_no_note():
    units = [types.SimpleNamespace(**TILE)]  # the UI passes ControlNetUnit objects, not dicts
    p, out = run([STILL], controlnet=units, api=False)
    assert torch.allclose(out.samples[0], picture(p), atol=1e-4)
    assert infotext.ANIMATEDIFF_KEY not in out.extra_generation_params
    assert "AnimateDiff" in out.extra_generation_params
    assert not host.AnimateDiffMM.mm_injected


@pytest.mark.parametrize("sampler", ["Euler", "DDIM"])
def test_controlnet_changes_the_prediction_but_not_the_pivot_noise(sampler):
    pivots = []

    def spy(params):  # after the glue's own callback: the pivot of this batch
        state = job.state_of(getattr(params.denoiser, "p", None))
        if state is not None and state.rectifier is not None and not pivots[-1:]:
            pivots.append(state.rectifier.pivot.clone())

    host.CALLBACKS["cfg_denoiser"].append(spy)
    try:
        _p, without = run([{"enabled": True, "tau": [0, 0.5]}], sampler=sampler, seed=5)
        first = pivots.pop()
        _q, with_cn = run(
            [{"enabled": True, "tau": [0, 0.5]}], sampler=sampler, seed=5, controlnet=[TILE]
        )
        second = pivots.pop()
    finally:
        host.CALLBACKS["cfg_denoiser"].remove(spy)
    assert torch.equal(first, second)
    assert not torch.allclose(without.samples[0], with_cn.samples[0], atol=1e-3)


def test_reference_frame_is_exact_with_free_omega_beside_controlnet():
    p, out = run([{"enabled": True, "omega": "free", "tau": [0, 1]}], controlnet=[TILE, IP_ADAPTER])
    assert torch.allclose(out.samples[0][0], picture(p)[0], atol=1e-4)
    assert not torch.allclose(out.samples[0][5], picture(p)[5], atol=1e-3)
