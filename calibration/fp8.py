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
- FLOAT8E4M3FN needs QuantizeLinear/DequantizeLinear from opset 19, so the import step upgrades the graph
  with onnx's version converter first.

FP8 is a preset of :func:`edgecnn.calibration.quantize_onnx` (``precision="fp8"``): the same import step
(which upgrades the graph to opset 19), ranges, memory plan, held-out check, size verdict and written-graph counts
as INT8. This module holds only what is FP8's own: the scales and the arguments ORT's quantizer needs for them.
ONNX Runtime 1.32's ``quantize_static`` takes ``QuantType.QFLOAT8E4M3FN`` but only with its ``Distribution``
calibration, which sets each scale from the tensor's standard deviation (a Gaussian fit), not amax/448. So the
ranges edgecnn computed are handed over as ``Distribution`` data, and every activation and weight scale as
``TensorQuantOverrides`` (:func:`fp8_quantize_arguments`); ORT places the Q/DQ nodes exactly as for the INT8
``tensorrt`` form.

Measured here: ONNX Runtime's CPU execution provider runs these FP8 Q/DQ graphs (opset 19, per-channel
DequantizeLinear on FLOAT8E4M3FN weights), so accuracy is measured on the CPU (bench/accuracy_table.py); at
optimization level ``basic`` (the format table's level): at ``extended``/``all`` ORT 1.32's ClipQuantFusion
fails to load graphs with a Clip (ReLU6) before an FP8 QuantizeLinear (MobileNet v1: "GetQConstantLowerUpper"),
while on LeNet-5 (no Clip) disable, basic and all gave the same 29.4 dB output SQNR.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

__all__ = ["FP8_FORMAT", "FP8_MAX", "FP8_OPSET", "FP8_DEFAULT_METHOD", "fp8_tensor_overrides", "fp8_quantize_arguments"]

FP8_FORMAT = "onnx-fp8-tensorrt"
FP8_MAX = 448.0
"""The largest finite FLOAT8E4M3FN value: TensorRT clips x / s to [-448, 448]."""
FP8_OPSET = 19
FP8_DEFAULT_METHOD = "minmax"
_WEIGHT_AXIS = {"Conv": lambda node, rank: 0, "ConvTranspose": lambda node, rank: 1}


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


def fp8_tensor_overrides(model: onnx.ModelProto, ranges, per_channel: bool) -> dict[str, list[dict[str, Any]]]:
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


def fp8_quantize_arguments(model: onnx.ModelProto, ranges, per_channel: bool) -> tuple[Any, dict[str, Any]]:
    """What ``quantize_static`` needs to write FP8 Q/DQ with amax/448 scales from ``ranges`` (an ORT
    ``TensorsData``): the ranges as ``Distribution`` data (the only calibration ORT accepts for FP8; the
    overrides set every scale, so its Gaussian fit is never used) and the ``TensorQuantOverrides`` option."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorsData

    distribution = TensorsData(CalibrationMethod.Distribution, dict(ranges.items()))
    return distribution, {"TensorQuantOverrides": fp8_tensor_overrides(model, ranges, per_channel)}
