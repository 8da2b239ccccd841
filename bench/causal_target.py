"""Which clean target keeps the picture with a causal video VAE: the still video's encoding
or the picture's own latent repeated?

    python -m bench.causal_target                      # a few minutes on one core
    python -m bench.causal_target --refs 8 --seeds 1   # a quick look

Wan's, HunyuanVideo's and LTX's VAEs encode time causally: latent frame 0 is the first
picture alone, each later latent frame four pictures (and what came before them). So the
paper's clean target, one picture's latent repeated over the frames, is not the latent of
a still video. Both are measured here, on the same model, pictures, noise and metric:

* **still video**: the VAE's encoding of the picture held over all 17 pixel frames (what
  the diffusers adapter and the ComfyUI node do with a video VAE);
* **repeated**: the picture encoded alone (one latent frame) and repeated over the 5 latent
  frames (the paper's form, what a user gets from an image latent).

Latent frame 0 is the same in both (the VAE sees the picture alone either way), so only
the later frames differ. Model: the tiny causal VAE (`bench/tinyvideo/causal_vae.py`) and a
rectified-flow model trained on its latents (`python -m bench.tinyvideo.train --objective
flow --vae ...`); Euler, shift 3, 25 steps, as `bench.flow_fidelity`. Videos are decoded
to pixels and scored as there: PSNR to the picture on pixel frames 1…16, pooled motion,
speckle; 95 % intervals over references (seeds averaged first). Each row is also compared
with SDEdit at equal pooled motion (the front of SDEdit from the still video's target).

Writes `bench/results/causal_target.md`, `.json` and `.png`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lib_rectify import Rectifier, RectifyParams

from .fidelity import paired_noise
from .flow_fidelity import _cell, _delta_cell, equal_motion_delta
from .metrics import mean_ci, video_metrics
from .tinyvideo.causal_vae import CLIPS, VAE_WEIGHTS, LatentSpace, load_vae
from .tinyvideo.data import held_out_references
from .tinyvideo.flow_samplers import DEFAULT_SHIFT, flow_sample
from .tinyvideo.model_io import load_model
from .tinyvideo.train import LATENT_FLOW_WEIGHTS

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TARGETS: tuple[str, ...] = ("still video", "repeated")
SDEDIT_STARTS: tuple[float, ...] = (0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
#: (σ_start, τ, ω) rectified rows, each with both targets; the first is the flow default.
RECTIFIED: tuple[tuple[float, tuple[float, float], str], ...] = (
    (0.95, (0.0, 0.6), "free"),
    (0.95, (0.0, 0.6), "paper"),
    (0.95, (0.0, 1.0), "paper"),
    (0.95, (0.0, 1.0), "still"),
    (0.99, (0.0, 0.6), "free"),
    (0.9, (0.0, 0.6), "free"),
)
#: ... and every window × ω at σ_start 0.95 with the still video's target (the default's
#: target): which window the latent model prefers.
GRID_WINDOWS: tuple[tuple[float, float], ...] = (
    (0.0, 0.2),
    (0.0, 0.4),
    (0.0, 0.6),
    (0.0, 1.0),
    (0.3, 0.7),
    (0.6, 1.0),
)
GRID_OMEGAS: tuple[str, ...] = ("paper", "still", "free")
METRICS = ("psnr_nonref", "motion_pooled", "speckle", "psnr_last")


@dataclass(frozen=True)
class Row:
    """`kind`: "real", "recon" (real clips through the VAE), "decoded" (the target itself),
    "noref", "sdedit" or "rect"."""

    kind: str
    target: str | None = None
    sigma_start: float = 1.0
    tau: tuple[float, float] | None = None
    omega: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "real":
            return "real clips (ground truth)"
        if self.kind == "recon":
            return "real clips through the VAE"
        if self.kind == "noref":
            return "no reference (pure noise, σ 1)"
        if self.kind == "decoded":
            return f"{self.target}: the target decoded (no sampling)"
        if self.kind == "sdedit":
            return f"{self.target}: SDEdit σ_start {self.sigma_start:g}"
        start, end = self.tau  # type: ignore[misc]
        return (
            f"{self.target}: rectified σ_start {self.sigma_start:g} "
            f"[{start:.0%}, {end:.0%}] ω={self.omega}"
        )


def default_rows() -> list[Row]:
    rows = [Row("real"), Row("recon"), Row("noref")]
    for target in TARGETS:
        rows.append(Row("decoded", target))
        rows += [Row("sdedit", target, s) for s in SDEDIT_STARTS]
        rows += [Row("rect", target, s, tau, omega) for s, tau, omega in RECTIFIED]
    rows += [
        Row("rect", "still video", 0.95, tau, omega)
        for tau in GRID_WINDOWS
        for omega in GRID_OMEGAS
        if (0.95, tau, omega) not in RECTIFIED
    ]
    return rows


def targets(space: LatentSpace, pictures: torch.Tensor, frames: int) -> dict[str, torch.Tensor]:
    """Both clean targets `[B, C, T, h, w]` (normalised latents) of `pictures` `[B, 3, H, W]`."""
    still = space.encode(pictures[:, :, None].expand(-1, -1, frames, -1, -1).contiguous())
    single = space.encode(pictures[:, :, None])  # one latent frame
    return {"still video": still, "repeated": single.expand_as(still).contiguous()}


def generate(
    model: torch.nn.Module,
    space: LatentSpace,
    row: Row,
    clips: torch.Tensor,
    clean: dict[str, torch.Tensor],
    noise: torch.Tensor,
    *,
    steps: int,
    shift: float,
) -> torch.Tensor:
    """Pixel videos `[B, 3, F, H, W]` of one row."""
    if row.kind == "real":
        return clips
    if row.kind == "recon":
        return space.decode(space.encode(clips))
    if row.kind == "decoded":
        return space.decode(clean[row.target])
    target = clean[row.target] if row.target else None
    rectifier = None
    if row.kind == "rect":
        params = RectifyParams(enabled=True, omega=row.omega, tau=row.tau, reference_frame=0)
        rectifier = Rectifier(params, frames=noise.shape[2], layout="video")
    latents = flow_sample(
        model,
        noise,
        reference=None if target is None else target[:, :, 0],
        clean=target,
        steps=steps,
        sigma_start=row.sigma_start,
        shift=shift,
        rectifier=rectifier,
    )
    return space.decode(latents)


def run(model, space, rows: list[Row], *, refs: int, seeds: int, steps: int, shift: float):
    """Per-reference metrics (seeds averaged) of every row; the same noise for every row."""
    clips, pictures = held_out_references(refs, config=CLIPS)
    clips, pictures = clips.repeat(seeds, 1, 1, 1, 1), pictures.repeat(seeds, 1, 1, 1)
    clean = targets(space, pictures, clips.shape[2])
    noise = paired_noise(refs, seeds, tuple(clean["still video"].shape[1:]))
    out = {}
    for row in rows:
        t0 = time.time()
        with torch.no_grad():
            videos = generate(model, space, row, clips, clean, noise, steps=steps, shift=shift)
        metrics = video_metrics(videos, pictures)
        out[row.label] = {k: metrics[k].double().reshape(seeds, -1).mean(0) for k in METRICS}
        print(
            f"{row.label:62s} PSNR {float(out[row.label]['psnr_nonref'].mean()):6.2f} dB"
            f"  pooled motion {float(out[row.label]['motion_pooled'].mean()):5.2f}"
            f"  ({time.time() - t0:.1f} s)",
            flush=True,
        )
    return out


# ------------------------------------------------------------------ comparisons
def sdedit_labels(per_row: dict) -> list[str]:
    """The yardstick: SDEdit from the still video's target, and σ_start 1 (no reference).

    Not SDEdit from the repeated target: what it adds to pooled motion at low σ_start is
    the decoder's flicker (the repeated target decoded as it is already "moves" more than
    the real clips), which would put flicker on the front as if it were motion.
    """
    labels = [Row("noref").label]
    labels += [Row("sdedit", "still video", s).label for s in SDEDIT_STARTS]
    return [label for label in labels if label in per_row]


def summarise(per_row: dict, rows: list[Row]) -> dict:
    summary = {}
    for row in rows:
        m = per_row[row.label]
        out: dict = {
            "kind": row.kind,
            "target": row.target,
            "sigma_start": row.sigma_start,
            "tau": row.tau,
            "omega": row.omega,
        }
        out |= {k: mean_ci(m[k]) for k in METRICS}
        if row.kind == "rect" and out["psnr_nonref"][0] < 99:
            out["delta_equal_motion"] = equal_motion_delta(
                per_row, row.label, curve=sdedit_labels(per_row)
            )
        other = Row(row.kind, "repeated", row.sigma_start, row.tau, row.omega).label
        if row.target == "still video" and other in per_row:
            out["still_minus_repeated"] = {
                k: mean_ci(m[k] - per_row[other][k]) for k in ("psnr_nonref", "motion_pooled")
            }
        summary[row.label] = out
    return summary


# ------------------------------------------------------------------ text and plot
def table(summary: dict) -> str:
    head = [
        "configuration",
        "PSNR non-ref (dB)",
        "pooled motion",
        "speckle",
        "last frame PSNR",
        "Δ vs SDEdit at equal pooled motion (dB)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in summary.items():
        cells = [
            label,
            _cell(r["psnr_nonref"]),
            f"{r['motion_pooled'][0]:.2f}",
            f"{r['speckle'][0]:.2f}",
            _cell(r["psnr_last"]),
            _delta_cell(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(summary: dict) -> str:
    head = [
        "row (same σ_start, τ, ω, noise)",
        "still video PSNR",
        "repeated PSNR",
        "still − repeated PSNR (dB)",
        "still − repeated pooled motion",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in summary.items():
        if "still_minus_repeated" not in r:
            continue
        other = summary[label.replace("still video:", "repeated:", 1)]
        d = r["still_minus_repeated"]
        lines.append(
            "| "
            + " | ".join(
                [
                    label.split(": ", 1)[1],
                    _cell(r["psnr_nonref"]),
                    _cell(other["psnr_nonref"]),
                    f"{d['psnr_nonref'][0]:+.2f} ± {d['psnr_nonref'][1]:.2f}",
                    f"{d['motion_pooled'][0]:+.2f} ± {d['motion_pooled'][1]:.2f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def verdict(summary: dict) -> tuple[str, str]:
    """The better target by the flow default's row at equal motion, and a sentence."""
    s, tau, omega = RECTIFIED[0]
    rows = {t: summary[Row("rect", t, s, tau, omega).label] for t in TARGETS}
    eq = {t: rows[t]["delta_equal_motion"]["delta"] for t in TARGETS}
    paired = rows["still video"]["still_minus_repeated"]
    best = max(TARGETS, key=lambda t: eq[t])
    other = TARGETS[1 - TARGETS.index(best)]
    text = (
        f"**{best}** keeps the picture better. With the flow default (σ_start {s:g}, τ "
        f"{tau[0]:.0%}-{tau[1]:.0%}, ω {omega}) the still video's target gives "
        f"{rows['still video']['psnr_nonref'][0]:.1f} dB at pooled motion "
        f"{rows['still video']['motion_pooled'][0]:.2f}, the repeated latent "
        f"{rows['repeated']['psnr_nonref'][0]:.1f} dB at "
        f"{rows['repeated']['motion_pooled'][0]:.2f} (paired: "
        f"{paired['psnr_nonref'][0]:+.2f} ± {paired['psnr_nonref'][1]:.2f} dB, motion "
        f"{paired['motion_pooled'][0]:+.2f} ± {paired['motion_pooled'][1]:.2f}); against "
        f"SDEdit at equal motion {_delta_cell(rows[best])} dB for {best}, {_delta_cell(rows[other])} dB "
        f"for {other}."
    )
    full = summary[Row("rect", "still video", s, (0.0, 1.0), "paper").label]
    full_other = summary[Row("rect", "repeated", s, (0.0, 1.0), "paper").label]
    d = full["still_minus_repeated"]
    text += (
        f" The longer the window, the more the target shows: τ 0%-100 %, ω paper gives "
        f"{full['psnr_nonref'][0]:.1f} dB at motion {full['motion_pooled'][0]:.2f} from the "
        f"still video, {full_other['psnr_nonref'][0]:.1f} dB at "
        f"{full_other['motion_pooled'][0]:.2f} from the repeated latent (paired "
        f"{d['psnr_nonref'][0]:+.2f} ± {d['psnr_nonref'][1]:.2f} dB)."
    )
    return best, text


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    styles = {"still video": ("tab:blue", "still video's encoding"), "repeated": ("tab:red", "")}
    for target, (colour, _) in styles.items():
        sd = [r for r in summary.values() if r["kind"] == "sdedit" and r["target"] == target]
        ax.plot(
            [r["motion_pooled"][0] for r in sd],
            [r["psnr_nonref"][0] for r in sd],
            "-",
            marker=".",
            color=colour,
            alpha=0.6,
            label=f"SDEdit from the {target} target (σ_start 0.99 … 0.4)",
        )
        for omega, marker in (("free", "^"), ("paper", "o")):
            pts = [
                r
                for r in summary.values()
                if r["kind"] == "rect"
                and r["target"] == target
                and r["omega"] == omega
                and r["psnr_nonref"][0] < 99
            ]
            ax.scatter(
                [r["motion_pooled"][0] for r in pts],
                [r["psnr_nonref"][0] for r in pts],
                marker=marker,
                color=colour,
                s=36,
                label=f"rectified, {target} target, ω {omega}",
            )
    for label, marker in (
        ("real clips through the VAE", "*"),
        ("no reference (pure noise, σ 1)", "x"),
    ):
        r = summary[label]
        ax.scatter(
            r["motion_pooled"][0], r["psnr_nonref"][0], c="gray", marker=marker, s=60, label=label
        )
    ax.set_xlabel("pooled motion (% of pixel range per frame)")
    ax.set_ylabel("PSNR to the picture, frames 1…16 (dB)")
    ax.set_title("Causal video VAE: which clean target keeps the picture")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def window_ranking(summary: dict) -> str:
    """The still video's rectified rows, best trade-off first (Δ at equal pooled motion)."""
    rows = [
        (label, r)
        for label, r in summary.items()
        if r["kind"] == "rect" and r["target"] == "still video" and "delta_equal_motion" in r
    ]
    rows.sort(key=lambda lr: -lr[1]["delta_equal_motion"]["delta"])
    head = [
        "row (still video target)",
        "PSNR non-ref",
        "pooled motion",
        "speckle",
        "Δ at equal motion",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in rows:
        cells = [
            label.split(": ", 1)[1],
            _cell(r["psnr_nonref"]),
            f"{r['motion_pooled'][0]:.2f}",
            f"{r['speckle'][0]:.2f}",
            _delta_cell(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(summary: dict, settings: dict, vae_record: dict, model_record: dict) -> str:
    best, text = verdict(summary)
    argv = settings.get("argv", [])
    decoded = {t: summary[Row("decoded", t).label] for t in TARGETS}
    recon = summary["real clips through the VAE"]
    return "\n".join(
        [
            "# Causal video VAE: the still video's encoding or the picture's latent repeated?",
            "",
            f"Command: `{' '.join(['python -m bench.causal_target', *argv])}`",
            f"VAE: `{Path(settings['vae']).name}` ({vae_record['parameters']:,} parameters; "
            f"17 frames → 5 latent frames × 8 channels × 8×8; held-out reconstruction "
            f"{vae_record['heldout_recon_psnr_db']} dB). Model: `{Path(settings['weights']).name}` "
            f"(rectified flow on its latents, {model_record['parameters']:,} parameters, "
            f"{model_record['steps']} steps, held-out v-MSE {model_record.get('heldout_v_mse_ema')}). "
            f"Euler, {settings['steps']} steps, shift {settings['shift']:g}; {settings['refs']} "
            f"held-out pictures (the first frames of `bench.fidelity`'s) × {settings['seeds']} "
            f"paired seeds; {settings['minutes']} min on {settings['threads']} thread(s).",
            "PSNR in dB to the picture on pixel frames 1…16 after decoding (± 95 % over "
            "pictures); motion and speckle in % of the pixel range; *Δ at equal pooled "
            "motion*: against the front of SDEdit from the still video's target (σ_start 1 … "
            "0.4, bootstrap 95 %; not SDEdit from the repeated target, whose extra motion is "
            "the decoder's flicker). 'exact' = PSNR ≥ 99 dB.",
            "",
            "## Answer",
            "",
            text,
            "",
            f"What each target is, decoded without sampling: the still video's "
            f"{_cell(decoded['still video']['psnr_nonref'])} dB (the VAE's own error on a still "
            f"picture; real clips come back at {_cell(recon['psnr_nonref'])} dB to the picture, "
            f"motion {recon['motion_pooled'][0]:.2f}), the repeated latent "
            f"{_cell(decoded['repeated']['psnr_nonref'])} dB at motion "
            f"{decoded['repeated']['motion_pooled'][0]:.2f} (the decoder reads a latent made "
            "for one picture as four).",
            "",
            f"Default: **{best}**.",
            "",
            "## Paired: the same row with either target",
            "",
            paired_table(summary),
            "",
            "## Windows on the latent model (still video target)",
            "",
            "Every rectified row with the still video's target, best Δ at equal pooled motion "
            "first (rows flagged 'more/less motion than any SDEdit' are compared with the "
            "front's end, not interpolated):",
            "",
            window_ranking(summary),
            "",
            "## Every row",
            "",
            table(summary),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weights", type=Path, default=LATENT_FLOW_WEIGHTS)
    ap.add_argument("--vae", type=Path, default=VAE_WEIGHTS)
    ap.add_argument("--refs", type=int, default=32, help="held-out pictures")
    ap.add_argument("--seeds", type=int, default=2, help="paired noise seeds per picture")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--shift", type=float, default=DEFAULT_SHIFT)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    vae, vae_record = load_vae(args.vae)
    model, model_record = load_model(args.weights)
    space = LatentSpace(vae, vae_record)
    rows = default_rows()
    start = time.time()
    per_row = run(
        model, space, rows, refs=args.refs, seeds=args.seeds, steps=args.steps, shift=args.shift
    )
    summary = summarise(per_row, rows)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings |= {"minutes": round((time.time() - start) / 60, 1), "argv": list(argv or [])}
    best, _ = verdict(summary)
    data = {"settings": settings, "rows": summary, "better_target": best}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "causal_target.json").write_text(json.dumps(data, indent=1) + "\n")
    text = report(summary, settings, vae_record, model_record)
    (args.out / "causal_target.md").write_text(text)
    plot(summary, args.out / "causal_target.png")
    print(text)
    return data


if __name__ == "__main__":
    main()
