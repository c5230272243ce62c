"""``edgecnn compile``: ONNX -> TensorRT engine on the device, or the trtexec command lines to build it there."""

from __future__ import annotations

from pathlib import Path

import click

from edgecnn.cli.common import (
    console,
    emit,
    err_console,
    output_format_option,
    shape_options,
    tensorrt_target_options,
)
from edgecnn.export.tensorrt.check import ShapeProfile
from edgecnn.export.tensorrt.engine import (
    CompileOptions,
    build_engine,
    installed_tensorrt,
    plan_build,
)
from edgecnn.export.tensorrt.trtexec import trtexec_commands, write_trtexec_script
from edgecnn.render import render_rows, to_json

__all__ = ["compile_command"]


@click.command("compile")
@click.argument("artifact", type=click.Path(path_type=Path))
@tensorrt_target_options
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
@shape_options
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
    jetpack: str | None,
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
        jetpack=jetpack,
    )
    plan = plan_build(artifact, options)
    for note in plan.notes:
        err_console.print(f"[yellow]note:[/] {note}")
    if emit_trtexec:
        script = write_trtexec_script(plan, output_dir)
        commands = trtexec_commands(plan, script.parent)
        if fmt == "json":
            emit(
                to_json(
                    {
                        "script": str(script),
                        "jetpack": plan.jetpack,
                        "tensorrt": plan.tensorrt,
                        "commands": [{"step": c.step, "argv": c.argv, "line": c.line} for c in commands],
                    }
                )
            )
            return
        console.print(
            f"trtexec commands for {plan.model} on {plan.device} "
            f"({f'JetPack {plan.jetpack}, ' if plan.jetpack else ''}TensorRT {plan.tensorrt}) -> {script}",
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
