"""FP8 weight scales, read back from the written ONNX file: one per output channel of every convolution.

The expectation is computed here from the FP32 weights, not from edgecnn's code: the ONNX DequantizeLinear
operator takes "a 1-D tensor for per-axis quantization" whose length is the size of that axis, and TensorRT's
FP8 recipe scales each channel by its absolute maximum over 448 (the largest finite E4M3 value).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn.artifact import Preprocessing
from edgecnn.calibration.quantize import quantize_onnx

E4M3_MAX = 448.0


def _channel_weights(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Weights whose output channels differ in magnitude by powers of two, so one scale cannot fit them all."""
    weights = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return weights * (2.0 ** np.arange(shape[0], dtype=np.float32)).reshape(-1, *([1] * (len(shape) - 1)))


@pytest.fixture(scope="module")
def three_convolutions(tmp_path_factory):
    """A plain 3x3, a depthwise 3x3 and a pointwise convolution over a 3x16x16 image."""
    weights = {
        "w_plain": _channel_weights((8, 3, 3, 3), 0),
        "w_depthwise": _channel_weights((8, 1, 3, 3), 1),
        "w_pointwise": _channel_weights((4, 8, 1, 1), 2),
    }
    nodes = [
        helper.make_node("Conv", ["input", "w_plain"], ["a"], name="plain", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a_relu"], name="relu_a"),
        helper.make_node("Conv", ["a_relu", "w_depthwise"], ["b"], name="depthwise", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["b"], ["b_relu"], name="relu_b"),
        helper.make_node("Conv", ["b_relu", "w_pointwise"], ["output"], name="pointwise"),
    ]
    graph = helper.make_graph(
        nodes,
        "three_convolutions",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16, 16])],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    path = tmp_path_factory.mktemp("fp8_scales") / "three.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, weights


def test_fp8_conv_weight_scales_are_one_per_output_channel(three_convolutions, tmp_path):
    fp32, weights = three_convolutions
    result = quantize_onnx(
        fp32,
        tmp_path / "three.fp8-tensorrt.onnx",
        precision="fp8",
        target="tensorrt",
        fallback=False,
        calibration="builtin",
        samples=4,
        check_samples=2,
        preprocessing=Preprocessing.default((16, 16)),
    )
    model = onnx.load(str(result.path))
    initializers = {init.name: init for init in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    convolutions = {node.name: node for node in model.graph.node if node.op_type == "Conv"}
    assert set(convolutions) == {"plain", "depthwise", "pointwise"}
    for name, fp32_name in (("plain", "w_plain"), ("depthwise", "w_depthwise"), ("pointwise", "w_pointwise")):
        dequantize = producers[convolutions[name].input[1]]
        assert dequantize.op_type == "DequantizeLinear", f"{name}'s weight is not dequantized"
        axis = next((a.i for a in dequantize.attribute if a.name == "axis"), 1)
        stored = initializers[dequantize.input[0]]
        scale = numpy_helper.to_array(initializers[dequantize.input[1]])
        original = weights[fp32_name]
        assert stored.data_type == TensorProto.FLOAT8E4M3FN and list(stored.dims) == list(original.shape)
        assert axis == 0, f"{name}: the scale's axis is {axis}, not the output channels"
        assert scale.shape == (original.shape[0],), f"{name}: {scale.shape} scales for {original.shape[0]} channels"
        amax = np.abs(original.reshape(original.shape[0], -1)).max(axis=1)
        np.testing.assert_allclose(scale, amax / E4M3_MAX, rtol=1e-6, err_msg=f"{name}: scale is not amax/448")
