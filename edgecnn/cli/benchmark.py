"""``edgecnn benchmark``: every format of a model, or of an export directory, side by side (size, top-1, latency,
speed-up)."""

from __future__ import annotations

from pathlib import Path

import click

from edgecnn.benchmark import BenchmarkReport, benchmark, parse_formats
from edgecnn.cli.common import console, emit, output_format_option, progress_bar
from edgecnn.errors import UsageError
from edgecnn.options import parse_batches
from edgecnn.render import render_rows, to_json

COLUMNS = [
    "format",
    "batch",
    "status",
    "size_mb",
    "top1",
    "top1_drop",
    "p50_ms",
    "p90_ms",
    "throughput",
    "speedup",
    "reason",
]
HEADERS = {
    "size_mb": "MB",
    "top1": "top-1 %",
    "top1_drop": "drop",
    "p50_ms": "p50 ms",
    "p90_ms": "p90 ms",
    "throughput": "img/s",
    "speedup": "vs eager",
}
BASELINES = {
    "torch": ("vs eager", "PyTorch eager p50 / format p50 at the same batch"),
    "onnx-fp32": ("vs fp32", "ONNX FP32 p50 / format p50 at the same batch (no PyTorch eager row ran)"),
}


def _headers(report: BenchmarkReport) -> dict[str, str]:
    label = BASELINES.get(report.baseline or "torch", (f"vs {report.baseline}", ""))[0]
    return {**HEADERS, "speedup": label}


def _footer(report: BenchmarkReport) -> list[str]:
    settings = report.session_settings
    label, meaning = BASELINES.get(report.baseline, ("", ""))
    lines = [
        f"input {'x'.join(map(str, report.input_shape))}, {report.threads} threads; "
        + (f"top-1 on {report.data} ({report.data_images} images), drop in points vs FP32; " if report.data else "")
        + (f"{label} = {meaning}; " if meaning else "")
        + "formats timed in alternating rounds",
        f"ONNX Runtime {settings['onnxruntime']}: optimization {settings['optimization']}, "
        f"{settings['execution_mode']}, spinning {'on' if settings['allow_spinning'] else 'off'}; "
        f"artifacts in {report.directory or '-'}",
    ]
    return lines + [f"note: {note}" for note in report.notes]


@click.command("benchmark")
@click.argument("models", nargs=-1, required=True)
@click.option(
    "--formats",
    "formats",
    help="Comma-separated format keys (default: all; for an export directory, torch and the formats it holds).",
)
@click.option("--data", help="Labelled images for top-1: an ImageFolder tree (ROOT/<class>/<image>) or 'digits'.")
@click.option("--batch", "batches", default="1", show_default=True, help="Batch sizes, comma-separated (e.g. 1,8).")
@click.option(
    "--threads", type=click.IntRange(min=1), help="Threads for PyTorch and ONNX Runtime (default: usable cores)."
)
@click.option(
    "--weights", type=click.Path(path_type=Path), help="state_dict or checkpoint for the model (one model only)."
)
@click.option("--num-classes", type=click.IntRange(min=1), help="Number of output classes (default: the model's).")
@click.option("--input-size", help="H or HxW (default: the model's).")
@click.option(
    "--calibration",
    help="INT8 calibration images: a folder, .npy/.npz, 'builtin' (default; digits: its calibration split).",
)
@click.option(
    "-o",
    "--export-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("exports"),
    show_default=True,
    help="Where artifacts are found or exported (EXPORT_DIR/<model>/).",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Alternating timing rounds per batch size.",
)
@output_format_option
def benchmark_command(
    models, formats, data, batches, threads, weights, num_classes, input_size, calibration, export_dir, rounds, fmt
):
    """Benchmark MODELS in every format: status, size, top-1 (with --data), p50/p90 latency, throughput, speed-up.

    MODELS are zoo names (missing artifacts are exported first) or edgecnn export directories, benchmarked
    as they are without PyTorch: their ONNX artifacts, their TensorRT engines where TensorRT runs, and eager
    PyTorch when it is installed. A format that cannot run here (TensorRT without an NVIDIA GPU) is listed
    as not available with the reason; one that fails says why. Speed-ups are against PyTorch eager, or
    against ONNX FP32 when eager did not run (the column says which).

    \b
    edgecnn benchmark mobilenet_v2 --data digits --batch 1,8
    edgecnn benchmark resnet18 --formats torch,onnx-fp32,onnx-int8-cpu --json
    edgecnn benchmark exports/mobilenet_v2 --data digits
    """
    keys = parse_formats(formats) if formats is not None else None
    batch_sizes = parse_batches(batches)
    if weights is not None and len(models) > 1:
        raise UsageError("--weights applies to one model: benchmark several models without it, or one model with it")
    reports = []
    for model in models:
        with progress_bar() as progress:
            task = progress.add_task(f"{model}: starting", total=None)

            def update(description: str, done: int, total: int, task=task, model=model) -> None:
                progress.update(task, description=f"{model}: {description}", completed=done, total=total)

            report = benchmark(
                model,
                keys,
                data,
                batch_sizes,
                threads,
                weights=weights,
                num_classes=num_classes,
                input_size=input_size,
                export_dir=export_dir,
                calibration=calibration,
                rounds=rounds,
                progress=update,
            )
        reports.append(report)
        if fmt != "json":
            emit(
                render_rows(
                    report.rows,
                    fmt,
                    columns=COLUMNS,
                    headers=_headers(report),
                    title=f"benchmark {report.model}",
                    footer=_footer(report),
                    console=console,
                )
            )
    if fmt == "json":
        emit(to_json(reports[0] if len(reports) == 1 else reports))
