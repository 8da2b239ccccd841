"""How the glue classifies the WebUI's samplers (shapes of WebUI v1.10.1's sampler objects)."""

from __future__ import annotations

import types

import pytest
import torch

from lib_rectify_webui.sampler_bridge import UnsupportedSampler, alpha_cumprod_at, describe_sampler


def _kdiff(name, options=None):
    return types.SimpleNamespace(
        config=types.SimpleNamespace(name=name, options=options or {}), get_sigmas=None
    )


def _timesteps(funcname):
    return types.SimpleNamespace(
        config=types.SimpleNamespace(name=funcname, options={}),
        funcname=funcname,
        get_timesteps=None,
    )


P = types.SimpleNamespace(eta=None, sampler_name="?")


@pytest.mark.parametrize(
    ("sampler", "eta", "family", "total", "stochastic"),
    [
        (_kdiff("Euler"), 1.0, "denoiser", 20, False),
        (_kdiff("Euler a", {"uses_ensd": True}), 1.0, "denoiser", 20, True),
        (
            _kdiff("Euler a", {"uses_ensd": True}),
            0.0,
            "denoiser",
            20,
            False,
        ),  # η = 0: deterministic
        (_kdiff("DPM++ 2M SDE", {"brownian_noise": True}), 1.0, "denoiser", 20, True),
        (_kdiff("Restart", {"second_order": True}), 1.0, "denoiser", 20, True),
        (_timesteps("ddim"), 0.0, "eps", 18, False),
        (_timesteps("ddim"), 0.5, "eps", 18, True),
        (_timesteps("plms"), 0.0, "eps", 18, False),
        (_timesteps("unipc"), 0.0, "eps", 19, False),
    ],
)
def test_sampler_families_step_counts_and_noise(sampler, eta, family, total, stochastic):
    info = describe_sampler(sampler, P, steps=20, t_enc=19, eta_default=eta)
    assert (info.family, info.total_steps, info.stochastic) == (family, total, stochastic)


def test_unknown_sampler_is_reported():
    with pytest.raises(UnsupportedSampler):
        describe_sampler(types.SimpleNamespace(), P, steps=20, t_enc=19, eta_default=0.0)


def test_alpha_cumprod_is_exact_at_integer_timesteps_and_log_linear_between():
    table = torch.linspace(0.99, 0.01, 1000, dtype=torch.float64)
    got = alpha_cumprod_at(table, torch.tensor([0.0, 500.0, 999.0]))
    assert torch.allclose(got.double(), table[[0, 500, 999]], rtol=1e-6)
    mid = alpha_cumprod_at(table, torch.tensor([10.5]))
    assert torch.allclose(mid.double(), (table[10] * table[11]).sqrt(), rtol=1e-6)
