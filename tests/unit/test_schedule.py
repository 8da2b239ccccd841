"""Where a model call sits in a schedule, the ᾱ lookup, and the clean-estimate landing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lib_rectify import Rectifier, RectifyError, RectifyParams
from lib_rectify.noise_math import clean_from_eps, landing_eps
from lib_rectify.schedule import alpha_cumprod_at, step_of_level
from tests.no_float64 import NoFloat64

SIGMAS = [14.6, 7.0, 3.0, 1.0, 0.0]  # 4 steps


@pytest.mark.parametrize(
    ("level", "step"),
    [
        (14.6, 0),  # a step's own level starts it
        (20.0, 0),  # sigma churn above the first level
        (10.0, 0),
        (7.0, 1),
        (7.0 * (1 + 1e-7), 1),  # float noise around a level
        (5.0, 1),
        (1.0, 3),
        (0.5, 3),
        (0.0, 3),  # at or below the last level: the last step
    ],
)
def test_a_call_belongs_to_the_interval_that_holds_its_level(level, step):
    assert step_of_level(SIGMAS, level) == step


def test_timesteps_work_like_sigmas():
    timesteps = [833, 667, 500, 333, 167, 1]  # DDIM's, noisiest first
    assert [step_of_level(timesteps, t) for t in timesteps[:-1]] == [0, 1, 2, 3, 4]


@given(st.lists(st.floats(0.01, 100), min_size=2, max_size=30, unique=True), st.floats(0, 120))
def test_labels_never_decrease_as_the_level_falls(levels, level):
    levels = sorted(levels, reverse=True)
    assert step_of_level(levels, level) >= step_of_level(levels, level + 1.0)
    assert 0 <= step_of_level(levels, level) <= len(levels) - 2


def test_a_schedule_needs_a_step():
    with pytest.raises(RectifyError, match="schedule"):
        step_of_level([1.0], 0.5)


def _table():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    return torch.cumprod(1 - betas, 0)


def test_alpha_is_exact_at_integer_timesteps_and_log_linear_between():
    table = _table()
    got = alpha_cumprod_at(table, torch.tensor([0.0, 500.0, 999.0]))
    assert torch.equal(got, table[[0, 500, 999]])
    between = alpha_cumprod_at(table, torch.tensor([10.5]))
    assert torch.allclose(between, (table[10] * table[11]).sqrt(), rtol=1e-6)
    assert alpha_cumprod_at(table, torch.tensor([2000.0])) == table[-1]  # clamped


def test_alpha_lookup_and_rectification_never_use_float64():
    table, frames = _table().half(), 4
    rect = Rectifier(RectifyParams(enabled=True, tau=(0, 1)), frames=frames, pivot="per_step")
    x = torch.randn(frames, 4, 2, 2).half()
    with NoFloat64():
        abar = alpha_cumprod_at(table, torch.full((frames,), 665.25))
        assert abar.dtype == torch.float32
        rect.capture_pivot_eps(x, clean=x * 0.5, alpha_cumprod=abar)
        eps = rect.rectify_eps(x, step=0, total_steps=2, x=x, alpha_cumprod=abar)
        clean = rect.clean_estimate_eps(eps, x=x, alpha_cumprod=abar)
    assert clean.dtype == torch.float16


def test_clean_estimate_is_where_the_landing_eps_sends_ddim():
    x, eps = torch.randn(3, 4), torch.randn(3, 4)
    abar_t, abar_prev = torch.tensor(0.3), torch.tensor(0.999)
    clean = clean_from_eps(x, eps, abar_t)
    landed = landing_eps(eps, x, abar_t, abar_prev)
    ddim_step = (
        abar_prev.sqrt() * clean_from_eps(x, landed, abar_t) + (1 - abar_prev).sqrt() * landed
    )
    assert torch.allclose(ddim_step, clean, atol=1e-5)


def test_clean_estimate_keeps_layout_dtype_and_checks_shapes():
    rect = Rectifier(RectifyParams(enabled=True), frames=2, layout="video")
    x = torch.randn(1, 4, 2, 3, 3, dtype=torch.float16)
    clean = rect.clean_estimate_eps(x * 0.1, x=x, alpha_cumprod=0.5)
    assert clean.shape == x.shape and clean.dtype == torch.float16
    with pytest.raises(RectifyError, match="x shape"):
        rect.clean_estimate_eps(x, x=x[:, :2], alpha_cumprod=0.5)
