"""The README's configuration reference is the one generated from the settings model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivagate.cli import main
from ivagate.config_reference import BEGIN_MARKER, END_MARKER, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_carries_the_generated_reference() -> None:
    """README.md between the markers equals `ivagate config-reference` (regenerate it if not)."""
    text = README.read_text()
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER) + 1
    assert text[start : text.index(END_MARKER)] == render()


def test_every_setting_is_described() -> None:
    """No row of the reference has an empty meaning column."""
    rows = render().splitlines()[2:]
    assert rows
    assert all(not row.endswith("|  |") for row in rows)


def test_config_reference_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`ivagate config-reference` prints the table and needs no settings."""
    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out == render()
