"""Video tensor layouts: the host says which one it passes; it is never guessed."""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange

from .errors import RectifyError

#: ``"frames"``: ``[B·L, C, h, w]``, frame-major per video (WebUI / AnimateDiff batches).
#: ``"video"``: ``[B, C, L, h, w]`` (diffusers video pipelines).
Layout = Literal["frames", "video"]
LAYOUTS: tuple[str, ...] = ("frames", "video")

PerFrame = float | torch.Tensor


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise RectifyError("layout", layout, f"one of {', '.join(LAYOUTS)}")


def video_count(shape: torch.Size, layout: Layout, frames: int) -> int:
    """Number of videos B in a tensor of ``shape``, or a clear error."""
    if layout == "frames":
        if len(shape) < 2 or shape[0] % frames != 0:
            raise RectifyError(
                "tensor shape",
                tuple(shape),
                f"layout 'frames' needs [B·L, C, ...] with the batch a multiple of L = {frames}",
            )
        return shape[0] // frames
    if len(shape) < 3 or shape[2] != frames:
        raise RectifyError(
            "tensor shape",
            tuple(shape),
            f"layout 'video' needs [B, C, L, ...] with L = {frames}",
        )
    return shape[0]


def to_frame_rows(tensor: torch.Tensor, layout: Layout, frames: int) -> torch.Tensor:
    """``[B, L, D]`` in float32: one row per frame, whatever the layout."""
    video_count(tensor.shape, layout, frames)
    if layout == "frames":
        rows = rearrange(tensor, "(b l) ... -> b l (...)", l=frames)
    else:
        rows = rearrange(tensor, "b c l ... -> b l (c ...)")
    return rows.to(torch.float32)


def from_frame_rows(rows: torch.Tensor, like: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Back to ``like``'s layout, shape, dtype and device."""
    if layout == "frames":
        out = rows.reshape(like.shape)
    else:
        c = like.shape[1]
        out = rearrange(rows, "b l (c rest) -> b c l rest", c=c).reshape(like.shape)
    return out.to(dtype=like.dtype, device=like.device)


def per_frame(
    value: PerFrame, name: str, videos: int, frames: int, layout: Layout, device: torch.device
) -> torch.Tensor:
    """A per-frame scalar (σ or ᾱ) as float32 ``[B, L, 1]`` or broadcastable to it.

    Accepts a number, a 0-d tensor, or one value per batch entry (``B·L`` for layout
    'frames', ``B`` for 'video'). A single value from the host stays a 0-d CPU tensor (a
    scalar operand on any device); other host values go to ``device`` asynchronously.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to(dtype=torch.float32)
    else:
        tensor = torch.as_tensor(value, dtype=torch.float32)
    count = tensor.numel()
    if count == 1:
        return tensor.reshape(()) if tensor.device.type == "cpu" else tensor.reshape(1, 1, 1)
    tensor = tensor.to(device=device, non_blocking=True)
    if layout == "frames" and count == videos * frames:
        return tensor.reshape(videos, frames, 1)
    if count == videos:
        return tensor.reshape(videos, 1, 1)
    raise RectifyError(
        name,
        tuple(tensor.shape),
        f"a number or one value per batch entry ({videos * frames if layout == 'frames' else videos})",
    )
