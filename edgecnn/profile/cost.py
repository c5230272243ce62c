"""The one cost model: per-node parameters, MACs, bytes and arithmetic intensity of any ONNX graph.

Conventions, stated in every report: one MAC is one multiply-accumulate and FLOPs = 2 x MACs. MACs are
counted for convolutions and matrix products only (Conv, ConvTranspose, Gemm, MatMul and their integer
and QLinear forms), the convention of the published reference figures; the arithmetic of everything
else (activations, normalization, pooling, residual adds) is counted separately as element ``ops``.

Each op type has one cost rule, registered in :data:`COST_RULES` with :func:`cost_rule` (a duplicate
raises, as in onnxslim's registry). An op type without a rule is listed as *uncounted*, never counted as
zero, in the manner of onnx-tool but without its silent fallback.

Weight bytes are the node's initializers at the node's precision: an FP16 graph's initializers are 2 bytes,
a Q/DQ graph's weights feeding a node through DequantizeLinear are their int8 size. Activation bytes use
each tensor's *effective* element size: a DequantizeLinear output has its quantized input's size and a
tensor read only by QuantizeLinear has the quantized output's size, because runtimes that execute Q/DQ
graphs (TensorRT, ONNX Runtime's QDQ fusions) keep those tensors in int8.

A graph can also be costed at a precision it does not have (``precision=`` in :func:`analyze`), the way
the profiler treats the zoo: FP16 stores every float tensor in 2 bytes; INT8 stores activations and the
weights of convolutions and matrix products in 1 byte, with an FP32 scale per output channel and INT32
biases (TensorRT's full-INT8 layout), and other parameters in FP32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from edgecnn.errors import EdgecnnError, UnknownNameError, UsageError, first_line
from edgecnn.onnx_facts import GraphIndex, graph_precision, input_dims
from edgecnn.precisions import PRECISION_BYTES, PRECISIONS

__all__ = [
    "CONVENTION",
    "PRECISIONS",
    "COST_RULES",
    "OpCost",
    "NodeContext",
    "NodeCost",
    "GraphCost",
    "cost_rule",
    "analyze",
    "analyze_precisions",
    "resolve_shapes",
    "input_dims",
]

CONVENTION = "1 MAC = one multiply-accumulate (conv and matrix products); FLOPs = 2 x MACs"

QUANTIZE_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
"""Ops whose output is a view of their first input (no new buffer; runtimes reshape in place)."""

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
_HALF_BYTE_TYPES = {onnx.TensorProto.INT4, onnx.TensorProto.UINT4} | (
    {onnx.TensorProto.FLOAT4E2M1} if hasattr(onnx.TensorProto, "FLOAT4E2M1") else set()
)
_PRECISION_NAMES = {
    onnx.TensorProto.FLOAT: "fp32",
    onnx.TensorProto.FLOAT16: "fp16",
    onnx.TensorProto.BFLOAT16: "bf16",
    onnx.TensorProto.DOUBLE: "fp64",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "int8",
    onnx.TensorProto.INT4: "int4",
    onnx.TensorProto.UINT4: "int4",
}


def _element_bits(data_type: int) -> int:
    if data_type in _HALF_BYTE_TYPES:
        return 4
    try:
        return 8 * onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return 32


def _nbytes(elements: int, bits: int) -> int:
    return (elements * bits + 7) // 8


@dataclass(frozen=True)
class OpCost:
    """What a rule returns: multiply-accumulates, other element operations, and the layer kind."""

    macs: int = 0
    ops: int = 0
    kind: str = "other"


@dataclass
class NodeContext:
    """A node as a rule sees it: resolved input/output shapes (None for an absent optional input) and attributes."""

    node: onnx.NodeProto
    input_shapes: list[tuple[int, ...] | None]
    output_shapes: list[tuple[int, ...] | None]
    attributes: dict[str, Any]

    def input(self, index: int) -> tuple[int, ...] | None:
        return self.input_shapes[index] if index < len(self.input_shapes) else None

    def output(self, index: int = 0) -> tuple[int, ...]:
        shape = self.output_shapes[index] if index < len(self.output_shapes) else None
        if shape is None:
            raise EdgecnnError(f"node {self.node.name or self.node.op_type} has no resolved output shape")
        return shape


CostRule = Callable[[NodeContext], OpCost]
COST_RULES: dict[str, CostRule] = {}


def cost_rule(*op_types: str) -> Callable[[CostRule], CostRule]:
    """Register ``rule`` for ``op_types`` (default-domain op names). A second rule for an op type raises."""

    def register(rule: CostRule) -> CostRule:
        for op_type in op_types:
            if op_type in COST_RULES:
                raise ValueError(f"op type {op_type!r} already has a cost rule ({COST_RULES[op_type].__name__})")
            COST_RULES[op_type] = rule
        return rule

    return register


def _numel(shape: Sequence[int] | None) -> int:
    return int(math.prod(shape)) if shape is not None else 0


def _conv_cost(context: NodeContext, data_index: int, weight_index: int, bias_index: int | None) -> OpCost:
    weight = context.input(weight_index)
    out = context.output()
    data = context.input(data_index)
    if weight is None or data is None:
        raise EdgecnnError(f"{context.node.op_type} {context.node.name}: weight or input shape unresolved")
    group = int(context.attributes.get("group", 1))
    kernel = _numel(weight[2:])
    channels_per_group = weight[1]
    macs = _numel(out) * channels_per_group * kernel
    ops = _numel(out) if bias_index is not None and context.input(bias_index) is not None else 0
    in_channels = data[1]
    if group > 1 and group == in_channels and channels_per_group == 1:
        kind = "depthwise"
    elif group > 1:
        kind = "grouped"
    elif kernel == 1:
        kind = "pointwise"
    else:
        kind = "conv"
    return OpCost(macs, ops, kind)


@cost_rule("Conv")
def _conv(context: NodeContext) -> OpCost:
    return _conv_cost(context, 0, 1, 2)


@cost_rule("ConvInteger")
def _conv_integer(context: NodeContext) -> OpCost:
    return _conv_cost(context, 0, 1, None)


@cost_rule("QLinearConv")
def _qlinear_conv(context: NodeContext) -> OpCost:
    return _conv_cost(context, 0, 3, 8)


@cost_rule("ConvTranspose")
def _conv_transpose(context: NodeContext) -> OpCost:
    """Every input element meets C_out/group x kernel weights (weight layout [C_in, C_out/group, k...])."""
    data, weight = context.input(0), context.input(1)
    if data is None or weight is None:
        raise EdgecnnError(f"ConvTranspose {context.node.name}: input or weight shape unresolved")
    macs = _numel(data) * weight[1] * _numel(weight[2:])
    ops = _numel(context.output()) if context.input(2) is not None else 0
    return OpCost(macs, ops, "conv")


@cost_rule("Gemm")
def _gemm(context: NodeContext) -> OpCost:
    a = context.input(0)
    if a is None:
        raise EdgecnnError(f"Gemm {context.node.name}: input shape unresolved")
    inner = a[0] if context.attributes.get("transA", 0) else a[1]
    out = context.output()
    ops = _numel(out) if context.input(2) is not None else 0
    return OpCost(_numel(out) * inner, ops, "gemm")


def _matmul_cost(context: NodeContext, a_index: int) -> OpCost:
    a = context.input(a_index)
    if a is None:
        raise EdgecnnError(f"{context.node.op_type} {context.node.name}: input shape unresolved")
    return OpCost(_numel(context.output()) * a[-1], 0, "gemm")


@cost_rule("MatMul", "MatMulInteger")
def _matmul(context: NodeContext) -> OpCost:
    return _matmul_cost(context, 0)


@cost_rule("QLinearMatMul")
def _qlinear_matmul(context: NodeContext) -> OpCost:
    return _matmul_cost(context, 0)


@cost_rule(
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Mish",
    "Gelu",
    "Erf",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Not",
    "ThresholdedRelu",
    "Shrink",
    "Cos",
    "Sin",
    "IsNaN",
    "IsInf",
)
def _unary(context: NodeContext) -> OpCost:
    return OpCost(0, _numel(context.output()), "elementwise")


@cost_rule(
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Where",
    "Mod",
    "BitShift",
)
def _binary(context: NodeContext) -> OpCost:
    operands = sum(1 for shape in context.input_shapes if shape is not None)
    return OpCost(0, _numel(context.output()) * max(1, operands - 1), "elementwise")


@cost_rule(
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
)
def _normalization(context: NodeContext) -> OpCost:
    """Inference normalization: a scale and a shift per element (statistics of Instance/Layer norms add ~3 more)."""
    per_element = 2 if context.node.op_type == "BatchNormalization" else 5
    return OpCost(0, per_element * _numel(context.output()), "norm")


@cost_rule("LRN")
def _lrn(context: NodeContext) -> OpCost:
    """Sum of squares over ``size`` channels, then a power and a divide: size + 3 operations per element."""
    size = int(context.attributes.get("size", 5))
    return OpCost(0, (size + 3) * _numel(context.output()), "norm")


@cost_rule("Softmax", "LogSoftmax")
def _softmax(context: NodeContext) -> OpCost:
    return OpCost(0, 3 * _numel(context.output()), "elementwise")


@cost_rule("MaxPool", "AveragePool", "LpPool")
def _pool(context: NodeContext) -> OpCost:
    kernel = _numel(context.attributes.get("kernel_shape", [1]))
    return OpCost(0, _numel(context.output()) * kernel, "pool")


@cost_rule(
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ArgMax",
    "ArgMin",
)
def _reduce(context: NodeContext) -> OpCost:
    return OpCost(0, _numel(context.input(0)), "pool")


@cost_rule("Resize", "Upsample")
def _resize(context: NodeContext) -> OpCost:
    """Nearest: one read per output element; linear and cubic interpolate from 4 or 16 neighbours (2-D)."""
    mode = context.attributes.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    per_element = {"nearest": 1, "linear": 4, "cubic": 16}.get(mode, 4)
    return OpCost(0, per_element * _numel(context.output()), "data")


@cost_rule("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
def _quantize(context: NodeContext) -> OpCost:
    """A scale, a rounding and a zero-point shift per element."""
    return OpCost(0, _numel(context.output()), "quant")


@cost_rule(
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Dropout",
    "Transpose",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "GatherElements",
    "Pad",
    "Tile",
    "Expand",
    "Shape",
    "Size",
    "Constant",
    "ConstantOfShape",
    "Range",
    "DepthToSpace",
    "SpaceToDepth",
    "Cast",
    "CastLike",
)
def _data_movement(context: NodeContext) -> OpCost:
    """Layout, copies and shape arithmetic: bytes move, nothing is computed."""
    return OpCost(0, 0, "view" if context.node.op_type in VIEW_OPS else "data")


@dataclass
class NodeCost:
    """One node's row of the static table.

    ``params`` are the elements of the parameter initializers the node reads (each counted at its first
    reader); ``weight_bytes`` every initializer byte it reads, at its precision; ``input_bytes`` and
    ``output_bytes`` its activations. ``counted`` is False for an op type without a cost rule: then
    ``macs`` and ``ops`` are unknown (reported as uncounted), not zero.
    """

    name: str
    op_type: str
    kind: str
    precision: str
    params: int
    macs: int
    ops: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    output_shape: list[int] | None
    counted: bool = True
    inputs: list[str] = field(default_factory=list, repr=False)
    outputs: list[str] = field(default_factory=list, repr=False)

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.ops

    @property
    def bytes_moved(self) -> int:
        return self.weight_bytes + self.input_bytes + self.output_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: FLOPs (2 x MACs + other ops) per byte of weights and activations moved."""
        return self.flops / self.bytes_moved if self.bytes_moved else 0.0

    def as_row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op_type": self.op_type,
            "kind": self.kind,
            "precision": self.precision,
            "output_shape": self.output_shape,
            "params": self.params,
            "macs": self.macs if self.counted else None,
            "ops": self.ops if self.counted else None,
            "weight_bytes": self.weight_bytes,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "intensity": round(self.intensity, 3) if self.counted else None,
            "counted": self.counted,
        }


@dataclass
class GraphCost:
    """The static table of one graph at one batch size and precision, with its totals.

    ``activation_bytes`` maps every activation tensor (graph inputs and node outputs, not initializers) to
    its size in bytes; :mod:`edgecnn.profile.memory` plans its lifetimes. ``derived`` is True when the precision
    was applied to a graph of another precision (see the module docstring).
    """

    name: str
    precision: str
    derived: bool
    batch: int
    input_shapes: dict[str, list[int]]
    nodes: list[NodeCost]
    activation_bytes: dict[str, int]
    graph_inputs: list[str]
    graph_outputs: list[str]
    params: int
    weight_bytes: int
    convention: str = CONVENTION

    @property
    def macs(self) -> int:
        return sum(node.macs for node in self.nodes if node.counted)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def ops(self) -> int:
        return sum(node.ops for node in self.nodes if node.counted)

    @property
    def uncounted(self) -> dict[str, int]:
        """Op types without a cost rule and how many nodes each has."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            if not node.counted:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return counts

    def totals(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision": self.precision,
            "derived_precision": self.derived,
            "batch": self.batch,
            "input_shapes": self.input_shapes,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "other_ops": self.ops,
            "weight_bytes": self.weight_bytes,
            "uncounted": self.uncounted,
            "convention": self.convention,
        }


def concrete_inputs(
    model: onnx.ModelProto, batch: int, input_shapes: Mapping[str, Sequence[int]] | None
) -> dict[str, list[int]]:
    """Every graph input's concrete shape: given shapes first, then a dynamic dim 0 set to ``batch`` (a batch
    written in ``input_shapes`` counts when ``batch`` is left at 1).

    A static dim 0 stays as it is when ``batch`` is 1 (the default: profile the graph as it was exported);
    another batch size for a static-batch graph is an error.
    """
    if batch < 1:
        raise UsageError(f"batch must be at least 1, got {batch}")
    given = dict(input_shapes or {})
    declared = input_dims(model)
    if len(given) == 1 and len(declared) == 1 and next(iter(given)) not in declared:
        given = {next(iter(declared)): next(iter(given.values()))}
    unknown = set(given) - set(declared)
    if unknown:
        raise UsageError(
            f"--input-shape names {', '.join(sorted(unknown))}, but the graph's inputs are {', '.join(declared)}"
        )
    concrete = {}
    for name, dims in declared.items():
        if not dims and name not in given:
            raise UsageError(f"input {name!r} has no declared shape: give --input-shape {name}=DxDx...")
        wanted = list(given.get(name, dims))
        if dims and len(wanted) != len(dims):
            raise UsageError(
                f"--input-shape for {name!r} has {len(wanted)} dims, "
                f"the graph's input has {len(dims)} ({_format_dims(dims)})"
            )
        resolved = []
        for index, dim in enumerate(wanted):
            declared_dim = dims[index] if dims else None
            if isinstance(declared_dim, int) and declared_dim > 0:
                if isinstance(dim, int) and dim > 0 and dim != declared_dim:
                    raise UsageError(
                        f"--input-shape gives {name!r} dim {index} = {dim}, but the graph fixes it at {declared_dim}"
                        + (": profile a zoo model at another size with --input-size H or HxW" if index >= 2 else "")
                    )
                if index == 0 and batch not in (1, declared_dim):
                    raise UsageError(
                        f"input {name!r} has a static batch of {declared_dim}: profile it with --batch {declared_dim} "
                        f"(or export it with --dynamic-batch)"
                    )
                resolved.append(declared_dim)
            elif index == 0:
                resolved.append(dim if batch == 1 and isinstance(dim, int) and dim > 0 else batch)
            elif isinstance(dim, int) and dim > 0:
                resolved.append(dim)
            else:
                example = "x".join(
                    "N" if i == 0 else (str(d) if isinstance(d, int) and d > 0 else "?") for i, d in enumerate(dims)
                )
                raise UsageError(
                    f"input {name!r} has dynamic dimensions ({_format_dims(dims)}): give --input-shape {example} "
                    f"with each ? a number"
                )
        concrete[name] = resolved
    return concrete


def _format_dims(dims: Sequence[int | str | None]) -> str:
    """``1x3x?x?``: a dimension that is not a positive integer (None, 0, -1) shows as its name or ``?``."""
    return "x".join(str(d) if isinstance(d, int) and d > 0 else (d if isinstance(d, str) and d else "?") for d in dims)


def resolve_shapes(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """A copy of ``model`` with inputs fixed to ``shapes`` and every value's shape inferred anew."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name not in shapes:
            continue
        shape = value.type.tensor_type.shape
        shape.ClearField("dim")
        for dim in shapes[value.name]:
            shape.dim.add().dim_value = int(dim)
    producers = {output: node for node in fixed.graph.node for output in node.output}

    def inferable(name: str) -> bool:
        node = producers.get(name)
        return node is not None and onnx.defs.has(node.op_type, node.domain)

    kept = [value for value in fixed.graph.value_info if not inferable(value.name)]
    fixed.graph.ClearField("value_info")
    fixed.graph.value_info.extend(kept)
    for output in fixed.graph.output:
        if inferable(output.name) and output.type.tensor_type.HasField("shape"):
            output.type.tensor_type.ClearField("shape")
    try:
        return onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception as error:
        first = first_line(error, 200)
        raise UsageError(f"ONNX shape inference failed at the given input shapes: {first}") from None


_STATE_INPUTS = {"BatchNormalization": (3, 4), "RNN": (5,), "GRU": (5,), "LSTM": (5, 6)}
"""Constant inputs that are state, not parameters: running statistics, recurrent initial states (sized by the batch)."""

_MAC_WEIGHT_INPUTS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


class _Graph(GraphIndex):
    """The cost model's view of one shape-resolved graph: shapes, dtypes and constant folding (which weights
    each value derives from)."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__(model)
        graph = model.graph
        self.roots: dict[str, set[str]] = {name: {name} for name in self.initializers}
        self.folded: set[int] = set()
        for node in graph.node:
            inputs = [name for name in node.input if name]
            if node.op_type == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    value.name = node.output[0]
                    self.initializers[node.output[0]] = value
                self.roots[node.output[0]] = {node.output[0]} if value is not None else set()
                self.folded.add(id(node))
            elif inputs and all(name in self.roots for name in inputs):
                roots = set().union(*(self.roots[name] for name in inputs))
                for output in node.output:
                    self.roots[output] = roots
                self.folded.add(id(node))
        self.quantizer_aux = {
            node.input[index]
            for node in graph.node
            if node.op_type in QUANTIZE_OPS
            for index in (1, 2)
            if index < len(node.input) and node.input[index]
        }
        self.quantized_data = {
            node.input[0] for node in graph.node if node.op_type == "DequantizeLinear" and node.input
        }
        self.statistics = {
            node.input[index]
            for node in graph.node
            for index in _STATE_INPUTS.get(node.op_type, ())
            if index < len(node.input) and node.input[index]
        }

    def is_constant(self, name: str) -> bool:
        return name in self.roots

    def shape(self, name: str) -> tuple[int, ...] | None:
        if name in self.initializers:
            return tuple(int(d) for d in self.initializers[name].dims)
        tensor_type = self.types.get(name)
        if tensor_type is None or not tensor_type.HasField("shape"):
            return None
        dims = tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            return None
        return tuple(int(d.dim_value) for d in dims)

    def dtype(self, name: str) -> int:
        if name in self.initializers:
            return self.initializers[name].data_type
        tensor_type = self.types.get(name)
        return tensor_type.elem_type if tensor_type is not None and tensor_type.elem_type else onnx.TensorProto.FLOAT

    def is_parameter(self, root: str) -> bool:
        """Trainable weights, as PyTorch counts parameters: float initializers that are neither scalars (Clip
        bounds, constants), BatchNorm running statistics nor quantization scales; and quantized weight data."""
        if root in self.quantizer_aux or root in self.statistics or not self.shape(root):
            return False
        return self.dtype(root) in _FLOAT_TYPES or root in self.quantized_data

    def effective_bits(self, name: str) -> int:
        """Element size a runtime keeps ``name`` in: quantized across Q/DQ pairs, otherwise its dtype."""
        producer = self.producers.get(name)
        if producer is not None and producer.op_type == "DequantizeLinear":
            return _element_bits(self.dtype(producer.input[0]))
        readers = self.consumers.get(name, [])
        if readers and all(node.op_type == "QuantizeLinear" and index == 0 for node, index in readers):
            return min(_element_bits(self.dtype(node.output[0])) for node, _ in readers)
        return _element_bits(self.dtype(name))


def _weight_bits(graph: _Graph, root: str, node: onnx.NodeProto, index: int, precision: str | None) -> int:
    """Bits per element of initializer ``root`` read by input ``index`` of ``node`` at ``precision``."""
    dtype_bits = _element_bits(graph.dtype(root))
    if precision is None or not graph.is_parameter(root):
        return dtype_bits
    if precision == "fp32":
        return 32
    if precision == "fp16":
        return 16
    if _MAC_WEIGHT_INPUTS.get(node.op_type) == index or (node.op_type == "MatMul" and index == 0):
        return 8
    return 32


def _weight_bytes(graph: _Graph, root: str, node: onnx.NodeProto, index: int, precision: str | None) -> int:
    shape = graph.shape(root) or ()
    elements = _numel(shape)
    total = _nbytes(elements, _weight_bits(graph, root, node, index, precision))
    if (
        precision == "int8"
        and graph.is_parameter(root)
        and _weight_bits(graph, root, node, index, precision) == 8
        and shape
    ):
        total += 4 * shape[0]
    return total


def _activation_bytes(graph: _Graph, name: str, precision: str | None) -> int:
    shape = graph.shape(name)
    if shape is None:
        return 0
    if precision is not None and (graph.dtype(name) in _FLOAT_TYPES or graph.effective_bits(name) == 8):
        return _numel(shape) * PRECISION_BYTES[precision]
    return _nbytes(_numel(shape), graph.effective_bits(name))


def _node_precision(graph: _Graph, node: onnx.NodeProto, precision: str | None, weight_roots: set[str]) -> str:
    if precision is not None:
        return precision
    if node.op_type in QUANTIZE_OPS or node.op_type.startswith("QLinear") or node.op_type.endswith("Integer"):
        return "int8"
    activations = [name for name in node.input if name and not graph.is_constant(name)]
    if weight_roots & graph.quantized_data or any(
        graph.effective_bits(name) == 8
        and graph.producers.get(name) is not None
        and graph.producers[name].op_type == "DequantizeLinear"
        for name in activations
    ):
        return "int8"
    for name in [*activations, *node.output]:
        dtype = graph.dtype(name)
        if dtype in _FLOAT_TYPES:
            return _PRECISION_NAMES[dtype]
    first = node.output[0] if node.output else ""
    dtype = graph.dtype(first)
    return _PRECISION_NAMES.get(dtype, onnx.helper.tensor_dtype_to_string(dtype).removeprefix("TensorProto.").lower())


def _unresolvable(graph: _Graph, nodes: list[onnx.NodeProto]) -> None:
    """Raise one line naming what kept shape inference from resolving the graph."""
    unknown_ops = sorted(
        {
            f"{node.domain + '.' if node.domain else ''}{node.op_type}"
            for node in nodes
            if not onnx.defs.has(node.op_type, node.domain)
        }
    )
    if unknown_ops:
        raise UsageError(
            f"the graph uses ops that ONNX does not define ({', '.join(unknown_ops)}), so their output shapes are "
            f"unknown: declare those outputs' shapes in the graph's value_info, or profile a graph without them"
        )
    first = nodes[0]
    raise UsageError(
        f"cannot resolve the output shape of {first.op_type} node {first.name or first.output[0]!r}: "
        f"a dimension depends on data or on an input left dynamic (give --input-shape)"
    )


def analyze(
    model: onnx.ModelProto,
    *,
    batch: int = 1,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    precision: str | None = None,
    name: str | None = None,
) -> GraphCost:
    """Cost every node of ``model`` at ``batch`` (filling a dynamic dim 0) and ``input_shapes``.

    ``precision`` None costs the graph at its own precision; fp32/fp16/int8 derives that precision's byte
    sizes from this graph (see the module docstring). Nodes that only fold constants (weight
    DequantizeLinear, Constant, shape arithmetic on initializers) are not rows: their initializers count
    as the weights of the node that reads the result.
    """
    return analyze_precisions(model, [precision], batch=batch, input_shapes=input_shapes, name=name)[precision]


def analyze_precisions(
    model: onnx.ModelProto,
    precisions: Sequence[str | None],
    *,
    batch: int = 1,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    name: str | None = None,
) -> dict[str | None, GraphCost]:
    """:func:`analyze` at several precisions, resolving the graph's shapes once."""
    for precision in precisions:
        if precision is not None and precision not in PRECISIONS:
            raise UnknownNameError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    shapes = concrete_inputs(model, batch, input_shapes)
    graph = _Graph(resolve_shapes(model, shapes))
    own_precision = graph_precision(model)
    live_nodes = [node for node in graph.graph.node if id(node) not in graph.folded]
    missing = [node for node in live_nodes if any(output and graph.shape(output) is None for output in node.output)]
    if missing:
        _unresolvable(graph, missing)
    return {
        precision: _cost_graph(graph, live_nodes, shapes, own_precision, precision, batch, name)
        for precision in precisions
    }


def _cost_graph(
    graph: _Graph,
    live_nodes: list[onnx.NodeProto],
    shapes: dict[str, list[int]],
    own_precision: str,
    precision: str | None,
    batch: int,
    name: str | None,
) -> GraphCost:
    override = precision if precision is not None and precision != own_precision else None
    attributed: set[str] = set()
    rows: list[NodeCost] = []
    for node in live_nodes:
        weight_roots: set[str] = set()
        params = weight_bytes = 0
        activations: list[str] = []
        for index, input_name in enumerate(node.input):
            if not input_name:
                continue
            if not graph.is_constant(input_name):
                activations.append(input_name)
                continue
            for root in sorted(graph.roots[input_name]):
                weight_roots.add(root)
                if root in attributed:
                    continue
                attributed.add(root)
                weight_bytes += _weight_bytes(graph, root, node, index, override)
                if graph.is_parameter(root):
                    params += _numel(graph.shape(root) or ())
        outputs = [output for output in node.output if output]
        rule = COST_RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is not None:
            context = NodeContext(
                node,
                [graph.shape(name) if name else None for name in node.input],
                [graph.shape(name) if name else None for name in node.output],
                {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute},
            )
            cost = rule(context)
        else:
            cost = OpCost(0, 0, "uncounted")
        first_shape = graph.shape(outputs[0]) if outputs else None
        rows.append(
            NodeCost(
                name=node.name or (outputs[0] if outputs else node.op_type),
                op_type=node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}",
                kind=cost.kind,
                precision=_node_precision(graph, node, override, weight_roots),
                params=params,
                macs=int(cost.macs),
                ops=int(cost.ops),
                weight_bytes=weight_bytes,
                input_bytes=sum(_activation_bytes(graph, name, override) for name in activations),
                output_bytes=sum(_activation_bytes(graph, name, override) for name in outputs),
                output_shape=list(first_shape) if first_shape is not None else None,
                counted=rule is not None,
                inputs=activations,
                outputs=outputs,
            )
        )
    activation_names = list(shapes) + [output for node in live_nodes for output in node.output if output]
    leftover_bytes = sum(
        _nbytes(_numel(graph.shape(root) or ()), _element_bits(graph.dtype(root)))
        for root in graph.initializers
        if root not in attributed and graph.consumers.get(root)
    )
    return GraphCost(
        name=name or graph.graph.name or "graph",
        precision=precision or own_precision,
        derived=override is not None,
        batch=next((dims[0] for dims in shapes.values() if dims), batch),
        input_shapes=shapes,
        nodes=rows,
        activation_bytes={tensor: _activation_bytes(graph, tensor, override) for tensor in activation_names},
        graph_inputs=list(shapes),
        graph_outputs=[output.name for output in graph.graph.output],
        params=sum(
            _numel(graph.shape(root) or ())
            for root in graph.initializers
            if graph.is_parameter(root) and graph.consumers.get(root)
        ),
        weight_bytes=sum(row.weight_bytes for row in rows) + leftover_bytes,
    )
