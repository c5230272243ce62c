"""``edgecnn export``: zoo models, Python builders or ONNX files to verified ONNX, optionally with INT8."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgecnn.calibration import QuantizeStep
from edgecnn.cli.common import (
    PREPROCESSING_PARAMETERS,
    console,
    emit,
    err_console,
    output_format_option,
    parse_floats,
    preprocessing_options,
    progress_bar,
)
from edgecnn.cli.quantize import (
    calibration_progress,
    check_lines,
    collected_warnings,
    int8_options,
    print_warnings,
    weight_range_note,
)
from edgecnn.errors import UsageError
from edgecnn.export.cleanup import DEFAULT_OPTIMIZER, OPTIMIZERS
from edgecnn.export.pipeline import ExportOptions, export_many, export_model
from edgecnn.export.to_onnx import DEFAULT_EXPORTER, DEFAULT_OPSET, EXPORTERS
from edgecnn.fidelity import SQNR_CAP_DB
from edgecnn.options import parse_input_shape
from edgecnn.registry import list_models
from edgecnn.render import render_rows, to_json

__all__ = ["export_command"]


INT8_PARAMETERS = (
    "calib",
    "calib_samples",
    "calib_method",
    "percentile",
    "per_channel",
    "target",
    "device",
    "exclude",
    "calib_seed",
)


def _given(name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not left at its default)."""
    return click.get_current_context().get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


ONNX_PARAMETERS = ("input_shape", *PREPROCESSING_PARAMETERS)


def _verified_text(checks: list) -> str:
    if not checks:
        return "-"
    if checks[0].output is None:
        return "yes, batches " + ",".join(str(v.batch) for v in checks)
    sqnr = min(v.sqnr_db for v in checks if v.sqnr_db is not None)
    outputs = f"{len(checks)} output{'s' if len(checks) > 1 else ''}"
    return f"vs the original file, {outputs}, " + ("identical" if sqnr >= SQNR_CAP_DB else f"SQNR >= {sqnr:.0f} dB")


def _import_footer(manifest: dict) -> list[str]:
    """What the import did and what the user must know about a foreign ONNX file's artifact."""
    imported = manifest.get("import")
    if not imported:
        return []
    lines = [f"import: {note}" for note in imported["notes"]]
    if not imported["classifier"]:
        outputs = ", ".join(f"{o['name']} {'x'.join(map(str, o['shape']))}" for o in manifest["outputs"])
        lines.append(f"not a classifier (outputs: {outputs}): no num_classes, no top-1")
    if not manifest["preprocessing"].get("declared", True):
        lines.append(
            "preprocessing not declared: give --mean/--std (or --scale) and --channel-order to eval or "
            "calibrate from images"
        )
    return lines


def _is_pattern(model: str) -> bool:
    return any(ch in model for ch in "*?[")


def _closest_to_tolerance(checks):
    """The verification whose error came closest to its tolerance: an error means little without the output's scale
    (resnet152's 94 is fine against a tolerance of 13,226)."""
    return max(checks, key=lambda v: v.max_abs_error / v.tolerance if v.tolerance else float("inf"), default=None)


def _size_mb(result, path: Path) -> float:
    """An artifact's size as its manifest entry records it (an ONNX file's external data included)."""
    entry = next((a for a in result.manifest.get("artifacts", []) if a.get("file") == path.name), None)
    return (entry["size_bytes"] if entry and "size_bytes" in entry else path.stat().st_size) / 1e6


def _export_rows(result) -> list[dict]:
    rows = []
    quantized = {added.key: added.result for added in result.added if hasattr(added.result, "check")}
    for key, path in result.files.items():
        if key in quantized:
            check = quantized[key].check
            rows.append(
                {
                    "format": key,
                    "file": path.name,
                    "size_mb": _size_mb(result, path),
                    "max_abs_error": None,
                    "tolerance": None,
                    "cosine": None,
                    "top1_agreement": check["top1_agreement"],
                    "verified": (
                        f"{'yes' if check.get('met', True) else 'BUDGET MISSED'}, vs FP32 on {check['samples']} "
                        f"held-out samples (below)"
                    ),
                }
            )
            continue
        checks = (
            [v for v in result.verifications if v.precision == ("fp16" if "fp16" in key else "fp32")]
            if key.startswith("onnx")
            else []
        )
        worst = _closest_to_tolerance(checks)
        rows.append(
            {
                "format": key,
                "file": path.name,
                "size_mb": _size_mb(result, path),
                "max_abs_error": worst.max_abs_error if worst else None,
                "tolerance": worst.tolerance if worst else None,
                "cosine": min(v.cosine for v in checks) if checks else None,
                "top1_agreement": min((v.top1_agreement for v in checks if v.top1_agreement is not None), default=None),
                "verified": _verified_text(checks),
            }
        )
    return rows


@click.command("export")
@click.argument("models", nargs=-1)
@click.option("--all", "export_all", is_flag=True, help="Export every model in the zoo.")
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("exports"),
    show_default=True,
    help="Artifacts go to OUTPUT_DIR/<model>/.",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="state_dict or checkpoint (loaded with torch.load(weights_only=True)).",
)
@click.option("--num-classes", type=click.IntRange(min=1), help="Number of output classes (default: the model's).")
@click.option("--input-size", help="H or HxW (default: the model's; for an ONNX file, its single NCHW input).")
@click.option(
    "--input-shape",
    help="ONNX files: fix dynamic dims, NAME=1x3x640x640[,NAME2=...] (or DIMS for a single input).",
)
@preprocessing_options
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic (verified at batch 1 and 7).")
@click.option(
    "--opset", type=click.IntRange(min=13, max=23), default=DEFAULT_OPSET, show_default=True, help="ONNX opset."
)
@click.option("--fp16", is_flag=True, help="Also write a float16 model (float32 inputs and outputs kept).")
@click.option("--ort", is_flag=True, help="Also write the ORT-format model for minimal ONNX Runtime builds.")
@click.option(
    "--exporter",
    type=click.Choice(EXPORTERS),
    default=DEFAULT_EXPORTER,
    show_default=True,
    help="torch's ONNX exporter (see docs/exporters.md).",
)
@click.option(
    "--optimizer",
    type=click.Choice(OPTIMIZERS),
    default=DEFAULT_OPTIMIZER,
    show_default=True,
    help="Graph clean-up after export.",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Also write a Q/DQ INT8 model, calibrated on real images (built-in set unless --calib).",
)
@click.option(
    "--fp8",
    is_flag=True,
    help="Also write an FP8 (E4M3) Q/DQ model for TensorRT on FP8 GPUs (Thor, Hopper, Ada); amax calibration.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    help="Export several models in this many processes (default: one per core, at most 4).",
)
@click.option(
    "--name",
    help="Name of the export directory and its files (default: the zoo name or the file's whole stem).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an export of the same name made from other inputs (by default it is kept and this is refused).",
)
@int8_options
@output_format_option
def export_command(
    models,
    export_all,
    output_dir,
    weights,
    num_classes,
    input_size,
    input_shape,
    mean,
    std,
    scale,
    channel_order,
    resize,
    batch,
    dynamic_batch,
    opset,
    fp16,
    ort,
    exporter,
    optimizer,
    int8,
    fp8,
    jobs,
    name,
    force,
    calib,
    calib_samples,
    calib_method,
    percentile,
    per_channel,
    target,
    device,
    exclude,
    calib_seed,
    task,
    budgets,
    fallback,
    fmt,
):
    """Export MODELS to verified ONNX.

    MODELS are zoo names or aliases, glob patterns ('resnet*'), path/to/file.py:build_fn, or file.onnx.

    Every ONNX model is run in ONNX Runtime and compared with PyTorch before it is written; a model that
    does not match is not written at all.
    """
    if batch != 1 and dynamic_batch:
        raise UsageError("--batch and --dynamic-batch exclude each other: give one")
    if not int8:
        names_given = INT8_PARAMETERS if not fp8 else ("target", "device")
        given = [f"--{name.replace('_', '-')}" for name in names_given if _given(name)]
        if given:
            raise UsageError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to INT8: add --int8")
    if not models and not export_all:
        raise UsageError("name a model to export (for example 'edgecnn export mobilenet'), a pattern, or --all")
    names: list[str] = []
    for model in models:
        if _is_pattern(model):
            matched = list_models(model)
            if not matched:
                raise UsageError(f"no model matches {model!r}: run 'edgecnn list'")
            names += matched
        else:
            names.append(model)
    if export_all:
        names += list_models()
    if len(names) > 1 and name is not None:
        raise UsageError("--name applies to one model: export several models without it, or one model with it")
    if len(names) > 1 and weights is not None:
        raise UsageError("--weights applies to one model: export several models without it, or one model with it")
    onnx_given = [f"--{name.replace('_', '-')}" for name in ONNX_PARAMETERS if _given(name)]
    if onnx_given and not all(name.endswith(".onnx") for name in names):
        raise UsageError(
            f"{', '.join(onnx_given)} describe an ONNX file's input: export the .onnx file alone with them"
        )
    options = ExportOptions(
        output_dir=output_dir,
        weights=weights,
        num_classes=num_classes,
        input_size=input_size,
        batch=batch,
        dynamic_batch=dynamic_batch,
        opset=opset,
        fp16=fp16,
        ort=ort,
        exporter=exporter,
        optimizer=optimizer,
        name=name,
        force=force,
        input_shapes=parse_input_shape(input_shape),
        mean=parse_floats(mean, "--mean"),
        std=parse_floats(std, "--std"),
        scale=scale,
        channel_order=channel_order,
        resize=resize,
    )
    int8_step = (
        QuantizeStep(
            target=target,
            device=device,
            calibration=calib,
            samples=calib_samples,
            method=calib_method,
            percentile=percentile,
            per_channel=per_channel,
            exclude=tuple(exclude),
            seed=calib_seed,
            task=task,
            budgets=budgets,
            fallback=fallback,
        )
        if int8
        else None
    )
    fp8_step = (
        QuantizeStep(
            precision="fp8",
            calibration=calib,
            samples=calib_samples,
            method=calib_method if _given("calib_method") else None,
            percentile=percentile,
            per_channel=per_channel,
            exclude=tuple(exclude),
            seed=calib_seed,
            task=task,
            budgets=budgets,
            fallback=fallback,
        )
        if fp8
        else None
    )
    options.steps = tuple(step for step in (int8_step, fp8_step) if step is not None)
    if len(names) == 1:
        with collected_warnings(), calibration_progress((int8 or fp8) and fmt == "table") as progress:
            for step in options.steps:
                step.progress = progress
            result = export_model(names[0], options)
        for added in result.added:
            print_warnings(getattr(added.result, "warnings", ()))
        if fmt == "json":
            emit(to_json({"directory": str(result.directory), "seconds": result.seconds, "manifest": result.manifest}))
            return
        if result.randomly_initialized:
            err_console.print(
                f"[yellow]note:[/] {result.name} has randomly initialized weights (seed 0): "
                "pass --weights CKPT to export trained weights"
            )
        footer = [
            f"{result.name} -> {result.directory}/ in {result.seconds:.1f} s "
            "(manifest.json describes the input, preprocessing and checks)",
            *_import_footer(result.manifest),
        ]
        footer += [
            f"{note}: {added.result.calibration_description}, {added.result.method}"
            for added in result.added
            if added.key == "onnx-fp8-tensorrt"
            for note in added.notes
        ]
        if result.quantization is not None:
            footer += [
                *(note for added in result.added if added.key != "onnx-fp8-tensorrt" for note in added.notes),
                f"INT8 calibration: {result.quantization.calibration_description}, {result.quantization.method}"
                + (f" {result.quantization.percentile:g}" if result.quantization.percentile else "")
                + (" (ranges reused from the calibration cache)" if result.quantization.cache_hit else ""),
            ]
            if result.quantization.weight_range_sqnr_db:
                footer.append(weight_range_note(result.quantization))
            footer += check_lines(result.quantization.check, result.quantization.fallback)
        emit(
            render_rows(
                _export_rows(result),
                fmt,
                title=f"exported {result.name}",
                footer=footer,
                console=console,
                headers={
                    "size_mb": "MB",
                    "max_abs_error": "max |err|",
                    "tolerance": "tolerance",
                    "top1_agreement": "top-1 agree",
                },
            )
        )
        return
    with progress_bar() as progress:
        bar = progress.add_task("exporting", total=len(names))
        outcomes = export_many(
            names,
            options,
            jobs=jobs,
            on_done=lambda name, result, reason: progress.update(bar, advance=1, description=f"exported {name}"),
        )
    rows = [
        {
            "model": name,
            "status": "ok" if result else "failed",
            "reason": reason,
            "size_mb": sum(_size_mb(result, p) for p in result.files.values()) if result else None,
            "seconds": result.seconds if result else None,
            **_error_and_tolerance(result),
        }
        for name, result, reason in outcomes
    ]
    failed = sum(row["status"] != "ok" for row in rows)
    footer = [
        f"{len(rows) - failed} of {len(rows)} exported to {output_dir}/" + (f"; {failed} failed" if failed else "")
    ]
    emit(
        render_rows(
            rows,
            fmt,
            title="export summary",
            footer=footer,
            console=console,
            headers={"size_mb": "MB", "max_abs_error": "max |err|", "tolerance": "tolerance"},
        )
    )
    if failed:
        sys.exit(1)


def _error_and_tolerance(result) -> dict:
    """The FP32 check closest to its tolerance (1e-4 x the output's scale), both numbers side by side."""
    worst = _closest_to_tolerance([v for v in result.verifications if v.precision == "fp32"]) if result else None
    return {
        "max_abs_error": worst.max_abs_error if worst else None,
        "tolerance": worst.tolerance if worst else None,
    }
