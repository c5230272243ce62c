"""FP32 ONNX -> explicit FP8 (E4M3) Q/DQ ONNX for TensorRT on FP8-capable GPUs (Ada, Hopper, Blackwell: Thor).

The form follows TensorRT's documented FP8 rules:

- FP8 quantization is ``castToFp8(clip(x / s, -448, 448))`` with a float scale ``s`` and dequantization
  ``x_q * s`` (TensorRT developer guide, "Quantization Schemes",
  https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-schemes.html): so a
  scale is ``amax / 448`` and the zero point is 0 (the Quantize operator "must only contain zero-valued
  coefficients" in its zero point, and its scale is "a scalar for per-tensor quantization, a 1-D tensor for
  per-channel quantization", https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/operators/Quantize.html).
- Activations per tensor (static scales; only MXFP8 is dynamic, per block), weights per output channel: the
  ONNX FP8 recipe of NVIDIA's TensorRT Model Optimizer, "Per-Tensor Activation and Per-Channel Weights
  quantization (ONNX), Uses Max calibration, GPUs: Ada and Later"
  (https://nvidia.github.io/Model-Optimizer/guides/0_support_matrix.html). Hence the default calibration
  method here is ``minmax`` (amax); the other methods of :mod:`edgecnn.calibration.ranges` also work.
- Weights are stored pre-quantized (FLOAT8E4M3FN initializers behind a DequantizeLinear), which TensorRT's
  explicit quantization accepts ("When using pre-quantized weights, an IDequantizeLayer is required between the
  weights and the linear operator", .../quantized-types-explicit-quantization.html); biases stay float.
- FLOAT8E4M3FN needs QuantizeLinear/DequantizeLinear from opset 19, so the graph is upgraded with onnx's
  version converter first.

ONNX Runtime 1.32's ``quantize_static`` takes ``QuantType.QFLOAT8E4M3FN`` but only with its ``Distribution``
calibration, which sets each scale from the tensor's standard deviation (a Gaussian fit), not amax/448. So
edgecnn computes the ranges itself (the same :func:`~edgecnn.calibration.ranges.compute_ranges` and cache as
INT8) and hands every activation and weight scale to ``quantize_static`` as ``TensorQuantOverrides``; ORT places
the Q/DQ nodes exactly as for the INT8 ``tensorrt`` form.

Measured here: ONNX Runtime's CPU execution provider runs these FP8 Q/DQ graphs (opset 19, per-channel
DequantizeLinear on FLOAT8E4M3FN weights), so accuracy is measured on the CPU (bench/accuracy_table.py); at
optimization level ``basic`` (the format table's level): at ``extended``/``all`` ORT 1.32's ClipQuantFusion
fails to load graphs with a Clip (ReLU6) before an FP8 QuantizeLinear (MobileNet v1: "GetQConstantLowerUpper"),
while on LeNet-5 (no Clip) disable, basic and all gave the same 29.4 dB output SQNR.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgecnn.artifact import AddedArtifact, get_format, sha256_file
from edgecnn.artifact.formats import artifact_name
from edgecnn.artifact.staging import publish
from edgecnn.calibration.cache import CacheKey, read_cache, write_cache
from edgecnn.calibration.data import DEFAULT_SAMPLES, DEFAULT_SEED, CalibrationSet, Preprocessing, load_calibration
from edgecnn.calibration.quantize import (
    CHECK_SAMPLES,
    ExportLocation,
    QuantizationResult,
    TargetPreset,
    _cache_path,
    _check,
    image_input,
    locate,
    record_in_manifest,
    refuse_replacing,
    resolve_excluded,
    resolve_preprocessing,
)
from edgecnn.calibration.ranges import DEFAULT_PERCENTILE, METHODS, compute_ranges, method_key, quiet_ort
from edgecnn.errors import EdgecnnError, UsageError, first_line
from edgecnn.onnx_facts import load_onnx
from edgecnn.onnx_import import is_classifier

__all__ = [
    "FP8_FORMAT",
    "FP8_PRESET",
    "FP8_MAX",
    "FP8_OPSET",
    "FP8_DEFAULT_METHOD",
    "Fp8Result",
    "quantize_fp8",
    "quantize_fp8_export",
    "locate_fp8",
    "Fp8Step",
]

FP8_FORMAT = "onnx-fp8-tensorrt"
FP8_MAX = 448.0
"""The largest finite FLOAT8E4M3FN value: TensorRT clips x / s to [-448, 448]."""
FP8_OPSET = 19
FP8_DEFAULT_METHOD = "minmax"
_WEIGHT_AXIS = {"Conv": lambda node, rank: 0, "ConvTranspose": lambda node, rank: 1}

FP8_PRESET = TargetPreset(
    "tensorrt",
    FP8_FORMAT,
    "float8e4m3fn",
    "float8e4m3fn",
    True,
    False,
    False,
    "FP8 E4M3 per-tensor activations and per-channel weights, scale amax/448, zero point 0, float biases "
    "(TensorRT explicit quantization on FP8 GPUs: Ada, Hopper, Blackwell/Thor)",
)


@dataclass
class Fp8Result(QuantizationResult):
    """What :func:`quantize_fp8` made: an INT8 result's fields and manifest entry, in the FP8 preset."""

    @property
    def preset(self) -> TargetPreset:
        return FP8_PRESET

    def manifest_entry(self) -> dict[str, Any]:
        entry = super().manifest_entry()
        entry["quantization"].update(
            {"precision": "fp8", "scale": f"amax / {FP8_MAX:g}", "opset": FP8_OPSET, "weights_stored": "float8e4m3fn"}
        )
        return entry

    def describe(self) -> str:
        return super().describe().replace("INT8 for tensorrt", "FP8 E4M3 for TensorRT", 1)


def _weight_axis(node: onnx.NodeProto, rank: int) -> int | None:
    """The output-channel axis of ``node``'s weight (input 1), as ORT's QDQ quantizer places it."""
    if node.op_type in _WEIGHT_AXIS:
        return _WEIGHT_AXIS[node.op_type](node, rank)
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul" and rank == 2:
        return 1
    return None


def _overrides(model: onnx.ModelProto, ranges, per_channel: bool) -> dict[str, list[dict[str, Any]]]:
    """ORT ``TensorQuantOverrides``: scale amax/448 and an FP8 zero point 0 for every calibrated activation, and
    per weight (per output channel unless ``per_channel`` is False)."""
    from ml_dtypes import float8_e4m3fn
    from onnx import numpy_helper

    zero = np.array(0, dtype=float8_e4m3fn)

    def scale(amax) -> np.ndarray:
        return np.array(max(float(amax), 1e-12) / FP8_MAX, dtype=np.float32)

    overrides: dict[str, list[dict[str, Any]]] = {
        name: [{"scale": scale(np.max(np.abs(np.asarray(data.range_value, dtype=np.float64)))), "zero_point": zero}]
        for name, data in ranges.items()
    }
    weights = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] not in weights:
            continue
        array = numpy_helper.to_array(weights[node.input[1]])
        axis = _weight_axis(node, array.ndim)
        if axis is None:
            continue
        if per_channel:
            amax = np.abs(array).max(axis=tuple(i for i in range(array.ndim) if i != axis))
            overrides[node.input[1]] = [{"axis": axis, "scale": scale(a), "zero_point": zero} for a in amax]
        else:
            overrides[node.input[1]] = [{"scale": scale(np.abs(array).max()), "zero_point": zero}]
    return overrides


def _upgraded(fp32_path: Path, workdir: Path) -> Path:
    """``fp32_path`` at opset 19 or later (FLOAT8E4M3FN Q/DQ), written to ``workdir`` when it had to change."""
    from onnx import version_converter

    model = load_onnx(fp32_path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= FP8_OPSET:
        return fp32_path
    try:
        upgraded = version_converter.convert_version(model, FP8_OPSET)
        onnx.checker.check_model(upgraded)
    except Exception as error:  # the version converter raises its own types
        raise EdgecnnError(
            f"upgrading {fp32_path.name} from opset {opset} to {FP8_OPSET} for FP8 failed: {first_line(error)}"
        ) from error
    path = workdir / f"opset{FP8_OPSET}.onnx"
    onnx.save(upgraded, str(path))
    return path


def quantize_fp8(
    fp32_path: str | Path,
    output_path: str | Path,
    *,
    calibration: str | Path | CalibrationSet = "builtin",
    method: str = FP8_DEFAULT_METHOD,
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
) -> Fp8Result:
    """Quantize the FP32 ONNX model at ``fp32_path`` to FP8 E4M3 Q/DQ ONNX at ``output_path`` (written atomically).

    The options are those of :func:`edgecnn.calibration.quantize_onnx`; the method defaults to ``minmax``
    (amax, TensorRT's FP8 recipe). The check against FP32 runs the FP8 graph in ONNX Runtime's CPU kernels.
    An existing ``output_path`` made from other inputs is replaced only with ``force`` (as for INT8).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    fp32_path, output_path = Path(fp32_path), Path(output_path)
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}: choose {', '.join(METHODS)}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise UsageError(f"--percentile must be in (0, 100], got {percentile}")
    model = load_onnx(fp32_path)
    input_name, dims = image_input(model, fp32_path)
    if isinstance(calibration, CalibrationSet):
        resolve_preprocessing(fp32_path, dims, calibration.preprocessing)
    else:
        prep = resolve_preprocessing(fp32_path, dims, preprocessing, calibration)
        calibration = load_calibration(calibration, preprocessing=prep, samples=samples, seed=seed)
    excluded = resolve_excluded(model, list(exclude))
    fp32_sha256 = sha256_file(fp32_path)
    if output_path.exists() and not force:
        refuse_replacing(
            output_path,
            {
                "fp32_sha256": fp32_sha256,
                "target": "tensorrt",
                "method": method,
                "percentile": percentile if method == "percentile" else None,
                "per_channel": per_channel,
                "excluded_nodes": excluded,
                "calibration": calibration.sha256,
            },
        )
    key = CacheKey(fp32_sha256, calibration.sha256, method_key(method, percentile))
    cache_path = _cache_path(cache, output_path, calibration, method, percentile)
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{output_path.name}.tmp-", dir=output_path.parent)
        os.close(handle)
    except OSError as error:
        raise UsageError(f"cannot write to {output_path.parent}: {error.strerror or error}") from None
    temporary = Path(name)
    try:
        with tempfile.TemporaryDirectory(prefix="edgecnn-fp8-") as workdir:
            source = _upgraded(fp32_path, Path(workdir))
            started = time.perf_counter()
            ranges = read_cache(cache_path, key) if cache_path is not None else None
            cache_hit = ranges is not None
            if ranges is None:
                ranges = compute_ranges(
                    source,
                    calibration,
                    method=method,
                    percentile=percentile,
                    batch_size=dims[0] if dims[0] is not None else 8,
                    static_batch=dims[0] is not None,
                    progress=progress,
                )
                if cache_path is not None:
                    write_cache(cache_path, key, ranges, calibration.summary())
            calibration_seconds = time.perf_counter() - started
            started = time.perf_counter()
            ort_cache = Path(workdir) / "ranges.json"
            save_tensors_data(TensorsData(CalibrationMethod.Distribution, dict(ranges.items())), ort_cache)
            try:
                with quiet_ort():
                    quantize_static(
                        str(source),
                        str(temporary),
                        calibration_data_reader=None,
                        quant_format=QuantFormat.QDQ,
                        per_channel=per_channel,
                        activation_type=QuantType.QFLOAT8E4M3FN,
                        weight_type=QuantType.QFLOAT8E4M3FN,
                        nodes_to_exclude=excluded,
                        calibrate_method=CalibrationMethod.Distribution,
                        calibration_cache_path=str(ort_cache),
                        extra_options={
                            **FP8_PRESET.extra_options(),
                            "TensorQuantOverrides": _overrides(load_onnx(source), ranges, per_channel),
                        },
                    )
                onnx.checker.check_model(onnx.load(str(temporary)))
            except Exception as error:  # ORT's quantizer and onnx's checker raise their own types
                raise EdgecnnError(f"FP8 quantization of {fp32_path.name} failed: {first_line(error)}") from error
        check = _check(
            fp32_path,
            temporary,
            calibration.head(min(check_samples, len(calibration))),
            [input_name],
            dims[0] or 1,
            get_format(FP8_FORMAT).cpu_optimization,
            is_classifier(model),
            False,
        )
        if not check["finite"]:
            raise EdgecnnError(
                f"the FP8 model of {fp32_path.name} produced NaN or infinity on calibration samples; "
                "nothing was written"
            )
        publish(temporary, output_path)
    finally:
        temporary.unlink(missing_ok=True)
    return Fp8Result(
        path=output_path,
        fp32_path=fp32_path,
        target="tensorrt",
        method=method,
        percentile=percentile if method == "percentile" else None,
        per_channel=per_channel,
        excluded_nodes=excluded,
        calibration=calibration.summary(),
        calibration_description=calibration.describe(),
        cache_path=cache_path,
        cache_hit=cache_hit,
        calibration_seconds=calibration_seconds,
        quantize_seconds=time.perf_counter() - started,
        fp32_bytes=fp32_path.stat().st_size,
        int8_bytes=output_path.stat().st_size,
        sha256=sha256_file(output_path),
        fp32_sha256=fp32_sha256,
        check=check,
        warnings=list(calibration.warnings),
    )


def locate_fp8(model: str | Path, output: str | Path | None = None) -> ExportLocation:
    """Like :func:`edgecnn.calibration.quantize.locate`, for the FP8 file ``<dir>/<model>.fp8-tensorrt.onnx``."""
    location = locate(model, "tensorrt", output)
    if output is None:
        name = location.output_path.name.removesuffix(get_format("onnx-int8-tensorrt").suffix)
        location.output_path = location.output_path.parent / artifact_name(name, FP8_FORMAT)
    return location


def quantize_fp8_export(
    model: str | Path,
    *,
    output: str | Path | None = None,
    cache: str | Path | None = "auto",
    **options,
) -> Fp8Result:
    """Quantize an export directory (or a .onnx file) to FP8 and record the artifact in its manifest.json."""
    location = locate_fp8(model, output)
    result = quantize_fp8(location.fp32_path, location.output_path, cache=cache, **options)
    record_in_manifest(location, result)
    return result


@dataclass
class Fp8Step:
    """The FP8 artifact of an export (``edgecnn export --fp8``), made while the export is still staged."""

    calibration: str | Path = "builtin"
    samples: int = DEFAULT_SAMPLES
    method: str = FP8_DEFAULT_METHOD
    percentile: float = DEFAULT_PERCENTILE
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    seed: int = DEFAULT_SEED
    progress: Callable[[int, int], None] | None = None

    def __call__(
        self, fp32_path: Path, preprocessing: dict[str, Any], staging: Path, *, random_weights: bool = False
    ) -> AddedArtifact:
        name = fp32_path.name.removesuffix(get_format("onnx-fp32").suffix)
        result = quantize_fp8(
            fp32_path,
            staging / artifact_name(name, FP8_FORMAT),
            calibration=self.calibration,
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
        return AddedArtifact(FP8_FORMAT, result.path, result.manifest_entry(), result, ("FP8 E4M3 for TensorRT",))
