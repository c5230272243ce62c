"""The ``edgecnn`` command line: thin click wrappers over the Python API.

Errors the user can act on (:class:`edgecnn.errors.EdgecnnError`) print as one line and exit non-zero;
``edgecnn --debug ...`` shows the traceback instead.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edgecnn import __version__
from edgecnn.cli_common import console, emit, err_console, output_format_option
from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.export.cleanup import DEFAULT_OPTIMIZER, OPTIMIZERS
from edgecnn.export.pipeline import ExportOptions, export_many, export_model
from edgecnn.export.to_onnx import DEFAULT_EXPORTER, DEFAULT_OPSET, EXPORTERS
from edgecnn.registry import get_spec, list_models
from edgecnn.render import render_rows, to_json
from edgecnn.summary import count_parameters, summarize
from edgecnn.commands.devices import devices_command
from edgecnn.commands.compile import check_command, compile_command
from edgecnn.commands.quantize import (
    calibration_progress, collected_warnings, int8_options, print_warnings, quantize_command, weight_range_note,
)
from edgecnn.commands.profile import profile_command
from edgecnn.commands.eval import eval_command
from edgecnn.commands.benchmark import benchmark_command

class EdgecnnGroup(click.Group):
    """Runs a command and turns EdgecnnError (and a few library errors) into a one-line message."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgecnnError as error:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)


@click.group(cls=EdgecnnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecnn")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """edgecnn: classic CNNs from PyTorch to edge devices.

    \b
    edgecnn list --tag efficient      the zoo, with reference figures
    edgecnn info mobilenet            per-layer structure and weight memory
    """
    ctx.ensure_object(dict)["debug"] = debug


@main.command("list")
@click.argument("pattern", required=False)
@click.option("--tag", "tags", multiple=True, type=click.Choice(["efficient", "heavy"]), help="Only models with this tag.")
@click.option("--macs", "with_macs", is_flag=True, help="Also count MACs with the ONNX cost model (first use builds and caches each graph).")
@output_format_option
def list_command(pattern: str | None, tags: tuple[str, ...], with_macs: bool, fmt: str) -> None:
    """List the zoo (optionally names matching a glob PATTERN such as 'resnet*').

    GMACs (ref) and top-1 are reference figures (zoo_reference.csv, ImageNet, 1000 classes), not measured
    here; --macs adds GMACs counted by edgecnn's cost model on each model's ONNX graph.
    """
    names = list_models(pattern or "*", tags=tags)
    if not names:
        raise EdgecnnError(f"no model matches {pattern!r}{' with tag ' + ','.join(tags) if tags else ''}: run 'edgecnn list'")
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
            from edgecnn.summary import module_macs

            rows[-1]["gmacs"] = module_macs(name, spec.input_size, spec.num_classes)[0] / 1e9
    headers = {"ref_gmacs": "GMACs (ref)", "ref_top1": "top-1 % (ref)", "input_size": "input", "gmacs": "GMACs"}
    columns = ["name", "family", "params", "input_size", "tags", *(["gmacs"] if with_macs else []), "ref_gmacs", "ref_top1"]
    footer = [f"{len(rows)} models. (ref) = published reference figures, ImageNet 1000 classes; MAC = one multiply-accumulate."]
    emit(render_rows(rows, fmt, columns=None if fmt == "json" else columns, headers=headers, footer=footer, console=console))


@main.command("info")
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
        *([f"MACs: {summary.macs / 1e9:,.3f} G from the ONNX cost model ({summary.convention})"] if summary.macs is not None else []),
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


INT8_PARAMETERS = ("calib", "calib_samples", "calib_method", "percentile", "per_channel", "target", "device", "exclude", "calib_seed")


def _given(name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not left at its default)."""
    return click.get_current_context().get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _is_pattern(model: str) -> bool:
    return any(ch in model for ch in "*?[")


def _export_rows(result) -> list[dict]:
    rows = []
    for key, path in result.files.items():
        if result.quantization is not None and key == result.quantization.format_key:
            check = result.quantization.check
            rows.append({
                "format": key, "file": path.name, "size_mb": path.stat().st_size / 1e6, "max_abs_error": None, "cosine": None,
                "top1_agreement": check["top1_agreement"],
                "verified": f"vs FP32 on {check['samples']} calibration samples, SQNR {check['output_sqnr_db']:.1f} dB",
            })
            continue
        checks = [v for v in result.verifications if v.precision == ("fp16" if "fp16" in key else "fp32")] if key.startswith("onnx") else []
        worst = max(checks, key=lambda v: v.max_abs_error, default=None)
        rows.append(
            {
                "format": key,
                "file": path.name,
                "size_mb": path.stat().st_size / 1e6,
                "max_abs_error": worst.max_abs_error if worst else None,
                "cosine": min(v.cosine for v in checks) if checks else None,
                "top1_agreement": min(v.top1_agreement for v in checks) if checks else None,
                "verified": ("yes, batches " + ",".join(str(v.batch) for v in checks)) if checks else "-",
            }
        )
    return rows


@main.command("export")
@click.argument("models", nargs=-1)
@click.option("--all", "export_all", is_flag=True, help="Export every model in the zoo.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("exports"), show_default=True, help="Artifacts go to OUTPUT_DIR/<model>/.")
@click.option("--weights", type=click.Path(path_type=Path), help="state_dict or checkpoint (loaded with torch.load(weights_only=True)).")
@click.option("--num-classes", type=click.IntRange(min=1), help="Number of output classes (default: the model's).")
@click.option("--input-size", help="H or HxW (default: the model's).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Static batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic (verified at batch 1 and 7).")
@click.option("--opset", type=click.IntRange(min=13, max=23), default=DEFAULT_OPSET, show_default=True, help="ONNX opset.")
@click.option("--fp16", is_flag=True, help="Also write a float16 model (float32 inputs and outputs kept).")
@click.option("--ort", is_flag=True, help="Also write the ORT-format model for minimal ONNX Runtime builds.")
@click.option("--exporter", type=click.Choice(EXPORTERS), default=DEFAULT_EXPORTER, show_default=True, help="torch's ONNX exporter (see docs/exporters.md).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=DEFAULT_OPTIMIZER, show_default=True, help="Graph clean-up after export.")
@click.option("--int8", is_flag=True, help="Also write a Q/DQ INT8 model, calibrated on real images (built-in set unless --calib).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Export several models in this many processes (default: one per core, at most 4).")
@int8_options
@output_format_option
def export_command(models, export_all, output_dir, weights, num_classes, input_size, batch, dynamic_batch, opset, fp16, ort, exporter, optimizer,
                   int8, jobs, calib, calib_samples, calib_method, percentile, per_channel, target, device, exclude, calib_seed, fmt):
    """Export MODELS to verified ONNX: zoo names or aliases, glob patterns ('resnet*'), path/to/file.py:build_fn, or file.onnx.

    Every ONNX model is run in ONNX Runtime and compared with PyTorch before it is written; a model that
    does not match is not written at all.
    """
    if batch != 1 and dynamic_batch:
        raise UsageError("--batch and --dynamic-batch exclude each other: give one")
    if not int8:
        given = [f"--{name.replace('_', '-')}" for name in INT8_PARAMETERS if _given(name)]
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
    if len(names) > 1 and weights is not None:
        raise UsageError("--weights applies to one model: export several models without it, or one model with it")
    options = ExportOptions(
        output_dir=output_dir, weights=weights, num_classes=num_classes, input_size=input_size, batch=batch,
        dynamic_batch=dynamic_batch, opset=opset, fp16=fp16, ort=ort, exporter=exporter, optimizer=optimizer,
        int8=int8, int8_target=target, device=device, calibration=calib, calib_samples=calib_samples, calib_method=calib_method,
        percentile=percentile, per_channel=per_channel, exclude=tuple(exclude), calib_seed=calib_seed,
    )
    if len(names) == 1:
        with collected_warnings(), calibration_progress(int8 and fmt == "table") as progress:
            options.progress = progress
            result = export_model(names[0], options)
        if result.quantization is not None:
            print_warnings(result.quantization.warnings)
        if fmt == "json":
            emit(to_json({"directory": str(result.directory), "seconds": result.seconds, "manifest": result.manifest}))
            return
        if result.randomly_initialized:
            err_console.print(f"[yellow]note:[/] {result.name} has randomly initialized weights (seed 0): pass --weights CKPT to export trained weights")
        footer = [f"{result.name} -> {result.directory}/ in {result.seconds:.1f} s (manifest.json describes the input, preprocessing and checks)"]
        if result.quantization is not None:
            footer += [
                f"INT8 target {result.quantization.target} ({result.int8_target_reason})",
                f"INT8 calibration: {result.quantization.calibration_description}, {result.quantization.method}"
                + (f" {result.quantization.percentile:g}" if result.quantization.percentile else ""),
            ]
            if result.quantization.weight_range_sqnr_db:
                footer.append(weight_range_note(result.quantization))
        emit(render_rows(_export_rows(result), fmt, title=f"exported {result.name}", footer=footer, console=console,
                         headers={"size_mb": "MB", "max_abs_error": "max |err|", "top1_agreement": "top-1 agree"}))
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task("exporting", total=len(names))
        outcomes = export_many(names, options, jobs=jobs,
                               on_done=lambda name, result, reason: progress.update(task, advance=1, description=f"exported {name}"))
    rows = [
        {
            "model": name,
            "status": "ok" if result else "failed",
            "reason": reason,
            "size_mb": sum(p.stat().st_size for p in result.files.values()) / 1e6 if result else None,
            "seconds": result.seconds if result else None,
            "max_abs_error": result.max_error if result else None,
        }
        for name, result, reason in outcomes
    ]
    failed = sum(row["status"] != "ok" for row in rows)
    footer = [f"{len(rows) - failed} of {len(rows)} exported to {output_dir}/" + (f"; {failed} failed" if failed else "")]
    emit(render_rows(rows, fmt, title="export summary", footer=footer, console=console, headers={"size_mb": "MB", "max_abs_error": "max |err|"}))
    if failed:
        sys.exit(1)


# Commands that live in their own modules: one line each.
main.add_command(devices_command)
main.add_command(compile_command)
main.add_command(check_command)
main.add_command(quantize_command)
main.add_command(profile_command)
main.add_command(eval_command)
main.add_command(benchmark_command)


if __name__ == "__main__":
    main()
