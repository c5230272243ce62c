"""What every command shares: the consoles, the output-format options and printing."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from edgecnn.render import FORMATS

__all__ = ["console", "err_console", "output_format_option", "emit"]

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def output_format_option(function):
    """``--json/--csv/--markdown`` shorthand for ``--format``: the same choice on every report command."""
    function = click.option("--markdown", "fmt", flag_value="markdown", help="Print a markdown table.")(function)
    function = click.option("--csv", "fmt", flag_value="csv", help="Print CSV.")(function)
    function = click.option("--json", "fmt", flag_value="json", help="Print JSON (the contract for scripts and CI).")(
        function
    )
    function = click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format."
    )(function)
    return function


def emit(text: str | None) -> None:
    if text is not None:
        click.echo(text, nl=not text.endswith("\n"))
