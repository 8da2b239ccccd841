"""The paper's equations on frame rows ``[B, L, D]`` in float32.

Symbols (paper Sec. 4.2): ``n`` pivot noise (``pivot``), ``n̂`` predicted noise
(``predicted``), ``Δ = n − n̂`` the gap (Eq. 7), ``ω`` per-frame weights (``omega``,
shape ``[L]``), ``r`` the reference frame (``reference``), ``ñ`` the rectified noise
(Eq. 8). ``Z`` is the clean reference latent repeated over the frames.
"""

from __future__ import annotations

import torch


def rectify_noise(
    predicted: torch.Tensor, pivot: torch.Tensor, omega: torch.Tensor, reference: int
) -> torch.Tensor:
    """Eq. 8: ``ñ = n̂ + ω·Δ[r] + (1−ω)·Δ``, computed as ``n + ω·(Δ[r] − Δ)``.

    The rewritten form is algebraically the same and needs one latent-sized
    temporary fewer. ω = 0 returns the pivot; the reference frame always gets it.
    """
    gap = pivot - predicted
    correction = gap[:, reference : reference + 1] - gap
    return torch.addcmul(pivot, omega.view(1, -1, 1), correction)


def rectify_noise_anchored(
    predicted: torch.Tensor,
    pivot: torch.Tensor,
    omega: torch.Tensor,
    anchors: tuple[int, ...],
    mix: torch.Tensor,
) -> torch.Tensor:
    """Several anchors (docs/two-anchors.md): ``ñ = n + ω·(Σ_a m_a·Δ[r_a] − Δ)``.

    ``mix`` is ``[L, A]`` with rows summing to 1 and 1 at each anchor's own frame, so
    every anchor frame gets exactly its pivot. One anchor is :func:`rectify_noise`.
    """
    if len(anchors) == 1:
        return rectify_noise(predicted, pivot, omega, anchors[0])
    gap = pivot - predicted
    mixed = sum(mix[:, a].view(1, -1, 1) * gap[:, r : r + 1] for a, r in enumerate(anchors))
    return torch.addcmul(pivot, omega.view(1, -1, 1), mixed - gap)


def noise_from_denoised(
    x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """Denoiser form ``x = D + σ·n̂``: the noise a denoised prediction implies."""
    return (x - denoised) / sigma


def denoised_from_noise(x: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return x - sigma * noise


def pivot_from_noisy_denoiser(
    noisy: torch.Tensor, clean: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``n = (x_T − Z)/σ_T``: the noise the host really added, whatever made it."""
    return (noisy - clean) / sigma


def pivot_from_noisy_eps(
    noisy: torch.Tensor, clean: torch.Tensor, alpha_cumprod: torch.Tensor
) -> torch.Tensor:
    """``n = (x_t − √ᾱ·Z)/√(1−ᾱ)`` for the ε (VP) form."""
    return (noisy - alpha_cumprod.sqrt() * clean) / (1 - alpha_cumprod).sqrt()


def clean_from_eps(x: torch.Tensor, eps: torch.Tensor, alpha_cumprod: torch.Tensor) -> torch.Tensor:
    """``x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ``: the clean latent an ε prediction implies."""
    return (x - (1 - alpha_cumprod).sqrt() * eps) / alpha_cumprod.sqrt()


def landing_eps(
    eps: torch.Tensor,
    x: torch.Tensor,
    alpha_cumprod: torch.Tensor,
    alpha_cumprod_prev: torch.Tensor,
) -> torch.Tensor:
    """The ε that makes a DDIM update from ``x`` (at ᾱ_t) return exactly its clean estimate.

    Samplers whose last step stops at ᾱ_prev < 1 (the WebUI's DDIM ends at timestep
    1) otherwise keep √(1−ᾱ_prev) of each frame's own pivot noise: per-frame grain.
    With ``x̂₀ = (x − √(1−ᾱ_t)·ε)/√ᾱ_t`` and ``k = √(ᾱ_prev/ᾱ_t)``:
    ``ε′ = (x̂₀ − k·x) / (√(1−ᾱ_prev) − k·√(1−ᾱ_t))``.
    """
    x0 = clean_from_eps(x, eps, alpha_cumprod)
    k = (alpha_cumprod_prev / alpha_cumprod).sqrt()
    denominator = (1 - alpha_cumprod_prev).sqrt() - k * (1 - alpha_cumprod).sqrt()
    return (x0 - k * x) / denominator


# ------------------------------------------------------------------ flow matching
# Flow models (Wan, HunyuanVideo, LTX, SD3 ...) sample ``x = (1−σ)·Z + σ·n`` with σ in
# [0, 1] and predict a velocity ``v = n − x̂₀`` (so ``x̂₀ = x − σ·v``). The algebra and the
# singular points are in docs/flow-matching.md.


def pivot_from_noisy_flow(
    noisy: torch.Tensor, clean: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``n = (x − (1−σ)·Z)/σ``: the noise in a flow model's input (σ > 0)."""
    return (noisy - (1 - sigma) * clean) / sigma


def implied_clean_flow(x: torch.Tensor, pivot: torch.Tensor, open_: torch.Tensor) -> torch.Tensor:
    """``Ẑ = (x − σ·n)/(1−σ)``: the clean latent the pivot implies at ``x``.

    ``open_`` is ``1 − σ``, already made safe (> 0) by the caller; at σ = 1 it is
    undefined, and the caller keeps the model's prediction there.
    """
    return (x - (1 - open_) * pivot) / open_


def denoised_from_velocity(
    x: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``x̂₀ = x − σ·v``: the clean latent a flow model's velocity implies."""
    return x - sigma * velocity


def velocity_from_denoised(
    x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``v = (x − x̂₀)/σ``, the inverse of :func:`denoised_from_velocity` (σ > 0)."""
    return (x - denoised) / sigma


def rectify_clean(
    denoised: torch.Tensor,
    implied: torch.Tensor,
    omega: torch.Tensor,
    anchors: tuple[int, ...],
    mix: torch.Tensor | None,
) -> torch.Tensor:
    """Eq. 7-8 in clean-latent terms: ``D̃ = Ẑ + ω·(G − Σ_a m_a·G[r_a])`` with ``G = D − Ẑ``.

    In any sampler form where ``x = a·Z + b·n``, the denoised prediction and the noise it
    implies are tied by ``D − Ẑ = κ·(n − n̂)`` with ``κ = b/a`` (σ for the denoiser form,
    σ/(1−σ) for flow), so Eq. 8 on ``n̂`` is exactly this on ``D`` — with no division by
    σ, which matters as σ → 0. It is :func:`rectify_noise_anchored` with ``D`` in the
    place of ``n̂`` and ``Ẑ`` in the place of ``n``.
    """
    if len(anchors) == 1:
        return rectify_noise(denoised, implied, omega, anchors[0])
    return rectify_noise_anchored(denoised, implied, omega, anchors, mix)
