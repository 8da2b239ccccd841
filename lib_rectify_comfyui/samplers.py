"""How each ComfyUI sampler walks its σ schedule: the step of every model call, and
whether the sampler adds fresh noise.

Read from ComfyUI v0.12.1 (``comfy/samplers.py``, ``comfy/k_diffusion/sampling.py``,
``comfy/extra_samplers/uni_pc.py``; the hiddenswitch pip-installable fork at 87606c5f,
which carries upstream 3be0175). A sampler is a ``KSAMPLER`` whose ``sampler_function``
is called with the schedule ``sigmas`` (σ_0 > … > σ_N) and a progress callback
(samplers.py:728-753). Every function calls the model at σ_i first (σ̂_i ≥ σ_i with
churn) and then the callback for step i (e.g. sampling.py:233-236). What differs:

- Calls that a step makes *between* σ_i and σ_(i+1) (DPM2's midpoint, DPM++ 2S's and
  SDE's ``s``, SEEDS' stages, SA-Solver's PECE re-evaluation at σ_i) are told apart by
  their noise level alone.
- Calls at σ_(i+1) or below that still belong to step i come after the callback:
  DPM2 a and DPM++ 2S a aim their second call at the ancestral σ_down (below σ_(i+1))
  unless σ_down = 0;
  Heun (sampling.py:312-323) and exp_heun_2_x0 (SEEDS-2 with r = 1, :1594-1660) make one
  unless σ_(i+1) = 0; Heun++ (:1055-1110) makes one more at σ_(i+1) unless σ_(i+1) is
  the last level, and one more at σ_(i+2) unless σ_(i+2) is.
- DPM fast / adaptive (samplers.py:756-777) choose their own points between σ_0 and the
  last non-zero σ and stop there, short of clean; UniPC (uni_pc.py:846-870) ends at
  σ = 0.001. Their result is landed on the last clean estimate.
- ``ddim`` is Euler (samplers.py:1102-1111).
- Flow (``CONST``) models: euler_ancestral, dpm_2_ancestral and dpmpp_2s_ancestral hand
  over to their ``_RF`` forms (sampling.py:244-246, 367-369, 674-676). dpm_2_ancestral_RF
  makes its second call unless its own σ_down = σ_(i+1)·(1 + (σ_(i+1)/σ_i − 1)·eta) is 0
  (:399-431); dpmpp_2s_ancestral_RF whenever σ_(i+1) > 0 (:712-760). Both come after the
  callback, as in the VE forms; the CFG++ form has no RF branch (:1322-1362).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lib_rectify import RectifyError
from lib_rectify.schedule import LevelSteps, ancestral_sigma_down, host_levels, sampler_option

#: One model call per step, or extra calls strictly inside the step's interval.
_BY_LEVEL = {
    "sample_euler",
    "sample_euler_ancestral",
    "sample_euler_cfg_pp",
    "sample_euler_ancestral_cfg_pp",
    "sample_dpm_2",
    "sample_lms",
    "sample_dpmpp_sde",
    "sample_dpmpp_sde_gpu",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_cfg_pp",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_2m_sde_gpu",
    "sample_dpmpp_2m_sde_heun",
    "sample_dpmpp_2m_sde_heun_gpu",
    "sample_dpmpp_3m_sde",
    "sample_dpmpp_3m_sde_gpu",
    "sample_ddpm",
    "sample_lcm",
    "sample_ipndm",
    "sample_ipndm_v",
    "sample_deis",
    "sample_res_multistep",
    "sample_res_multistep_cfg_pp",
    "sample_res_multistep_ancestral",
    "sample_res_multistep_ancestral_cfg_pp",
    "sample_gradient_estimation",
    "sample_gradient_estimation_cfg_pp",
    "sample_er_sde",
    "sample_seeds_2",
    "sample_seeds_3",
    "sample_sa_solver",
    "sample_sa_solver_pece",
    "sample_unipc",
    "sample_unipc_bh2",
}
#: Ancestral two-call steps: the second call aims at σ_down < σ_(i+1) and may fall below
#: σ_(i+1); it comes after the callback, unless σ_down = 0 (sampling.py:367-397, 674-710).
_ANCESTRAL_PAIRS = {
    "sample_dpm_2_ancestral",
    "sample_dpmpp_2s_ancestral",
    "sample_dpmpp_2s_ancestral_cfg_pp",
}
#: Extra calls at σ_(i+1) and below, after step i's callback.
_AFTER_CALLBACK = {
    "sample_heun",
    "sample_heunpp2",
    "sample_exp_heun_2_x0",
    "sample_exp_heun_2_x0_sde",
    *_ANCESTRAL_PAIRS,
}
_OWN_GRID = {"dpm_fast_function", "dpm_adaptive_function"}
_ENDS_SHORT = _OWN_GRID | {"sample_unipc", "sample_unipc_bh2"}
_CHURN = {"sample_euler", "sample_heun", "sample_dpm_2", "sample_heunpp2"}
#: Add eta-scaled fresh noise every step (eta ≠ 0 and s_noise ≠ 0).
_ETA = {
    "sample_euler_ancestral",
    "sample_euler_ancestral_cfg_pp",
    "sample_dpm_2_ancestral",
    "sample_dpmpp_2s_ancestral",
    "sample_dpmpp_2s_ancestral_cfg_pp",
    "sample_dpmpp_sde",
    "sample_dpmpp_sde_gpu",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_2m_sde_gpu",
    "sample_dpmpp_2m_sde_heun",
    "sample_dpmpp_2m_sde_heun_gpu",
    "sample_dpmpp_3m_sde",
    "sample_dpmpp_3m_sde_gpu",
    "sample_res_multistep_ancestral",
    "sample_res_multistep_ancestral_cfg_pp",
    "sample_seeds_2",
    "sample_seeds_3",
    "sample_exp_heun_2_x0_sde",
}
#: Fresh noise whenever s_noise ≠ 0.
_S_NOISE = {"sample_er_sde", "sample_sa_solver", "sample_sa_solver_pece"}
_ALWAYS = {"sample_ddpm": "DDPM", "sample_lcm": "LCM"}
#: Step along the unconditional prediction, which the post-CFG hook cannot change.
_CFG_PP = {
    "sample_euler_cfg_pp",
    "sample_euler_ancestral_cfg_pp",
    "sample_dpmpp_2s_ancestral_cfg_pp",
    "sample_dpmpp_2m_cfg_pp",
    "sample_res_multistep_cfg_pp",
    "sample_res_multistep_ancestral_cfg_pp",
    "sample_gradient_estimation_cfg_pp",
}
KNOWN = _BY_LEVEL | _AFTER_CALLBACK | _OWN_GRID


@dataclass(frozen=True)
class SamplerPlan:
    """One sampling run's sampler, as the rectifier needs to see it."""

    function: str  # the sampler function's name, e.g. "sample_euler"
    levels: tuple[float, ...]  # the σ schedule of this run, noisiest first
    total_steps: int
    stochastic: str | None  # why the run needs the per-step pivot, or None
    ends_short_of_clean: bool  # it stops above σ = 0: land the result
    eta: float = 1.0
    flow: bool = False  # a CONST (flow-matching) model: the ancestral samplers' RF forms

    def calls_after_callback(self, step: int) -> int:
        """How many more calls step ``step`` makes after its progress callback."""
        levels, last = self.levels, len(self.levels) - 1
        if self.function not in _AFTER_CALLBACK or step + 1 > last:
            return 0
        if self.function in _ANCESTRAL_PAIRS:
            here, after = levels[step], levels[step + 1]
            if self.flow and self.function == "sample_dpmpp_2s_ancestral":
                return 1 if after > 0 else 0
            if self.flow and self.function == "sample_dpm_2_ancestral":
                return 1 if after * (1 + (after / here - 1) * self.eta) != 0 else 0
            return 1 if ancestral_sigma_down(here, after, self.eta) > 0 else 0
        if self.function == "sample_heunpp2":  # sampling.py:1071-1098
            end = levels[-1]
            if levels[step + 1] == end:
                return 0
            return 1 if step + 2 > last or levels[step + 2] == end else 2
        return 0 if levels[step + 1] == 0 else 1


def plan_sampler(
    sampler: Any, sigmas: torch.Tensor | Sequence[float], *, flow: bool = False
) -> SamplerPlan:
    """Describe the ``KSAMPLER`` about to run over ``sigmas`` (of a flow model when
    ``flow``); refuse what cannot be exact."""
    function = getattr(sampler, "sampler_function", None)
    name = getattr(function, "__name__", "") or type(sampler).__name__
    options = dict(getattr(sampler, "extra_options", {}) or {})
    levels = host_levels(sigmas)
    total = len(levels) - 1
    if total < 1:
        raise RectifyError("steps", total, "at least one sampling step")
    if levels[-1] > 0 and name not in _ENDS_SHORT:
        raise RectifyError(
            "last σ of the schedule",
            round(levels[-1], 6),
            "0: this sampling stops with noise left for another pass (KSamplerAdvanced "
            "return_with_leftover_noise, or split sigmas); rectification needs the video "
            "sampled in one pass, so turn return_with_leftover_noise off",
        )
    stochastic: str | None = None
    short = function.__name__.removeprefix("sample_") if function is not None else name
    if function is None or name not in KNOWN:
        stochastic = f"a sampler this node does not know ({name}): approximate"
    elif name in _ALWAYS:
        stochastic = f"{_ALWAYS[name]} adds fresh noise after every step"
    elif name in _CFG_PP:
        stochastic = f"{short} steps along the unconditional prediction (CFG++)"
    elif name in _ETA:
        eta = sampler_option(function, options, "eta", 1.0)
        s_noise = sampler_option(function, options, "s_noise", 1.0)
        if eta != 0 and s_noise != 0:
            stochastic = f"{short} with eta = {eta:g} adds fresh noise every step"
    elif name in _S_NOISE and sampler_option(function, options, "s_noise", 1.0) != 0:
        stochastic = f"{short} adds fresh noise every step"
    if name in _CHURN and sampler_option(function, options, "s_churn", 0.0) > 0:
        stochastic = "sigma churn above 0 re-noises every step"
    if name == "sample_seeds_2" and sampler_option(function, options, "r", 0.5) >= 1:
        raise RectifyError("seeds_2 r", options.get("r"), "below 1 (r = 1 is exp_heun_2_x0)")
    return SamplerPlan(
        function=name,
        levels=levels,
        total_steps=total,
        stochastic=stochastic,
        ends_short_of_clean=name in _ENDS_SHORT,
        eta=sampler_option(function, options, "eta", 1.0) if function is not None else 1.0,
        flow=flow,
    )


class CallLabeler:
    """Labels each model call of one run with its step, without reading σ on the host.

    A label from the call's noise level is a 0-d tensor on σ's device
    (:class:`~lib_rectify.schedule.LevelSteps`); a call that the sampler makes after a
    step's callback and that still belongs to that step gets that step's label.
    """

    def __init__(self, plan: SamplerPlan) -> None:
        self.plan = plan
        self.calls = 0
        self.last_label: int | torch.Tensor = 0
        self._same_step_due = 0
        self._lookup: LevelSteps | None = None

    def label(self, sigma: torch.Tensor) -> int | torch.Tensor:
        if self._same_step_due > 0:
            self._same_step_due -= 1
            label = self.last_label
        else:
            if self._lookup is None:
                self._lookup = LevelSteps(self.plan.levels, sigma.device)
            label = self._lookup.step(sigma.detach().max())
        self.calls += 1
        self.last_label = label
        return label

    def progress(self, step: int) -> None:
        """The sampler's progress callback for step ``step`` (a host int)."""
        self._same_step_due = self.plan.calls_after_callback(int(step))
