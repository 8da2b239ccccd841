"""What the adapter must know of each diffusers scheduler, read from diffusers 0.42.1.

The core rectifies ε in the variance-preserving (VP) form ``x = √ᾱ·Z + √(1−ᾱ)·n``.
Diffusers schedulers keep their sample in one of two spaces:

* VP (DDIM, DDPM, LCM, DPM-Solver, UniPC, DEIS, CogVideoX's DDIM and DPM): the sample is
  ``x`` itself.
* VE (Euler, Euler ancestral, LMS): the sample is ``x/√ᾱ = Z + σ·n`` with
  ``σ = √((1−ᾱ)/ᾱ)``; ``scale_model_input`` divides it by ``√(σ²+1)`` for the UNet.

Flow-matching schedulers (FlowMatch Euler, UniPC in flow mode) keep ``x = (1−σ)·Z + σ·n``
and integrate a velocity (minus one for an ``invert_sigmas`` table); the core's flow form
serves them (docs/flow-matching.md).

ᾱ of a step comes from the scheduler's own tables: ``sigmas[step_index]`` (``ᾱ =
1/(1+σ²)``, which also covers Karras and exponential σ) where the scheduler walks a σ
table, else ``alphas_cumprod[timestep]``. Schedulers with ``order`` > 1 (Heun, KDPM2)
call the model twice per timestep; they and PNDM (duplicate timesteps) are refused
rather than guessed at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from lib_rectify import RectifyError


@dataclass(frozen=True)
class SchedulerFacts:
    """How one scheduler class samples, for the step hook."""

    space: str  # "vp", "ve", or "flow" (x = (1−σ)·Z + σ·n, velocity output)
    level: str  # "sigmas": ᾱ from sigmas[step_index]; "alphas": from alphas_cumprod[t]
    fresh_noise: str  # "never", "always", or the config/step argument that decides it


#: Scheduler class name -> facts (diffusers 0.42.1, ``diffusers/schedulers/scheduling_*.py``).
SCHEDULERS: dict[str, SchedulerFacts] = {
    "DDIMScheduler": SchedulerFacts("vp", "alphas", "eta"),
    "DDPMScheduler": SchedulerFacts("vp", "alphas", "always"),
    "LCMScheduler": SchedulerFacts("vp", "alphas", "always"),
    "DPMSolverMultistepScheduler": SchedulerFacts("vp", "sigmas", "algorithm_type"),
    "DPMSolverSinglestepScheduler": SchedulerFacts("vp", "sigmas", "algorithm_type"),
    "UniPCMultistepScheduler": SchedulerFacts("vp", "sigmas", "never"),
    "DEISMultistepScheduler": SchedulerFacts("vp", "sigmas", "never"),
    "EulerDiscreteScheduler": SchedulerFacts("ve", "sigmas", "never"),
    "EulerAncestralDiscreteScheduler": SchedulerFacts("ve", "sigmas", "always"),
    "LMSDiscreteScheduler": SchedulerFacts("ve", "sigmas", "never"),
    "FlowMatchEulerDiscreteScheduler": SchedulerFacts("flow", "sigmas", "never"),
    # CogVideoX's: DDIM-like updates indexed by the integer timestep, the target being
    # t − 1000//N (scheduling_ddim_cogvideox.py:380-392). Its DDIM takes `eta` but never adds
    # noise; its DPM (SDE-DPM-Solver++ 2M) adds fresh noise every step
    # (scheduling_dpm_cogvideox.py:494-514) and takes (model_output, old_pred_original_sample,
    # timestep, timestep_back, sample) positionally (the hook binds them by name).
    "CogVideoXDDIMScheduler": SchedulerFacts("vp", "alphas", "never"),
    "CogVideoXDPMScheduler": SchedulerFacts("vp", "alphas", "always"),
}
#: Schedulers whose last step targets ``final_alpha_cumprod`` (1 with ``set_alpha_to_one``).
FINAL_ALPHA = ("DDIMScheduler", "CogVideoXDDIMScheduler", "CogVideoXDPMScheduler")
#: UniPC with ``use_flow_sigmas=True, prediction_type="flow_prediction"`` (Wan's own config).
UNIPC_FLOW = SchedulerFacts("flow", "sigmas", "never")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def facts_for(scheduler: Any) -> SchedulerFacts:
    """The facts of ``scheduler``'s class, or a RectifyError naming the supported ones."""
    name = type(scheduler).__name__
    facts = SCHEDULERS.get(name)
    allowed = "one of " + ", ".join(SCHEDULERS)
    if facts is None:
        raise RectifyError("scheduler", name, allowed)
    config = scheduler.config
    if config.get("use_flow_sigmas", False):
        if name != "UniPCMultistepScheduler":
            raise RectifyError(
                "scheduler use_flow_sigmas", True, "False, or UniPCMultistepScheduler"
            )
        if config.get("prediction_type") != "flow_prediction":
            raise RectifyError(
                "scheduler prediction_type",
                config.get("prediction_type"),
                "flow_prediction (with use_flow_sigmas)",
            )
        return UNIPC_FLOW
    if facts.space == "flow":
        if config.get("stochastic_sampling", False):
            raise RectifyError("scheduler stochastic_sampling", True, "False")
        return facts
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise RectifyError("scheduler prediction_type", prediction, ", ".join(PREDICTION_TYPES))
    if getattr(scheduler, "order", 1) != 1:
        raise RectifyError("scheduler order", scheduler.order, f"1 ({allowed})")
    return facts


def fresh_noise_reason(scheduler: Any, facts: SchedulerFacts, step_kwargs: dict) -> str:
    """Why this run adds fresh noise at each step ('' when it does not).

    Fresh noise needs the per-step pivot: a fixed pivot would leave it uncorrected.
    """
    name = type(scheduler).__name__
    if facts.fresh_noise == "always":
        return f"{name} adds fresh noise every step"
    if facts.fresh_noise == "eta":
        eta = float(step_kwargs.get("eta", 0.0) or 0.0)
        return f"{name} with eta = {eta:g} adds fresh noise" if eta > 0 else ""
    if facts.fresh_noise == "algorithm_type":
        algorithm = scheduler.config.get("algorithm_type", "")
        return f"{name} with algorithm_type {algorithm}" if algorithm.startswith("sde-") else ""
    return ""


def step_alphas(
    scheduler: Any, facts: SchedulerFacts, start_index: int, timesteps: torch.Tensor
) -> torch.Tensor:
    """ᾱ of the sample at each step the pipeline will run: float32 on ``timesteps``' device.

    Step ``i`` sits at schedule position ``start_index + i`` (timestep ``timesteps[i]``):
    ᾱ = 1/(1+σ²) from the scheduler's σ table, or its ``alphas_cumprod`` at the timestep.
    Computed where the tables are and copied asynchronously: nothing is read back.
    """
    device = timesteps.device
    if facts.level == "sigmas":
        sigmas = scheduler.sigmas.detach().to(torch.float32)
        values = sigmas[start_index : start_index + timesteps.shape[0]]
        return (1.0 / (1.0 + values * values)).to(device, non_blocking=True)
    table = scheduler.alphas_cumprod.detach().to(torch.float32).to(device, non_blocking=True)
    return table.index_select(0, timesteps.detach().to(torch.long))


def alpha_cumprod(
    scheduler: Any, facts: SchedulerFacts, index: int, timestep: Any, device: torch.device
) -> torch.Tensor:
    """ᾱ of the sample at schedule position ``index`` (timestep ``timestep``), float32 0-d
    on ``device``; for the noising before sampling. Nothing is read back to the host."""
    t = torch.as_tensor(timestep).reshape(1).to(device, non_blocking=True)
    return step_alphas(scheduler, facts, index, t).to(device, non_blocking=True).reshape(())


def ends_short_of_clean(scheduler: Any, facts: SchedulerFacts) -> bool:
    """True when the last step leaves noise in the sample (so the hook lands it).

    DDIM with ``set_alpha_to_one=False`` stops at ᾱ of timestep 0; σ schedulers with
    ``final_sigmas_type="sigma_min"`` stop at σ_min. LCM and DDPM return the clean
    estimate on their last step.
    """
    if type(scheduler).__name__ in FINAL_ALPHA:
        return float(scheduler.final_alpha_cumprod) < 1.0
    if facts.space == "flow" and inverted(scheduler):
        return float(scheduler.sigmas[-1]) < 1.0  # the table holds 1 − σ
    if facts.level == "sigmas":
        return float(scheduler.sigmas[-1]) > 0.0
    return False


def to_vp(sample: torch.Tensor, facts: SchedulerFacts, abar: torch.Tensor) -> torch.Tensor:
    """The scheduler's sample in the VP form the core works in."""
    return sample * abar.sqrt() if facts.space == "ve" else sample


def from_vp(x: torch.Tensor, facts: SchedulerFacts, abar: torch.Tensor) -> torch.Tensor:
    return x / abar.sqrt() if facts.space == "ve" else x


def output_to_eps(
    output: torch.Tensor, x: torch.Tensor, abar: torch.Tensor, prediction: str
) -> torch.Tensor:
    """ε of a model output of ``prediction`` type, for a VP sample ``x`` at ᾱ."""
    if prediction == "epsilon":
        return output
    if prediction == "v_prediction":  # v = √ᾱ·ε − √(1−ᾱ)·x₀  ⇒  ε = √(1−ᾱ)·x + √ᾱ·v
        return (1 - abar).sqrt() * x + abar.sqrt() * output
    return (x - abar.sqrt() * output) / (1 - abar).sqrt()  # "sample": x₀ predicted


def eps_to_output(
    eps: torch.Tensor, x: torch.Tensor, abar: torch.Tensor, prediction: str
) -> torch.Tensor:
    """The inverse of :func:`output_to_eps`."""
    if prediction == "epsilon":
        return eps
    if prediction == "v_prediction":
        return (eps - (1 - abar).sqrt() * x) / abar.sqrt()
    return (x - (1 - abar).sqrt() * eps) / abar.sqrt()


def inverted(scheduler: Any) -> bool:
    """A FlowMatchEuler table that holds ``1 − σ`` (``invert_sigmas=True``, Mochi's config).

    Its step is ``x + (table[i+1] − table[i])·output`` = ``x − (σ_next − σ)·output``, so the
    model output it integrates is ``x0 − n``, minus the flow velocity
    (docs/diffusers-video-pipelines.md §6).
    """
    return bool(scheduler.config.get("invert_sigmas", False))


def flow_sign(scheduler: Any) -> float:
    """+1 when the scheduler integrates the velocity ``v = n − x0``, −1 when ``x0 − n``."""
    return -1.0 if inverted(scheduler) else 1.0


def rescale_flow_schedule(scheduler: Any, sigma_start: float) -> None:
    """Make a flow scheduler's fresh schedule start at ``sigma_start`` instead of 1.

    Right after ``set_timesteps``: every σ is multiplied by ``sigma_start`` (the final 0
    stays 0; an ``invert_sigmas`` table, which holds 1 − σ, is mapped the same way in σ and
    its final 1 stays 1), and ``timesteps`` are the table·``num_train_timesteps`` again, in
    the dtype and on the device the scheduler keeps them (float32 for FlowMatchEuler, int64
    for UniPC). The step and begin indices and UniPC's history were just reset by
    ``set_timesteps``, and the number of steps is unchanged
    (docs/diffusers-video-pipelines.md).
    """
    if float(sigma_start) == 1.0:
        return
    sigmas = scheduler.sigmas
    table = sigmas.to(torch.float64)
    if inverted(scheduler):
        new = (1.0 - (1.0 - table) * float(sigma_start)).to(sigmas.dtype)
    else:
        new = (table * float(sigma_start)).to(sigmas.dtype)
    t = (new[:-1].to(torch.float64) * scheduler.config.num_train_timesteps).to(
        scheduler.timesteps.dtype
    )
    scheduler.sigmas = new
    scheduler.timesteps = t.to(scheduler.timesteps.device)


def step_sigmas(scheduler: Any, start_index: int, count: int, device: torch.device) -> torch.Tensor:
    """σ of each step a flow pipeline will run, float32 on ``device`` (copied asynchronously).

    An ``invert_sigmas`` table holds 1 − σ: σ is read back from it."""
    values = scheduler.sigmas.detach()[start_index : start_index + count].to(torch.float32)
    if inverted(scheduler):
        values = 1.0 - values
    return values.to(device, non_blocking=True)


def flow_equivalent_sigma(abar: float) -> float:
    """The flow σ with the same signal-to-noise ratio as a VP sample at ᾱ.

    ``√ᾱ·Z + √(1−ᾱ)·n`` divided by ``√ᾱ + √(1−ᾱ)`` is the flow sample ``(1−σ)·Z + σ·n`` at
    ``σ = √(1−ᾱ)/(√ᾱ + √(1−ᾱ))``: ᾱ = 0 is σ = 1 (pure noise), ᾱ = 1 is σ = 0.
    """
    a, b = math.sqrt(max(abar, 0.0)), math.sqrt(max(1.0 - abar, 0.0))
    return b / (a + b)


def zero_snr_start(scheduler: Any, facts: SchedulerFacts, first: int, sigma_start: float) -> int:
    """Where a VP schedule that starts at ᾱ = 0 (zero terminal SNR: CogVideoX) must start.

    At ᾱ = 0 the sample is the noise alone and nothing of the picture can be kept (the flow
    σ = 1 case, docs/flow-matching.md). Returns the first schedule position at or after
    ``first`` whose noise level, as the flow σ of the same SNR, is at most ``sigma_start``
    (``first`` itself when its ᾱ is above 0). Read on the host once, before sampling.
    """
    if facts.level != "alphas" or not scheduler.config.get("rescale_betas_zero_snr", False):
        return first  # ᾱ > 0 everywhere (σ tables never reach σ = ∞ in diffusers): no read
    timesteps = scheduler.timesteps
    total = len(timesteps)

    def abar_at(i: int) -> float:  # host reads, once per call of the pipeline
        if facts.level == "sigmas":
            sigma = float(scheduler.sigmas[i])
            return 1.0 / (1.0 + sigma * sigma)
        return float(scheduler.alphas_cumprod[int(timesteps[i])])

    if abar_at(first) > 0.0:
        return first
    name = type(scheduler).__name__
    if float(sigma_start) >= 1.0:
        raise RectifyError(
            "sigma_start",
            sigma_start,
            f"below 1 with {name}: its schedule starts at ᾱ = 0 (zero terminal SNR), pure "
            "noise, where nothing of the picture is left",
        )
    levels = []
    for i in range(first, total):
        level = flow_equivalent_sigma(abar_at(i))
        levels.append(level)
        if level <= float(sigma_start) + 1e-9:
            return i
    raise RectifyError(
        "sigma_start",
        sigma_start,
        f"at least {min(levels):.4g}, the lowest noise level of the {total}-step schedule of "
        f"{name} (as a flow σ)",
    )
