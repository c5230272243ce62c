"""``edgecnn compile`` (ONNX -> TensorRT engine, or trtexec command lines) and ``edgecnn check`` (readiness)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgecnn.cli.common import console, emit, err_console, output_format_option
from edgecnn.devices import get_device
from edgecnn.errors import UsageError
from edgecnn.export.tensorrt.check import ReadinessReport, ShapeProfile, check_model
from edgecnn.export.tensorrt.engine import (
    CompileOptions,
    build_engine,
    installed_tensorrt,
    plan_build,
    resolve_artifact,
)
from edgecnn.render import render_rows, to_json

__all__ = ["compile_command", "check_command", "readiness_rows"]


def _profile(batch: int | None, shapes: str | None) -> ShapeProfile | None:
    if batch is not None and shapes is not None:
        raise UsageError("--batch and --shapes exclude each other: give one")
    if shapes is not None:
        return ShapeProfile.parse(shapes)
    return ShapeProfile.static(batch) if batch is not None else None


def _shape_options(function):
    function = click.option(
        "--shapes", metavar="MIN,OPT,MAX", help="Optimization profile for a dynamic batch, e.g. 1,8,32."
    )(function)
    function = click.option(
        "--batch",
        type=click.IntRange(min=1),
        help="Build for this static batch (a dynamic batch gets min = opt = max).",
    )(function)
    return function


def _common_options(function):
    function = click.option(
        "--tensorrt",
        "tensorrt_version",
        metavar="VERSION",
        help="Plan for this TensorRT version instead of the device's (e.g. 11).",
    )(function)
    function = click.option(
        "--precision",
        type=click.Choice(["fp32", "fp16", "int8"]),
        help=(
            "Which artifact of an export directory (int8: the TensorRT Q/DQ one; default: the lowest precision it has)."
        ),
    )(function)
    function = click.option("--device", "device_id", required=True, help="Target device id (edgecnn devices jetson).")(
        function
    )
    return function


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
    lines = [
        f"{report.model} on {report.device} (TensorRT {report.tensorrt}, {report.precision}, opset {report.opset}): "
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
@_common_options
@_shape_options
@click.option("--all", "all_nodes", is_flag=True, help="List every node, not only those with something to say.")
@output_format_option
def check_command(
    artifact: Path,
    device_id: str,
    precision: str | None,
    tensorrt_version: str | None,
    batch: int | None,
    shapes: str | None,
    all_nodes: bool,
    fmt: str,
) -> None:
    """TensorRT readiness of ARTIFACT (.onnx or export directory) for a device, node by node; runs anywhere.

    \b
    Per node: support by the ONNX parser of the device's TensorRT, Q/DQ compliance (symmetric INT8, zero
    point 0, per-channel weights only), and on DLA devices whether DLA runs it or it falls back to the GPU,
    with the documented restriction that decides. Exits 1 when TensorRT would refuse the model as it is.
    """
    device = get_device(device_id)
    resolved, model = resolve_artifact(artifact, precision)
    report = check_model(
        model, device, tensorrt=tensorrt_version, profile=_profile(batch, shapes), name=resolved.path.name
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


@click.command("compile")
@click.argument("artifact", type=click.Path(path_type=Path))
@_common_options
@click.option(
    "--workspace",
    "workspace_mb",
    type=float,
    help="Builder workspace in MB (default: half the device's memory budget).",
)
@click.option(
    "--dla-core",
    type=click.IntRange(min=0),
    help="Build for this DLA core (devices with DLA: Xavier, Orin NX, AGX Orin).",
)
@click.option("--gpu-fallback", is_flag=True, help="With --dla-core: let layers DLA cannot run fall back to the GPU.")
@click.option(
    "--timing-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Timing cache to reuse and update (default: one per device and TensorRT version in the output directory).",
)
@_shape_options
@click.option(
    "--calib",
    "calibration",
    metavar="SOURCE",
    help="INT8 by TensorRT's entropy calibrator on this data (builtin, DIR, .npz; TensorRT 8/10 only).",
)
@click.option(
    "--calib-samples",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Calibration samples for --calib.",
)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the engine goes (default: next to the ONNX).",
)
@click.option(
    "--emit-trtexec", is_flag=True, help="Write the trtexec build and profiling command lines instead of building."
)
@output_format_option
def compile_command(
    artifact: Path,
    device_id: str,
    precision: str | None,
    tensorrt_version: str | None,
    workspace_mb: float | None,
    dla_core: int | None,
    gpu_fallback: bool,
    timing_cache: Path | None,
    batch: int | None,
    shapes: str | None,
    calibration: str | None,
    calib_samples: int,
    output_dir: Path | None,
    emit_trtexec: bool,
    fmt: str,
) -> None:
    """Build a TensorRT engine from ARTIFACT (.onnx or export directory) for a device, with a sidecar JSON.

    \b
    Precision comes from the ONNX: Q/DQ -> INT8, float16 graph -> FP16 (TensorRT 11 is always strongly
    typed; TensorRT 10 uses the weakly typed FP16/INT8 path where DLA needs it). Needs TensorRT and an
    NVIDIA GPU (a Jetson); anywhere else --emit-trtexec writes the trtexec commands to run on the device.
    """
    installed = installed_tensorrt()
    version = tensorrt_version or (installed if installed and not emit_trtexec else None)
    options = CompileOptions(
        device=device_id,
        workspace_mb=workspace_mb,
        dla_core=dla_core,
        gpu_fallback=gpu_fallback,
        timing_cache=timing_cache,
        batch=batch,
        shapes=ShapeProfile.parse(shapes) if shapes is not None else None,
        output_dir=output_dir,
        precision=precision,
        tensorrt=version,
        calibration=calibration,
        calibration_samples=calib_samples,
    )
    plan = plan_build(artifact, options)
    for note in plan.notes:
        err_console.print(f"[yellow]note:[/] {note}")
    if emit_trtexec:
        from edgecnn.export.tensorrt.trtexec import (
            trtexec_commands,
            write_trtexec_script,
        )

        script = write_trtexec_script(plan, output_dir)
        commands = trtexec_commands(plan, script.parent)
        if fmt == "json":
            emit(
                to_json(
                    {
                        "script": str(script),
                        "tensorrt": plan.tensorrt,
                        "commands": [{"step": c.step, "argv": c.argv, "line": c.line} for c in commands],
                    }
                )
            )
            return
        console.print(
            f"trtexec commands for {plan.model} on {plan.device} (TensorRT {plan.tensorrt}) -> {script}",
            highlight=False,
        )
        for command in commands:
            console.print(f"# {command.purpose}", highlight=False, soft_wrap=True)
            console.print(command.line, highlight=False, soft_wrap=True)
        return
    result = build_engine(plan)
    rows = [
        {"item": "engine", "value": str(result.engine)},
        {"item": "sidecar", "value": str(result.sidecar)},
        {"item": "TensorRT", "value": plan.tensorrt},
        {
            "item": "network",
            "value": f"{plan.network}, {plan.precision}"
            + (f", flags {'+'.join(plan.builder_flags)}" if plan.builder_flags else ""),
        },
        {"item": "workspace", "value": f"{plan.workspace_bytes / 2**20:,.0f} MB"},
        {"item": "size", "value": f"{result.size_bytes / 1e6:,.2f} MB"},
        {"item": "build time", "value": f"{result.seconds:,.1f} s"},
    ]
    if plan.dla_core is not None:
        rows.append(
            {
                "item": f"DLA core {plan.dla_core}",
                "value": f"{len(result.dla_layers)} layers on DLA, {len(result.gpu_layers)} on the GPU",
            }
        )
    if fmt == "json":
        emit(
            to_json(
                {
                    "engine": str(result.engine),
                    "sidecar": str(result.sidecar),
                    "seconds": result.seconds,
                    "size_bytes": result.size_bytes,
                    "build_options": plan.build_options(),
                    "dla_layers": result.dla_layers,
                    "gpu_layers": result.gpu_layers,
                }
            )
        )
        return
    emit(
        render_rows(
            rows, fmt, title=f"compiled {plan.model} for {plan.device}", console=console, columns=["item", "value"]
        )
    )
