"""Every WebUI v1.10.1 sampler, driven through its real loop (fake_samplers.py).

The expected step of each model call is written out from the host's code (the call
order of each sampling function, see lib_rectify_webui/sampler_plan.py), not computed
by the glue's own rule: a model call belongs to the interval of the schedule its noise
level lies in, and the second call of a two-call step belongs to that step.
"""

from __future__ import annotations

import bisect
import math

import fake_samplers
import pytest
import torch

import fake_host as host

SCRIPT = host.install()
from lib_rectify_webui import infotext, job  # noqa: E402

Script = SCRIPT.NoiseRectificationScript
STILL = {"enabled": True, "omega": "still", "tau": [0.0, 1.0]}
OFF = {"enabled": False}
STEPS = 8
ONE_CALL = (
    "DPM++ 2M",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Heun",
    "DPM++ 3M SDE",
    "Euler a",
    "Euler",
    "LMS",
    "LCM",
)
TWO_CALL = ("DPM++ SDE", "DPM++ 2S a", "Heun", "DPM2", "DPM2 a", "Restart")
OWN_GRID = ("DPM fast", "DPM adaptive")
STOCHASTIC = {
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Heun",
    "DPM++ 2S a",
    "DPM++ 3M SDE",
    "Euler a",
    "DPM2 a",
    "DPM fast",
    "DPM adaptive",
    "LCM",
}


def test_the_fake_lists_every_sampler_of_the_webui():
    assert set(fake_samplers.ALL_SAMPLERS) == set(ONE_CALL + TWO_CALL + OWN_GRID) | {
        "DDIM",
        "DDIM CFG++",
        "PLMS",
        "UniPC",
    }
    assert len(fake_samplers.ALL_SAMPLERS) == 20  # GET /sdapi/v1/samplers on WebUI v1.10.1


@pytest.fixture(autouse=True)
def _fresh_host():
    host.reset_host()
    yield
    host.reset_host()


class CallLog:
    """Spies registered after the glue's callbacks: each call's level, label, rectified."""

    def __init__(self):
        self.calls: list[dict] = []
        self._state = None

    def on_denoiser(self, params):
        call = job._in_flight.call
        self._state = job.state_of(getattr(params.denoiser, "p", None))
        self.calls.append(
            {"level": float(params.sigma.max()), "label": None if call is None else int(call.step)}
        )

    def on_after(self, params):
        if self._state is not None and self.calls:
            self.calls[-1]["rectified"] = bool(self._state.last_call_rectified)

    @property
    def labels(self):
        return [c["label"] for c in self.calls]


@pytest.fixture
def log():
    spy = CallLog()
    host.CALLBACKS["cfg_denoiser"].append(spy.on_denoiser)
    host.CALLBACKS["cfg_after_cfg"].append(spy.on_after)
    yield spy
    host.CALLBACKS["cfg_denoiser"].remove(spy.on_denoiser)
    host.CALLBACKS["cfg_after_cfg"].remove(spy.on_after)


def run(rect, sampler, steps=STEPS, seed=0, **kwargs):
    torch.manual_seed(seed)
    p = host.make_job(Script, [rect], sampler=sampler, steps=steps, **kwargs)
    return p, host.run_job(p)


def picture(p):
    return p.first_encoding.expand(p.batch_size, -1, -1, -1)


def steps_of(sampler: str, steps: int = STEPS) -> int:
    """The sampler's own steps at denoising strength 1 (t_enc = steps − 1)."""
    t_enc = steps - 1
    if sampler in ("DDIM", "DDIM CFG++", "PLMS"):
        return t_enc - 1  # timesteps[:t_enc], called from the last entry down to the second
    if sampler == "UniPC":
        return t_enc  # its own grid of t_enc steps
    return t_enc + 1  # k-diffusion: the σ tail sigmas[steps − t_enc − 1:]


def expected_labels(sampler: str, ends_at_zero: bool = True, steps: int = STEPS) -> list[int]:
    """Each call's step, from the host's call order (see the module docstring)."""
    n = steps_of(sampler, steps)
    if sampler in ONE_CALL or sampler in ("DDIM", "DDIM CFG++", "UniPC"):
        return list(range(n))
    if sampler == "PLMS":  # impl.py:117-120: the first step's second call, before its callback
        return [0, 0, *range(1, n)]
    if sampler in TWO_CALL and sampler != "Restart":
        # a second call after the callback of every step that does not end at σ = 0
        return [i for i in range(n) for _ in (0, 1)][: None if not ends_at_zero else -1]
    raise AssertionError(sampler)


# ------------------------------------------------------------------- step labels
@pytest.mark.parametrize(
    "sampler", [s for s in fake_samplers.ALL_SAMPLERS if s not in (*OWN_GRID, "Restart")]
)
def test_every_call_is_labelled_with_its_step(sampler, log):
    run(STILL, sampler)
    assert log.labels == expected_labels(sampler)


def _sigma_tail(sampler: str, steps: int = STEPS) -> list[float]:
    """The σ schedule the job's sampler uses: AnimateDiff's ᾱ is in place while it runs."""
    motion_module = host.animatediff_mm.mm_animatediff
    motion_module.inject(host.HOST.sd_model, 8)
    try:
        s = fake_samplers.create_sampler(sampler)
        p = host.make_job(Script, [OFF], sampler=sampler, steps=steps)
        return [float(v) for v in s.get_sigmas(p, steps)]
    finally:
        motion_module.restore(host.HOST.sd_model)


def _interval(levels: list[float], level: float) -> int:
    """Independent oracle: the step whose (levels[i+1], levels[i]] holds ``level``."""
    ascending = levels[::-1]
    position = bisect.bisect_left(ascending, level * (1 - 1e-6))  # first level ≥ it
    return min(max(len(levels) - 1 - position, 0), len(levels) - 2)


@pytest.mark.parametrize("eta", [1.0, 0.0])
@pytest.mark.parametrize("sampler", OWN_GRID)
def test_dpm_fast_and_adaptive_calls_are_labelled_by_their_noise_level(sampler, eta, log):
    torch.manual_seed(0)
    p = host.make_job(Script, [STILL], sampler=sampler)
    p.eta = eta
    host.run_job(p)
    schedule = _sigma_tail(sampler)
    assert len(log.calls) > 0
    assert log.labels == [_interval(schedule, c["level"]) for c in log.calls]
    if eta == 0:  # without fresh noise the noise level only falls
        assert log.labels == sorted(log.labels)


@pytest.mark.parametrize("steps", [8, 24])
def test_restart_labels_each_heun_step_by_its_first_call(steps, log):
    _p, processed = run(STILL, "Restart", steps=steps)
    schedule = _sigma_tail("Restart", steps)
    expected, current = [], None
    for kind, level in fake_samplers.RESTART_CALLS:
        current = _interval(schedule, level) if kind == "first" else current
        expected.append(current)
    assert log.labels == expected
    if steps >= 20:  # it goes back up in noise: labels fall back, and the pivot is per step
        assert any(b < a for a, b in zip(log.labels, log.labels[1:], strict=False))
        assert "Restart" in processed.extra_generation_params[infotext.PIVOT_KEY]
    else:
        assert infotext.PIVOT_KEY not in processed.extra_generation_params


@pytest.mark.parametrize("schedule", ["karras", "exponential", "kl_optimal", "uniform"])
@pytest.mark.parametrize("sampler", ["Euler", "Heun", "DPM++ 2M"])
def test_labels_hold_for_every_schedule_type(sampler, schedule, log):
    torch.manual_seed(0)
    p = host.make_job(Script, [STILL], sampler=sampler)
    p.scheduler = schedule
    out = host.run_job(p)
    # KL Optimal ends at σ_min, not 0 (sd_schedulers.py:596-601): Heun's last step then
    # makes its second call too, and the result is landed on the clean estimate.
    assert log.labels == expected_labels(sampler, ends_at_zero=schedule != "kl_optimal")
    assert torch.allclose(out.samples[0], picture(p), atol=1e-4)


@pytest.mark.parametrize("sampler", ["Euler", "Heun", "DDIM", "PLMS", "UniPC"])
def test_labels_at_denoising_strength_below_one(sampler, log):
    torch.manual_seed(0)
    p = host.make_job(Script, [STILL], sampler=sampler)
    p.denoising_strength = 0.5  # t_enc = 4 of 8
    host.run_job(p)
    n = {"Euler": 5, "Heun": 5, "DDIM": 3, "PLMS": 3, "UniPC": 4}[sampler]
    want = {
        "Heun": [0, 0, 1, 1, 2, 2, 3, 3, 4],
        "PLMS": [0, 0, 1, 2],
    }.get(sampler, list(range(n)))
    assert log.labels == want


# ---------------------------------------------------------- windows with inner edges
WINDOWS = [(0.0, 0.5), (0.25, 0.75), (0.0, 0.3)]


@pytest.mark.parametrize("tau", WINDOWS, ids=lambda t: f"{t[0]:g}-{t[1]:g}")
@pytest.mark.parametrize("sampler", fake_samplers.ALL_SAMPLERS)
def test_exactly_the_calls_of_the_window_are_rectified(sampler, tau, log):
    _p, processed = run({"enabled": True, "omega": "paper", "tau": list(tau)}, sampler)
    n = steps_of(sampler)
    for call in log.calls:
        inside = n * tau[0] <= call["label"] < n * tau[1]
        assert call["rectified"] == inside, (call, n)
    in_window = {c["label"] for c in log.calls if c["rectified"]}
    reported = processed.extra_generation_params[infotext.STEPS_KEY]
    assert reported.endswith(f"of {n}")
    if sampler not in OWN_GRID:  # these may make no call in some steps
        assert in_window == {i for i in range(n) if n * tau[0] <= i < n * tau[1]}


@pytest.mark.parametrize("sampler", ["Heun", "UniPC", "PLMS", "DPM2"])
def test_equivalent_windows_are_bit_identical_and_different_ones_differ(sampler):
    n = steps_of(sampler)
    half = math.ceil(n / 2)  # steps 0 … half−1
    a = run({"enabled": True, "tau": [0, half / n]}, sampler, seed=3)[1].samples[0]
    b = run({"enabled": True, "tau": [0, (half - 0.5) / n]}, sampler, seed=3)[1].samples[0]
    c = run({"enabled": True, "tau": [0, (half + 1) / n]}, sampler, seed=3)[1].samples[0]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-4)


# --------------------------------------------------------------------- still windows
@pytest.mark.parametrize("sampler", fake_samplers.ALL_SAMPLERS)
def test_still_window_ends_on_the_picture_and_never_worse_than_off(sampler):
    p, on = run(STILL, sampler, seed=1)
    q, off = run(OFF, sampler, seed=1)
    on_error = (on.samples[0] - picture(p)).abs().max().item()
    off_error = (off.samples[0] - picture(q)).abs().max().item()
    assert on_error < 1e-4, on_error
    assert on_error <= off_error


@pytest.mark.parametrize("sampler", fake_samplers.ALL_SAMPLERS)
def test_reference_frame_is_exact_for_every_omega(sampler):
    p, out = run(
        {"enabled": True, "omega": "free", "tau": [0, 1], "reference_frame": -1}, sampler, seed=2
    )
    assert torch.allclose(out.samples[0][-1], picture(p)[-1], atol=1e-4)


# ------------------------------------------------------------------ fresh noise
@pytest.mark.parametrize("sampler", fake_samplers.ALL_SAMPLERS)
def test_samplers_that_add_fresh_noise_are_recognised(sampler):
    _p, out = run(STILL, sampler)
    note = out.extra_generation_params.get(infotext.PIVOT_KEY)
    assert (note is not None) == (sampler in STOCHASTIC), note


def test_lcm_says_why_in_the_infotext():
    _p, out = run(STILL, "LCM")
    assert out.extra_generation_params[infotext.PIVOT_KEY] == (
        "per step: LCM adds fresh noise after every step; fidelity approximate"
    )


@pytest.mark.parametrize("sampler", ["Euler", "Heun", "DPM2"])
def test_sigma_churn_makes_a_sampler_stochastic(sampler):
    host.HOST.opts.s_churn = 1.0
    p, out = run(STILL, sampler)
    assert "sigma churn" in out.extra_generation_params[infotext.PIVOT_KEY]
    assert torch.allclose(out.samples[0], picture(p), atol=1e-4)


@pytest.mark.parametrize("sampler", ["DDIM", "DDIM CFG++"])
def test_ddim_with_eta_is_stochastic(sampler):
    torch.manual_seed(0)
    p = host.make_job(Script, [STILL], sampler=sampler)
    p.eta = 0.5
    out = host.run_job(p)
    assert "η = 0.5" in out.extra_generation_params[infotext.PIVOT_KEY]
    assert torch.allclose(out.samples[0], picture(p), atol=1e-4)


def test_ancestral_sampler_with_eta_zero_is_deterministic():
    torch.manual_seed(0)
    p = host.make_job(Script, [STILL], sampler="Euler a")
    p.eta = 0.0
    out = host.run_job(p)
    assert infotext.PIVOT_KEY not in out.extra_generation_params


def test_a_sampler_the_glue_does_not_know_is_treated_as_stochastic(log):
    def sample_from_an_extension(model, x, sigmas, extra_args=None, callback=None, disable=None):
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(sigmas) - 1):
            denoised = model(x, sigmas[i] * s_in, **extra_args)
            x = denoised + sigmas[i + 1] * torch.randn_like(x)  # re-noises, like LCM
            if callback is not None:
                callback({"x": x, "i": i, "sigma": sigmas[i], "denoised": denoised})
        return x

    original = fake_samplers.create_sampler

    def create(name):
        sampler = fake_samplers.KDiffusionSampler(sample_from_an_extension, {})
        sampler.config = fake_samplers.SamplerData("Extension sampler", {})
        return sampler

    fake_samplers.create_sampler = create
    try:
        p, out = run(STILL, "Extension sampler")
    finally:
        fake_samplers.create_sampler = original
    note = out.extra_generation_params[infotext.PIVOT_KEY]
    assert "does not know (sample_from_an_extension)" in note
    assert log.labels == list(range(STEPS))
    assert torch.allclose(out.samples[0], picture(p), atol=1e-4)


# ------------------------------------------------------------------ DDIM CFG++
@pytest.mark.parametrize(("rect", "same"), [(STILL, True), (OFF, False)])
def test_ddim_cfgpp_steps_along_a_rectified_unconditional_prediction(rect, same):
    """CFG++ takes x̂₀ from the combined ε but its direction from the uncond ε it saved
    before the after-CFG callback: with ω = 0 both must be the pivot noise."""
    seen = []

    def after(params):  # runs after the glue's own after-CFG callback
        seen.append(torch.allclose(denoiser[0].last_noise_uncond, params.x, atol=1e-5))

    denoiser = []
    host.CALLBACKS["cfg_denoiser"].append(lambda params: denoiser.insert(0, params.denoiser))
    host.CALLBACKS["cfg_after_cfg"].append(after)
    try:
        run(rect, "DDIM CFG++")
    finally:
        host.CALLBACKS["cfg_denoiser"].pop()
        host.CALLBACKS["cfg_after_cfg"].remove(after)
    assert seen and all(s == same for s in seen), seen


def test_cfgpp_partial_window_keeps_the_reference_frame_closer_than_off():
    ref = {"enabled": True, "omega": "free", "tau": [0, 1], "reference_frame": 0}
    p, on = run(ref, "DDIM CFG++", seed=4)
    q, off = run(OFF, "DDIM CFG++", seed=4)
    assert (on.samples[0][0] - picture(p)[0]).abs().max() < 1e-4
    assert (off.samples[0][0] - picture(q)[0]).abs().max() > 1e-2


# -------------------------------------------------------- landing where samplers stop short
@pytest.mark.parametrize("sampler", ["DDIM", "PLMS", "UniPC", "DDIM CFG++", "DPM fast"])
def test_a_window_ending_before_the_last_step_does_not_land(sampler):
    tau = [0, 0.5]
    p, partial = run({"enabled": True, "omega": "still", "tau": tau}, sampler, seed=5)
    _q, full = run(STILL, sampler, seed=5)
    assert torch.allclose(full.samples[0], picture(p), atol=1e-4)
    assert not torch.allclose(partial.samples[0], picture(p), atol=1e-3)


def test_a_sampler_left_with_no_step_is_refused_with_how_to_fix_it():
    from lib_rectify import RectifyError

    with pytest.raises(RectifyError, match=r"sampling steps = 0 .*DDIM runs 0 .*raise the steps"):
        run(STILL, "DDIM", steps=2)  # t_enc = 1: DDIM calls the model 0 times
    assert not host.AnimateDiffMM.mm_injected


# ------------------------------------------------------- no GPU synchronisation per call
@pytest.fixture
def sync_guard(monkeypatch):
    """Record every synchronising call made by the glue's per-model-call code: the two CFG
    callbacks and the progress callback it observes (bench/syncs.py). The sampler loops,
    the CFG denoiser and the other callbacks are the host's and are not judged."""
    from bench.syncs import SyncRecorder
    from lib_rectify_webui import sampler_plan

    recorder = SyncRecorder()

    def watched(function):
        def call(*args, **kwargs):
            with recorder.watching():
                return function(*args, **kwargs)

        return call

    for kind, hook in (
        ("cfg_denoiser", job.on_cfg_denoiser),
        ("cfg_after_cfg", job.on_cfg_after_cfg),
    ):
        registered = host.CALLBACKS[kind]
        monkeypatch.setitem(
            host.CALLBACKS, kind, [watched(f) if f is hook else f for f in registered]
        )
    monkeypatch.setattr(
        sampler_plan.CallLabeler, "progress", watched(sampler_plan.CallLabeler.progress)
    )
    return recorder


@pytest.mark.parametrize("sampler", fake_samplers.ALL_SAMPLERS)
def test_no_model_call_waits_for_the_gpu(sampler, sync_guard, log):
    """Issue 17: no item()/float()/bool()/tolist()/nonzero() or blocking host-to-device copy
    in the per-model-call path of any WebUI sampler, with a window whose edges fall inside
    the run; the labels and the reported steps are still exact."""
    tau = (0.25, 0.75)
    _p, processed = run({"enabled": True, "omega": "paper", "tau": list(tau)}, sampler)
    assert sync_guard.sites == [], "synchronising calls per model call:\n" + sync_guard.report()
    n = steps_of(sampler)
    assert log.calls and all(
        c["rectified"] == (n * tau[0] <= c["label"] < n * tau[1]) for c in log.calls
    )
    reported = processed.extra_generation_params[infotext.STEPS_KEY]
    assert reported.endswith(f"of {n}")
