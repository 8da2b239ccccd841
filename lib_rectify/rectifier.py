"""Per-job rectification: capture the pivot noise once, then rectify inside the window."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from . import noise_math
from .anchors import anchor_mix
from .errors import RectifyError
from .layout import (
    Layout,
    PerFrame,
    check_layout,
    from_frame_rows,
    per_frame,
    to_frame_rows,
    video_count,
)
from .params import RectifyParams
from .weights import omega_weights, resolve_reference_frame
from .window import step_in_window

#: ``"initial"``: the paper's pivot, the noise of the first model input (deterministic
#: samplers). ``"per_step"``: the pivot is re-read from the current input at every call,
#: ``n_t = (x_t − Z)/σ_t``, for samplers that inject fresh noise each step (ancestral,
#: SDE): with a fixed pivot that fresh noise is never corrected and piles up into the
#: result. Per step, the rectified clean estimate is ``Z + ω·(D − D[r])``: frames still
#: move by their predicted difference from the reference frame, but motion accumulated
#: in earlier steps is not kept, so it is an approximation of the paper for them.
PivotMode = Literal["initial", "per_step"]
PIVOT_MODES: tuple[str, ...] = ("initial", "per_step")


class Rectifier:
    """Rectification state for one job (one or several videos of ``frames`` frames).

    Holds one latent-sized float32 tensor (the pivot noise) between calls; everything
    else is temporary. Inputs keep their dtype and device; arithmetic is float32.
    Use one instance per job and drop it afterwards: nothing is global.

    Denoiser form (k-diffusion samplers, ``x_t = Z + σ_t·n``)::

        rect.capture_pivot_denoiser(x_T, clean=Z, sigma=sigma_T)
        denoised = rect.rectify_denoised(denoised, x=x_t, sigma=sigma_t, step=i, total_steps=N)

    ε form (DDIM/PLMS/UniPC, diffusers, ``x_t = √ᾱ·Z + √(1−ᾱ)·n``)::

        rect.capture_pivot_eps(x_T, clean=Z, alpha_cumprod=abar_first)
        eps = rect.rectify_eps(eps, step=i, total_steps=N, x=x_t, alpha_cumprod=abar_t,
                               alpha_cumprod_prev=abar_prev)
    """

    def __init__(
        self,
        params: RectifyParams,
        *,
        frames: int,
        layout: Layout = "frames",
        pivot: PivotMode = "initial",
        anchors: Sequence[int] | None = None,
    ) -> None:
        check_layout(layout)
        if pivot not in PIVOT_MODES:
            raise RectifyError("pivot", pivot, f"one of {', '.join(PIVOT_MODES)}")
        self.pivot_mode: PivotMode = pivot
        if isinstance(frames, bool) or not isinstance(frames, int):
            raise RectifyError("frames", frames, "a whole number of frames ≥ 1")
        self.params = params
        self.frames = frames
        self.layout: Layout = layout
        self.reference = resolve_reference_frame(params.reference_frame, frames)
        # Anchor frames (docs/two-anchors.md): the reference, and optionally an end frame
        # whose picture the host put into the clean latent it passes at capture.
        self.anchors = self._resolve_anchors(anchors, frames)
        self.mix = anchor_mix(self.anchors, frames) if len(self.anchors) > 1 else None
        self.omega = omega_weights(params.omega, frames, params.reference_frame, self.anchors)
        # The pivot noise n ("initial"), or the clean latent Z it is re-read against ("per_step").
        self.pivot: torch.Tensor | None = None
        self._shape: torch.Size | None = None

    def _resolve_anchors(self, anchors: Sequence[int] | None, frames: int) -> tuple[int, ...]:
        if anchors is None:
            return (self.reference,)
        if isinstance(anchors, (str, bytes)) or not isinstance(anchors, Sequence):
            raise RectifyError("anchors", anchors, "a list of frame indices")
        resolved = tuple(resolve_reference_frame(a, frames) for a in anchors)
        if not resolved or resolved[0] != self.reference:
            raise RectifyError(
                "anchors", list(anchors), f"the reference frame {self.reference} first"
            )
        if len(resolved) > 2 or len(set(resolved)) != len(resolved):
            raise RectifyError(
                "anchors", list(anchors), "the reference frame and at most one other frame"
            )
        return resolved

    @property
    def active(self) -> bool:
        """False when nothing would change (disabled or empty window)."""
        return self.params.active

    @property
    def has_pivot(self) -> bool:
        return self.pivot is not None

    def in_window(self, step: int, total_steps: int) -> bool:
        return self.active and step_in_window(step, total_steps, self.params.tau)

    def release(self) -> None:
        """Drop the pivot (end of job)."""
        self.pivot = None
        self._shape = None

    # ---------------------------------------------------------------- capture
    def capture_pivot_denoiser(
        self, noisy: torch.Tensor, *, clean: torch.Tensor, sigma: PerFrame
    ) -> None:
        """Recover ``n = (x_T − Z)/σ_T`` from the sampler's first model input."""
        if not self.active:
            return
        noisy_rows, clean_rows = self._pair(noisy, clean)
        sigma_t = self._scalar(sigma, "sigma", noisy, positive=True)
        if self.pivot_mode == "per_step":
            self._store(clean_rows, noisy)
        else:
            self._store(
                noise_math.pivot_from_noisy_denoiser(noisy_rows, clean_rows, sigma_t), noisy
            )

    def capture_pivot_eps(
        self, noisy: torch.Tensor, *, clean: torch.Tensor, alpha_cumprod: PerFrame
    ) -> None:
        """Recover ``n = (x_t − √ᾱ·Z)/√(1−ᾱ)`` with ᾱ of the sampler's first timestep."""
        if not self.active:
            return
        noisy_rows, clean_rows = self._pair(noisy, clean)
        abar = self._alpha(alpha_cumprod, "alpha_cumprod", noisy, allow_one=False)
        if self.pivot_mode == "per_step":
            self._store(clean_rows, noisy)
        else:
            self._store(noise_math.pivot_from_noisy_eps(noisy_rows, clean_rows, abar), noisy)

    # ---------------------------------------------------------------- rectify
    def rectify_denoised(
        self,
        denoised: torch.Tensor,
        *,
        x: torch.Tensor,
        sigma: PerFrame,
        step: int,
        total_steps: int,
    ) -> torch.Tensor:
        """Rectify a denoiser's output ``D``: ``n̂ = (x − D)/σ``, return ``x − σ·ñ``."""
        if not self.in_window(step, total_steps):
            return denoised
        pivot = self._require_pivot(denoised)
        self._check_same(x, denoised, "x")
        sigma_t = self._scalar(sigma, "sigma", denoised, positive=True)
        x_rows = to_frame_rows(x, self.layout, self.frames)
        if self.pivot_mode == "per_step":
            pivot = noise_math.pivot_from_noisy_denoiser(x_rows, pivot, sigma_t)
        predicted = noise_math.noise_from_denoised(
            x_rows, to_frame_rows(denoised, self.layout, self.frames), sigma_t
        )
        rectified = self._rectify(predicted, pivot)
        return from_frame_rows(
            noise_math.denoised_from_noise(x_rows, rectified, sigma_t), denoised, self.layout
        )

    def rectify_eps(
        self,
        eps: torch.Tensor,
        *,
        step: int,
        total_steps: int,
        x: torch.Tensor | None = None,
        alpha_cumprod: PerFrame | None = None,
        alpha_cumprod_prev: PerFrame | None = None,
    ) -> torch.Tensor:
        """Rectify a predicted ε; on a rectified last step, land on the clean estimate.

        Landing needs ``x``, ``alpha_cumprod`` and ``alpha_cumprod_prev`` (ᾱ of the
        step's target); it is skipped when the target is already clean (ᾱ_prev = 1).
        """
        if not self.in_window(step, total_steps):
            return eps
        pivot = self._require_pivot(eps)
        if self.pivot_mode == "per_step":
            if x is None or alpha_cumprod is None:
                raise RectifyError(
                    "x", None, "pivot 'per_step' needs x and alpha_cumprod at every call"
                )
            self._check_same(x, eps, "x")
            abar_now = self._alpha(alpha_cumprod, "alpha_cumprod", eps, allow_one=False)
            pivot = noise_math.pivot_from_noisy_eps(
                to_frame_rows(x, self.layout, self.frames), pivot, abar_now
            )
        rectified = self._rectify(to_frame_rows(eps, self.layout, self.frames), pivot)
        if (
            step == total_steps - 1
            and x is not None
            and alpha_cumprod is not None
            and alpha_cumprod_prev is not None
        ):
            self._check_same(x, eps, "x")
            abar_t = self._alpha(alpha_cumprod, "alpha_cumprod", eps, allow_one=False)
            abar_prev = self._alpha(alpha_cumprod_prev, "alpha_cumprod_prev", eps, allow_one=True)
            if bool((abar_prev < 1).any()):
                if bool((abar_prev <= abar_t).any()):
                    raise RectifyError(
                        "alpha_cumprod_prev",
                        float(abar_prev.min()),
                        "must be larger than alpha_cumprod (a step toward clean)",
                    )
                x_rows = to_frame_rows(x, self.layout, self.frames)
                rectified = noise_math.landing_eps(rectified, x_rows, abar_t, abar_prev)
        return from_frame_rows(rectified, eps, self.layout)

    def clean_estimate_eps(
        self, eps: torch.Tensor, *, x: torch.Tensor, alpha_cumprod: PerFrame
    ) -> torch.Tensor:
        """``x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ`` of a (rectified) ε, in the input's dtype and layout.

        Where a host can replace a sampler's final sample, this is the landing for samplers
        that stop short of clean (the WebUI's DDIM ends at timestep 1): the result then
        keeps none of each frame's own pivot noise. Hosts that can only change ε use the
        ``alpha_cumprod_prev`` landing of :meth:`rectify_eps` instead; both land on this.
        """
        self._check_same(x, eps, "x")
        abar = self._alpha(alpha_cumprod, "alpha_cumprod", eps, allow_one=False)
        clean = noise_math.clean_from_eps(
            to_frame_rows(x, self.layout, self.frames),
            to_frame_rows(eps, self.layout, self.frames),
            abar,
        )
        return from_frame_rows(clean, eps, self.layout)

    # ---------------------------------------------------------------- helpers
    def _pair(self, noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_same(clean, noisy, "clean")
        return to_frame_rows(noisy, self.layout, self.frames), to_frame_rows(
            clean, self.layout, self.frames
        )

    def _store(self, pivot: torch.Tensor, like: torch.Tensor) -> None:
        if not bool(torch.isfinite(pivot).all()):
            raise RectifyError(
                "noisy latent", "contains NaN or inf", "finite values (check the VAE / init image)"
            )
        self.pivot = pivot
        self._shape = like.shape

    def _require_pivot(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.pivot is None:
            raise RectifyError(
                "pivot",
                None,
                "capture the pivot noise from the first model input before rectifying",
            )
        if tensor.shape != self._shape:
            raise RectifyError(
                "tensor shape",
                tuple(tensor.shape),
                f"the shape the pivot was captured with, {tuple(self._shape)}",
            )
        if tensor.device != self.pivot.device:
            raise RectifyError(
                "tensor device", str(tensor.device), f"the pivot's device, {self.pivot.device}"
            )
        return self.pivot

    def _check_same(self, tensor: torch.Tensor, like: torch.Tensor, name: str) -> None:
        if not isinstance(tensor, torch.Tensor):
            raise RectifyError(name, type(tensor).__name__, "a torch.Tensor")
        if tensor.shape != like.shape:
            raise RectifyError(
                f"{name} shape",
                tuple(tensor.shape),
                f"the same shape as the latent, {tuple(like.shape)}",
            )
        if tensor.device != like.device:
            raise RectifyError(
                f"{name} device", str(tensor.device), f"the latent's device, {like.device}"
            )

    def _omega_on(self, pivot: torch.Tensor) -> torch.Tensor:
        if self.omega.device != pivot.device:
            self.omega = self.omega.to(pivot.device)
            if self.mix is not None:
                self.mix = self.mix.to(pivot.device)
        return self.omega

    def _rectify(self, predicted: torch.Tensor, pivot: torch.Tensor) -> torch.Tensor:
        omega = self._omega_on(pivot)
        if len(self.anchors) == 1:  # the paper's formula, unchanged
            return noise_math.rectify_noise(predicted, pivot, omega, self.reference)
        return noise_math.rectify_noise_anchored(predicted, pivot, omega, self.anchors, self.mix)

    def _scalar(
        self, value: PerFrame, name: str, like: torch.Tensor, *, positive: bool
    ) -> torch.Tensor:
        videos = video_count(like.shape, self.layout, self.frames)
        tensor = per_frame(value, name, videos, self.frames, self.layout, like.device)
        if not bool(torch.isfinite(tensor).all()) or (positive and not bool((tensor > 0).all())):
            raise RectifyError(name, _first(value), "finite and > 0")
        return tensor

    def _alpha(
        self, value: PerFrame, name: str, like: torch.Tensor, *, allow_one: bool
    ) -> torch.Tensor:
        tensor = self._scalar(value, name, like, positive=True)
        too_big = (tensor > 1) if allow_one else (tensor >= 1)
        if bool(too_big.any()):
            raise RectifyError(name, _first(value), "in (0, 1]" if allow_one else "in (0, 1)")
        return tensor


def _first(value: PerFrame) -> float:
    return float(torch.as_tensor(value).flatten()[0])
