"""Two anchors (start on one picture, end on another) against the alternatives, and ω over steps.

    python -m bench.anchors                       # ~5 min on one CPU core
    python -m bench.anchors --refs 16 --seeds 1   # a quick look

Held-out clips of the shipped small model give both pictures: a clip's first frame and its
last frame. Every configuration gets the same noise for the same (clip, seed). Scored:
the middle frames (1 … L−2) against the real clip (PSNR), pooled motion and speckle
(docs/measuring.md), and how exactly each end frame is its picture. Rows:

* the real clips, and the trivial cross-fade of the two pictures (docs/measuring.md:
  scores against real frames reward averages, so it is shown, not a target);
* SDEdit from the first picture; the one-anchor paper default (τ 0-60 %, ω paper);
* AnimateDiff's own last-frame latent blend (scripts/animatediff_latent.py at a88e889:
  weights ``1 − i^power/scale`` from each end, power 1, scale 32, normalised where they
  sum above 1, the rest filled with noise), alone and with one-anchor rectification;
* two anchors at the same τ and ω, with the clean latents blended linearly, spherically
  or held then switched (docs/two-anchors.md).

Second experiment (``--omega-steps``): ω that relaxes over the window from the paper
curve to 1, against the paper default at the same window, scored on non-reference
PSNR to the first picture and pooled motion (one anchor).

Writes ``bench/results/anchors.md``, ``anchors.json`` and ``anchors.png``.
Intervals: 95 % over clips (seeds averaged first), paired differences.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lib_rectify import Rectifier, RectifyParams
from lib_rectify.anchors import end_anchored_clean

from .metrics import mean_ci, pool, psnr_from_mse, speckle, video_metrics
from .tinyvideo.data import held_out_references
from .tinyvideo.model_io import load_model
from .tinyvideo.samplers import sample

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PAPER_TAU = (0.0, 0.6)


@dataclass(frozen=True)
class Config:
    label: str
    kind: str  # real, crossfade, sdedit, one, adblend, adblend_one, two
    blend: str = ""
    tau: tuple[float, float] = PAPER_TAU
    omega_steps: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)


ANCHOR_CONFIGS = (
    Config("real clips (ground truth)", "real"),
    Config("cross-fade of the two pictures (trivial)", "crossfade"),
    Config("SDEdit from the first picture", "sdedit"),
    Config("one anchor (paper default)", "one"),
    Config("AnimateDiff last-frame blend", "adblend"),
    Config("AnimateDiff last-frame blend + one anchor", "adblend_one"),
    Config("two anchors, linear blend", "two", "linear"),
    Config("two anchors, slerp blend", "two", "slerp"),
    Config("two anchors, hold then switch", "two", "hold"),
    # the window to the end: both anchors exact (a window that ends early lets the model
    # move every frame, anchors included, in the last steps)
    Config("one anchor, τ 0-100 %", "one", tau=(0.0, 1.0)),
    Config("AnimateDiff last-frame blend + one anchor, τ 0-100 %", "adblend_one", tau=(0.0, 1.0)),
    Config("two anchors, linear blend, τ 0-100 %", "two", "linear", tau=(0.0, 1.0)),
)


def animatediff_blend(
    first: torch.Tensor,
    last: torch.Tensor,
    frames: int,
    noise: torch.Tensor,
    power: float = 1.0,
    scale: float = 32.0,
) -> torch.Tensor:
    """AnimateDiff's img2img init latent with a last frame, ``[B, C, L, H, W]``.

    Re-expressed from sd-webui-animatediff a88e889 scripts/animatediff_latent.py
    (``AnimateDiffI2VLatent.randomize``), defaults latent_power(_last) 1, latent_scale(_last) 32.
    """
    i = torch.arange(frames, dtype=torch.float32)
    alpha = (1 - i.pow(power) / scale).clamp_min(0)
    beta = alpha.flip(0).clone()
    total = alpha + beta
    over = total > 1
    alpha[over] = alpha[over] / total[over]
    beta[over] = beta[over] / total[over]
    alpha[0], alpha[-1], beta[0], beta[-1] = 1.0, 0.0, 0.0, 1.0
    a = alpha.view(1, 1, -1, 1, 1)
    b = beta.view(1, 1, -1, 1, 1)
    return first[:, :, None] * a + last[:, :, None] * b + noise * (1 - a - b)


def two_anchor_clean(
    first: torch.Tensor, last: torch.Tensor, frames: int, blend: str
) -> torch.Tensor:
    """Per-frame clean latents between the pictures (the core's blend), ``[B, C, L, H, W]``."""
    rows, _ = end_anchored_clean(first, last, frames, 0, blend)
    return rows.transpose(1, 2)


class StepOmegaRectifier(Rectifier):
    """ω relaxing from the preset's curve at the window's first step to 1 at its last."""

    def _at(self, step: int, total: int) -> None:
        if not hasattr(self, "_base"):
            self._base = self.omega.clone()
        start, end = self.params.tau
        first, last = int(total * start), max(int(total * end) - 1, int(total * start))
        t = 0.0 if last == first else min(max((step - first) / (last - first), 0.0), 1.0)
        self.omega = self._base + (1 - self._base) * t

    def rectify_eps(self, eps, *, step, total_steps, **k):
        self._at(step, total_steps)
        return super().rectify_eps(eps, step=step, total_steps=total_steps, **k)

    def rectify_denoised(self, denoised, *, step, total_steps, **k):
        self._at(step, total_steps)
        return super().rectify_denoised(denoised, step=step, total_steps=total_steps, **k)


def generate(model, config: Config, clips, noise, blend_noise, *, steps: int, sampler: str):
    frames = clips.shape[2]
    first, last = clips[:, :, 0], clips[:, :, -1]
    if config.kind == "real":
        return clips
    if config.kind == "crossfade":
        s = torch.linspace(0, 1, frames).view(1, 1, -1, 1, 1)
        return first[:, :, None] * (1 - s) + last[:, :, None] * s
    params = RectifyParams(enabled=True, tau=config.tau)
    clean, rect = None, None
    if config.kind in ("adblend", "adblend_one"):
        clean = animatediff_blend(first, last, frames, blend_noise)
    if config.kind == "two":
        clean = two_anchor_clean(first, last, frames, config.blend)
        rect = Rectifier(params, frames=frames, layout="frames", anchors=(0, frames - 1))
    if config.kind in ("one", "adblend_one"):
        cls = StepOmegaRectifier if config.omega_steps else Rectifier
        rect = cls(params, frames=frames, layout="frames")
    return sample(
        model, noise, reference=first, clean=clean, sampler=sampler, steps=steps, rectifier=rect
    )


def scores(videos: torch.Tensor, clips: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per video: middle-frame PSNR to the real clip, anchors' PSNR, motion, speckle."""
    v = ((videos.clamp(-1, 1) + 1) / 2).float()
    c = ((clips.clamp(-1, 1) + 1) / 2).float()
    middle = (v[:, :, 1:-1] - c[:, :, 1:-1]).pow(2).flatten(1).mean(1)
    first = (v[:, :, 0] - c[:, :, 0]).pow(2).flatten(1).mean(1)
    last = (v[:, :, -1] - c[:, :, -1]).pow(2).flatten(1).mean(1)
    pooled = pool(v)
    return {
        "psnr_middle": psnr_from_mse(middle),
        "psnr_first": psnr_from_mse(first),
        "psnr_last": psnr_from_mse(last),
        "motion_pooled": 100 * (pooled[:, :, 1:] - pooled[:, :, :-1]).abs().flatten(1).mean(1),
        "speckle": 100 * speckle(v),
    }


def _per_clip(values: torch.Tensor, seeds: int) -> torch.Tensor:
    return values.double().reshape(seeds, -1).mean(0)


def run_anchors(model, *, refs: int, seeds: int, steps: int, sampler: str) -> dict:
    clips, _ = held_out_references(refs)
    clips = clips.repeat(seeds, 1, 1, 1, 1)
    noise = torch.cat(
        [
            torch.randn(refs, *clips.shape[1:], generator=torch.Generator().manual_seed(s))
            for s in range(seeds)
        ]
    )
    blend_noise = torch.cat(
        [
            torch.randn(refs, *clips.shape[1:], generator=torch.Generator().manual_seed(1000 + s))
            for s in range(seeds)
        ]
    )
    per_config = {}
    for config in ANCHOR_CONFIGS:
        t0 = time.time()
        videos = generate(model, config, clips, noise, blend_noise, steps=steps, sampler=sampler)
        per_config[config.label] = {
            k: _per_clip(v, seeds) for k, v in scores(videos, clips).items()
        }
        print(
            f"{config.label:45s} middle PSNR {float(per_config[config.label]['psnr_middle'].mean()):6.2f} dB"
            f"  first {float(per_config[config.label]['psnr_first'].mean()):6.1f}"
            f"  last {float(per_config[config.label]['psnr_last'].mean()):6.1f}  ({time.time() - t0:.1f} s)",
            flush=True,
        )
    return per_config


def run_omega_steps(model, *, refs: int, seeds: int, steps: int, sampler: str) -> dict:
    clips, references = held_out_references(refs)
    clips = clips.repeat(seeds, 1, 1, 1, 1)
    references = references.repeat(seeds, 1, 1, 1)
    noise = torch.cat(
        [
            torch.randn(refs, *clips.shape[1:], generator=torch.Generator().manual_seed(s))
            for s in range(seeds)
        ]
    )
    out = {}
    for tau in ((0.0, 0.6), (0.0, 0.8)):
        for omega_steps in (False, True):
            config = Config(
                f"[{tau[0]:.0%}, {tau[1]:.0%}] ω paper{' → 1 over the steps' if omega_steps else ''}",
                "one",
                tau=tau,
                omega_steps=omega_steps,
            )
            videos = generate(model, config, clips, noise, None, steps=steps, sampler=sampler)
            metrics = video_metrics(videos, references)
            out[config.label] = {
                k: _per_clip(metrics[k], seeds) for k in ("psnr_nonref", "motion_pooled", "speckle")
            }
            print(
                f"{config.label:40s} non-ref PSNR {float(out[config.label]['psnr_nonref'].mean()):6.2f} dB"
                f"  pooled motion {float(out[config.label]['motion_pooled'].mean()):5.2f}",
                flush=True,
            )
    return out


def _cell(values: torch.Tensor, digits: int = 1) -> str:
    mean, half = mean_ci(values)
    if mean >= 99:
        return "exact"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def anchors_table(per_config: dict, best: str) -> str:
    """Rows of the anchors experiment; the paired column compares each row with the
    two-anchor row at the same window (``best`` for τ 0-60 %)."""
    full = "two anchors, linear blend, τ 0-100 %"
    head = [
        "configuration",
        "middle frames PSNR (dB)",
        "two anchors (same τ) minus this (dB, paired)",
        "first frame",
        "last frame",
        "pooled motion",
        "speckle",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in per_config.items():
        base = per_config[full if "100 %" in label else best]["psnr_middle"]
        own = label in (best, full) or label.startswith("real")
        diff = "—" if own else _cell(base - m["psnr_middle"], 2)
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    _cell(m["psnr_middle"]),
                    diff,
                    _cell(m["psnr_first"]),
                    _cell(m["psnr_last"]),
                    _cell(m["motion_pooled"], 2),
                    _cell(m["speckle"], 2),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def omega_steps_table(per_config: dict) -> str:
    head = [
        "configuration",
        "non-ref PSNR (dB)",
        "gain over paper ω, same window (dB, paired)",
        "pooled motion",
        "pooled motion gain",
        "speckle",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    labels = list(per_config)
    for i, label in enumerate(labels):
        m = per_config[label]
        if "over the steps" in label:
            base = per_config[labels[i - 1]]
            gain = _cell(m["psnr_nonref"] - base["psnr_nonref"], 2)
            motion_gain = _cell(m["motion_pooled"] - base["motion_pooled"], 2)
        else:
            gain = motion_gain = "—"
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    _cell(m["psnr_nonref"], 2),
                    gain,
                    _cell(m["motion_pooled"], 2),
                    motion_gain,
                    _cell(m["speckle"], 2),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--refs", type=int, default=64, help="held-out clips (default 64)")
    ap.add_argument("--seeds", type=int, default=2, help="noise seeds per clip (default 2)")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    ap.add_argument("--sampler", default="ddim", choices=("ddim", "euler"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = load_model()
    t0 = time.time()
    with torch.no_grad():
        anchors = run_anchors(
            model, refs=args.refs, seeds=args.seeds, steps=args.steps, sampler=args.sampler
        )
        omega = run_omega_steps(
            model, refs=args.refs, seeds=args.seeds, steps=args.steps, sampler=args.sampler
        )
    # The blend that ships: linear (docs/two-anchors.md: the three blends score the same
    # within their intervals here, and linear is the simplest).
    best = "two anchors, linear blend"
    report = {
        "settings": vars(args) | {"out": str(args.out), "seconds": round(time.time() - t0, 1)},
        "anchors": {k: {m: mean_ci(v) for m, v in row.items()} for k, row in anchors.items()},
        "best_two_anchor": best,
        "paired_vs_best": {
            k: mean_ci(anchors[best]["psnr_middle"] - row["psnr_middle"])
            for k, row in anchors.items()
            if k != best
        },
        "omega_steps": {k: {m: mean_ci(v) for m, v in row.items()} for k, row in omega.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "anchors.json").write_text(json.dumps(report, indent=2) + "\n")
    text = (
        f"# Two anchors and ω over the steps (small model, {args.sampler.upper()} {args.steps} steps, "
        f"{args.refs} held-out clips × {args.seeds} seeds)\n\n"
        "Generated by `python -m bench.anchors`. ± is a 95 % interval over clips (seeds averaged first); "
        "paired columns compare the same clips and noise.\n\n"
        "## Start on one picture, end on another (ω paper; τ 0-60 % unless the row says 0-100 %)\n\n"
        + anchors_table(anchors, best)
        + "\n\n## ω over the steps (one anchor)\n\n"
        + omega_steps_table(omega)
        + "\n"
    )
    (args.out / "anchors.md").write_text(text)
    print(text)
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
