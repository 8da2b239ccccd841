"""What the node puts on its clone of the MODEL: a sampling wrapper and a post-CFG function.

Checked against ComfyUI v0.12.1 (upstream 3be0175, in the hiddenswitch fork 87606c5f):

- ``CFGGuider.inner_sample`` (comfy/samplers.py:964-980) scales the LATENT it samples
  from with ``process_latent_in``, puts the σ schedule in
  ``transformer_options["sample_sigmas"]`` and calls the sampler through the
  ``SAMPLER_SAMPLE`` wrappers of the model options (comfy/patcher_extension.py:49-135):
  ``wrapper(executor, guider, sigmas, extra_args, callback, noise, latent_image,
  denoise_mask, disable_pbar)``, ``executor.class_obj`` being the ``KSAMPLER``.
  :meth:`Rectification.sampler_sample` is that wrapper: one sampling run, from the
  schedule it sees to the result it returns. It plans the run, wraps the progress
  callback, and after the run reads what the calls queued on the device (one transfer)
  and lands the result where the sampler stops short of clean.
- ``KSAMPLER.sample`` (:728-753) noises the latent, ``noise_scaling`` (comfy/
  model_sampling.py): ``x_T = Z + noise·σ_0``, ``·√(1+σ_0²)`` at full denoise; the
  pivot is read back from that first model input, whatever made it.
- ``cfg_function`` (:352-366) hands every ``sampler_post_cfg_function`` the guided
  ``denoised`` x̂0, the sampler's ``input`` x and ``sigma``; :meth:`Rectification.post_cfg`
  returns the rectified x̂0 (the core's denoiser form, as in the WebUI).
- Flow models (Wan and the other ``CONST`` models, comfy/model_sampling.py:62-76):
  ``noise_scaling`` is ``σ·noise + (1−σ)·latent`` and ``ModelSamplingDiscreteFlow``'s
  schedules start at σ = 1 exactly (:249-284), where the first input is the noise alone.
  When the schedule it is handed starts there, the wrapper runs the sampler on the same
  schedule scaled by ``sigma_start`` (σ 0 stays 0, the step count is kept) and puts that
  schedule in ``transformer_options["sample_sigmas"]`` too, which ComfyUI's context
  windows match every call's σ against (comfy/context_windows.py:214). The post-CFG hook
  then uses the core's flow form on x̂0 (``rectify_flow(prediction="denoised")``).
  Wan's latents are 5-D ``[B, C, T, H, W]`` (layout "video"); AnimateDiff's are 4-D
  with the frames as the batch (layout "frames").

Nothing global: the state of a run lives on the :class:`Rectification` of one clone and
is dropped when the run ends, also when it fails. The per-call path never waits for the
GPU (the step is looked up on the device, see samplers.py).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from lib_rectify import Rectifier, RectifyError, RectifyParams

from .samplers import CallLabeler, SamplerPlan, plan_sampler

log = logging.getLogger("noise_rectification")

#: The wrapper type and key (comfy/patcher_extension.py:49-53).
SAMPLER_SAMPLE = "sampler_sample"
WRAPPER_KEY = "noise_rectification"
#: Marks the options ``CFGGuider.sample`` copies for one sampling (samplers.py:1025).
PASS_KEY = "noise_rectification_pass"


class NodeError(ValueError):
    """A refusal, with the node that made it named first (what ComfyUI shows the user)."""


@dataclass
class Report:
    """What the last run did (kept on the patch for tests and the console line)."""

    steps: int = 0
    rectified_steps: list[int] = field(default_factory=list)
    pivot: str = "initial"
    landed: bool = False
    sampler: str = ""
    first_sigma: float = 0.0  # the σ the sampler started from (σ_start for flow models)


@dataclass
class _Run:
    plan: SamplerPlan
    labeler: CallLabeler
    rectifier: Rectifier
    clean: torch.Tensor  # Z in the sampler's space, [L, C, h, w] or [1, C, T, h, w]
    sigmas: torch.Tensor  # the schedule the sampler runs (σ_start applied for flow models)
    flow: bool = False
    calls: int = 0
    last_clean: torch.Tensor | None = None
    land: bool | torch.Tensor = False


class Rectification:
    """Noise rectification for the samplings of one patched MODEL."""

    def __init__(
        self,
        params: RectifyParams,
        clean: torch.Tensor,
        *,
        anchors: tuple[int, ...] | None = None,
        node: str = "Noise Rectification",
    ) -> None:
        self.params = params
        # The LATENT's own scale (before process_in): [L, C, h, w] with the frames as the
        # batch (AnimateDiff), or one video [1, C, T, h, w] (Wan and other video models).
        self.clean = clean.detach()
        self.layout = "video" if clean.ndim == 5 else "frames"
        self.frames = int(clean.shape[2] if self.layout == "video" else clean.shape[0])
        self.anchors = anchors
        self.node = node
        self.run: _Run | None = None
        self.report = Report()

    def __deepcopy__(self, memo: dict) -> Rectification:
        """``ModelPatcher.clone`` deep-copies the model options (comfy/model_patcher.py:320),
        and with them the bound post-CFG method; its wrappers are copied by reference.
        Both must keep pointing at this one object, or the post-CFG function of a clone
        would never see the run its wrapper starts."""
        return self

    # ----------------------------------------------------------------- errors
    def refuse(self, error: BaseException) -> NodeError:
        text = str(error).removeprefix("Noise Rectification: ")
        return NodeError(f"{self.node}: {text}")

    # --------------------------------------------------------------- wrapper
    def sampler_sample(
        self,
        executor: Any,
        guider: Any,
        sigmas: torch.Tensor,
        extra_args: dict,
        callback: Any,
        noise: torch.Tensor,
        latent_image: torch.Tensor | None = None,
        denoise_mask: torch.Tensor | None = None,
        disable_pbar: bool = False,
    ) -> torch.Tensor:
        """One sampling run (see the module doc). Runs the sampler untouched when off."""
        if not self.params.active:
            return executor(
                guider,
                sigmas,
                extra_args,
                callback,
                noise,
                latent_image,
                denoise_mask,
                disable_pbar,
            )
        if self.run is not None:
            raise self.refuse(
                RectifyError(
                    "sampling",
                    "a second sampling inside the first",
                    "one sampling at a time with this MODEL",
                )
            )
        try:
            self._one_pass(guider, extra_args)
            run = self._start(executor.class_obj, guider, sigmas, noise, latent_image, denoise_mask)
        except RectifyError as error:
            raise self.refuse(error) from None

        def observed(step: int, x0: Any, x: Any, total: int) -> Any:
            run.labeler.progress(step)
            return callback(step, x0, x, total) if callback is not None else None

        if run.sigmas is not sigmas:
            options = extra_args.get("model_options", {}).get("transformer_options")
            if isinstance(options, dict):  # this sampling's own copy (samplers.py:970-971)
                options["sample_sigmas"] = run.sigmas
        self.run = run
        try:
            samples = executor(
                guider,
                run.sigmas,
                extra_args,
                observed,
                noise,
                latent_image,
                denoise_mask,
                disable_pbar,
            )
            return self._finish(run, samples)
        except RectifyError as error:
            raise self.refuse(error) from None
        finally:
            self.run = None
            run.rectifier.release()

    def _one_pass(self, guider: Any, extra_args: dict) -> None:
        """Refuse what samples the video more than once: the pivot of a second pass is not
        the noise of the first. AnimateDiff-Evolved's iteration options (FreeInit) and noise
        calibration call ComfyUI's sampling again inside one ``CFGGuider.sample``
        (ADE animatediff/sampling.py:538-583), whose options object stays the same while
        ``CFGGuider.sample`` runs (comfy/samplers.py:1025-1059) and is new on the next one."""
        options = (extra_args.get("model_options") or {}).get("transformer_options", {})
        settings = getattr(options.get("ADGS"), "sample_settings", None)
        iterations = getattr(getattr(settings, "iteration_opts", None), "iterations", 1)
        if isinstance(iterations, int) and iterations > 1:
            raise RectifyError(
                "AnimateDiff-Evolved iterations",
                iterations,
                "1: FreeInit and other iteration options sample the video more than once "
                "(remove the iteration options from the sample settings)",
            )
        if getattr(settings, "noise_calibration", None) is not None:
            raise RectifyError(
                "AnimateDiff-Evolved noise calibration",
                "set",
                "none: it samples the video more than once",
            )
        sampling = getattr(guider, "model_options", None)
        if isinstance(sampling, dict):
            if sampling.get(PASS_KEY) is self:
                raise RectifyError(
                    "sampling pass",
                    2,
                    "1: something samples the video more than once in one sampler node "
                    "(FreeInit-like iterations); rectification needs a single pass",
                )
            # A mark on this sampling's own copy of the options, gone with it afterwards.
            sampling[PASS_KEY] = self

    def _start(self, sampler, guider, sigmas, noise, latent_image, denoise_mask) -> _Run:
        if denoise_mask is not None:
            raise RectifyError(
                "noise mask",
                "set",
                "no mask: rectification pins whole frames (remove Set Latent Noise Mask)",
            )
        model = guider.inner_model
        flow = _is_flow(model.model_sampling)
        shape = tuple(noise.shape)
        if latent_image is None or tuple(latent_image.shape) != shape:
            got = None if latent_image is None else tuple(latent_image.shape)
            raise RectifyError(
                "sampled latent",
                got,
                f"the node's LATENT output, {tuple(self.clean.shape)}",
            )
        if shape != tuple(self.clean.shape):
            raise RectifyError(
                "picture latent",
                tuple(self.clean.shape),
                f"the sampled latent's batch and size, {shape}: connect this node's LATENT "
                "output to the sampler, with the frame count and picture size of the video",
            )
        if flow:
            sigmas = flow_schedule(sigmas, self.params.sigma_start)
        plan = plan_sampler(sampler, sigmas, flow=flow)
        clean = model.process_latent_in(self.clean.to(device=noise.device, dtype=torch.float32))
        pivot = "per_step" if plan.stochastic else "initial"
        if plan.stochastic:
            log.info("Noise Rectification: per-step pivot (%s)", plan.stochastic)
        rectifier = Rectifier(
            self.params, frames=self.frames, layout=self.layout, pivot=pivot, anchors=self.anchors
        )
        self.report = Report(
            steps=plan.total_steps,
            pivot="per step: " + plan.stochastic if plan.stochastic else "initial",
            sampler=plan.function,
            first_sigma=plan.levels[0],
        )
        return _Run(
            plan=plan,
            labeler=CallLabeler(plan),
            rectifier=rectifier,
            clean=clean,
            sigmas=sigmas,
            flow=flow,
        )

    def _finish(self, run: _Run, samples: torch.Tensor) -> torch.Tensor:
        if run.calls == 0:
            raise RectifyError(
                "model calls seen",
                0,
                "the sampler's model calls must pass through ComfyUI's CFG function "
                "(another node may have replaced it)",
            )
        self.report.rectified_steps = run.rectifier.finish()
        if (
            run.plan.ends_short_of_clean
            and run.land is not False
            and run.last_clean is not None
            and isinstance(samples, torch.Tensor)
            and run.last_clean.shape == samples.shape
        ):
            # DPM fast / adaptive stop at the last σ above 0, UniPC at σ = 0.001: what is
            # left is that much of each frame's own pivot noise. Land on the clean estimate.
            clean = run.last_clean.to(device=samples.device, dtype=samples.dtype)
            samples = clean if run.land is True else torch.where(run.land, clean, samples)
            self.report.landed = True
        steps = self.report.rectified_steps
        log.info(
            "Noise Rectification: %s; rectified steps %s of %d (%s)",
            self.params.describe(),
            _ranges(steps),
            run.plan.total_steps,
            self.report.pivot,
        )
        return samples

    # ----------------------------------------------------------- post-CFG
    def post_cfg(self, args: dict) -> torch.Tensor:
        """``sampler_post_cfg_function``: rectify the guided x̂0 of one model call."""
        denoised = args["denoised"]
        run = self.run
        if run is None:
            return denoised
        x, sigma = args["input"], args["sigma"]
        try:
            if tuple(denoised.shape) != tuple(run.clean.shape) or x.shape != denoised.shape:
                whole = (
                    "one video [1, C, T, h, w]"
                    if self.layout == "video"
                    else "the batch is the frames"
                )
                raise RectifyError(
                    "model call batch",
                    tuple(denoised.shape),
                    f"{self.frames} frames at once ({whole}, {tuple(run.clean.shape)})",
                )
            step = run.labeler.label(sigma)
            run.calls += 1
            rect = run.rectifier
            if not rect.has_pivot:
                clean = run.clean.to(device=x.device)
                if run.flow:
                    rect.capture_pivot_flow(x, clean=clean, sigma=sigma)
                else:
                    rect.capture_pivot_denoiser(x, clean=clean, sigma=sigma)
            total = run.plan.total_steps
            window = rect.in_window(step, total)
            run.land = False
            if window is False:
                return denoised
            if run.flow:
                out = rect.rectify_flow(
                    denoised,
                    x=x,
                    sigma=sigma,
                    step=step,
                    total_steps=total,
                    prediction="denoised",
                )
            else:
                out = rect.rectify_denoised(
                    denoised, x=x, sigma=sigma, step=step, total_steps=total
                )
            run.last_clean, run.land = out, window
            return out
        except RectifyError as error:
            raise self.refuse(error) from None


def _is_flow(sampling: Any) -> bool:
    """Flow-matching models: the ``CONST`` prediction, x = (1−σ)·Z + σ·n
    (comfy/model_sampling.py:62-76; Wan, HunyuanVideo, LTX, Mochi, SD3, Flux)."""
    for cls in type(sampling).__mro__:
        if cls.__name__ in ("CONST", "ModelSamplingDiscreteFlow", "ModelSamplingFlux"):
            return True
    return False


def flow_schedule(sigmas: torch.Tensor, sigma_start: float) -> torch.Tensor:
    """The schedule a flow sampling runs: scaled to start at ``sigma_start`` when it starts
    at σ = 1 (denoise 1.0), where the first input would be the noise alone; as it is when
    it starts lower (denoise below 1, KSamplerAdvanced's later start), where the first
    input already carries the picture. One read of σ_0 per sampling run."""
    first = float(sigmas[0]) if len(sigmas) else 0.0
    if sigma_start >= 1.0 or not (first > 1.0 or math.isclose(first, 1.0, rel_tol=1e-5)):
        return sigmas
    return sigmas * sigma_start


def _ranges(steps: list[int]) -> str:
    if not steps:
        return "none"
    parts, start, prev = [], steps[0], steps[0]
    for s in [*steps[1:], None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(parts)


def patch_model(model: Any, rectification: Rectification) -> Any:
    """A clone of ``model`` with the rectification on it; ``model`` itself is not changed."""
    patched = model.clone()
    patched.set_model_sampler_post_cfg_function(rectification.post_cfg)
    patched.add_wrapper_with_key(SAMPLER_SAMPLE, WRAPPER_KEY, rectification.sampler_sample)
    return patched
