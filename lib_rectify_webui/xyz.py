"""XYZ-plot axes for rectification settings.

WebUI v1.10.1 scripts/xyz_grid.py: ``AxisOption(label, type, apply, format_value,
confirm, cost, choices, prepare)`` (214-235); each grid cell runs on ``pc = copy(p)``
(707-715), a *shallow* copy, so an override goes into a fresh dict on that copy and
never into the parent's dict or a global. ``confirm`` (612-613) runs before the grid
and may raise: the error reaches the user as the request's error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lib_rectify import OMEGA_PRESETS, RectifyError, RectifyParams

from .job import OVERRIDES_ATTR

AXIS_PREFIX = "[Noise Rectification] "

#: (axis label suffix, override name, value type, choices)
AXES: tuple[tuple[str, str, type, Callable[[], list[str]] | None], ...] = (
    ("Enable", "enabled", str, lambda: ["True", "False"]),
    ("ω", "omega", str, lambda: list(OMEGA_PRESETS)),
    ("τ start %", "tau_start_percent", float, None),
    ("τ end %", "tau_end_percent", float, None),
    ("Reference frame", "reference_frame", int, None),
    ("End on the end picture", "end_anchor", str, lambda: ["True", "False"]),
)


def set_override(p: Any, name: str, value: Any) -> None:
    """Store one override on this job (cell) only."""
    overrides = dict(getattr(p, OVERRIDES_ATTR, None) or {})
    overrides[name] = value
    setattr(p, OVERRIDES_ATTR, overrides)


def make_apply(name: str) -> Callable[[Any, Any, Any], None]:
    def apply(p: Any, value: Any, _values: Any) -> None:
        set_override(p, name, value)

    return apply


def make_confirm(name: str, label: str) -> Callable[[Any, list], None]:
    """Check each value on its own before the grid starts (combinations are checked per cell)."""
    # The widest window, so that a start or an end alone is judged only by its range.
    base = RectifyParams(enabled=True, tau=(0.0, 1.0))

    def confirm(_p: Any, values: list) -> None:
        for value in values:
            try:
                base.with_override(name, value)
            except RectifyError as error:
                raise RectifyError(f"XYZ axis {label}", value, error.allowed) from None

    return confirm


def register(xyz_module: Any) -> list[Any]:
    """Add our axes to the XYZ script once; returns the options added (for unloading)."""
    existing = {getattr(o, "label", None) for o in xyz_module.axis_options}
    added = []
    for suffix, name, value_type, choices in AXES:
        label = AXIS_PREFIX + suffix
        if label in existing:
            continue
        option = xyz_module.AxisOptionImg2Img(
            label,
            value_type,
            make_apply(name),
            confirm=make_confirm(name, label),
            choices=choices,
        )
        xyz_module.axis_options.append(option)
        added.append(option)
    return added


def unregister(xyz_module: Any, options: list[Any]) -> None:
    xyz_module.axis_options[:] = [
        o for o in xyz_module.axis_options if all(o is not a for a in options)
    ]
