"""Per-layer quantization error: the ranking the fallbacks to float start from.

:func:`analyze` runs the FP32 model, the INT8 model, and the INT8 model with every activation
QuantizeLinear fed the FP32 model's value of its tensor (each INT8 layer then computes from exact inputs,
so what goes wrong at its output is its own doing), and reports per layer (node) the SQNR of

- ``input_sqnr_db``: each quantized activation the layer reads, FP32 values against the same values through
  the Q/DQ pair the INT8 model puts on them: the rounding and clipping that tensor's range causes, free of
  the error accumulated upstream (worst input);
- ``weight_sqnr_db``: the layer's float weight against its dequantized INT8 weight (biases, int32, are
  left out);
- ``output_sqnr_db``: the layer's output in its INT8 form (quantized inputs and weights, then the Q/DQ on
  its output) computed from exact inputs, against FP32: what the layer itself adds, including what its
  function makes of its inputs' rounding (a Sigmoid on large negative logits turns a small absolute error
  into a large relative one) and its output's range (a Concat puts box coordinates in pixels and scores in
  [0, 1] under one scale, which crushes the scores: for a Concat the worst of its inputs' parts counts);
- ``accumulated_sqnr_db``: the layer's output, FP32 model against INT8 model (errors accumulate with depth).

Layers are ranked worst first by ``sqnr_db``, the smallest of the first three: the noise the layer's own
quantization adds, which keeping that layer in float (``nodes_to_exclude``) removes. The accumulated figure
falls with depth whatever the cause, so it would always point at the last layers; the local figures point
at the culprit (an outlier-stretched range, a per-tensor depthwise weight, a saturating output), and the
output figure reaches the final layers, whose outputs no other layer reads.

Memory: one batch at a time through each model, nothing kept but signal and noise energies per tensor
(SQNR over all samples = 10 log10(sum x^2 / sum (x - y)^2), what ORT's
``compute_signal_to_quantization_noice_ratio`` computes on the concatenation).

The fallbacks that keep the worst-ranked layers in float are in :func:`edgecnn.calibration.quantize.quantize_onnx`
(label-free, against a task budget) and :func:`edgecnn.calibration.fallback.auto_fallback` (labelled top-1).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgecnn.calibration.data import CalibrationSet, InputsSet, image_input
from edgecnn.calibration.ranges import quiet_ort
from edgecnn.calibration.reader import CalibrationReader
from edgecnn.onnx_facts import load_onnx

__all__ = [
    "LayerError",
    "analyze",
    "ANALYZE_SAMPLES",
]

ANALYZE_SAMPLES = 8
EXACT_PREFIX = "exact/"


@dataclass
class LayerError:
    node: str
    op_type: str
    tensor: str
    sqnr_db: float | None
    input_sqnr_db: float | None
    weight_sqnr_db: float | None
    output_sqnr_db: float | None
    accumulated_sqnr_db: float | None


EXACT_DB = 300.0


def _db(signal: float, noise: float) -> float | None:
    """SQNR in dB from energies; None for an all-zero signal, ``EXACT_DB`` when there is no noise at all."""
    if signal <= 0:
        return None
    return min(EXACT_DB, 10 * math.log10(signal / noise)) if noise > 0 else EXACT_DB


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


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """The float tensors the graph's nodes read or write (not initializers), by shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    constants = {i.name for i in model.graph.initializer}
    names = {name for node in model.graph.node for name in [*node.input, *node.output]}
    return {
        info.name
        for info in infos
        if info.name in names
        and info.name not in constants
        and info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    }


def _every_tensor_out(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """``model`` with the tensors ``names`` as graph outputs too (shapes left open)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model


@dataclass
class _LocalModel:
    """The INT8 model with its activation QuantizeLinear nodes fed ``exact/<tensor>`` inputs (FP32 values):
    ``fed`` tensor -> that input, ``requantized`` tensor -> the DequantizeLinear output that holds its
    Q/DQ'd exact value, ``computed`` node name -> (its output, the FP32 tensor that output stands for)."""

    model: onnx.ModelProto
    fed: dict[str, str]
    requantized: dict[str, str]
    computed: dict[str, list[tuple[str, str]]]


def _local_model(int8: onnx.ModelProto, exact: set[str]) -> _LocalModel:
    from onnxruntime.quantization.quant_utils import QUANT_INPUT_SUFFIX

    model = onnx.ModelProto.FromString(int8.SerializeToString())
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    inputs = {i.name for i in graph.input}
    dequantizers = {node.input[0]: node for node in graph.node if node.op_type == "DequantizeLinear"}
    fed: dict[str, str] = {}
    requantized: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants:
            continue
        tensor = node.input[0].removesuffix(QUANT_INPUT_SUFFIX)
        if tensor not in exact:
            continue
        if node.input[0] not in inputs:
            fed[tensor] = node.input[0] = EXACT_PREFIX + tensor
        if node.output[0] in dequantizers:
            requantized[tensor] = dequantizers[node.output[0]].output[0]
    for name in fed.values():
        graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    computed: dict[str, list[tuple[str, str]]] = {}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for output in node.output:
            tensor = output.removesuffix(QUANT_INPUT_SUFFIX)
            if tensor in exact:
                computed.setdefault(node.name, []).append((output, tensor))
    names = list(requantized.values()) + [output for pairs in computed.values() for output, _ in pairs]
    return _LocalModel(_every_tensor_out(model, names), fed, requantized, computed)


def _session(model: onnx.ModelProto, workdir: Path, name: str):
    """An unoptimized CPU session (every tensor keeps its name and value), from a file so large models work."""
    import onnxruntime

    path = workdir / name
    onnx.save(model, str(path))
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _Energies:
    """Running sums of signal and noise energy per key, in float64 (``einsum``: BLAS dot products contend
    with ONNX Runtime's threads)."""

    def __init__(self) -> None:
        self.sums: dict[Any, list[float]] = {}

    def add(self, key: Any, reference: np.ndarray, candidate: np.ndarray) -> None:
        reference = reference.astype(np.float64).ravel()
        error = reference - candidate.ravel()
        sums = self.sums.setdefault(key, [0.0, 0.0])
        sums[0] += float(np.einsum("i,i->", reference, reference))
        sums[1] += float(np.einsum("i,i->", error, error))

    def db(self, key: Any) -> float | None:
        return _db(*self.sums[key]) if key in self.sums else None


def _parts(node: onnx.NodeProto, values: dict[str, np.ndarray], output: np.ndarray) -> list[tuple[slice, ...]]:
    """The slices of ``output`` that each input of a Concat fills (one slice of everything for other ops)."""
    if node.op_type != "Concat" or any(name not in values for name in node.input):
        return [(slice(None),)]
    axis = next(a.i for a in node.attribute if a.name == "axis") % output.ndim
    slices, start = [], 0
    for name in node.input:
        stop = start + values[name].shape[axis]
        slices.append((slice(None),) * axis + (slice(start, stop),))
        start = stop
    return slices


def analyze(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration: CalibrationSet | InputsSet,
    *,
    samples: int = ANALYZE_SAMPLES,
) -> list[LayerError]:
    """Per-layer quantization error of ``int8_path`` against ``fp32_path`` on ``samples`` calibration inputs,
    worst first (see the module docstring). ``calibration`` feeds the one image input (a :class:`CalibrationSet`)
    or every input by name (an :class:`InputsSet`, e.g. from a .npz)."""
    from onnxruntime.quantization.qdq_loss_debug import create_weight_matching
    from onnxruntime.quantization.quant_utils import DEQUANT_OUTPUT_SUFFIX

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    model = load_onnx(fp32_path)
    int8 = load_onnx(int8_path)
    if isinstance(calibration, CalibrationSet):
        input_names, dims = image_input(model, fp32_path)
    else:
        initializers = {i.name for i in model.graph.initializer}
        graph_inputs = [i for i in model.graph.input if i.name not in initializers]
        input_names = [i.name for i in graph_inputs]
        dims = [d.dim_value or None for d in graph_inputs[0].type.tensor_type.shape.dim]
    subset = calibration.head(min(samples, len(calibration)))
    batch = dims[0] or 1
    qparams = _activation_qparams(int8)
    exact = _float_tensors(model)
    local = _local_model(int8, exact)
    int8_names = _float_tensors(int8)
    consumed = {t: t + DEQUANT_OUTPUT_SUFFIX if t + DEQUANT_OUTPUT_SUFFIX in int8_names else t for t in exact}
    consumed = {t: name for t, name in consumed.items() if name in int8_names}
    fp32_nodes = {node.name: node for node in model.graph.node}
    inputs_energy, outputs_energy, accumulated_energy = _Energies(), _Energies(), _Energies()
    with tempfile.TemporaryDirectory(prefix="edgecnn-analyze-") as workdir, quiet_ort():
        exact_names = sorted(exact)
        float_session = _session(_every_tensor_out(model, exact_names), Path(workdir), "float.onnx")
        local_session = _session(local.model, Path(workdir), "local.onnx")
        local_names = [o.name for o in local_session.get_outputs()]
        int8_session = _session(_every_tensor_out(int8, sorted(set(consumed.values()))), Path(workdir), "int8.onnx")
        reader = CalibrationReader(subset, input_names, batch, static_batch=dims[0] is not None)
        for feeds in reader:
            values = dict(zip(exact_names, float_session.run(exact_names, feeds)))
            local_feeds = {**feeds, **{name: values[tensor] for tensor, name in local.fed.items()}}
            local_values = dict(zip(local_names, local_session.run(local_names, local_feeds)))
            for tensor, name in local.requantized.items():
                inputs_energy.add(tensor, values[tensor], local_values[name])
            for node_name, pairs in local.computed.items():
                for output, tensor in pairs:
                    computed = local_values[output]
                    if tensor in qparams:
                        computed = _fake_quantize(computed.astype(np.float64), *qparams[tensor])
                    node = fp32_nodes.get(node_name)
                    parts = _parts(node, values, values[tensor]) if node is not None else [(slice(None),)]
                    for index, part in enumerate(parts):
                        outputs_energy.add((node_name, index), values[tensor][part], computed[part])
            del local_values
            accumulated_names = sorted(consumed.values())
            int8_values = dict(zip(accumulated_names, int8_session.run(accumulated_names, feeds)))
            for tensor, name in consumed.items():
                accumulated_energy.add(tensor, values[tensor], int8_values[name])
            del values, int8_values
        weight_matches = create_weight_matching(str(fp32_path), str(int8_path))
    weights = {
        name: _db(
            float(np.square(match["float"], dtype=np.float64).sum()),
            float(np.square(match["float"].astype(np.float64) - match["dequantized"]).sum()),
        )
        for name, match in weight_matches.items()
    }
    output_db: dict[str, float] = {}
    for node_name, part in outputs_energy.sums:
        measured = outputs_energy.db((node_name, part))
        if measured is not None:
            output_db[node_name] = min(measured, output_db.get(node_name, measured))
    rows = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        inputs = [inputs_energy.db(name) for name in node.input]
        inputs = [value for value in inputs if value is not None]
        weight = weights.get(node.input[1]) if len(node.input) > 1 else None
        row = LayerError(
            node=node.name,
            op_type=node.op_type,
            tensor=node.output[0],
            sqnr_db=None,
            input_sqnr_db=min(inputs) if inputs else None,
            weight_sqnr_db=weight,
            output_sqnr_db=output_db.get(node.name),
            accumulated_sqnr_db=accumulated_energy.db(node.output[0]),
        )
        measured = [v for v in (row.input_sqnr_db, row.weight_sqnr_db, row.output_sqnr_db) if v is not None]
        row.sqnr_db = min(measured) if measured else None
        if row.sqnr_db is not None or row.accumulated_sqnr_db is not None:
            rows.append(row)
    return sorted(rows, key=lambda r: (r.sqnr_db is None, r.sqnr_db if r.sqnr_db is not None else 0.0))
