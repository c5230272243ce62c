"""TensorRT readiness of an ONNX graph for a device, node by node, without TensorRT installed.

Four checks, each from documentation rather than guesswork:

- the ONNX parser: is each operator in the operator table of the device's TensorRT version
  (:mod:`edgecnn.export.tensorrt.support`), is the opset within its range, are its documented restrictions met;
- Q/DQ compliance for TensorRT's explicit quantization: signed INT8, zero point 0, per-channel scales only
  on weights and along their output-channel axis, per-tensor scales on activations;
- shapes: dynamic dimensions need an optimization profile (``--batch`` or ``--shapes``);
- on devices with DLA cores, which layers DLA runs and which fall back to the GPU, and why, by the rules
  in :data:`DLA_RULES` (TensorRT Developer Guide, "DLA Supported Layers and Restrictions", with the ONNX
  operator view of NVIDIA's Deep-Learning-Accelerator-SW repository). TensorRT makes this fallback
  silently when GPU fallback is allowed; the report makes it visible.

The DLA half is an estimate from the documented rules: TensorRT's builder has the last word (its
``can_run_on_DLA`` answer is recorded in the engine's sidecar by :mod:`edgecnn.export.tensorrt.engine`, and a
trtexec layer-info file shows where each layer ran).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgecnn.devices import Device, JetpackRelease, fast_int8_note, resolve_jetpack
from edgecnn.errors import UsageError
from edgecnn.export.tensorrt.support import operator_support, parse_version
from edgecnn.onnx_facts import GraphIndex, graph_precision, load_onnx, opset_version, values_without_shape

__all__ = [
    "DLA_GUIDE",
    "DLA_SW",
    "DlaRule",
    "DLA_RULES",
    "Issue",
    "NodeReadiness",
    "ReadinessReport",
    "ShapeProfile",
    "check_model",
    "dla_supported",
]

DLA_GUIDE = "TensorRT Developer Guide, DLA Supported Layers and Restrictions"
DLA_SW = "NVIDIA/Deep-Learning-Accelerator-SW operators/README.md (ONNX operators on Orin DLA through TensorRT)"
NVINFER = "TensorRT include/NvInfer.h (release/10.3)"
ONNX_TRT = "onnx/onnx-tensorrt onnxOpImporters.cpp"
DLA_VERSIONS = (
    "TensorRT 11.4.1 docs, Working with DLA and the 10.x-to-11.x Jetson migration guide: 10.7 was the last 10.x "
    "with DLA; none in 10.8-11.3 (11.4.0: Windows on ARM only); 11.4.1 on Jetson AGX Orin with JetPack 7.2.2+, "
    "strongly typed networks only"
)
GUIDE = "DLA guide"
SW = "DLA-SW table"
HEADER = "NvInfer.h"
MAX_DLA_DIM = 8192
MAX_DLA_BATCH = 4096


@dataclass(frozen=True)
class DlaRule:
    """One documented DLA restriction: the TensorRT layer, the ONNX operators it covers, the limits, the source."""

    layer: str
    onnx_ops: tuple[str, ...]
    limits: str
    source: str


DLA_RULES: tuple[DlaRule, ...] = (
    DlaRule(
        "all layers",
        ("*",),
        "FP16 or INT8 only; static shapes (profile min = opt = max); batch <= 4096; "
        "every non-batch dimension <= 8192; 4-D (two spatial dimensions) tensors",
        f"{DLA_GUIDE}: General Restrictions",
    ),
    DlaRule(
        "Convolution / Fully Connected",
        ("Conv", "Gemm", "MatMul"),
        "kernel [1, 32] per dimension; stride [1, 8]; padding [0, 31] and smaller than the kernel; dilation [1, 32]; "
        "output maps [1, 8192]; groups [1, 8192]; constant weights; convolution buffer (CBUF) need "
        "wtBanksForOneKernel + minDataBanks <= 16",
        f"{DLA_GUIDE}: Convolution and Fully Connected Layers; {DLA_SW}: Gemm/MatMul need a constant second input",
    ),
    DlaRule(
        "Deconvolution",
        ("ConvTranspose",),
        "2-D only; one group, no dilation; padding 0; kernel and stride [1, 32] "
        "(or 64/96/128 in one dimension and 1 in the other)",
        f"{NVINFER}: IDeconvolutionLayer setKernelSizeNd, setStrideNd, setPaddingNd, setNbGroups; "
        f"{DLA_GUIDE}: Deconvolution Layer",
    ),
    DlaRule(
        "Pooling",
        ("MaxPool", "AveragePool"),
        "2-D only; max or average; window [1, 8]; padding [0, 7]; stride [1, 16]; "
        "in INT8 the input and output dynamic ranges must be equal",
        f"{DLA_GUIDE}: Pooling Layer; {NVINFER}: IPoolingLayer (setWindowSizeNd, setStrideNd, the INT8 range warning)",
    ),
    DlaRule(
        "Reduce (max)",
        ("GlobalMaxPool",),
        "on DLA from TensorRT 8.6.12 (so 10.x), as a Reduce layer",
        f"{DLA_SW}: GlobalMaxPool 'Native (as of TensorRT 8.6.12)'; {ONNX_TRT} (globalPoolingHelper)",
    ),
    DlaRule(
        "Reduce",
        ("GlobalAveragePool", "ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin"),
        "not run on DLA through TensorRT: the ONNX parser imports GlobalAveragePool as a Reduce layer",
        f"{DLA_SW}: GlobalAveragePool, ReduceMean 'See RFE'; {ONNX_TRT} (globalPoolingHelper)",
    ),
    DlaRule(
        "Activation",
        ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip"),
        "ReLU, Sigmoid, TanH, Clipped ReLU (clip to [0, max], max in [1, 127]), Leaky ReLU; nothing else",
        f"{DLA_GUIDE}: Activation Layer",
    ),
    DlaRule(
        "Parametric ReLU",
        ("PRelu",),
        "slope a build-time constant of the input's rank",
        f"{DLA_GUIDE}: Parametric ReLU Layer",
    ),
    DlaRule(
        "ElementWise",
        ("Add", "Sub", "Mul", "Max", "Min", "Sum"),
        "Sum, Sub, Product, Max, Min only (not Div, not Pow); equal shapes, or broadcast of an NC11 / N111 operand; "
        "in INT8 both inputs need the same dynamic range",
        f"{NVINFER}: IElementWiseLayer ('DLA supports only kSUM, kPROD, kMAX, kMIN, and kSUB', "
        f"the INT8 range warning); {DLA_GUIDE}: ElementWise Layer",
    ),
    DlaRule(
        "Unary", ("Abs",), "Abs only", f"{NVINFER}: IUnaryLayer ('only UnaryOperation::kABS'); {DLA_SW}: Abs 'Native'"
    ),
    DlaRule(
        "Resize",
        ("Resize",),
        "4-D; scales 1, 1, then an integer in [1, 32] (nearest) or [1, 4] (linear) per spatial axis; "
        "nearest with asymmetric/floor or half_pixel/round_prefer_floor|ceil, linear with half_pixel",
        f"{NVINFER}: IResizeLayer (DLA parameter combinations, setScales); {DLA_SW}: Resize 'Native'",
    ),
    DlaRule(
        "Scale",
        ("BatchNormalization",),
        "uniform, per-channel or element-wise scale and shift on 4-D tensors",
        f"{DLA_GUIDE}: Scale Layer",
    ),
    DlaRule(
        "Concatenation",
        ("Concat",),
        "along the channel axis only; at least two inputs; equal spatial dimensions",
        f"{DLA_GUIDE}: Concatenation Layer",
    ),
    DlaRule("LRN", ("LRN",), "window 3, 5, 7 or 9; across channels", f"{DLA_GUIDE}: LRN Layer"),
    DlaRule(
        "SoftMax",
        ("Softmax",),
        "Orin (DLA 2) only, not Xavier; axis a non-batch dimension",
        f"{DLA_GUIDE}: SoftMax Layer",
    ),
    DlaRule(
        "Shuffle",
        ("Reshape", "Transpose"),
        "4-D tensors; the batch dimension is neither reshaped nor transposed",
        f"{DLA_GUIDE}: Shuffle Layer",
    ),
    DlaRule(
        "Slice",
        ("Slice", "Split"),
        "4-D; static starts, ends and axes; step 1; not along the batch axis",
        f"{DLA_GUIDE}: Slice Layer; {DLA_SW}: Split is translated to Slice",
    ),
    DlaRule(
        "not on DLA through TensorRT",
        (
            "Flatten",
            "Squeeze",
            "Unsqueeze",
            "Pad",
            "Cast",
            "HardSigmoid",
            "HardSwish",
            "Elu",
            "Selu",
            "Softplus",
            "Gather",
            "Div",
            "Pow",
        ),
        "no DLA implementation exposed by TensorRT",
        f"{DLA_SW}: 'See RFE' or 'Reconstruction' rows; {NVINFER}: IElementWiseLayer for Div and Pow",
    ),
)

_NO_LAYER = {"Constant", "Identity", "Dropout", "QuantizeLinear", "DequantizeLinear"}
_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip"}
_ELEMENTWISE = {"Add", "Sub", "Mul", "Max", "Min", "Sum"}
_REDUCE = {
    "GlobalAveragePool",
    "ReduceMean",
    "ReduceMax",
    "ReduceSum",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
}
_NOT_ON_DLA = {
    "Flatten": f"TensorRT does not expose Flatten on DLA [{SW}: See RFE]; a Reshape keeping 4-D tensors can run there",
    "Squeeze": f"TensorRT does not expose Squeeze on DLA [{SW}]",
    "Unsqueeze": f"TensorRT does not expose Unsqueeze on DLA [{SW}]",
    "Pad": f"TensorRT does not expose Pad on DLA [{SW}]; fold the padding into the convolution or pooling",
    "Cast": "DLA has no Cast layer: type conversions at the network boundary run on the GPU",
    "HardSigmoid": f"DLA's activations are ReLU, Sigmoid, TanH, Clipped ReLU, Leaky ReLU [{GUIDE}: Activation]",
    "HardSwish": f"DLA's activations are ReLU, Sigmoid, TanH, Clipped ReLU, Leaky ReLU [{GUIDE}: Activation]",
    "Div": f"DLA's ElementWise operations are Sum, Prod, Max, Min and Sub only [{HEADER}: IElementWiseLayer]",
    "Pow": f"DLA's ElementWise operations are Sum, Prod, Max, Min and Sub only [{HEADER}: IElementWiseLayer]",
}
_SEVERITY_ORDER = ("error", "warning", "note")


@dataclass(frozen=True)
class ShapeProfile:
    """The input batch TensorRT will build for: one static batch, or a (min, opt, max) range."""

    minimum: int
    optimum: int
    maximum: int

    @classmethod
    def static(cls, batch: int) -> ShapeProfile:
        return cls(batch, batch, batch)

    @classmethod
    def parse(cls, text: str) -> ShapeProfile:
        """``"1,8,32"`` (min, opt, max batch sizes)."""
        try:
            values = [int(part) for part in text.replace(" ", "").split(",")]
        except ValueError:
            values = []
        if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
            raise UsageError(
                f"--shapes {text!r}: give three batch sizes min,opt,max with 1 <= min <= opt <= max, e.g. 1,8,32"
            )
        return cls(*values)

    @property
    def is_static(self) -> bool:
        return self.minimum == self.maximum


@dataclass
class Issue:
    """A model-level finding: ``severity`` error (TensorRT will not build it), warning or note."""

    severity: str
    code: str
    message: str
    nodes: list[str] = field(default_factory=list)


@dataclass
class NodeReadiness:
    """One ONNX node: parser support, Q/DQ compliance and, on DLA devices, where TensorRT will run it."""

    node: str
    op_type: str
    parser: str
    qdq: str = ""
    dla: str = ""
    reason: str = ""

    @property
    def blocked(self) -> bool:
        return self.parser not in ("ok",) or self.qdq.startswith("non-compliant")


@dataclass
class ReadinessReport:
    model: str
    device: str
    tensorrt: str
    parser_table: str
    opset: int
    precision: str
    dla_cores: int
    dla_version: str | None
    dla_evaluated: bool
    dla_precision: str | None
    inputs: list[dict[str, Any]]
    nodes: list[NodeReadiness]
    issues: list[Issue]
    jetpack: str | None = None

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def dla_layers(self) -> int:
        return sum(node.dla == "dla" for node in self.nodes)

    @property
    def gpu_fallback_layers(self) -> int:
        return sum(node.dla == "gpu" for node in self.nodes)

    @property
    def verdict(self) -> str:
        """``blocked`` (TensorRT will not build it as is), ``gpu``, ``dla`` or ``dla+gpu`` (DLA with GPU fallback)."""
        if self.errors:
            return "blocked"
        if not self.dla_evaluated:
            return "gpu"
        return "dla" if self.gpu_fallback_layers == 0 else "dla+gpu"

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "jetpack": self.jetpack,
            "tensorrt": self.tensorrt,
            "precision": self.precision,
            "verdict": self.verdict,
            "nodes": len(self.nodes),
            "parser_unsupported": sum(node.parser != "ok" for node in self.nodes),
            "qdq_problems": sum(node.qdq.startswith("non-compliant") for node in self.nodes),
            "dla_layers": self.dla_layers if self.dla_evaluated else None,
            "gpu_fallback_layers": self.gpu_fallback_layers if self.dla_evaluated else None,
            "errors": len(self.errors),
        }

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"summary": self.summary(), **{k: v for k, v in asdict(self).items()}}


def _release(version: str) -> tuple[int, int, int]:
    """``"11.4.1.3"`` -> (11, 4, 1); missing parts are 0."""
    major, minor = parse_version(version)
    parts = str(version).strip().lower().removeprefix("tensorrt").strip().lstrip("v").split(".")
    patch = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    return major, minor, patch


def dla_supported(tensorrt_version: str, device: Device | None = None) -> bool:
    """Whether ``tensorrt_version`` runs layers on a Jetson's DLA (on ``device``, when given).

    By NVIDIA's DLA/TensorRT matrix (:data:`DLA_VERSIONS`): 8.x and 10.0-10.7 yes; 10.8 to 11.4.0 no; from
    11.4.1 on Jetson AGX Orin only (JetPack 7.2.2+), and only for strongly typed networks.
    """
    release = _release(tensorrt_version)
    if release < (10, 8, 0):
        return True
    if release < (11, 4, 1):
        return False
    return device is None or device.id.startswith("jetson-agx-orin")


def _no_dla_reason(tensorrt_version: str, device: Device) -> str:
    release = _release(tensorrt_version)
    if release >= (11, 4, 1):
        return (
            f"TensorRT {tensorrt_version} runs DLA on Jetson AGX Orin only (JetPack 7.2.2+), not on {device.id}: "
            f"every layer runs on the GPU [{DLA_VERSIONS}]"
        )
    return f"TensorRT {tensorrt_version} has no DLA support on JetPack: every layer runs on the GPU [{DLA_VERSIONS}]"


class _Graph(GraphIndex):
    """The facts about a graph the checks need: constants, shapes, producers and consumers."""

    def __init__(self, model: onnx.ModelProto, batch: int | None) -> None:
        super().__init__(model)
        self.batch = batch
        self.shapes: dict[str, list[int | None]] = {}
        self.dtypes: dict[str, int] = {}
        for value in list(self.graph.input) + list(self.graph.value_info) + list(self.graph.output):
            tensor = value.type.tensor_type
            self.dtypes[value.name] = tensor.elem_type
            if tensor.HasField("shape"):
                self.shapes[value.name] = [self._dim(d, i) for i, d in enumerate(tensor.shape.dim)]
        for name, init in self.initializers.items():
            self.shapes[name] = list(init.dims)
            self.dtypes[name] = init.data_type
        self._constant_cache: dict[str, bool] = {}

    def _dim(self, dim, index: int) -> int | None:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            return int(dim.dim_value)
        return self.batch if index == 0 and self.batch else None

    def is_constant(self, name: str) -> bool:
        """Known at build time: an initializer, a Constant, or computed from constants only (TensorRT folds it)."""
        if not name:
            return True
        if name in self._constant_cache:
            return self._constant_cache[name]
        self._constant_cache[name] = False
        node = self.producers.get(name)
        if name in self.initializers or name in self.constant_nodes:
            result = True
        elif node is None:
            result = False
        else:
            result = all(self.is_constant(i) for i in node.input if i)
        self._constant_cache[name] = result
        return result

    def value(self, name: str) -> np.ndarray | None:
        """The array of an initializer or Constant, else None (also for a shape-only graph's stripped tensors)."""
        if name in self.initializers:
            tensor = self.initializers[name]
            try:
                array = numpy_helper.to_array(tensor)
            except Exception:
                return None
            return array if array.size == int(np.prod(tensor.dims, dtype=np.int64)) else None
        node = self.constant_nodes.get(name)
        if node is not None:
            for attribute in node.attribute:
                if attribute.name == "value":
                    return numpy_helper.to_array(attribute.t)
        return None

    def shape(self, name: str) -> list[int | None] | None:
        return self.shapes.get(name)


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def _node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


# ----------------------------------------------------------------------------------------------- parser


FP8_SOURCE = (
    "TensorRT support matrix: FP8 on compute capability 8.9+ (Ada, Hopper, Blackwell; DRIVE OS TensorRT 10.10 "
    "lists FP8 for Thor), not on 8.7 Orin or older; FP8 Q/DQ per TensorRT's explicit quantization guide"
)


def _fp8_issue(device: Device) -> Issue:
    """Where an FP8 Q/DQ model runs: on a device with an FP8 peak (Thor) natively, elsewhere not at all."""
    if device.peak("fp8") is not None:
        return Issue(
            "note",
            "fp8",
            f"{device.id} has FP8 tensor cores ({device.peak('fp8'):,.0f} GFLOP/s dense): TensorRT runs the FP8 "
            f"Q/DQ convolutions and GEMMs in FP8 E4M3 [{FP8_SOURCE}]",
        )
    return Issue(
        "error",
        "no-fp8",
        f"{device.id} has no FP8 tensor cores and TensorRT's support matrix lists no FP8 for it: an FP8 Q/DQ "
        "network is strongly typed, so TensorRT has no other precision to run those layers in; compile the INT8 "
        "Q/DQ model (edgecnn quantize --target tensorrt) or the FP16 one instead "
        f"[{FP8_SOURCE}]",
    )


def _parser_violation(node: onnx.NodeProto, graph: _Graph, tensorrt_major: int) -> str:
    """A documented parser restriction the node breaks (onnx-tensorrt docs/operators.md), or ''."""
    attributes = _attributes(node)
    op = node.op_type
    if op in ("MaxPool", "AveragePool", "LpPool"):
        rank = len(graph.shape(node.input[0]) or [])
        if rank and rank not in (4, 5):
            return "2D or 3D pooling only"
        if op == "MaxPool" and len([o for o in node.output if o]) > 1:
            return "the Indices output is unsupported"
        if tensorrt_major >= 10 and any(d != 1 for d in attributes.get("dilations", [])):
            return "dilations must be empty or all ones"
    if op in ("Conv", "ConvTranspose") and tensorrt_major == 8 and not graph.is_constant(node.input[1]):
        return "weights W must be an initializer"
    if op == "Slice" and len(node.input) > 3 and node.input[3] and not graph.is_constant(node.input[3]):
        return "axes must be an initializer"
    if (
        op in ("Squeeze", "Unsqueeze")
        and len(node.input) > 1
        and node.input[1]
        and not graph.is_constant(node.input[1])
    ):
        return "axes must be a constant"
    if op == "Resize" and attributes.get("mode", b"nearest") not in (b"nearest", b"linear"):
        return "modes nearest and linear only"
    if op == "Dropout" and len(node.input) > 2 and node.input[2]:
        training = graph.value(node.input[2])
        if training is None or bool(np.asarray(training).item()):
            return "is_training must be an initializer that evaluates to False"
    return ""


# ----------------------------------------------------------------------------------------------- Q/DQ


def _qdq_finding(node: onnx.NodeProto, graph: _Graph) -> str:
    """Q/DQ compliance of one QuantizeLinear/DequantizeLinear node for TensorRT's explicit quantization."""
    zero_point_name = node.input[2] if len(node.input) > 2 else ""
    problems = []
    if zero_point_name:
        zero_point = graph.value(zero_point_name)
        dtype = graph.dtypes.get(zero_point_name)
        if dtype == onnx.TensorProto.INT32:
            problems.append("INT32 (a quantized bias): TensorRT's parser dequantizes INT8 only, keep biases in float")
        elif dtype not in (None, onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN):
            type_name = onnx.TensorProto.DataType.Name(dtype)
            problems.append(f"{type_name} zero point: TensorRT needs symmetric signed INT8 or FP8 E4M3")
        if zero_point is None:
            problems.append("the zero point is not a constant")
        elif np.any(np.asarray(zero_point) != 0):
            problems.append("asymmetric: zero point is not 0")
    scale = graph.value(node.input[1])
    if scale is None:
        problems.append("the scale is not a constant")
        return "non-compliant: " + "; ".join(problems)
    if np.any(np.asarray(scale) <= 0):
        problems.append("a scale is not positive")
    if np.asarray(scale).size > 1:
        data = node.input[0]
        weights = graph.is_constant(data)
        if not weights:
            problems.append("per-channel scale on an activation: TensorRT takes per-tensor activation scales only")
        else:
            axis = _attributes(node).get("axis", 1)
            expected = _weight_axis(node, graph)
            rank = len(graph.shape(data) or [])
            if expected is not None and rank and axis % rank != expected % rank:
                problems.append(f"per-channel axis {axis}: the weights' output-channel axis is {expected}")
    if problems:
        return "non-compliant: " + "; ".join(problems)
    if node.op_type == "QuantizeLinear" and not zero_point_name:
        return (
            f"ok (no zero point: TensorRT quantizes to INT8 [{ONNX_TRT}: QuantizeLinear]; "
            "ONNX Runtime to UINT8, so its results differ from TensorRT's)"
        )
    return "ok (per-channel weights)" if np.asarray(scale).size > 1 else "ok"


def _weight_axis(node: onnx.NodeProto, graph: _Graph) -> int | None:
    """The output-channel axis of the weights this Q/DQ feeds: 0 for Conv, 1 for ConvTranspose and MatMul."""
    outputs = [node.output[0]]
    consumer = None
    for _ in range(3):
        users = graph.readers(outputs[0])
        if not users:
            return None
        consumer = users[0]
        if consumer.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            break
        outputs = [consumer.output[0]]
    if consumer is None:
        return None
    if consumer.op_type == "Conv":
        return 0
    if consumer.op_type in ("ConvTranspose", "MatMul"):
        return 1
    if consumer.op_type == "Gemm":
        return 0 if _attributes(consumer).get("transB", 0) else 1
    return None


# ----------------------------------------------------------------------------------------------- DLA


@dataclass
class _DlaContext:
    dla_version: int
    tensorrt_major: int
    precision: str
    static: bool
    release: tuple[int, int, int] = (0, 0, 0)


def _pair(values: Iterable[int] | None, default: int, count: int = 2) -> list[int]:
    values = list(values or [])
    return values if values else [default] * count


def _cbuf_overflow(in_channels: int, kernel: list[int], dilation: list[int], width: int, int8: bool) -> int | None:
    """Banks of DLA's 16-bank convolution buffer this convolution needs, when more than 16 (TensorRT's formula)."""
    element = 1 if int8 else 2
    weight_bytes = math.ceil(in_channels * kernel[0] * kernel[1] * element / 128) * 128
    weight_banks = math.ceil(weight_bytes / 32768)
    entries_per_slice = math.ceil(math.ceil(in_channels * element / 32) * width / 4)
    dilated_height = (kernel[0] - 1) * dilation[0] + 1
    data_banks = math.ceil(entries_per_slice * dilated_height / 256)
    total = weight_banks + data_banks
    return total if total > 16 else None


def _general_dla_reasons(node: onnx.NodeProto, graph: _Graph, context: _DlaContext, rank4: bool) -> list[str]:
    reasons = []
    if context.precision == "fp32":
        reasons.append(
            "FP32: DLA runs FP16 and INT8 only, and a strongly typed network keeps the ONNX's types "
            "[DLA guide: general restrictions]"
        )
    if not context.static:
        reasons.append("dynamic shapes: DLA needs min = opt = max [DLA guide: general restrictions]")
    for name in [i for i in node.input if i and not graph.is_constant(i)] + [o for o in node.output if o]:
        shape = graph.shape(name)
        if not shape:
            continue
        if rank4 and len(shape) != 4:
            reasons.append(f"{len(shape)}-D tensor {name}: DLA runs 4-D (two spatial dimension) tensors")
            break
        if shape[0] and shape[0] > MAX_DLA_BATCH:
            reasons.append(f"batch {shape[0]} > {MAX_DLA_BATCH} [DLA guide: general restrictions]")
            break
        big = [d for d in shape[1:] if d and d > MAX_DLA_DIM]
        if big:
            reasons.append(f"dimension {big[0]} of {name} > {MAX_DLA_DIM} [DLA guide: general restrictions]")
            break
    return reasons


def _conv_reasons(node: onnx.NodeProto, graph: _Graph, context: _DlaContext) -> list[str]:
    attributes = _attributes(node)
    weight_shape = graph.shape(node.input[1]) or []
    reasons = []
    if not graph.is_constant(node.input[1]):
        reasons.append("weights are not constant")
    if len(weight_shape) != 4:
        return reasons + ["only 2-D convolutions"]
    out_maps, in_per_group, kh, kw = weight_shape
    kernel = _pair(attributes.get("kernel_shape"), 0) if attributes.get("kernel_shape") else [kh, kw]
    stride = _pair(attributes.get("strides"), 1)
    dilation = _pair(attributes.get("dilations"), 1)
    pads = _pair(attributes.get("pads"), 0, 4)
    groups = int(attributes.get("group", 1))
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
        reasons.append("auto_pad SAME_*: export explicit pads")
    if any(not 1 <= k <= 32 for k in kernel):
        reasons.append(f"kernel {kernel[0]}x{kernel[1]} outside [1, 32]")
    if node.op_type == "ConvTranspose":
        if any(not 1 <= s <= 32 for s in stride):
            reasons.append(f"stride {stride} outside [1, 32] [{HEADER}: IDeconvolutionLayer::setStrideNd]")
        if groups != 1:
            reasons.append(f"{groups} groups: DLA deconvolution takes one [{HEADER}: IDeconvolutionLayer::setNbGroups]")
        if any(d != 1 for d in dilation):
            reasons.append("dilated deconvolution")
        if any(pads):
            reasons.append(
                f"padding {pads}: deconvolution padding must be 0 [{HEADER}: IDeconvolutionLayer::setPaddingNd]"
            )
        out_maps = weight_shape[1] * groups
    else:
        if any(not 1 <= s <= 8 for s in stride):
            reasons.append(f"stride {stride} outside [1, 8]")
        if any(not 0 <= p <= 31 for p in pads):
            reasons.append(f"padding {pads} outside [0, 31]")
        elif any(p >= kernel[i % 2] for i, p in enumerate(pads)):
            reasons.append(f"padding {pads} not smaller than the kernel {kernel}")
        if any(not 1 <= d <= 32 for d in dilation):
            reasons.append(f"dilation {dilation} outside [1, 32]")
    if not 1 <= out_maps <= MAX_DLA_DIM:
        reasons.append(f"{out_maps} output maps outside [1, 8192]")
    if not 1 <= groups <= MAX_DLA_DIM:
        reasons.append(f"{groups} groups outside [1, 8192]")
    input_shape = graph.shape(node.input[0]) or []
    if node.op_type == "Conv" and len(input_shape) == 4 and input_shape[3]:
        banks = _cbuf_overflow(in_per_group * groups, kernel, dilation, input_shape[3], context.precision == "int8")
        if banks:
            reasons.append(f"needs {banks} of the 16 convolution-buffer banks")
    tag = "DLA guide: Deconvolution" if node.op_type == "ConvTranspose" else "DLA guide: Convolution"
    return [r if r.endswith("]") else f"{r} [{tag}]" for r in reasons]


def _pool_reasons(node: onnx.NodeProto, graph: _Graph) -> list[str]:
    attributes = _attributes(node)
    kernel = list(attributes.get("kernel_shape", []))
    stride = _pair(attributes.get("strides"), 1, len(kernel) or 2)
    pads = _pair(attributes.get("pads"), 0, 2 * (len(kernel) or 2))
    reasons = []
    if len(kernel) != 2:
        return [f"{len(kernel)}-D pooling: DLA pools over two spatial dimensions [DLA guide: Pooling]"]
    if any(not 1 <= k <= 8 for k in kernel):
        reasons.append(f"window {kernel[0]}x{kernel[1]} outside [1, 8]")
    if any(not 0 <= p <= 7 for p in pads):
        reasons.append(f"padding {pads} outside [0, 7]")
    if any(not 1 <= s <= 16 for s in stride):
        reasons.append(f"stride {stride} outside [1, 16]")
    return [f"{r} [DLA guide: Pooling]" for r in reasons]


def _broadcast_reasons(node: onnx.NodeProto, graph: _Graph, context: _DlaContext) -> list[str]:
    shapes = [graph.shape(i) for i in node.input if i]
    tensors = [i for i in node.input if i and not graph.is_constant(i)]
    if len(tensors) < 2:
        constant = next((graph.shape(i) for i in node.input if i and graph.is_constant(i)), None)
        if constant is None:
            return []
        count = int(np.prod([d or 1 for d in constant])) if constant else 1
        tensor_shape = (graph.shape(tensors[0]) or []) if tensors else []
        channels = tensor_shape[1] if len(tensor_shape) > 1 else None
        elements = int(np.prod([d or 1 for d in tensor_shape[1:]])) if tensor_shape else None
        if count in (1, channels, elements):
            return []
        return [
            f"constant operand of shape {constant} is neither uniform, per-channel nor element-wise [DLA guide: Scale]"
        ]
    full = [s for s in shapes if s]
    if len(full) < 2 or all(s == full[0] for s in full):
        return []
    target = graph.shape(node.output[0]) or max(full, key=len)
    for shape in full:
        if shape == target:
            continue
        if (
            len(shape) == 4
            and len(target) == 4
            and shape[0] == target[0]
            and shape[2:] == [1, 1]
            and shape[1] in (1, target[1])
        ):
            continue
        return [
            f"broadcast of {shape} against {target}: DLA broadcasts NC11 or N111 operands only [DLA guide: ElementWise]"
        ]
    return []


def _shuffle_reasons(node: onnx.NodeProto, graph: _Graph) -> list[str]:
    input_shape = graph.shape(node.input[0]) or []
    output_shape = graph.shape(node.output[0]) or []
    if len(input_shape) != 4 or len(output_shape) != 4:
        return [f"{len(input_shape)}-D -> {len(output_shape)}-D: DLA shuffles 4-D tensors only [DLA guide: Shuffle]"]
    if node.op_type == "Transpose":
        perm = list(_attributes(node).get("perm", []))
        if perm and perm[0] != 0:
            return ["transposes the batch dimension [DLA guide: Shuffle]"]
    elif input_shape[0] != output_shape[0]:
        return ["reshapes the batch dimension [DLA guide: Shuffle]"]
    return []


_RESIZE_NEAREST = {
    (b"asymmetric", b"floor"),
    (b"half_pixel", b"round_prefer_floor"),
    (b"half_pixel", b"round_prefer_ceil"),
}


def _resize_reasons(node: onnx.NodeProto, graph: _Graph) -> list[str]:
    """DLA's Resize: the parameter combinations and integer scales NvInfer.h's IResizeLayer lists for DLA."""
    attributes = _attributes(node)
    mode = attributes.get("mode", b"nearest")
    transform = attributes.get("coordinate_transformation_mode", b"half_pixel")
    rounding = attributes.get("nearest_mode", b"round_prefer_floor")
    reasons = []
    if mode == b"nearest" and (transform, rounding) not in _RESIZE_NEAREST:
        reasons.append(
            f"nearest with {transform.decode()}/{rounding.decode()}: "
            "DLA takes asymmetric/floor or half_pixel/round_prefer_floor|ceil"
        )
    elif mode == b"linear" and transform != b"half_pixel":
        reasons.append(f"linear with {transform.decode()}: DLA takes half_pixel")
    elif mode not in (b"nearest", b"linear"):
        reasons.append(f"mode {mode.decode()}: DLA resizes nearest or linear")
    if not all(graph.is_constant(i) for i in node.input[1:] if i):
        reasons.append("scales or sizes not known at build time")
    source, target = graph.shape(node.input[0]) or [], graph.shape(node.output[0]) or []
    limit = 32 if mode == b"nearest" else 4
    if len(source) != 4 or len(target) != 4 or not all(source) or not all(target):
        reasons.append("DLA resizes 4-D tensors with known shapes")
    elif source[:2] != target[:2] or any(t % s or not 1 <= t // s <= limit for s, t in zip(source[2:], target[2:])):
        reasons.append(f"scales {[t / s for s, t in zip(source, target)]}: DLA needs 1, 1 and integers in [1, {limit}]")
    return [f"{r} [{HEADER}: IResizeLayer]" for r in reasons]


def _slice_reasons(node: onnx.NodeProto, graph: _Graph) -> list[str]:
    shape = graph.shape(node.input[0]) or []
    if len(shape) != 4:
        return [f"{len(shape)}-D input: DLA slices 4-D tensors [DLA guide: Slice]"]
    if node.op_type == "Split":
        axis = _attributes(node).get("axis", 0)
        return ["splits along the batch axis [DLA guide: Slice]"] if axis % 4 == 0 else []
    if not all(graph.is_constant(i) for i in node.input[1:] if i):
        return ["dynamic slice bounds [DLA guide: Slice]"]
    steps = graph.value(node.input[4]) if len(node.input) > 4 and node.input[4] else None
    if steps is not None and np.any(np.asarray(steps) != 1):
        return ["step other than 1 [DLA guide: Slice]"]
    axes = graph.value(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if axes is not None and any(int(a) % 4 == 0 for a in np.asarray(axes).ravel()):
        return ["slices along the batch axis [DLA guide: Slice]"]
    return []


def _dla_reasons(node: onnx.NodeProto, graph: _Graph, context: _DlaContext) -> list[str] | None:
    """Why DLA will not run this node (empty: it will), or None when TensorRT makes no layer of it."""
    op = node.op_type
    if op in _NO_LAYER or all(graph.is_constant(i) for i in node.input if i):
        return None
    if op == "GlobalMaxPool" and context.release < (8, 6, 12):
        return [
            f"GlobalMaxPool becomes a Reduce layer, on DLA only from TensorRT 8.6.12 [{SW}: GlobalMaxPool]; "
            "a MaxPool over the whole feature map (window <= 8x8) runs on DLA"
        ]
    if op in _REDUCE:
        return [
            f"{op} becomes a Reduce layer, which DLA does not run through TensorRT [{SW}]; "
            "an AveragePool over the whole feature map (window <= 8x8) runs on DLA"
        ]
    if op in _NOT_ON_DLA:
        return [_NOT_ON_DLA[op]]
    rank4 = op not in ("Gemm", "MatMul")
    reasons = _general_dla_reasons(node, graph, context, rank4)
    if op in ("Conv", "ConvTranspose"):
        reasons += _conv_reasons(node, graph, context)
    elif op in ("Gemm", "MatMul"):
        weight = node.input[1]
        if not graph.is_constant(weight):
            reasons.append(f"{op} with a non-constant second input [{SW}]")
        attributes = _attributes(node)
        if attributes.get("transA", 0):
            reasons.append("transA=1 [DLA guide: Fully Connected]")
        input_shape = graph.shape(node.input[0]) or []
        if input_shape and input_shape[-1] and input_shape[-1] > MAX_DLA_DIM:
            reasons.append(f"{input_shape[-1]} input features > {MAX_DLA_DIM} [DLA guide: Fully Connected]")
    elif op in ("MaxPool", "AveragePool"):
        reasons += _pool_reasons(node, graph)
    elif op in _ACTIVATIONS:
        if op == "Clip":
            low = graph.value(node.input[1]) if len(node.input) > 1 and node.input[1] else None
            high = graph.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            low_value = float(np.asarray(low)) if low is not None else float(_attributes(node).get("min", -np.inf))
            high_value = float(np.asarray(high)) if high is not None else float(_attributes(node).get("max", np.inf))
            if low_value != 0 or not 1 <= high_value <= 127:
                reasons.append(
                    f"Clip to [{low_value:g}, {high_value:g}]: "
                    "Clipped ReLU needs [0, max] with max in [1, 127] [DLA guide: Activation]"
                )
    elif op == "PRelu":
        slope = graph.shape(node.input[1]) or []
        if not graph.is_constant(node.input[1]):
            reasons.append("slope is not a build-time constant [DLA guide: Parametric ReLU]")
        elif len(slope) != len(graph.shape(node.input[0]) or []):
            reasons.append("slope rank differs from the input's [DLA guide: Parametric ReLU]")
    elif op in _ELEMENTWISE:
        reasons += _broadcast_reasons(node, graph, context)
    elif op == "BatchNormalization":
        pass
    elif op == "Concat":
        axis = int(_attributes(node).get("axis", 1))
        shape = graph.shape(node.output[0]) or []
        if shape and axis % len(shape) != 1:
            reasons.append(f"concatenates along axis {axis}, not channels [DLA guide: Concatenation]")
        if len([i for i in node.input if i]) < 2:
            reasons.append("fewer than two inputs [DLA guide: Concatenation]")
    elif op == "LRN":
        if int(_attributes(node).get("size", 0)) not in (3, 5, 7, 9):
            reasons.append("window not 3, 5, 7 or 9 [DLA guide: LRN]")
    elif op == "Softmax":
        if context.dla_version < 2:
            reasons.append("SoftMax runs on Orin's DLA 2 only, not Xavier's [DLA guide: SoftMax]")
        shape = graph.shape(node.output[0]) or []
        axis = int(_attributes(node).get("axis", -1))
        if shape and axis % len(shape) == 0:
            reasons.append("softmax over the batch axis [DLA guide: SoftMax]")
    elif op in ("Reshape", "Transpose"):
        reasons += _shuffle_reasons(node, graph)
    elif op in ("Slice", "Split"):
        reasons += _slice_reasons(node, graph)
    elif op == "GlobalMaxPool":
        pass
    elif op == "Abs":
        pass
    elif op == "Resize":
        reasons += _resize_reasons(node, graph)
    else:
        reasons.append(f"{op} is not among DLA's supported layers [{GUIDE}]")
    return reasons


# ----------------------------------------------------------------------------------------------- report


def _input_issues(
    graph: _Graph, profile: ShapeProfile | None, dla: bool
) -> tuple[list[Issue], list[dict[str, Any]], bool]:
    """Dynamic dimensions against the profile; returns the issues, the input table and whether shapes are static."""
    issues, inputs, static = [], [], True
    initializers = set(graph.initializers)
    for value in graph.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?") for d in dims]
        inputs.append({"name": value.name, "shape": shape})
        dynamic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if not dynamic:
            if profile is not None and not (profile.is_static and profile.minimum == shape[0]):
                issues.append(
                    Issue(
                        "error",
                        "static-input-profile",
                        f"input {value.name} has a static shape {shape}: "
                        f"--batch/--shapes must match its batch {shape[0]}, or re-export with --dynamic-batch",
                    )
                )
            continue
        if dynamic != [0]:
            static = False
            issues.append(
                Issue(
                    "error",
                    "dynamic-dims",
                    f"input {value.name} has dynamic non-batch dimensions {shape}: fix them with 'edgecnn export "
                    f"FILE.onnx --input-shape {value.name}=DIMS' and check the export directory",
                )
            )
            continue
        if profile is None:
            static = False
            issues.append(
                Issue(
                    "error",
                    "dynamic-batch",
                    f"input {value.name} has a dynamic batch {shape} and no optimization profile: "
                    "give --batch N or --shapes min,opt,max",
                )
            )
        elif not profile.is_static:
            static = False
            if dla:
                issues.append(
                    Issue(
                        "warning",
                        "dla-dynamic",
                        f"--shapes {profile.minimum},{profile.optimum},{profile.maximum}: DLA needs min = opt = max, "
                        "so every layer runs on the GPU; give --batch N",
                    )
                )
    return issues, inputs, static


def check_model(
    model: onnx.ModelProto | str | Path,
    device: Device,
    *,
    tensorrt: str | None = None,
    jetpack: str | JetpackRelease | None = None,
    profile: ShapeProfile | None = None,
    name: str | None = None,
) -> ReadinessReport:
    """Check ``model`` for ``device`` under a JetPack release (``jetpack``, default the newest the device runs).

    The release gives the TensorRT version and whether TensorRT can use the DLA there; ``tensorrt`` overrides
    the version (DLA then follows NVIDIA's DLA/TensorRT matrix for that version).
    """
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        model = load_onnx(path)
        name = name or path.name
    release = _target_release(device, jetpack, tensorrt)
    version = tensorrt or (release.tensorrt if release is not None else None)
    if not version:
        raise UsageError(
            f"{device.id} runs no TensorRT ({device.processor} device): check against a Jetson, "
            "e.g. --device jetson-orin-nano-8gb"
        )
    major, _ = parse_version(version)
    if values_without_shape(model):
        try:
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:
            pass
    batch = profile.optimum if profile is not None else None
    graph = _Graph(model, batch)
    table = operator_support("Conv", version).table
    opset = opset_version(model)
    precision = graph_precision(model)
    if release is not None and tensorrt is None:
        dla_evaluated = device.dla_cores > 0 and release.dla
    else:
        dla_evaluated = device.dla_cores > 0 and dla_supported(version, device)
    issues: list[Issue] = []
    if opset > table.opset_max:
        issues.append(
            Issue(
                "error",
                "opset",
                f"opset {opset} is newer than TensorRT {version}'s ONNX parser supports "
                f"(up to {table.opset_max}, {table.source}): re-export with --opset {table.opset_max}",
            )
        )
    input_issues, inputs, static = _input_issues(graph, profile, dla_evaluated)
    issues += input_issues
    if device.dla_cores > 0 and not dla_evaluated:
        issues.append(Issue("note", "no-dla", _no_dla_reason(version, device)))
    if precision == "fp8":
        issues.append(_fp8_issue(device))
    int8_note = fast_int8_note(device) if precision == "int8" else None
    if int8_note:
        issues.append(Issue("warning", "no-fast-int8", int8_note))
    dla_precision = None
    strongly_typed_dla = dla_evaluated and major >= 11
    if dla_evaluated and strongly_typed_dla:
        dla_precision = precision
        if precision == "fp32":
            issues.append(
                Issue(
                    "warning",
                    "dla-precision",
                    f"TensorRT {version} builds DLA networks strongly typed, and DLA runs FP16 "
                    f"and INT8 only: this FP32 model runs on the GPU; compile the FP16 or INT8 model [{DLA_VERSIONS}]",
                )
            )
    elif dla_evaluated:
        dla_precision = "int8" if precision == "int8" else "fp16"
        if precision == "fp32":
            issues.append(
                Issue(
                    "note",
                    "dla-precision",
                    "DLA runs FP16 and INT8 only: "
                    "for DLA this FP32 model is built with TensorRT's FP16 flag (weakly typed)",
                )
            )
        if precision == "int8":
            issues.append(
                Issue(
                    "note",
                    "dla-int8",
                    "DLA takes INT8 through implicit quantization: "
                    "edgecnn compile turns the Q/DQ scales into per-tensor dynamic ranges, "
                    "made equal where DLA needs it (ElementWise inputs, pooling input and output)",
                )
            )
    context = _DlaContext(int(device.dla_version or 1), major, dla_precision or precision, static, _release(version))
    rows: list[NodeReadiness] = []
    for index, node in enumerate(model.graph.node):
        support = operator_support(node.op_type, version, node.domain)
        violation = _parser_violation(node, graph, major) if support.supported else ""
        if not support.supported:
            parser = f"{support.status}: {support.restriction}"
        elif violation:
            parser = f"restricted: {violation}"
        else:
            parser = "ok"
        row = NodeReadiness(_node_name(node, index), node.op_type, parser)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            row.qdq = _qdq_finding(node, graph)
        if dla_evaluated:
            reasons = _dla_reasons(node, graph, context)
            if reasons is None:
                row.dla = "-"
            elif reasons:
                row.dla, row.reason = "gpu", "; ".join(dict.fromkeys(reasons))
            else:
                row.dla = "dla"
        if parser != "ok":
            row.reason = f"parser: {parser}" + (f"; {row.reason}" if row.reason else "")
        rows.append(row)
    unparsed = [row.node for row in rows if row.parser != "ok"]
    if unparsed:
        issues.append(
            Issue(
                "error",
                "parser",
                f"TensorRT {version}'s ONNX parser cannot import {len(unparsed)} node(s): "
                + ", ".join(f"{r.node} ({r.op_type}: {r.parser})" for r in rows if r.parser != "ok")[:600],
                unparsed,
            )
        )
    bad_qdq = [row for row in rows if row.qdq.startswith("non-compliant")]
    if bad_qdq:
        first = bad_qdq[0]
        issues.append(
            Issue(
                "error",
                "qdq",
                f"{len(bad_qdq)} Q/DQ node(s) are not TensorRT-compliant, first {first.node}: "
                f"{first.qdq.removeprefix('non-compliant: ')}; re-quantize with --int8 --target tensorrt",
                [row.node for row in bad_qdq],
            )
        )
    weight_dequantizers = {
        _node_name(n, i)
        for i, n in enumerate(model.graph.node)
        if n.op_type == "DequantizeLinear" and graph.is_constant(n.input[0])
    }
    per_tensor = [row.node for row in rows if row.qdq == "ok" and row.node in weight_dequantizers]
    if per_tensor:
        issues.append(
            Issue(
                "note",
                "qdq-per-tensor-weights",
                f"{len(per_tensor)} weight Q/DQ node(s) are per-tensor: accepted, "
                "but per-channel weights keep depthwise networks accurate",
                per_tensor,
            )
        )
    issues.sort(key=lambda issue: _SEVERITY_ORDER.index(issue.severity))
    return ReadinessReport(
        model=name or model.graph.name or "model",
        device=device.id,
        tensorrt=str(version),
        parser_table=f"{table.source} (applies to TensorRT {table.tensorrt}, opset <= {table.opset_max})",
        opset=opset,
        precision=precision,
        dla_cores=device.dla_cores,
        dla_version=device.dla_version,
        dla_evaluated=dla_evaluated,
        dla_precision=dla_precision,
        inputs=inputs,
        nodes=rows,
        issues=issues,
        jetpack=release.jetpack if release is not None else None,
    )


def _target_release(
    device: Device, jetpack: str | JetpackRelease | None, tensorrt: str | None
) -> JetpackRelease | None:
    """The JetPack release a check assumes: the one asked for (validated against the device), else the newest
    the device runs; None for a device without JetPack, or when only ``tensorrt`` was given."""
    if isinstance(jetpack, JetpackRelease):
        return jetpack
    if jetpack is None and (tensorrt is not None or not device.jetpack_releases):
        return None
    return resolve_jetpack(device, jetpack)
