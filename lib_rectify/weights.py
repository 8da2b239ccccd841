"""Per-frame rectification weights ω (paper Eq. 8) for a video of L frames."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .anchors import nearest_anchor_distance
from .errors import RectifyError
from .params import Omega


def resolve_reference_frame(reference_frame: int, frames: int) -> int:
    """The reference frame as an index in ``[0, frames)``; negative counts from the end."""
    if frames < 1:
        raise RectifyError("frames", frames, "a video has at least one frame")
    if not -frames <= reference_frame < frames:
        raise RectifyError(
            "reference_frame",
            reference_frame,
            f"this video has {frames} frames: use 0 to {frames - 1}, or -1 to -{frames}",
        )
    return reference_frame % frames


def paper_curve(distance: torch.Tensor, span: int) -> torch.Tensor:
    """The official code's ω: 1.0 falling linearly to 0.5 over the first half, then 0.5.

    ``span`` is the number of frames the curve covers (L for a reference at either
    end). The first ``ceil(span / 2)`` distances carry the ramp, so it is defined for
    every length, odd ones included (the official code breaks on odd L).
    """
    ramp = (span + 1) // 2
    if ramp <= 1:
        return torch.where(distance == 0, 1.0, 0.5).to(torch.float32)
    values = 1.0 - 0.5 * distance.to(torch.float32) / (ramp - 1)
    return values.clamp(min=0.5)


def omega_weights(
    omega: Omega,
    frames: int,
    reference_frame: int = 0,
    anchors: Sequence[int] | None = None,
) -> torch.Tensor:
    """ω for each of ``frames`` frames, float32 on the CPU.

    Presets are laid out by distance from the reference frame, so ``paper`` with
    reference -1 is the paper's curve mirrored. With several ``anchors`` (resolved frame
    indices) the distance is to the nearest one, over the same span as one anchor at an
    end (``paper`` then falls to 0.5 at the middle between two end anchors). Number
    lists are literal in frame order, resampled to the video length by linear
    interpolation.
    """
    reference = resolve_reference_frame(reference_frame, frames)
    if isinstance(omega, str):
        if omega == "still":
            return torch.zeros(frames, dtype=torch.float32)
        if omega == "free":
            return torch.ones(frames, dtype=torch.float32)
        if omega == "paper":
            if anchors is not None and len(anchors) > 1:
                return paper_curve(nearest_anchor_distance(anchors, frames), frames)
            distance = (torch.arange(frames) - reference).abs()
            span = max(reference, frames - 1 - reference) + 1
            return paper_curve(distance, span)
        raise RectifyError("omega", omega, "a preset: paper, still or free")
    if isinstance(omega, tuple):
        return resample_linear(torch.tensor(omega, dtype=torch.float64), frames).float()
    return torch.full((frames,), float(omega), dtype=torch.float32)


def resample_linear(values: torch.Tensor, length: int) -> torch.Tensor:
    """Stretch a 1-D curve to ``length`` samples; the ends map to the ends."""
    count = values.numel()
    if count == 1 or length == 1:
        return values[:1].expand(length).clone()
    position = torch.linspace(0, count - 1, length, dtype=torch.float64)
    left = position.floor().long().clamp(max=count - 2)
    frac = (position - left).to(values.dtype)
    return values[left] * (1 - frac) + values[left + 1] * frac
