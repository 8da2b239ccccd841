"""One generation job's rectification: state on the job, hooks that drive the core.

Checked against AUTOMATIC1111 stable-diffusion-webui v1.10.1 (82a973c) and
sd-webui-animatediff a88e889:

- Order (modules/processing.py): ``before_process`` (821) — AnimateDiff's runs first
  (extensions run in folder-name order) and sets ``p.batch_size`` to the frame count;
  ``p.init`` (921) encodes the init image once per frame; per batch
  ``before_process_batch`` (952), where AnimateDiff blends the init latent toward noise
  frame by frame (scripts/animatediff_latent.py), then ``p.sample`` (1759-1789), which
  calls ``process_before_every_sampling``, then ``p.sampler.sample_img2img``, which calls
  the sampling function ``p.sampler.func`` (sd_samplers_kdiffusion.py:184,
  sd_samplers_timesteps.py:135), then blends an inpainting mask.
- The glue wraps that sampling function for one batch: it sees the schedule the sampler
  really uses and its progress callbacks (sampler_plan.py), and it replaces the
  function's result by the clean estimate when the sampler stops short of clean, before
  the host's mask blending and every script's ``post_sample``.
- Every script hook and callback is wrapped in ``try/except Exception`` by the host, so
  an error raised there is only logged. To fail the job with a message, the job's own
  ``p.sample`` is wrapped: a hook records the error and raises :class:`_Abort` (a
  ``BaseException``, which the host's handlers and samplers let through), and the wrapper
  re-raises the recorded error, which then escapes ``process_images``: an API error
  response and a red error box in the UI. On every failure AnimateDiff's motion module
  is taken out of the UNet again (animatediff.py), since the host skips ``postprocess``.
- ``on_cfg_denoiser`` (modules/sd_samplers_cfg_denoiser.py:211) sees
  ``x_in = [cond copies…, x]`` and ``sigma_in`` likewise, so the sampler's own input is
  the last L rows; ``on_cfg_after_cfg`` (:306) gets the combined prediction of the L
  frames but no reference to the job. The denoiser callback therefore hands the call
  over to the after-CFG callback of the same model call (:data:`_in_flight`), and every
  callback first checks that the call belongs to a job with rectification.
- Nothing in the per-model-call path waits for the GPU: a call's step is looked up on
  the device from its σ (sampler_plan.py), the window is then applied on the device, and
  what needs reading (the rectified steps, the core's value checks) is read once when
  the sampling function returns.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from lib_rectify import Rectifier, RectifyError, RectifyParams, resolve_reference_frame
from lib_rectify.anchors import DEFAULT_BLEND, end_anchored_clean
from lib_rectify.schedule import alpha_cumprod_at

from . import animatediff, infotext
from .args import from_script_args
from .sampler_plan import CallLabeler, SamplerPlan, plan_sampler

#: Attribute on the job (``p``) that holds its :class:`JobState`.
STATE_ATTR = "_noise_rectification"
#: Attribute on the job holding XYZ-plot overrides (set on each cell's copy).
OVERRIDES_ATTR = "_noise_rectification_overrides"
#: Where an end picture came from (also written to the infotext).
END_FROM_ANIMATEDIFF = "AnimateDiff's last frame"
END_FROM_OURS = "this extension's end picture"
#: How the frames between the two pictures start (the core's measured default).
END_BLEND = DEFAULT_BLEND


class _Abort(BaseException):
    """Stops sampling after an error was recorded on the job; never escapes the job."""


@dataclass
class JobState:
    """Everything rectification keeps for one job; it lives on ``p`` and dies with it."""

    p: Any
    params: RectifyParams
    clean_latent: torch.Tensor | None = None  # one encoding of the image, [1, C, h, w]
    # the end picture (docs/two-anchors.md): the image, where it came from, its latent
    end_picture: Any = None
    end_source: str = ""
    end_latent: torch.Tensor | None = None
    anchors: tuple[int, ...] | None = None  # (reference, other end) with an end picture
    error: BaseException | None = None
    rectified_steps: set[int] = field(default_factory=set)  # over all batches
    total_steps: int = 0
    # per batch (one p.sample call)
    frames: int = 0
    plan: SamplerPlan | None = None
    labeler: CallLabeler | None = None
    rectifier: Rectifier | None = None
    denoiser: Any = None  # the sampler's CFG denoiser object of this batch
    alphas_cumprod: torch.Tensor | None = None
    calls_seen: int = 0
    # whether the last call was rectified: a bool, or a 0-d bool tensor on the device
    last_call_rectified: bool | torch.Tensor = False
    last_clean: torch.Tensor | None = None  # clean estimate of the last rectified call
    land: bool | torch.Tensor = False  # whether to land the result on last_clean
    undo: list[Callable[[], None]] = field(default_factory=list)

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        raise _Abort()

    def end_batch(self) -> None:
        """Undo this batch's patches and drop its tensors, whatever happened."""
        while self.undo:
            self.undo.pop()()
        if self.rectifier is not None:
            self.rectifier.release()
        self.rectifier = self.labeler = self.denoiser = None
        self.last_clean = None
        self.last_call_rectified = self.land = False
        if _in_flight.call is not None and _in_flight.call.state is self:
            _in_flight.call = None


@dataclass
class _Call:
    state: JobState
    x: torch.Tensor
    sigma: torch.Tensor
    step: int | torch.Tensor  # a 0-d tensor on the device when looked up from σ


class _InFlight:
    """The model call between ``on_cfg_denoiser`` and ``on_cfg_after_cfg`` (one at a time)."""

    call: _Call | None = None


_in_flight = _InFlight()


@contextmanager
def _guard(state: JobState, where: str | Callable[[], str]) -> Iterator[None]:
    """Any error in a hook fails the job with a message, instead of a silent no-op.

    ``where`` may be a function, called only on an error: a message that names a step
    living on the GPU reads it back, which is fine once, not on every model call."""
    try:
        yield
    except RectifyError as error:
        state.fail(error)
    except Exception as error:
        state.fail(internal_error(where() if callable(where) else where, error))


def internal_error(where: str, error: BaseException) -> RuntimeError:
    return RuntimeError(
        f"Noise Rectification failed in {where}: {type(error).__name__}: {error}. "
        "The job was stopped rather than finished without rectification."
    )


# ----------------------------------------------------------------------------- setup
def state_of(p: Any) -> JobState | None:
    state = getattr(p, STATE_ATTR, None)
    return state if isinstance(state, JobState) and state.p is p else None


#: Attribute on the job listing the methods the glue replaced: {name: original or None}.
PATCHES_ATTR = "_noise_rectification_patches"


def _patch(p: Any, name: str, replacement: Callable) -> None:
    """Replace ``p.<name>`` on this job object only, to be undone by :func:`clear`."""
    patches = p.__dict__.setdefault(PATCHES_ATTR, {})
    if name not in patches:
        patches[name] = p.__dict__.get(name)  # None: the class's method
    setattr(p, name, replacement)


def clear(p: Any) -> None:
    """Drop the job's state and patches (end of job); harmless when there are none.

    The WebUI's img2img batch tab runs several jobs on the same ``p`` object
    (modules/img2img.py:process_batch), so nothing of one may stay for the next.
    """
    state = state_of(p)
    if state is not None:
        state.end_batch()
    for name, original in p.__dict__.pop(PATCHES_ATTR, {}).items():
        if original is None:
            p.__dict__.pop(name, None)
        else:
            setattr(p, name, original)
    if STATE_ATTR in getattr(p, "__dict__", {}):
        delattr(p, STATE_ATTR)


def finish(p: Any) -> None:
    """Our ``postprocess``, after AnimateDiff's: if its own restore did not run (a setup it
    left half-way makes its postprocess fail first), take its motion module out."""
    if PATCHES_ATTR in p.__dict__:
        animatediff.undo_injection(p)
    clear(p)


def parse_job_params(p: Any, args: tuple | list) -> RectifyParams:
    """The script's arguments, then the XYZ overrides stored on this job's copy."""
    params = from_script_args(list(args))
    for name, value in dict(getattr(p, OVERRIDES_ATTR, {}) or {}).items():
        params = params.with_override(name, value)
    return params


def fail_job(p: Any, error: BaseException) -> None:
    """Make this job fail with ``error`` as soon as it samples (the only raise the host shows)."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        animatediff.undo_injection(p)
        raise error

    _patch(p, "sample", refuse)


def start(p: Any, params: RectifyParams, end_picture: Any = None, end_source: str = "") -> JobState:
    """Attach state to the job and wrap its ``init``/``sample``/``close`` (instance attributes)."""
    state = JobState(p=p, params=params, end_picture=end_picture, end_source=end_source)
    setattr(p, STATE_ATTR, state)
    _in_flight.call = None
    original_init, original_sample = p.init, p.sample

    def init_keeping_clean_latent(*args: Any, **kwargs: Any) -> Any:
        result = original_init(*args, **kwargs)
        # The WebUI encodes the picture once per frame (each with its own posterior
        # sample); the paper repeats one encoding. Keep the first, before AnimateDiff
        # blends the frames toward noise in before_process_batch.
        state.clean_latent = p.init_latent[:1].detach().clone()
        return result

    def sample_surfacing_errors(*args: Any, **kwargs: Any) -> Any:
        try:
            if state.error is not None:
                raise state.error
            samples = original_sample(*args, **kwargs)
        except _Abort:
            animatediff.undo_injection(p)
            raise state.error from None
        except BaseException:
            animatediff.undo_injection(p)
            raise
        finally:
            state.end_batch()
        if state.total_steps:
            infotext.write(
                p,
                {
                    infotext.STEPS_KEY: infotext.format_steps(
                        state.rectified_steps, state.total_steps
                    )
                },
            )
        return samples

    _patch(p, "init", init_keeping_clean_latent)
    _patch(p, "sample", sample_surfacing_errors)
    restore_animatediff_on_close(p)
    return state


def restore_animatediff_on_close(p: Any) -> None:
    """Take AnimateDiff's motion module out when the job is closed, if it is still in.

    `with closing(p)` (modules/api/api.py:538, modules/img2img.py:225) closes the job also
    when it raised after sampling, and AnimateDiff's postprocess never ran then (or it
    failed, after a half-finished setup). After a normal job this is a no-op.
    """
    if PATCHES_ATTR in p.__dict__ and "close" in p.__dict__[PATCHES_ATTR]:
        return
    original_close = p.close

    def close_restoring_host(*args: Any, **kwargs: Any) -> Any:
        animatediff.undo_injection(p)
        return original_close(*args, **kwargs)

    _patch(p, "close", close_restoring_host)


# ------------------------------------------------------------------ per batch (p.sample)
def before_sampling(
    p: Any,
    x: torch.Tensor,
    shared: Any,
    sd_samplers_common: Any,
    encode: Callable[[Any, Any], torch.Tensor] | None = None,
) -> None:
    """``process_before_every_sampling``: the paper's noising stage; wrap the sampler.

    ``encode(p, picture)`` turns the end picture into a latent as the WebUI encodes the
    init image (the script's; only called when there is an end picture).
    """
    state = state_of(p)
    if state is None or not state.params.active:
        return
    with _guard(state, "preparing the sampler"):
        if state.clean_latent is None:
            raise RectifyError(
                "init latent", None, "img2img with an init image (AnimateDiff img2img)"
            )
        frames = x.shape[0]
        if state.end_picture is None:
            clean = state.clean_latent.to(device=x.device, dtype=x.dtype).expand(
                frames, *x.shape[1:]
            )
        else:
            clean = _two_anchor_clean(state, frames, x, encode)
        p.init_latent = clean.contiguous()
        state.frames = frames
        sampler = p.sampler

        def kdiffusion_schedule() -> Any:  # sd_samplers_kdiffusion.py:135-138
            steps, t_enc = sd_samplers_common.setup_img2img_steps(p)
            return sampler.get_sigmas(p, steps)[steps - t_enc - 1 :]

        _wrap_sampling_function(state, sampler, shared, kdiffusion_schedule)


def _two_anchor_clean(
    state: JobState, frames: int, x: torch.Tensor, encode: Callable[[Any, Any], torch.Tensor] | None
) -> torch.Tensor:
    """Per-frame clean latents from the picture to the end picture (docs/two-anchors.md):
    a linear blend, exact at both anchors; sets ``state.anchors``."""
    if (
        state.end_source == END_FROM_ANIMATEDIFF
        and resolve_reference_frame(state.params.reference_frame, frames) != 0
    ):
        raise RectifyError(
            "reference_frame",
            state.params.reference_frame,
            "0 with AnimateDiff's last frame (that picture is the video's last frame)",
        )
    if state.end_latent is None:
        if encode is None:
            raise RectifyError("end picture", state.end_source, "a host that can encode it")
        state.end_latent = encode(state.p, state.end_picture).detach()
    picture = state.clean_latent.to(device=x.device, dtype=torch.float32)
    end = state.end_latent.to(device=x.device, dtype=torch.float32)
    clean, state.anchors = end_anchored_clean(
        picture, end, frames, state.params.reference_frame, END_BLEND
    )
    return clean[0].to(dtype=x.dtype)


def _wrap_sampling_function(
    state: JobState, sampler: Any, shared: Any, kdiffusion_schedule: Callable[[], Any]
) -> None:
    original = sampler.func
    had_own = "func" in vars(sampler)

    # functools.wraps keeps the signature: the WebUI passes only the keyword arguments
    # that inspect.signature(sampler.func) lists (sd_samplers_common.py:300-307).
    @functools.wraps(original)
    def rectified_sampling(model: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        with _guard(state, "reading the sampler's schedule"):
            _begin_batch(state, sampler, original, model, kwargs, shared, kdiffusion_schedule)
        progress = kwargs.get("callback")
        if "callback" in kwargs:

            def observed(info: dict[str, Any]) -> Any:
                if state.labeler is not None:
                    state.labeler.progress(info)
                return progress(info) if progress is not None else None

            kwargs["callback"] = observed
        result = original(model, x, *args, **kwargs)
        return _finish_batch(state, result)

    def restore() -> None:
        if had_own:
            sampler.func = original
        else:
            vars(sampler).pop("func", None)

    sampler.func = rectified_sampling
    state.undo.append(restore)


def _begin_batch(
    state: JobState,
    sampler: Any,
    function: Callable,
    model: Any,
    kwargs: dict[str, Any],
    shared: Any,
    kdiffusion_schedule: Callable[[], Any],
) -> None:
    plan = plan_sampler(sampler, function, kwargs, kdiffusion_schedule)
    state.plan = plan
    state.labeler = CallLabeler(plan)
    state.total_steps = plan.total_steps
    state.rectifier = Rectifier(
        state.params,
        frames=state.frames,
        layout="frames",
        pivot="per_step" if plan.stochastic else "initial",
        anchors=state.anchors,
    )
    state.denoiser = model
    state.alphas_cumprod = shared.sd_model.alphas_cumprod if plan.family == "eps" else None
    state.calls_seen = 0
    state.last_call_rectified = state.land = False
    state.last_clean = None
    if plan.stochastic:
        infotext.write(
            state.p,
            {infotext.PIVOT_KEY: f"per step: {plan.stochastic}; fidelity approximate"},
        )


def _finish_batch(state: JobState, result: Any) -> Any:
    """After the sampling function: read what the calls left on the device (one transfer),
    no silent no-op, land where the sampler stops short."""
    if state.calls_seen == 0:
        state.fail(
            RectifyError(
                "model calls seen",
                0,
                "the sampler's model calls must pass through the WebUI's CFG denoiser "
                "callbacks (another extension may have replaced the sampling loop)",
            )
        )
    if state.rectifier is not None:
        with _guard(state, "checking the rectified steps"):
            state.rectified_steps.update(state.rectifier.finish())
    plan = state.plan
    if (
        plan is not None
        and plan.ends_short_of_clean
        and state.land is not False
        and state.last_clean is not None
        and isinstance(result, torch.Tensor)
        and state.last_clean.shape == result.shape
    ):
        # The WebUI's DDIM / PLMS stop at timestep 1, UniPC at t = 1/1000, DPM fast /
        # adaptive at σ_min: what is left is √(1−ᾱ) (or σ_min) of each frame's own pivot
        # noise, i.e. per-frame grain. Land on the clean estimate instead.
        clean = state.last_clean.to(device=result.device, dtype=result.dtype)
        return clean if state.land is True else torch.where(state.land, clean, result)
    return result


# ------------------------------------------------------------------------ callbacks
def on_cfg_denoiser(params: Any) -> None:
    """Capture the sampler's input of this call and its step; at the first call, the pivot."""
    denoiser = getattr(params, "denoiser", None)
    state = state_of(getattr(denoiser, "p", None))
    _in_flight.call = None
    if state is None or state.rectifier is None or state.denoiser is not denoiser:
        return
    with _guard(state, "reading a model call (on_cfg_denoiser)"):
        frames = state.frames
        x = params.x[-frames:]
        sigma = params.sigma[-frames:]
        step = state.labeler.label(sigma)
        state.calls_seen += 1
        rect = state.rectifier
        if not rect.has_pivot:
            clean = denoiser.init_latent
            if state.plan.family == "denoiser":
                rect.capture_pivot_denoiser(x, clean=clean, sigma=sigma)
            else:
                rect.capture_pivot_eps(
                    x, clean=clean, alpha_cumprod=alpha_cumprod_at(state.alphas_cumprod, sigma)
                )
        _in_flight.call = _Call(state, x, sigma, step)


def on_cfg_after_cfg(params: Any) -> None:
    """Rectify the CFG-combined prediction of the call captured by :func:`on_cfg_denoiser`."""
    call, _in_flight.call = _in_flight.call, None
    if call is None:
        return
    state = call.state
    with _guard(state, lambda: f"rectifying step {int(call.step)} (on_cfg_after_cfg)"):
        prediction = params.x
        if prediction.shape[0] != state.frames:
            raise RectifyError(
                "prediction batch",
                tuple(prediction.shape),
                f"{state.frames} frames (skipped uncond or AND prompts changed the batch)",
            )
        rect, plan = state.rectifier, state.plan
        total = plan.total_steps
        window = rect.in_window(call.step, total)
        state.last_call_rectified = window
        state.land = False
        if window is False:
            return
        if plan.family == "denoiser":
            params.x = rect.rectify_denoised(
                prediction, x=call.x, sigma=call.sigma, step=call.step, total_steps=total
            )
            state.last_clean, state.land = params.x, window
            return
        abar = alpha_cumprod_at(state.alphas_cumprod, call.sigma)
        eps = rect.rectify_eps(
            prediction, step=call.step, total_steps=total, x=call.x, alpha_cumprod=abar
        )
        params.x = eps
        if plan.rectify_uncond:
            _rectify_saved_uncond(state, call, abar)
        last = call.step == total - 1
        if last is not False:
            state.last_clean = rect.clean_estimate_eps(eps, x=call.x, alpha_cumprod=abar)
            state.land = window & last if isinstance(last, torch.Tensor) else window


def _rectify_saved_uncond(state: JobState, call: _Call, abar: torch.Tensor) -> None:
    """DDIM CFG++ steps along the unconditional ε it saved before this callback
    (sd_samplers_cfg_denoiser.py:281-282, sd_samplers_timesteps_impl.py:64-75):
    rectify that too, with the same pivot and weights."""
    uncond = getattr(state.denoiser, "last_noise_uncond", None)
    if not isinstance(uncond, torch.Tensor) or uncond.shape != call.x.shape:
        raise RectifyError(
            "DDIM CFG++ unconditional prediction",
            None if uncond is None else tuple(uncond.shape),
            f"a saved prediction of {state.frames} frames",
        )
    state.denoiser.last_noise_uncond = state.rectifier.rectify_eps(
        uncond,
        step=call.step,
        total_steps=state.plan.total_steps,
        x=call.x,
        alpha_cumprod=abar,
    )
