"""Every format of one model side by side: status, size, accuracy, latency, throughput, speed-up.

One loop over the format table (:data:`edgecnn.artifact.formats.FORMATS`), in the manner of ultralytics'
``benchmarks()``: each requested format is made if it is missing (:func:`edgecnn.export.export_model`,
:func:`edgecnn.calibration.quantize_export`), checked for what it needs to run here, evaluated on labelled
data when some is given, and timed. Every requested format gets a row whose status is ``ok``, ``failed``
(with the reason) or ``not available`` (with the reason, e.g. no TensorRT): none is dropped silently.

Latencies of all formats are taken together by :func:`measure_alternating`: rounds in which every
format runs in turn, in a new random order each round, so that load from other processes on a shared
machine falls on all formats alike and the speed-ups (PyTorch eager p50 / format p50, same batch) hold.

    from edgecnn.benchmark import benchmark
    report = benchmark("mobilenet_v2", formats=["torch", "onnx-fp32", "onnx-int8-cpu"], data="digits", batches=(1, 8))
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
from edgecnn.artifact.manifest import read_manifest, sha256_file
from edgecnn.cache import cache_dir
from edgecnn.calibration import Preprocessing, cpu_session_optimization, quantize_export
from edgecnn.datasets import DIGITS, load_labelled, write_digits_split
from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.evaluate import evaluate
from edgecnn.export.tensorrt.engine import NOT_INSTALLED, gpu_identity, installed_tensorrt
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
    "parse_formats",
]

OK, FAILED, NOT_AVAILABLE = "ok", "failed", "not available"

DEFAULT_FORMATS: tuple[str, ...] = tuple(fmt.key for fmt in FORMATS)
BASELINE_FORMAT = "torch"

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
        return "edgecnn benchmark has no TensorRT runner yet (edgecnn.export.tensorrt.measure_engine times engines)"
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
    """Artifacts the manifest lists that are present with their recorded size."""
    files = {}
    for entry in manifest.get("artifacts", []):
        path = directory / entry.get("file", "")
        if path.is_file() and path.stat().st_size == entry.get("size_bytes"):
            files[entry["format"]] = path
    return files


def _int8_is_current(manifest: Mapping[str, Any], key: str, fp32_path: Path) -> bool:
    entry = next((a for a in manifest.get("artifacts", []) if a.get("format") == key), None)
    recorded = ((entry or {}).get("quantization") or {}).get("fp32_sha256")
    return recorded is not None and recorded == sha256_file(fp32_path)


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
    """
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
                row.file, row.size_mb = files[key].name, files[key].stat().st_size / 1e6
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
            _measure_accuracy(images, source, keys, rows, runners, files, ort_threads, steps)
        results = _measure_latency(source, keys, rows, runners, batch_sizes, warmup, rounds, round_seconds, steps)
    finally:
        torch.set_num_threads(previous_threads)
    notes = target.notes
    if BASELINE_FORMAT not in keys:
        notes.append("speed-up needs the PyTorch baseline: add 'torch' to --formats")
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
    )


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


def _measure_accuracy(images, source, keys, rows, runners, files, threads: int | None, steps: _StepCounter) -> None:
    """Top-1 of every runnable format on the labelled images, and its drop in points against FP32.

    ONNX artifacts go through :func:`edgecnn.evaluate.evaluate` (which adds the export's FP32 model as
    the reference); the PyTorch module is scored here on the same preprocessed images.
    """
    onnx_keys = [k for k in keys if k in runners and k in files]
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
            fp32_path = files[onnx_keys[0]].parent / artifact_name(source.name, "onnx-fp32")
            reference = by_path.get(fp32_path.resolve())
            reference_top1 = reference.top1 if reference is not None else None
            for key in onnx_keys:
                result = by_path[files[key].resolve()]
                rows[key].top1 = result.top1
                rows[key].top1_drop = result.drop if result.drop is not None else (0.0 if result is reference else None)
    if BASELINE_FORMAT in runners:
        steps.advance("top-1 of torch")
        row = rows[BASELINE_FORMAT]
        correct = total = 0
        try:
            for batch in images.batches(_preprocessing(source, files)):
                logits = runners[BASELINE_FORMAT].predict(batch.images)
                correct += int((logits.argmax(axis=1) == batch.labels).sum())
                total += len(batch.labels)
        except Exception as error:  # as above
            row.status, row.reason = FAILED, f"evaluation failed: {_reason(error)}"
            runners.pop(BASELINE_FORMAT)
            return
        row.top1 = 100.0 * correct / total
        row.top1_drop = reference_top1 - row.top1 if reference_top1 is not None else None


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


def _measure_latency(
    source, keys, rows, runners, batches, warmup, rounds, round_seconds, steps: _StepCounter
) -> list[FormatResult]:
    """One row per format and batch; the formats that run are timed together, alternating."""
    from edgecnn.export.verify import check_inputs

    results: list[FormatResult] = []
    for batch in batches:
        steps.advance(f"timing batch {batch}")
        inputs = check_inputs((batch, source.in_chans, *source.input_size), seed=batch)
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
        baseline = latencies.get(BASELINE_FORMAT)
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
