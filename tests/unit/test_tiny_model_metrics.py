"""Pixel metrics of the benchmark (bench/metrics.py): noise must not pass for motion."""

from __future__ import annotations

import math

import pytest
import torch

from bench.metrics import mean_ci, per_frame_psnr, pool, speckle, video_metrics
from bench.tinyvideo.data import make_clips


def _still(frames: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    clips = make_clips(4, seed=11)
    reference = clips[:, :, 0]
    return reference[:, :, None].expand(-1, -1, frames, -1, -1).clone(), reference


def test_a_still_video_of_the_reference_is_exact_and_motionless() -> None:
    video, reference = _still()
    m = video_metrics(video, reference)
    assert bool((m["psnr_all"] == 100).all()) and bool((m["psnr_nonref"] == 100).all())
    assert bool((m["coherence"] == 100).all())
    for key in ("motion_raw", "motion_pooled", "drift"):
        assert float(m[key].max()) == 0.0


def test_grain_raises_raw_motion_and_speckle_but_hardly_pooled_motion() -> None:
    video, reference = _still()
    g = torch.Generator().manual_seed(0)
    grainy = video + 0.1 * torch.randn(video.shape, generator=g)
    shifted = torch.stack(
        [torch.roll(video[:, :, t], shifts=t, dims=-1) for t in range(video.shape[2])], dim=2
    )
    grain = video_metrics(grainy, reference)
    motion = video_metrics(shifted, reference)
    base = video_metrics(video, reference)
    # grain: lots of raw "motion", much more speckle, little pooled motion
    assert float(grain["motion_raw"].mean()) > 3 * float(grain["motion_pooled"].mean())
    assert float(grain["speckle"].mean()) > float(base["speckle"].mean()) + 1.0
    # real motion: pooled motion comparable to raw motion, speckle unchanged
    assert float(motion["motion_pooled"].mean()) > 0.3 * float(motion["motion_raw"].mean())
    assert float(motion["speckle"].mean()) == pytest.approx(float(base["speckle"].mean()), rel=0.05)
    assert float(motion["drift"].mean()) > 0


def test_psnr_is_per_frame_consistent() -> None:
    video, reference = _still()
    video = video.clone()
    video[:, :, 3] = video[:, :, 3] + 0.2  # one frame off by 0.1 in [0, 1] units
    per_frame = per_frame_psnr(video, reference)
    assert per_frame.shape == (4, 8)
    assert float(per_frame[:, 3].mean()) == pytest.approx(20.0, abs=0.5)  # 10·log10(1/0.1²)
    m = video_metrics(video, reference)
    assert float(m["psnr_first"].min()) == 100 and float(m["psnr_last"].min()) == 100
    assert float(m["psnr_nonref"].mean()) == pytest.approx(20 + 10 * math.log10(7), abs=0.5)


def test_pool_and_speckle_shapes() -> None:
    video = torch.zeros(2, 3, 4, 16, 16)
    assert pool(video).shape == (2, 3, 4, 4, 4)
    assert speckle(video).shape == (2,)


def test_mean_ci() -> None:
    mean, half = mean_ci(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and half == pytest.approx(1.96 * 1.2910 / 2, rel=1e-3)
    assert math.isnan(mean_ci(torch.tensor([1.0]))[1])
