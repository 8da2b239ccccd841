"""The WebUI's own forms of the settings: the ``ui()`` positional values and their hints.

Kept beside the host-independent core (``lib_rectify.params``) the way adetailer keeps
its ``args.py``: these forms only convert to and from :class:`RectifyParams`, whose
constructor runs each field's one validator, so they add no rules of their own. Imports
neither the WebUI's ``modules`` nor gradio, so the tests can import it without a host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lib_rectify import (
    FIELDS_BY_NAME,
    OMEGA_PRESETS,
    Omega,
    RectifyError,
    RectifyParams,
    check_field,
    fraction_to_percent,
    parse_omega_text,
    parse_percent,
)

#: The preset radio's extra entry that means "use the custom ω list".
CUSTOM_OMEGA = "custom"
#: The preset radio's entries.
PRESET_CHOICES: tuple[str, ...] = (*OMEGA_PRESETS, CUSTOM_OMEGA)

#: Order of the script's positional arguments (the ``ui()`` component order).
POSITIONAL_ARGS: tuple[str, ...] = (
    "enabled",
    "omega_preset",
    "omega_custom",
    "tau_start_percent",
    "tau_end_percent",
    "reference_frame",
    "end_anchor",
    "end_picture",
)
#: The API dict's key for the end picture (an image, not a setting: it is not in the
#: infotext; see :func:`end_picture_from_script_args`).
END_PICTURE_KEY = "end_picture"

#: Hover hints of the accordion's controls, by control name (its elem_id suffix).
HINTS: dict[str, str] = {
    "enabled": "Keep the picture while it moves: AnimateDiff img2img starts from the image "
    "repeated over the frames plus noise, and the predicted noise is pulled back toward "
    "that noise during the window τ. Needs AnimateDiff enabled in img2img.",
    "omega_preset": FIELDS_BY_NAME["omega"].hint,
    "omega_custom": "Your own ω per frame, e.g. '1, 0.8, 0.5': numbers in [0, 1], stretched "
    "linearly over the video. Typing here selects 'custom'.",
    "tau_start": "Window start, in percent of the sampling steps. " + FIELDS_BY_NAME["tau"].hint,
    "tau_end": "Window end, in percent of the sampling steps. Longer = closer to the picture, "
    "less motion. " + FIELDS_BY_NAME["tau"].hint,
    "reference_choice": FIELDS_BY_NAME["reference_frame"].hint,
    "reference_frame": FIELDS_BY_NAME["reference_frame"].hint
    + " Any index works; negative counts from the end.",
    "end_anchor": "End on a second picture: AnimateDiff's own 'last frame' (its img2img "
    "options) or the end picture below. The first frame stays on your picture, the last "
    "on the end picture, and the frames between start from a blend of the two. Exact ends "
    "need the window to end at 100 %. Off: one picture only (AnimateDiff's last frame is "
    "then refused).",
    "end_picture": "Optional: the picture the video ends on, when AnimateDiff's last frame "
    "is not set. Not stored in the infotext: load it again to repeat a result.",
}

_PRESET_ALLOWED = f"one of {', '.join(PRESET_CHOICES)}"


def omega_preset(params: RectifyParams) -> str:
    """The preset radio's entry: a preset name, or :data:`CUSTOM_OMEGA`."""
    return params.omega if isinstance(params.omega, str) else CUSTOM_OMEGA


def omega_custom(params: RectifyParams) -> str:
    """The custom ω box's text: empty for a preset."""
    return "" if isinstance(params.omega, str) else params.omega_text


def to_positional(params: RectifyParams) -> list[Any]:
    """Values in :data:`POSITIONAL_ARGS` order (the UI's components)."""
    return [
        params.enabled,
        omega_preset(params),
        omega_custom(params),
        fraction_to_percent(params.tau[0]),
        fraction_to_percent(params.tau[1]),
        params.reference_frame,
        params.end_anchor,
        None,  # end_picture: an image, not a setting
    ]


def from_positional(values: Sequence[Any]) -> RectifyParams:
    """Parse the positional form (:data:`POSITIONAL_ARGS`; missing trailing = default)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise RectifyError("args", values, "expected a list of positional values")
    if len(values) > len(POSITIONAL_ARGS):
        raise RectifyError(
            "args",
            list(values),
            f"at most {len(POSITIONAL_ARGS)} positional values: {', '.join(POSITIONAL_ARGS)}",
        )
    merged = dict(zip(POSITIONAL_ARGS, to_positional(RectifyParams()), strict=True))
    merged.update(zip(POSITIONAL_ARGS[: len(values)], values, strict=True))
    return RectifyParams(
        enabled=merged["enabled"],
        omega=_omega(merged["omega_preset"], merged["omega_custom"]),
        tau=(
            parse_percent("tau_start_percent", merged["tau_start_percent"]),
            parse_percent("tau_end_percent", merged["tau_end_percent"]),
        ),
        reference_frame=merged["reference_frame"],
        end_anchor=merged["end_anchor"],
    )


def from_script_args(args: Sequence[Any]) -> RectifyParams:
    """Parse what the host passes to a script: a dict first (API) or positional values.

    The API copies the request's args slot by slot over the ``ui()`` defaults, so a
    dict in the first slot is followed by UI defaults that are ignored.
    """
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise RectifyError("args", args, "expected a list of script arguments")
    if len(args) == 0:
        return RectifyParams()
    if isinstance(args[0], Mapping):
        return RectifyParams.from_api({k: v for k, v in args[0].items() if k != END_PICTURE_KEY})
    return from_positional(args)


def end_picture_from_script_args(args: Sequence[Any]) -> Any | None:
    """The end picture the job was given (our own; AnimateDiff's last frame is read from
    AnimateDiff's args): the API dict's ``end_picture`` (base64 text, a data URL or a
    path the WebUI's decoder reads) or the UI's image, else None."""
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence) or len(args) == 0:
        return None
    if isinstance(args[0], Mapping):
        picture = args[0].get(END_PICTURE_KEY)
    else:
        index = POSITIONAL_ARGS.index("end_picture")
        picture = args[index] if len(args) > index else None
    if picture is None or (isinstance(picture, str) and not picture.strip()):
        return None
    return picture


def _omega(preset: Any, custom: Any) -> Omega:
    if not isinstance(preset, str):
        raise RectifyError("omega_preset", preset, _PRESET_ALLOWED)
    if preset.strip().lower() == CUSTOM_OMEGA:
        if not isinstance(custom, str):
            raise RectifyError("omega_custom", custom, "text such as '1, 0.8, 0.5'")
        return parse_omega_text(custom, field_name="omega_custom", allow_preset=False)
    try:
        return check_field("omega", preset)  # a string is valid ω only as a preset name
    except RectifyError:
        raise RectifyError("omega_preset", preset, _PRESET_ALLOWED) from None
