"""One generation job's rectification: state on the job, hooks that drive the core.

Checked against AUTOMATIC1111 stable-diffusion-webui v1.10.1 (82a973c) and
sd-webui-animatediff a88e889:

- Order (modules/processing.py): ``before_process`` (821) — AnimateDiff's runs first
  (extensions run in folder-name order) and sets ``p.batch_size`` to the frame count;
  ``process`` (915); ``p.init`` (921) encodes the init image once per frame; per batch
  ``before_process_batch`` (952), where AnimateDiff blends the init latent toward
  noise frame by frame (scripts/animatediff_latent.py), then ``p.sample`` (1759-1789),
  which calls ``process_before_every_sampling`` and then reads ``p.init_latent``.
- Every script hook and callback is wrapped in ``try/except Exception`` by the host,
  so an error raised there is only logged. To fail the job with a message, the job's
  own ``p.sample`` is wrapped: a hook records the error and raises :class:`_Abort`
  (a ``BaseException``, which the host's handlers and samplers let through), and the
  wrapper re-raises the recorded error, which then escapes ``process_images``: an API
  error response and a red error box in the UI.
- ``on_cfg_denoiser`` (modules/sd_samplers_cfg_denoiser.py:206) sees
  ``x_in = [cond copies…, x]`` and ``sigma_in`` likewise, so the sampler's own input
  is the last L rows; ``on_cfg_after_cfg`` (:300) gets the combined prediction of the
  L frames but no reference to the job. The denoiser callback therefore hands the
  call over to the after-CFG callback of the same model call (:data:`_in_flight`),
  and every callback first checks that the call belongs to a job with rectification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lib_rectify import Rectifier, RectifyError, RectifyParams

from .sampler_bridge import SamplerInfo, UnsupportedSampler, alpha_cumprod_at, describe_sampler

#: Attribute on the job (``p``) that holds its :class:`JobState`.
STATE_ATTR = "_noise_rectification"
#: Attribute on the job holding XYZ-plot overrides (set on each cell's copy).
OVERRIDES_ATTR = "_noise_rectification_overrides"
INIT_NOTE_KEY = "NR init"
INIT_NOTE = "image latent repeated over the frames (AnimateDiff latent blending off)"
SAMPLER_NOTE_KEY = "NR note"
STOCHASTIC_NOTE = "stochastic sampler: pivot re-read every step, fidelity approximate"
SKIPPED_KEY = "NR skipped"


class _Abort(BaseException):
    """Stops sampling after an error was recorded on the job; never escapes the job."""


@dataclass
class JobState:
    """Everything rectification keeps for one job; it lives on ``p`` and dies with it."""

    p: Any
    params: RectifyParams
    clean_latent: torch.Tensor | None = None  # one encoding of the image, [1, C, h, w]
    error: BaseException | None = None
    # per batch (one p.sample call)
    sampler: SamplerInfo | None = None
    rectifier: Rectifier | None = None
    denoiser: Any = None  # the sampler's CFG denoiser object of this batch
    alphas_cumprod: torch.Tensor | None = None
    completed_steps: int = 0
    frames: int = 0
    landing: torch.Tensor | None = None

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        raise _Abort()


@dataclass
class _Call:
    state: JobState
    x: torch.Tensor
    sigma: torch.Tensor
    step: int


class _InFlight:
    """The model call between ``on_cfg_denoiser`` and ``on_cfg_after_cfg`` (one at a time)."""

    call: _Call | None = None


_in_flight = _InFlight()


# ----------------------------------------------------------------------------- setup
def state_of(p: Any) -> JobState | None:
    state = getattr(p, STATE_ATTR, None)
    return state if isinstance(state, JobState) and state.p is p else None


def clear(p: Any) -> None:
    """Drop the job's state (end of job); harmless when there is none."""
    state = state_of(p)
    if state is not None and state.rectifier is not None:
        state.rectifier.release()
    if STATE_ATTR in getattr(p, "__dict__", {}):
        delattr(p, STATE_ATTR)
    if _in_flight.call is not None and _in_flight.call.state is state:
        _in_flight.call = None


def parse_job_params(p: Any, args: tuple | list) -> RectifyParams:
    """The script's arguments, then the XYZ overrides stored on this job's copy."""
    params = RectifyParams.from_script_args(list(args))
    for name, value in dict(getattr(p, OVERRIDES_ATTR, {}) or {}).items():
        params = params.with_override(name, value)
    return params


def fail_job(p: Any, error: BaseException) -> None:
    """Make this job fail with ``error`` as soon as it samples (the only raise the host shows)."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    p.sample = refuse


def start(p: Any, params: RectifyParams) -> JobState:
    """Attach state to the job and wrap its ``init``/``sample`` (instance attributes only)."""
    state = JobState(p=p, params=params)
    setattr(p, STATE_ATTR, state)
    _in_flight.call = None

    original_init = p.init
    original_sample = p.sample

    def init_keeping_clean_latent(*args: Any, **kwargs: Any) -> Any:
        result = original_init(*args, **kwargs)
        # The WebUI encodes the picture once per frame (each with its own posterior
        # sample); the paper repeats one encoding. Keep the first, before AnimateDiff
        # blends the frames toward noise in before_process_batch.
        state.clean_latent = p.init_latent[:1].detach().clone()
        return result

    def sample_surfacing_errors(*args: Any, **kwargs: Any) -> Any:
        if state.error is not None:
            raise state.error
        try:
            return original_sample(*args, **kwargs)
        except _Abort:
            raise state.error from None
        finally:
            _in_flight.call = None
            if state.rectifier is not None:
                state.rectifier.release()  # the pivot is per batch

    p.init = init_keeping_clean_latent
    p.sample = sample_surfacing_errors
    return state


# ------------------------------------------------------------------ per batch (p.sample)
def before_sampling(p: Any, x: torch.Tensor, shared: Any, sd_samplers_common: Any) -> None:
    """``process_before_every_sampling``: paper noising stage, rectifier, step counter."""
    state = state_of(p)
    if state is None or not state.params.active:
        return
    try:
        if state.clean_latent is None:
            raise RectifyError(
                "init latent", None, "img2img with an init image (AnimateDiff img2img)"
            )
        frames = x.shape[0]
        clean = state.clean_latent.to(device=x.device, dtype=x.dtype).expand(frames, *x.shape[1:])
        p.init_latent = clean.contiguous()
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p)
        sampler = p.sampler
        eta_field = getattr(sampler, "eta_option_field", "")
        eta_default = float(getattr(shared.opts, eta_field, 0.0) or 0.0) if eta_field else 0.0
        try:
            info = describe_sampler(sampler, p, steps, t_enc, eta_default)
        except UnsupportedSampler as error:
            raise RectifyError(
                "sampler",
                str(error),
                "a k-diffusion sampler (Euler, DPM++ 2M, …) or DDIM / PLMS / UniPC",
            ) from None
        if info.total_steps < 1:
            raise RectifyError("steps", steps, "enough steps for at least one sampling step")
        state.sampler = info
        state.frames = frames
        state.completed_steps = 0
        state.landing = None
        state.rectifier = Rectifier(
            state.params,
            frames=frames,
            layout="frames",
            pivot="per_step" if info.stochastic else "initial",
        )
        state.denoiser = sampler.model_wrap_cfg
        state.alphas_cumprod = shared.sd_model.alphas_cumprod if info.family == "eps" else None
        if info.stochastic:
            p.extra_generation_params[SAMPLER_NOTE_KEY] = STOCHASTIC_NOTE

        original_callback = sampler.callback_state

        def counting_callback(d: dict) -> Any:
            state.completed_steps = int(d["i"]) + 1
            return original_callback(d)

        sampler.callback_state = counting_callback
    except RectifyError as error:
        state.fail(error)


# ------------------------------------------------------------------------ callbacks
def on_cfg_denoiser(params: Any) -> None:
    """Capture the sampler's input of this call; at the first call, the pivot noise."""
    denoiser = getattr(params, "denoiser", None)
    state = state_of(getattr(denoiser, "p", None))
    _in_flight.call = None
    if state is None or state.rectifier is None or state.denoiser is not denoiser:
        return
    try:
        frames = state.frames
        x = params.x[-frames:]
        sigma = params.sigma[-frames:]
        rect = state.rectifier
        step = state.completed_steps
        if not rect.has_pivot:
            clean = denoiser.init_latent
            if state.sampler.family == "denoiser":
                rect.capture_pivot_denoiser(x, clean=clean, sigma=sigma)
            else:
                rect.capture_pivot_eps(
                    x, clean=clean, alpha_cumprod=alpha_cumprod_at(state.alphas_cumprod, sigma)
                )
        _in_flight.call = _Call(state, x, sigma, step)
    except RectifyError as error:
        state.fail(error)


def on_cfg_after_cfg(params: Any) -> None:
    """Rectify the CFG-combined prediction of the call captured by :func:`on_cfg_denoiser`."""
    call, _in_flight.call = _in_flight.call, None
    if call is None:
        return
    state = call.state
    try:
        prediction = params.x
        if prediction.shape[0] != state.frames:
            raise RectifyError(
                "prediction batch",
                tuple(prediction.shape),
                f"{state.frames} frames (skipped uncond or AND prompts changed the batch)",
            )
        rect, info = state.rectifier, state.sampler
        total = info.total_steps
        if not rect.in_window(call.step, total):
            return
        if info.family == "denoiser":
            params.x = rect.rectify_denoised(
                prediction, x=call.x, sigma=call.sigma, step=call.step, total_steps=total
            )
            return
        abar = alpha_cumprod_at(state.alphas_cumprod, call.sigma)
        eps = rect.rectify_eps(
            prediction, step=call.step, total_steps=total, x=call.x, alpha_cumprod=abar
        )
        params.x = eps
        if call.step == total - 1:
            # The WebUI's DDIM stops at timestep 1 (UniPC near 0), leaving √(1−ᾱ) of each
            # frame's own pivot noise: land the result on the clean estimate instead.
            shape = (-1, *([1] * (eps.dim() - 1)))
            abar = abar.to(eps.device).view(shape)
            state.landing = ((call.x.float() - (1 - abar).sqrt() * eps.float()) / abar.sqrt()).to(
                eps.dtype
            )
    except RectifyError as error:
        state.fail(error)


def after_sampling(p: Any, samples_holder: Any) -> None:
    """``post_sample``: use the landed clean estimate when the last step was rectified."""
    state = state_of(p)
    if state is None or state.landing is None:
        return
    if state.landing.shape == samples_holder.samples.shape:
        samples_holder.samples = state.landing.to(samples_holder.samples.dtype)
    state.landing = None
