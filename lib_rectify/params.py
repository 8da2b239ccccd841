"""Settings of noise rectification, shared by every host.

The fields (:data:`FIELDS`), one validator per field (:func:`check_field`) and the
host-neutral forms (the dict of :meth:`RectifyParams.to_api`, the infotext text) live
here, so names, defaults and ranges cannot drift apart between hosts. A host's own
forms (the WebUI's: ``lib_rectify_webui/args.py``) only convert to these: every parse
path ends in the constructor, which runs each field's validator. Every parser here
raises only :class:`RectifyError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from numbers import Integral, Real
from typing import Any

from .errors import RectifyError

#: Per-frame weight presets and the one-line reason a user would pick each.
OMEGA_PRESETS: dict[str, str] = {
    "paper": "the paper's curve: 1.0 near the reference falling to 0.5 by mid-video; "
    "balanced fidelity and motion",
    "still": "ω = 0 on every frame: each frame is pinned to the picture (maximum fidelity, "
    "least motion)",
    "free": "ω = 1 on every frame: frames are corrected only by the reference frame's gap "
    "(most motion)",
}
#: A custom ω list longer than this is refused (it is resampled to the video length anyway).
MAX_OMEGA_VALUES = 1024
#: |reference_frame| bound before the video length is known.
MAX_REFERENCE_FRAME = 4096
#: Where flow-model sampling starts instead of σ = 1 (docs/flow-matching.md; measured in
#: bench/results/flow_fidelity.md).
DEFAULT_SIGMA_START = 0.95
#: Version written to the infotext; a newer one is refused rather than misread.
INFOTEXT_VERSION = 1

Omega = str | float | tuple[float, ...]


@dataclass(frozen=True)
class FieldSpec:
    """How one setting appears on every surface."""

    name: str  # dataclass field and API key
    label: str  # UI label and XYZ axis name
    infotext_key: str
    type_doc: str
    default_doc: str
    allowed: str
    hint: str


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "enabled",
        "Enable noise rectification",
        "Noise rectification",
        "bool",
        "false",
        "true or false",
        "Keep the picture while it moves: the video starts from the picture repeated over "
        "the frames plus noise, and the predicted noise is pulled back toward that noise "
        "during the window τ.",
    ),
    FieldSpec(
        "omega",
        "ω (per-frame weight)",
        "NR omega",
        "str | float | list[float]",
        '"paper"',
        f"a preset ({', '.join(OMEGA_PRESETS)}), one number in [0, 1], or a list of "
        f"1-{MAX_OMEGA_VALUES} numbers in [0, 1] resampled to the video length",
        "Per-frame trade-off. 0 pins a frame to the picture (fidelity); 1 lets it move, "
        "corrected only by the reference frame's gap (motion). Presets: "
        + "; ".join(f"{k}: {v}" for k, v in OMEGA_PRESETS.items())
        + ". A custom list such as '1, 0.8, 0.5' is stretched over the frames.",
    ),
    FieldSpec(
        "tau",
        "Window τ",
        "NR tau",
        "[float, float]",
        "[0.0, 0.6]",
        "[start, end] as fractions of the sampling steps with 0 ≤ start ≤ end ≤ 1 "
        "(the UI shows percent)",
        "Which sampling steps are rectified: step i of N is rectified when "
        "N·start ≤ i < N·end. Early steps decide the content: a window that starts at 0 "
        "keeps the picture; a longer window keeps more of it and leaves less motion. "
        "The paper uses 0-60 %.",
    ),
    FieldSpec(
        "reference_frame",
        "Reference frame",
        "NR reference frame",
        "int",
        "0",
        "a frame index inside the video; negative counts from the end (-1 = last frame)",
        "The frame that becomes exactly the picture. 0 = the video starts on the picture; "
        "-1 = it ends on it.",
    ),
    FieldSpec(
        "end_anchor",
        "End on the end picture",
        "NR end anchor",
        "bool",
        "true",
        "true or false",
        "When the host has an end picture, hold the frame at the other end of the video on "
        "it as a second anchor: the video starts on your picture and ends on the other "
        "(docs/two-anchors.md). Both ends are exact with a window that ends at 100 %. "
        "Needs the reference frame at one end (0 or -1). Without an end picture it does "
        "nothing.",
    ),
    FieldSpec(
        "sigma_start",
        "Start σ (flow models)",
        "NR sigma start",
        "float",
        str(DEFAULT_SIGMA_START),
        "a number in (0, 1]",
        "Flow-matching video models (Wan, HunyuanVideo, LTX ...) only: their sampling starts "
        "at σ = 1, where the latent is pure noise and nothing can bring the picture back. "
        "Sampling starts here instead, from the picture noised to this level, over the same "
        "number of steps. Lower keeps more of the picture and leaves less motion; 1 is the "
        "host's own start (the picture is lost). Ignored by UNet models.",
    ),
)
FIELDS_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
#: Infotext key carrying :data:`INFOTEXT_VERSION`.
VERSION_INFOTEXT_KEY = "NR version"
#: What :func:`parse_percent` accepts.
PERCENT_ALLOWED = "a number of percent from 0 to 100"


@dataclass(frozen=True)
class RectifyParams:
    """One job's rectification settings, validated and normalised on construction."""

    enabled: bool = False
    omega: Omega = "paper"
    tau: tuple[float, float] = (0.0, 0.6)
    reference_frame: int = 0
    end_anchor: bool = True
    sigma_start: float = DEFAULT_SIGMA_START

    def __post_init__(self) -> None:
        for spec in FIELDS:
            object.__setattr__(self, spec.name, check_field(spec.name, getattr(self, spec.name)))

    # ------------------------------------------------------------------ views
    @property
    def active(self) -> bool:
        """True when rectification changes anything (enabled and a non-empty window)."""
        return self.enabled and self.tau[0] < self.tau[1]

    @property
    def omega_text(self) -> str:
        """ω as text that :func:`parse_omega_text` reads back exactly."""
        return format_omega(self.omega)

    def describe(self) -> str:
        """Short human summary for logs and warnings."""
        start, end = self.tau
        return (
            f"ω {self.omega_text}, τ {_pct(start)}-{_pct(end)} %, "
            f"reference frame {self.reference_frame}"
            + ("" if self.end_anchor else ", no end anchor")
        )

    # -------------------------------------------------------------- serialise
    def to_api(self) -> dict[str, Any]:
        """The API's dict form (JSON-compatible)."""
        omega = list(self.omega) if isinstance(self.omega, tuple) else self.omega
        return {
            "enabled": self.enabled,
            "omega": omega,
            "tau": [self.tau[0], self.tau[1]],
            "reference_frame": self.reference_frame,
            "end_anchor": self.end_anchor,
            "sigma_start": self.sigma_start,
        }

    def to_infotext(self) -> dict[str, str]:
        """Entries for the result's parameters; empty when disabled."""
        if not self.enabled:
            return {}
        extra = {}
        if self.sigma_start != DEFAULT_SIGMA_START:  # flow models only; absent = the default
            extra[FIELDS_BY_NAME["sigma_start"].infotext_key] = repr(self.sigma_start)
        return {
            FIELDS_BY_NAME["enabled"].infotext_key: "True",
            FIELDS_BY_NAME["omega"].infotext_key: self.omega_text,
            FIELDS_BY_NAME["tau"].infotext_key: json.dumps([self.tau[0], self.tau[1]]),
            FIELDS_BY_NAME["reference_frame"].infotext_key: str(self.reference_frame),
            FIELDS_BY_NAME["end_anchor"].infotext_key: str(self.end_anchor),
            **extra,
            VERSION_INFOTEXT_KEY: str(INFOTEXT_VERSION),
        }

    # ------------------------------------------------------------------ parse
    @classmethod
    def from_api(cls, data: Any) -> RectifyParams:
        """Parse the API's dict form; keys optional, unknown keys refused."""
        if not isinstance(data, Mapping):
            raise RectifyError("args", data, "expected a dict of settings")
        unknown = [k for k in data if k not in FIELDS_BY_NAME]
        if unknown:
            raise RectifyError("args key", unknown[0], f"allowed keys: {', '.join(FIELDS_BY_NAME)}")
        values: dict[str, Any] = {}
        for name, raw in data.items():
            if name == "omega" and isinstance(raw, str):
                values[name] = parse_omega_text(raw, field_name="omega")
            else:
                values[name] = raw
        return cls(**values)

    @classmethod
    def from_infotext(cls, entries: Mapping[str, Any]) -> RectifyParams:
        """Parse infotext entries (as the host's infotext parser returns them)."""
        keys = {f.name: f.infotext_key for f in FIELDS}
        present = [k for k in (*keys.values(), VERSION_INFOTEXT_KEY) if k in entries]
        if not present:
            return cls()
        version = entries.get(VERSION_INFOTEXT_KEY, str(INFOTEXT_VERSION))
        version_number = _int_text(VERSION_INFOTEXT_KEY, version)
        if version_number > INFOTEXT_VERSION or version_number < 1:
            raise RectifyError(
                VERSION_INFOTEXT_KEY,
                version,
                f"this extension reads infotext versions 1 to {INFOTEXT_VERSION}; "
                "update sd-webui-noise-rectification to read newer ones",
            )
        values: dict[str, Any] = {}
        if keys["enabled"] in entries:
            values["enabled"] = parse_bool_text(entries[keys["enabled"]], keys["enabled"])
        else:
            values["enabled"] = True
        if keys["omega"] in entries:
            values["omega"] = parse_omega_text(entries[keys["omega"]], field_name=keys["omega"])
        if keys["tau"] in entries:
            values["tau"] = _tau_text(keys["tau"], entries[keys["tau"]])
        if keys["reference_frame"] in entries:
            values["reference_frame"] = _int_text(
                keys["reference_frame"], entries[keys["reference_frame"]]
            )
        if keys["end_anchor"] in entries:  # absent before it existed: the default
            values["end_anchor"] = parse_bool_text(entries[keys["end_anchor"]], keys["end_anchor"])
        if keys["sigma_start"] in entries:
            values["sigma_start"] = _float_text(keys["sigma_start"], entries[keys["sigma_start"]])
        return cls(**values)

    def with_override(self, name: str, value: Any) -> RectifyParams:
        """A copy with one setting replaced; text values are parsed (XYZ cells send text).

        ``name`` is a field name or ``tau_start_percent`` / ``tau_end_percent``.
        """
        if name == "tau_start_percent":
            return replace(self, tau=(parse_percent(name, value), self.tau[1]))
        if name == "tau_end_percent":
            return replace(self, tau=(self.tau[0], parse_percent(name, value)))
        if name not in FIELDS_BY_NAME:
            raise RectifyError("override", name, f"one of {', '.join(FIELDS_BY_NAME)}")
        if isinstance(value, str):
            if name in ("enabled", "end_anchor"):
                value = parse_bool_text(value, name)
            elif name == "omega":
                value = parse_omega_text(value, field_name=name)
            elif name == "tau":
                value = _tau_text(name, value)
            elif name == "sigma_start":
                value = _float_text(name, value)
            else:
                value = _int_text(name, value)
        return replace(self, **{name: value})


# ------------------------------------------------------- validators, one per field
def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_number(name: str, value: Any, low: float, high: float, allowed: str) -> float:
    if not _is_real(value):
        raise RectifyError(name, value, allowed)
    try:
        number = float(value)
    except (OverflowError, ValueError):
        raise RectifyError(name, value, allowed)
    if not (math.isfinite(number) and low <= number <= high):
        raise RectifyError(name, value, allowed)
    return number


def _check_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if type(value).__name__ == "bool_" and value in (True, False):  # numpy.bool_
        return bool(value)
    raise RectifyError(name, value, FIELDS_BY_NAME[name].allowed)


def _check_enabled(value: Any) -> bool:
    return _check_bool("enabled", value)


def _check_end_anchor(value: Any) -> bool:
    return _check_bool("end_anchor", value)


def _check_omega(value: Any) -> Omega:
    allowed = FIELDS_BY_NAME["omega"].allowed
    if isinstance(value, str):
        key = value.strip().lower()
        if key not in OMEGA_PRESETS:
            raise RectifyError("omega", value, allowed)
        return key
    if isinstance(value, (list, tuple)):
        if not 1 <= len(value) <= MAX_OMEGA_VALUES:
            raise RectifyError("omega", _Len(value), allowed)
        return tuple(_check_number("omega", v, 0.0, 1.0, allowed) for v in value)
    return _check_number("omega", value, 0.0, 1.0, allowed)


def _check_tau(value: Any) -> tuple[float, float]:
    allowed = FIELDS_BY_NAME["tau"].allowed
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise RectifyError("tau", value, allowed)
    start = _check_number("tau", value[0], 0.0, 1.0, allowed)
    end = _check_number("tau", value[1], 0.0, 1.0, allowed)
    if start > end:
        raise RectifyError("tau", value, allowed + "; start is after end")
    return (start, end)


def _check_reference_frame(value: Any) -> int:
    allowed = FIELDS_BY_NAME["reference_frame"].allowed
    if isinstance(value, bool) or not isinstance(value, Real):
        raise RectifyError("reference_frame", value, allowed)
    if isinstance(value, Integral):
        number = int(value)
    else:
        try:
            as_float = float(value)
        except (OverflowError, ValueError):
            raise RectifyError("reference_frame", value, allowed)
        if not (math.isfinite(as_float) and as_float.is_integer()):
            raise RectifyError("reference_frame", value, allowed + " (a whole number)")
        number = int(as_float)
    if not -MAX_REFERENCE_FRAME <= number < MAX_REFERENCE_FRAME:
        raise RectifyError("reference_frame", value, allowed)
    return number


def _check_sigma_start(value: Any) -> float:
    allowed = FIELDS_BY_NAME["sigma_start"].allowed
    number = _check_number("sigma_start", value, 0.0, 1.0, allowed)
    if number <= 0.0:
        raise RectifyError("sigma_start", value, allowed)
    return number


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "enabled": _check_enabled,
    "omega": _check_omega,
    "tau": _check_tau,
    "reference_frame": _check_reference_frame,
    "end_anchor": _check_end_anchor,
    "sigma_start": _check_sigma_start,
}


def check_field(name: str, value: Any) -> Any:
    """The one validator of field ``name``: the normalised value, or :class:`RectifyError`.

    The constructor runs it on every field; a reader of another form (text, percent,
    a host's own form) calls it too when it words the refusal in that form's terms,
    so that no form has rules of its own.
    """
    if name not in _VALIDATORS:
        raise RectifyError("field", name, f"one of {', '.join(FIELDS_BY_NAME)}")
    return _VALIDATORS[name](value)


# ------------------------------------------------------------------- text readers
_BOOL_TEXT = {"true": True, "false": False, "on": True, "off": False, "yes": True, "no": False}
_SEPARATORS = re.compile(r"[,;\s]+")


def parse_bool_text(text: Any, field_name: str = "enabled") -> bool:
    """Read True/False (also on/off, yes/no) as written in infotext and XYZ cells."""
    if isinstance(text, bool):
        return text
    if isinstance(text, str) and text.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[text.strip().lower()]
    raise RectifyError(field_name, text, "True or False")


def parse_omega_text(text: Any, field_name: str = "omega", allow_preset: bool = True) -> Omega:
    """Read ω from text: a preset name, one number, or a list like ``1, 0.8, 0.5``.

    Brackets make a list even of one number (``[0.5]``), so the text written by
    :func:`format_omega` reads back to the same value.
    """
    if not isinstance(text, str):
        raise RectifyError(field_name, text, "text: a preset name, a number or a list")
    stripped = text.strip()
    lowered = stripped.lower()
    if allow_preset and lowered in OMEGA_PRESETS:
        return check_field("omega", lowered)
    bracketed = stripped.startswith("[") and stripped.endswith("]")
    body = stripped[1:-1] if bracketed else stripped
    parts = [p for p in _SEPARATORS.split(body.strip()) if p]
    what = (
        f"a preset ({', '.join(OMEGA_PRESETS)}), " if allow_preset else ""
    ) + "one number in [0, 1] or a list of numbers in [0, 1] such as '1, 0.8, 0.5'"
    numbers = []
    for part in parts:
        try:
            numbers.append(float(part))
        except ValueError:
            raise RectifyError(field_name, text, f"'{part}' is not a number; expected {what}")
    value = numbers[0] if len(numbers) == 1 and not bracketed else tuple(numbers)
    try:
        return check_field("omega", value)
    except RectifyError:
        if not numbers:
            reason = f"empty; expected {what}"
        elif len(numbers) > MAX_OMEGA_VALUES:
            reason = f"at most {MAX_OMEGA_VALUES} values"
        else:
            reason = f"every value must be in [0, 1]; expected {what}"
        raise RectifyError(field_name, text, reason) from None


def parse_percent(name: str, value: Any) -> float:
    """Read one end of τ given in percent of the steps (a number, or text such as ``20%``).

    Returns the fraction that ``tau`` holds; ``name`` is the form's name for the value.
    """
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            raise RectifyError(name, value, PERCENT_ALLOWED)
    if not _is_real(value):
        raise RectifyError(name, value, PERCENT_ALLOWED)
    try:
        fraction = percent_to_fraction(value)
        # A valid end of τ is one that makes a valid (empty) window on its own.
        return check_field("tau", (fraction, fraction))[0]
    except (RectifyError, OverflowError, ValueError):
        raise RectifyError(name, value, PERCENT_ALLOWED) from None


def percent_to_fraction(percent: float) -> float:
    """Shift the decimal point rather than divide, so 1.3 reads as 0.013 exactly as typed."""
    return float(Decimal(repr(float(percent))) / 100) + 0.0  # + 0.0: no -0.0


def fraction_to_percent(fraction: float) -> float:
    """Shift the decimal point rather than multiply, so 0.013 shows as 1.3, not 1.3000000000000003."""
    return float(Decimal(repr(float(fraction))) * 100)


def _int_text(name: str, text: Any) -> int:
    if isinstance(text, bool):
        raise RectifyError(name, text, "a whole number")
    if isinstance(text, Integral):
        return int(text)
    if not isinstance(text, str):
        raise RectifyError(name, text, "a whole number")
    try:
        return int(text.strip())
    except ValueError:
        raise RectifyError(name, text, "a whole number")


def _float_text(name: str, text: Any) -> float:
    """A number, or its text (infotext and XYZ cells send text); the field's check follows."""
    if _is_real(text):
        return float(text)
    allowed = FIELDS_BY_NAME[name].allowed if name in FIELDS_BY_NAME else "a number"
    if not isinstance(text, str):
        raise RectifyError(name, text, allowed)
    try:
        return float(text.strip())
    except ValueError:
        raise RectifyError(name, text, allowed)


def _tau_text(name: str, text: Any) -> tuple[float, float]:
    if not isinstance(text, str):
        if isinstance(text, (list, tuple)):
            return check_field("tau", text)
        raise RectifyError(name, text, "[start, end] such as [0.0, 0.6]")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise RectifyError(name, text, "[start, end] such as [0.0, 0.6]")
    if not isinstance(value, list):
        raise RectifyError(name, text, "[start, end] such as [0.0, 0.6]")
    try:
        return check_field("tau", value)
    except RectifyError as error:
        raise RectifyError(name, text, error.allowed) from None


# ---------------------------------------------------------------------- writers
def format_omega(omega: Omega) -> str:
    """ω as text that :func:`parse_omega_text` reads back to the same value."""
    if isinstance(omega, str):
        return omega
    if isinstance(omega, tuple):
        return "[" + ", ".join(repr(v) for v in omega) + "]"
    return repr(omega)


def _pct(fraction: float) -> str:
    return f"{fraction_to_percent(fraction):g}"


class _Len:
    """Shows a too-long list by its length in error messages."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.n = len(items)

    def __repr__(self) -> str:
        return f"<list of {self.n} values>"
