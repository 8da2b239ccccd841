"""Anchor frames: the frames rectification holds exactly on a picture (docs/two-anchors.md).

One anchor is the paper's reference frame. A second anchor at the other end of the video
holds an end picture: every frame's clean latent is a blend of the two pictures, and its
correction mixes the two anchors' gaps by its position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import RectifyError

#: How the clean latents of the frames between two anchors are made.
BLENDS: dict[str, str] = {
    "linear": "a latent cross-fade from the first picture to the second",
    "slerp": "spherical interpolation: keeps the latent's norm between the pictures",
    "hold": "the first picture up to the middle, the second after (no blend)",
}


def anchor_positions(anchors: Sequence[int], frames: int) -> torch.Tensor:
    """``s_f`` in [0, 1]: where frame ``f`` sits between the first and last anchor, ``[L]``."""
    first, last = min(anchors), max(anchors)
    f = torch.arange(frames, dtype=torch.float32)
    if last == first:
        return torch.zeros(frames, dtype=torch.float32)
    return ((f - first) / (last - first)).clamp(0.0, 1.0)


def anchor_mix(anchors: Sequence[int], frames: int) -> torch.Tensor:
    """``m [L, A]``: each frame's weight on each anchor's gap; rows sum to 1, 1 at an anchor.

    One anchor: all ones. Two: linear in the frame's position between them.
    """
    if len(anchors) == 1:
        return torch.ones(frames, 1, dtype=torch.float32)
    if len(anchors) != 2 or anchors[0] == anchors[1]:
        raise RectifyError("anchors", list(anchors), "one frame, or two different frames")
    s = anchor_positions(anchors, frames)
    towards_second = s if anchors[1] > anchors[0] else 1 - s
    return torch.stack([1 - towards_second, towards_second], dim=1)


def nearest_anchor_distance(anchors: Sequence[int], frames: int) -> torch.Tensor:
    """``[L]`` frame distance to the nearest anchor (ω presets are laid out by it)."""
    f = torch.arange(frames)
    return torch.stack([(f - a).abs() for a in anchors]).min(dim=0).values


def blend_clean(
    first: torch.Tensor, second: torch.Tensor, s: torch.Tensor, blend: str
) -> torch.Tensor:
    """Clean latents ``[B, L, D]`` from two pictures' latents ``[B, 1, D]`` at positions ``s``.

    Exact at the ends (``s = 0`` gives ``first``, ``s = 1`` gives ``second``) for every
    blend; float32.
    """
    if blend not in BLENDS:
        raise RectifyError("blend", blend, f"one of {', '.join(BLENDS)}")
    a = first.to(torch.float32)
    b = second.to(torch.float32)
    s = s.to(device=a.device, dtype=torch.float32).view(1, -1, 1)
    if blend == "hold":
        return torch.where(s < 0.5, a, b).expand(-1, s.shape[1], -1).clone()
    if blend == "linear":
        return torch.lerp(a, b, s)
    # slerp over each video's whole latent; falls back to linear for (nearly) parallel ones
    na, nb = a.norm(dim=2, keepdim=True), b.norm(dim=2, keepdim=True)
    cos = ((a * b).sum(dim=2, keepdim=True) / (na * nb).clamp_min(1e-12)).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    parallel = sin.abs() < 1e-4
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1 - s, torch.sin((1 - s) * theta) / safe)
    wb = torch.where(parallel, s, torch.sin(s * theta) / safe)
    out = wa * a + wb * b
    return torch.where(s == 0, a, torch.where(s == 1, b, out))  # exact ends, not sin-rounded


#: The blend the hosts use: bench/results/anchors.md measured the three blends equal
#: within their intervals, and linear is the simplest.
DEFAULT_BLEND = "linear"


def end_anchored_clean(
    picture: torch.Tensor,
    end_picture: torch.Tensor,
    frames: int,
    reference_frame: int,
    blend: str = DEFAULT_BLEND,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The clean latents of a video held on ``picture`` at the reference frame and on
    ``end_picture`` at the other end, and the two anchors ``(reference, other end)``.

    ``picture`` and ``end_picture`` are ``[B, *S]`` (one latent per video); the result is
    ``[B, L, *S]`` in float32. The reference frame must be the first or the last.
    """
    from .weights import resolve_reference_frame

    if tuple(end_picture.shape) != tuple(picture.shape):
        raise RectifyError(
            "end picture latent",
            tuple(end_picture.shape),
            f"the picture's latent shape {tuple(picture.shape)}",
        )
    reference = resolve_reference_frame(reference_frame, frames)
    if frames < 2 or reference not in (0, frames - 1):
        raise RectifyError(
            "reference_frame",
            reference_frame,
            "0 or -1 with an end picture: it goes to the other end of the video",
        )
    first, last = (picture, end_picture) if reference == 0 else (end_picture, picture)
    videos, shape = picture.shape[0], picture.shape[1:]
    rows = blend_clean(
        first.reshape(videos, 1, -1),
        last.reshape(videos, 1, -1),
        anchor_positions((0, frames - 1), frames),
        blend,
    )
    return rows.reshape(videos, frames, *shape), (reference, frames - 1 - reference)
