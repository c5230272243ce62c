"""``edgecnn quantize``: an FP32 ONNX model or export directory -> Q/DQ INT8 ONNX.

With sensitivity analysis (``--analyze``) and automatic float fallback (``--auto-fallback``).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import click

from edgecnn.calibration import CalibrationWarning, QuantizationWarning
from edgecnn.calibration.data import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    Preprocessing,
    feeds_images,
    load_calibration,
)
from edgecnn.calibration.fallback import auto_fallback
from edgecnn.calibration.memory import DEFAULT_MEMORY_FRACTION
from edgecnn.calibration.quantize import (
    DEFAULT_METHOD,
    DEFAULT_MIN_SQNR_DB,
    TARGETS,
    UNDECLARED_HINT,
    QuantizationResult,
    auto_cache_path,
    choose_target,
    image_input,
    locate,
    quantize_export,
    quantize_onnx,
    record_in_manifest,
    resolve_preprocessing,
)
from edgecnn.calibration.ranges import DEFAULT_PERCENTILE, METHODS
from edgecnn.calibration.sensitivity import analyze
from edgecnn.cli.common import (
    PREPROCESSING_PARAMETERS,
    console,
    emit,
    err_console,
    option_given,
    output_format_option,
    parse_floats,
    preprocessing_options,
    progress_bar,
)
from edgecnn.errors import UsageError
from edgecnn.evaluate import top1_evaluator
from edgecnn.fidelity import DEFAULT_BUDGETS, parse_budgets, parse_task
from edgecnn.onnx_facts import load_onnx
from edgecnn.options import parse_input_shape, parse_memory_size, parse_size
from edgecnn.render import render_rows, to_json

__all__ = [
    "quantize_command",
    "int8_options",
    "calibration_progress",
    "collected_warnings",
    "print_warnings",
    "quantized_rows",
    "weight_range_note",
    "check_lines",
    "fidelity_figure",
]

CACHE_HELP = (
    "Calibration cache JSON: reused when model, calibration set and method match, refused when not "
    "(default: one named by its key, beside the INT8 file)."
)


def int8_options(function):
    """The calibration and quantization options ``edgecnn quantize`` and ``edgecnn export --int8`` share."""
    options = [
        click.option(
            "--calib",
            "calib",
            default="builtin",
            show_default=True,
            metavar="DIR|FILE.npz|builtin|synthetic",
            help=(
                "Calibration data: a folder of images (ImageFolder or flat), a .npy/.npz array, "
                "the built-in real photos, or random data."
            ),
        ),
        click.option(
            "--calib-samples",
            type=click.IntRange(min=1),
            default=DEFAULT_SAMPLES,
            show_default=True,
            help="Number of calibration samples (a seeded sample).",
        ),
        click.option(
            "--calib-method",
            type=click.Choice(METHODS),
            default=DEFAULT_METHOD,
            show_default=True,
            help="How activation ranges are chosen.",
        ),
        click.option(
            "--percentile",
            type=click.FloatRange(min=0, max=100, min_open=True),
            default=DEFAULT_PERCENTILE,
            show_default=True,
            help="Percentile for --calib-method percentile.",
        ),
        click.option(
            "--per-channel/--per-tensor",
            default=True,
            show_default=True,
            help="Weight scales per output channel (per-tensor ruins depthwise networks).",
        ),
        click.option(
            "--target",
            type=click.Choice(TARGETS),
            help=(
                "INT8 form: tensorrt (symmetric S8, zero point 0) or cpu (U8 activations, S8 weights). "
                "Default: from --device, else cpu."
            ),
        ),
        click.option(
            "--device", help="Catalog device id (edgecnn devices): picks the INT8 target when --target is not given."
        ),
        click.option(
            "--exclude",
            multiple=True,
            metavar="NODE_PATTERN",
            help="Keep matching nodes in float (node name or glob, repeatable).",
        ),
        click.option(
            "--calib-seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed of the calibration sample."
        ),
        click.option(
            "--task",
            default="auto",
            show_default=True,
            callback=lambda ctx, param, value: parse_task(value),
            metavar="auto|classify|detect|ctc|segment|raw|OUTPUT=TASK,...",
            help=(
                "What the outputs are for, checked against FP32 on held-out samples without labels: top-1 "
                "agreement, YOLO detections kept, CTC strings, segmentation pixels, else worst per-channel SQNR."
            ),
        ),
        click.option(
            "--budget",
            "budgets",
            callback=lambda ctx, param, value: parse_budgets(value),
            metavar="TASK=VALUE,...",
            help=(
                "Task budgets (defaults: "
                + ", ".join(f"{task}={value:g}" for task, value in DEFAULT_BUDGETS.items())
                + "; raw in dB). A miss is a loud warning, --strict an error."
            ),
        ),
        click.option(
            "--fallback/--no-fallback",
            default=True,
            show_default=True,
            help="When a budget is missed, keep the fewest worst-ranked layers in float that meet it (<= 12 rounds).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@contextmanager
def calibration_progress(enabled: bool = True) -> Iterator:
    """Yields the ``progress(done, total)`` callback quantize_onnx takes: a bar on stderr from the first sample on.

    The bar starts only when calibration does, so a cache hit or an early error prints nothing.
    """
    if not enabled:
        yield None
        return
    bar = progress_bar()
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("calibrating", total=total)
        bar.update(task, completed=done, total=total)

    try:
        yield progress
    finally:
        if task is not None:
            bar.stop()


@contextmanager
def collected_warnings() -> Iterator[None]:
    """Keep calibration and quantization warnings off stderr's default format.

    The command prints them from the result.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CalibrationWarning)
        warnings.filterwarnings("ignore", category=QuantizationWarning)
        yield


def print_warnings(messages) -> None:
    for message in dict.fromkeys(messages):
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False)


def quantized_rows(result: QuantizationResult) -> list[dict]:
    return [
        {
            "format": result.format_key,
            "file": result.path.name,
            "size_mb": result.quantized_bytes / 1e6,
            "vs_fp32": result.size_ratio,
            "method": f"{result.method} {result.percentile:g}" if result.percentile else result.method,
            "samples": result.calibration["samples"],
            "quantized_weights": result.graph.get("quantized_weights"),
            "float_nodes": len(result.graph["float_nodes"]) if result.graph else len(result.excluded_nodes),
            "top1_agreement": result.check["top1_agreement"],
            "sqnr_db": result.check["output_sqnr_db"],
            "ranges": "cache" if result.cache_hit else "calibrated",
        }
    ]


METRIC_NAMES = {
    "top1_agreement": "top-1 agreement",
    "kept": "FP32 detections kept",
    "string_agreement": "strings agreeing",
    "pixel_agreement": "pixels agreeing",
    "worst_channel_sqnr_db": "worst per-channel SQNR",
}


def fidelity_figure(output: dict, judged: bool = True) -> str:
    """One output's judged figure against its budget, then its SQNRs: 'top-1 agreement 93.8% (budget 99.0%,
    MISSED); SQNR 31.2 dB, worst channel 18.4 dB'."""
    metric, value, budget = output.get("metric"), output.get("value"), output.get("budget")
    if metric == "worst_channel_sqnr_db":
        shown = "n/a" if value is None else f"{value:.1f} dB"
        limit = f"{budget:g} dB"
    else:
        shown = "n/a" if value is None else f"{value:.1%}"
        limit = f"{budget:.1%}"
    worst = output.get("worst_channel_sqnr_db")
    return (
        f"{METRIC_NAMES.get(metric, metric)} {shown} "
        + (
            f"(budget {limit}, {'met' if output.get('met') else 'MISSED'}); "
            if judged
            else "(random weights: not judged); "
        )
        + f"SQNR {output['sqnr_db']:.1f} dB"
        + (f", worst channel {worst:.1f} dB" if worst is not None else "")
    )


def check_lines(check: dict, fallback: dict | None) -> list[str]:
    """The footer lines of a quantized model's check against FP32: each output's task figure and SQNR, and what
    the fallback to float did (the default result beside the chosen one)."""
    lines = [
        f"check on {check['samples']} {check['data']} against FP32 (label-free; accuracy on labelled data: "
        "edgecnn eval):"
    ]
    judged = check.get("task_judged", True)
    if check.get("note"):
        lines.append(f"  {check['note']}")
    for name, output in (check.get("fidelity") or {}).get("outputs", {}).items():
        lines.append(f"  {name} ({output['task']}): {fidelity_figure(output, judged)}")
    if fallback:
        before = "; ".join(fallback["default"]["misses"]) or "missed"
        lines.append(f"default quantization missed the budget: {before}")
        if fallback["met"]:
            kept = ", ".join(
                f"{row['node']} ({row['op_type']}, {row['float_weight_bytes'] / 1e3:.1f} kB float weights)"
                for row in fallback["kept_float"]
            )
            lines.append(
                f"fallback: {len(fallback['kept_float'])} of {fallback['ranked']} ranked layers kept in float "
                f"in {len(fallback['rounds'])} rounds: {kept}"
            )
        else:
            lines.append(
                f"fallback: keeping up to {fallback.get('searched', 0)} of the {fallback['ranked']} ranked layers in "
                f"float did not meet the budget in {len(fallback['rounds'])} rounds; the default quantization was kept"
                + (f" ({fallback['note']})" if fallback.get("note") else "")
            )
    return lines


def weight_range_note(result: QuantizationResult) -> str:
    """Which weight range the cpu form kept, and why that needs nothing from the user."""
    measured = ", ".join(f"{bits} {sqnr:.1f} dB" for bits, sqnr in result.weight_range_sqnr_db.items())
    note = (
        f"weights in {'an' if result.weight_bits == 8 else 'a'} {result.weight_bits}-bit range: "
        "both ranges were tried and the one closest to FP32 kept "
        f"(output SQNR in ONNX Runtime's CPU kernels here, higher is closer: {measured}). "
    )
    if result.weight_bits == 7:
        return note + (
            "On CPUs without VNNI full 8-bit weights overflow ORT's 16-bit sums; the 7-bit model is the accurate "
            "one here and nothing needs doing (on a VNNI CPU, quantize again there). Accuracy: edgecnn eval."
        )
    return note + "Nothing needs doing; accuracy on labelled data: edgecnn eval."


QUANTIZED_HEADERS = {
    "size_mb": "MB",
    "vs_fp32": "size vs FP32",
    "quantized_weights": "quantized weights",
    "float_nodes": "float nodes",
    "top1_agreement": "top-1 agree",
    "sqnr_db": "SQNR dB",
}


def _result_payload(result: QuantizationResult, target_reason: str) -> dict:
    return {
        "path": str(result.path),
        "target": result.target,
        "target_reason": target_reason,
        "calibration_seconds": result.calibration_seconds,
        "quantize_seconds": result.quantize_seconds,
        "cache": str(result.cache_path) if result.cache_path else None,
        "cache_hit": result.cache_hit,
        "warnings": result.warnings,
        **result.manifest_entry(),
    }


@click.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@int8_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help=(
        "Quantized file (default: <model>.int8-<target>.onnx, or <model>.fp8-tensorrt.onnx, beside the FP32 model, "
        "added to its manifest)."
    ),
)
@click.option(
    "--precision",
    type=click.Choice(["int8", "fp8"]),
    default="int8",
    show_default=True,
    help=(
        "int8, or fp8: E4M3 Q/DQ (opset 19) for TensorRT on FP8 GPUs (Thor, Hopper, Ada), per-tensor activations "
        "and per-channel weights at amax/448 (--calib-method defaults to minmax)."
    ),
)
@click.option("--input-size", help="H or HxW, for a bare .onnx with dynamic input dimensions.")
@preprocessing_options
@click.option(
    "--input-shape",
    metavar="[NAME=]DIMS[,...]",
    help="Fix dynamic input dimensions for calibration, e.g. 1x3x640x640 or rgb=1x3x64x64,depth=1x1x64x64.",
)
@click.option(
    "--opset-upgrade",
    is_flag=True,
    help="Upgrade a model older than opset 13 (per-channel Q/DQ) through the import step instead of refusing it.",
)
@click.option(
    "--calib-memory",
    metavar="SIZE",
    help=(
        f"Calibration memory budget, e.g. 2GB (default: {DEFAULT_MEMORY_FRACTION:.0%} of the memory available): "
        "a model whose calibration needs more is refused up front; the ranges do not depend on it."
    ),
)
@click.option(
    "--min-sqnr",
    type=float,
    default=DEFAULT_MIN_SQNR_DB,
    show_default=True,
    help="Output SQNR (dB, worst output, on held-out samples) below which quantize warns (--strict: fails).",
)
@click.option("--strict", is_flag=True, help="Exit 1 and write nothing when an output's SQNR is below --min-sqnr.")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), help=CACHE_HELP)
@click.option("--no-cache", is_flag=True, help="Neither read nor write a calibration cache.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace an INT8 file made from other calibration data or settings (by default this is refused).",
)
@click.option(
    "--analyze",
    is_flag=True,
    help="List per-layer quantization error (SQNR), worst first, instead of writing the INT8 model.",
)
@click.option(
    "--analyze-samples",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Calibration samples the analysis runs.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Rows of the --analyze table (--json lists all).",
)
@click.option(
    "--auto-fallback",
    is_flag=True,
    help="Keep the most sensitive layers in float until the top-1 drop meets --max-drop.",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Top-1 points INT8 may lose against FP32 (with --auto-fallback).",
)
@click.option(
    "--eval-data",
    default=None,
    metavar="DIR|digits",
    help="Labelled data for --auto-fallback: an ImageFolder tree or 'digits'.",
)
@output_format_option
def quantize_command(
    model,
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
    output,
    precision,
    input_size,
    mean,
    std,
    scale,
    channel_order,
    resize,
    input_shape,
    opset_upgrade,
    calib_memory,
    min_sqnr,
    strict,
    cache,
    no_cache,
    force,
    analyze,
    analyze_samples,
    top,
    auto_fallback,
    max_drop,
    eval_data,
    fmt,
):
    """Quantize MODEL (an FP32 .onnx file or an edgecnn export directory) to Q/DQ INT8 (or FP8) ONNX.

    \b
    edgecnn quantize exports/mobilenet_v2                       builtin calibration, cpu target
    edgecnn quantize exports/mobilenet_v2 --target tensorrt --calib ~/val --calib-samples 500
    edgecnn quantize exports/mobilenet_v2 --analyze             per-layer SQNR, worst first
    edgecnn quantize exports/resnet18 --auto-fallback --max-drop 0.5 --eval-data ~/val
    edgecnn quantize det.onnx --input-shape 1x3x640x640 --opset-upgrade --calib ~/photos --scale 1/255 --strict
    edgecnn quantize rgbd.onnx --calib inputs.npz          one array per input name
    edgecnn quantize exports/resnet18 --precision fp8           FP8 E4M3 for TensorRT on Thor
    """
    if auto_fallback and analyze:
        raise UsageError("--analyze and --auto-fallback exclude each other: give one")
    if auto_fallback and eval_data is None:
        raise UsageError(
            "--auto-fallback needs labelled data to measure the drop: give --eval-data DIR (an ImageFolder tree) "
            "or --eval-data digits"
        )
    if eval_data is not None and not auto_fallback:
        raise UsageError("--eval-data is used by --auto-fallback only")
    if cache is not None and no_cache:
        raise UsageError("--cache and --no-cache exclude each other: give one")
    if precision == "fp8":
        given = [
            flag
            for flag, value in (("--target", target), ("--analyze", analyze), ("--auto-fallback", auto_fallback))
            if value
        ]
        if given:
            raise UsageError(f"{', '.join(given)} applies to INT8 only: drop it or use --precision int8")
        source = click.get_current_context().get_parameter_source("calib_method")
        if source != click.core.ParameterSource.COMMANDLINE:
            calib_method = None
    chosen_target, reason = choose_target(target, device, precision)
    declared = {"mean": parse_floats(mean, "--mean"), "std": parse_floats(std, "--std"), "scale": scale}
    declared.update(channel_order=channel_order, resize_shorter_side=resize)
    preprocessing = _bare_preprocessing(model, input_size, input_shape, calib, declared)
    options = dict(
        calibration=calib,
        method=calib_method,
        percentile=percentile,
        per_channel=per_channel,
        exclude=exclude,
        samples=calib_samples,
        seed=calib_seed,
        preprocessing=preprocessing,
    )
    cache_option = None if no_cache else (cache or "auto")
    with collected_warnings():
        if analyze:
            _run_analysis(model, chosen_target, output, cache_option, options, analyze_samples, top, fmt)
            return
        if auto_fallback:
            _run_fallback(
                model,
                chosen_target,
                reason,
                output,
                cache_option,
                {**options, "force": force},
                max_drop,
                eval_data,
                fmt,
            )
            return
        with calibration_progress(fmt == "table") as progress:
            result = quantize_export(
                model,
                target=chosen_target,
                precision=precision,
                output=output,
                cache=cache_option,
                progress=progress,
                force=force,
                input_shapes=parse_input_shape(input_shape),
                opset_upgrade=opset_upgrade,
                calib_memory=parse_memory_size(calib_memory) if calib_memory else None,
                min_sqnr=min_sqnr,
                strict=strict,
                task=task,
                budgets=budgets,
                fallback=fallback,
                **options,
            )
    print_warnings([w for w in result.warnings if w not in result.low_sqnr])
    for message in result.low_sqnr:
        err_console.print(f"[bold red]WARNING: {message}[/]", highlight=False)
    if fmt == "json":
        emit(to_json(_result_payload(result, reason)))
        return
    facts = result.graph
    footer = [
        f"{'FP8' if precision == 'fp8' else f'target {result.target}'} ({reason}): {result.preset.description}",
        f"written graph: weights {result.weights_text()}; {facts.get('quantize_nodes', 0)} QuantizeLinear, "
        f"{facts.get('dequantize_nodes', 0)} DequantizeLinear",
        f"calibration: {result.calibration_description}"
        + (f" (ranges reused from {result.cache_path})" if result.cache_hit else ""),
        *check_lines(result.check, result.fallback),
    ]
    if result.plan is not None:
        footer.append(f"calibration memory: {result.plan.describe()}")
    footer += [f"import: {note}" for note in result.calibration.get("import", {}).get("notes", [])]
    if result.weight_range_sqnr_db:
        footer.append(weight_range_note(result))
    if result.excluded_nodes:
        footer.append(f"kept in float: {', '.join(result.excluded_nodes)}")
    emit(
        render_rows(
            quantized_rows(result),
            fmt,
            title=f"quantized {result.fp32_path.name} -> {result.path}",
            footer=footer,
            console=console,
            headers=QUANTIZED_HEADERS,
        )
    )


def _bare_preprocessing(
    model: Path, input_size: str | None, input_shape: str | None, calibration: str, declared: dict
) -> Preprocessing | None:
    """The preprocessing a bare .onnx calibrates with: the one declared by --mean/--std/--scale/--channel-order/
    --resize, at --input-size (else --input-shape's or the file's H and W); None when nothing was given.

    With only --input-size, images (builtin, a folder) are refused: nobody said how they become the model's
    input; model inputs (a float .npz, synthetic) need only the size.
    """
    given = [f"--{name.replace('_', '-')}" for name in PREPROCESSING_PARAMETERS if option_given(name)]
    if input_size is None and not given:
        return None
    if model.is_dir():
        named = ", ".join((["--input-size"] if input_size is not None else []) + given)
        raise UsageError(f"{named} describe a bare .onnx file's input; {model}'s manifest declares its preprocessing")
    _, dims = image_input(load_onnx(model), model)
    if input_size is not None:
        size = parse_size(input_size)
    else:
        shapes = parse_input_shape(input_shape) or {}
        fixed = next(iter(shapes.values()), None) if len(shapes) == 1 else None
        height, width = (fixed[2] or dims[2], fixed[3] or dims[3]) if fixed and len(fixed) == 4 else dims[2:]
        if height is None or width is None:
            raise UsageError(
                f"{model.name} has dynamic input dimensions {dims}: give --input-size HxW with {', '.join(given)}"
            )
        size = (height, width)
    channels = dims[1] or 3
    if not given:
        if feeds_images(calibration):
            raise UsageError(f"{model.name} has no export manifest, so its preprocessing is unknown: {UNDECLARED_HINT}")
        return Preprocessing.declare(size, channels)
    return Preprocessing.declare(size, channels, **declared)


def _load_set(location, options: dict):
    """The calibration set for ``location``'s FP32 model (consumes the data options)."""

    _, dims = image_input(load_onnx(location.fp32_path), location.fp32_path)
    preprocessing = resolve_preprocessing(
        location.fp32_path, dims, options.pop("preprocessing"), options["calibration"]
    )
    return load_calibration(
        options.pop("calibration"),
        preprocessing=preprocessing,
        samples=options.pop("samples"),
        seed=options.pop("seed"),
    )


def _resolved_cache(cache_option, location, calibration, options) -> Path | None:
    if cache_option == "auto":
        return auto_cache_path(location.output_path, calibration.sha256, options["method"], options["percentile"])
    return cache_option


def _run_analysis(model, target, output, cache_option, options, samples, top, fmt) -> None:

    location = locate(model, target, output)
    calibration = _load_set(location, options)
    cache = _resolved_cache(cache_option, location, calibration, options)
    with tempfile.TemporaryDirectory(prefix="edgecnn-analyze-") as workdir:
        candidate = Path(workdir) / location.output_path.name
        with calibration_progress(fmt == "table") as progress:
            result = quantize_onnx(
                location.fp32_path,
                candidate,
                calibration=calibration,
                target=target,
                cache=cache,
                progress=progress,
                **options,
            )
        rows = analyze(location.fp32_path, candidate, calibration, samples=samples)
    print_warnings(result.warnings)
    table = [asdict(row) for row in rows]
    used = min(samples, len(calibration))
    if fmt == "json":
        emit(to_json({"model": str(location.fp32_path), "target": target, "samples": used, "layers": table}))
        return
    footer = [
        f"{len(rows)} layers, ranked by SQNR = min(inputs, weight, output): "
        "the noise each layer's own quantization adds (lower is worse).",
        "inputs: Q/DQ of the FP32 values it reads; output: the layer in INT8 on exact inputs, output Q/DQ included; "
        "accumulated: FP32 vs INT8 model at its output. Keep a layer in float with --exclude NODE_PATTERN.",
        f"INT8 for {target}; {result.calibration_description}; analysis on {used} samples. Nothing was written.",
    ]
    emit(
        render_rows(
            table[:top],
            fmt,
            columns=[
                "node",
                "op_type",
                "sqnr_db",
                "input_sqnr_db",
                "weight_sqnr_db",
                "output_sqnr_db",
                "accumulated_sqnr_db",
            ],
            headers={
                "op_type": "op",
                "sqnr_db": "SQNR dB",
                "input_sqnr_db": "inputs",
                "weight_sqnr_db": "weight",
                "output_sqnr_db": "output",
                "accumulated_sqnr_db": "accumulated",
            },
            title=f"per-layer quantization error of {location.fp32_path.name}, worst first",
            footer=footer,
            console=console,
        )
    )


def _run_fallback(model, target, reason, output, cache_option, options, max_drop, eval_data, fmt) -> None:
    location = locate(model, target, output)
    calibration = _load_set(location, options)
    cache = _resolved_cache(cache_option, location, calibration, options)
    evaluate = top1_evaluator(eval_data, calibration.preprocessing)
    with calibration_progress(fmt == "table") as progress:
        outcome = auto_fallback(
            location.fp32_path,
            location.output_path,
            evaluate=evaluate,
            max_drop=max_drop,
            calibration=calibration,
            target=target,
            cache=cache,
            progress=progress,
            **options,
        )
    record_in_manifest(location, outcome.result)
    print_warnings(outcome.result.warnings)
    steps = [asdict(step) for step in outcome.steps]
    if fmt == "json":
        emit(
            to_json(
                {
                    **_result_payload(outcome.result, reason),
                    "fp32_top1": outcome.fp32_top1,
                    "int8_top1": outcome.int8_top1,
                    "drop": outcome.drop,
                    "max_drop": max_drop,
                    "kept_float": outcome.kept_float,
                    "steps": steps,
                }
            )
        )
        return
    footer = [
        f"FP32 top-1 {outcome.fp32_top1:.2f}%, INT8 {outcome.int8_top1:.2f}% "
        f"(drop {outcome.drop:.2f} points, budget {max_drop}) on {eval_data}",
        f"kept {len(outcome.kept_float)} layers in float"
        + (f": {', '.join(outcome.kept_float)}" if outcome.kept_float else " (none needed)"),
        f"wrote {outcome.result.path} (target {target}, {reason}); "
        f"calibration: {outcome.result.calibration_description}",
    ]
    emit(
        render_rows(
            steps,
            fmt,
            title="auto-fallback",
            footer=footer,
            console=console,
            headers={"float_layers": "float layers", "top1": "top-1 %", "drop": "drop (points)", "met": "budget met"},
        )
    )
