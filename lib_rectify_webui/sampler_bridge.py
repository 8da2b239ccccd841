"""What the core needs from the WebUI's samplers: parameterisation, step count, ᾱ.

Checked against AUTOMATIC1111 stable-diffusion-webui v1.10.1 (commit 82a973c):
- k-diffusion samplers (modules/sd_samplers_kdiffusion.py:134-188, ``sample_img2img``)
  noise the init latent as ``x_T = x + noise·σ_sched[0]`` with
  ``σ_sched = get_sigmas(p, steps)[steps − t_enc − 1:]``, so they take ``t_enc + 1``
  steps; the CFG denoiser returns the denoised x0 (denoiser form).
- Timestep samplers (modules/sd_samplers_timesteps.py:98-139 and
  sd_samplers_timesteps_impl.py): DDIM, DDIM CFG++ and PLMS call the model at
  ``timesteps[:t_enc]`` from the last entry down to the second, i.e. ``t_enc − 1``
  steps; UniPC takes ``len(timesteps[:t_enc])`` steps at continuous timesteps. The
  CFG denoiser returns ε (ε form); ᾱ is ``shared.sd_model.alphas_cumprod``.
- Both call the sampler's ``callback_state({'i': step, ...})`` once per completed
  step (modules/sd_samplers_common.py:256-263), which is how the glue counts steps:
  both model calls of a two-call step (Heun, DPM2, PLMS's first step) come before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

Family = Literal["denoiser", "eps"]


@dataclass(frozen=True)
class SamplerInfo:
    """How one job's sampler talks to the model."""

    name: str
    family: Family
    total_steps: int
    stochastic: bool  # injects fresh noise each step (ancestral / SDE / Restart / DDIM η > 0)


class UnsupportedSampler(Exception):
    pass


def describe_sampler(
    sampler: Any, p: Any, steps: int, t_enc: int, eta_default: float
) -> SamplerInfo:
    """Classify ``p.sampler`` by the classes the WebUI uses (duck-typed on their fields)."""
    config = getattr(sampler, "config", None)
    name = getattr(config, "name", None) or getattr(p, "sampler_name", "?")
    options = dict(getattr(config, "options", None) or {})
    funcname = getattr(sampler, "funcname", "") or ""
    eta = p.eta if getattr(p, "eta", None) is not None else eta_default
    if hasattr(sampler, "get_sigmas"):
        ancestral = (
            bool(options.get("uses_ensd")) and eta != 0
        )  # Euler a, DPM2 a, DPM++ 2S a, DPM fast
        stochastic = (
            ancestral or bool(options.get("brownian_noise")) or name == "Restart"
        )  # SDE, Restart
        return SamplerInfo(name, "denoiser", t_enc + 1, stochastic)
    if hasattr(sampler, "get_timesteps"):
        total = t_enc if funcname == "unipc" else t_enc - 1
        stochastic = funcname in ("ddim", "ddim_cfgpp") and eta != 0
        return SamplerInfo(name, "eps", total, stochastic)
    raise UnsupportedSampler(name)


def alpha_cumprod_at(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """ᾱ at (possibly fractional) model timesteps, log-linear between integers.

    Integer timesteps (DDIM, PLMS) index exactly; UniPC's continuous timesteps are
    interpolated the way its discrete noise schedule does (in log ᾱ).
    """
    table = alphas_cumprod.detach().to(device=timesteps.device, dtype=torch.float64)
    t = timesteps.detach().to(torch.float64).clamp(0, table.numel() - 1)
    low = t.floor().long()
    high = (low + 1).clamp(max=table.numel() - 1)
    frac = t - low
    log_abar = table[low].log() * (1 - frac) + table[high].log() * frac
    return log_abar.exp().to(torch.float32)
