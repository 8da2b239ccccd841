"""The paper's CLIP metrics (bench/clip_metrics.py).

The metric arithmetic and media loading are tested with a tiny hand-made CLIP-like model
(always runs). The end-to-end command is tested with a randomly initialised small
open_clip model saved as a local folder; it needs `open_clip_torch` (installed with
`--no-deps`, no torchvision). Without it that test is skipped with a reason, except when
`REQUIRE_OPEN_CLIP=1` (set in CI), where a missing open_clip is a failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import clip_metrics
from bench.clip_metrics import clip_scores, load_video, preprocess


class PooledColourClip(torch.nn.Module):
    """A CLIP-like model whose image embedding is the 2×2-pooled (normalised) picture."""

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(tokens.sum()))
        return torch.randn(tokens.shape[0], 12, generator=g)


def _video(frames: int = 6, size: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(frames, 3, size, size, generator=g)


def test_still_video_of_the_image_scores_one() -> None:
    image = _video(1)[0]
    frames = image.expand(5, -1, -1, -1)
    scores = clip_scores(PooledColourClip(), preprocess(frames, 32), preprocess(image[None], 32))
    assert scores["image_fidelity"] == pytest.approx(1.0, abs=1e-6)
    assert scores["temporal_coherence"] == pytest.approx(1.0, abs=1e-6)
    assert "video_text_alignment" not in scores


def test_fidelity_falls_as_frames_leave_the_image() -> None:
    image = _video(1, seed=1)[0]
    other = _video(1, seed=2)[0]
    model = PooledColourClip()
    fidelity = []
    for mix in (0.0, 0.3, 0.7, 1.0):
        frames = torch.stack([image * (1 - mix * t / 4) + other * mix * t / 4 for t in range(5)])
        fidelity.append(
            clip_scores(model, preprocess(frames, 32), preprocess(image[None], 32))[
                "image_fidelity"
            ]
        )
    assert fidelity == sorted(fidelity, reverse=True)
    assert fidelity[0] - fidelity[-1] > 0.01


def test_coherence_is_over_consecutive_frames() -> None:
    a, b = _video(2, seed=3)
    smooth = torch.stack([a, a, a, b, b, b])  # one cut
    flicker = torch.stack([a, b, a, b, a, b])  # five cuts
    model = PooledColourClip()
    ref = preprocess(a[None], 32)
    coherent = clip_scores(model, preprocess(smooth, 32), ref)["temporal_coherence"]
    flickery = clip_scores(model, preprocess(flicker, 32), ref)["temporal_coherence"]
    assert coherent > flickery + 0.001


def test_preprocess_matches_clip_conventions() -> None:
    wide = torch.zeros(2, 3, 30, 60)
    wide[..., :, 15:45] = 1.0  # the centre square is white, the sides black
    out = preprocess(wide, 24)
    assert out.shape == (2, 3, 24, 24)
    white = (1 - torch.tensor(clip_metrics.OPENAI_MEAN)) / torch.tensor(clip_metrics.OPENAI_STD)
    torch.testing.assert_close(out[0, :, 12, 12], white, atol=1e-4, rtol=0)
    with pytest.raises(ValueError):
        preprocess(torch.zeros(3, 8, 8), 8)


def test_gif_and_frame_folder_round_trip(tmp_path: Path) -> None:
    from PIL import Image

    frames = (_video(4, size=20, seed=4) * 255).round().to(torch.uint8)
    images = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in frames]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, img in enumerate(images):
        img.save(folder / f"{i:03d}.png")
    from_folder = load_video(folder)
    torch.testing.assert_close(from_folder, frames.float() / 255)
    images[0].save(
        tmp_path / "v.gif", save_all=True, append_images=images[1:], duration=100, loop=0
    )
    from_gif = load_video(tmp_path / "v.gif")
    assert from_gif.shape == (4, 3, 20, 20)


def _require_open_clip():
    try:
        from bench._torchvision_shim import import_open_clip

        return import_open_clip()
    except ImportError as error:
        if os.environ.get("REQUIRE_OPEN_CLIP") == "1":
            pytest.fail(f"REQUIRE_OPEN_CLIP=1 but open_clip is not importable: {error}")
        pytest.skip(
            "open_clip not installed (pip install --no-deps open_clip_torch==3.3.0 ftfy regex); "
            f"set REQUIRE_OPEN_CLIP=1 to make this a failure: {error}"
        )


SMALL_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def test_command_with_a_random_small_open_clip_model(tmp_path: Path, capsys) -> None:
    open_clip = _require_open_clip()
    from PIL import Image
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.model.CLIP(**SMALL_CLIP)
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": SMALL_CLIP}))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )

    picture = (_video(1, size=48, seed=5)[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(picture).save(tmp_path / "input.png")
    still = tmp_path / "still"  # a folder of frames (a GIF would merge identical frames)
    still.mkdir()
    for i in range(4):
        Image.fromarray(picture).save(still / f"{i}.png")
    rng = np.random.default_rng(0)
    noisy = [Image.fromarray(rng.integers(0, 256, picture.shape, dtype=np.uint8)) for _ in range(4)]
    noisy[0].save(tmp_path / "noise.gif", save_all=True, append_images=noisy[1:], duration=100)

    common = [
        "--image",
        str(tmp_path / "input.png"),
        "--prompt",
        "a red square",
        "--weights",
        str(folder),
        "--json",
    ]
    still_scores = clip_metrics.main(["--video", str(still), *common])
    noise_scores = clip_metrics.main(["--video", str(tmp_path / "noise.gif"), *common])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["frames"] == 4
    # loaded weights are the saved ones (the command really used this model)
    loaded, *_ = clip_metrics.load_open_clip("unused", folder)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert still_scores["image_fidelity"] == pytest.approx(1.0, abs=1e-5)
    assert still_scores["temporal_coherence"] == pytest.approx(1.0, abs=1e-5)
    assert noise_scores["image_fidelity"] < still_scores["image_fidelity"] - 0.01
    for scores in (still_scores, noise_scores):
        assert -1.0 <= scores["video_text_alignment"] <= 1.0


def test_missing_weights_never_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        clip_metrics.load_open_clip("ViT-B-32", tmp_path / "nothing.safetensors")
