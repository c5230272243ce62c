"""FP32 ONNX -> float16 ONNX that keeps float32 inputs and outputs, so callers don't change.

Uses the float16 converter ONNX Runtime ships (onnxruntime.transformers.float16, the maintained copy of
onnxconverter-common's), so edgecnn does not re-implement the graph rewrite. The converter appends its
input casts at the end of the node list; the clean-up pass puts the graph back in topological order.
"""

from __future__ import annotations

import warnings

import onnx

from edgecnn.export.cleanup import clean_graph

__all__ = ["to_fp16"]


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    return clean_graph(converted)
