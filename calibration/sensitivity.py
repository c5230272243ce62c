"""Per-layer quantization error: the ranking the fallbacks to float start from.

:func:`analyze` matches FP32 and INT8 activations with ONNX Runtime's ``qdq_loss_debug`` (which also
matches the weights) and reports, per layer (node), the SQNR of

- ``input_sqnr_db``: each quantized activation the layer reads, FP32 values against the same values
  passed through the Q/DQ pair the INT8 model puts on them (its scale and zero point): the rounding and
  clipping that tensor's range causes, free of the error accumulated upstream (worst input);
- ``weight_sqnr_db``: the layer's float weight against its dequantized INT8 weight (biases, int32, are
  left out);
- ``output_sqnr_db``: the layer's output, FP32 model against INT8 model (errors accumulate with depth).

Layers are ranked worst first by ``sqnr_db``, the smaller of the first two: the noise the layer's own
quantization adds, which keeping that layer in float (``nodes_to_exclude``) removes. The accumulated
``output_sqnr_db`` falls with depth whatever the cause, so it would always point at the classifier; the
local figures point at the culprit (an outlier-stretched range, a per-tensor depthwise weight).

``qdq_loss_debug.collect_activations`` keeps every activation of every sample it is given, so
:func:`analyze` feeds it a few samples at a time and adds up signal and noise energies itself (SQNR over
all samples = 10 log10(sum x^2 / sum (x - y)^2), what ORT's ``compute_signal_to_quantization_noice_ratio``
computes on the concatenation). The INT8 model's own pre-Q/DQ tensor is not a usable reference for the
local figure: where ORT folded a ReLU/Clip into the quantization range, that tensor is the unclipped
convolution output, so the Q/DQ "error" would be the activation function itself.

The fallbacks that keep the worst-ranked layers in float are in :func:`edgecnn.calibration.quantize.quantize_onnx`
(label-free, against a task budget) and :func:`edgecnn.calibration.fallback.auto_fallback` (labelled top-1).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgecnn.calibration.data import CalibrationSet, image_input
from edgecnn.calibration.ranges import quiet_ort
from edgecnn.calibration.reader import CalibrationReader
from edgecnn.onnx_facts import load_onnx

__all__ = [
    "LayerError",
    "analyze",
    "ANALYZE_SAMPLES",
]

ANALYZE_SAMPLES = 8
CHUNK_BYTES = 256 * 2**20


@dataclass
class LayerError:
    node: str
    op_type: str
    tensor: str
    sqnr_db: float | None
    input_sqnr_db: float | None
    weight_sqnr_db: float | None
    output_sqnr_db: float | None


EXACT_DB = 300.0


def _db(signal: float, noise: float) -> float | None:
    """SQNR in dB from energies; None for an all-zero signal, ``EXACT_DB`` when there is no noise at all."""
    if signal <= 0:
        return None
    return min(EXACT_DB, 10 * math.log10(signal / noise)) if noise > 0 else EXACT_DB


def _augment(path: Path, workdir: Path, name: str) -> Path:
    from onnxruntime.quantization.qdq_loss_debug import (
        modify_model_output_intermediate_tensors,
    )

    augmented = workdir / name
    modify_model_output_intermediate_tensors(str(path), str(augmented))
    return augmented


def _activation_qparams(model: onnx.ModelProto) -> dict[str, tuple[float, int, int, int]]:
    """Activation tensor -> (scale, zero point, qmin, qmax) of the QuantizeLinear that quantizes it in the INT8 model
    (integer Q/DQ only: an FP8 tensor has no local figure, its layers rank by weight and output error).

    ORT names the input of a graph output's QuantizeLinear ``<tensor>_QuantizeLinear_Input``; the suffix is
    stripped so the key is the FP32 model's tensor name.
    """
    from onnxruntime.quantization.quant_utils import QUANT_INPUT_SUFFIX

    values = {init.name: init for init in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[1] not in values:
            continue
        scale = onnx.numpy_helper.to_array(values[node.input[1]])
        zero_point = (
            onnx.numpy_helper.to_array(values[node.input[2]])
            if len(node.input) > 2 and node.input[2] in values
            else np.zeros((), np.uint8)
        )
        if scale.size != 1 or not np.issubdtype(zero_point.dtype, np.integer):
            continue
        limits = np.iinfo(zero_point.dtype)
        name = node.input[0].removesuffix(QUANT_INPUT_SUFFIX)
        found[name] = (float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0]), int(limits.min), int(limits.max))
    return found


def _fake_quantize(values: np.ndarray, scale: float, zero_point: int, low: int, high: int) -> np.ndarray:
    """QuantizeLinear then DequantizeLinear (round half to even, saturate), as ONNX defines them."""
    return (np.clip(np.round(values / scale) + zero_point, low, high) - zero_point) * scale


def _activation_bytes(model: onnx.ModelProto) -> int:
    inferred = onnx.shape_inference.infer_shapes(model)
    total = 0
    for info in inferred.graph.value_info:
        elements = 1
        for dim in info.type.tensor_type.shape.dim:
            elements *= dim.dim_value if dim.dim_value > 0 else 1
        total += 4 * elements
    return max(total, 1)


def analyze(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration: CalibrationSet,
    *,
    samples: int = ANALYZE_SAMPLES,
) -> list[LayerError]:
    """Per-layer quantization error of ``int8_path`` against ``fp32_path`` on ``samples`` calibration inputs,
    worst first."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_activation_matching,
        create_weight_matching,
    )

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    model = load_onnx(fp32_path)
    input_name, dims = image_input(model, fp32_path)
    subset = calibration.head(min(samples, len(calibration)))
    batch = dims[0] or 1
    qparams = _activation_qparams(onnx.load(str(int8_path)))
    energies: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-analyze-") as workdir, quiet_ort():
        float_augmented = _augment(fp32_path, Path(workdir), "float.onnx")
        int8_augmented = _augment(int8_path, Path(workdir), "int8.onnx")
        reader = CalibrationReader(subset, input_name, batch, static_batch=dims[0] is not None)
        chunk = max(1, CHUNK_BYTES // (3 * _activation_bytes(model)))
        for start in range(0, len(reader), chunk):
            reader.set_range(start, start + chunk)
            float_activations = collect_activations(str(float_augmented), reader)
            reader.set_range(start, start + chunk)
            int8_activations = collect_activations(str(int8_augmented), reader)
            matched = create_activation_matching(int8_activations, float_activations)
            for tensor, match in matched.items():
                if not match.get("float"):
                    continue
                reference = np.concatenate([a.ravel() for a in match["float"]]).astype(np.float64)
                post = np.concatenate([a.ravel() for a in match["post_qdq"]]).astype(np.float64)
                sums = energies.setdefault(tensor, [0.0, 0.0, 0.0])
                sums[0] += float(reference @ reference)
                sums[2] += float((reference - post) @ (reference - post))
                if tensor in qparams:
                    local = reference - _fake_quantize(reference, *qparams[tensor])
                    sums[1] += float(local @ local)
            del float_activations, int8_activations, matched
        weight_matches = create_weight_matching(str(fp32_path), str(int8_path))
    local = {t: _db(e[0], e[1]) for t, e in energies.items() if t in qparams}
    accumulated = {t: _db(e[0], e[2]) for t, e in energies.items()}
    weights = {
        name: _db(
            float(np.square(match["float"], dtype=np.float64).sum()),
            float(np.square(match["float"].astype(np.float64) - match["dequantized"]).sum()),
        )
        for name, match in weight_matches.items()
    }
    rows = []
    for node in model.graph.node:
        inputs = [local[name] for name in node.input if local.get(name) is not None]
        weight = weights.get(node.input[1]) if len(node.input) > 1 else None
        row = LayerError(
            node=node.name,
            op_type=node.op_type,
            tensor=node.output[0],
            sqnr_db=None,
            input_sqnr_db=min(inputs) if inputs else None,
            weight_sqnr_db=weight,
            output_sqnr_db=accumulated.get(node.output[0]),
        )
        measured = [v for v in (row.input_sqnr_db, row.weight_sqnr_db) if v is not None]
        row.sqnr_db = min(measured) if measured else None
        if row.sqnr_db is not None or row.output_sqnr_db is not None:
            rows.append(row)
    return sorted(rows, key=lambda r: (r.sqnr_db is None, r.sqnr_db if r.sqnr_db is not None else 0.0))
