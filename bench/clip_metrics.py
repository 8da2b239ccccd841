"""The paper's three CLIP metrics (Sec. 5.1, Table 1) for a real WebUI result.

    python -m bench.clip_metrics --video result.gif --image input.png \\
        --prompt "a boat on a lake" --model ViT-B-32 --weights /path/open_clip_model.safetensors

- image fidelity: mean cosine similarity of each frame's CLIP image embedding to the
  input image's;
- temporal coherence: mean cosine similarity of consecutive frames' embeddings;
- video-text alignment: mean cosine similarity of each frame to the prompt's text embedding.

Raw cosines, as in Table 1 (e.g. fidelity 0.79, coherence 0.99, alignment 0.25 there).
Weights come from a local path only (an open_clip checkpoint file, or a folder with
`open_clip_config.json` for `local-dir:`); nothing is downloaded. open_clip is an optional
dependency: `pip install --no-deps open_clip_torch==3.3.0 ftfy regex` (torchvision is not
needed: preprocessing is done here with torch ops, see `_torchvision_shim`).
Scores depend on the CLIP model: compare runs only with the same model.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ClipLike(Protocol):
    """What the metrics need from a CLIP model (open_clip's `CLIP` has both)."""

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...


def preprocess(
    images: torch.Tensor,
    size: int,
    mean: Sequence[float] = OPENAI_MEAN,
    std: Sequence[float] = OPENAI_STD,
) -> torch.Tensor:
    """CLIP preprocessing with torch ops: `[N, 3, H, W]` in [0, 1] → normalised `[N, 3, s, s]`.

    Shortest side resized to `size` (bicubic, antialiased), centre crop, normalise:
    what open_clip's default eval transform does, without torchvision.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected [N, 3, H, W] images, got {tuple(images.shape)}")
    images = images.float()
    h, w = images.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    resized = F.interpolate(
        images, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
    ).clamp(0, 1)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    cropped = resized[..., top : top + size, left : left + size]
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (cropped - mean_t) / std_t


def _cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


@torch.no_grad()
def clip_scores(
    model: ClipLike,
    frames: torch.Tensor,
    image: torch.Tensor,
    text_tokens: torch.Tensor | None = None,
) -> dict[str, float]:
    """The three metrics from *preprocessed* tensors.

    `frames` `[L, 3, s, s]` (the video), `image` `[3, s, s]` or `[1, 3, s, s]` (the input
    picture), `text_tokens` `[1, context]` (the prompt; optional).
    """
    if frames.shape[0] < 2:
        raise ValueError("a video needs at least 2 frames")
    frame_emb = model.encode_image(frames)
    image_emb = model.encode_image(image.reshape(1, *frames.shape[1:]))
    scores = {
        "image_fidelity": float(_cosine_rows(frame_emb, image_emb).mean()),
        "temporal_coherence": float(_cosine_rows(frame_emb[1:], frame_emb[:-1]).mean()),
    }
    if text_tokens is not None:
        text_emb = model.encode_text(text_tokens)
        scores["video_text_alignment"] = float(_cosine_rows(frame_emb, text_emb).mean())
    return scores


# ------------------------------------------------------------------ media loading
def _pil_to_tensor(img: Any) -> torch.Tensor:
    array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image(path: Path) -> torch.Tensor:
    """`[3, H, W]` in [0, 1]."""
    from PIL import Image

    with Image.open(path) as img:
        return _pil_to_tensor(img)


def load_video(path: Path) -> torch.Tensor:
    """All frames `[L, 3, H, W]` in [0, 1] from a GIF/animated WebP/PNG, an MP4/WebM
    (needs `imageio` with an ffmpeg or pyav plugin), or a folder of frame images."""
    from PIL import Image, ImageSequence

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no frame images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        return torch.stack([load_image(p) for p in files])
    if path.suffix.lower() in (".mp4", ".webm", ".mov", ".mkv", ".avi"):
        try:
            import imageio.v3 as iio
        except ImportError as error:
            raise ImportError(
                "reading video files needs imageio with an ffmpeg/pyav plugin "
                "(pip install imageio imageio-ffmpeg), or pass a GIF or a folder of frames"
            ) from error
        frames = iio.imread(path)  # [L, H, W, 3] uint8
        return torch.from_numpy(np.asarray(frames[..., :3], dtype=np.float32) / 255.0).permute(
            0, 3, 1, 2
        )
    with Image.open(path) as img:
        return torch.stack([_pil_to_tensor(frame) for frame in ImageSequence.Iterator(img)])


# ------------------------------------------------------------------ open_clip models
def load_open_clip(model_name: str, weights: Path) -> tuple[Any, Any, int, tuple, tuple]:
    """(model, tokenizer, image size, mean, std) from a *local* checkpoint; never downloads."""
    from ._torchvision_shim import import_open_clip

    weights = Path(weights)
    if not weights.exists():
        raise FileNotFoundError(
            f"{weights} does not exist: give the path of local open_clip weights "
            "(this command never downloads)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    open_clip = import_open_clip()
    if weights.is_dir():
        model = open_clip.create_model(f"local-dir:{weights}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{weights}")
    else:
        model = open_clip.create_model(model_name, pretrained=str(weights))
        tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    return (model, tokenizer, *preprocess_settings(model))


def preprocess_settings(model: Any) -> tuple[int, tuple, tuple]:
    """Image size, mean and std an open_clip model expects (OpenAI's when unspecified)."""
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(visual, "image_size", 224))
    if isinstance(size, (tuple, list)):
        size = size[0]
    mean = tuple(cfg.get("mean", getattr(visual, "image_mean", None) or OPENAI_MEAN))
    std = tuple(cfg.get("std", getattr(visual, "image_std", None) or OPENAI_STD))
    return int(size), mean, std


def score_files(
    model: Any,
    tokenizer: Any,
    video: Path,
    image: Path,
    prompt: str | None,
    size: int,
    mean: Sequence[float] = OPENAI_MEAN,
    std: Sequence[float] = OPENAI_STD,
) -> dict[str, float]:
    frames = preprocess(load_video(video), size, mean, std)
    picture = preprocess(load_image(image)[None], size, mean, std)
    tokens = tokenizer([prompt]) if prompt else None
    scores = clip_scores(model, frames, picture, tokens)
    scores["frames"] = int(frames.shape[0])
    return scores


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--video", type=Path, required=True, help="GIF / MP4 / WebP / folder of frames")
    ap.add_argument("--image", type=Path, required=True, help="the input image")
    ap.add_argument("--prompt", default=None, help="the prompt (for video-text alignment)")
    ap.add_argument("--model", default="ViT-B-32", help="open_clip architecture name")
    ap.add_argument(
        "--weights",
        type=Path,
        required=True,
        help="local open_clip weights file, or a folder with open_clip_config.json",
    )
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args(argv)
    model, tokenizer, size, mean, std = load_open_clip(args.model, args.weights)
    scores = score_files(model, tokenizer, args.video, args.image, args.prompt, size, mean, std)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"CLIP model {args.model} ({args.weights}), {scores['frames']} frames")
        for key in ("image_fidelity", "temporal_coherence", "video_text_alignment"):
            if key in scores:
                print(f"  {key.replace('_', ' '):22s} {scores[key]:.4f}")
    return scores


if __name__ == "__main__":
    main()
