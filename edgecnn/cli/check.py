"""``edgecnn check``: will TensorRT (and DLA) on a device run this model, node by node."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgecnn.cli.common import (
    console,
    emit,
    output_format_option,
    shape_options,
    shape_profile,
    tensorrt_target_options,
)
from edgecnn.devices import get_device
from edgecnn.export.tensorrt.check import ReadinessReport, check_model
from edgecnn.export.tensorrt.engine import resolve_artifact
from edgecnn.render import render_rows, to_json

__all__ = ["check_command", "readiness_rows"]


def readiness_rows(report: ReadinessReport, all_nodes: bool) -> list[dict[str, Any]]:
    """Rows worth a look (parser or Q/DQ problems, DLA fallback), or every node with ``all_nodes``."""
    rows = []
    for node in report.nodes:
        if all_nodes or node.parser != "ok" or node.qdq.startswith("non-compliant") or node.dla == "gpu":
            row = {"node": node.node, "op": node.op_type, "parser": node.parser, "qdq": node.qdq or "-"}
            if report.dla_evaluated:
                row["dla"] = node.dla
            row["reason"] = node.reason
            rows.append(row)
    return rows


def _readiness_footer(report: ReadinessReport, shown: int) -> list[str]:
    summary = report.summary()
    target = (
        f"JetPack {report.jetpack}, TensorRT {report.tensorrt}" if report.jetpack else f"TensorRT {report.tensorrt}"
    )
    lines = [
        f"{report.model} on {report.device} ({target}, {report.precision}, opset {report.opset}): "
        f"[bold]{report.verdict}[/]"
    ]
    if report.dla_evaluated:
        fallback = sorted({node.op_type for node in report.nodes if node.dla == "gpu"})
        lines.append(
            f"DLA ({report.dla_cores} core(s), version {report.dla_version}, {report.dla_precision}): "
            f"{summary['dla_layers']} layer(s) on DLA, "
            f"{summary['gpu_fallback_layers']} fall back to the GPU" + (f" ({', '.join(fallback)})" if fallback else "")
        )
    hidden = len(report.nodes) - shown
    if hidden > 0:
        lines.append(f"{hidden} other node(s) are ready (--all lists every node)")
    for issue in report.issues:
        colour = {"error": "red", "warning": "yellow", "note": "cyan"}[issue.severity]
        lines.append(f"[{colour}]{issue.severity}:[/] {issue.message}")
    lines.append(f"parser table: {report.parser_table}")
    return lines


@click.command("check")
@click.argument("artifact", type=click.Path(path_type=Path))
@tensorrt_target_options
@shape_options
@click.option("--all", "all_nodes", is_flag=True, help="List every node, not only those with something to say.")
@output_format_option
def check_command(
    artifact: Path,
    device_id: str,
    precision: str | None,
    jetpack: str | None,
    tensorrt_version: str | None,
    batch: int | None,
    shapes: str | None,
    all_nodes: bool,
    fmt: str,
) -> None:
    """TensorRT readiness of ARTIFACT (.onnx or export directory) for a device, node by node; runs anywhere.

    \b
    The device's JetPack release (--jetpack, default the newest it runs) sets the TensorRT version and DLA.
    Per node: support by the ONNX parser of that TensorRT, Q/DQ compliance (symmetric INT8, zero
    point 0, per-channel weights only), and on DLA devices whether DLA runs it or it falls back to the GPU,
    with the documented restriction that decides. Exits 1 when TensorRT would refuse the model as it is.
    """
    device = get_device(device_id)
    resolved, model = resolve_artifact(artifact, precision)
    report = check_model(
        model,
        device,
        tensorrt=tensorrt_version,
        jetpack=jetpack,
        profile=shape_profile(batch, shapes),
        name=resolved.path.name,
    )
    if fmt == "json":
        emit(to_json(report.as_dict()))
    else:
        rows = readiness_rows(report, all_nodes)
        headers = {"op": "op", "qdq": "Q/DQ", "dla": "DLA"}
        footer = _readiness_footer(report, len(rows))
        if rows:
            emit(
                render_rows(
                    rows,
                    fmt,
                    headers=headers,
                    footer=footer,
                    console=console,
                    title=f"TensorRT readiness: {resolved.path.name}",
                )
            )
        else:
            for line in footer:
                console.print(line, highlight=False)
    if report.verdict == "blocked":
        sys.exit(1)
