"""How each WebUI sampler walks its schedule: which step a model call belongs to, and
whether the sampler adds fresh noise.

The glue wraps the sampler's own function (``p.sampler.func``) for one batch, so it sees
the exact arguments the WebUI passes (``sigmas``, ``timesteps``, ``eta``, ``s_churn``, …)
and the progress callbacks, instead of re-deriving them. Checked against AUTOMATIC1111
stable-diffusion-webui v1.10.1 (82a973c), its k-diffusion pin ab527a9 (identical to
PyPI ``k-diffusion==0.0.16``) and sd-webui-animatediff a88e889:

- k-diffusion samplers (modules/sd_samplers_kdiffusion.py:134-188) get ``sigmas`` =
  the img2img tail of the schedule, ``σ_0 > … > σ_N = 0``; step i goes from σ_i to
  σ_(i+1). Every function calls the model at σ_i (σ̂_i ≥ σ_i with sigma churn) and
  then the progress callback (k_diffusion/sampling.py, e.g. 128-131). Heun, DPM2,
  DPM2 a, DPM++ 2S a and DPM++ SDE make a second call *after* that callback, at σ_(i+1)
  or between (sampling.py:180, 212, 240, 534, 573); the WebUI's Restart does the same
  in each of its Heun steps (modules/sd_samplers_extra.py:17-35), whose callback
  carries the step's target σ. DPM fast / adaptive get only ``sigma_min``,
  ``sigma_max`` and ``n`` (sd_samplers_kdiffusion.py:155-161) and choose their own
  evaluation points (sampling.py:388-479). LCM (modules/sd_samplers_lcm.py:66-80)
  calls once per step and re-noises after it.
- Timestep samplers (modules/sd_samplers_timesteps.py:98-139,
  sd_samplers_timesteps_impl.py) get ``timesteps`` = the first ``t_enc`` entries of
  an ascending grid; DDIM and DDIM CFG++ call the model at the last entry down to the
  second (``t_enc − 1`` steps, ending at timestep 1, short of clean); PLMS adds a second
  call at the next timestep in its first step, before that step's callback
  (impl.py:117-120); UniPC (impl.py:145-177, models/diffusion/uni_pc/uni_pc.py:746-799)
  makes ``t_enc`` steps on its own continuous grid with exactly one call per step, the
  corrector call of step k coming before step k−1's callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from lib_rectify import RectifyError
from lib_rectify.schedule import LevelSteps, ancestral_sigma_down, host_levels, sampler_option

Family = Literal["denoiser", "eps"]
#: How the calls of one step are told apart from the next step's:
#: ``"level"``: by noise level alone; ``"after_callback"``: the call right after a step's
#: callback is that step's second call (when it makes one); ``"plms"``: the second call
#: before the first callback belongs to step 0; ``"one_per_step"``: call k is step k.
Pairing = Literal["level", "after_callback", "plms", "one_per_step"]

_TWO_CALL = {
    "sample_heun",
    "sample_dpm_2",
    "sample_dpm_2_ancestral",
    "sample_dpmpp_2s_ancestral",
    "sample_dpmpp_sde",
    "restart_sampler",
}
_ONE_CALL = {
    "sample_euler",
    "sample_euler_ancestral",
    "sample_lms",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m_sde",
    "sample_lcm",
}
_OWN_GRID = {"sample_dpm_fast", "sample_dpm_adaptive"}
_TIMESTEP = {"ddim", "ddim_cfgpp", "plms", "unipc"}
_CHURN = {"sample_euler", "sample_heun", "sample_dpm_2"}  # sigma churn (s_churn) applies
_ETA_NOISE = {  # add eta·s_noise-scaled fresh noise every step when eta ≠ 0
    "sample_euler_ancestral": "ancestral",
    "sample_dpm_2_ancestral": "ancestral",
    "sample_dpmpp_2s_ancestral": "ancestral",
    "sample_dpm_fast": "ancestral",
    "sample_dpm_adaptive": "ancestral",
    "sample_dpmpp_sde": "SDE",
    "sample_dpmpp_2m_sde": "SDE",
    "sample_dpmpp_3m_sde": "SDE",
}
#: Restart re-noises once its schedule has this many steps (sd_samplers_extra.py:37-48).
RESTART_MIN_STEPS = 20


@dataclass(frozen=True)
class SamplerPlan:
    """One batch's sampler, as the rectifier needs to see it."""

    name: str  # the WebUI's sampler name, for messages
    function: str  # the sampling function's name
    family: Family  # denoiser form (returns x0) or ε form
    levels: tuple[float, ...]  # noise levels from the noisiest down (σ or timestep); may be ()
    total_steps: int
    pairing: Pairing
    stochastic: str | None  # why the sampler adds fresh noise, or None
    ends_short_of_clean: bool  # its last step stops at a noisy level: land the result
    rectify_uncond: bool  # DDIM CFG++ steps along the saved unconditional ε as well
    eta: float

    def second_call_follows(self, progress: dict[str, Any]) -> bool:
        """After a step's callback: will that step call the model once more?"""
        if self.function == "restart_sampler":
            # Every Heun step makes its second call unless it ends at σ = 0, and only the
            # last one does (sd_samplers_extra.py:25-31, 52-63: restart segments stop above
            # 0): after that callback no call follows at all. No need to read its σ.
            return True
        i = int(progress["i"])
        if i + 1 >= len(self.levels):
            return False
        here, below = self.levels[i], self.levels[i + 1]
        if self.function in ("sample_dpm_2_ancestral", "sample_dpmpp_2s_ancestral"):
            return ancestral_sigma_down(here, below, self.eta) > 0
        return below > 0


def plan_sampler(
    sampler: Any,
    function: Callable,
    kwargs: dict[str, Any],
    kdiffusion_schedule: Callable[[], Sequence[float]],
) -> SamplerPlan:
    """Describe the sampling function the WebUI is about to call with ``kwargs``.

    ``kdiffusion_schedule`` returns the img2img σ tail the WebUI computed
    (sd_samplers_kdiffusion.py:135-138); it is only asked for by DPM fast / adaptive,
    which receive no schedule of their own.
    """
    config = getattr(sampler, "config", None)
    name = str(getattr(config, "name", None) or getattr(function, "__name__", "?"))
    function_name = getattr(function, "__name__", "") or ""
    if hasattr(sampler, "get_sigmas"):
        family: Family = "denoiser"
    elif hasattr(sampler, "get_timesteps"):
        family = "eps"
    else:
        raise RectifyError(
            "sampler",
            name,
            "a sampler the WebUI builds on k-diffusion or on timesteps (this one is neither)",
        )
    eta = sampler_option(function, kwargs, "eta", 0.0)
    s_noise = sampler_option(function, kwargs, "s_noise", 1.0)
    known = function_name in _ONE_CALL | _TWO_CALL | _OWN_GRID | _TIMESTEP
    stochastic: str | None = None

    if "sigmas" in kwargs:
        levels = host_levels(kwargs["sigmas"])
    elif "timesteps" in kwargs:
        levels = tuple(reversed(host_levels(kwargs["timesteps"])))
    elif function_name in _OWN_GRID:
        levels = host_levels(kdiffusion_schedule())
    else:
        raise RectifyError(
            "sampler",
            name,
            "a sampler whose noise schedule the glue can read (its function gets no "
            "'sigmas' or 'timesteps')",
        )

    pairing: Pairing = "level"
    ends_short = False
    if family == "eps":
        if function_name == "unipc":
            pairing, total = "one_per_step", len(levels)
        else:
            pairing, total = ("plms" if function_name == "plms" else "level"), len(levels) - 1
        ends_short = True  # DDIM / PLMS end at timestep 1, UniPC at t = 1/1000
        if function_name in ("ddim", "ddim_cfgpp") and eta != 0:
            stochastic = f"DDIM with η = {eta:g} adds fresh noise every step"
    else:
        total = len(levels) - 1
        if function_name in _TWO_CALL:
            pairing = "after_callback"
        if function_name in _OWN_GRID:
            ends_short = True  # they stop at sigma_min = σ_(N−1) > 0
        elif levels and levels[-1] > 0:
            ends_short = True
        if function_name in _CHURN and sampler_option(function, kwargs, "s_churn", 0.0) > 0:
            stochastic = "sigma churn above 0 re-noises every step"
        kind = _ETA_NOISE.get(function_name)
        if kind and eta != 0 and s_noise != 0:
            stochastic = f"{kind} sampler with η = {eta:g} adds fresh noise every step"
        if function_name == "sample_lcm" and total > 1:
            stochastic = "LCM adds fresh noise after every step"
        if function_name == "restart_sampler":
            restarts = kwargs.get("restart_list")
            if (restarts is None and total >= RESTART_MIN_STEPS) or restarts:
                stochastic = "Restart goes back up in noise with fresh noise"
    if not known:
        stochastic = f"a sampler this extension does not know ({function_name or name})"
    if total < 1:
        raise RectifyError(
            "sampling steps",
            total,
            f"at least one: {name} runs {total} with these settings (DDIM and PLMS run "
            "one step fewer than set, img2img fewer at strength < 1); raise the steps",
        )
    return SamplerPlan(
        name=name,
        function=function_name,
        family=family,
        levels=levels,
        total_steps=total,
        pairing=pairing,
        stochastic=stochastic,
        ends_short_of_clean=ends_short,
        rectify_uncond=function_name == "ddim_cfgpp",
        eta=eta,
    )


class CallLabeler:
    """Labels each model call of one batch with the step it belongs to (see module doc).

    A label from the call's noise level is looked up on the level's device
    (:class:`~lib_rectify.schedule.LevelSteps`, a 0-d tensor): reading the level on the
    host would make every model call wait for the GPU. Labels from counting are ints.
    """

    def __init__(self, plan: SamplerPlan) -> None:
        self.plan = plan
        self.calls = 0
        self.callbacks = 0
        self.last_label: int | torch.Tensor = 0
        self._second_call_due = False
        self._lookup: LevelSteps | None = None

    def label(self, level: torch.Tensor) -> int | torch.Tensor:
        """The step of a call at noise level ``level`` (the sampler's σ or timestep tensor)."""
        plan = self.plan
        if plan.pairing == "one_per_step":
            label: int | torch.Tensor = min(self.calls, plan.total_steps - 1)
        elif self._second_call_due:
            label = self.last_label
        elif plan.pairing == "plms" and self.calls == 1 and self.callbacks == 0:
            label = self.last_label
        else:
            if self._lookup is None:
                self._lookup = LevelSteps(plan.levels, level.device)
            label = self._lookup.step(level.detach().max())
        self._second_call_due = False
        self.calls += 1
        self.last_label = label
        return label

    def progress(self, info: dict[str, Any]) -> None:
        """The sampler's progress callback (one per completed step, or solver step)."""
        self.callbacks += 1
        if self.plan.pairing == "after_callback":
            self._second_call_due = self.plan.second_call_follows(info)
