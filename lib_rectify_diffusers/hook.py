"""The hook on a pipeline's scheduler: where diffusers meets the core.

Every diffusers video pipeline runs the same loop (AnimateDiffPipeline.__call__,
AnimateDiffSDXLPipeline.__call__, TextToVideoSDPipeline.__call__ in 0.42.1)::

    scheduler.set_timesteps(N); timesteps = scheduler.timesteps
    latents = latents * scheduler.init_noise_sigma
    for t in timesteps:
        noise_pred = unet(scale_model_input(latents), t)   # CFG-combined, maybe rescaled
        latents = scheduler.step(noise_pred, t, latents, **extra_step_kwargs)[0]

``scheduler.step`` is the one place that sees the final (guided) prediction, the
sample and the timestep together, so the hook wraps it for one pipeline call. The
pipeline is never modified; the scheduler instance gets two attributes that are
removed afterwards. TextToVideoSDPipeline passes frames folded into the batch
(``[B·L, C, h, w]``, frame-major per video, the core's ``"frames"`` layout); the
AnimateDiff pipelines pass ``[B, C, L, h, w]`` (``"video"``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from einops import rearrange

from lib_rectify import Rectifier, RectifyError, RectifyParams

from . import schedulers as sch

log = logging.getLogger("lib_rectify_diffusers")


class SchedulerHook:
    """State of one rectified pipeline call (one instance per call; nothing global)."""

    def __init__(
        self,
        scheduler: Any,
        params: RectifyParams,
        *,
        clean: torch.Tensor,
        start_index: int = 0,
        anchors: tuple[int, ...] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.facts = sch.facts_for(scheduler)
        self.params = params
        self.clean = clean  # Z repeated over the frames, [B, C, L, h, w]
        self.frames = clean.shape[2]
        self.start_index = start_index  # schedule position of the first step (strength < 1)
        self.anchors = anchors  # (reference, other end) with an end picture
        self.timesteps: list[float] = []  # the steps the pipeline will run
        self.full_timesteps: torch.Tensor | None = None
        self.calls = 0
        self.rectified: list[int] = []
        self.landed = False
        self.pivot_reason = ""
        self.rectifier: Rectifier | None = None

    # --------------------------------------------------------- set_timesteps
    def after_set_timesteps(self) -> None:
        """Record the schedule; with strength < 1 show the pipeline only its tail.

        The pipeline reads ``scheduler.timesteps`` right after ``set_timesteps``; the
        scheduler itself needs the whole table back for its own indexing, which the
        first ``step`` restores. ``set_begin_index`` is what diffusers' img2img
        pipelines use for the same purpose.
        """
        s = self.scheduler
        self.full_timesteps = s.timesteps
        if self.start_index:
            if self.start_index >= len(s.timesteps):
                raise RectifyError(
                    "strength", None, "at least one step left after skipping the first ones"
                )
            s.timesteps = s.timesteps[self.start_index :]
            if hasattr(s, "set_begin_index"):
                s.set_begin_index(self.start_index)
        self.timesteps = [float(t) for t in s.timesteps]
        self.calls = 0

    # ------------------------------------------------------------------ step
    def step(self, original: Any, model_output: torch.Tensor, timestep: Any, sample: Any, *a, **k):
        s = self.scheduler
        if self.full_timesteps is not None and s.timesteps is not self.full_timesteps:
            s.timesteps = self.full_timesteps
        i = self.calls
        total = len(self.timesteps)
        if (
            i >= total
            or abs(float(torch.as_tensor(timestep).reshape(-1)[0]) - self.timesteps[i]) > 1e-3
        ):
            raise RectifyError(
                "scheduler step",
                f"call {i + 1} at timestep {float(torch.as_tensor(timestep).reshape(-1)[0]):g}",
                f"one call per timestep of {self.timesteps} in order "
                "(FreeInit, FreeNoise and custom loops are not supported)",
            )
        self.calls += 1
        if not self.params.active:
            return original(model_output, timestep, sample, *a, **k)
        if float(k.get("s_churn", 0.0) or 0.0) > 0:
            raise RectifyError("s_churn", k["s_churn"], "0 (churn is not supported)")
        index = self.start_index + i
        abar = sch.alpha_cumprod(s, self.facts, index, timestep, sample.device)
        x = sch.to_vp(sample, self.facts, abar)
        layout = "video" if sample.ndim == 5 else "frames"
        if self.rectifier is None:
            self.pivot_reason = sch.fresh_noise_reason(s, self.facts, k)
            if self.pivot_reason:
                log.info("noise rectification: per-step pivot (%s)", self.pivot_reason)
            self.rectifier = Rectifier(
                self.params,
                anchors=self.anchors,
                frames=self.frames,
                layout=layout,
                pivot="per_step" if self.pivot_reason else "initial",
            )
            clean = self.clean.to(device=sample.device, dtype=torch.float32)
            if layout == "frames":
                clean = rearrange(clean, "b c l h w -> (b l) c h w")
            if tuple(clean.shape) != tuple(sample.shape):
                raise RectifyError(
                    "latents shape",
                    tuple(sample.shape),
                    f"the reference latent repeated over the frames, {tuple(clean.shape)}",
                )
            self.rectifier.capture_pivot_eps(x, clean=clean, alpha_cumprod=abar)
        rect = self.rectifier
        if not rect.in_window(i, total):
            return original(model_output, timestep, sample, *a, **k)
        prediction = s.config.get("prediction_type", "epsilon")
        eps = sch.output_to_eps(model_output, x, abar, prediction)
        eps = rect.rectify_eps(eps, step=i, total_steps=total, x=x, alpha_cumprod=abar)
        self.rectified.append(i)
        out = original(sch.eps_to_output(eps, x, abar, prediction), timestep, sample, *a, **k)
        if i == total - 1 and sch.ends_short_of_clean(s, self.facts):
            # Land: the scheduler would keep some of each frame's own noise.
            clean_x = rect.clean_estimate_eps(eps, x=x, alpha_cumprod=abar)
            landed = clean_x.to(dtype=sample.dtype)
            if isinstance(out, tuple):
                out = (landed, *out[1:])
            else:
                out.prev_sample = landed
            self.landed = True
        return out

    def finish(self) -> None:
        """After the pipeline returns: every step must have passed through the hook."""
        if self.rectifier is not None:
            self.rectifier.release()
        if self.params.active and self.calls != len(self.timesteps):
            raise RectifyError(
                "scheduler steps seen",
                self.calls,
                f"{len(self.timesteps)} (the pipeline did not call scheduler.step once per timestep)",
            )


@contextmanager
def hooked_scheduler(hook: SchedulerHook) -> Iterator[SchedulerHook]:
    """Wrap ``set_timesteps`` and ``step`` of the hook's scheduler instance for one call."""
    s = hook.scheduler
    saved = {name: s.__dict__[name] for name in ("step", "set_timesteps") if name in s.__dict__}
    original_step, original_set = s.step, s.set_timesteps

    # functools.wraps keeps the signatures: pipelines pass `eta` and `generator` only
    # when inspect.signature(scheduler.step) lists them (prepare_extra_step_kwargs).
    @functools.wraps(original_set)
    def set_timesteps(*a: Any, **k: Any) -> Any:
        result = original_set(*a, **k)
        hook.after_set_timesteps()
        return result

    @functools.wraps(original_step)
    def step(model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *a: Any, **k: Any):
        return hook.step(original_step, model_output, timestep, sample, *a, **k)

    s.set_timesteps, s.step = set_timesteps, step
    try:
        yield hook
    finally:
        for name in ("step", "set_timesteps"):
            if name in saved:
                setattr(s, name, saved[name])
            else:
                s.__dict__.pop(name, None)
        if hook.full_timesteps is not None:
            s.timesteps = hook.full_timesteps
