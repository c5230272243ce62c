"""What the commands share: the consoles, printing, and option groups (output format, TensorRT target, shapes)."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from edgecnn.errors import UsageError
from edgecnn.export.tensorrt.check import ShapeProfile
from edgecnn.render import FORMATS

__all__ = [
    "console",
    "err_console",
    "output_format_option",
    "emit",
    "shape_profile",
    "shape_options",
    "tensorrt_target_options",
]

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


def shape_profile(batch: int | None, shapes: str | None) -> ShapeProfile | None:
    """``--batch`` or ``--shapes`` as the optimization profile TensorRT builds for (None: the graph's own)."""
    if batch is not None and shapes is not None:
        raise UsageError("--batch and --shapes exclude each other: give one")
    if shapes is not None:
        return ShapeProfile.parse(shapes)
    return ShapeProfile.static(batch) if batch is not None else None


def shape_options(function):
    """``--batch`` and ``--shapes``, shared by ``edgecnn check`` and ``edgecnn compile``."""
    function = click.option(
        "--shapes", metavar="MIN,OPT,MAX", help="Optimization profile for a dynamic batch, e.g. 1,8,32."
    )(function)
    function = click.option(
        "--batch",
        type=click.IntRange(min=1),
        help="Build for this static batch (a dynamic batch gets min = opt = max).",
    )(function)
    return function


def tensorrt_target_options(function):
    """``--device``, ``--precision``, ``--jetpack`` and ``--tensorrt``, shared by ``edgecnn check`` and ``compile``."""
    function = click.option(
        "--tensorrt",
        "tensorrt_version",
        metavar="VERSION",
        help="Plan for this TensorRT version instead of the JetPack release's (e.g. 11).",
    )(function)
    function = click.option(
        "--jetpack",
        metavar="VERSION",
        help="The device's JetPack release (6.2, 7.x, 7.2.2...), which sets TensorRT and DLA; default: the newest.",
    )(function)
    function = click.option(
        "--precision",
        type=click.Choice(["fp32", "fp16", "int8", "fp8"]),
        help=(
            "Which artifact of an export directory (int8: the TensorRT Q/DQ one; default: the lowest precision it has)."
        ),
    )(function)
    function = click.option("--device", "device_id", required=True, help="Target device id (edgecnn devices jetson).")(
        function
    )
    return function
