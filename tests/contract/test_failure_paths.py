"""A refused or failed job leaves the WebUI as it was; no error is swallowed.

The host skips every script's ``postprocess`` when a job raises
(modules/processing.py:819-860), and AnimateDiff only takes its motion module out of
the UNet there (scripts/animatediff.py:92-96): the fake reproduces both, so the next
txt2img batch fails the way it does in the real WebUI unless the glue restores it.
"""

from __future__ import annotations

import fake_samplers
import pytest
import torch

import fake_host as host

SCRIPT = host.install()
from lib_rectify import Rectifier, RectifyError  # noqa: E402
from lib_rectify_webui import job  # noqa: E402

Script = SCRIPT.NoiseRectificationScript
STILL = {"enabled": True, "omega": "still", "tau": [0.0, 1.0]}


@pytest.fixture(autouse=True)
def _fresh_host():
    host.reset_host()
    yield
    host.reset_host()


def plain_txt2img() -> torch.Tensor:
    """A txt2img batch of 2 with AnimateDiff off (its txt2img script object)."""
    p = host.make_job(
        Script, [], p_class=host.StableDiffusionProcessingTxt2Img, ad={"enable": False}, seed=11
    )
    p.batch_size = 2
    return host.run_job(p).samples[0]


def plain_img2img() -> torch.Tensor:
    torch.manual_seed(0)
    p = host.make_job(Script, [], ad={"enable": False}, seed=12)
    return host.run_job(p).samples[0]


def rectified(rect=STILL, **kwargs):
    torch.manual_seed(0)
    p = host.make_job(Script, [rect], **kwargs)
    return p, host.run_job(p)


def test_the_fake_reproduces_the_leak_the_glue_must_undo():
    """Without the glue's restore, a failed AnimateDiff job breaks the next txt2img batch."""
    p = host.make_job(Script, [], ad={"enable": True})
    p.sample = lambda **_kwargs: (_ for _ in ()).throw(RuntimeError("out of memory"))
    with pytest.raises(RuntimeError, match="out of memory"):
        host.run_job(p)
    with pytest.raises(RuntimeError, match="einops"):
        plain_txt2img()


REFUSALS = [
    ({"ad": {"freeinit_enable": True}}, STILL, "FreeInit"),
    ({"ad": {"last_frame": "a picture"}}, {**STILL, "end_anchor": False}, "last frame"),
    ({"ad": {"last_frame": "a picture"}}, {**STILL, "end_picture": "another"}, "not both"),
    ({}, {"enabled": True, "omega": "wobbly"}, "omega"),
    ({}, {"enabled": True, "reference_frame": 8}, "reference_frame"),
]


@pytest.mark.parametrize(
    ("kwargs", "rect", "fragment"),
    REFUSALS,
    ids=[
        "freeinit",
        "last-frame-without-end-anchor",
        "two-end-pictures",
        "bad-value",
        "frame-index",
    ],
)
def test_after_a_refused_job_txt2img_and_img2img_are_bit_identical(kwargs, rect, fragment):
    before = plain_txt2img(), plain_img2img()
    with pytest.raises(RectifyError, match=fragment):
        rectified(rect, **kwargs)
    assert not host.AnimateDiffMM.mm_injected
    after = plain_txt2img(), plain_img2img()
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def test_an_unexpected_error_in_a_hook_fails_the_job_with_what_broke(monkeypatch):
    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Rectifier, "rectify_denoised", broken)
    before = plain_txt2img()
    with pytest.raises(
        RuntimeError,
        match=r"Noise Rectification failed in rectifying step 0.*ZeroDivisionError: a bug",
    ):
        rectified()
    assert not any("ZeroDivisionError" in r for r in host.REPORTED)  # failed, not just logged
    assert torch.equal(before, plain_txt2img())
    assert job._in_flight.call is None


def test_an_error_in_before_process_fails_the_job(monkeypatch):
    def broken(*_args, **_kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(job, "parse_job_params", broken)
    with pytest.raises(RuntimeError, match="failed in before_process: KeyError"):
        rectified()
    assert not host.AnimateDiffMM.mm_injected


def test_a_host_error_during_sampling_still_restores_animatediff():
    original = host.HOST.sd_model.apply_model
    calls = []

    def flaky(x, t, cond):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory")
        return original(x, t, cond)

    host.HOST.sd_model.apply_model = flaky
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            rectified()
    finally:
        del host.HOST.sd_model.apply_model
    assert not host.AnimateDiffMM.mm_injected
    plain_txt2img()


def test_a_failure_after_sampling_is_undone_when_the_job_is_closed(monkeypatch):
    def decode_fails(self, p, samples):
        raise RuntimeError("VAE decode out of memory")

    monkeypatch.setattr(host.Processed, "__init__", decode_fails)
    with pytest.raises(RuntimeError, match="VAE decode"):
        rectified()
    monkeypatch.undo()
    assert not host.AnimateDiffMM.mm_injected
    plain_txt2img()


def test_sampling_that_never_reaches_the_callbacks_fails_instead_of_a_silent_no_op():
    host.CALLBACKS["cfg_denoiser"].remove(job.on_cfg_denoiser)  # e.g. a replaced sampling loop
    try:
        with pytest.raises(RectifyError, match="model calls seen"):
            rectified()
    finally:
        host.CALLBACKS["cfg_denoiser"].insert(0, job.on_cfg_denoiser)
    assert not host.AnimateDiffMM.mm_injected


def test_interrupting_a_job_returns_the_last_latent_without_an_error():
    host.HOST.state.interrupted = True
    p, processed = rectified()
    assert processed.samples[0].shape == (8, 4, 8, 8)
    assert not hasattr(p, job.STATE_ATTR)


def test_after_a_successful_job_the_sampler_function_is_the_hosts_again():
    p = host.make_job(Script, [STILL])
    torch.manual_seed(0)
    host.process_images(p)
    assert vars(p.sampler)["func"] is fake_samplers.K.sample_euler


def test_the_same_job_object_can_run_again_after_a_refusal():
    """The img2img batch tab reuses one ``p`` for every picture (modules/img2img.py)."""
    torch.manual_seed(0)
    p = host.make_job(Script, [STILL], ad={"freeinit_enable": True})
    with pytest.raises(RectifyError, match="FreeInit"):
        host.run_job(p)
    p.script_args[0] = {"enable": True, "video_length": 8, "batch_size": 8}
    processed = host.run_job(p)
    assert torch.allclose(processed.samples[0], p.first_encoding.expand(8, -1, -1, -1), atol=1e-4)
    assert not {"init", "sample", "close"} & set(vars(p))  # the class's own methods again


@pytest.mark.parametrize("switch_at", [None, 0.5])
def test_a_refiner_switch_is_refused_and_one_that_never_switches_is_not(switch_at):
    torch.manual_seed(0)
    p = host.make_job(Script, [STILL])
    p.refiner_checkpoint, p.refiner_switch_at = "random-sd15.safetensors", switch_at
    with pytest.raises(RectifyError, match="refiner"):
        host.run_job(p)
    assert not host.AnimateDiffMM.mm_injected
    torch.manual_seed(0)
    q = host.make_job(Script, [STILL])
    q.refiner_checkpoint, q.refiner_switch_at = "random-sd15.safetensors", 1.0
    host.run_job(q)
