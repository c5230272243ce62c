"""``edgecnn info``: the per-layer structure of a zoo model."""

from __future__ import annotations

import click

from edgecnn.cli.common import console, emit, output_format_option
from edgecnn.registry import get_spec
from edgecnn.render import render_rows, to_json
from edgecnn.summary import summarize

__all__ = ["info_command"]


@click.command("info")
@click.argument("name")
@click.option("--input-size", help="H or HxW (default: the model's).")
@click.option("--num-classes", type=click.IntRange(min=1), help="Number of output classes (default: the model's).")
@output_format_option
def info_command(name: str, input_size: str | None, num_classes: int | None, fmt: str) -> None:
    """Per-layer structure of model NAME: module path, type, output shape, parameters; totals and weight memory."""
    summary = summarize(name, input_size=input_size, num_classes=num_classes)
    if fmt == "json":
        emit(to_json(summary))
        return
    spec = get_spec(summary.name)
    memory = ", ".join(f"{p} {b / 2**20:,.2f} MiB" for p, b in summary.weight_bytes.items())
    footer = [
        f"{summary.name}: {summary.params:,} parameters, input {'x'.join(map(str, summary.input_shape))}, "
        f"{summary.num_classes} classes",
        f"weight memory: {memory}",
        *(
            [f"MACs: {summary.macs / 1e9:,.3f} G from the ONNX cost model ({summary.convention})"]
            if summary.macs is not None
            else []
        ),
        f"paper: {spec.paper}",
    ]
    emit(
        render_rows(
            summary.layers,
            fmt,
            headers={"output_shape": "output shape", "macs": "MACs"},
            title=f"{summary.name} ({summary.family})",
            footer=footer,
            console=console,
        )
    )
