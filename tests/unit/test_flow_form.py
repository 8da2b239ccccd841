"""The flow-matching form of the core (docs/flow-matching.md): Eq. 7-8 on the noise a flow
model's prediction implies, in float32 over random σ schedules."""

from __future__ import annotations

import itertools

import pytest
import torch

from lib_rectify import Rectifier, RectifyError, RectifyParams
from lib_rectify import noise_math as nm

L, C, H, W = 6, 3, 4, 4


def _schedule(g: torch.Generator, steps: int, start: float) -> list[float]:
    cuts = torch.sort(torch.rand(steps - 1, generator=g, dtype=torch.float64), descending=True)
    return [start, *(start * cuts.values).tolist(), 0.0]


def _reference_noise_space(v, x, sigma, pivot, omega, ref):
    """Eq. 7-8 on n̂ = (x − (1−σ)·x̂₀)/σ in float64, turned back into a velocity."""
    x, v, pivot = x.double(), v.double(), pivot.double()
    d = x - sigma * v
    n_hat = (x - (1 - sigma) * d) / sigma
    gap = pivot - n_hat
    n_tilde = (
        n_hat
        + omega.double().view(1, -1, 1) * gap[:, ref : ref + 1]
        + (1 - omega.double().view(1, -1, 1)) * gap
    )
    d_tilde = (x - sigma * n_tilde) / (1 - sigma)
    return (x - d_tilde) / sigma


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("omega", ["paper", "free", 0.3])
def test_rectify_flow_is_eq8_on_the_implied_noise(seed: int, omega) -> None:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 1, C * H * W, generator=g).expand(1, L, -1)
    noise = torch.randn(1, L, C * H * W, generator=g)
    sigmas = _schedule(g, 8, 0.95)
    rect = Rectifier(RectifyParams(enabled=True, omega=omega, tau=(0, 1)), frames=L, layout="video")
    video = lambda rows: rows.reshape(1, L, C, H, W).transpose(1, 2).contiguous()  # noqa: E731
    rows = lambda t: t.transpose(1, 2).reshape(1, L, -1)  # noqa: E731
    x = (1 - sigmas[0]) * z + sigmas[0] * noise
    rect.capture_pivot_flow(video(x), clean=video(z), sigma=sigmas[0])
    for i, (s, s_next) in enumerate(itertools.pairwise(sigmas)):
        v = torch.randn(x.shape, generator=g)  # any model
        out = rows(rect.rectify_flow(video(v), x=video(x), sigma=s, step=i, total_steps=8))
        expected = _reference_noise_space(v, x, s, noise, rect.omega, 0)
        assert torch.allclose(out.double(), expected, atol=2e-4, rtol=1e-4), (i, s)
        x = x + (s_next - s) * out
    assert rect.finish() == list(range(8))


def test_still_window_from_below_one_lands_on_the_picture_with_any_model() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, C, 1, H, W, generator=g).expand(-1, -1, L, -1, -1).contiguous()
    noise = torch.randn(z.shape, generator=g)
    for start in (0.999, 0.95, 0.5):
        sigmas = _schedule(g, 10, start)
        rect = Rectifier(
            RectifyParams(enabled=True, omega="still", tau=(0, 1)), frames=L, layout="video"
        )
        x = (1 - start) * z + start * noise
        rect.capture_pivot_flow(x, clean=z, sigma=start)
        for i, (s, s_next) in enumerate(itertools.pairwise(sigmas)):
            v = rect.rectify_flow(
                torch.randn(x.shape, generator=g), x=x, sigma=s, step=i, total_steps=10
            )
            x = x + (s_next - s) * v
        assert torch.allclose(x, z, atol=1e-4), start
        rect.finish()


def test_at_sigma_one_the_prediction_is_kept_and_the_gap_is_zero() -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, C, L, H, W, generator=g)
    noise = torch.randn(z.shape, generator=g)
    v = torch.randn(z.shape, generator=g)
    for sigma in (1.0, torch.tensor(1.0), torch.ones(1)):
        rect = Rectifier(
            RectifyParams(enabled=True, omega="still", tau=(0, 1)), frames=L, layout="video"
        )
        rect.capture_pivot_flow(noise, clean=z, sigma=sigma)
        out = rect.rectify_flow(v, x=noise, sigma=sigma, step=0, total_steps=4)
        assert torch.equal(out, v)
        # the pivot is the input itself: Δ = n − n̂ = 0 there
        assert torch.equal(
            rect.pivot,
            nm.pivot_from_noisy_flow(noise, z, torch.tensor(1.0)).transpose(1, 2).reshape(1, L, -1),
        )


def test_denoised_and_velocity_predictions_agree() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, C, L, H, W, generator=g)
    noise = torch.randn(z.shape, generator=g)
    x = 0.3 * z + 0.7 * noise
    v = torch.randn(z.shape, generator=g)
    outs = {}
    for kind in ("velocity", "denoised"):
        rect = Rectifier(RectifyParams(enabled=True, tau=(0, 1)), frames=L, layout="video")
        rect.capture_pivot_flow(x, clean=z, sigma=0.7)
        given = v if kind == "velocity" else x - 0.7 * v
        outs[kind] = rect.rectify_flow(
            given, x=x, sigma=0.7, step=0, total_steps=3, prediction=kind
        )
    assert torch.allclose(x - 0.7 * outs["velocity"], outs["denoised"], atol=1e-5)


def test_per_frame_sigma_tensor_and_frames_layout() -> None:
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2 * L, C, H, W, generator=g)
    noise = torch.randn(z.shape, generator=g)
    x = 0.4 * z + 0.6 * noise
    v = torch.randn(z.shape, generator=g)
    a = Rectifier(RectifyParams(enabled=True, tau=(0, 1)), frames=L, layout="frames")
    b = Rectifier(RectifyParams(enabled=True, tau=(0, 1)), frames=L, layout="frames")
    a.capture_pivot_flow(x, clean=z, sigma=0.6)
    b.capture_pivot_flow(x, clean=z, sigma=torch.full((2 * L,), 0.6))
    out_a = a.rectify_flow(v, x=x, sigma=0.6, step=0, total_steps=2)
    out_b = b.rectify_flow(
        v, x=x, sigma=torch.full((2 * L,), 0.6), step=torch.tensor(0), total_steps=2
    )
    assert torch.allclose(out_a, out_b, atol=1e-6)
    assert a.finish() == b.finish() == [0]


def test_outside_the_window_and_disabled_are_untouched() -> None:
    x = torch.randn(1, C, L, H, W)
    v = torch.randn(x.shape)
    rect = Rectifier(RectifyParams(enabled=True, tau=(0.5, 1)), frames=L, layout="video")
    rect.capture_pivot_flow(x, clean=torch.zeros_like(x), sigma=0.9)
    assert rect.rectify_flow(v, x=x, sigma=0.9, step=0, total_steps=4) is v
    off = Rectifier(RectifyParams(enabled=False), frames=L, layout="video")
    off.capture_pivot_flow(x, clean=x, sigma=0.9)
    assert off.rectify_flow(v, x=x, sigma=0.9, step=0, total_steps=4) is v


def test_bad_sigma_and_prediction_are_refused_by_name() -> None:
    x = torch.randn(1, C, L, H, W)
    rect = Rectifier(RectifyParams(enabled=True), frames=L, layout="video")
    with pytest.raises(RectifyError, match="sigma"):
        rect.capture_pivot_flow(x, clean=x, sigma=1.5)
    with pytest.raises(RectifyError, match="sigma"):
        rect.capture_pivot_flow(x, clean=x, sigma=0.0)
    rect.capture_pivot_flow(x, clean=x, sigma=0.5)
    with pytest.raises(RectifyError, match="prediction"):
        rect.rectify_flow(x, x=x, sigma=0.5, step=0, total_steps=2, prediction="eps")
    rect.rectify_flow(x, x=x, sigma=torch.tensor(1.5), step=0, total_steps=2)
    with pytest.raises(RectifyError, match="sigma"):
        rect.finish()


def test_sigma_start_setting() -> None:
    assert RectifyParams().sigma_start == 0.95
    for bad in (0, -0.1, 1.01, float("nan"), "x", True):
        with pytest.raises(RectifyError, match="sigma_start"):
            RectifyParams(sigma_start=bad)
    p = RectifyParams(enabled=True, sigma_start=0.9)
    assert RectifyParams.from_api(p.to_api()) == p
    assert RectifyParams.from_infotext(p.to_infotext()) == p
    assert "NR sigma start" not in RectifyParams(enabled=True).to_infotext()
    assert p.with_override("sigma_start", "0.8").sigma_start == 0.8
