"""One-command demo: the same picture animated without and with noise rectification.

    python -m bench.demo                      # the bundled sample picture
    python -m bench.demo --image my.png       # any picture (shown at the model's 16×16)

Runs the *small demonstration model* shipped in `bench/tinyvideo/weights` (1M parameters,
trained here on synthetic 16×16 clips; no download, CPU, under a minute), from the same
noise: SDEdit (no rectification), the paper's default (τ = [0, 60 %], ω = paper) and
τ = [0, 100 %]. Writes to `bench/results/demo/`: `demo.gif` (side by side, animated),
`demo_frames.png` (the same as a still strip) and `demo_metrics.png` (fidelity per frame,
fidelity and motion). The small model shows the *effect*; it is not a real video model.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lib_rectify import Rectifier, RectifyParams

from .metrics import per_frame_psnr, video_metrics
from .tinyvideo.model_io import DEFAULT_WEIGHTS, load_model
from .tinyvideo.samplers import sample

ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLE_IMAGE = ASSETS / "sample.png"
OUT_DIR = Path(__file__).resolve().parent / "results" / "demo"
BANNER = "small demonstration model (1M params, synthetic 16x16 clips) - not a real video model"


def load_picture(path: Path, size: int) -> torch.Tensor:
    """`[1, 3, size, size]` in [-1, 1]: centre-cropped square, area-downscaled."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BOX)
        array = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def _to_uint8(frame: torch.Tensor) -> np.ndarray:
    """`[3, H, W]` in [-1, 1] → `[H, W, 3]` uint8."""
    return ((frame.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def compose_frames(panels: dict[str, torch.Tensor], picture: torch.Tensor, scale: int = 12) -> list:
    """One PIL image per frame: the input picture, then each video, labelled."""
    from PIL import Image, ImageDraw

    names = ["input picture", *panels]
    videos = list(panels.values())
    frames = videos[0].shape[1]
    side = picture.shape[-1] * scale
    label_h, banner_h, gap = 28, 18, 6
    width = len(names) * (side + gap) + gap
    height = banner_h + label_h + side + gap
    images = []
    for t in range(frames):
        canvas = Image.new("RGB", (width, height), (250, 250, 250))
        draw = ImageDraw.Draw(canvas)
        draw.text((gap, 3), BANNER, fill=(150, 0, 0))
        tiles = [picture[0], *[v[:, t] for v in videos]]
        for i, (name, tile) in enumerate(zip(names, tiles, strict=True)):
            x = gap + i * (side + gap)
            for j, line in enumerate(name.split("\n")[:2]):
                draw.text((x, banner_h + j * 12), line, fill=(0, 0, 0))
            img = Image.fromarray(_to_uint8(tile)).resize((side, side), Image.NEAREST)
            canvas.paste(img, (x, banner_h + label_h))
        draw.text((width - 70, 3), f"frame {t + 1}/{frames}", fill=(0, 0, 0))
        images.append(canvas)
    return images


def plot_metrics(panels: dict[str, torch.Tensor], picture: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names, fidelity, motion, speckle = [], [], [], []
    for name, video in panels.items():
        label = name.replace("\n", " ")
        psnr = per_frame_psnr(video[None], picture)[0].clamp_max(45.0)
        axes[0].plot(range(1, psnr.numel() + 1), psnr.tolist(), marker="o", label=label)
        m = video_metrics(video[None], picture)
        names.append(label)
        fidelity.append(float(m["psnr_nonref"]))
        motion.append(float(m["motion_pooled"]))
        speckle.append(float(m["speckle"]))
    axes[0].set_xlabel("frame")
    axes[0].set_ylabel("PSNR to the input picture (dB, clipped at 45)")
    axes[0].set_title("Fidelity per frame")
    axes[0].legend(fontsize=7)
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, fidelity, 0.4, label="PSNR non-reference frames (dB)")
    twin = axes[1].twinx()
    twin.bar(x + 0.2, motion, 0.4, color="tab:orange", label="pooled motion (%)")
    axes[1].set_xticks(x, [textwrap.fill(n, 24) for n in names], fontsize=7)
    axes[1].set_ylabel("PSNR (dB)")
    twin.set_ylabel("motion on 4x4-pooled frames (% per frame)")
    axes[1].set_title("Fidelity (blue) and motion (orange)")
    fig.suptitle(BANNER, fontsize=9, color="darkred")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--image", type=Path, default=SAMPLE_IMAGE, help="input picture")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--sampler", choices=("ddim", "euler"), default="ddim")
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, record = load_model(args.weights)
    frames, size = record["data"]["frames"], record["data"]["size"]
    picture = load_picture(args.image, size)
    noise = torch.randn(
        1, 3, frames, size, size, generator=torch.Generator().manual_seed(args.seed)
    )
    runs = {
        "SDEdit\n(no rectification)": None,
        "rectified, paper default\ntau [0,60%] omega paper": RectifyParams(
            enabled=True, omega="paper", tau=(0.0, 0.6)
        ),
        "rectified\ntau [0,100%] omega paper": RectifyParams(
            enabled=True, omega="paper", tau=(0.0, 1.0)
        ),
    }
    panels: dict[str, torch.Tensor] = {}
    with tqdm(total=len(runs) * args.steps, desc="demo (small model)", unit="step") as bar:
        for name, params in runs.items():
            rectifier = Rectifier(params, frames=frames, layout="frames") if params else None
            video = sample(
                model,
                noise,
                reference=picture,
                sampler=args.sampler,
                steps=args.steps,
                rectifier=rectifier,
                callback=lambda _i: bar.update(),
            )
            panels[name] = video[0]

    args.out.mkdir(parents=True, exist_ok=True)
    images = compose_frames(panels, picture)
    gif = args.out / "demo.gif"
    images[0].save(gif, save_all=True, append_images=images[1:], duration=180, loop=0)
    strip = args.out / "demo_frames.png"
    from PIL import Image

    stacked = Image.new("RGB", (images[0].width, images[0].height * len(images)), (255, 255, 255))
    for i, img in enumerate(images):
        stacked.paste(img, (0, i * img.height))
    stacked.save(strip)
    figure = args.out / "demo_metrics.png"
    plot_metrics(panels, picture, figure)
    print(BANNER)
    for name, video in panels.items():
        m = video_metrics(video[None], picture)
        print(
            f"  {name.replace(chr(10), ' '):48s} PSNR non-ref {float(m['psnr_nonref']):5.1f} dB  "
            f"pooled motion {float(m['motion_pooled']):5.2f} %"
        )
    print(f"wrote {gif}\n      {strip}\n      {figure}")
    return {"gif": gif, "frames": strip, "metrics": figure}


if __name__ == "__main__":
    main()
