"""FP32 ONNX -> Q/DQ INT8 or FP8 ONNX through ONNX Runtime's ``quantize_static``, shaped for the target that
runs it.

INT8 targets (:data:`PRESETS`):

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

FP8 (:data:`FP8_PRESETS`, ``precision="fp8"``): E4M3 Q/DQ for TensorRT on FP8 GPUs, made by the same
:func:`quantize_onnx` (import step, ranges, memory plan, held-out check, size verdict, written-graph counts); only
its scales (amax/448) and the arguments ORT's quantizer takes for them are its own (:mod:`edgecnn.calibration.fp8`).

Ranges come from :func:`edgecnn.calibration.ranges.compute_ranges` (bounded memory) or a matching cache
(:mod:`edgecnn.calibration.cache`), and reach ``quantize_static`` through its ``calibration_cache_path``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import math
import os
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from edgecnn.calibration.builtin import domain_note
from edgecnn.calibration.cache import CacheKey, read_cache, shared_cache_path, write_cache, write_ort_cache
from edgecnn.calibration.data import (
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    CalibrationSet,
    InputsSet,
    Preprocessing,
    feeds_images,
    image_input,
    load_calibration,
    load_inputs,
)
from edgecnn.calibration.fp8 import FP8_DEFAULT_METHOD, FP8_FORMAT, FP8_MAX, FP8_OPSET, fp8_quantize_arguments
from edgecnn.calibration.memory import CalibrationPlan, plan_calibration
from edgecnn.calibration.ranges import (
    DEFAULT_PERCENTILE,
    METHODS,
    compute_ranges,
    method_key,
    quiet_ort,
)
from edgecnn.calibration.reader import CalibrationReader
from edgecnn.calibration.search import fewest_float_layers
from edgecnn.calibration.sensitivity import ANALYZE_SAMPLES, analyze
from edgecnn.devices import get_device
from edgecnn.errors import EdgecnnError, UsageError, first_line
from edgecnn.fidelity import compare
from edgecnn.onnx_facts import input_dims, load_onnx, model_sha256, onnx_files, save_onnx
from edgecnn.onnx_import import import_onnx, is_classifier, model_opset, parameter_count
from edgecnn.options import parse_memory_size
from edgecnn.runtime import cpu_session_optimization, create_session

__all__ = [
    "TARGETS",
    "PRESETS",
    "FP8_PRESETS",
    "QUANTIZED_PRECISIONS",
    "preset_for",
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
    "QuantizeStep",
    "image_input",
    "resolve_preprocessing",
    "ExportLocation",
    "locate",
    "record_in_manifest",
    "qdq_graph_facts",
    "DEFAULT_MIN_SQNR_DB",
]

TARGETS = ("cpu", "tensorrt")
DEFAULT_METHOD = "percentile"
CHECK_SAMPLES = 16
PER_CHANNEL_OPSET = 13
QDQ_OPSET = 10
DEFAULT_MIN_SQNR_DB = 15.0
"""Below this output SQNR (worst output, FP32 against INT8 on held-out samples) quantize warns loudly and
``--strict`` refuses: 15 dB is a noise power of 3% of the signal's. Healthy INT8 conv nets measure 20-35 dB
here (bench/results/calibration.md, bench/results/outside_models.md); the failures of issue 12 measured
1.6 dB (weights quantized as activations) and -15.6 dB (wrong normalization)."""
SIZE_LIMIT = 0.35
SIZE_CHECK_PARAMETERS = 1_000_000


class QuantizationWarning(UserWarning):
    """The INT8 (or FP8) model was made, but with a setting known to cost accuracy."""


@dataclass(frozen=True)
class TargetPreset:
    """How one precision is laid out for one target: ORT's quantizer settings and the artifact format.

    ``opset``: the opset the form needs whatever the weights (FP8's FLOAT8E4M3FN Q/DQ: 19), upgraded to in
    the import step; None where only per-channel weights need one (INT8: 13, see ``opset_upgrade``)."""

    name: str
    format_key: str
    activation_type: str
    weight_type: str
    symmetric_activations: bool
    quantize_bias: bool
    reduce_range: bool | None
    description: str
    precision: str = "int8"
    opset: int | None = None
    default_method: str = DEFAULT_METHOD

    @property
    def cpu_optimization(self) -> str:
        return get_format(self.format_key).cpu_optimization

    @property
    def label(self) -> str:
        """The precision as messages name it: INT8, FP8."""
        return self.precision.upper()

    def quant_types(self):
        from onnxruntime.quantization import QuantType

        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8, "float8e4m3fn": QuantType.QFLOAT8E4M3FN}
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
"""The INT8 presets, by target."""

FP8_PRESETS: dict[str, TargetPreset] = {
    "tensorrt": TargetPreset(
        "tensorrt",
        FP8_FORMAT,
        "float8e4m3fn",
        "float8e4m3fn",
        True,
        False,
        False,
        "FP8 E4M3 per-tensor activations and per-channel weights, scale amax/448, zero point 0, float biases "
        "(TensorRT explicit quantization on FP8 GPUs: Ada, Hopper, Blackwell/Thor)",
        precision="fp8",
        opset=FP8_OPSET,
        default_method=FP8_DEFAULT_METHOD,
    ),
}
"""The FP8 presets, by target: TensorRT only (ONNX Runtime's CPU kernels run FP8 Q/DQ, but only to measure it)."""

QUANTIZED_PRECISIONS: dict[str, dict[str, TargetPreset]] = {"int8": PRESETS, "fp8": FP8_PRESETS}


def preset_for(precision: str, target: str) -> TargetPreset:
    """The preset of ``precision`` (int8, fp8) for ``target``; a usage error naming the choices otherwise."""
    presets = QUANTIZED_PRECISIONS.get(precision)
    if presets is None:
        raise UsageError(f"unknown quantized precision {precision!r}: choose {' or '.join(QUANTIZED_PRECISIONS)}")
    if target not in presets:
        raise UsageError(
            f"unknown {precision.upper()} target {target!r}: choose {' or '.join(presets)}"
            + (" (FP8 Q/DQ runs in TensorRT on FP8 GPUs)" if precision == "fp8" else "")
        )
    return presets[target]


def choose_target(target: str | None, device: str | None, precision: str = "int8") -> tuple[str, str]:
    """(target, why): ``target`` wins (--target), else ``device`` decides (--device), else cpu; FP8 has one
    target, tensorrt."""
    if target is not None:
        preset_for(precision, target)
        return target, "from --target"
    if precision == "fp8":
        return "tensorrt", "FP8 runs in TensorRT on FP8 GPUs (edgecnn check --precision fp8)"
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
    quantized_bytes: int
    sha256: str
    fp32_sha256: str
    check: dict[str, Any]
    weight_bits: int = 8
    weight_range_sqnr_db: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    graph: dict[str, Any] = field(default_factory=dict)
    low_sqnr: list[str] = field(default_factory=list)
    plan: CalibrationPlan | None = None
    fallback: dict[str, Any] | None = None
    precision: str = "int8"

    @property
    def preset(self) -> TargetPreset:
        return preset_for(self.precision, self.target)

    @property
    def format_key(self) -> str:
        return self.preset.format_key

    @property
    def size_ratio(self) -> float:
        return self.quantized_bytes / self.fp32_bytes

    def manifest_entry(self) -> dict[str, Any]:
        from onnxruntime import __version__ as ort_version

        preset = self.preset
        entry = {
            "format": preset.format_key,
            "file": self.path.name,
            "sha256": self.sha256,
            "size_bytes": self.quantized_bytes,
            "verification": [],
            "quantization": {
                "target": self.target,
                "method": self.method,
                "percentile": self.percentile,
                "per_channel": self.per_channel,
                "activations": (
                    f"{preset.activation_type} {'symmetric' if preset.symmetric_activations else 'asymmetric'}"
                ),
                "weights": self.weights_text(),
                "graph": self.graph,
                "weight_range_output_sqnr_db": self.weight_range_sqnr_db or None,
                "bias": "int32" if preset.quantize_bias else "float",
                "excluded_nodes": list(self.excluded_nodes),
                "calibration": self.calibration,
                "cache": self.cache_path.name if self.cache_path else None,
                "fp32_sha256": self.fp32_sha256,
                "size_vs_fp32": round(self.size_ratio, 4),
                "check": self.check,
                "fallback": self.fallback,
                "onnxruntime": ort_version,
                "onnxruntime_cpu_optimization": preset.cpu_optimization,
            },
        }
        if self.precision == "fp8":
            entry["quantization"].update(
                {
                    "precision": "fp8",
                    "scale": f"amax / {FP8_MAX:g}",
                    "opset": preset.opset,
                    "weights_stored": "float8e4m3fn",
                }
            )
        return entry

    def weights_text(self) -> str:
        """The weights as the written graph holds them (counted, not taken from the settings)."""
        facts, preset = self.graph, self.preset
        if not facts:
            form = "per-channel" if self.per_channel else "per-tensor"
            return f"{preset.weight_type} symmetric {form}" + (", 7-bit range" if self.weight_bits == 7 else "")
        quantized, channel = facts["quantized_weights"], facts["per_channel_weights"]
        form = "per-channel" if channel == quantized else "per-tensor" if channel == 0 else f"{channel} per-channel"
        stored = " and ".join(facts.get("quantized_weight_types") or {}) or preset.weight_type
        text = f"{quantized} {stored} symmetric {form}" + (", 7-bit range" if self.weight_bits == 7 else "")
        if facts["float_weights"]:
            text += f"; {facts['float_weights']} float ({facts['float_weight_bytes'] / 1e6:.2f} MB)"
        return text

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
        what = "FP8 E4M3 for TensorRT" if self.precision == "fp8" else f"INT8 for {self.target}"
        return f"{what} ({method}{cache}), calibrated on {self.calibration_description}"


def _listing_manifest(fp32_path: Path) -> dict[str, Any] | None:
    """The export manifest next to ``fp32_path`` when that manifest lists the file."""
    if not (fp32_path.parent / MANIFEST_NAME).is_file():
        return None
    manifest = read_manifest(fp32_path.parent)
    if not any(entry.get("file") == fp32_path.name for entry in manifest.get("artifacts", [])):
        return None
    return manifest


def _manifest_preprocessing(fp32_path: Path, manifest: dict[str, Any] | None = None) -> Preprocessing | None:
    """The preprocessing of the export manifest next to ``fp32_path`` when that manifest lists the file
    (``manifest``: that manifest, already read)."""
    manifest = manifest if manifest is not None else _listing_manifest(fp32_path)
    if manifest is None:
        return None
    return Preprocessing.from_manifest(manifest.get("preprocessing") or {}, str(fp32_path.parent / MANIFEST_NAME))


RANDOM_WEIGHTS_NOTE = (
    "the weights are random (a zoo model exported without --weights): only the whole-tensor SQNR floor is judged "
    "and nothing is kept in float, since agreement on a task it was never trained for measures nothing (the "
    "per-channel figures are recorded)"
)


UNDECLARED_HINT = (
    "declare how images become its inputs with --mean R,G,B --std R,G,B (or --scale 1/255), --channel-order RGB|BGR "
    "and --resize N (or export it first with them: edgecnn export FILE.onnx --mean ...), or calibrate from a .npz "
    "of model inputs"
)


def resolve_preprocessing(
    fp32_path: Path, dims: list[int | None], preprocessing, source: object = "builtin"
) -> Preprocessing:
    """The preprocessing calibration uses: given, else the export manifest's; checked against the model's dims.

    A file with neither is never fed guessed (ImageNet) preprocessing: calibrating it from images
    (``source`` builtin, a folder, a uint8 array) is refused with the options that declare it; from model
    inputs (a float array, ``"synthetic"``) only the input's shape matters, so a neutral one is used.
    """
    if isinstance(preprocessing, Mapping):
        preprocessing = Preprocessing.from_manifest(preprocessing, "preprocessing")
    if preprocessing is None:
        preprocessing = _manifest_preprocessing(fp32_path)
    if preprocessing is None:
        if feeds_images(source):
            raise UsageError(
                f"{fp32_path.name} has no export manifest, so its preprocessing is unknown: {UNDECLARED_HINT}"
            )
        channels, height, width = dims[1:]
        if None in (channels, height, width):
            raise UsageError(
                f"{fp32_path} has dynamic input dimensions {dims} and no manifest: "
                "give the input size (--input-size HxW or --input-shape)"
            )
        preprocessing = Preprocessing.declare((height, width), channels)
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
    output_path: str | Path,
    calibration_sha256: str,
    method: str,
    percentile: float = DEFAULT_PERCENTILE,
    precision: str = "int8",
) -> Path:
    """Where ``cache="auto"`` keeps ranges: beside the quantized file, named by calibration set and method.

    FP8's ranges are of the graph upgraded to opset 19, another graph than INT8's, so they get their own
    file (``<model>.calib-fp8-<method>-<digest>.json``) rather than a clash with INT8's cache of that method."""

    output_path = Path(output_path)
    digest = hashlib.sha256(f"{calibration_sha256}/{method_key(method, percentile)}".encode()).hexdigest()[:12]
    kind = "" if precision == "int8" else f"{precision}-"
    return output_path.parent / f"{model_name_of(output_path.name)}.calib-{kind}{method}-{digest}.json"


def _cache_path(
    cache, output_path: Path, calibration: CalibrationSet, method: str, percentile: float, precision: str = "int8"
) -> Path | None:
    if cache is None or cache is False:
        return None
    if cache == "auto":
        return auto_cache_path(output_path, calibration.sha256, method, percentile, precision)
    return Path(cache)


def _check(
    fp32_path: Path,
    int8_path: Path,
    calibration: CalibrationSet | InputsSet,
    input_names: list[str],
    batch: int,
    optimization: str,
    classifier: bool,
    held_out: bool,
    *,
    task: str | Mapping[str, str] = "auto",
    budgets: Mapping[str, float] | None = None,
    label: str = "INT8",
    min_sqnr: float = DEFAULT_MIN_SQNR_DB,
    judge_task: bool = True,
) -> dict[str, Any]:
    """The quantized model against FP32 on ``calibration`` (the held-out samples), through
    :func:`edgecnn.fidelity.compare`: every output's SQNR, cosine, max error and worst per-channel SQNR, and the
    task it serves measured label-free (top-1 agreement, detections kept, CTC strings, pixels) against its
    budget (``task_met``; not judged when ``judge_task`` is off: a model with random weights has no task).
    Every output's whole-tensor SQNR must also reach the ``min_sqnr`` floor. ``met``: both held;
    ``output_sqnr_db`` is the worst output's whole-tensor SQNR."""
    count = len(calibration)
    sessions = [create_session(fp32_path), create_session(int8_path, optimization=optimization)]
    names = [o.name for o in sessions[0].get_outputs()]
    outputs: list[dict[str, list[np.ndarray]]] = [{n: [] for n in names}, {n: [] for n in names}]
    reader = CalibrationReader(calibration, input_names, batch, static_batch=True)
    for feed in reader:
        for session, collected in zip(sessions, outputs):
            for name, value in zip(names, session.run(None, feed)):
                collected[name].append(value)
    if classifier and task == "auto":
        task = "classify"
    report = compare(outputs[0], outputs[1], batch=batch, samples=count, task=task, budgets=budgets, label=label)
    per_output = {
        o.name: {
            "task": o.task,
            "sqnr_db": o.sqnr_db,
            "worst_channel_sqnr_db": o.worst_channel_sqnr_db,
            "cosine": o.cosine,
            "max_abs_error": o.max_abs_error,
            "finite": o.finite,
            o.metric: o.value,
        }
        for o in report.outputs
    }
    agreement = next((o.metrics["top1_agreement"] for o in report.outputs if o.task == "classify"), None)
    floor = [
        f"{o.name}: whole-tensor SQNR {o.sqnr_db:.1f} dB below {min_sqnr:g} dB (--min-sqnr)"
        for o in report.outputs
        if o.sqnr_db < min_sqnr
    ]
    task_misses = report.misses if judge_task else []
    return {
        "samples": count,
        "data": "held-out calibration samples" if held_out else "calibration samples (not held out)",
        "top1_agreement": agreement,
        "output_sqnr_db": min(o.sqnr_db for o in report.outputs),
        "worst_channel_sqnr_db": min(
            (o.worst_channel_sqnr_db for o in report.outputs if o.worst_channel_sqnr_db is not None), default=None
        ),
        "outputs": per_output,
        "finite": all(o.finite for o in report.outputs),
        "task_judged": judge_task,
        "note": None if judge_task else RANDOM_WEIGHTS_NOTE,
        "task_met": not task_misses,
        "met": not task_misses and not floor,
        "misses": task_misses + floor,
        "fidelity": report.as_dict(),
        "onnxruntime_optimization": optimization,
    }


WEIGHT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,), "MatMul": (1,), "LSTM": (1, 2), "GRU": (1, 2)}
WEIGHT_INPUTS["RNN"] = (1, 2)
"""Where the weights of the ops that carry them sit, by input index."""


def qdq_graph_facts(model: onnx.ModelProto) -> dict[str, Any]:
    """What a written Q/DQ graph (INT8 or FP8) holds, counted from the graph itself: weights stored quantized
    behind a DequantizeLinear (how many per channel, and their stored element types), weights left in float
    (their bytes and the nodes reading them), Q/DQ node counts."""
    initializers = {t.name: t for t in model.graph.initializer}
    producers = {name: node for node in model.graph.node for name in node.output}
    quantized, per_channel, float_weights, float_bytes = 0, 0, 0, 0
    stored: Counter[str] = Counter()
    float_nodes: list[str] = []
    for node in model.graph.node:
        has_float = False
        for index in WEIGHT_INPUTS.get(node.op_type, ()):
            if index >= len(node.input) or not node.input[index]:
                continue
            name = node.input[index]
            producer = producers.get(name)
            if name in initializers and initializers[name].data_type in (
                onnx.TensorProto.FLOAT,
                onnx.TensorProto.FLOAT16,
            ):
                tensor = initializers[name]
                float_weights += 1
                float_bytes += int(np.prod(tensor.dims)) * (4 if tensor.data_type == onnx.TensorProto.FLOAT else 2)
                has_float = True
            elif producer is not None and producer.op_type == "DequantizeLinear" and producer.input[0] in initializers:
                quantized += 1
                stored[onnx.TensorProto.DataType.Name(initializers[producer.input[0]].data_type).lower()] += 1
                scale = initializers.get(producer.input[1])
                if scale is not None and int(np.prod(scale.dims)) > 1:
                    per_channel += 1
        if has_float:
            float_nodes.append(node.name or node.output[0])
    ops = Counter(node.op_type for node in model.graph.node)
    return {
        "quantized_weights": quantized,
        "per_channel_weights": per_channel,
        "quantized_weight_types": dict(sorted(stored.items())),
        "float_weights": float_weights,
        "float_weight_bytes": float_bytes,
        "float_nodes": float_nodes,
        "quantize_nodes": ops["QuantizeLinear"],
        "dequantize_nodes": ops["DequantizeLinear"],
    }


def _opset_gate(
    model: onnx.ModelProto, path: Path, per_channel: bool, opset_upgrade: bool, required: int | None = None
) -> int | None:
    """The opset to upgrade to (None: none needed); a one-line error, before any calibration, when the
    model's opset is too old for the Q/DQ form asked and ``opset_upgrade`` is off. ``required``: the opset
    the precision's form needs (FP8: 19), always upgraded to, as no Q/DQ of that type exists before it."""
    opset = model_opset(model)
    if required is not None:
        return required if opset < required else None
    needed = PER_CHANNEL_OPSET if per_channel else QDQ_OPSET
    if opset >= needed:
        return None
    if opset_upgrade:
        return PER_CHANNEL_OPSET
    if per_channel:
        raise UsageError(
            f"{path.name} uses opset {opset}; per-channel INT8 weights need opset {PER_CHANNEL_OPSET} "
            "(DequantizeLinear's axis): pass --opset-upgrade to upgrade it through the import step, "
            "or --per-tensor"
        )
    raise UsageError(
        f"{path.name} uses opset {opset}; Q/DQ INT8 needs opset {QDQ_OPSET}: pass --opset-upgrade to upgrade it "
        "through the import step"
    )


def _import_shapes(
    model: onnx.ModelProto, given: Mapping[str, Sequence[int]] | Sequence[int] | None, size: tuple[int, int] | None
) -> tuple[dict[str, list[int]], list[str]]:
    """The shapes to fix every input to, and the inputs whose batch nobody gave (calibrated at batch 1, left
    dynamic in the INT8 file where the graph allows). ``given``: name -> dims (``*`` for the single input,
    0 for "the batch", as :func:`edgecnn.options.parse_input_shape` writes them) or one input's dims;
    ``size``: the (H, W) preprocessing gives, for an image input with dynamic height and width."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if given is not None and not isinstance(given, Mapping):
        given = {"*": list(given)}
    given = dict(given or {})
    if "*" in given:
        if len(inputs) != 1:
            raise UsageError(
                f"the model has {len(inputs)} inputs ({', '.join(v.name for v in inputs)}): name each shape, "
                f"e.g. --input-shape {inputs[0].name}=DIMS"
            )
        given[inputs[0].name] = given.pop("*")
    shapes, free = {}, []
    for value in inputs:
        declared = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 0 for d in value.type.tensor_type.shape.dim
        ]
        dims = list(given.get(value.name, declared))
        if len(dims) == len(declared):
            dims = [g or d for g, d in zip(dims, declared)]
        if size is not None and len(dims) == 4 and len(inputs) == 1:
            dims[2], dims[3] = dims[2] or size[0], dims[3] or size[1]
        if dims and dims[0] == 0:
            dims[0] = 1
            free.append(value.name)
        if 0 in dims:
            continue
        shapes[value.name] = dims
    return shapes, free


def _restore_free_batch(path: Path, source: onnx.ModelProto, names: list[str], batch_dims: dict[str, Any]) -> bool:
    """Give the inputs in ``names`` back their dynamic batch in the INT8 file at ``path`` when the graph
    still runs at batch 2 that way (folding may have baked the batch into a Reshape); True when it did."""
    if not names:
        return False
    model = onnx.load(str(path))
    for value in model.graph.input:
        if value.name in names:
            dim = value.type.tensor_type.shape.dim[0]
            dim.Clear()
            dim.dim_param = batch_dims.get(value.name) or "batch"
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        original = next((o for o in source.graph.output if o.name == value.name), None)
        if original is not None and len(original.type.tensor_type.shape.dim) == len(dims):
            first = original.type.tensor_type.shape.dim[0]
            if not first.HasField("dim_value"):
                dims[0].Clear()
                dims[0].dim_param = first.dim_param or "batch"
    model.graph.ClearField("value_info")
    candidate = path.with_name(path.name + ".dynamic")
    try:
        onnx.save_model(model, str(candidate))
        session = create_session(candidate)
        feeds = {}
        for item in session.get_inputs():
            shape = [2 if isinstance(d, str) or d is None else d for d in item.shape]
            feeds[item.name] = np.zeros(shape, np.float32)
        results = session.run(None, feeds)
        expected = [o for o in source.graph.output]
        for value, result in zip(expected, results):
            first = value.type.tensor_type.shape.dim[0] if value.type.tensor_type.shape.dim else None
            if first is not None and not first.HasField("dim_value") and result.shape[:1] != (2,):
                raise ValueError("batch not carried")
    except Exception:  # ONNX Runtime refuses or the batch does not reach the outputs: keep the fixed batch
        candidate.unlink(missing_ok=True)
        return False
    os.replace(candidate, path)
    return True


def _data_bytes(calibration: CalibrationSet | InputsSet) -> int:
    for name in ("images", "inputs"):
        array = getattr(calibration, name, None)
        if array is not None:
            return int(array.nbytes)
    arrays = getattr(calibration, "arrays", None)
    return sum(int(a.nbytes) for a in arrays.values()) if arrays else 0


def quantize_onnx(
    fp32_path: str | Path,
    output_path: str | Path,
    *,
    calibration: str | Path | CalibrationSet | InputsSet = "builtin",
    target: str = "cpu",
    precision: str = "int8",
    method: str | None = None,
    percentile: float = DEFAULT_PERCENTILE,
    per_channel: bool = True,
    exclude: Iterable[str] = (),
    samples: int = DEFAULT_SAMPLES,
    cache: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    check_samples: int = CHECK_SAMPLES,
    input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None = None,
    opset_upgrade: bool = False,
    calib_memory: int | str | None = None,
    min_sqnr: float = DEFAULT_MIN_SQNR_DB,
    strict: bool = False,
    force: bool = False,
    task: str | Mapping[str, str] = "auto",
    budgets: Mapping[str, float] | None = None,
    fallback: bool = True,
    random_weights: bool | None = None,
    shared_cache: bool = False,
) -> QuantizationResult:
    """Quantize the FP32 ONNX model at ``fp32_path`` to Q/DQ INT8 (or FP8) at ``output_path`` (written atomically).

    ``precision`` and ``target`` pick the preset (:func:`preset_for`): INT8 for ``cpu`` or ``tensorrt``, FP8
    E4M3 for ``tensorrt`` (:mod:`edgecnn.calibration.fp8`: scales amax/448, the graph upgraded to opset 19 in
    the import step). Everything below holds for both. ``method`` defaults to the preset's (INT8 percentile,
    FP8 minmax, TensorRT's FP8 recipe).

    The model first goes through :func:`edgecnn.onnx_import.import_onnx`: ``input_shapes`` fixes dynamic
    dimensions (a batch nobody gives is calibrated at 1 and left dynamic in the INT8 file where the graph
    allows), weights stored as Constant nodes or constant subgraphs become initializers and are quantized as
    weights. An opset too old for the Q/DQ form (13 for per-channel weights, 10 per-tensor) is refused before
    calibration unless ``opset_upgrade`` (upgrade to 13 in the import step).

    ``calibration``: for a model with one image input, a directory of images, a .npy/.npz file, ``"builtin"``,
    ``"synthetic"`` or a loaded :class:`CalibrationSet`; for other models a .npz holding one array per input
    name, ``"synthetic"`` or an :class:`InputsSet`. ``preprocessing`` (images) defaults to the manifest.json
    next to ``fp32_path`` (when it lists the file); a file with neither is not calibrated from images (see
    :func:`resolve_preprocessing`). Up to ``check_samples`` samples (a quarter of the set at most) are held
    out of calibration for the check. ``calib_memory``: the calibration memory budget (bytes or "2GB"; default
    :func:`edgecnn.calibration.memory.default_budget`). ``exclude``: node names or globs kept in float.
    ``cache``: a JSON path (reused when its key matches, refused when it does not, written otherwise),
    ``"auto"`` (a file named by the key, next to ``output_path``) or None; with ``shared_cache`` the ranges
    are also looked up in, and written to, :func:`~edgecnn.calibration.cache.shared_cache_path` (a hit
    there is copied to ``cache``). ``progress(done, total)`` follows calibration.

    After quantizing, the INT8 file is checked against FP32 on the held-out samples by
    :func:`edgecnn.fidelity.compare`: each output's task (``task``: ``auto`` recognizes classifiers, YOLO-style
    detection heads, CTC sequences and segmentation maps; or one of :data:`edgecnn.fidelity.TASKS`, or output
    name -> task) measured label-free against its budget (``budgets`` override
    :data:`edgecnn.fidelity.DEFAULT_BUDGETS`; ``min_sqnr`` is the worst per-channel SQNR an unrecognized output
    must keep). When a budget is missed and ``fallback`` is on, the layers :func:`analyze` ranks worst are kept
    in float, as few as meet the budget, in at most :data:`~edgecnn.calibration.search.MAX_ROUNDS`
    quantize-and-check rounds (``result.fallback`` says which layers, what each cost and every round). A budget
    still missed is a loud warning, with ``strict`` an error and nothing written. For a model of more than 1 M
    parameters the size is checked too (above 35% of FP32 it must be explained by weights left in float, else
    it is refused). A model with ``random_weights`` (default: as the manifest beside ``fp32_path`` records) has
    no task to keep: with ``task="auto"`` its outputs are judged as raw tensors. The counts in the result come
    from the written graph. An existing ``output_path`` is replaced only when its manifest entry says it was made
    from the same FP32 model, calibration data and settings, or with ``force`` (see :func:`refuse_replacing`).
    """
    fp32_path, output_path = Path(fp32_path), Path(output_path)
    preset = preset_for(precision, target)
    method = method or preset.default_method
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}: choose {', '.join(METHODS)}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise UsageError(f"--percentile must be in (0, 100], got {percentile}")
    budget = parse_memory_size(calib_memory) if calib_memory is not None else None
    listed = _listing_manifest(fp32_path)
    if random_weights is None:
        random_weights = bool(((listed or {}).get("model") or {}).get("randomly_initialized"))
    original = load_onnx(fp32_path)
    upgrade_to = _opset_gate(original, fp32_path, per_channel, opset_upgrade, preset.opset)
    if isinstance(calibration, CalibrationSet):
        preprocessing = calibration.preprocessing
    elif isinstance(preprocessing, Mapping):
        preprocessing = Preprocessing.from_manifest(preprocessing, "preprocessing")
    elif preprocessing is None and listed is not None:
        preprocessing = _manifest_preprocessing(fp32_path, listed)
    size = preprocessing.input_size if isinstance(preprocessing, Preprocessing) else None
    shapes, free_batch = _import_shapes(original, input_shapes, size)
    imported = import_onnx(original, shapes, opset_min=upgrade_to)
    model = imported.model
    collected: list[str] = []
    inputs = [v for v in model.graph.input]
    input_names = [v.name for v in inputs]
    dims0 = {imported.input_shapes[name][0] for name in input_names}
    if len(dims0) != 1:
        raise UsageError(
            f"{fp32_path.name}: the inputs' batch dimensions differ ({imported.input_shapes}); give equal ones"
        )
    batch = dims0.pop()
    image_like = (
        len(inputs) == 1
        and len(imported.input_shapes[input_names[0]]) == 4
        and inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    )
    loaded_here = not isinstance(calibration, (CalibrationSet, InputsSet))
    if isinstance(calibration, CalibrationSet):
        resolve_preprocessing(fp32_path, imported.input_shapes[input_names[0]], calibration.preprocessing)
    elif loaded_here and image_like and not _names_inputs(calibration, input_names):
        prep = resolve_preprocessing(fp32_path, imported.input_shapes[input_names[0]], preprocessing, calibration)
        calibration = load_calibration(calibration, preprocessing=prep, samples=samples + check_samples, seed=seed)
    elif loaded_here:
        per_sample = {name: imported.input_shapes[name][1:] for name in input_names}
        calibration = load_inputs(calibration, per_sample, samples=samples + check_samples, seed=seed)
    held = 0
    if loaded_here:
        extra = len(calibration) - samples
        held = extra if extra > 0 else min(check_samples, len(calibration) // 4)
        collected += [w for w in calibration.warnings if "usable samples, fewer than" not in w]
        calibrate_on = replace(calibration.subset(0, len(calibration) - held), requested=samples)
        check_on = calibration.subset(len(calibration) - held, len(calibration)) if held else calibration.head(1)
        if len(calibrate_on) < samples:
            collected.append(
                f"calibration set {calibration.source} has {len(calibration)} usable samples, fewer than the "
                f"{samples} asked for plus {check_samples} for the check: {len(calibrate_on)} calibrate, {held} "
                "are held out for the check"
            )
    else:
        collected += list(calibration.warnings)
        calibrate_on, check_on = calibration, calibration.head(check_samples)
    domain = domain_note(fp32_path.name, model) if getattr(calibration, "source", None) == "builtin" else None
    if domain:
        collected.append(domain)
        warnings.warn(domain, QuantizationWarning, stacklevel=2)
    excluded = resolve_excluded(model, list(exclude))
    fp32_sha256 = model_sha256(fp32_path)
    if output_path.exists() and not force:
        refuse_replacing(
            output_path,
            {
                "fp32_sha256": fp32_sha256,
                "precision": precision,
                "target": target,
                "method": method,
                "percentile": percentile if method == "percentile" else None,
                "per_channel": per_channel,
                "excluded_nodes": excluded,
                "calibration": calibrate_on.sha256,
            },
        )
    depthwise = depthwise_convs(model)
    if not per_channel and depthwise:
        collected.append(
            f"per-tensor weights on a depthwise network ({len(depthwise)} depthwise convolutions) are a known accuracy "
            "failure (MobileNet v2 top-1 0.1% in Krishnamoorthi 2018): use per-channel weights (the default)"
        )
        warnings.warn(collected[-1], QuantizationWarning, stacklevel=2)

    cache_path = _cache_path(cache, output_path, calibrate_on, method, percentile, precision)
    notes: list[str] = []
    plan = None
    with tempfile.TemporaryDirectory(prefix="edgecnn-int8-") as workdir:
        source_path = Path(workdir) / fp32_path.name
        save_onnx(model, source_path)
        key = CacheKey(model_sha256(source_path), calibrate_on.sha256, method_key(method, percentile))
        started = time.perf_counter()
        ranges = read_cache(cache_path, key) if cache_path is not None else None
        shared_path = shared_cache_path(key) if shared_cache else None
        if ranges is None and shared_path is not None:
            ranges = read_cache(shared_path, key)
            if ranges is not None and cache_path is not None:
                write_bytes_atomic(cache_path, shared_path.read_bytes())
        cache_hit = ranges is not None
        if ranges is None:
            plan = plan_calibration(
                model, batch=batch, data_bytes=_data_bytes(calibration), budget=budget, what=fp32_path.name
            )
            ranges = compute_ranges(
                source_path,
                calibrate_on,
                method=method,
                percentile=percentile,
                batch_size=batch,
                static_batch=True,
                progress=progress,
            )
            for path in (cache_path, shared_path):
                if path is not None:
                    write_cache(path, key, ranges, calibrate_on.summary())
        calibration_seconds = time.perf_counter() - started

        started = time.perf_counter()
        choices = [False, True] if preset.reduce_range is None else [preset.reduce_range]
        made: list[tuple[Path, dict[str, Any], bool]] = []
        classifier = is_classifier(model)
        judge_task = not (random_weights and task == "auto")
        if not judge_task:
            task, classifier, fallback = "raw", False, False

        def quantize_and_check(keep_float: list[str], reduce_range: bool) -> tuple[Path, dict[str, Any], bool]:
            temporary = _quantize_to_temporary(
                source_path, output_path, ranges, preset, per_channel, keep_float, reduce_range, fp32_path.name
            )
            made.append((temporary, {}, reduce_range))
            check = _check(
                source_path,
                temporary,
                check_on,
                input_names,
                batch,
                preset.cpu_optimization,
                classifier,
                held > 0,
                task=task,
                budgets=budgets,
                min_sqnr=min_sqnr,
                judge_task=judge_task,
            )
            made[-1] = (temporary, check, reduce_range)
            return made[-1]

        fallback_report = None
        try:
            candidates = [quantize_and_check(excluded, reduce_range) for reduce_range in choices]
            temporary, check, reduce_range = max(
                candidates, key=lambda m: (m[1]["finite"], m[1]["met"], m[1]["output_sqnr_db"])
            )
            if not check["finite"]:
                raise EdgecnnError(
                    f"the {preset.label} model of {fp32_path.name} produced NaN or infinity on calibration samples; "
                    "nothing was written"
                )
            if not check["task_met"] and fallback:
                temporary, check, fallback_report = _keep_float_until_met(
                    source_path,
                    model,
                    temporary,
                    check,
                    calibrate_on,
                    excluded,
                    lambda keep: quantize_and_check(excluded + keep, reduce_range)[:2],
                )
            elif not check["task_met"] and judge_task:
                notes.append("fallback to float is off (--no-fallback): the task budget stays missed")
            facts = qdq_graph_facts(onnx.load(str(temporary)))
            fp32_bytes, int8_bytes = onnx_files(fp32_path).total_bytes, temporary.stat().st_size
            kept = [row["node"] for row in (fallback_report or {}).get("kept_float", [])]
            collected += _size_verdict(
                fp32_path.name, parameter_count(model), fp32_bytes, int8_bytes, facts, excluded, kept, preset.label
            )
            low = _fidelity_verdict(fp32_path.name, check, strict, preset.label)
            collected += low
            dynamic = {
                v.name: v.type.tensor_type.shape.dim[0].dim_param
                for v in original.graph.input
                if v.name in free_batch and v.type.tensor_type.shape.dim
            }
            if free_batch and not _restore_free_batch(temporary, original, free_batch, dynamic):
                notes.append(
                    f"batch fixed at {batch} in the {preset.label} file: the imported graph does not run at another "
                    "batch"
                )
            publish(temporary, output_path)
        finally:
            for path, _, _ in made:
                path.unlink(missing_ok=True)
        quantize_seconds = time.perf_counter() - started
    range_sqnr = (
        {("7-bit" if r else "8-bit"): c["output_sqnr_db"] for _, c, r in made[: len(choices)]}
        if len(choices) > 1
        else {}
    )
    summary = calibrate_on.summary()
    summary["held_out_for_check"] = held
    summary["import"] = {
        "input_shapes": imported.input_shapes,
        "batch_left_dynamic": [name for name in free_batch if not any("batch fixed" in n for n in notes)],
        "source_opset": imported.source_opset,
        "opset": model_opset(model),
        "notes": imported.notes,
    }
    summary["fallbacks"] = notes
    return QuantizationResult(
        path=output_path,
        fp32_path=fp32_path,
        target=target,
        method=method,
        percentile=percentile if method == "percentile" else None,
        per_channel=facts["per_channel_weights"] > 0,
        excluded_nodes=excluded,
        calibration=summary,
        calibration_description=calibrate_on.describe() + (f", {held} more held out for the check" if held else ""),
        cache_path=cache_path,
        cache_hit=cache_hit,
        calibration_seconds=calibration_seconds,
        quantize_seconds=quantize_seconds,
        fp32_bytes=fp32_bytes,
        quantized_bytes=output_path.stat().st_size,
        sha256=sha256_file(output_path),
        fp32_sha256=fp32_sha256,
        check=check,
        weight_bits=7 if reduce_range else 8,
        weight_range_sqnr_db=range_sqnr,
        warnings=collected + notes,
        graph=facts,
        low_sqnr=low,
        plan=plan,
        fallback=fallback_report,
        precision=precision,
    )


def refuse_replacing(output_path: Path, inputs: Mapping[str, Any]) -> None:
    """Raise a one-line error naming ``--force`` unless the INT8/FP8 file at ``output_path`` was made from
    ``inputs`` (FP32 model, precision, target, calibration data and settings), as the manifest beside it records
    (an entry without a precision is INT8's)."""
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
    recorded["precision"] = quantization.get("precision", "int8")
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


def _names_inputs(source, names: list[str]) -> bool:
    """True when ``source`` is a .npz holding an array named after every model input (the per-input form)."""
    path = Path(str(source))
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as archive:
            return all(name in archive.files for name in names)
    except (OSError, ValueError, EOFError):
        return False


def _size_verdict(
    name: str,
    parameters: int,
    fp32_bytes: int,
    int8_bytes: int,
    facts: dict[str, Any],
    excluded: list[str],
    kept: Sequence[str] = (),
    label: str = "INT8",
) -> list[str]:
    """Nothing when the quantized (``label``: INT8, FP8) file is at most :data:`SIZE_LIMIT` of FP32 (or the
    model is small); a note when weights left in float explain the excess; an error (nothing written) when
    nothing does."""
    ratio = int8_bytes / fp32_bytes
    if parameters <= SIZE_CHECK_PARAMETERS or ratio <= SIZE_LIMIT:
        return []
    unexplained = (int8_bytes - facts["float_weight_bytes"]) / fp32_bytes
    if unexplained > SIZE_LIMIT:
        raise EdgecnnError(
            f"the {label} file of {name} would be {ratio:.0%} of FP32 ({parameters / 1e6:.2f} M parameters, "
            f"{facts['quantized_weights']} weights quantized, {facts['float_weight_bytes'] / 1e6:.2f} MB left in "
            f"float): its weights were not quantized as weights; nothing was written"
        )
    why = [n for n in facts["float_nodes"] if n in excluded]
    fallback = [n for n in facts["float_nodes"] if n in kept and n not in excluded]
    other = [n for n in facts["float_nodes"] if n not in excluded and n not in kept]
    parts = (
        ([f"{len(why)} nodes kept in float by --exclude"] if why else [])
        + ([f"{len(fallback)} nodes kept in float to meet the task budget"] if fallback else [])
        + ([f"{len(other)} nodes whose op the {label} form does not quantize (e.g. {other[0]})"] if other else [])
    )
    return [
        f"the {label} file is {ratio:.0%} of FP32, above {SIZE_LIMIT:.0%}: {facts['float_weight_bytes'] / 1e6:.2f} MB "
        f"of weights stay in float in {' and '.join(parts)}"
    ]


def _fidelity_verdict(name: str, check: dict[str, Any], strict: bool, label: str) -> list[str]:
    """Nothing when every output met its task budget; else one loud warning (``strict``: an error, nothing
    written) naming each miss."""
    if check["met"]:
        return []
    message = (
        f"{label} misses its fidelity budget on {check['samples']} {check['data']}: {'; '.join(check['misses'])}; "
        "the quantized model does not keep what FP32 does (give calibration data from the model's own domain, "
        "try --calib-method, or keep layers in float: 'edgecnn quantize --analyze' ranks them)"
    )
    if strict:
        raise EdgecnnError(f"{name}: {message}; nothing was written (--strict)")
    warnings.warn(message, QuantizationWarning, stacklevel=3)
    return [message]


def _weight_bytes_of(model: onnx.ModelProto, nodes: Iterable[str]) -> dict[str, int]:
    """Float32 bytes of the weights each named node reads (what keeping it in float costs in file size)."""
    initializers = {t.name: t for t in model.graph.initializer}
    wanted, found = set(nodes), {}
    for node in model.graph.node:
        if node.name in wanted:
            found[node.name] = sum(
                4 * int(np.prod(initializers[node.input[i]].dims))
                for i in WEIGHT_INPUTS.get(node.op_type, ())
                if i < len(node.input) and node.input[i] in initializers
            )
    return found


MAX_FLOAT_SHARE = 0.5
"""The fallback keeps at most this share of the ranked layers in float: a model that needs more is no longer a
quantized model, and the budget miss is reported instead (with the default quantization kept)."""


def _keep_float_until_met(
    source_path: Path,
    model: onnx.ModelProto,
    default: Path,
    default_check: dict[str, Any],
    rank_on: CalibrationSet | InputsSet,
    excluded: list[str],
    attempt: Callable[[list[str]], tuple[Path, dict[str, Any]]],
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The label-free fallback: rank layers on calibration samples (:func:`analyze`, worst first), then keep the
    fewest of them in float that meet every task budget (:func:`fewest_float_layers`). Returns the chosen file,
    its check and the report; the default INT8 when no round meets the budget (the verdict then warns).

    Ranking and bounded search follow OpenVINO's AccuracyAwareQuantization / NNCF's
    ``quantize_with_accuracy_control`` (rank layers by their contribution to the error on a ranking subset,
    revert the worst to float until the metric is met), with the metric label-free against FP32 and the
    reverts grouped by doubling and bisection instead of one per round."""
    report: dict[str, Any] = {
        "default": {"met": False, "misses": default_check["misses"], "output_sqnr_db": default_check["output_sqnr_db"]},
        "method": "analyze ranking (worst first), fewest layers kept in float by doubling then bisection",
        "ranked": 0,
        "rounds": [],
        "kept_float": [],
        "met": False,
    }
    ranking = analyze(source_path, default, rank_on, samples=ANALYZE_SAMPLES)
    rows = {row.node: row for row in ranking}
    ranked = [row.node for row in ranking if row.sqnr_db is not None and row.node not in excluded]
    candidates = ranked[: math.ceil(len(ranked) * MAX_FLOAT_SHARE)]
    report["ranked"] = len(ranked)
    report["searched"] = len(candidates)

    def round_of(keep: list[str]) -> tuple[bool, tuple[Path, dict[str, Any]]]:
        path, check = attempt(keep)
        report["rounds"].append(
            {
                "kept_float": len(keep),
                "met": check["task_met"],
                "misses": check["misses"][:1],
                "sqnr_db": check["output_sqnr_db"],
            }
        )
        return check["task_met"], (path, check)

    search = fewest_float_layers(candidates, round_of)
    if not search.met:
        return default, default_check, report
    path, check = search.best.outcome
    costs = _weight_bytes_of(model, search.chosen)
    report["met"] = True
    report["kept_float"] = [
        {
            "node": node,
            "op_type": rows[node].op_type,
            "sqnr_db": rows[node].sqnr_db,
            "output_sqnr_db": rows[node].output_sqnr_db,
            "float_weight_bytes": costs.get(node, 0),
        }
        for node in search.chosen
    ]
    return path, check, report


def _quantize_to_temporary(
    fp32_path: Path,
    output_path: Path,
    ranges,
    preset: TargetPreset,
    per_channel: bool,
    excluded: list[str],
    reduce_range: bool,
    display_name: str | None = None,
) -> Path:
    """``quantize_static`` with precomputed ranges into a temporary file beside ``output_path``
    (renamed once checked); FP8's scales reach it as overrides (:func:`fp8_quantize_arguments`)."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    activation_type, weight_type = preset.quant_types()
    extra_options = preset.extra_options()
    if preset.precision == "fp8":
        ranges, overrides = fp8_quantize_arguments(load_onnx(fp32_path), ranges, per_channel)
        extra_options.update(overrides)
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
                extra_options=extra_options,
                calibration_cache_path=str(ort_cache),
            )
        onnx.checker.check_model(onnx.load(str(temporary)))
    except Exception as error:  # ORT's quantizer and onnx's checker raise their own types
        temporary.unlink(missing_ok=True)
        raise EdgecnnError(f"quantizing {display_name or fp32_path.name} failed: {first_line(error)}") from error
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
    """Where a quantized artifact comes from and goes: the FP32 model, the output file, the manifest to update."""

    fp32_path: Path
    output_path: Path
    manifest_dir: Path | None


def locate(model: str | Path, target: str, output: str | Path | None = None, precision: str = "int8") -> ExportLocation:
    """Resolve an export directory or .onnx file to the FP32 model and the quantized file for ``precision``
    and ``target``.

    In an export directory (or for the FP32 file its manifest lists) the file is named by the format table
    (``<dir>/<model>.int8-<target>.onnx``, ``<dir>/<model>.fp8-tensorrt.onnx``) and the manifest is updated;
    a bare .onnx gets its quantized file beside it.
    """
    preset = preset_for(precision, target)
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
    output_path = Path(output) if output else fp32_path.parent / artifact_name(name, preset.format_key)
    if output_path.resolve() == fp32_path.resolve():
        raise UsageError(f"the {preset.label} output would overwrite the FP32 model {fp32_path}: give another --output")
    in_directory = directory is not None and output_path.parent.resolve() == directory.resolve()
    return ExportLocation(fp32_path, output_path, directory if in_directory else None)


def record_in_manifest(location: ExportLocation, result: QuantizationResult) -> None:
    """Add (or replace) the quantized artifact's entry in the export directory's manifest.json, atomically."""
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
    precision: str = "int8",
    output: str | Path | None = None,
    cache: str | Path | None = "auto",
    **options,
) -> QuantizationResult:
    """Quantize an export directory (or a .onnx file) and record the INT8 (or FP8) artifact in its manifest.json.

    See :func:`locate` for where the file goes; ``options`` are those of :func:`quantize_onnx` (a file
    made from other inputs is replaced only with ``force=True``). The manifest is rewritten atomically and
    keeps every other artifact's entry.
    """
    location = locate(model, target, output, precision)
    result = quantize_onnx(
        location.fp32_path, location.output_path, target=target, precision=precision, cache=cache, **options
    )
    record_in_manifest(location, result)
    return result


@dataclass
class QuantizeStep:
    """The INT8 (or FP8) artifact of an export, made from its FP32 model while the export is still staged.

    ``edgecnn export --int8`` and ``--fp8`` pass one each to :func:`edgecnn.export.export_model` (``steps=``):
    the options of :func:`quantize_onnx`, with the target chosen by :func:`choose_target`;
    ``progress(done, total)`` follows calibration. The ranges are cached beside the
    quantized file and in edgecnn's cache directory (``shared_cache``), so re-running the same export reuses them
    and writes the same bytes.
    """

    target: str | None = None
    device: str | None = None
    precision: str = "int8"
    calibration: str | Path = "builtin"
    samples: int = DEFAULT_SAMPLES
    method: str | None = None
    percentile: float = DEFAULT_PERCENTILE
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    seed: int = DEFAULT_SEED
    progress: Callable[[int, int], None] | None = None
    task: str | dict[str, str] = "auto"
    budgets: dict[str, float] | None = None
    fallback: bool = True

    def __post_init__(self) -> None:
        preset_for(self.precision, choose_target(self.target, self.device, self.precision)[0])

    def __call__(
        self, fp32_path: Path, preprocessing: dict[str, Any], staging: Path, *, random_weights: bool = False
    ) -> AddedArtifact:
        target, reason = choose_target(self.target, self.device, self.precision)
        preset = preset_for(self.precision, target)
        name = fp32_path.name.removesuffix(get_format("onnx-fp32").suffix)
        result = quantize_onnx(
            fp32_path,
            staging / artifact_name(name, preset.format_key),
            calibration=self.calibration,
            target=target,
            precision=self.precision,
            method=self.method,
            percentile=self.percentile,
            per_channel=self.per_channel,
            exclude=self.exclude,
            samples=self.samples,
            seed=self.seed,
            cache="auto",
            shared_cache=True,
            preprocessing=preprocessing,
            progress=self.progress,
            random_weights=random_weights,
            task=self.task,
            budgets=self.budgets,
            fallback=self.fallback,
        )
        note = "FP8 E4M3 for TensorRT" if self.precision == "fp8" else f"INT8 target {target} ({reason})"
        return AddedArtifact(result.format_key, result.path, result.manifest_entry(), result, (note,))
