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
