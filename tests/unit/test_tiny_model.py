"""The shipped tiny video model as a fidelity instrument (bench/tinyvideo).

Orderings with margins, never absolute values: the paper's claims (Sec. 4.2, Fig. 6)
checked on a real trained model, with both sampler families calling `lib_rectify` the
way the WebUI glue does. A fast subset of `python -m bench.fidelity` (~30 s on 1 core).
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from bench.fidelity import Config, generate, paired_noise
from bench.metrics import video_metrics
from bench.tinyvideo import data
from bench.tinyvideo.model_io import DEFAULT_WEIGHTS, config_path, load_model
from bench.tinyvideo.samplers import SAMPLERS, sample
from bench.tinyvideo.schedule import sampler_timesteps, scaled_linear_alphas_cumprod
from lib_rectify import Rectifier, RectifyParams

REFS, SEEDS, STEPS = 8, 2, 10
PAPER_DEFAULT = Config("rect", (0.0, 0.6), "paper")
CONFIGS = [
    Config("sdedit"),
    *[Config("rect", (0.0, end), omega) for omega in ("paper", "still") for end in (0.2, 0.6, 1.0)],
    Config("rect", (0.6, 1.0), "paper"),
]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    model, _ = load_model()
    return model


@pytest.fixture(scope="module")
def runs(model):
    """Videos and non-reference-frame PSNR per (sampler, config), paired noise."""
    clips, references = data.held_out_references(REFS)
    noise = paired_noise(REFS, SEEDS, tuple(clips.shape[1:]))
    refs = references.repeat(SEEDS, 1, 1, 1)
    out = {}
    for sampler in SAMPLERS:
        for config in CONFIGS:
            videos = generate(model, config, clips, refs, noise, sampler=sampler, steps=STEPS)
            out[sampler, config.label] = (videos, video_metrics(videos, refs)["psnr_nonref"])
    return refs, out


def _psnr(runs, sampler: str, config: Config) -> float:
    return float(runs[1][sampler, config.label][1].mean())


# ------------------------------------------------------------------ the shipped artefact
def test_shipped_weights_are_small_and_documented() -> None:
    assert DEFAULT_WEIGHTS.stat().st_size <= 5 * 1024 * 1024
    record = json.loads(config_path(DEFAULT_WEIGHTS).read_text())
    for key in (
        "seed",
        "steps",
        "train_seconds",
        "final_train_loss",
        "heldout_eps_mse_ema",
        "command",
        "unet",
        "data",
        "schedule",
    ):
        assert key in record, key
    assert record["schedule"]["num_train_timesteps"] == 1000
    assert 500_000 <= record["parameters"] <= 2_000_000


def test_trained_model_predicts_noise_far_better_than_zero(model) -> None:
    clean = data.make_clips(8, seed=987_654_000_123)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(clean.shape, generator=g)
    abar = scaled_linear_alphas_cumprod().float()
    t = torch.tensor([50, 200, 400, 600, 800, 900, 950, 999])
    a = abar[t].view(-1, 1, 1, 1, 1)
    with torch.no_grad():
        pred = model(a.sqrt() * clean + (1 - a).sqrt() * noise, t)
    # predicting zero scores 1.0; the shipped model must be well below (it reached < 0.1)
    assert torch.nn.functional.mse_loss(pred, noise).item() < 0.3


# ------------------------------------------------------------------ the paper's claims
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_paper_default_beats_sdedit_by_3db(runs, sampler: str) -> None:
    gain = _psnr(runs, sampler, PAPER_DEFAULT) - _psnr(runs, sampler, Config("sdedit"))
    assert gain >= 3.0
    # and it is not carried by a few references: most videos improve
    per_video = (
        runs[1][sampler, PAPER_DEFAULT.label][1] - runs[1][sampler, "SDEdit (no rectification)"][1]
    )
    assert (per_video > 0).float().mean() >= 0.8


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("omega", ["paper", "still"])
def test_fidelity_rises_with_the_window_end(runs, sampler: str, omega: str) -> None:
    ladder = [_psnr(runs, sampler, Config("sdedit"))] + [
        _psnr(runs, sampler, Config("rect", (0.0, end), omega)) for end in (0.2, 0.6, 1.0)
    ]
    for lower, higher in itertools.pairwise(ladder):
        assert higher >= lower + 1.0, ladder


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_late_window_stays_near_sdedit(runs, sampler: str) -> None:
    late = _psnr(runs, sampler, Config("rect", (0.6, 1.0), "paper"))
    early = _psnr(runs, sampler, PAPER_DEFAULT)
    sdedit = _psnr(runs, sampler, Config("sdedit"))
    assert abs(late - sdedit) <= 2.0
    assert early - late >= 2.0  # same ω, window early vs late: early matters (Fig. 6)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_still_over_the_whole_window_returns_the_reference(runs, sampler: str) -> None:
    refs, out = runs
    videos = out[sampler, Config("rect", (0.0, 1.0), "still").label][0]
    assert (videos - refs[:, :, None]).abs().max().item() < 1e-4
    sdedit = out[sampler, "SDEdit (no rectification)"][0]
    assert (sdedit - refs[:, :, None]).abs().max().item() > 0.1  # the test can fail


def test_both_sampler_families_agree(runs) -> None:
    _, out = runs
    for config in CONFIGS:
        diff = (out["ddim", config.label][0] - out["euler", config.label][0]).abs().max().item()
        assert diff < 1e-3, config.label


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_empty_window_changes_nothing(model, sampler: str) -> None:
    _, references = data.held_out_references(2)
    noise = paired_noise(2, 1, (3, 8, 16, 16))
    plain = sample(model, noise, reference=references, sampler=sampler, steps=4)
    for params in (RectifyParams(enabled=True, tau=(0.5, 0.5)), RectifyParams(enabled=False)):
        rect = Rectifier(params, frames=8, layout="frames")
        again = sample(model, noise, reference=references, sampler=sampler, steps=4, rectifier=rect)
        assert torch.equal(plain, again)


def test_ddim_stopping_short_lands_with_rectification(model) -> None:
    """A last step toward ā < 1 (the WebUI's DDIM) still returns the picture under `still`."""
    _, references = data.held_out_references(2)
    noise = paired_noise(2, 1, (3, 8, 16, 16))
    abar_1 = float(scaled_linear_alphas_cumprod()[1])
    rect = Rectifier(
        RectifyParams(enabled=True, omega="still", tau=(0.0, 1.0)), frames=8, layout="frames"
    )
    video = sample(
        model, noise, reference=references, steps=5, rectifier=rect, final_alpha_cumprod=abar_1
    )
    assert (video - references[:, :, None]).abs().max().item() < 1e-4


# ------------------------------------------------------------------ data and schedule
def test_clips_are_deterministic_move_and_differ() -> None:
    a = data.make_clips(4, seed=7)
    assert torch.equal(a, data.make_clips(4, seed=7))
    assert a.shape == (4, 3, 8, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, data.make_clips(4, seed=8))
    motion = (a[:, :, 1:] - a[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))
    assert bool((motion > 0.005).all())  # every clip moves
    assert (a[0] - a[1]).abs().mean() > 0.1  # appearance differs clip to clip


def test_schedule_is_sd_scaled_linear() -> None:
    abar = scaled_linear_alphas_cumprod()
    assert abar.numel() == 1000
    assert float(1 - abar[0]) == pytest.approx(0.00085)
    assert float(abar[-1]) == pytest.approx(0.0047, abs=2e-4)  # SD 1.x's final ā
    assert sampler_timesteps(4) == [999, 749, 499, 249]
    steps = sampler_timesteps(25, strength=0.5)
    assert steps[0] == 499 and steps == sorted(steps, reverse=True)


def test_training_command_records_its_run(tmp_path) -> None:
    from bench.tinyvideo import train

    out = tmp_path / "tiny.safetensors"
    record = train.main(["--steps", "2", "--batch", "2", "--seed", "3", "--out", str(out)])
    saved = json.loads(config_path(out).read_text())
    assert saved["seed"] == 3 and saved["steps"] == 2
    assert saved["train_seconds"] > 0 and saved["final_train_loss"] > 0
    assert saved == json.loads(json.dumps(record | {"unet": saved["unet"]}))
    loaded, _ = load_model(out)
    assert sum(p.numel() for p in loaded.parameters()) == saved["parameters"]
