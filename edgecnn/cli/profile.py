"""``edgecnn profile``: does a network fit a device, how fast will it be, and which fits best."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgecnn.cli.common import console, emit, err_console, output_format_option, progress_bar
from edgecnn.errors import UsageError
from edgecnn.extras import available
from edgecnn.options import MB, parse_batches, parse_input_shape, parse_memory_size
from edgecnn.precisions import parse_precisions
from edgecnn.profile import ProfileOptions, ProfileReport, check_targets
from edgecnn.profiling import profile_targets, resolve_targets
from edgecnn.render import render_rows, to_json

__all__ = ["profile_command", "report_rows", "long_rows"]


def _short(device_id: str) -> str:
    return device_id.removeprefix("jetson-")


def report_rows(report: ProfileReport, measured: bool) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The wide table: one row per model, precision and batch; one column per device when there are several."""
    single = len(report.devices) == 1
    rows = []
    for row in report.rows:
        entry: dict[str, Any] = {
            "model": row.model,
            "precision": row.precision,
            "batch": row.batch,
            "params_m": row.params / 1e6,
            "gmacs": row.macs / 1e9,
            "weight_mb": row.weight_bytes / MB,
            "peak_act_mb": row.peak_activation_bytes / MB,
        }
        if single:
            fit = row.devices[0]
            entry.update(
                {
                    "model_mb": fit.model_bytes / MB,
                    "total_mb": fit.total_bytes / MB,
                    "fits": "yes" if fit.fits else "no",
                    "headroom_mb": fit.headroom_bytes / MB,
                    "est_ms": fit.estimated_ms,
                }
            )
        else:
            entry["model_mb"] = (row.weight_bytes + row.peak_activation_bytes) / MB
            entry["ref_top1"] = row.ref_top1
            for fit in row.devices:
                entry[fit.device] = f"{fit.estimated_ms:,.2f} {'✓' if fit.fits else '✗'}"
        if measured:
            entry["host_p50_ms"] = row.measured.p50_ms if row.measured else None
            entry["host_per_s"] = row.measured.throughput_per_s if row.measured else None
        entry.setdefault("ref_top1", row.ref_top1)
        if row.uncounted:
            entry["uncounted"] = ",".join(f"{op}x{n}" for op, n in row.uncounted.items())
        rows.append(entry)
    headers = {
        "params_m": "params M",
        "gmacs": "GMACs",
        "weight_mb": "weights MB",
        "peak_act_mb": "peak act. MB",
        "total_mb": "total MB",
        "headroom_mb": "headroom MB",
        "est_ms": "est. ms",
        "model_mb": "model MB",
        "host_p50_ms": "host p50 ms",
        "host_per_s": "host img/s",
        "ref_top1": "top-1 (ref)",
        "precision": "prec.",
    }
    headers.update({device: _short(device) for device in report.devices})
    return rows, headers


# Left out first when a terminal is too narrow for every column (all of them are in --csv and --json).
_OPTIONAL = ("params_m", "weight_mb", "peak_act_mb", "total_mb", "host_per_s", "headroom_mb", "gmacs")


def long_rows(report: ProfileReport) -> list[dict[str, Any]]:
    """One row per model, precision, batch and device: the CSV form, every number unformatted."""
    rows = []
    for row in report.rows:
        for fit in row.devices:
            rows.append(
                {
                    "model": row.model,
                    "origin": row.origin,
                    "precision": row.precision,
                    "basis": row.basis,
                    "batch": row.batch,
                    "params": row.params,
                    "macs": row.macs,
                    "flops": row.flops,
                    "weight_bytes": row.weight_bytes,
                    "peak_activation_bytes": row.peak_activation_bytes,
                    "naive_activation_bytes": row.naive_activation_bytes,
                    "device": fit.device,
                    "budget_bytes": fit.budget_bytes,
                    "model_bytes": fit.model_bytes,
                    "total_bytes": fit.total_bytes,
                    "fits": fit.fits,
                    "headroom_bytes": fit.headroom_bytes,
                    "estimated_ms": fit.estimated_ms,
                    "measured_p50_ms": row.measured.p50_ms if row.measured else None,
                    "measured_p90_ms": row.measured.p90_ms if row.measured else None,
                    "measured_p99_ms": row.measured.p99_ms if row.measured else None,
                    "measured_throughput_per_s": row.measured.throughput_per_s if row.measured else None,
                    "ref_top1": row.ref_top1,
                    "uncounted": ";".join(f"{k}:{v}" for k, v in row.uncounted.items()),
                }
            )
    return rows


def _training_heads_notes(report: ProfileReport) -> list[str]:
    """Which parameter count is which, for zoo models with training-only heads: it counts the PyTorch
    module, so it is left out where PyTorch is not installed (the core install profiling export directories)."""
    models = [row.model for row in report.rows if row.origin == "zoo"]
    if not models or not available("torch"):
        return []
    from edgecnn.summary import training_heads_note

    return list(dict.fromkeys(note for note in (training_heads_note(m, "profile") for m in models) if note))


def _footer(report: ProfileReport, measured: bool) -> list[str]:
    lines = [
        f"MACs: {report.convention}. MB = 2^20 bytes. params and weights are the ONNX graph's (BatchNorm folded).",
        *_training_heads_notes(report),
        f"est. ms = {report.estimated_label}, per batch; assumptions in --json.",
        f"Memory budget: {report.budget}; a model fits when model MB = weights + peak activations (liveness plan) "
        "is within it. total MB adds the device's runtime overhead.",
    ]
    if any(row.basis.startswith("derived") for row in report.rows):
        lines.append(
            "Zoo fp16/int8 rows are costed from the FP32 graph with that precision's byte sizes (see docs/profile.md)."
        )
    if len(report.devices) > 1:
        lines.append("Device columns: estimated ms per batch on that device; ✓ fits the memory budget, ✗ does not.")
    if report.jetpack:
        lines.append("Jetsons assume " + "; ".join(f"{_short(d)}: {label}" for d, label in report.jetpack.items()))
    lines += [f"note: {note}" for note in report.assumptions.get("notes", [])]
    if measured:
        lines.append(f"host p50 ms = {report.measured_label}.")
        if any(row.precision == "fp16" and row.measured for row in report.rows):
            lines.append(
                "  Host FP16 is no speed-up on a CPU: ONNX Runtime's CPU execution provider has float16 kernels for "
                "few ops, so it converts to FP32 and back around the rest (operator list: "
                "github.com/microsoft/onnxruntime/blob/main/docs/OperatorKernels.md); FP16 pays off on the GPU."
            )
        notes = sorted({row.measure_note for row in report.rows if row.measure_note})
        lines += [f"  {note}" for note in notes[:5]]
    uncounted = sorted({op for row in report.rows for op in row.uncounted})
    if uncounted:
        lines.append(f"uncounted (no cost rule; MACs and latency exclude them): {', '.join(uncounted)}")
    for recommendation in report.recommendations:
        picks = (
            ", ".join(
                f"{p['model']} {p['precision']} ({p['ref_top1']:.1f}%, {p['estimated_ms']:,.2f} ms, "
                f"{p['model_mb']:,.1f} MB)"
                for p in recommendation.picks
            )
            or "none"
        )
        lines.append(
            f"Best on {recommendation.device} at batch {recommendation.batch} with {recommendation.constraint}: {picks}"
        )
    lines += _trtexec_lines(report)
    lines.append(f"{len(report.rows)} rows in {report.seconds:.1f} s.")
    return lines


def _trtexec_lines(report: ProfileReport) -> list[str]:
    imported = report.trtexec
    if imported is None:
        return []
    where = " on ".join(
        part for part in (f"TensorRT {imported.tensorrt}" if imported.tensorrt else None, imported.gpu) if part
    )
    summary = imported.times.latency_ms if imported.times else (imported.log.latency_ms if imported.log else {})
    lines = [
        f"trtexec import from {imported.directory} "
        f"({', '.join(sorted(imported.files))}{'; ' + where if where else ''}): measured on the device."
    ]
    if summary.get("median") is not None:
        lines.append(
            f"  end-to-end latency median {summary['median']:,.3f} ms"
            + (f", p99 {summary['percentile(99%)']:,.3f} ms" if "percentile(99%)" in summary else "")
        )
    if imported.layers and imported.iterations:
        mapped = len(imported.node_times) + len(imported.fused_into)
        lines.append(
            f"  {len(imported.layers)} TensorRT layers, {imported.total_layer_ms:,.3f} ms per run over "
            f"{imported.iterations:,} runs; {mapped} ONNX nodes mapped, "
            f"{sum(imported.unmapped_ms.values()):,.3f} ms in layers with no ONNX node (reformats, copies)."
            + (" Per-node times: --layers." if not any(row.layers for row in report.rows) else "")
        )
    return lines


def _trtexec_table(report: ProfileReport, fmt: str) -> None:
    if report.trtexec is None or not report.trtexec.layers:
        return
    rows = [
        {
            "layer": layer.layer,
            "type": layer.layer_type,
            "precision": layer.precision,
            "average_ms": layer.average_ms,
            "percentage": layer.percentage,
            "onnx_node": layer.primary,
            "fused": len(layer.onnx_nodes),
        }
        for layer in report.trtexec.layers
    ]
    headers = {"average_ms": "avg ms", "percentage": "time %", "onnx_node": "ONNX node", "fused": "ONNX nodes"}
    emit(render_rows(rows, fmt, headers=headers, title="TensorRT layers measured by trtexec", console=console))


def _layer_tables(report: ProfileReport, fmt: str) -> None:
    columns = [
        "name",
        "op_type",
        "kind",
        "output_shape",
        "params",
        "macs",
        "mac_share",
        "weight_bytes",
        "input_bytes",
        "output_bytes",
        "intensity",
        "estimated_ms",
        "measured_ms",
        "time_share",
    ]
    if report.trtexec is not None:
        columns += ["trtexec_ms", "fused_into"]
    headers = {
        "trtexec_ms": "device ms",
        "fused_into": "fused into",
        "mac_share": "MAC %",
        "time_share": "time %",
        "estimated_ms": "est. ms",
        "measured_ms": "host ms",
        "output_shape": "output",
        "intensity": "FLOP/B",
        "weight_bytes": "weight B",
        "input_bytes": "in B",
        "output_bytes": "out B",
    }
    for row in report.rows:
        if not row.layers:
            continue
        title = f"{row.model} {row.precision} batch {row.batch}: per layer (est. ms on {report.devices[0]})"
        emit(render_rows(row.layers, fmt, columns=columns, headers=headers, title=title, console=console))


@click.command("profile")
@click.argument("models", nargs=-1)
@click.option("--all", "all_models", is_flag=True, help="Profile every model in the zoo.")
@click.option(
    "--tag", "tags", multiple=True, help="Zoo models with any of these tags: efficient, heavy (comma-separated)."
)
@click.option(
    "-d",
    "--device",
    "device",
    default="host",
    show_default=True,
    help="A catalog id, a kind ('jetson', 'raspberry-pi') for all of it, or 'host'; comma-separated.",
)
@click.option(
    "--precision", help="fp32,fp16,int8 (default: all three for zoo models, a file's own precision for files)."
)
@click.option(
    "--batch", "batch", default="1", show_default=True, help="Batch sizes, comma-separated (for example 1,8)."
)
@click.option(
    "--memory-budget",
    help="Memory a model may use, e.g. 512MB, 10MB, 1.5GB (default: the device's RAM less its overhead).",
)
@click.option("--max-latency", type=float, help="Latency limit in ms per batch (estimated) for the recommendation.")
@click.option("--input-size", help="Zoo models at this input size: H or HxW (default: each model's own).")
@click.option("--input-shape", help="Shape for dynamic dims of an ONNX input: 1x3x224x224 or name=Nx3x224x224.")
@click.option(
    "--jetpack",
    metavar="VERSION",
    help="JetPack release the Jetsons run (6.2, 7.x...; default: each one's newest); Jetsons without it are left out.",
)
@click.option("--measure", is_flag=True, help="Also measure latency on this host with ONNX Runtime (p50/p90/p99).")
@click.option("--layers", is_flag=True, help="Per-layer tables (estimated ms; host ms and time share with --measure).")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write accuracy-vs-MACs and latency-vs-memory charts to FILE.png or FILE.svg.",
)
@click.option(
    "--import-trtexec",
    "trtexec_dir",
    type=click.Path(path_type=Path),
    help="A directory with one trtexec run's --exportProfile/--exportLayerInfo/--exportTimes JSON or log: "
    "merge the device's measured layer times (one model).",
)
@output_format_option
def profile_command(
    models,
    all_models,
    tags,
    device,
    precision,
    batch,
    memory_budget,
    max_latency,
    input_size,
    input_shape,
    jetpack,
    measure,
    layers,
    plot_path,
    trtexec_dir,
    fmt,
):
    """Per-model cost, memory, fit and latency on edge devices, and the best network within a budget.

    MODELS are zoo names, aliases or globs ('mobilenet*'), ONNX files, or 'edgecnn export' directories;
    with none (and no --tag) the whole zoo is profiled.

    \b
    edgecnn profile --device jetson
    edgecnn profile --tag efficient,heavy --device jetson-orin-nano-8gb
    edgecnn profile --all --device jetson --precision int8 --memory-budget 10MB
    edgecnn profile mobilenet resnet50 --measure --batch 1,8
    edgecnn profile mobilenet --input-size 160 --device jetson-orin-nano-8gb
    edgecnn profile resnet18 --device jetson-orin-nano-8gb --precision fp16 --layers --import-trtexec runs/resnet18
    """
    if max_latency is not None and max_latency <= 0:
        raise UsageError(f"--max-latency must be more than 0 ms, got {max_latency:g}")
    if plot_path is not None and plot_path.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot writes .png or .svg files, not {plot_path.name!r}")
    options = ProfileOptions(
        devices=device,
        precisions=parse_precisions(precision) if precision else None,
        batches=parse_batches(batch),
        memory_budget=parse_memory_size(memory_budget) if memory_budget else None,
        max_latency_ms=max_latency,
        measure=measure,
        layers=layers,
        input_shapes=parse_input_shape(input_shape),
        trtexec_dir=trtexec_dir,
        jetpack=jetpack,
    )
    targets = resolve_targets(models, all_models, tags, input_size)
    check_targets(targets, options)
    if len(targets) > 1:
        with progress_bar() as progress:
            task = progress.add_task("profiling", total=len(targets))
            report = profile_targets(
                targets,
                options,
                on_start=lambda name: progress.update(task, description=f"profiling {name}"),
                on_done=lambda name: progress.update(task, advance=1),
            )
    else:
        report = profile_targets(targets, options)
    if plot_path is not None:
        from edgecnn.profile.plots import plot_profile

        plot_profile(report, plot_path)
        err_console.print(f"plot written to {plot_path}")
    if fmt == "json":
        emit(to_json(report))
        return
    if fmt == "csv":
        emit(render_rows(long_rows(report), "csv"))
        return
    rows, headers = report_rows(report, measure)
    where = ", ".join(report.devices) if len(report.devices) <= 3 else f"{len(report.devices)} devices"
    title = f"profile on {where}"
    emit(
        render_rows(
            rows,
            fmt,
            headers=headers,
            title=title,
            footer=_footer(report, measure),
            console=console,
            keys=("model", "precision", "batch"),
            optional=_OPTIONAL,
        )
    )
    if layers:
        _layer_tables(report, fmt)
        _trtexec_table(report, fmt)
