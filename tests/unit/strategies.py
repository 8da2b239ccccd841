"""Hypothesis strategies and a validator recorder shared by the settings tests."""

from __future__ import annotations

from hypothesis import strategies as st

import lib_rectify.params as core
from lib_rectify import OMEGA_PRESETS

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
omegas = st.one_of(
    st.sampled_from(list(OMEGA_PRESETS)),
    unit,
    st.lists(unit, min_size=1, max_size=40).map(tuple),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def record_validators(monkeypatch) -> list[str]:
    """Make every field validator note its field's name in the returned list."""
    calls: list[str] = []
    for name, check in list(core._VALIDATORS.items()):

        def recording(value, name=name, check=check):
            calls.append(name)
            return check(value)

        monkeypatch.setitem(core._VALIDATORS, name, recording)
    return calls
