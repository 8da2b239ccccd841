"""The WebUI's positional form of the settings (lib_rectify_webui/args.py), without a WebUI."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import json_values, omegas, record_validators

from lib_rectify import FIELDS, OMEGA_PRESETS, RectifyError, RectifyParams
from lib_rectify_webui import args
from lib_rectify_webui.args import (
    CUSTOM_OMEGA,
    HINTS,
    POSITIONAL_ARGS,
    from_positional,
    from_script_args,
    omega_preset,
    to_positional,
)


def test_positional_form_follows_the_ui_order():
    assert POSITIONAL_ARGS[0] == "enabled"
    p = from_positional([True, "custom", "1, 0.8, 0.5", 10, 70, -1])
    assert p == RectifyParams(
        enabled=True, omega=(1.0, 0.8, 0.5), tau=(0.1, 0.7), reference_frame=-1
    )
    assert from_positional([True, "free"]).omega == "free"
    assert from_positional([True, " Still ", "garbage ignored"]).omega == "still"
    with pytest.raises(RectifyError, match="omega_custom"):
        from_positional([True, "custom", "1, nope"])
    with pytest.raises(RectifyError, match="tau_end_percent"):
        from_positional([True, "paper", "", 0, 150])
    with pytest.raises(RectifyError, match="end_anchor = 'extra'"):
        from_positional([True, "paper", "", 0, 60, 0, "extra"])
    with pytest.raises(RectifyError, match="at most 8"):
        from_positional([True, "paper", "", 0, 60, 0, True, None, "extra"])
    assert from_positional([True, "paper", "", 0, 60, 0, False]).end_anchor is False


@pytest.mark.parametrize(
    ("values", "field", "allowed"),
    [
        ([True, "papr"], "omega_preset", "one of paper, still, free, custom"),
        ([True, 0.5], "omega_preset", "one of paper, still, free, custom"),
        ([True, "custom", 0.5], "omega_custom", "text such as '1, 0.8, 0.5'"),
        ([True, "custom", "paper"], "omega_custom", "'paper' is not a number"),
        ([True, "custom", "1, 2"], "omega_custom", "every value must be in [0, 1]"),
        ([True, "paper", "", "x"], "tau_start_percent", "a number of percent from 0 to 100"),
        ([True, "paper", "", 70, 60], "tau", "start is after end"),
        (["yes"], "enabled", "true or false"),
        ([True, "paper", "", 0, 60, 0.5], "reference_frame", "whole number"),
        ("enabled", "args", "expected a list of positional values"),
    ],
)
def test_bad_positional_values_keep_their_wording(values, field, allowed):
    with pytest.raises(RectifyError) as info:
        from_positional(values)
    assert info.value.field == field
    assert allowed in info.value.allowed


def test_every_positional_value_ends_in_its_fields_validator(monkeypatch):
    calls = record_validators(monkeypatch)
    from_positional([True, "still", "", 10, 70, -1])
    assert set(calls) == {f.name for f in FIELDS}
    calls.clear()
    with pytest.raises(RectifyError, match="omega_preset"):
        from_positional([True, "papr"])
    assert calls[-1] == "omega"  # the preset radio's rule is ω's


def test_script_args_dict_first_wins_over_ui_defaults():
    defaults = to_positional(RectifyParams())
    script_args = [{"enabled": True, "omega": "still"}, *defaults[1:]]
    assert from_script_args(script_args) == RectifyParams(enabled=True, omega="still")
    assert from_script_args([]) == RectifyParams()
    assert from_script_args(defaults) == RectifyParams()
    with pytest.raises(RectifyError, match="expected a list of script arguments"):
        from_script_args(None)


def test_preset_view_and_choices():
    assert omega_preset(RectifyParams(omega="free")) == "free"
    assert omega_preset(RectifyParams(omega=0.5)) == CUSTOM_OMEGA
    assert args.PRESET_CHOICES == (*OMEGA_PRESETS, CUSTOM_OMEGA)
    assert to_positional(RectifyParams(omega=(1.0, 0.5)))[1:3] == ["custom", "[1.0, 0.5]"]


def test_webui_hints_cover_every_control_and_name_animatediff():
    assert set(HINTS) == {
        "enabled",
        "omega_preset",
        "omega_custom",
        "tau_start",
        "tau_end",
        "reference_choice",
        "reference_frame",
        "end_anchor",
        "end_picture",
    }
    assert "AnimateDiff" in HINTS["enabled"]
    assert "last frame" in HINTS["end_anchor"]
    assert all(len(hint) > 20 for hint in HINTS.values())


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        RectifyParams,
        enabled=st.booleans(),
        omega=omegas,
        tau=st.tuples(st.integers(0, 1000), st.integers(0, 1000)).map(
            lambda t: (min(t) / 1000, max(t) / 1000)
        ),
        reference_frame=st.integers(-64, 63),
    )
)
def test_positional_round_trip_on_the_ui_grid(p):
    assert from_positional(to_positional(p)) == p
    assert from_script_args([p.to_api()]) == p


@settings(max_examples=400, deadline=None)
@given(st.lists(json_values, max_size=8))
def test_positional_parser_raises_only_the_documented_error(values):
    try:
        from_positional(values)
    except RectifyError:
        pass


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_script_args_parser_raises_only_the_documented_error(value):
    try:
        from_script_args([value])
    except RectifyError:
        pass


def test_the_end_picture_is_read_beside_the_settings():
    picture = object()
    positional = [True, "paper", "", 0, 100, 0, True, picture]
    assert args.end_picture_from_script_args(positional) is picture
    assert from_script_args(positional) == RectifyParams(enabled=True, tau=(0.0, 1.0))
    api = [{"enabled": True, "end_picture": "iVBORw0KGgo="}, "ignored UI default"]
    assert args.end_picture_from_script_args(api) == "iVBORw0KGgo="
    assert from_script_args(api) == RectifyParams(enabled=True)  # not a setting
    for empty in ([True], [{"enabled": True}], [{"end_picture": "  "}], [], "text"):
        assert args.end_picture_from_script_args(empty) is None
    assert to_positional(RectifyParams())[-1] is None
