"""Facts about an ONNX graph that every step needs: one way to load a file, its inputs, opset and precision,
and shape-only copies.

Export, calibration, TensorRT checks, evaluation and the profiler all read ONNX files; they do it through
:func:`load_onnx`, so a missing, truncated or foreign file is the same one-line error everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgecnn.errors import UsageError, first_line

__all__ = [
    "STRIPPED_MARK",
    "KEEP_ELEMENTS",
    "QUANTIZED_OPS",
    "GraphIndex",
    "load_onnx",
    "opset_version",
    "input_dims",
    "value_shape",
    "graph_precision",
    "values_without_shape",
    "is_stripped",
    "strip_weights",
    "fill_weights",
]

STRIPPED_MARK = "edgecnn:shape-only"
KEEP_ELEMENTS = 64
"""Float initializers up to this size keep their data in a shape-only graph (shape arithmetic may read them)."""
QUANTIZED_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
)


def load_onnx(path: str | Path, *, load_external_data: bool = True) -> onnx.ModelProto:
    """Read an ONNX file (external data included); anything unreadable is a one-line usage error."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as error:  # onnx raises DecodeError, ValueError, OSError... for truncated or foreign files
        raise UsageError(f"{path} is not a readable ONNX model (truncated or not ONNX?): {first_line(error)}") from None
    if not model.graph.node:
        raise UsageError(f"{path} is not a readable ONNX model: it has no graph nodes (truncated or not ONNX?)")
    return model


def opset_version(model: onnx.ModelProto) -> int:
    """The default-domain opset the graph imports (0 when it declares none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def value_shape(value: onnx.ValueInfoProto) -> list[int | str]:
    """A value's dims: an int where fixed, the symbolic name (or "") where not."""
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


def input_dims(model: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    """Each real graph input (initializers excluded) with its dims: an int, a symbolic name, or None."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    dims = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape = value.type.tensor_type.shape
        dims[value.name] = (
            [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]
            if value.type.tensor_type.HasField("shape")
            else []
        )
    return dims


def values_without_shape(model: onnx.ModelProto) -> list[str]:
    """Names of node outputs that shape inference left without a complete tensor shape."""
    typed = {
        value.name: value for value in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)
    }
    missing = []
    for node in model.graph.node:
        for name in node.output:
            value = typed.get(name)
            if not name:
                continue
            if value is None or not value.type.tensor_type.HasField("shape"):
                missing.append(name)
                continue
            dims = value.type.tensor_type.shape.dim
            if any(not (d.HasField("dim_value") or d.HasField("dim_param")) for d in dims):
                missing.append(name)
    return missing


class GraphIndex:
    """Lookups over one graph that the cost model and the TensorRT checker both build on: initializers,
    Constant nodes, each value's producer and readers (node, input index), and the declared value types."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.model = model
        self.graph = graph
        self.initializers: dict[str, onnx.TensorProto] = {tensor.name: tensor for tensor in graph.initializer}
        self.constant_nodes = {
            node.output[0]: node for node in graph.node if node.op_type == "Constant" and node.output
        }
        self.types = {value.name: value.type.tensor_type for value in [*graph.value_info, *graph.input, *graph.output]}
        self.producers = {output: node for node in graph.node for output in node.output if output}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, index))

    def readers(self, name: str) -> list[onnx.NodeProto]:
        """The nodes that read value ``name``, in graph order."""
        return [node for node, _ in self.consumers.get(name, [])]


def graph_precision(model: onnx.ModelProto) -> str:
    """The precision a graph runs at: fp8 with Q/DQ nodes on FLOAT8E4M3FN, int8 with other Q/DQ (or QLinear)
    nodes, fp16 with float16 weights or a float16 Cast inside, else fp32."""
    if any(node.op_type in QUANTIZED_OPS for node in model.graph.node):
        fp8 = {onnx.TensorProto.FLOAT8E4M3FN}
        return "fp8" if any(tensor.data_type in fp8 for tensor in model.graph.initializer) else "int8"
    if any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in model.graph.initializer):
        return "fp16"
    for node in model.graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in node.attribute):
            return "fp16"
    return "fp32"


def is_stripped(model: onnx.ModelProto) -> bool:
    return STRIPPED_MARK in model.doc_string


def strip_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without the data of float initializers larger than ``KEEP_ELEMENTS``; shapes and dtypes stay."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    for tensor in stripped.graph.initializer:
        if tensor.data_type in floats and int(np.prod(tensor.dims, dtype=np.int64)) > KEEP_ELEMENTS:
            for data_field in ("raw_data", "float_data", "int32_data", "double_data"):
                tensor.ClearField(data_field)
    stripped.doc_string = f"{STRIPPED_MARK}: large float initializers keep their shapes, not their data"
    return stripped


def fill_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A runnable copy of a shape-only graph: stripped initializers get seeded He-scaled normal values.

    He scaling (std = sqrt(2 / fan_in)) keeps activations finite through deep stacks, so timing is not
    disturbed by infinities or denormals.
    """
    if not is_stripped(model):
        return model
    filled = onnx.ModelProto()
    filled.CopyFrom(model)
    rng = np.random.default_rng(seed)
    for tensor in filled.graph.initializer:
        has_data = tensor.raw_data or tensor.float_data or tensor.int32_data or tensor.double_data
        if has_data or not tensor.dims:
            continue
        shape = tuple(tensor.dims)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 0
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        values = (
            rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            if fan_in
            else np.zeros(shape, np.float32)
        )
        tensor.raw_data = values.astype(dtype).tobytes()
    filled.doc_string = ""
    return filled
