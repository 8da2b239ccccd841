"""A tiny inflated 3D U-Net (ε-prediction), built like the video models the paper targets.

As in the paper's Fig. 1(b): spatial modules treat frames as batch entries (per-frame 2D
convolutions), temporal modules treat pixels as batch entries (a temporal convolution at
every resolution, temporal self-attention across frames at the two lowest ones). Every
residual branch and the output layer start at zero, so the untrained network is the
identity plus zero and training is stable on a CPU in minutes.

Tensors are `[B, C, L, H, W]`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters (stored beside the weights)."""

    in_channels: int = 3
    channels: tuple[int, ...] = (24, 48, 96)
    time_dim: int = 128
    heads: int = 4
    groups: int = 8
    max_frames: int = 32

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return cls(**d)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps `[B] -> [B, dim]`."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    """Per-frame 2D residual block with timestep conditioning."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(time_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x: [B*L, C, H, W]; emb: [B*L, time_dim]
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(nn.functional.silu(emb))[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return self.skip(x) + h


class TemporalConv(nn.Module):
    """Convolution over frames only (kernel 3), residual, zero-initialised output."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.conv = _zero(nn.Conv1d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        _, _, h, w = x.shape
        y = rearrange(self.norm(x), "(b l) c h w -> (b h w) c l", l=frames)
        y = self.conv(nn.functional.silu(y))
        return x + rearrange(y, "(b h w) c l -> (b l) c h w", h=h, w=w)


class TemporalAttention(nn.Module):
    """Self-attention across frames at each pixel (AnimateDiff's motion-module idea)."""

    def __init__(self, channels: int, heads: int, groups: int, max_frames: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.pos = nn.Parameter(torch.zeros(max_frames, channels))
        nn.init.normal_(self.pos, std=0.02)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = _zero(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        _, _, h, w = x.shape
        y = rearrange(self.norm(x), "(b l) c h w -> (b h w) l c", l=frames)
        y = y + self.pos[:frames]
        q, k, v = rearrange(self.qkv(y), "n l (three g d) -> three n g l d", three=3, g=self.heads)
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        y = self.out(rearrange(y, "n g l d -> n l (g d)"))
        return x + rearrange(y, "(b h w) l c -> (b l) c h w", h=h, w=w)


class Stage(nn.Module):
    """One resolution level: a residual block, a temporal conv, optional temporal attention."""

    def __init__(self, c_in: int, c_out: int, cfg: UNetConfig, attention: bool) -> None:
        super().__init__()
        self.res = ResBlock(c_in, c_out, cfg.time_dim, cfg.groups)
        self.tconv = TemporalConv(c_out, cfg.groups)
        self.attn = (
            TemporalAttention(c_out, cfg.heads, cfg.groups, cfg.max_frames) if attention else None
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        x = self.tconv(self.res(x, emb), frames)
        if self.attn is not None:
            x = self.attn(x, frames)
        return x


class TinyVideoUNet(nn.Module):
    """ε_θ(x_t, t) for videos `[B, C, L, H, W]`; `t` is `[B]` or a scalar timestep."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or UNetConfig()
        self.config = cfg
        ch = cfg.channels
        self.time_mlp = nn.Sequential(
            nn.Linear(ch[0], cfg.time_dim), nn.SiLU(), nn.Linear(cfg.time_dim, cfg.time_dim)
        )
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        n = len(ch)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i in range(n):
            c_prev = ch[max(i - 1, 0)]
            self.down.append(Stage(c_prev, ch[i], cfg, attention=i >= n - 2))
            if i < n - 1:
                self.downsample.append(nn.Conv2d(ch[i], ch[i], 3, stride=2, padding=1))
        self.mid = Stage(ch[-1], ch[-1], cfg, attention=True)
        self.up = nn.ModuleList()
        for i in reversed(range(n)):
            c_from = ch[-1] if i == n - 1 else ch[i + 1]
            self.up.append(Stage(c_from + ch[i], ch[i], cfg, attention=i >= n - 2))
        self.norm_out = nn.GroupNorm(cfg.groups, ch[0])
        self.conv_out = _zero(nn.Conv2d(ch[0], cfg.in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor | float | int) -> torch.Tensor:
        b, _, frames = x.shape[:3]
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(b)
        emb = self.time_mlp(timestep_embedding(t, self.config.channels[0]).to(x.dtype))
        emb = emb.repeat_interleave(frames, dim=0)  # per frame, frame-major within a video
        h = self.conv_in(rearrange(x, "b c l h w -> (b l) c h w"))
        skips = []
        for i, stage in enumerate(self.down):
            h = stage(h, emb, frames)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb, frames)
        for stage in self.up:
            skip = skips.pop()
            if h.shape[-1] != skip.shape[-1]:
                h = nn.functional.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = stage(torch.cat([h, skip], dim=1), emb, frames)
        out = self.conv_out(nn.functional.silu(self.norm_out(h)))
        return rearrange(out, "(b l) c h w -> b c l h w", b=b)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
