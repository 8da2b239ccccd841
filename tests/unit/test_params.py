from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_rectify import (
    FIELDS,
    MAX_OMEGA_VALUES,
    POSITIONAL_ARGS,
    RectifyError,
    RectifyParams,
    parse_omega_text,
)

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
omegas = st.one_of(
    st.sampled_from(["paper", "still", "free"]),
    unit,
    st.lists(unit, min_size=1, max_size=40).map(tuple),
)
taus = st.tuples(unit, unit).map(lambda t: (min(t), max(t)))
params_strategy = st.builds(
    RectifyParams,
    enabled=st.booleans(),
    omega=omegas,
    tau=taus,
    reference_frame=st.integers(min_value=-64, max_value=63),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def test_defaults_are_the_papers():
    p = RectifyParams()
    assert (p.enabled, p.omega, p.tau, p.reference_frame) == (False, "paper", (0.0, 0.6), 0)
    assert not p.active and RectifyParams(enabled=True).active
    assert not RectifyParams(enabled=True, tau=(0.3, 0.3)).active


def test_every_field_has_every_surface():
    names = [f.name for f in FIELDS]
    assert names == ["enabled", "omega", "tau", "reference_frame"]
    for f in FIELDS:
        assert f.label and f.infotext_key and f.hint and f.allowed and f.type_doc
    assert len({f.infotext_key for f in FIELDS}) == len(FIELDS)


def test_api_dict_keys_are_optional():
    assert RectifyParams.from_api({}) == RectifyParams()
    p = RectifyParams.from_api(
        {"enabled": True, "omega": "1, 0.5", "tau": [0.1, 0.9], "reference_frame": -1}
    )
    assert p == RectifyParams(enabled=True, omega=(1.0, 0.5), tau=(0.1, 0.9), reference_frame=-1)
    assert RectifyParams.from_api({"omega": 0.3}).omega == 0.3
    assert RectifyParams.from_api({"omega": "STILL"}).omega == "still"


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"enable": True}, "args key", "allowed keys"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"enabled": 1}, "enabled", "true or false"),
        ({"omega": "papr"}, "omega", "preset"),
        ({"omega": 1.5}, "omega", "[0, 1]"),
        ({"omega": math.nan}, "omega", "[0, 1]"),
        ({"omega": []}, "omega", "1-1024"),
        ({"omega": [0.5] * (MAX_OMEGA_VALUES + 1)}, "omega", "1-1024"),
        ({"omega": [0.5, math.inf]}, "omega", "[0, 1]"),
        ({"omega": True}, "omega", "preset"),
        ({"omega": "1, x"}, "omega", "'x' is not a number"),
        ({"tau": [0.7, 0.2]}, "tau", "start is after end"),
        ({"tau": [0.0, 1.5]}, "tau", "fractions"),
        ({"tau": 0.6}, "tau", "[start, end]"),
        ({"tau": [0.1]}, "tau", "[start, end]"),
        ({"tau": ["0", "1"]}, "tau", "fractions"),
        ({"reference_frame": 0.5}, "reference_frame", "whole number"),
        ({"reference_frame": "0"}, "reference_frame", "frame index"),
        ({"reference_frame": 10**9}, "reference_frame", "frame index"),
    ],
)
def test_bad_api_values_name_field_value_and_what_is_allowed(data, field, fragment):
    with pytest.raises(RectifyError) as info:
        RectifyParams.from_api(data)
    assert info.value.field == field
    message = str(info.value)
    assert field in message and fragment in message


def test_positional_form_follows_the_ui_order():
    assert POSITIONAL_ARGS[0] == "enabled"
    p = RectifyParams.from_positional([True, "custom", "1, 0.8, 0.5", 10, 70, -1])
    assert p == RectifyParams(
        enabled=True, omega=(1.0, 0.8, 0.5), tau=(0.1, 0.7), reference_frame=-1
    )
    assert RectifyParams.from_positional([True, "free"]).omega == "free"
    assert RectifyParams.from_positional([True, "still", "garbage ignored"]).omega == "still"
    with pytest.raises(RectifyError, match="omega_custom"):
        RectifyParams.from_positional([True, "custom", "1, nope"])
    with pytest.raises(RectifyError, match="tau_end_percent"):
        RectifyParams.from_positional([True, "paper", "", 0, 150])
    with pytest.raises(RectifyError, match="at most 6"):
        RectifyParams.from_positional([True, "paper", "", 0, 60, 0, "extra"])


def test_script_args_dict_first_wins_over_ui_defaults():
    defaults = RectifyParams().to_positional()
    args = [{"enabled": True, "omega": "still"}, *defaults[1:]]
    assert RectifyParams.from_script_args(args) == RectifyParams(enabled=True, omega="still")
    assert RectifyParams.from_script_args([]) == RectifyParams()
    assert RectifyParams.from_script_args(defaults) == RectifyParams()


def test_infotext_round_trip_and_disabled_writes_nothing():
    p = RectifyParams(enabled=True, omega=(1.0, 0.25), tau=(0.05, 0.6), reference_frame=-1)
    text = p.to_infotext()
    assert text["NR omega"] == "[1.0, 0.25]" and text["NR tau"] == "[0.05, 0.6]"
    assert RectifyParams.from_infotext(text) == p
    assert RectifyParams().to_infotext() == {}
    assert RectifyParams.from_infotext({"Steps": "20"}) == RectifyParams()


def test_infotext_from_a_newer_version_is_refused():
    text = RectifyParams(enabled=True).to_infotext() | {"NR version": "2"}
    with pytest.raises(RectifyError, match=r"NR version.*update"):
        RectifyParams.from_infotext(text)


def test_overrides_parse_xyz_text():
    p = RectifyParams(enabled=True)
    assert p.with_override("tau_end_percent", "80").tau == (0.0, 0.8)
    assert p.with_override("tau_start_percent", " 20% ").tau == (0.2, 0.6)
    assert p.with_override("omega", "still").omega == "still"
    assert p.with_override("reference_frame", "-1").reference_frame == -1
    assert p.with_override("enabled", "False").enabled is False
    with pytest.raises(RectifyError, match="tau"):
        p.with_override("tau_start_percent", "70")  # start after end
    with pytest.raises(RectifyError, match="override"):
        p.with_override("strength", "1")


@settings(max_examples=300, deadline=None)
@given(params_strategy)
def test_round_trips_are_exact(p):
    assert RectifyParams.from_api(p.to_api()) == p
    assert RectifyParams.from_script_args([p.to_api()]) == p
    if p.enabled:
        assert RectifyParams.from_infotext(p.to_infotext()) == p
    assert parse_omega_text(p.omega_text) == p.omega


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
    assert RectifyParams.from_positional(p.to_positional()) == p


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_api_parser_raises_only_the_documented_error(value):
    for attempt in (
        lambda: RectifyParams.from_api(value),
        lambda: RectifyParams.from_script_args([value]),
    ):
        try:
            attempt()
        except RectifyError:
            pass


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["enabled", "omega", "tau", "reference_frame", "other"]), json_values
    )
)
def test_api_dict_parser_raises_only_the_documented_error(data):
    try:
        RectifyParams.from_api(data)
    except RectifyError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.lists(json_values, max_size=8))
def test_positional_parser_raises_only_the_documented_error(values):
    try:
        RectifyParams.from_positional(values)
    except RectifyError:
        pass


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "Noise rectification",
                "NR omega",
                "NR tau",
                "NR reference frame",
                "NR version",
                "Steps",
            ]
        ),
        st.text(max_size=30),
    )
)
def test_infotext_parser_raises_only_the_documented_error(entries):
    try:
        RectifyParams.from_infotext(entries)
    except RectifyError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["enabled", "omega", "tau", "reference_frame", "tau_start_percent", "tau_end_percent", "x"]
    ),
    st.text(max_size=30),
)
def test_override_parser_raises_only_the_documented_error(name, text):
    try:
        RectifyParams(enabled=True).with_override(name, text)
    except RectifyError:
        pass
