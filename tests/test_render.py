"""Tables fit a terminal's width without splitting a number or a name, and keep every column in files and pipes."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from edgecnn.render import render_rows

DEVICES = [f"jetson-orin-nano-{n}gb-super" for n in range(1, 9)]
ROWS = [
    {
        "model": f"inception_resnet_v{i}",
        "params": 55_843_464 + i,
        "gmacs": 13.188 + i,
        **{device: f"{1234.5 + i:,.2f} ✓" for device in DEVICES},
    }
    for i in range(3)
]
HEADERS = {device: device.removeprefix("jetson-") for device in DEVICES}


def _render(width: int, terminal: bool, **kwargs) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=terminal, color_system=None, legacy_windows=False)
    render_rows(ROWS, headers=HEADERS, title="profile", console=console, footer=["a note"], **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("width", [100, 80])
def test_table_fits_a_terminal_without_splitting_cells(width):
    text = _render(width, terminal=True, keys=("model",))
    assert max(len(line) for line in text.splitlines()) <= width
    cells = re.findall(r"│ ([^│]+?) +(?=│)", text)
    for row in ROWS:
        assert text.count(row["model"]) >= 2, "the key column is repeated in each part"
        assert f"{row['params']:,}" in cells
        for device in DEVICES:
            assert row[device] in text
    assert "continued" in text
    assert text.rstrip().endswith("a note")


def test_optional_columns_are_left_out_first_and_named():
    text = _render(100, terminal=True, optional=("params", "gmacs"))
    assert "55,843,464" not in text
    assert "Left out to fit 100 columns: params, gmacs" in text


def test_files_and_pipes_get_every_column_in_one_table():
    text = _render(80, terminal=False, optional=("params",))
    assert "continued" not in text and "Left out" not in text
    assert "55,843,464" in text
    header = next(line for line in text.splitlines() if "model" in line)
    assert all(HEADERS[device] in header for device in DEVICES)
