"""What the commands share: the consoles, printing, and option groups (output format, TensorRT target, shapes)."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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
    "option_given",
    "parse_floats",
    "preprocessing_options",
    "PREPROCESSING_PARAMETERS",
]

PREPROCESSING_PARAMETERS = ("mean", "std", "scale", "channel_order", "resize")

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


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """``0.485,0.456,0.406`` -> a tuple of floats; a one-line error otherwise."""
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not comma-separated numbers (for example {option} 0.5,0.5,0.5)"
        ) from None


def preprocessing_options(function):
    """``--mean/--std/--scale/--channel-order/--resize``: how images become a bare ONNX file's input, declared by
    the user (``edgecnn export FILE.onnx`` records them; ``edgecnn quantize FILE.onnx`` calibrates with them)."""
    function = click.option(
        "--resize",
        type=click.IntRange(min=1),
        help="ONNX files: shorter side before the centre crop (default: no margin).",
    )(function)
    function = click.option(
        "--channel-order", type=click.Choice(["RGB", "BGR"]), help="ONNX files: channel order of the input."
    )(function)
    function = click.option(
        "--scale", type=click.Choice(["1/255", "1"]), help="ONNX files: pixel scale before mean/std."
    )(function)
    function = click.option(
        "--std", help="ONNX files: per-channel std after scaling, e.g. 0.229,0.224,0.225 (default 1)."
    )(function)
    function = click.option(
        "--mean", help="ONNX files: per-channel mean after scaling, e.g. 0.485,0.456,0.406 (default 0)."
    )(function)
    return function


def option_given(name: str) -> bool:
    """Whether option ``name`` of the running command was typed on the command line (not left at its default)."""
    return click.get_current_context().get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def progress_bar(enabled: bool = True) -> Progress:
    """The progress bar of commands that work through many items: on stderr, gone when done, and off when stderr
    is not a terminal (a pipe or a CI log gets no control characters).

    It never swaps ``sys.stdout``/``sys.stderr`` (rich's default): a bar started inside a block that silences
    ONNX Runtime's prints and stopped after it would put the silenced stream back as stdout, and every table
    printed afterwards vanished (issue 22)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not enabled or not err_console.is_terminal,
        redirect_stdout=False,
        redirect_stderr=False,
    )
