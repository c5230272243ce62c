"""Every format of one model side by side: status, size, accuracy, latency, throughput, speed-up.

One loop over the format table (:data:`edgecnn.artifact.formats.FORMATS`), in the manner of ultralytics'
``benchmarks()``: each requested format is made if it is missing (:func:`edgecnn.export.export_model`,
:func:`edgecnn.calibration.quantize_export`), checked for what it needs to run here, evaluated on labelled
data when some is given, and timed. Every requested format gets a row whose status is ``ok``, ``failed``
(with the reason) or ``not available`` (with the reason, e.g. no TensorRT): none is dropped silently.

An ``edgecnn export`` directory is benchmarked as it is (:func:`benchmark_export`): the artifacts its
manifest lists, its TensorRT engines where TensorRT runs, and the eager model when PyTorch is installed and
the weights it was exported from are at hand. That needs no PyTorch, so it runs from the core install.

Latencies of all formats are taken together by :func:`measure_alternating`: rounds in which every
format runs in turn, in a new random order each round, so that load from other processes on a shared
machine falls on all formats alike and the speed-ups (baseline p50 / format p50, same batch) hold. The
baseline is PyTorch eager when it ran, else the FP32 ONNX model (:attr:`BenchmarkReport.baseline`).

    from edgecnn.benchmark import benchmark
    report = benchmark("mobilenet_v2", formats=["torch", "onnx-fp32", "onnx-int8-cpu"], data="digits", batches=(1, 8))
    report = benchmark("exports/mobilenet_v2", data="digits")  # an export directory: no PyTorch needed
    for row in report.rows:
        print(row.format, row.batch, row.status, row.p50_ms, row.speedup)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.artifact.formats import FORMATS, Format, artifact_name, get_format
from edgecnn.artifact.manifest import MANIFEST_NAME, read_manifest, sha256_file
from edgecnn.cache import cache_dir
from edgecnn.calibration import Preprocessing, cpu_session_optimization, quantize_export
from edgecnn.datasets import DIGITS, load_labelled, write_digits_split
from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.evaluate import evaluate
from edgecnn.export.tensorrt.engine import NOT_INSTALLED, gpu_identity, installed_tensorrt, read_sidecar
from edgecnn.export.tensorrt.runner import EngineRunner
from edgecnn.extras import available, require
from edgecnn.onnx_facts import model_sha256, onnx_files
from edgecnn.options import parse_batches
from edgecnn.registry import resolve_name
from edgecnn.runtime import create_session, run_session, session_settings, time_runs, usable_cores
from edgecnn.testing import REFERENCE_MODELS, reference_weights_path

__all__ = [
    "OK",
    "FAILED",
    "NOT_AVAILABLE",
    "DEFAULT_FORMATS",
    "Latency",
    "measure_alternating",
    "FormatResult",
    "BenchmarkReport",
    "Artifacts",
    "prepare_artifacts",
    "benchmark",
    "benchmark_export",
    "is_export_directory",
    "parse_formats",
]

OK, FAILED, NOT_AVAILABLE = "ok", "failed", "not available"

DEFAULT_FORMATS: tuple[str, ...] = tuple(fmt.key for fmt in FORMATS)
BASELINE_FORMAT = "torch"
FALLBACK_BASELINE = "onnx-fp32"

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Latency:
    """Wall times of one candidate's runs, in milliseconds, and the percentiles a report shows."""

    samples_ms: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.samples_ms)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 90))

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms))

    @property
    def min_ms(self) -> float:
        return float(np.min(self.samples_ms))

    def throughput(self, batch: int) -> float:
        """Images per second at the median latency."""
        return batch * 1000.0 / self.p50_ms


def measure_alternating(
    candidates: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 2,
    rounds: int = 5,
    round_seconds: float = 0.2,
    max_runs_per_round: int = 50,
    settle_seconds: float = 0.02,
    seed: int = 0,
) -> dict[str, Latency]:
    """Time each zero-argument callable in ``candidates`` in alternating rounds.

    After ``warmup`` untimed calls each, every round runs each candidate for about ``round_seconds``
    (at least once, at most ``max_runs_per_round`` times), in a new seeded random order each round. A
    burst of load from another process then lands on every candidate in turn instead of on whichever
    happened to be measured at that moment, so ratios between candidates stay meaningful on a shared
    machine. The order is shuffled rather than rotated because rotation keeps each candidate behind the
    same predecessor, whose thread pool still spin-waits for work (ONNX Runtime, OpenMP) when it starts;
    a ``settle_seconds`` pause before each candidate lets those threads go to sleep. Written here rather
    than taken from ``timeit``, which neither interleaves candidates nor keeps per-run times.
    """
    import random

    if rounds < 1:
        raise UsageError(f"rounds must be at least 1, got {rounds}")
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(seed)
    for _ in range(rounds):
        for name in order.sample(names, len(names)):
            run = candidates[name]
            time.sleep(settle_seconds)
            samples[name] += time_runs(run, min_runs=1, min_seconds=round_seconds, max_runs=max_runs_per_round)
    return {name: Latency(tuple(values)) for name, values in samples.items()}


@dataclass
class FormatResult:
    """One row of the benchmark table: one format at one batch size."""

    model: str
    format: str
    batch: int
    status: str
    reason: str = ""
    runtime: str = ""
    precision: str = ""
    file: str | None = None
    size_mb: float | None = None
    top1: float | None = None
    top1_drop: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    throughput: float | None = None
    speedup: float | None = None
    runs: int | None = None


@dataclass
class BenchmarkReport:
    """The rows of one model's benchmark and what they were measured under."""

    model: str
    directory: str | None
    input_shape: list[int]
    num_classes: int | None
    batches: list[int]
    threads: int
    data: str | None
    data_images: int | None
    weights: str | None
    rows: list[FormatResult]
    session_settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    baseline: str | None = None
    """The format the speed-ups are against: ``torch`` (eager), else ``onnx-fp32`` when eager did not run."""

    def row(self, key: str, batch: int | None = None) -> FormatResult:
        """The row of format ``key`` (at ``batch``, default the first batch measured)."""
        batch = self.batches[0] if batch is None else batch
        for row in self.rows:
            if row.format == key and row.batch == batch:
                return row
        raise KeyError(f"no row for format {key!r} at batch {batch}")


def parse_formats(value: str | Iterable[str] | None) -> list[str]:
    """``"torch,onnx-fp32"`` or a list of keys -> validated keys in the given order (unknown: "did you mean")."""
    if value is None:
        return list(DEFAULT_FORMATS)
    items = value.split(",") if isinstance(value, str) else list(value)
    keys: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        key = get_format(item).key
        if key not in keys:
            keys.append(key)
    if not keys:
        raise UsageError(f"--formats is empty: choose from {', '.join(DEFAULT_FORMATS)}")
    return keys


@dataclass
class _Runner:
    """A format that can run here: ``predict`` maps a float32 NCHW batch to logits."""

    predict: Callable[[np.ndarray], np.ndarray]
    fixed_batch: int | None = None


def _not_available_reason(fmt: Format) -> str:
    """Why ``fmt`` cannot run on this machine ("" when it can)."""
    if fmt.runtime == "tensorrt":
        if installed_tensorrt() is None:
            return f"{NOT_INSTALLED} (it runs on NVIDIA GPUs and Jetsons)"
        if gpu_identity() is None:
            return "TensorRT is installed but there is no NVIDIA GPU here"
        if fmt.key == "engine":
            return (
                "build one with edgecnn compile EXPORT_DIR, then benchmark EXPORT_DIR (it times the engines it holds)"
            )
        return "TensorRT runs engines: build one from it with edgecnn compile, then benchmark the export directory"
    if not fmt.cpu:
        return f"{fmt.key} runs on GPUs only and edgecnn runs {fmt.runtime} on the CPU"
    return ""


def _torch_runner(module) -> _Runner:
    import torch

    module = module.eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).float().numpy()

    return _Runner(predict)


def _onnxruntime_runner(key: str, path: Path, threads: int | None) -> _Runner:
    """An ONNX Runtime CPU session; INT8 artifacts at the optimization level at which they compute
    what their graph says."""
    optimization = None
    if key.startswith("onnx-int8-"):
        optimization = cpu_session_optimization(key)
    session = create_session(path, threads=threads, optimization=optimization)
    first = session.get_inputs()[0].shape[0]
    return _Runner(lambda batch: run_session(session, batch), first if isinstance(first, int) and first > 0 else None)


def _export_is_reusable(manifest: Mapping[str, Any], source, batches: Sequence[int]) -> str:
    """Why the export directory's manifest does not fit this benchmark ("" when it does)."""
    model = manifest.get("model", {})
    shape = manifest.get("input", {}).get("shape", [])
    weights = (model.get("weights") or {}).get("sha256")
    if model.get("name") != source.name:
        return f"it holds {model.get('name')!r}"
    if (model.get("config") or {}) != (source.config or {}):
        return f"its config {model.get('config')} differs"
    if model.get("num_classes") != source.num_classes:
        return f"it has {model.get('num_classes')} classes, not {source.num_classes}"
    if weights != source.weights_sha256:
        return "its weights differ"
    if list(shape[1:]) != [source.in_chans, *source.input_size]:
        return f"its input shape {shape} differs"
    if not manifest.get("dynamic_batch") and set(batches) != {shape[0] if shape else None}:
        return f"its batch is fixed at {shape[0] if shape else '?'}"
    return ""


def _listed_files(directory: Path, manifest: Mapping[str, Any]) -> dict[str, Path]:
    """Artifacts the manifest lists that are present with their recorded size (external data included)."""
    files = {}
    for entry in manifest.get("artifacts", []):
        path = directory / entry.get("file", "")
        data = [directory / location for location in entry.get("external_data", [])]
        if path.is_file() and all(d.is_file() for d in data):
            if path.stat().st_size + sum(d.stat().st_size for d in data) == entry.get("size_bytes"):
                files[entry["format"]] = path
    return files


def _int8_is_current(manifest: Mapping[str, Any], key: str, fp32_path: Path) -> bool:
    entry = next((a for a in manifest.get("artifacts", []) if a.get("format") == key), None)
    recorded = ((entry or {}).get("quantization") or {}).get("fp32_sha256")
    return recorded is not None and recorded == model_sha256(fp32_path)


def _stored_mb(path: Path) -> float:
    """An artifact's size in MB, an ONNX file's external data included."""
    return (onnx_files(path).total_bytes if path.suffix == ".onnx" else path.stat().st_size) / 1e6


def _split_size(npz_path: str) -> int:
    """How many images a calibration split holds: the digits split calibrates on all of them (180), not a
    default of 200 that it cannot give."""
    with np.load(npz_path) as arrays:
        return int(arrays["images"].shape[0])


def _calibration_source(data: str | None, preprocessing: Mapping[str, Any], scratch: Path) -> str:
    """INT8 calibration images: the digits calibration split for ``digits`` (never the test split), else builtin."""
    if data == DIGITS:
        return str(write_digits_split("calibration", scratch / "digits-calibration.npz", preprocessing))
    return "builtin"


@dataclass
class _Target:
    """What is benchmarked: the resolved model source and how it is exported."""

    model: str
    source: Any
    weights: Path | None
    num_classes: int | None
    input_size: str | tuple[int, int] | None
    config: dict[str, Any]
    notes: list[str]


def _resolve_target(model: str, data: str | None, weights, num_classes, input_size, config) -> _Target:
    """The model to benchmark; with ``data="digits"``, no weights and a digits reference model, its trained weights."""
    from edgecnn.export.source import resolve_source

    notes: list[str] = []
    config = dict(config or {})
    if data == DIGITS and weights is None and not model.endswith(".onnx") and ".py:" not in model:
        name = resolve_name(model)
        reference = REFERENCE_MODELS.get(name)
        if reference is not None and not reference.shipped:
            raise UsageError(
                f"{name}'s digits reference weights are not shipped: "
                f"train them with scripts/train_digits.py {name} and pass --weights"
            )
        if reference is not None:
            options = reference.export_options()
            weights, num_classes = reference_weights_path(name), options["num_classes"]
            input_size = input_size or options["input_size"]
            config = {**options["config"], **config}
            notes.append(
                f"{name}: digits reference weights and config {options['config'] or '(default)'} (edgecnn.testing)"
            )
    source = resolve_source(model, weights=weights, num_classes=num_classes, input_size=input_size, config=config)
    if source.randomly_initialized and data is not None:
        notes.append(
            f"{source.name} has randomly initialized weights (seed 0): accuracy is meaningless without --weights"
        )
    return _Target(model, source, Path(weights) if weights else None, num_classes, input_size, config, notes)


def _check_classes(images, num_classes: int | None) -> None:
    if images is not None and num_classes is not None and images.num_classes != num_classes:
        raise UsageError(
            f"{images.name} has {images.num_classes} classes but the model has {num_classes}: "
            "benchmark weights trained on this data (--weights, with --num-classes)"
        )


def benchmark(
    model: str,
    formats: str | Iterable[str] | None = None,
    data: str | Path | None = None,
    batches: str | int | Iterable[int] = (1,),
    threads: int | None = None,
    *,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    input_size: str | tuple[int, int] | None = None,
    config: Mapping[str, Any] | None = None,
    export_dir: str | Path = "exports",
    calibration: str | None = None,
    quantize_options: Mapping[str, Any] | None = None,
    warmup: int = 2,
    rounds: int = 5,
    round_seconds: float = 0.2,
    progress: ProgressCallback | None = None,
) -> BenchmarkReport:
    """Benchmark ``model`` in each of ``formats`` (default: all of them) at each of ``batches``.

    An existing export in ``export_dir/<model>/`` is used (never changed) when its manifest matches the
    model, weights, input size and batches; what is missing is made in the benchmark's own cache directory
    (see :func:`prepare_artifacts`). ``data`` (``digits``
    or an ImageFolder tree) adds top-1 and its drop against FP32; with ``digits``, no ``weights`` and a
    model that has digits reference weights, those are used. INT8 is calibrated on ``calibration``
    (default: the digits calibration split for ``digits``, else edgecnn's builtin images) with
    ``quantize_options`` (keyword options of :func:`edgecnn.calibration.quantize_onnx`). ``threads``
    applies to PyTorch and ONNX Runtime alike (default: PyTorch on the usable cores, ONNX Runtime as
    :data:`edgecnn.runtime.MEASURED_SETTINGS` says). ``warmup``, ``rounds`` and
    ``round_seconds`` shape the timing (see :func:`measure_alternating`); ``progress(description, done,
    total)`` is called as steps start.

    ``model`` may be an ``edgecnn export`` directory: it is then benchmarked as it is, without PyTorch
    (:func:`benchmark_export`), and the options that choose or make a model do not apply.
    """
    if is_export_directory(model):
        given = {
            "--weights": weights,
            "--num-classes": num_classes,
            "--input-size": input_size,
            "config": config,
            "--calibration": calibration,
            "quantize_options": quantize_options,
        }
        refused = [name for name, value in given.items() if value]
        if refused:
            raise UsageError(
                f"{model} is an export directory, whose manifest fixes the model: {', '.join(refused)} "
                "does not apply (benchmark the zoo name to export it anew)"
            )
        return benchmark_export(
            model,
            formats,
            data,
            batches,
            threads,
            warmup=warmup,
            rounds=rounds,
            round_seconds=round_seconds,
            progress=progress,
        )
    if Path(model).is_dir() and not _is_zoo_name(model):
        raise UsageError(f"{model} is a folder without {MANIFEST_NAME}: give a zoo name or an edgecnn export directory")
    require("torch", f"edgecnn benchmark {model}")
    import torch

    started = time.perf_counter()
    keys = parse_formats(formats)
    batch_sizes = parse_batches(batches)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    ort_threads, threads = threads, threads or usable_cores()
    data = str(data) if data is not None else None
    images = load_labelled(data, split="test") if data is not None else None
    target = _resolve_target(model, data, weights, num_classes, input_size, config)
    source = target.source
    _check_classes(images, source.num_classes)
    steps = _StepCounter(progress, total=2 + (2 if images is not None else 0) + len(batch_sizes))

    rows: dict[str, FormatResult] = {}
    runners: dict[str, _Runner] = {}
    for key in keys:
        fmt = get_format(key)
        reason = _not_available_reason(fmt)
        rows[key] = FormatResult(
            source.name, key, batch_sizes[0], NOT_AVAILABLE if reason else OK, reason, fmt.runtime, fmt.precision
        )

    runnable = [key for key in keys if rows[key].status == OK]
    steps.advance("exporting")
    artifacts = prepare_artifacts(
        model,
        runnable,
        export_dir=export_dir,
        batches=batch_sizes,
        weights=target.weights,
        num_classes=target.num_classes,
        input_size=target.input_size,
        config=target.config,
        data=data,
        calibration=calibration,
        quantize_options=quantize_options,
        source=source,
    )
    target.notes += artifacts.notes
    files = dict(artifacts.files)
    if files:
        files.update(
            {k: path for k, path in _existing_files(artifacts.directory).items() if k in keys and k not in runnable}
        )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        steps.advance("loading")
        for key in keys:
            row = rows[key]
            if key in files:
                row.file, row.size_mb = files[key].name, _stored_mb(files[key])
            if row.status != OK:
                continue
            if key in artifacts.failures:
                row.status, row.reason = FAILED, artifacts.failures[key]
                continue
            try:
                runners[key] = _make_runner(get_format(key), source, files.get(key), ort_threads)
            except Exception as error:  # a benchmark records any failure as its format's reason and goes on
                row.status, row.reason = FAILED, _reason(error)
                continue
            if key == BASELINE_FORMAT:
                row.size_mb = _state_dict_bytes(source.module) / 1e6
        if images is not None:
            preprocessing = _preprocessing(source, files)
            _measure_accuracy(images, source.name, preprocessing, keys, rows, runners, files, ort_threads, steps)
        baseline = _baseline(runners)
        shape = (source.in_chans, *source.input_size)
        results = _measure_latency(shape, keys, rows, runners, batch_sizes, warmup, rounds, round_seconds, steps)
    finally:
        torch.set_num_threads(previous_threads)
    notes = target.notes
    if baseline is None:
        notes.append("speed-up needs a baseline: add 'torch' (or 'onnx-fp32') to --formats")
    return BenchmarkReport(
        model=source.name,
        directory=str(artifacts.directory) if artifacts.files else None,
        input_shape=[source.in_chans, *source.input_size],
        num_classes=source.num_classes,
        batches=batch_sizes,
        threads=threads,
        data=images.name if images is not None else None,
        data_images=len(images) if images is not None else None,
        weights=str(target.weights) if target.weights else None,
        rows=results,
        session_settings=session_settings(ort_threads),
        notes=notes,
        seconds=time.perf_counter() - started,
        baseline=baseline,
    )


def is_export_directory(path: str | Path) -> bool:
    """Whether ``path`` is an ``edgecnn export`` directory (a folder with a manifest)."""
    return Path(path).is_dir() and (Path(path) / MANIFEST_NAME).is_file()


def _is_zoo_name(model: str) -> bool:
    try:
        resolve_name(model)
    except EdgecnnError:
        return False
    return True


def benchmark_export(
    directory: str | Path,
    formats: str | Iterable[str] | None = None,
    data: str | Path | None = None,
    batches: str | int | Iterable[int] = (1,),
    threads: int | None = None,
    *,
    warmup: int = 2,
    rounds: int = 5,
    round_seconds: float = 0.2,
    progress: ProgressCallback | None = None,
) -> BenchmarkReport:
    """Benchmark the artifacts an ``edgecnn export`` directory holds, as they are: nothing is made or changed.

    ``formats`` defaults to ``torch``, every format the manifest lists and ``engine`` when the directory
    holds TensorRT engines (``*.engine`` with their sidecar; one built by the installed TensorRT runs where
    there is an NVIDIA GPU). The ``torch`` row rebuilds the eager model from the manifest (a zoo model, with
    the weights it was exported from: the file named in the manifest inside ``directory``, or edgecnn's
    digits reference weights, either one only when its SHA-256 matches) when PyTorch is installed; without
    PyTorch it says so and nothing imports torch. Speed-ups are against eager when it runs, else against
    the FP32 ONNX model. ``data``, ``batches``, ``threads`` and the timing options are as in
    :func:`benchmark`.
    """
    started = time.perf_counter()
    directory = Path(directory)
    manifest = read_manifest(directory)
    listed = {entry.get("format"): entry for entry in manifest.get("artifacts", [])}
    files = _listed_files(directory, manifest)
    engines = sorted(p for p in directory.glob("*.engine") if p.with_name(p.name + ".json").is_file())
    if formats is None:
        keys = [BASELINE_FORMAT, *(k for k in DEFAULT_FORMATS if k in listed)] + (["engine"] if engines else [])
    else:
        keys = parse_formats(formats)
    batch_sizes = parse_batches(batches)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    ort_threads, threads = threads, threads or usable_cores()
    model = manifest.get("model") or {}
    name = str(model.get("name") or directory.name)
    shape = list((manifest.get("input") or {}).get("shape") or [])
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise UsageError(f"{directory}/{MANIFEST_NAME} gives input shape {shape}: benchmark feeds NCHW images")
    num_classes = model.get("num_classes") or (manifest.get("output") or {}).get("num_classes")
    data = str(data) if data is not None else None
    images = load_labelled(data, split="test") if data is not None else None
    _check_classes(images, num_classes)
    steps = _StepCounter(progress, total=1 + (2 if images is not None else 0) + len(batch_sizes))
    notes: list[str] = []

    rows: dict[str, FormatResult] = {}
    for key in keys:
        fmt = get_format(key)
        row = FormatResult(name, key, batch_sizes[0], OK, runtime=fmt.runtime, precision=fmt.precision)
        if key in files:
            row.file, row.size_mb = files[key].name, _stored_mb(files[key])
        if key == BASELINE_FORMAT:
            reason = "" if available("torch") else "PyTorch is not installed (the export extra installs it)"
        elif key == "engine":
            reason = _not_available_reason(fmt) if installed_tensorrt() is None or gpu_identity() is None else ""
            if engines:
                row.file, row.size_mb = engines[0].name, engines[0].stat().st_size / 1e6
            else:
                reason = f"{directory} holds no TensorRT engine: build one there with edgecnn compile {directory}"
        else:
            reason = _not_available_reason(fmt)
            if key not in listed:
                reason = f"{directory}/{MANIFEST_NAME} lists no {key} artifact"
            elif key not in files and not reason:
                row.status, reason = FAILED, f"{listed[key].get('file')} is missing or changed since the export"
        if reason and row.status == OK:
            row.status = NOT_AVAILABLE
        row.reason = reason
        rows[key] = row

    steps.advance("loading")
    runners: dict[str, _Runner] = {}
    eager_threads = None
    for key in keys:
        row = rows[key]
        if row.status != OK:
            continue
        try:
            if key == BASELINE_FORMAT:
                module, why = _eager_module(directory, manifest, notes)
                if module is None:
                    row.status, row.reason = NOT_AVAILABLE, why
                    continue
                import torch

                eager_threads = torch.get_num_threads()
                torch.set_num_threads(threads)
                runners[key] = _torch_runner(module)
                row.size_mb = _state_dict_bytes(module) / 1e6
            elif key == "engine":
                engine = _engine_for_here(engines, notes)
                if engine is None:
                    row.status, row.reason = NOT_AVAILABLE, notes.pop()
                    continue
                row.file, row.size_mb = engine.name, engine.stat().st_size / 1e6
                runners[key] = _engine_runner(engine)
            else:
                runners[key] = _onnxruntime_runner(key, files[key], ort_threads)
        except Exception as error:  # a benchmark records any failure as its format's reason and goes on
            row.status, row.reason = FAILED, _reason(error)
    try:
        if images is not None:
            preprocessing = Preprocessing.from_manifest(manifest.get("preprocessing") or {}, f"{directory}")
            _measure_accuracy(images, name, preprocessing, keys, rows, runners, files, ort_threads, steps)
        baseline = _baseline(runners)
        results = _measure_latency(shape[1:], keys, rows, runners, batch_sizes, warmup, rounds, round_seconds, steps)
    finally:
        if eager_threads is not None:
            import torch

            torch.set_num_threads(eager_threads)
    if baseline is None:
        notes.append("no speed-up: neither PyTorch eager nor the FP32 ONNX model ran")
    return BenchmarkReport(
        model=name,
        directory=str(directory),
        input_shape=shape[1:],
        num_classes=num_classes,
        batches=batch_sizes,
        threads=threads,
        data=images.name if images is not None else None,
        data_images=len(images) if images is not None else None,
        weights=(model.get("weights") or {}).get("file"),
        rows=results,
        session_settings=session_settings(ort_threads),
        notes=notes,
        seconds=time.perf_counter() - started,
        baseline=baseline,
    )


def _eager_module(directory: Path, manifest: Mapping[str, Any], notes: list[str]):
    """(the PyTorch module the export was made from, "") or (None, why it cannot be rebuilt here)."""
    from edgecnn.export.source import resolve_source

    model = manifest.get("model") or {}
    name = model.get("name")
    if model.get("origin") != "zoo":
        return None, f"the export was made from {model.get('origin') or 'an unknown origin'}, not a zoo model"
    recorded = model.get("weights") or {}
    weights = None
    if not model.get("randomly_initialized"):
        candidates = [directory / Path(recorded.get("file") or "").name, reference_weights_path(name)]
        weights = next(
            (p for p in candidates if p.is_file() and sha256_file(p) == recorded.get("sha256")),
            None,
        )
        if weights is None:
            return None, (
                f"the weights it was exported from ({recorded.get('file')}) are not in {directory}: "
                "copy them there for the eager row"
            )
    shape = manifest["input"]["shape"]
    source = resolve_source(
        name,
        weights=weights,
        num_classes=model.get("num_classes"),
        input_size=(shape[2], shape[3]),
        config=dict(model.get("config") or {}),
    )
    if weights is None:
        notes.append(f"{name} was exported with randomly initialized weights (seed 0): accuracy is meaningless")
    elif weights != candidates[0]:
        notes.append(f"eager {name}: {weights.name}, edgecnn's weights with the manifest's SHA-256")
    return source.module, ""


def _engine_for_here(engines: Sequence[Path], notes: list[str]) -> Path | None:
    """The first engine built by the installed TensorRT; else None with why in ``notes``."""
    version = installed_tensorrt()
    built = []
    for engine in engines:
        sidecar = read_sidecar(engine) or {}
        if str(sidecar.get("tensorrt")) == version:
            return engine
        built.append(f"{engine.name} by TensorRT {sidecar.get('tensorrt')}")
    notes.append(f"built for another TensorRT ({', '.join(built)}; this is {version}): rebuild with edgecnn compile")
    return None


def _engine_runner(path: Path) -> _Runner:
    """A TensorRT engine on its first input and output."""
    runner = EngineRunner(path)
    if len(runner.inputs) != 1:
        raise EdgecnnError(f"{path.name} has {len(runner.inputs)} inputs: benchmark feeds one image input")
    name, output = runner.inputs[0], runner.outputs[0]
    first = runner.input_shape(name)[0]

    def predict(batch: np.ndarray) -> np.ndarray:
        return runner.run({name: batch})[output].astype(np.float32)

    return _Runner(predict, first if first > 0 else None)


class _StepCounter:
    def __init__(self, progress: ProgressCallback | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def advance(self, description: str) -> None:
        if self.progress is not None:
            self.progress(description, self.done, self.total)
        self.done += 1

    def finish(self, description: str) -> None:
        if self.progress is not None:
            self.progress(description, self.total, self.total)


@dataclass
class Artifacts:
    """The export directory of a model and its artifact files by format key; ``failures`` says why a key is missing."""

    directory: Path | None
    files: dict[str, Path] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def prepare_artifacts(
    model: str,
    keys: Iterable[str],
    *,
    export_dir: str | Path = "exports",
    batches: Sequence[int] = (1,),
    weights: str | Path | None = None,
    num_classes: int | None = None,
    input_size: str | tuple[int, int] | None = None,
    config: Mapping[str, Any] | None = None,
    data: str | None = None,
    calibration: str | None = None,
    quantize_options: Mapping[str, Any] | None = None,
    source=None,
    work_dir: str | Path | None = None,
) -> Artifacts:
    """Find or make the ONNX artifacts of ``keys`` (onnx-fp32, onnx-fp16, ort, onnx-int8-*).

    The user's export ``export_dir/<model>/`` is read, never written: it is used when its manifest matches
    the model, weights, config, class count, input size and ``batches`` and it holds the direct formats
    asked for. What the benchmark has to make goes to its own directory, ``work_dir`` (default
    ``$EDGECNN_CACHE/benchmark``) ``/<key of those inputs>/<model>/``, reused on later runs: an export with a
    dynamic batch, and INT8 files (made from the FP32 model of whichever export is used). INT8 artifacts are
    reused when they were quantized from the current FP32 file and no ``calibration`` is given
    (``data="digits"`` calibrates on the digits calibration split, else builtin images), else made with
    :func:`edgecnn.calibration.quantize_export` (``quantize_options`` are its keyword options). A step
    that fails leaves its keys in ``failures`` with the reason. ``source`` is the resolved
    :class:`~edgecnn.export.ModelSource` when the caller has one.
    """
    from edgecnn.export.pipeline import export_model
    from edgecnn.export.source import resolve_source

    keys = [k for k in keys if get_format(k).suffix.endswith((".onnx", ".ort"))]
    if source is None:
        source = resolve_source(
            model, weights=weights, num_classes=num_classes, input_size=input_size, config=dict(config or {})
        )
    user_dir = Path(export_dir) / source.name
    work = Path(work_dir) if work_dir is not None else cache_dir() / "benchmark"
    work = work / _inputs_key(source) / source.name
    artifacts = Artifacts(user_dir)
    if not keys:
        return artifacts
    direct = {"onnx-fp32"} | ({"onnx-fp16", "ort"} & set(keys))
    manifest: dict[str, Any] = {}
    for directory in (user_dir, work):
        found, files, unfit = _fitting_export(directory, source, batches, direct)
        if found is not None:
            manifest, artifacts.directory, artifacts.files = found, directory, files
            break
        if unfit and directory == user_dir:
            artifacts.notes.append(f"{user_dir} left as it is ({unfit}): the benchmark's artifacts are in {work}")
    else:
        try:
            result = export_model(
                model,
                output_dir=work.parent,
                weights=weights,
                num_classes=num_classes,
                input_size=input_size,
                config=dict(config or {}),
                dynamic_batch=True,
                fp16="onnx-fp16" in direct,
                ort="ort" in direct,
                force=True,
            )
        except Exception as error:  # a benchmark records any failure as its formats' reason and goes on
            artifacts.failures = {key: f"export failed: {_reason(error)}" for key in keys}
            artifacts.files = {}
            return artifacts
        manifest, artifacts.directory, artifacts.files = result.manifest, work, dict(result.files)
    scratch = None
    try:
        for key in (k for k in keys if k.startswith("onnx-int8-")):
            reusable = calibration is None and key in artifacts.files
            if reusable and _int8_is_current(manifest, key, artifacts.files["onnx-fp32"]):
                continue
            try:
                if calibration is None and scratch is None:
                    scratch = tempfile.TemporaryDirectory(prefix="edgecnn-calibration-")
                source_images = calibration or _calibration_source(data, manifest["preprocessing"], Path(scratch.name))
                options = dict(quantize_options or {})
                if calibration is None and data == "digits":
                    options.setdefault("samples", _split_size(source_images))
                target = key.removeprefix("onnx-int8-")
                if artifacts.directory == work:
                    result = quantize_export(work, target=target, calibration=source_images, force=True, **options)
                else:
                    result = quantize_export(
                        artifacts.files["onnx-fp32"],
                        target=target,
                        output=work / artifact_name(source.name, key),
                        calibration=source_images,
                        force=True,
                        **options,
                    )
            except Exception as error:  # as above: the INT8 row says why, the other formats go on
                artifacts.files.pop(key, None)
                artifacts.failures[key] = f"INT8 quantization failed: {_reason(error)}"
                continue
            artifacts.files[key] = result.path
            if artifacts.directory == work:
                manifest = read_manifest(work)
    finally:
        if scratch is not None:
            scratch.cleanup()
    return artifacts


def _inputs_key(source) -> str:
    """A short key of what an export of ``source`` is made from: one benchmark directory per distinct model."""
    inputs = {
        "reference": source.reference,
        "config": source.config,
        "classes": source.num_classes,
        "weights": source.weights_sha256,
        "input": [source.in_chans, *source.input_size],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _fitting_export(
    directory: Path, source, batches: Sequence[int], direct: set[str]
) -> tuple[dict[str, Any] | None, dict[str, Path], str]:
    """(manifest, files, "") of the export in ``directory`` when it fits this benchmark and holds the ``direct``
    formats; else (None, {}, why not) ("" when there is no export there)."""
    if not (directory / "manifest.json").is_file():
        return None, {}, ""
    try:
        manifest = read_manifest(directory)
    except EdgecnnError:
        return None, {}, "its manifest is unreadable"
    unfit = _export_is_reusable(manifest, source, batches)
    if unfit:
        return None, {}, unfit
    files = _listed_files(directory, manifest)
    missing = sorted(direct - set(files))
    if missing:
        return None, {}, f"it has no {', '.join(missing)}"
    return manifest, files, ""


def _make_runner(fmt: Format, source, path: Path | None, threads: int | None) -> _Runner:
    if fmt.runtime == "torch":
        if source.module is None:
            raise EdgecnnError("the model is an ONNX file: there is no PyTorch module to run")
        return _torch_runner(source.module)
    if path is None:
        raise EdgecnnError(f"no {fmt.key} artifact was made")
    if fmt.runtime == "onnxruntime":
        return _onnxruntime_runner(fmt.key, path, threads)
    raise EdgecnnError(f"edgecnn's benchmark has no {fmt.runtime} runner yet")


def _state_dict_bytes(module) -> int:
    """What PyTorch weights take on disk, near enough: the bytes of the state_dict's tensors."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _existing_files(directory: Path | None) -> dict[str, Path]:
    """Artifacts already listed in ``directory``'s manifest (shown even for formats that cannot run here)."""
    if directory is None or not (directory / "manifest.json").is_file():
        return {}
    with contextlib.suppress(EdgecnnError):
        return _listed_files(directory, read_manifest(directory))
    return {}


def _measure_accuracy(
    images, name: str, preprocessing, keys, rows, runners, files, threads: int | None, steps: _StepCounter
) -> None:
    """Top-1 of every runnable format on the labelled images, and its drop in points against FP32.

    ONNX artifacts go through :func:`edgecnn.evaluate.evaluate` (which adds the export's FP32 model as
    the reference); the PyTorch module and TensorRT engines are scored here on the same images, fed as
    ``preprocessing`` says.
    """
    onnx_keys = [k for k in keys if k in runners and k in files and get_format(k).runtime == "onnxruntime"]
    reference_top1 = None
    if onnx_keys:
        steps.advance(f"top-1 of {', '.join(onnx_keys)}")
        try:
            report = evaluate([files[k] for k in onnx_keys], images, top_k=1, max_drop=None, threads=threads)
        except Exception as error:  # a benchmark records any failure as its formats' reason and goes on
            for key in onnx_keys:
                rows[key].status, rows[key].reason = FAILED, f"evaluation failed: {_reason(error)}"
                runners.pop(key, None)
        else:
            by_path = {Path(result.artifact).resolve(): result for result in report.results}
            fp32_path = files[onnx_keys[0]].parent / artifact_name(name, "onnx-fp32")
            reference = by_path.get(fp32_path.resolve())
            reference_top1 = reference.top1 if reference is not None else None
            for key in onnx_keys:
                result = by_path[files[key].resolve()]
                rows[key].top1 = result.top1
                rows[key].top1_drop = result.drop if result.drop is not None else (0.0 if result is reference else None)
    for key in [k for k in keys if k in runners and k not in onnx_keys]:
        steps.advance(f"top-1 of {key}")
        row = rows[key]
        try:
            row.top1 = _top1(runners[key], images, preprocessing)
        except Exception as error:  # as above
            row.status, row.reason = FAILED, f"evaluation failed: {_reason(error)}"
            runners.pop(key)
            continue
        row.top1_drop = reference_top1 - row.top1 if reference_top1 is not None else None


def _top1(runner: _Runner, images, preprocessing) -> float:
    """Top-1 in percent of ``runner`` on ``images``; a fixed-batch runner gets chunks of its batch, the last
    padded with zeros."""
    correct = total = 0
    for batch in images.batches(preprocessing):
        pixels, labels = batch.images, batch.labels
        size = runner.fixed_batch or len(pixels)
        for start in range(0, len(pixels), size):
            chunk = pixels[start : start + size]
            count = len(chunk)
            if count < size:
                chunk = np.concatenate([chunk, np.zeros((size - count, *chunk.shape[1:]), chunk.dtype)])
            logits = runner.predict(chunk)[:count]
            correct += int((logits.argmax(axis=1) == labels[start : start + count]).sum())
            total += count
    return 100.0 * correct / total


def _preprocessing(source, files: Mapping[str, Path]):
    """How images are fed: the export manifest's block when there is an export, else the same defaults
    the export would record."""
    if files:
        return Preprocessing.from_manifest(read_manifest(next(iter(files.values())).parent)["preprocessing"])
    return Preprocessing.default(source.input_size, source.in_chans, source.mean, source.std)


def _reason(error: BaseException) -> str:
    """One line for a report: edgecnn's own message, or a library error's type and first line."""
    text = str(error).strip()
    first = (text.splitlines()[0] if text else "")[:300]
    if isinstance(error, EdgecnnError):
        return first
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _baseline(runners: Mapping[str, _Runner]) -> str | None:
    """What speed-ups are against: PyTorch eager when it runs, else the FP32 ONNX model, else nothing."""
    return next((key for key in (BASELINE_FORMAT, FALLBACK_BASELINE) if key in runners), None)


def _measure_latency(
    input_chw: Sequence[int], keys, rows, runners, batches, warmup, rounds, round_seconds, steps: _StepCounter
) -> list[FormatResult]:
    """One row per format and batch; the formats that run are timed together, alternating, and compared
    with the baseline (:func:`_baseline`)."""
    results: list[FormatResult] = []
    baseline_key = _baseline(runners)
    for batch in batches:
        steps.advance(f"timing batch {batch}")
        inputs = np.random.default_rng(batch).standard_normal((batch, *input_chw), dtype=np.float32)
        candidates = {}
        for key, runner in runners.items():
            if rows[key].status != OK:
                continue
            if runner.fixed_batch not in (None, batch):
                continue
            candidates[key] = lambda runner=runner, inputs=inputs: runner.predict(inputs)
        failed: dict[str, str] = {}
        for key in list(candidates):
            try:
                candidates[key]()
            except Exception as error:
                failed[key] = f"inference failed at batch {batch}: {_reason(error)}"
                del candidates[key]
        latencies = measure_alternating(candidates, warmup=warmup, rounds=rounds, round_seconds=round_seconds)
        baseline = latencies.get(baseline_key) if baseline_key is not None else None
        for key in keys:
            template = rows[key]
            row = replace(template, batch=batch)
            if key in failed:
                row.status, row.reason = FAILED, failed[key]
            elif key in runners and key not in candidates and row.status == OK:
                row.status, row.reason = FAILED, f"the artifact's batch is fixed at {runners[key].fixed_batch}"
            latency = latencies.get(key)
            if latency is not None:
                row.p50_ms, row.p90_ms, row.runs = latency.p50_ms, latency.p90_ms, latency.runs
                row.throughput = latency.throughput(batch)
                row.speedup = baseline.p50_ms / latency.p50_ms if baseline is not None else None
            results.append(row)
    steps.finish("done")
    return results
