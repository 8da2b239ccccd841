"""Layouts, dtypes, devices, state size and tensor-level errors of the Rectifier."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from lib_rectify import Rectifier, RectifyError, RectifyParams

FRAMES = 5
ON = RectifyParams(enabled=True, omega="paper", tau=(0.0, 1.0), reference_frame=1)


def _rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _reference_denoised(denoised, x, sigma, pivot, omega, ref):
    """Eq. 7-8 written literally, one video at a time, frame by frame (float64)."""
    out = torch.empty_like(denoised, dtype=torch.float64)
    b = x.shape[0] // FRAMES
    for v in range(b):
        rows = slice(v * FRAMES, (v + 1) * FRAMES)
        n = pivot[rows].double()
        n_hat = (x[rows].double() - denoised[rows].double()) / sigma
        gap = n - n_hat
        for f in range(FRAMES):
            n_tilde = n_hat[f] + omega[f] * gap[ref] + (1 - omega[f]) * gap[f]
            out[v * FRAMES + f] = x[v * FRAMES + f].double() - sigma * n_tilde
    return out


def test_matches_the_papers_equations_written_frame_by_frame():
    clean, noise = _rand(2 * FRAMES, 4, 6, 6, seed=1), _rand(2 * FRAMES, 4, 6, 6, seed=2)
    rect = Rectifier(ON, frames=FRAMES)
    rect.capture_pivot_denoiser(clean + 9.0 * noise, clean=clean, sigma=9.0)
    x, denoised = _rand(2 * FRAMES, 4, 6, 6, seed=3), _rand(2 * FRAMES, 4, 6, 6, seed=4)
    got = rect.rectify_denoised(denoised, x=x, sigma=3.0, step=0, total_steps=4)
    want = _reference_denoised(denoised, x, 3.0, noise, rect.omega.double(), 1)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_video_layout_equals_frames_layout():
    b, c = 2, 4
    clean, noise = _rand(b * FRAMES, c, 6, 6, seed=1), _rand(b * FRAMES, c, 6, 6, seed=2)
    eps = _rand(b * FRAMES, c, 6, 6, seed=3)
    to_video = lambda t: rearrange(t, "(b l) c h w -> b c l h w", l=FRAMES)  # noqa: E731
    rows = Rectifier(ON, frames=FRAMES, layout="frames")
    video = Rectifier(ON, frames=FRAMES, layout="video")
    rows.capture_pivot_eps(clean * 0.3 + noise * 0.9, clean=clean, alpha_cumprod=0.09)
    video.capture_pivot_eps(
        to_video(clean * 0.3 + noise * 0.9), clean=to_video(clean), alpha_cumprod=0.09
    )
    a = rows.rectify_eps(eps, step=1, total_steps=3)
    v = video.rectify_eps(to_video(eps), step=1, total_steps=3)
    assert v.shape == (b, c, FRAMES, 6, 6)
    assert torch.equal(to_video(a), v)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_compute_in_float32_and_keep_their_dtype(dtype):
    clean, noise = _rand(FRAMES, 4, 8, 8, seed=1), _rand(FRAMES, 4, 8, 8, seed=2)
    sigma_t = 14.6
    noisy = clean + sigma_t * noise
    rect = Rectifier(RectifyParams(enabled=True, omega="still", tau=(0, 1)), frames=FRAMES)
    rect.capture_pivot_denoiser(noisy.to(dtype), clean=clean.to(dtype), sigma=sigma_t)
    assert rect.pivot.dtype == torch.float32
    x = noisy.to(dtype)
    out = rect.rectify_denoised(torch.zeros_like(x), x=x, sigma=sigma_t, step=0, total_steps=2)
    assert out.dtype == dtype and out.device == x.device
    # still: x − σ·n is the clean latent, up to the input's own rounding (fp16 ≈ 1e-3 of 14.6·|n|)
    tolerance = {torch.float16: 0.05, torch.bfloat16: 0.4, torch.float32: 1e-5}[dtype]
    assert (out.float() - clean).abs().max() < tolerance


def test_state_is_one_latent_sized_tensor():
    clean = _rand(3 * FRAMES, 4, 8, 8)
    rect = Rectifier(ON, frames=FRAMES)
    rect.capture_pivot_denoiser(clean + 2 * _rand(*clean.shape, seed=5), clean=clean, sigma=2.0)
    tensors = [v for v in vars(rect).values() if isinstance(v, torch.Tensor)]
    latent_size = clean.numel()
    assert sum(t.numel() for t in tensors) <= latent_size + FRAMES  # pivot + ω
    rect.release()
    assert rect.pivot is None


def test_inactive_rectifier_returns_inputs_and_keeps_nothing():
    for params in (RectifyParams(), RectifyParams(enabled=True, tau=(0.5, 0.5))):
        rect = Rectifier(params, frames=FRAMES)
        clean = _rand(FRAMES, 4, 4, 4)
        rect.capture_pivot_denoiser(clean + 1, clean=clean, sigma=1.0)
        assert rect.pivot is None
        d = _rand(FRAMES, 4, 4, 4, seed=3)
        assert rect.rectify_denoised(d, x=clean, sigma=1.0, step=0, total_steps=1) is d


def test_outside_the_window_returns_the_same_tensor():
    rect = Rectifier(RectifyParams(enabled=True, tau=(0.0, 0.5)), frames=FRAMES)
    clean = _rand(FRAMES, 4, 4, 4)
    rect.capture_pivot_denoiser(clean + 3, clean=clean, sigma=3.0)
    d = _rand(FRAMES, 4, 4, 4, seed=3)
    assert rect.rectify_denoised(d, x=clean, sigma=1.0, step=2, total_steps=4) is d
    assert rect.rectify_denoised(d, x=clean, sigma=1.0, step=1, total_steps=4) is not d


def test_per_frame_sigmas_are_accepted():
    clean = _rand(2 * FRAMES, 4, 4, 4)
    noise = _rand(2 * FRAMES, 4, 4, 4, seed=9)
    sigma = torch.full((2 * FRAMES,), 5.0)
    still = Rectifier(RectifyParams(enabled=True, omega="still", tau=(0, 1)), frames=FRAMES)
    still.capture_pivot_denoiser(clean + 5 * noise, clean=clean, sigma=sigma)
    out = still.rectify_denoised(
        torch.zeros_like(clean), x=clean + 5 * noise, sigma=sigma, step=0, total_steps=1
    )
    assert torch.allclose(out, clean, atol=1e-5)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda r, t: r.rectify_denoised(t, x=t, sigma=1.0, step=0, total_steps=2), "pivot"),
    ],
)
def test_rectifying_before_capture_is_an_error(call, field):
    rect = Rectifier(ON, frames=FRAMES)
    with pytest.raises(RectifyError) as info:
        call(rect, _rand(FRAMES, 4, 4, 4))
    assert info.value.field == field


def test_tensor_errors_name_the_problem():
    rect = Rectifier(ON, frames=FRAMES)
    clean = _rand(FRAMES, 4, 4, 4)
    with pytest.raises(RectifyError, match="multiple of L = 5"):
        rect.capture_pivot_denoiser(_rand(7, 4, 4, 4), clean=_rand(7, 4, 4, 4), sigma=1.0)
    with pytest.raises(RectifyError, match="clean shape"):
        rect.capture_pivot_denoiser(clean, clean=clean[:, :2], sigma=1.0)
    with pytest.raises(RectifyError, match="sigma"):
        rect.capture_pivot_denoiser(clean, clean=clean, sigma=0.0)
    with pytest.raises(RectifyError, match="sigma"):
        rect.capture_pivot_denoiser(clean, clean=clean, sigma=float("nan"))
    with pytest.raises(RectifyError, match="alpha_cumprod"):
        rect.capture_pivot_eps(clean, clean=clean, alpha_cumprod=1.0)
    rect.capture_pivot_denoiser(clean + 1, clean=clean, sigma=1.0)
    with pytest.raises(RectifyError, match="tensor shape"):
        rect.rectify_denoised(
            _rand(2 * FRAMES, 4, 4, 4),
            x=_rand(2 * FRAMES, 4, 4, 4),
            sigma=1.0,
            step=0,
            total_steps=2,
        )
    with pytest.raises(RectifyError, match="x shape"):
        rect.rectify_denoised(clean, x=clean[:1], sigma=1.0, step=0, total_steps=2)
    with pytest.raises(RectifyError, match="sigma"):
        rect.rectify_denoised(clean, x=clean, sigma=torch.ones(3), step=0, total_steps=2)
    with pytest.raises(RectifyError, match="reference_frame = 7"):
        Rectifier(RectifyParams(enabled=True, reference_frame=7), frames=FRAMES)
    with pytest.raises(RectifyError, match="layout"):
        Rectifier(ON, frames=FRAMES, layout="bcthw")
    with pytest.raises(RectifyError, match="frames"):
        Rectifier(ON, frames=0)


def test_value_checks_of_tensors_fail_at_finish_naming_the_field():
    """Values on the device are checked without reading them per call: at finish()."""
    clean = _rand(FRAMES, 4, 4, 4)
    rect = Rectifier(ON, frames=FRAMES)
    rect.capture_pivot_denoiser(clean * float("nan"), clean=clean, sigma=1.0)
    with pytest.raises(RectifyError, match=r"noisy latent.*NaN or inf"):
        rect.finish()
    assert rect.finish() == []  # reported once, nothing left behind

    for sigma, field in [
        (torch.tensor(0.0), "sigma"),
        (torch.full((FRAMES,), float("inf")), "sigma"),
        (torch.tensor(-1.0), "sigma"),
    ]:
        rect = Rectifier(ON, frames=FRAMES)
        rect.capture_pivot_denoiser(clean + 1, clean=clean, sigma=1.0)
        rect.rectify_denoised(clean, x=clean + 1, sigma=sigma, step=0, total_steps=2)
        with pytest.raises(RectifyError, match=rf"{field} = .*finite and > 0"):
            rect.finish()

    rect = Rectifier(ON, frames=FRAMES)
    rect.capture_pivot_eps(clean + 1, clean=clean, alpha_cumprod=torch.tensor(1.0))
    with pytest.raises(RectifyError, match=r"alpha_cumprod = .*in \(0, 1\)"):
        rect.finish()


def test_finish_reports_the_rectified_steps_host_and_device_alike():
    clean = _rand(FRAMES, 4, 4, 4)
    rect = Rectifier(RectifyParams(enabled=True, tau=(0.25, 0.75)), frames=FRAMES)
    rect.capture_pivot_denoiser(clean + 2, clean=clean, sigma=2.0)
    outside = rect.rectify_denoised(
        clean, x=clean + 2, sigma=2.0, step=torch.tensor(0), total_steps=4
    )
    assert torch.equal(outside, clean)  # outside the window: the input, bit for bit
    host = rect.rectify_denoised(clean, x=clean + 2, sigma=2.0, step=1, total_steps=4)
    device = rect.rectify_denoised(
        clean, x=clean + 2, sigma=2.0, step=torch.tensor(1), total_steps=4
    )
    assert torch.equal(host, device)
    assert not torch.equal(host, clean)
    rect.rectify_denoised(clean, x=clean + 2, sigma=2.0, step=torch.tensor(2), total_steps=4)
    rect.rectify_denoised(clean, x=clean + 2, sigma=2.0, step=3, total_steps=4)
    assert rect.finish() == [1, 2]


def test_device_mismatch_is_an_error():
    rect = Rectifier(ON, frames=FRAMES)
    clean = _rand(FRAMES, 4, 4, 4)
    rect.capture_pivot_denoiser(clean + 1, clean=clean, sigma=1.0)
    meta = torch.empty(clean.shape, device="meta")
    with pytest.raises(RectifyError, match="device"):
        rect.rectify_denoised(meta, x=meta, sigma=1.0, step=0, total_steps=2)
