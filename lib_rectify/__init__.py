"""Noise rectification for image-to-video (Li et al., "Tuning-Free Noise Rectification for
High Fidelity Image-to-Video Generation"), independent of any host program.

Tensors and a :class:`RectifyParams` in, tensors out. The WebUI glue lives in
``lib_rectify_webui/`` and ``scripts/``; this package never imports the WebUI or gradio.
"""

from __future__ import annotations

from .errors import RectifyError
from .layout import LAYOUTS, Layout
from .params import (
    DEFAULT_SIGMA_START,
    FIELDS,
    FIELDS_BY_NAME,
    INFOTEXT_VERSION,
    MAX_OMEGA_VALUES,
    OMEGA_PRESETS,
    VERSION_INFOTEXT_KEY,
    FieldSpec,
    Omega,
    RectifyParams,
    check_field,
    format_omega,
    fraction_to_percent,
    parse_bool_text,
    parse_omega_text,
    parse_percent,
    percent_to_fraction,
)
from .rectifier import FLOW_PREDICTIONS, PIVOT_MODES, FlowPrediction, PivotMode, Rectifier
from .schedule import alpha_cumprod_at, step_of_level
from .weights import omega_weights, resolve_reference_frame
from .window import step_in_window, window_steps

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SIGMA_START",
    "FIELDS",
    "FIELDS_BY_NAME",
    "FLOW_PREDICTIONS",
    "INFOTEXT_VERSION",
    "LAYOUTS",
    "MAX_OMEGA_VALUES",
    "OMEGA_PRESETS",
    "PIVOT_MODES",
    "VERSION_INFOTEXT_KEY",
    "FieldSpec",
    "FlowPrediction",
    "Layout",
    "Omega",
    "PivotMode",
    "Rectifier",
    "RectifyError",
    "RectifyParams",
    "alpha_cumprod_at",
    "check_field",
    "format_omega",
    "fraction_to_percent",
    "omega_weights",
    "parse_bool_text",
    "parse_omega_text",
    "parse_percent",
    "percent_to_fraction",
    "resolve_reference_frame",
    "step_in_window",
    "step_of_level",
    "window_steps",
]
