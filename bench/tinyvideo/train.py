"""Train the tiny video model on synthetic clips (ε-prediction, SD schedule, T = 1000).

One command, CPU only, about 15 minutes on one core:

    python -m bench.tinyvideo.train

It writes `bench/tinyvideo/weights/tinyvideo16.safetensors` (fp16) and a `.json` beside it
holding the architecture, the data and schedule settings, and the run record (seed, steps,
wall time, losses). Same seed and steps give the same data and the same noise draws;
weights may still differ in the last bits between machines (float reductions).

    python -m bench.tinyvideo.train --objective flow

trains the same network, data and recipe with the rectified-flow objective instead
(Wan / SD3 / diffusers FlowMatch convention): `x = (1−σ)·x0 + σ·n`, target velocity
`v = n − x0`, timestep input `σ·1000` (a float), σ drawn uniformly in [0, 1). It writes
`bench/tinyvideo/weights/tinyflow16.safetensors` + `.json` (sampler: `flow_samplers.py`).

    python -m bench.tinyvideo.train --objective flow --vae bench/tinyvideo/weights/tinycausalvae.safetensors

trains it on the latents of a causal video VAE instead of pixels (`causal_vae.py`: 17-frame
clips → 5 latent frames of 8×8, normalised per channel), as Wan's transformer works on its
VAE's latents. It writes `tinyflowlatent.safetensors` (used by `bench.causal_target`).
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from .data import ClipConfig, make_clips
from .model_io import DEFAULT_WEIGHTS, WEIGHTS_DIR, save_model
from .schedule import BETA_END, BETA_START, NUM_TRAIN_TIMESTEPS, scaled_linear_alphas_cumprod
from .unet import TinyVideoUNet, UNetConfig, count_parameters

EVAL_SEED = 987_654_000_000  # a clip stream used neither in training nor by the benchmark
OBJECTIVES = ("eps", "flow")
#: The same network trained with the rectified-flow objective (`--objective flow`).
FLOW_WEIGHTS = WEIGHTS_DIR / "tinyflow16.safetensors"
#: ... and on the latents of the tiny causal VAE (`--vae`).
LATENT_FLOW_WEIGHTS = WEIGHTS_DIR / "tinyflowlatent.safetensors"


def warmup_cosine_lr(step: int, steps: int, lr: float, floor: float, warmup: int = 100) -> float:
    """Linear warm-up over `warmup` steps, then a cosine from `lr` down to `floor`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def eps_loss(
    model: TinyVideoUNet,
    clean: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    g: torch.Generator,
) -> torch.Tensor:
    """Paper Eq. (4): ||ε − ε_θ(√ā·z0 + √(1−ā)·ε, t)||², t uniform over 0..T−1."""
    b = clean.shape[0]
    t = torch.randint(0, alphas_cumprod.numel(), (b,), generator=g)
    noise = torch.randn(clean.shape, generator=g)
    abar = alphas_cumprod[t].float().view(b, 1, 1, 1, 1)
    noisy = abar.sqrt() * clean + (1 - abar).sqrt() * noise
    return torch.nn.functional.mse_loss(model(noisy, t), noise)


def flow_loss(
    model: TinyVideoUNet, clean: torch.Tensor, g: torch.Generator, *, implied_eps: bool = False
) -> torch.Tensor:
    """Rectified flow: ||(n − x0) − v_θ((1−σ)·x0 + σ·n, σ·1000)||², σ uniform in [0, 1).

    `implied_eps` scores the noise the velocity implies instead, `n̂ = x + (1−σ)·v̂`
    (error `(1−σ)²·` the velocity's), to compare with the ε model's held-out ε-MSE.
    """
    b = clean.shape[0]
    sigma = torch.rand((b,), generator=g)
    noise = torch.randn(clean.shape, generator=g)
    s = sigma.view(b, 1, 1, 1, 1)
    noisy = (1 - s) * clean + s * noise
    velocity = model(noisy, sigma * 1000)
    if implied_eps:
        return torch.nn.functional.mse_loss(noisy + (1 - s) * velocity, noise)
    return torch.nn.functional.mse_loss(velocity, noise - clean)


@torch.no_grad()
def evaluate_flow(
    model: TinyVideoUNet,
    clip_cfg: ClipConfig,
    implied_eps: bool = False,
    to_latent: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """Velocity-MSE (or implied ε-MSE) on the fixed held-out batch, fixed σ and noise."""
    g = torch.Generator().manual_seed(EVAL_SEED)
    clean = make_clips(64, EVAL_SEED, clip_cfg)
    if to_latent is not None:
        clean = to_latent(clean)
    losses = [
        flow_loss(model, clean[i : i + 16], g, implied_eps=implied_eps).item()
        for i in (0, 16, 32, 48)
    ]
    return sum(losses) / len(losses)


@torch.no_grad()
def evaluate(model: TinyVideoUNet, alphas_cumprod: torch.Tensor, clip_cfg: ClipConfig) -> float:
    """ε-MSE on a fixed held-out batch with fixed timesteps and noise (comparable across runs)."""
    g = torch.Generator().manual_seed(EVAL_SEED)
    clean = make_clips(64, EVAL_SEED, clip_cfg)
    losses = [eps_loss(model, clean[i : i + 16], alphas_cumprod, g).item() for i in (0, 16, 32, 48)]
    return sum(losses) / len(losses)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=12, help="clips per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (leave a core free)")
    ap.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="eps",
        help="eps: ε-prediction on SD's schedule (tinyvideo16); "
        "flow: rectified-flow velocity (tinyflow16)",
    )
    ap.add_argument(
        "--vae",
        type=Path,
        default=None,
        help="train on this causal VAE's latents (causal_vae.py; flow objective only)",
    )
    ap.add_argument("--out", type=Path, default=None, help="weights path (default per objective)")
    ap.add_argument("--max-minutes", type=float, default=25.0, help="safety stop")
    args = ap.parse_args(argv)
    flow = args.objective == "flow"
    if args.vae is not None and not flow:
        ap.error("--vae needs --objective flow")
    if args.out is None:
        args.out = (
            (LATENT_FLOW_WEIGHTS if args.vae is not None else FLOW_WEIGHTS)
            if flow
            else DEFAULT_WEIGHTS
        )

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    clip_cfg = ClipConfig()
    unet_cfg = UNetConfig()
    to_latent = None
    if args.vae is not None:
        from .causal_vae import CLIPS, LatentSpace, load_vae

        vae, vae_record = load_vae(args.vae)
        to_latent = LatentSpace(vae, vae_record).encode
        clip_cfg = CLIPS
        unet_cfg = UNetConfig(in_channels=vae.config.latent_channels)
    model = TinyVideoUNet(unet_cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    alphas_cumprod = scaled_linear_alphas_cumprod()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    g = torch.Generator().manual_seed(args.seed)
    history: list[list[float]] = []
    window: list[float] = []
    start = time.time()
    step = 0
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = warmup_cosine_lr(step, args.steps, args.lr, 5e-5)
        # training streams seed*1e6 + step never reach the held-out/eval streams (~9.9e11)
        clean = make_clips(args.batch, args.seed * 1_000_000 + step, clip_cfg)
        if to_latent is not None:
            clean = to_latent(clean)
        if flow:
            loss = flow_loss(model, clean, g)
        else:
            loss = eps_loss(model, clean, alphas_cumprod, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        window.append(loss.item())
        if (step + 1) % 100 == 0:
            mean = sum(window) / len(window)
            history.append([step + 1, round(mean, 5)])
            elapsed = time.time() - start
            print(
                f"step {step + 1}/{args.steps}  loss {mean:.4f}  {elapsed / 60:.1f} min", flush=True
            )
            window = []
        if time.time() - start > args.max_minutes * 60:
            print("time budget reached, stopping early", flush=True)
            break
    elapsed = time.time() - start
    steps_done = step + 1
    ema.eval()
    if flow:
        eval_loss = evaluate_flow(ema, clip_cfg, to_latent=to_latent)
        eval_eps = evaluate_flow(ema, clip_cfg, implied_eps=True, to_latent=to_latent)
    else:
        eval_loss = eval_eps = evaluate(ema, alphas_cumprod, clip_cfg)
    tail = [h[1] for h in history[-2:]] or window
    record = {
        "description": "tiny synthetic-video diffusion model (a small demonstration model)",
        "command": " ".join(
            ["python -m bench.tinyvideo.train", *(sys.argv[1:] if argv is None else argv)]
        ),
        "seed": args.seed,
        "steps": steps_done,
        "batch_clips": args.batch,
        "lr": args.lr,
        "ema_decay": args.ema,
        "threads": args.threads,
        "train_seconds": round(elapsed, 1),
        "final_train_loss": round(sum(tail) / len(tail), 5),
        "heldout_eps_mse_ema": round(eval_eps, 5),
        "loss_history": history,
        "parameters": count_parameters(model),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "data": asdict(clip_cfg),
        "schedule": {
            "type": "scaled_linear",
            "beta_start": BETA_START,
            "beta_end": BETA_END,
            "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
            "prediction": "epsilon",
        },
    }
    if flow:
        record["description"] = (
            "tiny synthetic-video rectified-flow model (a small demonstration model)"
        )
        record["heldout_v_mse_ema"] = round(eval_loss, 5)
        record["schedule"] = {
            "type": "rectified_flow",
            "interpolation": "x = (1 - sigma) * x0 + sigma * noise",
            "prediction": "velocity",
            "target": "noise - x0 (denoised = x - sigma * v)",
            "timestep_input": "sigma * num_train_timesteps (float)",
            "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
            "sigma_sampling": "uniform in [0, 1) (no logit-normal, no shift)",
            "heldout_eps_mse_ema": "of the implied noise x + (1 - sigma) * v",
        }
        if args.vae is not None:
            record["description"] = (
                "tiny rectified-flow model on the latents of the tiny causal video VAE"
            )
            record["vae"] = args.vae.name
            record["schedule"]["latents"] = "(VAE posterior mean - latent_stats.mean) / std"
    save_model(ema, args.out, record)
    name = "v-MSE" if flow else "ε-MSE"
    print(
        f"saved {args.out}: {steps_done} steps, {elapsed / 60:.1f} min, "
        f"train loss {record['final_train_loss']}, held-out {name} {eval_loss:.4f}"
    )
    return record


if __name__ == "__main__":
    main()
