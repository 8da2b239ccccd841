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
)

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
        return RectifyParams.from_api(args[0])
    return from_positional(args)


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
