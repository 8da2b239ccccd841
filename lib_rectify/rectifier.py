"""Per-job rectification: capture the pivot noise once, then rectify inside the window."""

from __future__ import annotations

import math
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
from .window import step_in_window, window_bounds

#: A step index: a whole number the host counted, or a 0-d tensor on the latents' device
#: (a step the host looked up there, e.g. with :class:`~lib_rectify.schedule.LevelSteps`).
Step = int | torch.Tensor
#: Whether a call is rectified: a bool, or a 0-d bool tensor for a step on the device.
InWindow = bool | torch.Tensor

#: ``"initial"``: the paper's pivot, the noise of the first model input (deterministic
#: samplers). ``"per_step"``: the pivot is re-read from the current input at every call,
#: ``n_t = (x_t − Z)/σ_t``, for samplers that inject fresh noise each step (ancestral,
#: SDE): with a fixed pivot that fresh noise is never corrected and piles up into the
#: result. Per step, the rectified clean estimate is ``Z + ω·(D − D[r])``: frames still
#: move by their predicted difference from the reference frame, but motion accumulated
#: in earlier steps is not kept, so it is an approximation of the paper for them.
PivotMode = Literal["initial", "per_step"]
PIVOT_MODES: tuple[str, ...] = ("initial", "per_step")

#: What a flow model's host passes and gets back: ``"velocity"`` ``v = n − x̂₀`` (diffusers'
#: FlowMatch and UniPC flow schedulers, Wan, SD3) or ``"denoised"`` ``x̂₀ = x − σ·v``
#: (ComfyUI's ``CONST`` sampling after ``calculate_denoised``).
FlowPrediction = Literal["velocity", "denoised"]
FLOW_PREDICTIONS: tuple[str, ...] = ("velocity", "denoised")


class Rectifier:
    """Rectification state for one job (one or several videos of ``frames`` frames).

    Holds one latent-sized float32 tensor (the pivot noise) between calls; everything
    else is temporary. Inputs keep their dtype and device; arithmetic is float32.
    Use one instance per job and drop it afterwards: nothing is global.

    Nothing here waits for the GPU: no call reads a tensor's value back to the host.
    Checks of values (a finite pivot, σ and ᾱ in range) are queued on the device and
    read once, in :meth:`finish`, which the host calls when sampling ends; a step can
    be a 0-d device tensor, and the window is then applied with ``torch.where``.

    Denoiser form (k-diffusion samplers, ``x_t = Z + σ_t·n``)::

        rect.capture_pivot_denoiser(x_T, clean=Z, sigma=sigma_T)
        denoised = rect.rectify_denoised(denoised, x=x_t, sigma=sigma_t, step=i, total_steps=N)

    ε form (DDIM/PLMS/UniPC, diffusers, ``x_t = √ᾱ·Z + √(1−ᾱ)·n``)::

        rect.capture_pivot_eps(x_T, clean=Z, alpha_cumprod=abar_first)
        eps = rect.rectify_eps(eps, step=i, total_steps=N, x=x_t, alpha_cumprod=abar_t,
                               alpha_cumprod_prev=abar_prev)

    Flow form (Wan, HunyuanVideo, LTX; ``x_t = (1−σ_t)·Z + σ_t·n``, docs/flow-matching.md)::

        rect.capture_pivot_flow(x_T, clean=Z, sigma=sigma_start)   # sigma_start < 1
        v = rect.rectify_flow(v, x=x_t, sigma=sigma_t, step=i, total_steps=N)
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
        # Checks queued on the device, read in finish(): (field, allowed) -> any bad value.
        self._deferred: dict[tuple[str, str, torch.device], torch.Tensor] = {}
        # The steps of the rectified calls, read in finish(): host ints and device tensors.
        self._steps: list[tuple[Step, InWindow]] = []

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

    def in_window(self, step: Step, total_steps: int) -> InWindow:
        """Whether ``step`` is rectified; a 0-d bool tensor when ``step`` is a tensor."""
        if not self.active:
            return False
        if isinstance(step, torch.Tensor):
            first, stop = window_bounds(total_steps, self.params.tau)
            if first >= stop:
                return False
            return (step >= first) & (step < stop)
        return step_in_window(step, total_steps, self.params.tau)

    def defer_check(self, field: str, allowed: str, bad: torch.Tensor) -> None:
        """Queue a check: ``bad`` (a bool tensor) true anywhere fails :meth:`finish`."""
        flag = bad.detach().reshape(-1).any()
        key = (field, allowed, flag.device)
        previous = self._deferred.get(key)
        self._deferred[key] = flag if previous is None else previous | flag

    def finish(self) -> list[int]:
        """End of sampling: read the queued checks and the steps (one transfer, at most).

        Raises :class:`RectifyError` naming the first check that failed; returns the
        steps that were rectified, in order.
        """
        checks = list(self._deferred)
        reads = list(self._deferred.values())
        for entry in self._steps:
            reads += [v for v in entry if isinstance(v, torch.Tensor)]
        values = iter(_read_at_once(reads))
        failed = [check for check in checks if next(values)]
        self._deferred.clear()
        steps: set[int] = set()
        for entry in self._steps:
            step, window = (next(values) if isinstance(v, torch.Tensor) else v for v in entry)
            if window:
                steps.add(int(step))
        self._steps.clear()
        if failed:
            field, allowed, _device = failed[0]
            raise RectifyError(field, "a value outside what is allowed", allowed)
        return sorted(steps)

    def release(self) -> None:
        """Drop the pivot and what was queued (end of job)."""
        self.pivot = None
        self._shape = None
        self._deferred.clear()
        self._steps.clear()

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

    def capture_pivot_flow(
        self, noisy: torch.Tensor, *, clean: torch.Tensor, sigma: PerFrame
    ) -> None:
        """Recover ``n = (x_T − (1−σ_T)·Z)/σ_T`` from a flow sampler's first model input.

        With σ_T = 1 the input is the noise alone and carries nothing of ``Z``: the
        rectification then cannot bring the picture back (docs/flow-matching.md). Hosts
        start flow sampling at ``params.sigma_start`` < 1 for that reason.
        """
        if not self.active:
            return
        noisy_rows, clean_rows = self._pair(noisy, clean)
        sigma_t = self._alpha(sigma, "sigma", noisy, allow_one=True)
        if self.pivot_mode == "per_step":
            self._store(clean_rows, noisy)
        else:
            self._store(noise_math.pivot_from_noisy_flow(noisy_rows, clean_rows, sigma_t), noisy)

    # ---------------------------------------------------------------- rectify
    def rectify_flow(
        self,
        output: torch.Tensor,
        *,
        x: torch.Tensor,
        sigma: PerFrame,
        step: Step,
        total_steps: int,
        prediction: FlowPrediction = "velocity",
    ) -> torch.Tensor:
        """Rectify a flow model's prediction (a velocity, or the denoised ``x̂₀``).

        Eq. 7-8 on the noise ``n̂ = (x − (1−σ)·x̂₀)/σ`` it implies, computed in its
        division-free clean form (:func:`~lib_rectify.noise_math.rectify_clean`) and
        returned as the same kind of prediction. At σ = 1 the prediction is returned
        unchanged: there ``Δ`` is 0 for the input the pivot came from, and the correction
        has no finite value otherwise. A flow sampler lands by itself: its last step goes
        to σ = 0, where the sample is the (rectified) ``x̂₀``.
        """
        if prediction not in FLOW_PREDICTIONS:
            raise RectifyError("prediction", prediction, f"one of {', '.join(FLOW_PREDICTIONS)}")
        window = self.in_window(step, total_steps)
        if window is False:
            return output
        pivot = self._require_pivot(output)
        self._check_same(x, output, "x")
        sigma_t = self._alpha(sigma, "sigma", output, allow_one=True)
        x_rows = to_frame_rows(x, self.layout, self.frames)
        out_rows = to_frame_rows(output, self.layout, self.frames)
        if prediction == "velocity":
            denoised = noise_math.denoised_from_velocity(x_rows, out_rows, sigma_t)
        else:
            denoised = out_rows
        open_ = 1 - sigma_t
        host_sigma = isinstance(sigma, (int, float)) and not isinstance(sigma, bool)
        if host_sigma and float(sigma) >= 1:  # a host number: decided here, nothing to read
            return self._applied(output, output, step, window)
        # A σ known only as a tensor may be 1: keep the prediction there (torch.where).
        keep = None if host_sigma else open_ > 0
        safe_open = open_ if keep is None else torch.where(keep, open_, torch.ones_like(open_))
        if self.pivot_mode == "per_step":
            implied = pivot  # n_t re-read from x_t implies Z itself
        else:
            implied = noise_math.implied_clean_flow(x_rows, pivot, safe_open)
        rectified = noise_math.rectify_clean(
            denoised, implied, self._omega_on(pivot), self.anchors, self.mix
        )
        if prediction == "velocity":
            rectified = noise_math.velocity_from_denoised(x_rows, rectified, sigma_t)
        if keep is not None:
            if keep.device != rectified.device:  # a 0-d CPU σ: asynchronous, nothing read
                keep = keep.to(rectified.device, non_blocking=True)
            rectified = torch.where(keep, rectified, out_rows)
        return self._applied(from_frame_rows(rectified, output, self.layout), output, step, window)

    def rectify_denoised(
        self,
        denoised: torch.Tensor,
        *,
        x: torch.Tensor,
        sigma: PerFrame,
        step: Step,
        total_steps: int,
    ) -> torch.Tensor:
        """Rectify a denoiser's output ``D``: ``n̂ = (x − D)/σ``, return ``x − σ·ñ``."""
        window = self.in_window(step, total_steps)
        if window is False:
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
        out = from_frame_rows(
            noise_math.denoised_from_noise(x_rows, rectified, sigma_t), denoised, self.layout
        )
        return self._applied(out, denoised, step, window)

    def rectify_eps(
        self,
        eps: torch.Tensor,
        *,
        step: Step,
        total_steps: int,
        x: torch.Tensor | None = None,
        alpha_cumprod: PerFrame | None = None,
        alpha_cumprod_prev: PerFrame | None = None,
    ) -> torch.Tensor:
        """Rectify a predicted ε; on a rectified last step, land on the clean estimate.

        Landing needs ``x``, ``alpha_cumprod`` and ``alpha_cumprod_prev`` (ᾱ of the
        step's target); it is skipped when the target is already clean (ᾱ_prev = 1).
        """
        window = self.in_window(step, total_steps)
        if window is False:
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
        last = step == total_steps - 1
        if (
            last is not False
            and x is not None
            and alpha_cumprod is not None
            and alpha_cumprod_prev is not None
        ):
            self._check_same(x, eps, "x")
            abar_t = self._alpha(alpha_cumprod, "alpha_cumprod", eps, allow_one=False)
            abar_prev = self._alpha(alpha_cumprod_prev, "alpha_cumprod_prev", eps, allow_one=True)
            noisy_target = abar_prev < 1  # a clean target (ᾱ_prev = 1) needs no landing
            self.defer_check(
                "alpha_cumprod_prev",
                "larger than alpha_cumprod (a step toward clean)",
                noisy_target & (abar_prev <= abar_t),
            )
            x_rows = to_frame_rows(x, self.layout, self.frames)
            landed = noise_math.landing_eps(rectified, x_rows, abar_t, abar_prev)
            land = noisy_target if last is True else noisy_target & last
            rectified = torch.where(land, landed, rectified)
        return self._applied(from_frame_rows(rectified, eps, self.layout), eps, step, window)

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
    def _applied(
        self, rectified: torch.Tensor, original: torch.Tensor, step: Step, window: InWindow
    ) -> torch.Tensor:
        """Log the call's step; outside a window known only on the device, keep ``original``."""
        self._steps.append((step, window))
        if isinstance(window, torch.Tensor):
            return torch.where(window, rectified, original)
        return rectified

    def _pair(self, noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_same(clean, noisy, "clean")
        return to_frame_rows(noisy, self.layout, self.frames), to_frame_rows(
            clean, self.layout, self.frames
        )

    def _store(self, pivot: torch.Tensor, like: torch.Tensor) -> None:
        self.defer_check(
            "noisy latent",
            "finite values, no NaN or inf (check the VAE / init image)",
            ~torch.isfinite(pivot),
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
        if self.omega.device != pivot.device:  # once a job; asynchronous from the host
            self.omega = self.omega.to(pivot.device, non_blocking=True)
            if self.mix is not None:
                self.mix = self.mix.to(pivot.device, non_blocking=True)
        return self.omega

    def _rectify(self, predicted: torch.Tensor, pivot: torch.Tensor) -> torch.Tensor:
        omega = self._omega_on(pivot)
        if len(self.anchors) == 1:  # the paper's formula, unchanged
            return noise_math.rectify_noise(predicted, pivot, omega, self.reference)
        return noise_math.rectify_noise_anchored(predicted, pivot, omega, self.anchors, self.mix)

    def _scalar(
        self, value: PerFrame, name: str, like: torch.Tensor, *, positive: bool
    ) -> torch.Tensor:
        """σ or ᾱ for the arithmetic. A number is checked here; a tensor's check is queued."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            if not math.isfinite(number) or (positive and number <= 0):
                raise RectifyError(name, number, "finite and > 0")
            # A 0-d CPU tensor is a scalar operand on any device: no copy to the GPU.
            return torch.tensor(number, dtype=torch.float32)
        videos = video_count(like.shape, self.layout, self.frames)
        tensor = per_frame(value, name, videos, self.frames, self.layout, like.device)
        bad = ~torch.isfinite(tensor)
        if positive:
            bad = bad | (tensor <= 0)
        self.defer_check(name, "finite and > 0", bad)
        return tensor

    def _alpha(
        self, value: PerFrame, name: str, like: torch.Tensor, *, allow_one: bool
    ) -> torch.Tensor:
        tensor = self._scalar(value, name, like, positive=True)
        allowed = "in (0, 1]" if allow_one else "in (0, 1)"
        if tensor.ndim == 0 and tensor.device.type == "cpu" and not isinstance(value, torch.Tensor):
            number = float(value)  # a host number: checked now
            if number > 1 or (number == 1 and not allow_one):
                raise RectifyError(name, number, allowed)
            return tensor
        too_big = (tensor > 1) if allow_one else (tensor >= 1)
        self.defer_check(name, allowed, too_big)
        return tensor


def _read_at_once(tensors: list[torch.Tensor]) -> list[int]:
    """The values of 0-d tensors, in one device-to-host transfer per device (CPU ones free)."""
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    values = [0] * len(tensors)
    for indices in by_device.values():
        read = torch.stack([tensors[i].reshape(()).to(torch.long) for i in indices]).tolist()
        for i, v in zip(indices, read, strict=True):
            values[i] = v
    return values
