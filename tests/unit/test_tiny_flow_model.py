"""The shipped flow-matching tiny model and its Euler sampler (bench/tinyvideo/flow_samplers.py).

Behaviour of rectification on a flow model, on real trained weights: a still window from
σ_start < 1 returns the picture exactly, from σ_start = 1 it cannot (the start latent
carries nothing of the picture); the paper's window beats SDEdit from the same start;
disabled rectification is plain sampling, bit for bit; and the sampler is the Euler
update on the shifted schedule, checked against a hand computation. ~20 s on one core.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from bench.fidelity import paired_noise
from bench.metrics import video_metrics
from bench.tinyvideo import data
from bench.tinyvideo.flow_samplers import flow_sample, flow_sigmas, start_latent
from bench.tinyvideo.model_io import config_path, load_model
from bench.tinyvideo.samplers import repeat_reference
from bench.tinyvideo.train import FLOW_WEIGHTS
from lib_rectify import Rectifier, RectifyParams

REFS, STEPS = 8, 12


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    model, _ = load_model(FLOW_WEIGHTS)
    return model


@pytest.fixture(scope="module")
def pictures():
    _, references = data.held_out_references(REFS)
    noise = paired_noise(REFS, 1, (3, 8, 16, 16))
    return references, noise


def _rect(omega="paper", tau=(0.0, 0.6), layout="video", enabled=True) -> Rectifier:
    params = RectifyParams(enabled=enabled, omega=omega, tau=tau, reference_frame=0)
    return Rectifier(params, frames=8, layout=layout)


def _psnr(videos: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    return video_metrics(videos, references)["psnr_nonref"]


# ------------------------------------------------------------------ the shipped artefact
def test_shipped_flow_weights_are_small_and_documented() -> None:
    assert FLOW_WEIGHTS.stat().st_size <= 5 * 1024 * 1024
    record = json.loads(config_path(FLOW_WEIGHTS).read_text())
    for key in ("seed", "steps", "train_seconds", "final_train_loss", "heldout_v_mse_ema"):
        assert key in record, key
    assert record["steps"] == 3000 and record["seed"] == 0
    assert record["schedule"]["prediction"] == "velocity"
    assert "--objective flow" in record["command"]


def test_model_predicts_the_velocity_far_better_than_zero(model) -> None:
    clean = data.make_clips(8, seed=987_654_000_123)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0])
    s = sigma.view(-1, 1, 1, 1, 1)
    with torch.no_grad():
        v = model((1 - s) * clean + s * noise, sigma * 1000)
    target = noise - clean
    # predicting zero scores E|n − x0|² (> 1); the shipped model is far below
    assert torch.nn.functional.mse_loss(v, target) < 0.5 * target.pow(2).mean()


# ------------------------------------------------------------------ the sampler itself
def test_flow_sigmas_are_the_shifted_schedule() -> None:
    assert flow_sigmas(2) == pytest.approx([1.0, 0.75, 0.0])  # 3·0.5 / (1 + 2·0.5)
    assert flow_sigmas(2, sigma_start=0.8) == pytest.approx([0.8, 0.6, 0.0])
    assert flow_sigmas(4, shift=1.0) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    sig = flow_sigmas(25, sigma_start=0.95)
    assert sig[0] == pytest.approx(0.95) and sig[-1] == 0.0
    assert all(a > b for a, b in itertools.pairwise(sig))


class _Recorder(torch.nn.Module):
    """A velocity "model" that records its inputs and returns a fixed function of them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), t.clone()))
        return 0.3 * x - 0.1 * x.roll(1, dims=2) + t.view(-1, 1, 1, 1, 1) / 1000


def test_sampler_is_euler_on_the_shifted_schedule_by_hand() -> None:
    noise = torch.randn(2, 3, 8, 4, 4, generator=torch.Generator().manual_seed(1))
    picture = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    for reference in (None, picture):
        fake = _Recorder()
        out = flow_sample(fake, noise, reference=reference, steps=2, sigma_start=0.8)
        z = 0 if reference is None else repeat_reference(picture, 8)
        x = 0.2 * z + 0.8 * noise  # (1 − σ_start)·Z + σ_start·n
        assert torch.equal(fake.calls[0][0], x)
        assert fake.calls[0][1].tolist() == pytest.approx([800.0, 800.0])
        x = x + (0.6 - 0.8) * fake(x, torch.full((2,), 800.0))
        assert torch.allclose(fake.calls[1][0], x, atol=1e-6)
        assert fake.calls[1][1].tolist() == pytest.approx([600.0, 600.0])
        x = x + (0.0 - 0.6) * fake(x, torch.full((2,), 600.0))
        assert torch.allclose(out, x, atol=1e-6)


def test_no_reference_from_sigma_one_is_pure_noise(model, pictures) -> None:
    references, noise = pictures
    assert torch.equal(start_latent(noise, None, 1.0), noise)
    # σ_start 1 with the picture: (1 − 1)·Z + n is the noise alone, so SDEdit is no reference
    a = flow_sample(model, noise[:2], reference=None, steps=3)
    b = flow_sample(model, noise[:2], reference=references[:2], steps=3)
    assert torch.equal(a, b)


@pytest.mark.parametrize("layout", ["video", "frames"])
def test_disabled_or_empty_window_is_plain_sampling_bit_for_bit(model, pictures, layout) -> None:
    references, noise = pictures
    plain = flow_sample(model, noise[:2], reference=references[:2], steps=4, sigma_start=0.9)
    for rect in (_rect(enabled=False, layout=layout), _rect(tau=(0.5, 0.5), layout=layout)):
        again = flow_sample(
            model, noise[:2], reference=references[:2], steps=4, sigma_start=0.9, rectifier=rect
        )
        assert torch.equal(plain, again)


def test_both_layouts_give_the_same_rectified_video(model, pictures) -> None:
    references, noise = pictures
    a, b = (
        flow_sample(
            model,
            noise[:2],
            reference=references[:2],
            steps=4,
            sigma_start=0.95,
            rectifier=_rect(layout=layout),
        )
        for layout in ("video", "frames")
    )
    assert torch.allclose(a, b, atol=1e-5)
    plain = flow_sample(model, noise[:2], reference=references[:2], steps=4, sigma_start=0.95)
    assert (a - plain).abs().max() > 0.05  # rectification did something


# ------------------------------------------------------------------ rectification on flow
@pytest.mark.parametrize("sigma_start", [0.99, 0.95, 0.9])
def test_still_window_from_below_one_returns_the_picture_exactly(
    model, pictures, sigma_start
) -> None:
    references, noise = pictures
    video = flow_sample(
        model,
        noise,
        reference=references,
        steps=STEPS,
        sigma_start=sigma_start,
        rectifier=_rect("still", (0.0, 1.0)),
    )
    assert (video - references[:, :, None]).abs().max() < 1e-4


def test_still_window_from_sigma_one_cannot_return_the_picture(model, pictures) -> None:
    """The documented singularity: at σ = 1 the input, and so the pivot, hold no picture."""
    references, noise = pictures
    video = flow_sample(
        model, noise, reference=references, steps=STEPS, rectifier=_rect("still", (0.0, 1.0))
    )
    assert (video - references[:, :, None]).abs().max() > 0.5
    assert float(_psnr(video, references).mean()) < 20.0


@pytest.mark.parametrize("sigma_start", [0.99, 0.95, 0.9])
@pytest.mark.parametrize("omega", ["paper", "free"])
def test_paper_window_beats_sdedit_from_the_same_start(model, pictures, sigma_start, omega) -> None:
    references, noise = pictures
    kwargs = dict(reference=references, steps=STEPS, sigma_start=sigma_start)
    sdedit = _psnr(flow_sample(model, noise, **kwargs), references)
    rect = _psnr(flow_sample(model, noise, rectifier=_rect(omega), **kwargs), references)
    assert float((rect - sdedit).mean()) >= 3.0, (float(rect.mean()), float(sdedit.mean()))
    assert float((rect > sdedit).float().mean()) >= 0.75  # not carried by a few pictures


def test_training_command_trains_a_flow_model(tmp_path) -> None:
    from bench.tinyvideo import train

    out = tmp_path / "flow.safetensors"
    record = train.main(
        ["--objective", "flow", "--steps", "2", "--batch", "2", "--seed", "3", "--out", str(out)]
    )
    saved = json.loads(config_path(out).read_text())
    assert saved["schedule"]["prediction"] == "velocity" and saved["steps"] == 2
    assert saved["heldout_v_mse_ema"] > 0 and record["seed"] == 3
    loaded, _ = load_model(out)
    assert sum(p.numel() for p in loaded.parameters()) == saved["parameters"]
