"""``edgecnn list``: the zoo with its reference figures."""

from __future__ import annotations

import click

from edgecnn.cli.common import console, emit, output_format_option
from edgecnn.errors import EdgecnnError
from edgecnn.registry import get_spec, list_models
from edgecnn.render import render_rows
from edgecnn.summary import count_parameters, module_macs, training_heads_note

__all__ = ["list_command"]


@click.command("list")
@click.argument("pattern", required=False)
@click.option(
    "--tag", "tags", multiple=True, type=click.Choice(["efficient", "heavy"]), help="Only models with this tag."
)
@click.option(
    "--macs",
    "with_macs",
    is_flag=True,
    help="Also count MACs with the ONNX cost model (first use builds and caches each graph).",
)
@output_format_option
def list_command(pattern: str | None, tags: tuple[str, ...], with_macs: bool, fmt: str) -> None:
    """List the zoo (optionally names matching a glob PATTERN such as 'resnet*').

    GMACs (ref) and top-1 are reference figures (zoo_reference.csv, ImageNet, 1000 classes), not measured
    here; --macs adds GMACs counted by edgecnn's cost model on each model's ONNX graph.
    """
    names = list_models(pattern or "*", tags=tags)
    if not names:
        raise EdgecnnError(
            f"no model matches {pattern!r}{' with tag ' + ','.join(tags) if tags else ''}: run 'edgecnn list'"
        )
    rows = []
    for name in names:
        spec = get_spec(name)
        reference = spec.reference
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "params": count_parameters(name),
                "input_size": f"{spec.in_chans}x{spec.input_size[0]}x{spec.input_size[1]}",
                "tags": sorted(spec.tags),
                "ref_gmacs": reference.gmacs if reference else None,
                "ref_top1": reference.top1 if reference else None,
                "summary": spec.summary,
            }
        )
        if with_macs:
            rows[-1]["gmacs"] = module_macs(name, spec.input_size, spec.num_classes)[0] / 1e9
    headers = {"ref_gmacs": "GMACs (ref)", "ref_top1": "top-1 % (ref)", "input_size": "input", "gmacs": "GMACs"}
    columns = [
        "name",
        "family",
        "params",
        "input_size",
        "tags",
        *(["gmacs"] if with_macs else []),
        "ref_gmacs",
        "ref_top1",
    ]
    footer = [
        f"{len(rows)} {'model' if len(rows) == 1 else 'models'}. "
        "(ref) = published reference figures, ImageNet 1000 classes; MAC = one multiply-accumulate. "
        "params = PyTorch's parameters() of the module.",
        *(note for note in (training_heads_note(row["name"], "list") for row in rows) if note),
    ]
    emit(
        render_rows(
            rows, fmt, columns=None if fmt == "json" else columns, headers=headers, footer=footer, console=console
        )
    )
