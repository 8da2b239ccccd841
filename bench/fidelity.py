"""The paper's ablations (Table 1 / Fig. 5 / Fig. 6) as a benchmark on the tiny video model.

    python -m bench.fidelity                   # ~10 min on one CPU core
    python -m bench.fidelity --refs 8 --seeds 1 --steps 10   # a quick look

Held-out reference images (first frames of synthetic clips never seen in training) are
turned into videos with *paired* noise: every configuration gets the same noise for the
same (reference, seed), so differences are the configuration's, not the dice's. Rows:
no reference, SDEdit (noised reference, no rectification), rectification windows × ω
presets, and the real clips as ground truth. Both sampler families run on the same model
and timesteps and call `lib_rectify` exactly as the WebUI glue does (layout "frames").

Writes `bench/results/fidelity.md` (markdown tables), `fidelity.png` (plot) and
`fidelity.json` (all numbers). Intervals are 95 % over references (seeds averaged first).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lib_rectify import Rectifier, RectifyParams

from .metrics import mean_ci, per_frame_psnr, video_metrics
from .tinyvideo.data import held_out_references
from .tinyvideo.model_io import DEFAULT_WEIGHTS, load_model
from .tinyvideo.samplers import SAMPLERS, sample

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WINDOWS: tuple[tuple[float, float], ...] = (
    (0.0, 0.2),
    (0.0, 0.6),
    (0.0, 1.0),
    (0.3, 0.7),
    (0.6, 1.0),
)
OMEGAS: tuple[str | float, ...] = ("paper", "still", "free", 0.5)
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("psnr_all", "PSNR all"),
    ("psnr_first", "first"),
    ("psnr_last", "last"),
    ("coherence", "coherence"),
    ("motion_raw", "motion raw"),
    ("motion_pooled", "motion pooled"),
    ("drift", "drift"),
    ("speckle", "speckle"),
)


@dataclass(frozen=True)
class Config:
    """One row: `kind` is "real", "noref", "sdedit" or "rect" (then `tau` and `omega`)."""

    kind: str
    tau: tuple[float, float] | None = None
    omega: str | float | None = None

    @property
    def label(self) -> str:
        if self.kind == "real":
            return "real clips (ground truth)"
        if self.kind == "noref":
            return "no reference (pure noise)"
        if self.kind == "sdedit":
            return "SDEdit (no rectification)"
        start, end = self.tau  # type: ignore[misc]
        return f"[{start:.0%}, {end:.0%}] ω={self.omega}"

    def rectifier(self, frames: int) -> Rectifier | None:
        if self.kind != "rect":
            return None
        params = RectifyParams(enabled=True, omega=self.omega, tau=self.tau, reference_frame=0)
        return Rectifier(params, frames=frames, layout="frames")


def default_configs(
    windows: tuple[tuple[float, float], ...] = WINDOWS,
    omegas: tuple[str | float, ...] = OMEGAS,
) -> list[Config]:
    configs = [Config("real"), Config("noref"), Config("sdedit")]
    configs += [Config("rect", tau, omega) for tau in windows for omega in omegas]
    return configs


def paired_noise(n_refs: int, seeds: int, shape: tuple[int, ...]) -> torch.Tensor:
    """`[seeds·n_refs, ...]` noise, seed-major; the same for every configuration."""
    return torch.cat(
        [
            torch.randn(n_refs, *shape, generator=torch.Generator().manual_seed(s))
            for s in range(seeds)
        ]
    )


def generate(
    model: torch.nn.Module,
    config: Config,
    clips: torch.Tensor,
    references: torch.Tensor,
    noise: torch.Tensor,
    *,
    sampler: str,
    steps: int,
    strength: float = 1.0,
    chunk: int = 64,
) -> torch.Tensor:
    """Videos for one configuration, batched in chunks (one `Rectifier` per chunk = per job)."""
    if config.kind == "real":
        return clips
    frames = noise.shape[2]
    outs = []
    for i in range(0, noise.shape[0], chunk):
        ref = None if config.kind == "noref" else references[i : i + chunk]
        outs.append(
            sample(
                model,
                noise[i : i + chunk],
                reference=ref,
                sampler=sampler,
                steps=steps,
                strength=strength,
                rectifier=config.rectifier(frames),
            )
        )
    return torch.cat(outs)


def run(
    model: torch.nn.Module,
    *,
    refs: int = 32,
    seeds: int = 2,
    steps: int = 20,
    strength: float = 1.0,
    samplers: tuple[str, ...] = SAMPLERS,
    configs: list[Config] | None = None,
    progress: bool = True,
) -> dict:
    """Run every configuration; returns per-video metrics `[seeds, refs]` per sampler/config."""
    configs = configs if configs is not None else default_configs()
    clips, references = held_out_references(refs)
    noise = paired_noise(refs, seeds, tuple(clips.shape[1:]))
    all_refs = references.repeat(seeds, 1, 1, 1)
    all_clips = clips.repeat(seeds, 1, 1, 1, 1)
    results: dict = {"configs": configs, "samplers": {}, "outputs": {}}
    for sampler in samplers:
        per_config = {}
        for config in configs:
            t0 = time.time()
            videos = generate(
                model,
                config,
                all_clips,
                all_refs,
                noise,
                sampler=sampler,
                steps=steps,
                strength=strength,
            )
            metrics = video_metrics(videos, all_refs)
            metrics = {k: v.reshape(seeds, refs) for k, v in metrics.items()}
            metrics["per_frame"] = per_frame_psnr(videos, all_refs).reshape(seeds, refs, -1)
            per_config[config.label] = metrics
            results["outputs"][(sampler, config.label)] = videos
            if progress:
                print(
                    f"{sampler:5s} {config.label:30s} non-ref PSNR "
                    f"{float(metrics['psnr_nonref'].mean()):6.2f} dB  ({time.time() - t0:.1f} s)",
                    flush=True,
                )
        results["samplers"][sampler] = per_config
    return results


def _per_ref(values: torch.Tensor) -> torch.Tensor:
    return values.double().mean(0)  # average seeds first: the interval is over references


def summarise(results: dict) -> dict:
    """Means, 95 % intervals and paired differences to SDEdit, per sampler and config."""
    summary: dict = {}
    for sampler, per_config in results["samplers"].items():
        base = _per_ref(per_config["SDEdit (no rectification)"]["psnr_nonref"])
        rows = {}
        for label, metrics in per_config.items():
            nonref = _per_ref(metrics["psnr_nonref"])
            row = {"psnr_nonref": mean_ci(nonref), "delta_sdedit": mean_ci(nonref - base)}
            for key, _ in METRIC_COLUMNS:
                row[key] = mean_ci(_per_ref(metrics[key]))
            row["per_frame"] = metrics["per_frame"].double().mean(dim=(0, 1)).tolist()
            rows[label] = row
        summary[sampler] = rows
    return summary


def _fmt(value: float, digits: int = 1) -> str:
    return "exact" if value >= 99.0 else f"{value:.{digits}f}"


def markdown_table(rows: dict) -> str:
    head = ["configuration", "PSNR non-ref (dB)", "Δ vs SDEdit (dB)"] + [
        name for _, name in METRIC_COLUMNS
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, row in rows.items():
        mean, half = row["psnr_nonref"]
        dmean, dhalf = row["delta_sdedit"]
        cells = [
            label,
            _fmt(mean) if mean >= 99 else f"{mean:.1f} ± {half:.1f}",
            "—" if "SDEdit" in label or mean >= 99 else f"{dmean:+.1f} ± {dhalf:.1f}",
        ]
        cells += [
            _fmt(row[key][0], 2 if key.startswith(("motion", "drift", "speckle")) else 1)
            for key, _ in METRIC_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sampler_agreement(results: dict) -> float:
    """Largest |DDIM − Euler| pixel difference over all generated videos (should be ~1e-5)."""
    outputs = results["outputs"]
    worst = 0.0
    for (sampler, label), video in outputs.items():
        if sampler == "ddim" and ("euler", label) in outputs:
            worst = max(worst, float((video - outputs[("euler", label)]).abs().max()))
    return worst


def plot(summary: dict, path: Path, sampler: str = "ddim") -> None:
    """Three panels: fidelity vs window end (Fig. 6), fidelity vs motion, fidelity per frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary[sampler]
    finite = [r["psnr_nonref"][0] for r in rows.values() if r["psnr_nonref"][0] < 99]
    cap = max(finite) + 4.0  # exact (still over [0,100%]) is drawn at the top, labelled

    def capped(value: float) -> float:
        return min(value, cap)

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    ax = axes[0]
    sdedit = rows["SDEdit (no rectification)"]["psnr_nonref"]
    for omega in OMEGAS:
        ends, means, halves = [0.0], [sdedit[0]], [sdedit[1]]
        for tau in WINDOWS:
            if tau[0] == 0.0:
                m, h = rows[Config("rect", tau, omega).label]["psnr_nonref"]
                ends.append(tau[1])
                means.append(capped(m))
                halves.append(0.0 if m >= 99 else h)
        line = ax.errorbar(
            ends, means, yerr=halves, marker="o", capsize=3, label=f"[0, end] ω={omega}"
        )
        for tau, marker in (((0.3, 0.7), "s"), ((0.6, 1.0), "^")):
            m, h = rows[Config("rect", tau, omega).label]["psnr_nonref"]
            ax.errorbar(
                [tau[1]],
                [m],
                yerr=[h],
                marker=marker,
                color=line[0].get_color(),
                linestyle="none",
                capsize=3,
                alpha=0.7,
            )
    real = rows["real clips (ground truth)"]["psnr_nonref"][0]
    noref = rows["no reference (pure noise)"]["psnr_nonref"][0]
    ax.axhline(real, color="k", linestyle="--", linewidth=1, label="real clips")
    ax.axhline(noref, color="gray", linestyle=":", linewidth=1, label="no reference")
    ax.set_xlabel("window end (fraction of steps); end 0 = SDEdit; ■ [30,70%], ▲ [60,100%]")
    ax.set_ylabel("PSNR to reference, non-reference frames (dB)")
    ax.set_title(
        f"Fidelity vs rectification window (paper Fig. 6)\n(exact results drawn at {cap:.0f} dB)"
    )
    ax.legend(fontsize=7)

    ax = axes[1]
    for label, row in rows.items():
        m = row["psnr_nonref"][0]
        ax.scatter(row["motion_pooled"][0], capped(m), s=18)
        if "ω" not in label or label.endswith(("60%] ω=paper", "100%] ω=paper", "100%] ω=still")):
            ax.annotate(
                label.replace(" (no rectification)", ""),
                (row["motion_pooled"][0], capped(m)),
                fontsize=6,
            )
    ax.set_xlabel("motion on 4×4-pooled frames (% of range per frame)")
    ax.set_ylabel("PSNR non-reference frames (dB)")
    ax.set_title("Fidelity vs motion (each dot one configuration)")

    ax = axes[2]
    frame_cap = max(v for r in rows.values() for v in r["per_frame"] if v < 99) + 3.0
    picks = [
        "real clips (ground truth)",
        "SDEdit (no rectification)",
        Config("rect", (0.0, 0.6), "paper").label,
        Config("rect", (0.0, 1.0), "paper").label,
        Config("rect", (0.0, 0.6), "free").label,
        Config("rect", (0.6, 1.0), "paper").label,
    ]
    for label in picks:
        values = [min(v, frame_cap) for v in rows[label]["per_frame"]]
        ax.plot(range(len(values)), values, marker=".", label=label)
    ax.set_xlabel("frame")
    ax.set_ylabel(f"PSNR to reference (dB; exact drawn at {frame_cap:.0f})")
    ax.set_title("Fidelity per frame (paper Fig. 5: ω)")
    ax.legend(fontsize=7)
    fig.suptitle(
        f"Noise rectification on the tiny demonstration video model ({sampler}); "
        "synthetic 16×16 clips, not a real video model",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--refs", type=int, default=32, help="held-out reference images")
    ap.add_argument("--seeds", type=int, default=2, help="paired noise seeds per reference")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--strength", type=float, default=1.0, help="1 = noise to T (the paper)")
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, record = load_model(args.weights)
    samplers = tuple(s for s in args.samplers.split(",") if s)
    start = time.time()
    results = run(
        model,
        refs=args.refs,
        seeds=args.seeds,
        steps=args.steps,
        strength=args.strength,
        samplers=samplers,
    )
    summary = summarise(results)
    elapsed = time.time() - start
    parts = [
        "# Fidelity benchmark on the tiny demonstration video model",
        "",
        f"Command: `{' '.join(['python -m bench.fidelity', *(argv or [])])}`",
        f"Model: `{args.weights.name}` ({record['parameters']:,} parameters, {record['steps']} "
        f"steps, held-out ε-MSE {record['heldout_eps_mse_ema']}); {args.refs} held-out "
        f"references × {args.seeds} paired seeds, {args.steps} steps, strength {args.strength}, "
        f"8 frames 16×16; {elapsed / 60:.1f} min.",
        "PSNR in dB to the reference image (± 95 % over references; Δ paired with SDEdit). "
        "Motion, drift (pooled |last − first|) and speckle (|x − blur3×3 x|) in % of the pixel "
        "range. 'exact' = PSNR ≥ 99 dB.",
    ]
    for sampler in samplers:
        name = {"ddim": "DDIM, ε form", "euler": "Euler, denoiser form"}[sampler]
        parts += ["", f"## {name}", "", markdown_table(summary[sampler])]
    if len(samplers) == 2:
        parts += [
            "",
            f"Largest |DDIM − Euler| pixel difference over all videos: "
            f"{sampler_agreement(results):.1e}",
        ]
    text = "\n".join(parts) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fidelity.md").write_text(text)
    (args.out / "fidelity.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, args.out / "fidelity.png", sampler=samplers[0])
    print(text)
    print(
        f"wrote {args.out / 'fidelity.md'}, {args.out / 'fidelity.png'}, {args.out / 'fidelity.json'}"
    )
    return summary


if __name__ == "__main__":
    main()
