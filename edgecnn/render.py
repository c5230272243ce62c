"""One renderer for every report: a list of rows (dataclasses or dicts) to a rich table, JSON, CSV or markdown.

Reports are data; how they look is decided here only, so every command offers the same formats.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["FORMATS", "as_dict", "render_rows", "to_json"]

FORMATS = ("table", "json", "csv", "markdown")


def as_dict(row: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(row):
        return dataclasses.asdict(row)
    return dict(row)


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def to_json(payload: Any) -> str:
    return json.dumps(payload, indent=2, default=_json_default, allow_nan=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and abs(value) < 0.01:
            return f"{value:.2e}"
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value))
    return str(value)


def _raw(value: Any) -> Any:
    """A CSV cell: numbers unformatted, collections joined, None empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, set, frozenset)):
        return _cell(value)
    return value


def render_rows(
    rows: Sequence[Any],
    fmt: str = "table",
    *,
    columns: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    title: str | None = None,
    footer: Iterable[str] = (),
    console: Console | None = None,
    payload: Any = None,
) -> str | None:
    """Render ``rows`` as ``fmt``. Tables print to ``console``; other formats are returned as text.

    ``payload`` replaces the rows as the JSON document when a report carries more than its rows.
    """
    dict_rows = [as_dict(row) for row in rows]
    columns = list(columns or (dict_rows[0].keys() if dict_rows else []))
    headers = dict(headers or {})
    if fmt == "json":
        return to_json(payload if payload is not None else dict_rows)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in dict_rows:
            writer.writerow([_raw(row.get(c)) for c in columns])
        return buffer.getvalue()
    if fmt == "markdown":
        lines = [f"**{title}**", ""] if title else []
        lines.append("| " + " | ".join(headers.get(c, c) for c in columns) + " |")
        lines.append("|" + "|".join("---" for _ in columns) + "|")
        lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in dict_rows]
        lines += ["", *footer] if footer else []
        return "\n".join(lines) + "\n"
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    table = Table(title=title, title_justify="left")
    for column in columns:
        sample = next((row.get(column) for row in dict_rows if row.get(column) is not None), None)
        numeric = isinstance(sample, (int, float)) and not isinstance(sample, bool)
        table.add_column(headers.get(column, column), justify="right" if numeric else "left", overflow="fold")
    for row in dict_rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console = _wide_enough(console or Console(), table)
    console.print(table)
    for line in footer:
        console.print(line, highlight=False)
    return None


def _wide_enough(console: Console, table: Table) -> Console:
    """On a terminal, the terminal's width; elsewhere (a log, a file, a pipe) as wide as the table needs, so
    that a many-device profile is not folded into unreadable cells where nobody has a screen to fit."""
    if console.is_terminal:
        return console
    widest = console.measure(table, options=console.options.update_width(100_000)).maximum
    if widest <= console.width:
        return console
    return Console(file=console.file, width=widest, no_color=console.no_color, highlight=False)
