"""The tiny causal video VAE and the benchmark of the clean target it serves
(bench/tinyvideo/causal_vae.py, bench/causal_target.py).

The VAE must be causal the way Wan's is, or the benchmark measures nothing: latent frame 0
sees frame 0 alone, latent frame j the frames up to 4j, and the decoder mirrors that. Then
the two targets share latent frame 0 and differ after it; a still window lands on either
exactly; and on the shipped weights the still video's target keeps the picture better
than the repeated latent (the measured default of both adapters). ~30 s on one core.
"""

from __future__ import annotations

import json

import pytest
import torch

from bench import causal_target as ct
from bench.fidelity import paired_noise
from bench.tinyvideo.causal_vae import (
    CLIPS,
    VAE_WEIGHTS,
    LatentSpace,
    TinyCausalVAE,
    load_vae,
)
from bench.tinyvideo.data import held_out_references, make_clips
from bench.tinyvideo.flow_samplers import flow_sample
from bench.tinyvideo.model_io import load_model
from bench.tinyvideo.train import LATENT_FLOW_WEIGHTS
from lib_rectify import Rectifier, RectifyParams

REFS = 8


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    vae, record = load_vae(VAE_WEIGHTS)
    model, model_record = load_model(LATENT_FLOW_WEIGHTS)
    return LatentSpace(vae, record), model, record, model_record


@pytest.fixture(scope="module")
def pictures(shipped):
    space = shipped[0]
    clips, pictures = held_out_references(REFS, config=CLIPS)
    return pictures, ct.targets(space, pictures, clips.shape[2])


# ------------------------------------------------------------------ the VAE's causality
def test_each_latent_frame_sees_only_its_frames_and_the_past() -> None:
    torch.manual_seed(0)
    vae = TinyCausalVAE().eval()
    video = make_clips(2, 1, CLIPS)
    with torch.no_grad():
        z = vae.encode(video)[0]
        assert z.shape == (2, 8, 5, 8, 8)
        for j in range(5):
            changed = video.clone()
            changed[:, :, 4 * j + 1 :] = torch.randn_like(changed[:, :, 4 * j + 1 :])
            z2 = vae.encode(changed)[0]
            assert torch.equal(z2[:, :, : j + 1], z[:, :, : j + 1]), j
            if j < 4:  # and the next latent frame does see the change
                assert not torch.allclose(z2[:, :, j + 1], z[:, :, j + 1])


def test_decoder_is_causal_the_same_way() -> None:
    torch.manual_seed(0)
    vae = TinyCausalVAE().eval()
    z = torch.randn(1, 8, 5, 8, 8)
    with torch.no_grad():
        video = vae.decode(z)
        assert video.shape == (1, 3, 17, 16, 16)
        for j in range(4):
            changed = z.clone()
            changed[:, :, j + 1 :] = torch.randn_like(changed[:, :, j + 1 :])
            video2 = vae.decode(changed)
            assert torch.equal(video2[:, :, : 4 * j + 1], video[:, :, : 4 * j + 1]), j
            assert not torch.allclose(video2[:, :, 4 * j + 1], video[:, :, 4 * j + 1])


def test_lengths_other_than_one_plus_four_k_are_refused() -> None:
    vae = TinyCausalVAE()
    with pytest.raises(ValueError, match="1 \\+ 4"):
        vae.encode(torch.zeros(1, 3, 16, 16, 16))


# ------------------------------------------------------------------ shipped artefacts
def test_shipped_weights_are_small_and_documented(shipped) -> None:
    _, _, record, model_record = shipped
    assert VAE_WEIGHTS.stat().st_size <= 2 * 1024 * 1024
    assert LATENT_FLOW_WEIGHTS.stat().st_size <= 5 * 1024 * 1024
    assert record["heldout_recon_psnr_db"] >= 24.0
    assert len(record["latent_stats"]["std"]) == 8
    assert model_record["vae"] == VAE_WEIGHTS.name
    assert model_record["unet"]["in_channels"] == 8
    assert model_record["schedule"]["prediction"] == "velocity"


def test_the_latents_are_normalised(shipped) -> None:
    space = shipped[0]
    z = space.encode(make_clips(16, 42, CLIPS))
    assert z.mean(dim=(0, 2, 3, 4)).abs().max() < 0.3
    assert ((z.std(dim=(0, 2, 3, 4)) - 1).abs() < 0.3).all()


def test_both_targets_share_latent_frame_zero_and_differ_after(pictures) -> None:
    _, clean = pictures
    still, repeated = clean["still video"], clean["repeated"]
    assert still.shape == repeated.shape == (REFS, 8, 5, 8, 8)
    torch.testing.assert_close(still[:, :, 0], repeated[:, :, 0], atol=1e-5, rtol=0)
    assert torch.equal(repeated[:, :, 4], repeated[:, :, 0])
    assert (still[:, :, 1:] - repeated[:, :, 1:]).abs().mean() > 0.1


def test_still_window_lands_on_either_target(shipped, pictures) -> None:
    _, model, _, _ = shipped
    _, clean = pictures
    noise = paired_noise(REFS, 1, (8, 5, 8, 8))
    params = RectifyParams(enabled=True, omega="still", tau=(0.0, 1.0), reference_frame=0)
    for target in clean.values():
        out = flow_sample(
            model,
            noise,
            reference=target[:, :, 0],
            clean=target,
            steps=10,
            sigma_start=0.95,
            rectifier=Rectifier(params, frames=5, layout="video"),
        )
        torch.testing.assert_close(out, target, atol=2e-4, rtol=0)


def test_still_video_target_keeps_the_picture_better(shipped) -> None:
    """The measured default (bench/results/causal_target.md) on a sample: paired, the same
    pictures and noise, the flow default's window."""
    space, model, _, _ = shipped
    rows = [ct.Row("decoded", t) for t in ct.TARGETS]
    rows += [
        ct.Row("rect", t, s, tau, omega) for s, tau, omega in ct.RECTIFIED[:3] for t in ct.TARGETS
    ]
    per_row = ct.run(model, space, rows, refs=REFS, seeds=1, steps=12, shift=3.0)
    gain = [
        float((per_row[a.label]["psnr_nonref"] - per_row[b.label]["psnr_nonref"]).mean())
        for a, b in zip(rows[::2], rows[1::2], strict=True)
    ]
    decoded, default, paper, full = gain
    assert decoded > 8.0  # the repeated latent does not decode to the picture held still
    assert default > 0.0 and paper > 0.2 and full > 0.3  # and sampling toward it keeps less


def test_benchmark_writes_its_report(tmp_path) -> None:
    data = ct.main(["--refs", "2", "--seeds", "1", "--steps", "4", "--out", str(tmp_path)])
    assert data["better_target"] in ct.TARGETS
    text = (tmp_path / "causal_target.md").read_text()
    assert "## Answer" in text and f"Default: **{data['better_target']}**" in text
    saved = json.loads((tmp_path / "causal_target.json").read_text())
    assert set(saved["rows"]) == {row.label for row in ct.default_rows()}
    assert (tmp_path / "causal_target.png").stat().st_size > 10_000
