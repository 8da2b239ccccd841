"""README's user documentation must name every setting the code has, as the code names it."""

from __future__ import annotations

from pathlib import Path

from lib_rectify import FIELDS, OMEGA_PRESETS, RectifyParams, fraction_to_percent
from lib_rectify_webui.args import POSITIONAL_ARGS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_parameter_table_lists_every_field_with_its_keys():
    table = _section("Parameters")
    for field in FIELDS:
        assert f"`{field.name}`" in table, field.name
        assert f"`{field.infotext_key}`" in table, field.infotext_key
    for preset in OMEGA_PRESETS:
        assert f"`{preset}`" in table


def test_positional_table_matches_the_ui_order_and_defaults():
    rows = [
        line for line in _section("API").splitlines() if line.startswith("| ") and line[2].isdigit()
    ]
    assert [row.split("|")[2].strip() for row in rows] == list(POSITIONAL_ARGS)
    defaults = RectifyParams()
    assert f"| 3 | tau_start_percent | float | {fraction_to_percent(defaults.tau[0]):g} |" in README
    assert f"| 4 | tau_end_percent | float | {fraction_to_percent(defaults.tau[1]):g} |" in README


def test_test_command_is_the_one_ci_runs():
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text(encoding="utf-8")
    command = next(
        line.split("'")[1] for line in ci.splitlines() if line.startswith("TEST_COMMAND=")
    )
    assert f"\n{command}\n" in README
