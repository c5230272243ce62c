"""One renderer for every report: a list of rows (dataclasses or dicts) to a rich table, JSON, CSV or markdown.

Reports are data; how they look is decided here only, so every command offers the same formats.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.cells import cell_len
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
    keys: Sequence[str] | None = None,
    optional: Sequence[str] = (),
) -> str | None:
    """Render ``rows`` as ``fmt``. Tables print to ``console``; other formats are returned as text.

    ``payload`` replaces the rows as the JSON document when a report carries more than its rows. On a terminal a
    table is fitted to its width without splitting a cell: ``optional`` columns are left out first (least important
    first), then the rest is split into several tables that each repeat the ``keys`` columns (default: the first).
    Files and pipes get every column at full width.
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
    console = console or Console()
    cells = [{c: _cell(row.get(c)) for c in columns} for row in dict_rows]
    limit = console.width if console.is_terminal else None
    widths = {c: _column_width(headers.get(c, c), [row[c] for row in cells], limit is None) for c in columns}
    keys = [c for c in (columns[:1] if keys is None else keys) if c in columns]
    parts, dropped = _fit(columns, widths, keys, optional, limit)
    for index, part in enumerate(parts):
        table = Table(
            title=title if index == 0 else f"{title or 'table'}, continued ({index + 1} of {len(parts)})",
            title_justify="left",
        )
        for column in part:
            sample = next((row.get(column) for row in dict_rows if row.get(column) is not None), None)
            numeric = isinstance(sample, (int, float)) and not isinstance(sample, bool)
            header = headers.get(column, column)
            table.add_column(
                header if limit is None else _wrap_header(header, widths[column]),
                justify="right" if numeric else "left",
                no_wrap=True,
                min_width=widths[column],
            )
        for row in cells:
            table.add_row(*(row[c] for c in part))
        _wide_enough(console, table).print(table)
    if dropped:
        names = ", ".join(headers.get(c, c) for c in dropped)
        footer = [
            f"Left out to fit {limit} columns: {names} (a wider terminal, --csv or --json shows every column).",
            *footer,
        ]
    for line in footer:
        console.print(line, highlight=False)
    return None


def _header_words(header: str) -> list[str]:
    """The pieces a header may break between: at spaces, and after hyphens (device ids are long)."""
    return re.findall(r"[^\s-]*-|[^\s-]+", header) or [header]


def _column_width(header: str, cells: Sequence[str], unlimited: bool) -> int:
    """The narrowest a column can be without splitting a cell (a number, a name) or a header word."""
    head = cell_len(header) if unlimited else max(cell_len(w) for w in _header_words(header))
    return max([head, *(cell_len(c) for c in cells)])


def _wrap_header(header: str, width: int) -> str:
    lines: list[str] = []
    for word in _header_words(header):
        joiner = "" if lines and lines[-1].endswith("-") else " "
        if lines and cell_len(lines[-1] + joiner + word) <= width:
            lines[-1] += joiner + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _fit(
    columns: Sequence[str], widths: Mapping[str, int], keys: Sequence[str], optional: Sequence[str], limit: int | None
) -> tuple[list[list[str]], list[str]]:
    """Which columns each table shows within ``limit`` characters: the ``optional`` ones are left out first (least
    important first); if the rest is still too wide, it is split into several tables that each repeat ``keys``."""

    def width(shown: Sequence[str]) -> int:
        return sum(widths[c] + 3 for c in shown) + 1

    shown = list(columns)
    dropped: list[str] = []
    if limit is None or width(shown) <= limit:
        return [shown], dropped
    for column in optional:
        if width(shown) <= limit:
            break
        if column in shown and column not in keys:
            shown.remove(column)
            dropped.append(column)
    if width(shown) <= limit:
        return [shown], dropped
    fixed = [c for c in shown if c in keys]
    groups: list[list[str]] = [[]]
    for column in shown:
        if column in keys:
            continue
        if groups[-1] and width(fixed + groups[-1] + [column]) > limit:
            groups.append([])
        groups[-1].append(column)
    rest = [c for c in shown if c not in keys]
    size = math.ceil(len(rest) / len(groups))
    even = [rest[i : i + size] for i in range(0, len(rest), size)]
    if all(width(fixed + group) <= limit for group in even):
        groups = even
    return [[c for c in shown if c in keys or c in group] for group in groups], dropped


def _wide_enough(console: Console, table: Table) -> Console:
    """On a terminal, the terminal's width (the columns were chosen to fit it, and a table that cannot fit is printed
    whole rather than split mid-number); elsewhere (a log, a file, a pipe) as wide as the table needs, so that a
    many-device profile is not folded into unreadable cells where nobody has a screen to fit."""
    widest = console.measure(table, options=console.options.update_width(100_000)).maximum
    if widest <= console.width:
        return console
    return Console(
        file=console.file,
        width=widest,
        no_color=console.no_color,
        highlight=False,
        force_terminal=console.is_terminal,
        color_system=console.color_system,
    )
