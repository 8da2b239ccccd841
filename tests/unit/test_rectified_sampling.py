"""The method's exact promises, checked through real sampling loops (design.md)."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from lib_rectify import RectifyParams

from toy import (
    DENOISER_SAMPLERS,
    SD_BETAS,
    GaussianDenoiser,
    RandomVideoDenoiser,
    repeated_clean,
    run_denoiser_form,
    run_eps_form_ddim,
    sample_euler,
    sample_euler_ancestral,
)

FRAMES = 6
# Tolerances: float32 sampling of O(1) latents over ≤ 20 steps; the pinned paths are
# exact in real arithmetic, so anything above ~1e-4 would be a real deviation.
ATOL = 2e-4


def _noise(shape, seed=7):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _models(clean):
    bias = torch.full((1, 4, 1, 1), 0.3)
    return {
        "random": RandomVideoDenoiser(FRAMES, 4),
        "biased": GaussianDenoiser(clean + 0.7, 0.5, bias),
        "exact": GaussianDenoiser(clean, 0.5),
    }


def _sd_euler_sigmas(steps):
    scheduler = EulerDiscreteScheduler(**SD_BETAS, steps_offset=1)
    scheduler.set_timesteps(steps)
    return scheduler.sigmas.float()


@pytest.mark.parametrize("model_name", ["random", "biased", "exact"])
@pytest.mark.parametrize("sampler", sorted(DENOISER_SAMPLERS))
def test_still_over_the_whole_run_returns_the_picture_denoiser_form(model_name, sampler):
    clean = repeated_clean(2, FRAMES)
    noise = _noise(clean.shape)
    params = RectifyParams(enabled=True, omega="still", tau=(0.0, 1.0))
    model = _models(clean)[model_name]
    out = run_denoiser_form(
        model, clean, noise, params, FRAMES, DENOISER_SAMPLERS[sampler], steps=10
    )
    assert torch.allclose(out, clean, atol=ATOL)
    unrectified = run_denoiser_form(
        model, clean, noise, RectifyParams(), FRAMES, DENOISER_SAMPLERS[sampler], steps=10
    )
    assert (unrectified - clean).abs().max() > 0.05  # the model alone does not return the picture


@pytest.mark.parametrize("model_name", ["random", "biased", "exact"])
@pytest.mark.parametrize("final_clean", [True, False])
def test_still_over_the_whole_run_returns_the_picture_eps_form(model_name, final_clean):
    clean = repeated_clean(2, FRAMES)
    noise = _noise(clean.shape)
    params = RectifyParams(enabled=True, omega="still", tau=(0.0, 1.0))
    out = run_eps_form_ddim(
        _models(clean)[model_name], clean, noise, params, FRAMES, steps=10, final_clean=final_clean
    )
    assert torch.allclose(out, clean, atol=ATOL)


def test_without_landing_a_ddim_that_stops_short_keeps_per_frame_grain():
    clean = repeated_clean(1, FRAMES)
    noise = _noise(clean.shape)
    params = RectifyParams(enabled=True, omega="still", tau=(0.0, 1.0))
    model = _models(clean)["random"]
    grainy = run_eps_form_ddim(
        model, clean, noise, params, FRAMES, steps=10, final_clean=False, land=False
    )
    residual = (grainy - clean).abs().max()
    assert residual > 0.01  # √(1−ᾱ₀)·n ≈ 3 % of the pivot noise is left
    landed = run_eps_form_ddim(
        model, clean, noise, params, FRAMES, steps=10, final_clean=False, land=True
    )
    assert (landed - clean).abs().max() < residual / 50


@pytest.mark.parametrize("omega", ["paper", "free", 0.5, (1.0, 0.0, 0.3)])
@pytest.mark.parametrize("reference", [0, -1, 2])
@pytest.mark.parametrize("sampler", sorted(DENOISER_SAMPLERS))
def test_reference_frame_is_exactly_the_picture(omega, reference, sampler):
    clean = repeated_clean(2, FRAMES)
    noise = _noise(clean.shape)
    params = RectifyParams(enabled=True, omega=omega, tau=(0.0, 1.0), reference_frame=reference)
    model = _models(clean)["random"]
    out = run_denoiser_form(
        model, clean, noise, params, FRAMES, DENOISER_SAMPLERS[sampler], steps=8
    )
    ref = reference % FRAMES
    for video in range(2):
        row = video * FRAMES + ref
        assert torch.allclose(out[row], clean[row], atol=ATOL)
    others = [v * FRAMES + f for v in range(2) for f in range(FRAMES) if f != ref]
    if omega != "still":
        assert (out[others] - clean[others]).abs().max() > 1e-2  # the other frames may move


@pytest.mark.parametrize("reference", [0, -1])
def test_reference_frame_is_exactly_the_picture_eps_form(reference):
    clean = repeated_clean(1, FRAMES)
    noise = _noise(clean.shape)
    params = RectifyParams(enabled=True, omega="paper", tau=(0.0, 1.0), reference_frame=reference)
    out = run_eps_form_ddim(
        _models(clean)["random"], clean, noise, params, FRAMES, steps=8, final_clean=False
    )
    ref = reference % FRAMES
    assert torch.allclose(out[ref], clean[ref], atol=ATOL)


@pytest.mark.parametrize(
    "params",
    [
        RectifyParams(),
        RectifyParams(enabled=True, tau=(0.0, 0.0)),
        RectifyParams(enabled=True, tau=(0.4, 0.4)),
    ],
)
def test_disabled_or_empty_window_is_bit_identical(params):
    clean = repeated_clean(1, FRAMES)
    noise = _noise(clean.shape)
    model = _models(clean)["random"]

    def plain(x, sigma, step):
        return model(x, torch.full((x.shape[0],), sigma))

    from toy import karras_like_sigmas

    sigmas = karras_like_sigmas(8)
    reference = sample_euler(plain, clean + noise * sigmas[0], sigmas)
    out = run_denoiser_form(model, clean, noise, params, FRAMES, sample_euler, sigmas=sigmas)
    assert torch.equal(out, reference)
    eps_reference = run_eps_form_ddim(model, clean, noise, RectifyParams(), FRAMES, steps=8)
    assert torch.equal(
        run_eps_form_ddim(model, clean, noise, params, FRAMES, steps=8), eps_reference
    )


def test_fidelity_grows_with_the_window_and_early_beats_late():
    """Paper Fig. 6 on an exact denoiser whose noise prediction carries a constant bias."""
    clean = repeated_clean(1, FRAMES)
    noise = _noise(clean.shape)
    model = GaussianDenoiser(clean, 0.25, torch.full((1, 4, 1, 1), 0.3))
    sigmas = _sd_euler_sigmas(20)

    def distance(tau, omega="still"):
        params = RectifyParams(enabled=True, omega=omega, tau=tau)
        out = run_denoiser_form(model, clean, noise, params, FRAMES, sample_euler, sigmas=sigmas)
        return float((out - clean).pow(2).mean().sqrt())

    ends = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    for omega in ["still", 0.25]:
        distances = [distance((0.0, end), omega) for end in ends]
        assert all(a > b for a, b in itertools.pairwise(distances)), (omega, distances)
    assert distance((0.0, 1.0)) < 1e-4
    late, early = distance((0.6, 1.0)), distance((0.0, 0.4))
    assert late > 2 * early, (late, early)


def test_denoiser_form_and_eps_form_agree():
    """Euler on DDIM's own timesteps is DDIM (η = 0): both code paths must give one answer."""
    clean = repeated_clean(2, FRAMES)
    noise = _noise(clean.shape)
    model = RandomVideoDenoiser(FRAMES, 4, seed=3)
    steps = 10
    from toy import ddim_scheduler

    scheduler = ddim_scheduler(steps, final_clean=True)
    abars = scheduler.alphas_cumprod.double()
    sigmas = [((1 - abars[t]) / abars[t]).sqrt() for t in scheduler.timesteps]
    sigmas = torch.tensor([*sigmas, 0.0], dtype=torch.float64).float()
    for params in [
        RectifyParams(enabled=True, omega="paper", tau=(0.0, 0.6)),
        RectifyParams(enabled=True, omega=(0.2, 1.0), tau=(0.1, 0.9), reference_frame=-1),
    ]:
        denoiser = run_denoiser_form(
            model, clean, noise, params, FRAMES, sample_euler, sigmas=sigmas
        )
        eps = run_eps_form_ddim(model, clean, noise, params, FRAMES, steps=steps, final_clean=True)
        assert torch.allclose(denoiser, eps, atol=1e-4), (denoiser - eps).abs().max()


def test_diffusers_euler_matches_the_reference_euler():
    """Our k-diffusion-style Euler is the one diffusers ships (guards the test sampler itself)."""
    clean = repeated_clean(1, FRAMES)
    noise = _noise(clean.shape)
    model = RandomVideoDenoiser(FRAMES, 4)
    scheduler = EulerDiscreteScheduler(**SD_BETAS, steps_offset=1)
    scheduler.set_timesteps(8)
    x = clean + noise * scheduler.sigmas[0]
    for i, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[i]
        eps = (x - model(x, torch.full((x.shape[0],), float(sigma)))) / sigma
        x = scheduler.step(eps, t, x).prev_sample
    ours = run_denoiser_form(
        model, clean, noise, RectifyParams(), FRAMES, sample_euler, sigmas=scheduler.sigmas.float()
    )
    assert torch.allclose(ours, x, atol=1e-5)


def _ancestral(model, x, sigmas):
    return sample_euler_ancestral(model, x, sigmas, seed=1)


@pytest.mark.parametrize("omega", ["still", "paper"])
def test_ancestral_sampler_with_per_step_pivot_keeps_the_promises(omega):
    """Fresh noise each step breaks x_t = Z + σ·n; the per-step pivot restores the exact ends."""
    clean = repeated_clean(1, FRAMES)
    noise = _noise(clean.shape)
    model = _models(clean)["random"]
    params = RectifyParams(enabled=True, omega=omega, tau=(0.0, 1.0))
    out = run_denoiser_form(
        model, clean, noise, params, FRAMES, _ancestral, steps=12, pivot="per_step"
    )
    if omega == "still":
        assert torch.allclose(out, clean, atol=ATOL)
    assert torch.allclose(out[0], clean[0], atol=ATOL)
    # With the paper's fixed pivot the injected noise is never corrected and piles up.
    fixed = run_denoiser_form(model, clean, noise, params, FRAMES, _ancestral, steps=12)
    assert (fixed - clean).pow(2).mean() > 100 * (out - clean).pow(2).mean() + 1.0


@pytest.mark.parametrize("sampler", sorted(DENOISER_SAMPLERS))
def test_per_step_pivot_equals_the_paper_on_the_pinned_path(sampler):
    clean = repeated_clean(1, FRAMES)
    noise = _noise(clean.shape)
    model = _models(clean)["biased"]
    params = RectifyParams(enabled=True, omega="still", tau=(0.0, 0.5))
    run = DENOISER_SAMPLERS[sampler]
    paper = run_denoiser_form(model, clean, noise, params, FRAMES, run, steps=10)
    per_step = run_denoiser_form(
        model, clean, noise, params, FRAMES, run, steps=10, pivot="per_step"
    )
    assert torch.allclose(paper, per_step, atol=1e-4)
