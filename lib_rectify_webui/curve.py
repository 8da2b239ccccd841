"""A small picture of ω per frame, so the trade-off is seen rather than read (pure Python)."""

from __future__ import annotations

from html import escape

from lib_rectify import (
    RectifyError,
    RectifyParams,
    fraction_to_percent,
    omega_weights,
    resolve_reference_frame,
)

WIDTH, HEIGHT = 320, 120
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 34, 10, 12, 28


def frames_from_animatediff(video_length: float | None, context: float | None) -> int:
    """Frames AnimateDiff samples: ``max(video length, context)``; 0 means the context size."""
    length = int(video_length or 0)
    batch = int(context or 16)
    return max(length, batch, 1)


def anchors_of(params: RectifyParams, frames: int, end_picture: bool) -> tuple[int, ...]:
    """The anchor frames a job would use: the reference, and the other end with an end
    picture (where the reference is at an end; otherwise the job is refused)."""
    reference = resolve_reference_frame(params.reference_frame, frames)
    if end_picture and params.end_anchor and frames > 1 and reference in (0, frames - 1):
        return (reference, frames - 1 if reference == 0 else 0)
    return (reference,)


def omega_curve_svg(params: RectifyParams, frames: int, end_picture: bool = False) -> str:
    """An inline SVG: one bar per frame (height ω), the anchor frames marked."""
    anchors = anchors_of(params, frames, end_picture)
    weights = omega_weights(params.omega, frames, params.reference_frame, anchors).tolist()
    reference = anchors[0]
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / frames
    bar_w = max(1.0, slot * 0.7)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" class="nr-curve" '
        f'aria-label="ω per frame for {frames} frames">',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{PAD_TOP + plot_h}" class="nr-axis"/>',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - PAD_RIGHT}" '
        f'y2="{PAD_TOP + plot_h}" class="nr-axis"/>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 4}" text-anchor="end" class="nr-label">1</text>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end" class="nr-label">0</text>',
        f'<text x="{PAD_LEFT - 22}" y="{PAD_TOP + plot_h / 2 + 4}" class="nr-label">ω</text>',
    ]
    for i, w in enumerate(weights):
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        h = max(0.0, min(1.0, w)) * plot_h
        y = PAD_TOP + plot_h - h
        cls = "nr-bar nr-ref" if i in anchors else "nr-bar"
        if i == reference:
            title = "reference frame: exactly the picture"
        elif i in anchors:
            title = "end anchor: exactly the end picture"
        else:
            title = f"ω = {w:.2f}"
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" '
            f'class="{cls}"><title>frame {i}: {escape(title)}</title></rect>'
        )
    last = frames - 1
    parts.append(f'<text x="{PAD_LEFT}" y="{HEIGHT - 8}" class="nr-label">frame 0</text>')
    parts.append(
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 8}" text-anchor="end" class="nr-label">{last}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def preview_html(
    params_or_error: RectifyParams | RectifyError, frames: int, end_picture: bool = False
) -> str:
    """The accordion's picture and summary, or the error a generation would fail with."""
    if isinstance(params_or_error, RectifyError):
        return f'<div class="nr-error" role="alert">⚠ {escape(str(params_or_error))}</div>'
    params = params_or_error
    try:
        svg = omega_curve_svg(params, frames, end_picture)
        anchors = anchors_of(params, frames, end_picture)
    except RectifyError as error:
        return f'<div class="nr-error" role="alert">⚠ {escape(str(error))}</div>'
    start, end = params.tau
    caption = (
        f"{frames} frames · rectified during {fraction_to_percent(start):g}–{fraction_to_percent(end):g} % of the steps"
        if params.tau[0] < params.tau[1]
        else f"{frames} frames · empty window: nothing is rectified"
    )
    if len(anchors) > 1:
        first, last = ("picture", "end picture") if anchors[0] == 0 else ("end picture", "picture")
        caption += f" · starts on the {first}, ends on the {last}"
    elif end_picture and params.end_anchor:
        caption += " · ⚠ an end picture needs the reference frame first or last (refused)"
    return f'<div class="nr-preview">{svg}<div class="nr-caption">{escape(caption)}</div></div>'
