from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import json_values, omegas, record_validators, unit

import lib_rectify.params as core
from lib_rectify import (
    FIELDS,
    MAX_OMEGA_VALUES,
    RectifyError,
    RectifyParams,
    check_field,
    fraction_to_percent,
    parse_omega_text,
    parse_percent,
    percent_to_fraction,
)

taus = st.tuples(unit, unit).map(lambda t: (min(t), max(t)))
params_strategy = st.builds(
    RectifyParams,
    enabled=st.booleans(),
    omega=omegas,
    tau=taus,
    reference_frame=st.integers(min_value=-64, max_value=63),
    end_anchor=st.booleans(),
)


def test_defaults_are_the_papers():
    p = RectifyParams()
    assert (p.enabled, p.omega, p.tau, p.reference_frame) == (False, "paper", (0.0, 0.6), 0)
    assert p.end_anchor  # an end picture, when the host has one, is used
    assert not p.active and RectifyParams(enabled=True).active
    assert not RectifyParams(enabled=True, tau=(0.3, 0.3)).active


def test_every_field_has_every_surface():
    names = [f.name for f in FIELDS]
    assert names == ["enabled", "omega", "tau", "reference_frame", "end_anchor", "sigma_start"]
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


def test_one_validator_per_field_is_what_the_constructor_runs():
    assert list(core._VALIDATORS) == [f.name for f in FIELDS]
    assert check_field("omega", " Still ") == "still"
    assert check_field("tau", [0, 1]) == (0.0, 1.0)
    with pytest.raises(RectifyError, match="reference_frame"):
        check_field("reference_frame", 0.5)
    with pytest.raises(RectifyError, match="one of enabled, omega"):
        check_field("strength", 1)


@pytest.fixture
def validator_calls(monkeypatch):
    """Records which fields' validators ran (by field name)."""
    return record_validators(monkeypatch)


def test_every_parse_path_ends_in_each_fields_validator(validator_calls):
    every = {f.name for f in FIELDS}
    text = RectifyParams(enabled=True, omega=(1.0, 0.5), tau=(0.1, 0.7)).to_infotext()
    paths = {
        "from_api": lambda: RectifyParams.from_api({"omega": "1, 0.5", "tau": [0.1, 0.7]}),
        "from_infotext": lambda: RectifyParams.from_infotext(text),
        "with_override": lambda: RectifyParams().with_override("tau_end_percent", "70"),
        "constructor": lambda: RectifyParams(enabled=True),
    }
    for path, parse in paths.items():
        validator_calls.clear()
        parse()
        assert set(validator_calls) == every, path


def test_text_readers_refuse_through_the_fields_validator(validator_calls):
    """A reader words the refusal in its form's terms, but the rule is the validator's."""
    for read in (
        lambda: parse_omega_text("1, 1.5", field_name="NR omega"),
        lambda: parse_percent("tau_end_percent", "150"),
        lambda: RectifyParams.from_infotext({"NR tau": "[0.7, 0.2]"}),
    ):
        validator_calls.clear()
        with pytest.raises(RectifyError):
            read()
        assert validator_calls, read


def test_percent_readers_keep_their_wording():
    assert parse_percent("tau_start_percent", " 20% ") == 0.2
    assert parse_percent("x", 1.3) == 0.013 == percent_to_fraction(1.3)
    assert parse_percent("x", "-0") == 0.0 and str(parse_percent("x", "-0")) == "0.0"
    for bad in (150, "150", -1, "x", None, True, math.nan, math.inf, 10**400):
        with pytest.raises(RectifyError) as info:
            parse_percent("tau_end_percent", bad)
        assert info.value.field == "tau_end_percent"
        assert info.value.allowed == "a number of percent from 0 to 100"


@given(st.integers(0, 100_000))
def test_percent_and_fraction_are_inverse_on_the_ui_grid(thousandths):
    percent = thousandths / 1000
    assert fraction_to_percent(percent_to_fraction(percent)) == percent


def test_core_hints_name_no_host():
    for f in FIELDS:
        assert "AnimateDiff" not in f.hint and "WebUI" not in f.hint, f.name


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
    assert p.with_override("end_anchor", "False").end_anchor is False
    with pytest.raises(RectifyError, match="end_anchor"):
        p.with_override("end_anchor", "maybe")
    with pytest.raises(RectifyError, match="tau"):
        p.with_override("tau_start_percent", "70")  # start after end
    with pytest.raises(RectifyError, match="override"):
        p.with_override("strength", "1")


@settings(max_examples=300, deadline=None)
@given(params_strategy)
def test_round_trips_are_exact(p):
    assert RectifyParams.from_api(p.to_api()) == p
    if p.enabled:
        assert RectifyParams.from_infotext(p.to_infotext()) == p
    assert parse_omega_text(p.omega_text) == p.omega


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_api_parser_raises_only_the_documented_error(value):
    try:
        RectifyParams.from_api(value)
    except RectifyError:
        pass


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["enabled", "omega", "tau", "reference_frame", "end_anchor", "other"]),
        json_values,
    )
)
def test_api_dict_parser_raises_only_the_documented_error(data):
    try:
        RectifyParams.from_api(data)
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
                "NR end anchor",
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


def test_end_anchor_on_every_surface():
    p = RectifyParams(enabled=True, end_anchor=False)
    assert p.to_api()["end_anchor"] is False
    assert p.to_infotext()["NR end anchor"] == "False"
    assert RectifyParams.from_infotext(p.to_infotext()) == p
    # infotexts written before the field existed read as the default
    older = {k: v for k, v in p.to_infotext().items() if k != "NR end anchor"}
    assert RectifyParams.from_infotext(older).end_anchor is True
    with pytest.raises(RectifyError, match="end_anchor = 'yes'"):
        RectifyParams.from_api({"end_anchor": "yes"})
    with pytest.raises(RectifyError, match="NR end anchor"):
        RectifyParams.from_infotext({"NR end anchor": "perhaps"})
