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
AnimateDiff pipelines pass ``[B, C, L, h, w]`` (``"video"``). The transformer pipelines
(``models.py``) loop the same way; where ``step`` sees another layout (LTX's packed tokens,
CogVideoX's frames-first latents) a :class:`~lib_rectify_diffusers.models.LatentView`
turns the sample and the prediction into ``[B, C, L, h, w]`` and the result back.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from einops import rearrange

from lib_rectify import Rectifier, RectifyError, RectifyParams

from . import schedulers as sch
from .models import LatentView

log = logging.getLogger("lib_rectify_diffusers")


class SchedulerHook:
    """State of one rectified pipeline call (one instance per call; nothing global).

    Nothing here waits for the GPU per step: the schedule's tables (timesteps, ᾱ of every
    step) stay where the scheduler keeps them and are indexed by a counted step; value
    checks are queued on the device and read once, in :meth:`finish`.
    """

    def __init__(
        self,
        scheduler: Any,
        params: RectifyParams,
        *,
        clean: torch.Tensor,
        start_index: int = 0,
        anchors: tuple[int, ...] | None = None,
        view: LatentView | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.facts = sch.facts_for(scheduler)
        self.view = view  # step's layout <-> [B, C, L, h, w]; None: step sees that already
        self.sign = sch.flow_sign(scheduler) if self.facts.space == "flow" else 1.0
        self.params = params
        self.clean = clean  # Z repeated over the frames, [B, C, L, h, w]
        self.frames = clean.shape[2]
        self.start_index = start_index  # schedule position of the first step (strength < 1)
        self.anchors = anchors  # (reference, other end) with an end picture
        self.timesteps: torch.Tensor | None = None  # the steps the pipeline will run
        self.total = 0
        self.full_timesteps: torch.Tensor | None = None
        self.step_alphas: torch.Tensor | None = None  # ᾱ of each of those steps
        self.ends_short = False
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
        if self.facts.space == "flow" and self.params.active:
            # Flow schedules start at σ = 1, where nothing of the picture is left
            # (docs/flow-matching.md): start at σ_start, over the same steps.
            sch.rescale_flow_schedule(s, self.params.sigma_start)
        self.full_timesteps = s.timesteps
        if self.start_index:
            if self.start_index >= len(s.timesteps):
                raise RectifyError(
                    "strength", None, "at least one step left after skipping the first ones"
                )
            s.timesteps = s.timesteps[self.start_index :]
            if hasattr(s, "set_begin_index"):
                s.set_begin_index(self.start_index)
        self.timesteps = torch.as_tensor(s.timesteps).detach().to(torch.float32)
        self.total = int(self.timesteps.shape[0])
        self.calls = 0
        if self.params.active and self.facts.space == "flow":
            self.step_alphas = sch.step_sigmas(
                s, self.start_index, self.total, self.timesteps.device
            )
            self.ends_short = sch.ends_short_of_clean(s, self.facts)
        elif self.params.active:
            self.step_alphas = sch.step_alphas(s, self.facts, self.start_index, self.timesteps)
            self.ends_short = sch.ends_short_of_clean(s, self.facts)

    # ------------------------------------------------------------------ step
    def step(self, original: Any, model_output: torch.Tensor, timestep: Any, sample: Any, *a, **k):
        s = self.scheduler
        if self.full_timesteps is not None and s.timesteps is not self.full_timesteps:
            s.timesteps = self.full_timesteps
        i = self.calls
        total = self.total
        if i >= total:  # FreeInit's second pass, or a loop that runs past the schedule
            raise self._order_error(i, timestep)
        self.calls += 1
        if not self.params.active:
            return original(model_output, timestep, sample, *a, **k)
        if float(k.get("s_churn", 0.0) or 0.0) > 0:
            raise RectifyError("s_churn", k["s_churn"], "0 (churn is not supported)")
        if self.step_alphas.device != sample.device:  # once: the tables go where the latents are
            self.step_alphas = self.step_alphas.to(sample.device, non_blocking=True)
            self.timesteps = self.timesteps.to(sample.device, non_blocking=True)
        view = self.view  # the core works on [B, C, L, h, w] (or the frames layout)
        x_in = sample if view is None else view.to_video(sample)
        output = model_output if view is None else view.to_video(model_output)
        if self.facts.space == "flow":
            return self._flow_step(original, model_output, output, timestep, sample, x_in, i, a, k)
        abar = self.step_alphas[i]
        x = sch.to_vp(x_in, self.facts, abar)
        layout = "video" if x_in.ndim == 5 else "frames"
        if self.rectifier is None:
            self._start(s, x_in, x, abar, layout, k)
        rect = self.rectifier
        self._check_timestep(rect, timestep, sample, i)
        if not rect.in_window(i, total):
            return original(model_output, timestep, sample, *a, **k)
        prediction = s.config.get("prediction_type", "epsilon")
        eps = sch.output_to_eps(output, x, abar, prediction)
        eps = rect.rectify_eps(eps, step=i, total_steps=total, x=x, alpha_cumprod=abar)
        rectified = self._back(sch.eps_to_output(eps, x, abar, prediction))
        out = original(rectified, timestep, sample, *a, **k)
        if i == total - 1 and self.ends_short:
            # Land: the scheduler would keep some of each frame's own noise.
            clean_x = rect.clean_estimate_eps(eps, x=x, alpha_cumprod=abar)
            out = self._land(out, self._back(clean_x.to(dtype=sample.dtype)))
        return out

    def _flow_step(self, original, model_output, output, timestep, sample, x_in, i, a, k):
        """A flow scheduler's step: ``step_alphas`` holds σ; the model output is a velocity
        (``output``, ``x_in``: the prediction and the sample as ``[B, C, L, h, w]``), or minus
        one for an ``invert_sigmas`` table (Mochi)."""
        sigma = self.step_alphas[i]
        layout = "video" if x_in.ndim == 5 else "frames"
        if self.rectifier is None:
            self.rectifier = Rectifier(
                self.params, anchors=self.anchors, frames=self.frames, layout=layout
            )
            clean = self._clean_like(x_in, layout)
            self.rectifier.capture_pivot_flow(x_in, clean=clean, sigma=sigma)
        rect = self.rectifier
        self._check_timestep(rect, timestep, sample, i)
        if not rect.in_window(i, self.total):
            return original(model_output, timestep, sample, *a, **k)
        v = output if self.sign > 0 else -output
        v = rect.rectify_flow(v, x=x_in, sigma=sigma, step=i, total_steps=self.total)
        out = original(self._back(v if self.sign > 0 else -v), timestep, sample, *a, **k)
        if i == self.total - 1 and self.ends_short:  # land on the rectified clean estimate
            out = self._land(out, self._back((x_in.float() - sigma * v.float()).to(sample.dtype)))
        return out

    def _back(self, tensor: torch.Tensor) -> torch.Tensor:
        """From ``[B, C, L, h, w]`` back to the layout ``step`` takes."""
        return tensor if self.view is None else self.view.from_video(tensor)

    def _land(self, out: Any, landed: torch.Tensor) -> Any:
        """Replace the scheduler's next sample with the clean estimate (the last step)."""
        self.landed = True
        if isinstance(out, tuple):
            return (landed, *out[1:])
        out.prev_sample = landed
        return out

    def _clean_like(self, sample: torch.Tensor, layout: str) -> torch.Tensor:
        clean = self.clean.to(device=sample.device, dtype=torch.float32)
        if layout == "frames":
            clean = rearrange(clean, "b c l h w -> (b l) c h w")
        if tuple(clean.shape) != tuple(sample.shape):
            raise RectifyError(
                "latents shape",
                tuple(sample.shape),
                f"the reference latent repeated over the frames, {tuple(clean.shape)}",
            )
        return clean

    def _check_timestep(self, rect: Rectifier, timestep: Any, sample: torch.Tensor, i: int) -> None:
        # Checked on the device, read in finish(): FreeInit or a custom loop fails there.
        given = torch.as_tensor(timestep).detach().reshape(-1)[0].to(torch.float32)
        rect.defer_check(
            "scheduler step",
            "one call per timestep of the schedule, in order "
            "(FreeInit, FreeNoise and custom loops are not supported)",
            (given.to(sample.device, non_blocking=True) - self.timesteps[i]).abs() > 1e-3,
        )

    def _start(self, s: Any, sample: torch.Tensor, x: torch.Tensor, abar, layout, k) -> None:
        """The first step: choose the pivot mode and capture the pivot."""
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
        clean = self._clean_like(sample, layout)
        self.rectifier.capture_pivot_eps(x, clean=clean, alpha_cumprod=abar)

    def _order_error(self, i: int, timestep: Any) -> RectifyError:
        # An error path: reading values back is fine here.
        t = timestep.reshape(-1)[0].item() if isinstance(timestep, torch.Tensor) else timestep
        schedule = [] if self.timesteps is None else [round(v, 3) for v in self.timesteps.tolist()]
        return RectifyError(
            "scheduler step",
            f"call {i + 1} at timestep {float(t):g}",
            f"one call per timestep of {schedule} in order "
            "(FreeInit, FreeNoise and custom loops are not supported)",
        )

    def finish(self) -> None:
        """After the pipeline returns: read what was checked on the device (one transfer);
        every step must have passed through the hook."""
        if self.rectifier is not None:
            try:
                self.rectified = self.rectifier.finish()
            finally:
                self.rectifier.release()
        if self.params.active and self.calls != self.total:
            raise RectifyError(
                "scheduler steps seen",
                self.calls,
                f"{self.total} (the pipeline did not call scheduler.step once per timestep)",
            )


#: The arguments of ``scheduler.step`` the hook reads, by name.
STEP_ARGUMENTS = ("model_output", "timestep", "sample")


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

    signature = inspect.signature(original_step)
    if list(signature.parameters)[:3] == list(STEP_ARGUMENTS):

        @functools.wraps(original_step)
        def step(model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *a, **k):
            return hook.step(original_step, model_output, timestep, sample, *a, **k)

    else:  # CogVideoXDPMScheduler: (model_output, old_pred_original_sample, timestep, ...)

        @functools.wraps(original_step)
        def step(*a: Any, **k: Any):
            bound = signature.bind(*a, **k)  # by name: the positional order differs

            def host(model_output: torch.Tensor, *_: Any, **__: Any) -> Any:
                bound.arguments["model_output"] = model_output
                return original_step(*bound.args, **bound.kwargs)

            args = bound.arguments
            rest = {name: v for name, v in args.items() if name not in STEP_ARGUMENTS}
            return hook.step(host, *(args[name] for name in STEP_ARGUMENTS), **rest)

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
