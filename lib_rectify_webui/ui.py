"""The accordion in the img2img tab, generated from the core's field specs.

Gradio 3.41 as shipped with WebUI v1.10.1; ``InputAccordion`` is the WebUI's own
accordion-with-checkbox (modules/ui_components.py:88). Infotext paste follows
modules/infotext_utils.py:477-520 (a callable key gets the parsed parameters; an
exception there is logged and the field left alone) and the API's
``apply_infotext`` (modules/api/api.py:363-431, where an exception fails the request).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from html import escape
from typing import Any

import gradio as gr

from lib_rectify import (
    FIELDS_BY_NAME,
    VERSION_INFOTEXT_KEY,
    RectifyError,
    RectifyParams,
    fraction_to_percent,
)

from . import args
from .curve import frames_from_animatediff, preview_html

TITLE = "Noise Rectification"
REFERENCE_CHOICES = ("first", "last", "index")


def params_or_error(*values: Any) -> RectifyParams | RectifyError:
    try:
        return args.from_positional(list(values))
    except RectifyError as error:
        return error


def infotext_params(entries: Mapping[str, Any]) -> RectifyParams | None:
    """Settings written by this extension, or None when the infotext has none of ours."""
    keys = {f.infotext_key for f in FIELDS_BY_NAME.values()} | {VERSION_INFOTEXT_KEY}
    if not any(k in entries for k in keys):
        return None
    return RectifyParams.from_infotext(entries)


def _quiet(read: Callable[[RectifyParams], Any]) -> Callable[[Mapping[str, Any]], Any]:
    """An infotext reader that leaves the field alone when there is nothing (valid) of ours."""

    def field_value(entries: Mapping[str, Any]) -> Any:
        try:
            params = infotext_params(entries)
        except RectifyError:
            return None
        return None if params is None else read(params)

    return field_value


def _enabled_from_infotext(entries: Mapping[str, Any]) -> bool:
    # Raises on an unreadable (e.g. newer) infotext: the API answers with the message,
    # the UI logs it and shows it in the accordion (see _preview_from_infotext).
    params = infotext_params(entries)
    return False if params is None else params.enabled


def _reference_choice(frame: int) -> str:
    return {0: "first", -1: "last"}.get(int(frame), "index")


def build(script: Any, is_img2img: bool, animatediff_components: Mapping[str, Any]) -> list[Any]:
    """Create the controls; returns them in the positional-argument order of the API."""
    defaults = RectifyParams()
    elem = script.elem_id
    from modules.ui_components import InputAccordion  # the WebUI's own component

    with InputAccordion(False, label=TITLE, elem_id=elem("enabled")) as enabled:
        if not is_img2img:
            gr.HTML(
                '<p class="nr-note">Noise rectification animates a picture: use it in '
                "<b>img2img</b> with AnimateDiff enabled. Here it only warns.</p>"
            )
        with gr.Row():
            preset = gr.Radio(
                choices=list(args.PRESET_CHOICES),
                value=args.omega_preset(defaults),
                label=FIELDS_BY_NAME["omega"].label,
                elem_id=elem("omega_preset"),
            )
            custom = gr.Textbox(
                value="",
                label="Custom ω list",
                placeholder="1, 0.8, 0.5",
                max_lines=1,
                elem_id=elem("omega_custom"),
            )
        with gr.Row():
            tau_start = gr.Slider(
                minimum=0,
                maximum=100,
                step=1,
                value=fraction_to_percent(defaults.tau[0]),
                label="Window τ start (% of steps)",
                elem_id=elem("tau_start"),
            )
            tau_end = gr.Slider(
                minimum=0,
                maximum=100,
                step=1,
                value=fraction_to_percent(defaults.tau[1]),
                label="Window τ end (% of steps)",
                elem_id=elem("tau_end"),
            )
        with gr.Row():
            reference_choice = gr.Radio(
                choices=list(REFERENCE_CHOICES),
                value="first",
                label=FIELDS_BY_NAME["reference_frame"].label,
                elem_id=elem("reference_choice"),
            )
            reference_frame = gr.Number(
                value=defaults.reference_frame,
                precision=0,
                label="Reference frame index",
                elem_id=elem("reference_frame"),
            )
        with gr.Row():
            end_anchor = gr.Checkbox(
                value=defaults.end_anchor,
                label=FIELDS_BY_NAME["end_anchor"].label,
                elem_id=elem("end_anchor"),
            )
            end_picture = gr.Image(
                value=None,
                type="pil",
                label="End picture (optional)",
                elem_id=elem("end_picture"),
                height=160,
            )
        preview = gr.HTML(
            value=preview_html(defaults, frames_from_animatediff(None, None)),
            elem_id=elem("preview"),
            elem_classes=["nr-preview-box"],
        )
        gr.HTML(
            '<script type="application/json" class="nr-hints">'
            + escape(json.dumps({elem(k): v for k, v in args.HINTS.items()}), quote=False)
            + "</script>",
            visible=False,
            elem_id=elem("hints"),
        )

    # ----- behaviour (UI only; nothing here is global or per-job state)
    custom.input(
        fn=lambda _text: args.CUSTOM_OMEGA, inputs=[custom], outputs=[preset], show_progress=False
    )
    reference_choice.input(
        fn=lambda choice, current: {"first": 0, "last": -1}.get(
            choice, current if current not in (0, -1) else 1
        ),
        inputs=[reference_choice, reference_frame],
        outputs=[reference_frame],
        show_progress=False,
    )
    reference_frame.change(
        fn=lambda frame: _reference_choice(frame or 0),
        inputs=[reference_frame],
        outputs=[reference_choice],
        show_progress=False,
    )

    length = animatediff_components.get("video_length")
    context = animatediff_components.get("batch_size")
    ad_last_frame = animatediff_components.get("last_frame")
    extra_inputs = [c for c in (length, context, ad_last_frame) if c is not None]

    def redraw(*values: Any) -> str:
        settings, pictures, extra = values[:6], values[6:7], list(values[7:])
        video_length = extra.pop(0) if length is not None else None
        context_size = extra.pop(0) if context is not None else None
        ad_last = extra.pop(0) if ad_last_frame is not None else None
        has_end = pictures[0] is not None or ad_last is not None
        return preview_html(
            params_or_error(True, *settings),
            frames_from_animatediff(video_length, context_size),
            end_picture=has_end,
        )

    preview_inputs = [
        preset,
        custom,
        tau_start,
        tau_end,
        reference_frame,
        end_anchor,
        end_picture,
        *extra_inputs,
    ]
    for component in preview_inputs:
        component.change(fn=redraw, inputs=preview_inputs, outputs=[preview], show_progress=False)

    def _preview_from_infotext(entries: Mapping[str, Any]) -> Any:
        try:
            infotext_params(entries)
        except RectifyError as error:
            return preview_html(error, 1)
        return None

    script.infotext_fields = [
        (enabled, _enabled_from_infotext),
        (preset, _quiet(args.omega_preset)),
        (custom, _quiet(args.omega_custom)),
        (tau_start, _quiet(lambda p: fraction_to_percent(p.tau[0]))),
        (tau_end, _quiet(lambda p: fraction_to_percent(p.tau[1]))),
        (reference_frame, _quiet(lambda p: p.reference_frame)),
        (reference_choice, _quiet(lambda p: _reference_choice(p.reference_frame))),
        (end_anchor, _quiet(lambda p: p.end_anchor)),
        (preview, _preview_from_infotext),
    ]
    script.paste_field_names = [f.infotext_key for f in FIELDS_BY_NAME.values()] + [
        VERSION_INFOTEXT_KEY
    ]
    return [enabled, preset, custom, tau_start, tau_end, reference_frame, end_anchor, end_picture]
