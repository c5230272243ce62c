"""Which ONNX operators TensorRT's ONNX parser imports, per TensorRT version.

Derived from onnx-tensorrt's ``docs/operators.md`` (Apache-2.0), one table per documented release:

- ``8.4``: the table at commit 009d6541 ("TensorRT 8.4 supports operators up to Opset 13"), used for
  TensorRT 8.0-8.4 (JetPack 4.6 ships 8.2, whose table also says opset 13);
- ``8.5``: the table at commit 6d0ab7be ("TensorRT 8.5 supports operators up to Opset 17"), used for 8.5-9.x;
- ``10.0``: the table at tag 10.0-GA ("opset 9 to opset 20"), used for TensorRT 10.0;
- ``10.1``: the table at tag 10.1-GA (10.0's plus DeformConv), used for 10.1-10.14 (JetPack 6's 10.3
  included): the newest table before 10.15 available here, and one that lists the window operators and
  STFT as unsupported;
- ``10.15``: the TensorRT 10.15 table ("opset 9 to opset 24"), used for 10.15 and later 10.x and for 11: no
  TensorRT 11 table was available when this was written, so 11 is checked against 10.15's, the newest one.

Only the operator names and the restrictions that matter for CNN classifiers are kept; the data type
columns are left out because edgecnn's graphs are float32/float16 with INT8 only through Q/DQ.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgecnn.errors import UsageError

__all__ = ["ParserTable", "OperatorSupport", "parser_table", "operator_support", "parse_version"]

_SOURCE = "onnx/onnx-tensorrt docs/operators.md"

_COMMON_SUPPORTED = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GRU HardSigmoid Identity If ImageScaler InstanceNormalization
IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
Min Mul Neg NonMaxSuppression Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomUniform
RandomUniformLike Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze
Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where Xor
""".split()

_COMMON_UNSUPPORTED = """
BitShift Compress ConcatFromSequence ConvInteger Det DynamicQuantizeLinear MatMulInteger MaxRoiPool MaxUnpool
Multinomial NegativeLogLikelihoodLoss QLinearConv QLinearMatMul SequenceAt SequenceConstruct SequenceEmpty
SequenceErase SequenceInsert SequenceLength SoftmaxCrossEntropyLoss SplitToSequence StringNormalizer
TfIdfVectorizer Unique
""".split()

_ADDED_IN_8_5 = (
    "GridSample HardSwish MeanVarianceNormalization Mod NonZero OneHot RandomNormal RandomNormalLike Reciprocal "
    "RoiAlign Shrink Trilu"
).split()
_ADDED_IN_10 = """
Attention BlackmanWindow CastLike DeformConv Gelu GroupNormalization HammingWindow HannWindow Hardmax IsInf
LayerNormalization Mish RMSNormalization RotaryEmbedding STFT TensorScatter
""".split()

_RESTRICTIONS_8 = {
    "AveragePool": "2D or 3D pooling only",
    "MaxPool": "2D or 3D pooling only; the Indices output is unsupported",
    "DequantizeLinear": "x_zero_point must be zero",
    "QuantizeLinear": "y_zero_point must be 0",
    "Slice": "axes must be an initializer",
    "Squeeze": "axes must be an initializer",
    "Unsqueeze": "axes must be a constant tensor",
    "CumSum": "axis must be an initializer",
    "TopK": "K must be an initializer",
    "InstanceNormalization": "scale and B must be initializers; input rank 3 to 5",
    "Resize": (
        "modes nearest and linear only; coordinate transformations half_pixel, pytorch_half_pixel, "
        "tf_half_pixel_for_nn, asymmetric, align_corners"
    ),
}
_RESTRICTIONS_10 = {
    "AveragePool": "2D or 3D pooling only; dilations must be empty or all ones",
    "MaxPool": "2D or 3D pooling only; the Indices output is unsupported; dilations must be empty or all ones",
    "LpPool": "dilations must be empty or all ones",
    "DequantizeLinear": "x_zero_point must be zero",
    "QuantizeLinear": "y_zero_point must be 0",
    "Dropout": "is_training must be an initializer that evaluates to False",
    "Squeeze": "axes must be resolvable to a constant",
    "Unsqueeze": "axes must be resolvable to a constant",
    "CumSum": "axis must be a build-time constant",
    "ScatterND": "reduction other than none is not supported",
    "TopK": "sorted must be 1; K must be less than 3840",
    "LayerNormalization": "only the first output Y is supported",
    **{
        op: "axes must be an initializer"
        for op in (
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceMax",
            "ReduceMean",
            "ReduceMin",
            "ReduceProd",
            "ReduceSum",
            "ReduceSumSquare",
        )
    },
    "Resize": "modes nearest and linear only; aspect ratio policy stretch; no antialiasing",
}


@dataclass(frozen=True)
class ParserTable:
    """One release's operator table: what it supports, what it lists as unsupported, its opset ceiling."""

    key: str
    tensorrt: str
    opset_max: int
    source: str
    supported: frozenset[str]
    unsupported: frozenset[str]
    restrictions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OperatorSupport:
    op_type: str
    status: str
    restriction: str
    table: ParserTable

    @property
    def supported(self) -> bool:
        return self.status == "supported"


@functools.cache
def _tables() -> dict[str, ParserTable]:
    common, missing = frozenset(_COMMON_SUPPORTED), frozenset(_COMMON_UNSUPPORTED)
    missing_8_4 = missing | {
        "Hardmax",
        "IsInf",
        "MeanVarianceNormalization",
        "Mod",
        "NonZero",
        "OneHot",
        "RandomNormal",
        "RandomNormalLike",
        "Reciprocal",
        "RoiAlign",
        "Shrink",
    }
    table_8_4 = ParserTable(
        "8.4", "8.0-8.4", 13, f"{_SOURCE} at commit 009d6541 (TensorRT 8.4)", common, missing_8_4, _RESTRICTIONS_8
    )
    supported_8_5 = common | frozenset(_ADDED_IN_8_5)
    missing_8_5 = missing | {
        "Bernoulli",
        "BlackmanWindow",
        "DFT",
        "HammingWindow",
        "HannWindow",
        "Hardmax",
        "IsInf",
        "LayerNormalization",
        "MelWeightMatrix",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "STFT",
        "SequenceMap",
    }
    table_8_5 = ParserTable(
        "8.5",
        "8.5-9.x",
        17,
        f"{_SOURCE} at commit 6d0ab7be (TensorRT 8.5)",
        supported_8_5,
        missing_8_5,
        _RESTRICTIONS_8,
    )
    supported_10 = supported_8_5 | frozenset(_ADDED_IN_10)
    missing_10 = missing | {
        "AffineGrid",
        "Bernoulli",
        "BitwiseAnd",
        "BitwiseNot",
        "BitwiseOr",
        "BitwiseXor",
        "Col2Im",
        "CenterCropPad",
        "DFT",
        "ImageDecoder",
        "MelWeightMatrix",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "RegexFullMatch",
        "SequenceMap",
        "StringConcat",
        "StringSplit",
    }
    after_10_1 = frozenset(
        {
            "Attention",
            "BlackmanWindow",
            "HammingWindow",
            "HannWindow",
            "RMSNormalization",
            "RotaryEmbedding",
            "STFT",
            "TensorScatter",
        }
    )
    missing_10_0 = missing_10 | {"BlackmanWindow", "HammingWindow", "HannWindow", "STFT"}
    table_10_0 = ParserTable(
        "10.0",
        "10.0",
        20,
        f"{_SOURCE} at tag 10.0-GA (TensorRT 10.0)",
        supported_10 - after_10_1 - {"DeformConv"},
        missing_10_0,
        _RESTRICTIONS_10,
    )
    table_10_1 = ParserTable(
        "10.1",
        "10.1-10.14",
        20,
        f"{_SOURCE} at tag 10.1-GA (TensorRT 10.1), the newest table before 10.15",
        supported_10 - after_10_1,
        missing_10_0,
        _RESTRICTIONS_10,
    )
    table_10_15 = ParserTable(
        "10.15", "10.15 and later 10.x", 24, f"{_SOURCE} for TensorRT 10.15", supported_10, missing_10, _RESTRICTIONS_10
    )
    table_11 = ParserTable(
        "10.15",
        "11.x",
        24,
        f"{_SOURCE} for TensorRT 10.15, the newest table available here (no 11.x table was)",
        supported_10,
        missing_10,
        _RESTRICTIONS_10,
    )
    return {
        "8.4": table_8_4,
        "8.5": table_8_5,
        "10.0": table_10_0,
        "10.1": table_10_1,
        "10.15": table_10_15,
        "11": table_11,
    }


def parse_version(version: str | int | float) -> tuple[int, int]:
    """``"10.3"`` -> (10, 3); ``11`` -> (11, 0). A version that is not numbers raises UsageError."""
    text = str(version).strip().lower().removeprefix("tensorrt").strip().lstrip("v")
    parts = text.split(".")
    try:
        major = int(parts[0])
        minor = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    except ValueError:
        raise UsageError(f"TensorRT version {version!r} is not a version number such as 10.3 or 11") from None
    return major, minor


def parser_table(tensorrt_version: str | int | float) -> ParserTable:
    """The documented operator table that applies to ``tensorrt_version`` (TensorRT 8 or newer)."""
    major, minor = parse_version(tensorrt_version)
    tables = _tables()
    if major < 8:
        raise UsageError(f"TensorRT {tensorrt_version} is older than edgecnn supports: TensorRT 8.0 or newer")
    if major == 8:
        return tables["8.4"] if minor <= 4 else tables["8.5"]
    if major == 9:
        return tables["8.5"]
    if major == 10:
        return tables["10.15"] if minor >= 15 else tables["10.1"] if minor >= 1 else tables["10.0"]
    return tables["11"]


def operator_support(op_type: str, tensorrt_version: str | int | float, domain: str = "") -> OperatorSupport:
    """Whether TensorRT ``tensorrt_version``'s ONNX parser imports ``op_type``, and its documented restriction."""
    table = parser_table(tensorrt_version)
    if domain not in ("", "ai.onnx"):
        return OperatorSupport(op_type, "unsupported", f"custom domain {domain!r} needs a TensorRT plugin", table)
    if op_type in table.supported:
        return OperatorSupport(op_type, "supported", table.restrictions.get(op_type, ""), table)
    if op_type in table.unsupported:
        return OperatorSupport(op_type, "unsupported", "listed as not supported", table)
    return OperatorSupport(
        op_type, "unlisted", "not in the operator table (newer than this TensorRT's ONNX parser)", table
    )
