"""A tiny VAE that encodes time causally, as Wan's, HunyuanVideo's and LTX's do.

The question it serves (`bench.causal_target`): with such a VAE, is the picture's clean
target the picture's own latent repeated over the latent frames (what the paper does with
an image VAE), or the VAE's encoding of the picture held still over the pixel frames?

Built on the facts that make the two differ in the real VAEs (diffusers 0.42.1,
`autoencoder_kl_wan.py`: causal 3D convolutions, zero history before the first frame,
time downsampled ×4 after the first frame):

* a video of `1 + 4k` frames becomes `1 + k` latent frames; latent frame 0 encodes frame
  0 alone (it sees three frames of zeros before it), latent frame `j ≥ 1` encodes frames
  `4j − 3 … 4j`;
* every temporal convolution is causal (zero padding on the past side only), in pixel
  time before the downsampling and in latent time after it, so a later latent frame also
  depends on the frames before its own four;
* space is downsampled ×2 (16×16 pictures → 8×8 latents), 8 latent channels.

The decoder mirrors it: latent frame 0 decodes to frame 0, latent frame `j` to frames
`4j − 3 … 4j`. Training (`python -m bench.tinyvideo.causal_vae`, a few minutes on a
core) minimises reconstruction error plus a small KL term on the synthetic clips of
`data.py` (17 frames); the posterior mean is the encoding, as the adapters use it.

Tensors are `[B, C, F, H, W]`, pixels in [-1, 1].
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from einops import rearrange
from safetensors.torch import load_file, save_file
from torch import nn

from .data import ClipConfig, make_clips
from .train import warmup_cosine_lr

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
VAE_WEIGHTS = WEIGHTS_DIR / "tinycausalvae.safetensors"
EVAL_SEED = 987_654_000_000  # as train.py: a stream neither training nor the benchmark uses
#: The clips this VAE and the latent model are trained on: 17 frames = 5 latent frames.
CLIPS = ClipConfig(frames=17)


@dataclass(frozen=True)
class CausalVAEConfig:
    """Architecture (stored beside the weights)."""

    channels: int = 48
    latent_channels: int = 8
    temporal: int = 4  # latent frame j >= 1 holds this many pixel frames


class ChannelNorm(nn.Module):
    """RMS over the channels at each position (as Wan's VAE): no statistics across time,
    which a GroupNorm would take and so break causality."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, channels, *([1] * 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, ...] (4-D or 5-D)
        gain = self.gain.view(1, -1, *([1] * (x.ndim - 2)))
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-6) * gain


class CausalTimeConv(nn.Module):
    """Residual convolution over time only, causal: zero frames on the past side."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.norm = ChannelNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W]
        _, _, _, h, w = x.shape
        y = rearrange(nn.functional.silu(self.norm(x)), "b c t h w -> (b h w) c t")
        y = self.conv(nn.functional.pad(y, (self.kernel - 1, 0)))
        return x + rearrange(y, "(b h w) c t -> b c t h w", h=h, w=w)


class FrameBlock(nn.Module):
    """Per-frame 2D residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = ChannelNorm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W]
        b = x.shape[0]
        y = rearrange(x, "b c t h w -> (b t) c h w")
        y = self.conv1(nn.functional.silu(self.norm1(y)))
        y = self.conv2(nn.functional.silu(self.norm2(y)))
        return x + rearrange(y, "(b t) c h w -> b c t h w", b=b)


def _per_frame(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    y = conv(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class TinyCausalVAE(nn.Module):
    """`encode` `[B, 3, 1+4k, H, W]` → posterior mean and log-variance `[B, 8, 1+k, H/2, W/2]`;
    `decode` back."""

    def __init__(self, config: CausalVAEConfig | None = None) -> None:
        super().__init__()
        cfg = config or CausalVAEConfig()
        self.config = cfg
        c, t = cfg.channels, cfg.temporal
        self.enc_in = nn.Conv2d(3, c, 3, padding=1)
        self.enc_pixel = nn.ModuleList([FrameBlock(c), CausalTimeConv(c, 3)])
        self.enc_down = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.enc_time = nn.Conv3d(c, c, (t, 1, 1), stride=(t, 1, 1))  # after t−1 zero frames
        self.enc_latent = nn.ModuleList([FrameBlock(c), CausalTimeConv(c, 2), FrameBlock(c)])
        self.enc_norm = ChannelNorm(c)
        self.enc_out = nn.Conv2d(c, 2 * cfg.latent_channels, 3, padding=1)

        self.dec_in = nn.Conv2d(cfg.latent_channels, c, 3, padding=1)
        self.dec_latent = nn.ModuleList([FrameBlock(c), CausalTimeConv(c, 2), FrameBlock(c)])
        self.dec_time = nn.ConvTranspose3d(c, c, (t, 1, 1), stride=(t, 1, 1))
        self.dec_pixel = nn.ModuleList([CausalTimeConv(c, 3), FrameBlock(c)])
        self.dec_up = nn.Conv2d(c, c, 3, padding=1)
        self.dec_pixel2 = FrameBlock(c)
        self.dec_norm = ChannelNorm(c)
        self.dec_out = nn.Conv2d(c, 3, 3, padding=1)

    def latent_frames(self, frames: int) -> int:
        t = self.config.temporal
        if frames < 1 or (frames - 1) % t:
            raise ValueError(f"frames must be 1 + {t}·k, got {frames}")
        return (frames - 1) // t + 1

    def encode(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.config.temporal
        self.latent_frames(video.shape[2])
        h = _per_frame(self.enc_in, video)
        for block in self.enc_pixel:
            h = block(h)
        h = _per_frame(self.enc_down, nn.functional.silu(h))
        h = nn.functional.pad(h, (0, 0, 0, 0, t - 1, 0))  # frame 0 alone in its group
        h = self.enc_time(h)
        for block in self.enc_latent:
            h = block(h)
        h = _per_frame(self.enc_out, nn.functional.silu(self.enc_norm(h)))
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-20.0, 5.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        t = self.config.temporal
        h = _per_frame(self.dec_in, z)
        for block in self.dec_latent:
            h = block(h)
        h = self.dec_time(nn.functional.silu(h))[:, :, t - 1 :]  # latent 0 → frame 0 only
        for block in self.dec_pixel:
            h = block(h)
        b = h.shape[0]
        up = nn.functional.interpolate(
            rearrange(h, "b c t h w -> (b t) c h w"), scale_factor=2, mode="nearest"
        )
        h = rearrange(self.dec_up(up), "(b t) c h w -> b c t h w", b=b)
        h = self.dec_pixel2(h)
        return _per_frame(self.dec_out, nn.functional.silu(self.dec_norm(h)))


# ------------------------------------------------------------------ save / load
def save_vae(vae: TinyCausalVAE, weights: Path, record: dict) -> None:
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in vae.state_dict().items()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    record = {**record, "vae": asdict(vae.config)}
    weights.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


def load_vae(weights: Path | str | None = None) -> tuple[TinyCausalVAE, dict]:
    """The trained VAE in fp32 eval mode, with its record (latent mean/std included)."""
    weights = Path(weights) if weights is not None else VAE_WEIGHTS
    if not weights.exists():
        raise FileNotFoundError(
            f"{weights} not found; train it with `python -m bench.tinyvideo.causal_vae`"
        )
    record = json.loads(weights.with_suffix(".json").read_text())
    vae = TinyCausalVAE(CausalVAEConfig(**record["vae"]))
    vae.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    vae.eval().requires_grad_(False)
    return vae, record


class LatentSpace:
    """Pixels ↔ the normalised latents a latent video model works on.

    `(mean − latents_mean) / latents_std` per channel, as Wan's pipeline normalises
    (statistics measured on training clips and stored with the weights).
    """

    def __init__(self, vae: TinyCausalVAE, record: dict) -> None:
        self.vae = vae
        stats = record["latent_stats"]
        self.mean = torch.tensor(stats["mean"]).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(stats["std"]).view(1, -1, 1, 1, 1)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return (self.vae.encode(video)[0] - self.mean) / self.std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents * self.std + self.mean).clamp(-1.0, 1.0)


# ------------------------------------------------------------------ training
def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a - b).pow(2).mean())
    return 10 * math.log10(4.0 / max(mse, 1e-12))  # pixel range 2


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8, help="clips per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--kl", type=float, default=1e-4, help="KL weight per latent element")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=VAE_WEIGHTS)
    ap.add_argument("--max-minutes", type=float, default=30.0, help="safety stop")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vae = TinyCausalVAE()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    start, history, window, step = time.time(), [], [], 0
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = warmup_cosine_lr(step, args.steps, args.lr, 2e-5)
        # a seed stream of its own (train.py uses seed·1e6 + step)
        clips = make_clips(args.batch, 500_000_000 + args.seed * 1_000_000 + step, CLIPS)
        mean, logvar = vae.encode(clips)
        z = mean + torch.randn(mean.shape, generator=g) * (0.5 * logvar).exp()
        recon = vae.decode(z)
        rec = nn.functional.mse_loss(recon, clips)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = rec + args.kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        window.append(rec.item())
        if (step + 1) % 100 == 0:
            history.append([step + 1, round(sum(window) / len(window), 6)])
            print(
                f"step {step + 1}/{args.steps}  recon MSE {history[-1][1]:.5f}"
                f"  {(time.time() - start) / 60:.1f} min",
                flush=True,
            )
            window = []
        if time.time() - start > args.max_minutes * 60:
            print("time budget reached, stopping early", flush=True)
            break
    elapsed = time.time() - start
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        held = make_clips(64, EVAL_SEED, CLIPS)
        mean = vae.encode(held)[0]
        recon_psnr = psnr(vae.decode(mean), held)
        # latent statistics per channel, over training-stream clips (for normalisation)
        stats_clips = make_clips(64, 500_000_000 + args.seed * 1_000_000 + args.steps, CLIPS)
        z = vae.encode(stats_clips)[0]
        lat_mean = z.mean(dim=(0, 2, 3, 4))
        lat_std = z.std(dim=(0, 2, 3, 4))
    record = {
        "description": "tiny causal video VAE (time ×4 after the first frame, space ×2)",
        "command": "python -m bench.tinyvideo.causal_vae "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "seed": args.seed,
        "steps": step + 1,
        "batch_clips": args.batch,
        "lr": args.lr,
        "kl_weight": args.kl,
        "threads": args.threads,
        "train_seconds": round(elapsed, 1),
        "heldout_recon_psnr_db": round(recon_psnr, 2),
        "loss_history": history,
        "parameters": sum(p.numel() for p in vae.parameters()),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "data": asdict(CLIPS),
        "latent_stats": {
            "mean": [round(float(v), 5) for v in lat_mean],
            "std": [round(float(v), 5) for v in lat_std],
        },
    }
    save_vae(vae, args.out, record)
    print(
        f"saved {args.out}: {step + 1} steps, {elapsed / 60:.1f} min, "
        f"held-out reconstruction {recon_psnr:.2f} dB"
    )
    return record


if __name__ == "__main__":
    main()
