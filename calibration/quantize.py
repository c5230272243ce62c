"""FP32 ONNX -> Q/DQ INT8 ONNX through ONNX Runtime's ``quantize_static``, shaped for the target that runs it.

Targets (:data:`PRESETS`):

- ``tensorrt``: symmetric signed INT8 activations and weights (zero point 0), per-channel weights, float
  biases: the explicit-quantization form TensorRT 10 and 11 parse (TensorRT 11 removed implicit
  calibration, so Q/DQ ONNX is its only INT8 path; its parser takes INT8 Q/DQ only, not INT32 bias DQ).
- ``cpu``: uint8 asymmetric activations, int8 symmetric per-channel weights, int32 biases: the form
  ONNX Runtime's CPU kernels run fastest on AVX2 machines without VNNI (U8S8 about 2x faster than S8S8
  here; bench/calibration_bench.py measures it). Without VNNI, U8S8 goes through vpmaddubsw, whose 16-bit
  pair sums can saturate with full 8-bit weights: on MobileNet v2 the output SQNR fell from 25 dB (graph
  semantics) to 11-13 dB in ORT's kernels, and weights in a 7-bit range (``reduce_range``, ORT's
  documented remedy) bring it back to 23-27 dB at the same speed; on ResNet-50 8-bit weights did not
  saturate and gave the better SQNR (32 against 28 dB). So the cpu form is chosen by measurement on this
  host: both weight ranges are made and run through ORT's CPU kernels on the check samples, and the one
  whose output is closer to FP32 is kept (recorded in the manifest).

On ONNX Runtime's CPU execution provider, a symmetric-activation Q/DQ graph (the TensorRT form) must run
at optimization level ``basic``: the ``extended`` level's ClipQuantFusion drops the ReLU/Clip before a
symmetric QuantizeLinear although the quantized range still holds negative values, and the outputs turn
to noise (MobileNet v2: -3 dB SQNR). :func:`cpu_session_optimization` says which level an artifact needs.

Ranges come from :func:`edgecnn.calibration.ranges.compute_ranges` (bounded memory) or a matching cache
(:mod:`edgecnn.calibration.cache`), and reach ``quantize_static`` through its ``calibration_cache_path``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgecnn.artifact import AddedArtifact, get_format
from edgecnn.artifact.formats import artifact_name, model_name_of
from edgecnn.artifact.manifest import (
    MANIFEST_NAME,
    manifest_json,
    read_manifest,
    sha256_file,
)
from edgecnn.artifact.staging import cannot_write, publish, write_bytes_atomic
from edgecnn.calibration.cache import CacheKey, read_cache, write_cache, write_ort_cache
from edgecnn.calibration.data import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    CalibrationSet,
    Preprocessing,
    load_calibration,
)
from edgecnn.calibration.ranges import (
    DEFAULT_PERCENTILE,
    METHODS,
    compute_ranges,
    method_key,
    quiet_ort,
)
from edgecnn.calibration.reader import CalibrationReader
from edgecnn.devices import get_device
from edgecnn.errors import EdgecnnError, UsageError, first_line
from edgecnn.onnx_facts import input_dims, load_onnx
from edgecnn.runtime import cpu_session_optimization, create_session

__all__ = [
    "TARGETS",
    "PRESETS",
    "DEFAULT_METHOD",
    "TargetPreset",
    "QuantizationResult",
    "QuantizationWarning",
    "quantize_onnx",
    "quantize_export",
    "target_for_device",
    "resolve_excluded",
    "depthwise_convs",
    "cpu_session_optimization",
    "auto_cache_path",
    "quantize_for_timing",
    "choose_target",
    "Int8Step",
    "image_input",
    "resolve_preprocessing",
    "ExportLocation",
    "locate",
    "record_in_manifest",
]

TARGETS = ("cpu", "tensorrt")
DEFAULT_METHOD = "percentile"
CHECK_SAMPLES = 16


class QuantizationWarning(UserWarning):
    """The INT8 model was made, but with a setting known to cost accuracy."""


@dataclass(frozen=True)
class TargetPreset:
    name: str
    format_key: str
    activation_type: str
    weight_type: str
    symmetric_activations: bool
    quantize_bias: bool
    reduce_range: bool | None
    description: str

    @property
    def cpu_optimization(self) -> str:
        return get_format(self.format_key).cpu_optimization

    def quant_types(self):
        from onnxruntime.quantization import QuantType

        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        return types[self.activation_type], types[self.weight_type]

    def extra_options(self) -> dict[str, Any]:
        return {
            "ActivationSymmetric": self.symmetric_activations,
            "WeightSymmetric": True,
            "QuantizeBias": self.quantize_bias,
        }


PRESETS: dict[str, TargetPreset] = {
    "cpu": TargetPreset(
        "cpu",
        "onnx-int8-cpu",
        "uint8",
        "int8",
        False,
        True,
        None,
        (
            "uint8 asymmetric activations, int8 symmetric weights (8- or 7-bit range, measured), "
            "int32 biases (ONNX Runtime CPU, U8S8)"
        ),
    ),
    "tensorrt": TargetPreset(
        "tensorrt",
        "onnx-int8-tensorrt",
        "int8",
        "int8",
        True,
        False,
        False,
        "int8 symmetric activations and weights (zero point 0), float biases (TensorRT explicit quantization)",
    ),
}


def choose_target(target: str | None, device: str | None) -> tuple[str, str]:
    """(target, why): ``target`` wins (--target), else ``device`` decides (--device), else cpu."""
    if target is not None:
        if target not in PRESETS:
            raise UsageError(f"unknown INT8 target {target!r}: choose {' or '.join(PRESETS)}")
        return target, "from --target"
    return target_for_device(device)


def target_for_device(device: str | None) -> tuple[str, str]:
    """(target, reason): ``tensorrt`` for a catalog device that ships TensorRT, ``cpu`` otherwise."""
    if device is None:
        return "cpu", "default; pass --target tensorrt or --device ID for Jetson"
    entry = get_device(device)
    if entry.tensorrt:
        return "tensorrt", f"from --device {entry.id} (TensorRT {entry.tensorrt})"
    return "cpu", f"from --device {entry.id} (no TensorRT: ONNX Runtime on its CPU)"


@dataclass
class QuantizationResult:
    """What :func:`quantize_onnx` made and how; ``manifest_entry()`` is its manifest.json record."""

    path: Path
    fp32_path: Path
    target: str
    method: str
    percentile: float | None
    per_channel: bool
    excluded_nodes: list[str]
    calibration: dict[str, Any]
    calibration_description: str
    cache_path: Path | None
    cache_hit: bool
    calibration_seconds: float
    quantize_seconds: float
    fp32_bytes: int
    int8_bytes: int
    sha256: str
    fp32_sha256: str
    check: dict[str, Any]
    weight_bits: int = 8
    weight_range_sqnr_db: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def preset(self) -> TargetPreset:
        return PRESETS[self.target]

    @property
    def format_key(self) -> str:
        return self.preset.format_key

    @property
    def size_ratio(self) -> float:
        return self.int8_bytes / self.fp32_bytes

    def manifest_entry(self) -> dict[str, Any]:
        from onnxruntime import __version__ as ort_version

        preset = self.preset
        return {
            "format": preset.format_key,
            "file": self.path.name,
            "sha256": self.sha256,
            "size_bytes": self.int8_bytes,
            "verification": [],
            "quantization": {
                "target": self.target,
                "method": self.method,
                "percentile": self.percentile,
                "per_channel": self.per_channel,
                "activations": (
                    f"{preset.activation_type} {'symmetric' if preset.symmetric_activations else 'asymmetric'}"
                ),
                "weights": f"{preset.weight_type} symmetric {'per-channel' if self.per_channel else 'per-tensor'}"
                + (", 7-bit range" if self.weight_bits == 7 else ""),
                "weight_range_output_sqnr_db": self.weight_range_sqnr_db or None,
                "bias": "int32" if preset.quantize_bias else "float",
                "excluded_nodes": list(self.excluded_nodes),
                "calibration": self.calibration,
                "cache": self.cache_path.name if self.cache_path else None,
                "fp32_sha256": self.fp32_sha256,
                "size_vs_fp32": round(self.size_ratio, 4),
                "check": self.check,
                "onnxruntime": ort_version,
                "onnxruntime_cpu_optimization": preset.cpu_optimization,
            },
        }

    def moved(self, old: Path, new: Path) -> QuantizationResult:
        """The same result with its files in directory ``new`` instead of ``old`` (a staged export renamed)."""

        def relocate(path: Path | None) -> Path | None:
            return new / path.name if path is not None and path.parent == old else path

        return replace(
            self, path=relocate(self.path), fp32_path=relocate(self.fp32_path), cache_path=relocate(self.cache_path)
        )

    def describe(self) -> str:
        method = f"{self.method} {self.percentile:g}" if self.method == "percentile" else self.method
        cache = f", ranges from cache {self.cache_path.name}" if self.cache_hit and self.cache_path else ""
        return f"INT8 for {self.target} ({method}{cache}), calibrated on {self.calibration_description}"


def image_input(model: onnx.ModelProto, path: Path) -> tuple[str, list[int | None]]:
    """The name and NCHW dims (None where dynamic) of the model's one float32 image input; else a usage error."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"{path}: expected one image input, found {len(inputs)}")
    dims = [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in inputs[0].type.tensor_type.shape.dim
    ]
    if len(dims) != 4:
        raise UsageError(f"{path}: expected an NCHW image input, found {inputs[0].name} with {len(dims)} dimensions")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UsageError(
            f"{path}: INT8 calibration needs a float32 model; input {inputs[0].name} is "
            f"{onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type)}"
        )
    return inputs[0].name, dims


def _manifest_preprocessing(fp32_path: Path) -> Preprocessing | None:
    """The preprocessing of the export manifest next to ``fp32_path`` when that manifest lists the file."""
    if not (fp32_path.parent / MANIFEST_NAME).is_file():
        return None
    manifest = read_manifest(fp32_path.parent)
    if not any(entry.get("file") == fp32_path.name for entry in manifest.get("artifacts", [])):
        return None
    return Preprocessing.from_manifest(manifest.get("preprocessing") or {}, str(fp32_path.parent / MANIFEST_NAME))


def resolve_preprocessing(fp32_path: Path, dims: list[int | None], preprocessing) -> Preprocessing:
    """The preprocessing calibration uses: given, else the export manifest's, else ImageNet's at the input size;
    checked against the model's input dims."""
    if isinstance(preprocessing, Mapping):
        preprocessing = Preprocessing.from_manifest(preprocessing, "preprocessing")
    if preprocessing is None:
        preprocessing = _manifest_preprocessing(fp32_path)
    if preprocessing is None:
        channels, height, width = dims[1:]
        if None in (channels, height, width):
            raise UsageError(
                f"{fp32_path} has dynamic input dimensions {dims} and no manifest: "
                "give the input size (--input-size HxW)"
            )
        preprocessing = Preprocessing.default((height, width), channels)
    preprocessing.check()
    expected = (preprocessing.channels, *preprocessing.input_size)
    for axis, (have, want) in enumerate(zip(dims[1:], expected), start=1):
        if have is not None and have != want:
            raise UsageError(
                f"{fp32_path} takes input {dims} but the preprocessing gives {list(expected)} (axis {axis}): "
                "check --input-size or the manifest"
            )
    return preprocessing


def depthwise_convs(model: onnx.ModelProto) -> list[str]:
    """Names of depthwise convolutions (group > 1, one input channel per group)."""
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        shape = weights.get(node.input[1])
        if group > 1 and shape is not None and len(shape) > 1 and shape[1] == 1:
            names.append(node.name)
    return names


def resolve_excluded(model: onnx.ModelProto, patterns: Iterable[str]) -> list[str]:
    """Node names matched by ``patterns`` (exact names or fnmatch globs such as ``'/classifier/*'``)."""
    names = [node.name for node in model.graph.node]
    if patterns and not all(names):
        raise UsageError(
            "the model has unnamed nodes, so --exclude cannot address them: re-export it with edgecnn export"
        )
    chosen: list[str] = []
    for pattern in patterns:
        matched = [name for name in names if name == pattern or fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            examples = ", ".join(names[:3] + (["..."] if len(names) > 3 else []))
            raise UsageError(
                f"--exclude {pattern!r} matches no node (node names look like {examples}; globs such as '*Gemm*' work)"
            )
        chosen += [name for name in matched if name not in chosen]
    return chosen


def auto_cache_path(
    output_path: str | Path, calibration_sha256: str, method: str, percentile: float = DEFAULT_PERCENTILE
) -> Path:
    """Where ``cache="auto"`` keeps ranges: beside the INT8 file, named by calibration set and method."""
    import hashlib

    output_path = Path(output_path)
    digest = hashlib.sha256(f"{calibration_sha256}/{method_key(method, percentile)}".encode()).hexdigest()[:12]
    return output_path.parent / f"{model_name_of(output_path.name)}.calib-{method}-{digest}.json"


def _cache_path(cache, output_path: Path, calibration: CalibrationSet, method: str, percentile: float) -> Path | None:
    if cache is None or cache is False:
        return None
    if cache == "auto":
        return auto_cache_path(output_path, calibration.sha256, method, percentile)
    return Path(cache)


def _check(
    fp32_path: Path,
    int8_path: Path,
    calibration: CalibrationSet,
    input_name: str,
    batch: int | None,
    samples: int,
    optimization: str,
) -> dict[str, Any]:
    """INT8 against FP32 on the first calibration samples: top-1 agreement and output SQNR (not accuracy)."""
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_signal_to_quantization_noice_ratio,
    )

    count = min(samples, len(calibration))
    subset = calibration.head(count)
    sessions = [create_session(fp32_path), create_session(int8_path, optimization=optimization)]
    outputs: list[list[np.ndarray]] = [[], []]
    reader = CalibrationReader(subset, input_name, batch or 1, static_batch=batch is not None)
    for feed in reader:
        for session, collected in zip(sessions, outputs):
            collected.append(session.run(None, feed)[0])
    fp32, int8 = (np.concatenate(o)[:count] for o in outputs)
    agreement = float(np.mean(fp32.reshape(count, -1).argmax(1) == int8.reshape(count, -1).argmax(1)))
    return {
        "samples": count,
        "data": "calibration samples",
        "top1_agreement": round(agreement, 4),
        "output_sqnr_db": round(float(compute_signal_to_quantization_noice_ratio(fp32, int8)), 2),
        "finite": bool(np.isfinite(int8).all()),
        "onnxruntime_optimization": optimization,
    }


def quantize_onnx(
    fp32_path: str | Path,
    output_path: str | Path,
    *,
    calibration: str | Path | CalibrationSet = "builtin",
    target: str = "cpu",
    method: str = DEFAULT_METHOD,
    percentile: float = DEFAULT_PERCENTILE,
    per_channel: bool = True,
    exclude: Iterable[str] = (),
    samples: int = DEFAULT_SAMPLES,
    cache: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    check_samples: int = CHECK_SAMPLES,
    force: bool = False,
) -> QuantizationResult:
    """Quantize the FP32 ONNX model at ``fp32_path`` to Q/DQ INT8 at ``output_path`` (written atomically).

    ``calibration``: a directory of images, a .npy/.npz file, ``"builtin"``, ``"synthetic"`` or a loaded
    :class:`CalibrationSet`. ``preprocessing`` defaults to the manifest.json next to ``fp32_path`` (when it
    lists the file), else ImageNet-style preprocessing at the model's input size. ``exclude``: node names
    or globs kept in float. ``cache``: a JSON path (reused when its key matches, refused when it does not,
    written otherwise), ``"auto"`` (a file named by the key, next to ``output_path``) or None.
    ``progress(done, total)`` is called as calibration samples go through the model. An existing
    ``output_path`` is replaced only when its manifest entry says it was made from the same FP32 model,
    calibration data and settings, or with ``force`` (see :func:`refuse_replacing`).
    """
    fp32_path, output_path = Path(fp32_path), Path(output_path)
    if target not in PRESETS:
        raise UsageError(f"unknown INT8 target {target!r}: choose {' or '.join(TARGETS)}")
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}: choose {', '.join(METHODS)}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise UsageError(f"--percentile must be in (0, 100], got {percentile}")
    preset = PRESETS[target]
    model = load_onnx(fp32_path)
    input_name, dims = image_input(model, fp32_path)
    if isinstance(calibration, CalibrationSet):
        resolve_preprocessing(fp32_path, dims, calibration.preprocessing)
    else:
        prep = resolve_preprocessing(fp32_path, dims, preprocessing)
        calibration = load_calibration(calibration, preprocessing=prep, samples=samples, seed=seed)
    collected = list(calibration.warnings)
    excluded = resolve_excluded(model, list(exclude))
    fp32_sha256 = _sha256(fp32_path)
    if output_path.exists() and not force:
        refuse_replacing(
            output_path,
            {
                "fp32_sha256": fp32_sha256,
                "target": target,
                "method": method,
                "percentile": percentile if method == "percentile" else None,
                "per_channel": per_channel,
                "excluded_nodes": excluded,
                "calibration": calibration.sha256,
            },
        )
    depthwise = depthwise_convs(model)
    if not per_channel and depthwise:
        collected.append(
            f"per-tensor weights on a depthwise network ({len(depthwise)} depthwise convolutions) are a known accuracy "
            "failure (MobileNet v2 top-1 0.1% in Krishnamoorthi 2018): use per-channel weights (the default)"
        )
        warnings.warn(collected[-1], QuantizationWarning, stacklevel=2)

    key = CacheKey(fp32_sha256, calibration.sha256, method_key(method, percentile))
    cache_path = _cache_path(cache, output_path, calibration, method, percentile)
    started = time.perf_counter()
    ranges = read_cache(cache_path, key) if cache_path is not None else None
    cache_hit = ranges is not None
    if ranges is None:
        batch = dims[0] if dims[0] is not None else 8
        ranges = compute_ranges(
            fp32_path,
            calibration,
            method=method,
            percentile=percentile,
            batch_size=batch,
            static_batch=dims[0] is not None,
            progress=progress,
        )
        if cache_path is not None:
            write_cache(cache_path, key, ranges, calibration.summary())
    calibration_seconds = time.perf_counter() - started

    started = time.perf_counter()
    choices = [False, True] if preset.reduce_range is None else [preset.reduce_range]
    made: list[tuple[Path, dict[str, Any], bool]] = []
    try:
        for reduce_range in choices:
            temporary = _quantize_to_temporary(
                fp32_path, output_path, ranges, preset, per_channel, excluded, reduce_range
            )
            made.append(
                (
                    temporary,
                    _check(
                        fp32_path, temporary, calibration, input_name, dims[0], check_samples, preset.cpu_optimization
                    ),
                    reduce_range,
                )
            )
        temporary, check, reduce_range = max(made, key=lambda m: (m[1]["finite"], m[1]["output_sqnr_db"]))
        if not check["finite"]:
            raise EdgecnnError(
                f"the INT8 model of {fp32_path.name} produced NaN or infinity on calibration samples; "
                "nothing was written"
            )
        publish(temporary, output_path)
    finally:
        for path, _, _ in made:
            path.unlink(missing_ok=True)
    quantize_seconds = time.perf_counter() - started
    range_sqnr = {("7-bit" if r else "8-bit"): c["output_sqnr_db"] for _, c, r in made} if len(made) > 1 else {}
    return QuantizationResult(
        path=output_path,
        fp32_path=fp32_path,
        target=target,
        method=method,
        percentile=percentile if method == "percentile" else None,
        per_channel=per_channel,
        excluded_nodes=excluded,
        calibration=calibration.summary(),
        calibration_description=calibration.describe(),
        cache_path=cache_path,
        cache_hit=cache_hit,
        calibration_seconds=calibration_seconds,
        quantize_seconds=quantize_seconds,
        fp32_bytes=fp32_path.stat().st_size,
        int8_bytes=output_path.stat().st_size,
        sha256=_sha256(output_path),
        fp32_sha256=fp32_sha256,
        check=check,
        weight_bits=7 if reduce_range else 8,
        weight_range_sqnr_db=range_sqnr,
        warnings=collected,
    )


def refuse_replacing(output_path: Path, inputs: Mapping[str, Any]) -> None:
    """Raise a one-line error naming ``--force`` unless the INT8 file at ``output_path`` was made from ``inputs``
    (FP32 model, target, calibration data and settings), as the manifest beside it records."""
    entry = None
    if (output_path.parent / MANIFEST_NAME).is_file():
        with contextlib.suppress(UsageError):
            manifest = read_manifest(output_path.parent)
            entry = next((a for a in manifest.get("artifacts", []) if a.get("file") == output_path.name), None)
    if entry is None:
        raise UsageError(
            f"{output_path} exists and no manifest records how it was made: pass --force to replace it, "
            "or give another --output"
        )
    quantization = entry.get("quantization") or {}
    recorded = {key: quantization.get(key) for key in inputs}
    recorded["calibration"] = (quantization.get("calibration") or {}).get("sha256")
    recorded["excluded_nodes"] = list(recorded.get("excluded_nodes") or [])
    changed = [
        f"{key} {_brief(recorded.get(key))} there, {_brief(value)} now"
        for key, value in inputs.items()
        if recorded.get(key) != (list(value) if isinstance(value, (list, tuple)) else value)
    ]
    if changed:
        what = (quantization.get("calibration") or {}).get("description")
        raise UsageError(
            f"{output_path} was made from other inputs ({'; '.join(changed)}"
            + (f"; calibrated on {what}" if what else "")
            + "): pass --force to replace it, or keep both with --output FILE"
        )


def _brief(value: Any) -> str:
    text = "none" if value is None else str(value)
    return text[:12] if len(text) == 64 else text


def _sha256(path: Path) -> str:
    return sha256_file(path)


def _quantize_to_temporary(
    fp32_path: Path,
    output_path: Path,
    ranges,
    preset: TargetPreset,
    per_channel: bool,
    excluded: list[str],
    reduce_range: bool,
) -> Path:
    """``quantize_static`` with precomputed ranges into a temporary file beside ``output_path``
    (renamed once checked)."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    activation_type, weight_type = preset.quant_types()
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{output_path.name}.tmp-", dir=output_path.parent)
        os.close(handle)
    except OSError as error:
        raise cannot_write(output_path, error) from None
    temporary = Path(name)
    try:
        with tempfile.TemporaryDirectory(prefix="edgecnn-quant-") as workdir, quiet_ort():
            ort_cache = Path(workdir) / "ranges.json"
            write_ort_cache(ranges, ort_cache)
            quantize_static(
                str(fp32_path),
                str(temporary),
                calibration_data_reader=None,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=activation_type,
                weight_type=weight_type,
                nodes_to_exclude=excluded,
                calibrate_method=ranges.calibration_method,
                extra_options=preset.extra_options(),
                calibration_cache_path=str(ort_cache),
            )
        onnx.checker.check_model(onnx.load(str(temporary)))
    except Exception as error:  # ORT's quantizer and onnx's checker raise their own types
        temporary.unlink(missing_ok=True)
        raise EdgecnnError(f"quantizing {fp32_path.name} failed: {first_line(error)}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def quantize_for_timing(fp32_path: str | Path, output_path: str | Path, target: str = "cpu") -> Path:
    """A Q/DQ INT8 copy of ``fp32_path`` in ``target``'s form, calibrated on two seeded random batches.

    For timing only (the profiler's host measurement): latency does not depend on the calibration values, and
    unlike :func:`quantize_onnx` it takes graphs with any inputs, not just one NCHW image.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        quantize_static,
    )

    preset = PRESETS[target]
    shapes = {
        name: [d if isinstance(d, int) and d > 0 else 1 for d in dims]
        for name, dims in input_dims(onnx.load(str(fp32_path), load_external_data=False)).items()
    }
    rng = np.random.default_rng(0)
    batches = [
        {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()} for _ in range(2)
    ]

    class RandomInputs(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    activation_type, weight_type = preset.quant_types()
    with quiet_ort():
        quantize_static(
            str(fp32_path),
            str(output_path),
            RandomInputs(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=activation_type,
            weight_type=weight_type,
        )
    return Path(output_path)


@dataclass
class ExportLocation:
    """Where an INT8 artifact comes from and goes: the FP32 model, the output file, the manifest to update."""

    fp32_path: Path
    output_path: Path
    manifest_dir: Path | None


def locate(model: str | Path, target: str, output: str | Path | None = None) -> ExportLocation:
    """Resolve an export directory or .onnx file to the FP32 model and the INT8 file for ``target``.

    In an export directory (or for the FP32 file its manifest lists) the INT8 file is
    ``<dir>/<model>.int8-<target>.onnx`` and the manifest is updated; a bare .onnx gets its INT8 file beside it.
    """
    if target not in PRESETS:
        raise UsageError(f"unknown INT8 target {target!r}: choose {' or '.join(TARGETS)}")
    path = Path(model)
    if not path.exists():
        raise UsageError(f"{path} does not exist: give an ONNX file or an export directory")
    manifest, directory = None, None
    if path.is_dir():
        directory, manifest = path, read_manifest(path)
        entry = next((a for a in manifest.get("artifacts", []) if a.get("format") == "onnx-fp32"), None)
        if entry is None:
            raise UsageError(f"{path}/{MANIFEST_NAME} lists no onnx-fp32 artifact to quantize: re-run edgecnn export")
        fp32_path = path / entry["file"]
    elif path.suffix == ".onnx":
        fp32_path = path
        if (path.parent / MANIFEST_NAME).is_file():
            candidate = read_manifest(path.parent)
            if any(
                a.get("format") == "onnx-fp32" and a.get("file") == path.name for a in candidate.get("artifacts", [])
            ):
                directory, manifest = path.parent, candidate
    else:
        raise UsageError(f"{path} is neither an .onnx file nor an export directory")
    name = manifest["model"]["name"] if manifest else model_name_of(fp32_path.name)
    output_path = Path(output) if output else fp32_path.parent / artifact_name(name, PRESETS[target].format_key)
    if output_path.resolve() == fp32_path.resolve():
        raise UsageError(f"the INT8 output would overwrite the FP32 model {fp32_path}: give another --output")
    in_directory = directory is not None and output_path.parent.resolve() == directory.resolve()
    return ExportLocation(fp32_path, output_path, directory if in_directory else None)


def record_in_manifest(location: ExportLocation, result: QuantizationResult) -> None:
    """Add (or replace) the INT8 artifact's entry in the export directory's manifest.json, atomically."""
    if location.manifest_dir is None:
        return
    manifest = read_manifest(location.manifest_dir)
    entry = result.manifest_entry()
    manifest["artifacts"] = [a for a in manifest.get("artifacts", []) if a.get("format") != entry["format"]] + [entry]
    write_bytes_atomic(location.manifest_dir / MANIFEST_NAME, manifest_json(manifest).encode())


def quantize_export(
    model: str | Path,
    *,
    target: str = "cpu",
    output: str | Path | None = None,
    cache: str | Path | None = "auto",
    **options,
) -> QuantizationResult:
    """Quantize an export directory (or a .onnx file) and record the INT8 artifact in its manifest.json.

    See :func:`locate` for where the file goes; ``options`` are those of :func:`quantize_onnx` (an INT8 file
    made from other inputs is replaced only with ``force=True``). The manifest is rewritten atomically and
    keeps every other artifact's entry.
    """
    location = locate(model, target, output)
    result = quantize_onnx(location.fp32_path, location.output_path, target=target, cache=cache, **options)
    record_in_manifest(location, result)
    return result


@dataclass
class Int8Step:
    """The INT8 artifact of an export, made from its FP32 model while the export is still staged.

    ``edgecnn export --int8`` passes one to :func:`edgecnn.export.export_model` (``steps=``): the options of
    :func:`quantize_onnx`, with the target chosen by :func:`choose_target`; ``progress(done, total)``
    follows calibration.
    """

    target: str | None = None
    device: str | None = None
    calibration: str | Path = "builtin"
    samples: int = DEFAULT_SAMPLES
    method: str = DEFAULT_METHOD
    percentile: float = DEFAULT_PERCENTILE
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    seed: int = DEFAULT_SEED
    progress: Callable[[int, int], None] | None = None

    def __post_init__(self) -> None:
        choose_target(self.target, self.device)

    def __call__(self, fp32_path: Path, preprocessing: dict[str, Any], staging: Path) -> AddedArtifact:
        target, reason = choose_target(self.target, self.device)
        name = fp32_path.name.removesuffix(get_format("onnx-fp32").suffix)
        result = quantize_onnx(
            fp32_path,
            staging / artifact_name(name, PRESETS[target].format_key),
            calibration=self.calibration,
            target=target,
            method=self.method,
            percentile=self.percentile,
            per_channel=self.per_channel,
            exclude=self.exclude,
            samples=self.samples,
            seed=self.seed,
            cache="auto",
            preprocessing=preprocessing,
            progress=self.progress,
        )
        return AddedArtifact(
            result.format_key, result.path, result.manifest_entry(), result, (f"INT8 target {target} ({reason})",)
        )
