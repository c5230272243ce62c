"""TensorRT: readiness checks over the zoo and documented cases, Q/DQ compliance, build planning and its bad
input, trtexec command lines and the real trtexec outputs in tests/data/trtexec (see SOURCES.md there), and
the engine build and run where TensorRT and a GPU are present."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgecnn import list_models
from edgecnn.cli import main
from edgecnn.devices import get_device
from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.export.tensorrt.check import DLA_RULES, ShapeProfile, check_model
from edgecnn.export.tensorrt.engine import (
    CompileOptions,
    GpuIdentity,
    calibration_cache_text,
    check_engine_compatibility,
    create_tensorrt_ep_session,
    installed_tensorrt,
    load_engine,
    plan_build,
    prepare_ep_cache,
    qdq_to_ranges,
    read_sidecar,
    tensorrt_ep_options,
)
from edgecnn.export.tensorrt.support import operator_support, parser_table
from edgecnn.export.tensorrt.trtexec import trtexec_commands, write_trtexec_script
from edgecnn.export.zoo_graphs import zoo_graph
from edgecnn.profile.trtexec import (
    import_trtexec,
    onnx_nodes_of_layer,
    read_layer_info,
    read_log,
    read_profile,
    read_times,
)

DATA = Path(__file__).parent / "data" / "trtexec"
GPU_ONLY = "jetson-orin-nano-8gb"
ORIN_DLA = "jetson-agx-orin-64gb"
JETPACK6 = "6.2"  # TensorRT 10.3: the weakly typed DLA rules these tests pin (JetPack 7.2.2 is the default)
XAVIER = "jetson-agx-xavier"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------------------- graphs


def _tensor(name, shape, seed=0, dtype=np.float32):
    return numpy_helper.from_array((np.random.default_rng(seed).standard_normal(shape) * 0.1).astype(dtype), name)


def _model(nodes, input_shape, output_shape, initializers=(), opset=17, output_type=TensorProto.FLOAT):
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output", output_type, output_shape)],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def conv_model(dilation=1, kernel=3, stride=1, channels=8, size=32, batch=1, pad=None):
    pad = dilation * (kernel // 2) if pad is None else pad
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "w", "b"],
            ["c"],
            name="conv",
            dilations=[dilation] * 2,
            kernel_shape=[kernel] * 2,
            strides=[stride] * 2,
            pads=[pad] * 4,
        ),
        helper.make_node("Relu", ["c"], ["output"], name="relu"),
    ]
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    return _model(
        nodes,
        [batch, 3, size, size],
        [batch, channels, out, out],
        [_tensor("w", (channels, 3, kernel, kernel)), _tensor("b", (channels,), 1)],
    )


def classifier_model(features=512, batch=1):
    """GlobalAveragePool -> Flatten -> Gemm over ``features`` channels."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["output"], name="fc", transB=1),
    ]
    return _model(nodes, [batch, features, 7, 7], [batch, 10], [_tensor("w", (10, features)), _tensor("b", (10,), 1)])


def single_node_model(op, input_shape, output_shape, initializers=(), inputs=("input",), **attributes):
    node = helper.make_node(op, list(inputs), ["output"], name=op.lower(), **attributes)
    return _model([node], input_shape, output_shape, initializers)


def rows_by_name(report):
    return {row.node: row for row in report.nodes}


# ----------------------------------------------------------------------------------------------- the zoo


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_is_ready_for_tensorrt(name):
    """The whole zoo parses on TensorRT 10 (GPU-only Orin Nano); on AGX Orin under JetPack 6.2 (TensorRT 10.3)
    every layer gets a DLA verdict and every GPU fallback a reason; under its default JetPack 7.2.2 (TensorRT
    11.4.1, DLA strongly typed: FP16/INT8 only) the FP32 graph runs on the GPU; on Xavier (TensorRT 8.5) the
    only blocker is the opset of the default export."""
    graph = zoo_graph(name)
    batch1 = ShapeProfile.static(1)
    gpu = check_model(graph, get_device(GPU_ONLY), profile=batch1, name=name)
    assert gpu.verdict == "gpu", [issue.message for issue in gpu.errors]
    assert all(row.parser == "ok" for row in gpu.nodes)
    assert not gpu.dla_evaluated and all(row.dla == "" for row in gpu.nodes)

    dla = check_model(graph, get_device(ORIN_DLA), jetpack="6.2", profile=batch1, name=name)
    assert (dla.jetpack, dla.tensorrt) == ("6.2", "10.3")
    assert dla.verdict in ("dla", "dla+gpu")
    assert all(row.dla in ("dla", "gpu", "-") for row in dla.nodes)
    assert all(row.reason for row in dla.nodes if row.dla == "gpu")
    assert dla.dla_layers > dla.gpu_fallback_layers, "convolutions run on DLA in every classic CNN"

    xavier = check_model(graph, get_device(XAVIER), profile=batch1, name=name)
    assert {issue.code for issue in xavier.errors} == {"opset"}
    assert "--opset 17" in xavier.errors[0].message

    eleven = check_model(graph, get_device(ORIN_DLA), tensorrt="11", profile=batch1, name=name)
    assert eleven.verdict == "gpu" and any(issue.code == "no-dla" for issue in eleven.issues)

    jetpack7 = check_model(graph, get_device(ORIN_DLA), profile=batch1, name=name)
    assert (jetpack7.jetpack, jetpack7.tensorrt, jetpack7.verdict) == ("7.2.2", "11.4.1", "dla+gpu")
    assert any(issue.code == "dla-precision" for issue in jetpack7.issues)


def test_zoo_graph_with_dynamic_batch_needs_a_profile():
    report = check_model(zoo_graph("resnet18"), get_device(GPU_ONLY))
    assert report.verdict == "blocked"
    assert [issue.code for issue in report.errors] == ["dynamic-batch"]
    assert "--batch N or --shapes" in report.errors[0].message
    ranged = check_model(zoo_graph("resnet18"), get_device(ORIN_DLA), jetpack=JETPACK6, profile=ShapeProfile(1, 8, 32))
    assert ranged.verdict == "dla+gpu" and ranged.dla_layers == 0, "DLA needs static shapes: everything falls back"
    assert any(issue.code == "dla-dynamic" for issue in ranged.issues)


# ----------------------------------------------------------------------------------------------- documented DLA cases


@pytest.mark.parametrize("dilation,expected", [(1, "dla"), (32, "dla"), (64, "gpu")])
def test_dla_convolution_dilation_limit(dilation, expected):
    report = check_model(conv_model(dilation=dilation, size=160, pad=1), get_device(ORIN_DLA), jetpack=JETPACK6)
    conv = rows_by_name(report)["conv"]
    assert conv.dla == expected
    if expected == "gpu":
        assert "dilation [64, 64] outside [1, 32]" in conv.reason and "DLA guide: Convolution" in conv.reason


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"kernel": 33, "pad": 0, "size": 64}, "kernel 33x33 outside [1, 32]"),
        ({"stride": 9, "pad": 1}, "stride [9, 9] outside [1, 8]"),
        ({"kernel": 3, "pad": 3}, "not smaller than the kernel"),
    ],
)
def test_dla_convolution_limits(kwargs, fragment):
    conv = rows_by_name(check_model(conv_model(**kwargs), get_device(ORIN_DLA), jetpack=JETPACK6))["conv"]
    assert conv.dla == "gpu" and fragment in conv.reason


def test_dla_convolution_buffer_limit():
    """TensorRT's CBUF formula: 3x3 over 1024 FP16 channels of a 1024-wide map needs more than 16 banks."""
    nodes = [helper.make_node("Conv", ["input", "w"], ["output"], name="wide", kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    model = _model(nodes, [1, 1024, 8, 1024], [1, 8, 8, 1024], [_tensor("w", (8, 1024, 3, 3))])
    wide = rows_by_name(check_model(model, get_device(ORIN_DLA), jetpack=JETPACK6))["wide"]
    assert wide.dla == "gpu" and "convolution-buffer banks" in wide.reason


def test_dla_classifier_head_gap_flatten_and_gemm_width():
    small = rows_by_name(check_model(classifier_model(512), get_device(ORIN_DLA), jetpack=JETPACK6))
    assert small["gap"].dla == "gpu" and "Reduce layer" in small["gap"].reason
    assert small["flatten"].dla == "gpu"
    assert small["fc"].dla == "dla"
    wide = rows_by_name(check_model(classifier_model(9216), get_device(ORIN_DLA), jetpack=JETPACK6))
    assert wide["fc"].dla == "gpu" and "9216 input features > 8192" in wide["fc"].reason


@pytest.mark.parametrize("window,expected", [(3, "dla"), (8, "dla"), (13, "gpu")])
def test_dla_pooling_window(window, expected):
    model = single_node_model(
        "AveragePool", [1, 8, 13, 13], [1, 8, 13 - window + 1, 13 - window + 1], kernel_shape=[window, window]
    )
    row = rows_by_name(check_model(model, get_device(ORIN_DLA), jetpack=JETPACK6))["averagepool"]
    assert row.dla == expected
    if expected == "gpu":
        assert "window 13x13 outside [1, 8]" in row.reason


def _pooling_model(op, size, window, stride, pad):
    out = (size + 2 * pad - window) // stride + 1
    return single_node_model(
        op, [1, 8, size, size], [1, 8, out, out], kernel_shape=[window] * 2, strides=[stride] * 2, pads=[pad] * 4
    )


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize(
    "window,stride,pad,fragment",
    [
        (8, 1, 0, None),
        (9, 1, 0, "window 9x9 outside [1, 8]"),
        (2, 16, 0, None),
        (2, 17, 0, "stride [17, 17] outside [1, 16]"),
        (8, 1, 7, None),
        (9, 1, 8, "padding [8, 8, 8, 8] outside [0, 7]"),
    ],
)
def test_dla_pooling_limits_on_both_sides(op, window, stride, pad, fragment):
    """NVIDIA's DLA guide, Pooling Layer: window [1, 8], padding [0, 7], stride [1, 16]; each limit runs on DLA and
    one past it falls back to the GPU naming the limit (ONNX needs padding below the window, so padding 8 comes
    with window 9)."""
    row = rows_by_name(check_model(_pooling_model(op, 34, window, stride, pad), get_device(ORIN_DLA), jetpack=JETPACK6))
    assert row[op.lower()].dla == ("dla" if fragment is None else "gpu"), row[op.lower()].reason
    if fragment is not None:
        assert fragment in row[op.lower()].reason and "DLA guide: Pooling" in row[op.lower()].reason


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"stride": 8, "pad": 1}, None),
        ({"dilation": 33, "pad": 1, "size": 160}, "dilation [33, 33] outside [1, 32]"),
        ({"kernel": 32, "pad": 31, "size": 16}, None),
        ({"kernel": 33, "pad": 32, "size": 16}, "padding [32, 32, 32, 32] outside [0, 31]"),
    ],
)
def test_dla_convolution_limits_on_both_sides(kwargs, fragment):
    """NVIDIA's DLA guide, Convolution: stride [1, 8], dilation [1, 32], padding [0, 31] (and below the kernel)."""
    conv = rows_by_name(check_model(conv_model(**kwargs), get_device(ORIN_DLA), jetpack=JETPACK6))["conv"]
    assert conv.dla == ("dla" if fragment is None else "gpu"), conv.reason
    if fragment is not None:
        assert fragment in conv.reason


@pytest.mark.parametrize(
    "shape,fragment",
    [
        ([4096, 1, 2, 2], None),
        ([4097, 1, 2, 2], "batch 4097 > 4096"),
        ([1, 1, 2, 8192], None),
        ([1, 1, 2, 8193], "dimension 8193 of input > 8192"),
    ],
)
def test_dla_general_size_limits_on_both_sides(shape, fragment):
    """NVIDIA's DLA guide, General Restrictions: batch at most 4096, every other dimension at most 8192."""
    relu = rows_by_name(check_model(single_node_model("Relu", shape, shape), get_device(ORIN_DLA), jetpack=JETPACK6))
    assert relu["relu"].dla == ("dla" if fragment is None else "gpu"), relu["relu"].reason
    if fragment is not None:
        assert fragment in relu["relu"].reason


@pytest.mark.parametrize("stride,expected", [(32, "dla"), (33, "gpu")])
def test_dla_deconvolution_stride_on_both_sides(stride, expected):
    """NvInfer.h, IDeconvolutionLayer::setStrideNd: on DLA both strides in [1, 32] (a 2x2 kernel, so only the
    stride is at its limit)."""
    deconv = single_node_model(
        "ConvTranspose",
        [1, 8, 2, 2],
        [1, 8, stride + 2, stride + 2],
        [_tensor("w", (8, 8, 2, 2))],
        inputs=("input", "w"),
        strides=[stride, stride],
        kernel_shape=[2, 2],
    )
    row = rows_by_name(check_model(deconv, get_device(ORIN_DLA), jetpack=JETPACK6))["convtranspose"]
    assert row.dla == expected, row.reason
    if expected == "gpu":
        assert f"stride [{stride}, {stride}] outside [1, 32]" in row.reason


@pytest.mark.parametrize("factor,expected", [(32, "dla"), (33, "gpu")])
def test_dla_nearest_resize_scale_on_both_sides(factor, expected):
    """NVIDIA's DLA guide, Resize: nearest-neighbour scales of height and width are integers in [1, 32]."""
    scales = numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales")
    upsample = single_node_model(
        "Resize",
        [1, 8, 2, 2],
        [1, 8, 2 * factor, 2 * factor],
        [scales],
        inputs=("input", "", "scales"),
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    row = rows_by_name(check_model(upsample, get_device(ORIN_DLA), jetpack=JETPACK6))["resize"]
    assert row.dla == expected, row.reason
    if expected == "gpu":
        assert "integers in [1, 32]" in row.reason


@pytest.mark.parametrize("features,expected", [(8192, "dla"), (8193, "gpu")])
def test_dla_fully_connected_width_on_both_sides(features, expected):
    fc = rows_by_name(check_model(classifier_model(features), get_device(ORIN_DLA), jetpack=JETPACK6))["fc"]
    assert fc.dla == expected, fc.reason


def test_dla_activation_concat_softmax_and_elementwise_rules():
    clip6 = single_node_model(
        "Clip",
        [1, 8, 4, 4],
        [1, 8, 4, 4],
        [numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")],
        inputs=("input", "lo", "hi"),
    )
    assert rows_by_name(check_model(clip6, get_device(ORIN_DLA), jetpack=JETPACK6))["clip"].dla == "dla"
    clip_signed = single_node_model(
        "Clip",
        [1, 8, 4, 4],
        [1, 8, 4, 4],
        [numpy_helper.from_array(np.float32(-1), "lo"), numpy_helper.from_array(np.float32(1), "hi")],
        inputs=("input", "lo", "hi"),
    )
    assert rows_by_name(check_model(clip_signed, get_device(ORIN_DLA), jetpack=JETPACK6))["clip"].dla == "gpu"
    hardswish = single_node_model("HardSwish", [1, 8, 4, 4], [1, 8, 4, 4])
    assert rows_by_name(check_model(hardswish, get_device(ORIN_DLA), jetpack=JETPACK6))["hardswish"].dla == "gpu"
    concat_h = single_node_model("Concat", [1, 8, 4, 4], [1, 8, 8, 4], inputs=("input", "input"), axis=2)
    assert (
        "not channels" in rows_by_name(check_model(concat_h, get_device(ORIN_DLA), jetpack=JETPACK6))["concat"].reason
    )
    concat_c = single_node_model("Concat", [1, 8, 4, 4], [1, 16, 4, 4], inputs=("input", "input"), axis=1)
    assert rows_by_name(check_model(concat_c, get_device(ORIN_DLA), jetpack=JETPACK6))["concat"].dla == "dla"
    softmax = single_node_model("Softmax", [1, 8, 4, 4], [1, 8, 4, 4], axis=1)
    assert rows_by_name(check_model(softmax, get_device(ORIN_DLA), jetpack=JETPACK6))["softmax"].dla == "dla"
    xavier = rows_by_name(check_model(softmax, get_device(XAVIER)))["softmax"]
    assert xavier.dla == "gpu" and "Orin's DLA 2 only" in xavier.reason
    divide = single_node_model("Div", [1, 8, 4, 4], [1, 8, 4, 4], inputs=("input", "input"))
    assert rows_by_name(check_model(divide, get_device(XAVIER)))["div"].dla == "gpu", "TensorRT 8.5: no Div on DLA"


def test_channel_shuffle_falls_back_and_every_rule_names_its_source():
    report = check_model(
        zoo_graph("shufflenet_v2_x1_0"), get_device(ORIN_DLA), jetpack=JETPACK6, profile=ShapeProfile.static(1)
    )
    shuffles = [row for row in report.nodes if row.op_type in ("Reshape", "Transpose") and row.dla == "gpu"]
    assert shuffles and all("5-D" in row.reason for row in shuffles)
    sources = (
        "TensorRT Developer Guide",
        "NVIDIA/Deep-Learning-Accelerator-SW",
        "TensorRT include/NvInfer.h",
        "onnx/onnx-tensorrt",
    )
    assert all(rule.source.startswith(sources) for rule in DLA_RULES)


# ----------------------------------------------------------------------------------------------- parser tables


@pytest.mark.parametrize(
    "version,device,dla",
    [
        ("8.5", XAVIER, True),
        ("10.3", ORIN_DLA, True),
        ("10.7", ORIN_DLA, True),
        ("10.8", ORIN_DLA, False),
        ("10.16", ORIN_DLA, False),
        ("11.3", ORIN_DLA, False),
        ("11.4", ORIN_DLA, False),
        ("11.4.1", ORIN_DLA, True),
        ("11.4.1", "jetson-orin-nx-16gb", False),
    ],
)
def test_dla_by_tensorrt_version(tiny_fp32, export_dir, version, device, dla):
    """Issue 13 (4): DLA was decided by major version; NVIDIA: 10.7 is the last 10.x with DLA, none in 10.8-11.3,
    11.4.1 brings it back on AGX Orin (JetPack 7.2.2+), strongly typed only."""
    report = check_model(tiny_fp32, get_device(device), tensorrt=version, profile=ShapeProfile.static(1))
    assert report.dla_evaluated is dla
    if not dla:
        assert "every layer runs on the GPU" in next(i.message for i in report.issues if i.code == "no-dla")
        with pytest.raises(UsageError, match="no DLA support"):
            _plan(export_dir, device=device, dla_core=0, tensorrt=version)
    elif version == "11.4.1":
        assert report.verdict == "dla+gpu" and all("FP32" in row.reason for row in report.nodes if row.dla == "gpu")
        plan = _plan(export_dir, device=device, dla_core=0, gpu_fallback=True, tensorrt=version)
        assert (plan.network, plan.builder_flags, plan.int8_source) == ("strongly-typed", ["GPU_FALLBACK"], "qdq")
        with pytest.raises(UsageError, match="FP16 or INT8 model"):
            _plan(export_dir, device=device, dla_core=0, precision="fp32", tensorrt=version)


def test_dla_rules_follow_nvinfer_and_the_dla_operator_table():
    """Issue 13 (9): Div/Pow are not DLA ElementWise operations, GlobalMaxPool runs on DLA from 8.6.12 (10.x),
    Resize and Abs run there, and a deconvolution's stride limit is [1, 32]."""
    orin = get_device(ORIN_DLA)
    for op in ("Div", "Pow"):
        row = rows_by_name(
            check_model(
                single_node_model(op, [1, 8, 4, 4], [1, 8, 4, 4], inputs=("input", "input")), orin, jetpack=JETPACK6
            )
        )[op.lower()]
        assert row.dla == "gpu" and "NvInfer.h: IElementWiseLayer" in row.reason
    gmp = single_node_model("GlobalMaxPool", [1, 8, 4, 4], [1, 8, 1, 1])
    assert rows_by_name(check_model(gmp, orin, jetpack=JETPACK6))["globalmaxpool"].dla == "dla"
    assert rows_by_name(check_model(gmp, get_device(XAVIER), tensorrt="8.5"))["globalmaxpool"].dla == "gpu"
    abs_model = single_node_model("Abs", [1, 8, 4, 4], [1, 8, 4, 4])
    assert rows_by_name(check_model(abs_model, orin, jetpack=JETPACK6))["abs"].dla == "dla"
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    upsample = single_node_model(
        "Resize",
        [1, 8, 4, 4],
        [1, 8, 8, 8],
        [scales],
        inputs=("input", "", "scales"),
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    assert rows_by_name(check_model(upsample, orin, jetpack=JETPACK6))["resize"].dla == "dla"
    cubic = single_node_model(
        "Resize", [1, 8, 4, 4], [1, 8, 8, 8], [scales], inputs=("input", "", "scales"), mode="cubic"
    )
    assert "IResizeLayer" in rows_by_name(check_model(cubic, orin, jetpack=JETPACK6))["resize"].reason
    deconv = single_node_model(
        "ConvTranspose",
        [1, 8, 4, 4],
        [1, 8, 64, 64],
        [_tensor("w", (8, 8, 16, 16))],
        inputs=("input", "w"),
        strides=[16, 16],
        kernel_shape=[16, 16],
    )
    assert rows_by_name(check_model(deconv, orin, jetpack=JETPACK6))["convtranspose"].dla == "dla", (
        "stride 16 is within the deconvolution's [1, 32]"
    )
    alexnet = check_model(zoo_graph("alexnet_original"), orin, profile=ShapeProfile.static(1))
    assert all(row.dla == "gpu" for row in alexnet.nodes if row.op_type in ("Div", "Pow"))
    assert all(rule.source for rule in DLA_RULES) and any("NvInfer.h" in rule.source for rule in DLA_RULES)


def test_quantize_without_zero_point_is_int8_for_tensorrt():
    """Issue 13 (8): onnx-tensorrt imports a QuantizeLinear without a zero point as INT8, so it does not block."""
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s"], ["output"], name="dq"),
    ]
    model = _model(nodes, [1, 8, 4, 4], [1, 8, 4, 4], [numpy_helper.from_array(np.float32(0.1), "s")])
    report = check_model(model, get_device(GPU_ONLY))
    assert report.verdict == "gpu" and rows_by_name(report)["q"].qdq.startswith(
        "ok (no zero point: TensorRT quantizes to INT8"
    )


@pytest.mark.parametrize("device", ["jetson-nano", "jetson-tx2"])
def test_int8_on_gpus_without_fast_int8_recommends_fp16(tiny_fp32, tmp_path, device):
    """Issue 13 (10): Nano (Maxwell) has no INT8 and TX2 no fast INT8: check must say so, and profile must not
    estimate INT8 faster than FP16 there."""
    model = _quantize(tiny_fp32, tmp_path / "s8.onnx", symmetric=True)
    model.opset_import[0].version = 13
    report = check_model(model, get_device(device))
    warning = next(issue for issue in report.issues if issue.code == "no-fast-int8")
    assert (
        warning.severity == "warning"
        and "platformHasFastInt8() is false" in warning.message
        and "--precision fp16" in warning.message
    )
    assert not any(issue.code == "no-fast-int8" for issue in check_model(model, get_device(GPU_ONLY)).issues)
    result = invoke("profile", "resnet18", "--device", device, "--precision", "fp16,int8", "--json")
    assert result.exit_code == 0, result.output
    latency = {row["precision"]: row["devices"][0]["estimated_ms"] for row in json.loads(result.output)["rows"]}
    assert latency["int8"] >= latency["fp16"]


def test_dla_int8_ranges_are_equal_where_dla_needs_it():
    """Issue 13 (5): DLA INT8 needs equal ranges on both ElementWise inputs and on a pool's input and output
    (NvInfer.h)."""

    def qdq(name, scale):
        return (
            [
                helper.make_node("QuantizeLinear", [name, f"{name}_s", "zp"], [f"{name}_q"]),
                helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", "zp"], [f"{name}_dq"]),
            ],
            [numpy_helper.from_array(np.float32(scale), f"{name}_s")],
        )

    nodes, inits = [helper.make_node("Relu", ["input"], ["a"]), helper.make_node("Sigmoid", ["input"], ["b"])], []
    for name, scale in (("a", 0.1), ("b", 0.01)):
        more_nodes, more_inits = qdq(name, scale)
        nodes += more_nodes
        inits += more_inits
    nodes += [
        helper.make_node("Add", ["a_dq", "b_dq"], ["sum"]),
        helper.make_node("MaxPool", ["sum"], ["p"], kernel_shape=[2, 2]),
    ]
    more_nodes, more_inits = qdq("sum", 0.3)
    nodes = nodes[:-1] + more_nodes + [helper.make_node("MaxPool", ["sum_dq"], ["p"], kernel_shape=[2, 2])]
    inits += more_inits
    more_nodes, more_inits = qdq("p", 0.05)
    nodes += more_nodes + [helper.make_node("Identity", ["p_dq"], ["output"])]
    inits += more_inits + [numpy_helper.from_array(np.int8(0), "zp")]
    model = _model(nodes, [1, 8, 4, 4], [1, 8, 2, 2], inits)
    _, ranges = qdq_to_ranges(model)
    assert ranges["a"] == ranges["b"] == pytest.approx(0.1 * 127)
    assert ranges["sum"] == ranges["p"] == pytest.approx(0.3 * 127)


def test_parser_tables_by_version():
    assert parser_table("8.2").opset_max == 13 and parser_table("8.5").opset_max == 17
    assert parser_table("10.3").opset_max == 20 and parser_table("10.15").opset_max == 24
    assert operator_support("HardSwish", "8.2").status == "unlisted"
    assert operator_support("HardSwish", "8.5").supported and operator_support("HardSwish", "11").supported
    assert operator_support("QLinearConv", "10.3").status == "unsupported"
    for window_op in ("HannWindow", "STFT"):
        assert (
            operator_support(window_op, "10.3").status == "unsupported"
            and operator_support(window_op, "10.15").supported
        )
    assert (
        operator_support("DeformConv", "10.0").status == "unlisted" and operator_support("DeformConv", "10.3").supported
    )
    assert "10.1-GA" in parser_table("10.3").source and "10.0-GA" in parser_table("10.0").source
    assert "zero" in operator_support("DequantizeLinear", "10.3").restriction
    assert "11.x" in parser_table("11.0").tensorrt and "10.15" in parser_table("11").source
    with pytest.raises(UsageError, match="TensorRT 8.0 or newer"):
        parser_table("7.2")
    with pytest.raises(UsageError, match="not a version"):
        parser_table("ten")


def test_unparseable_nodes_are_named():
    model = single_node_model("Unique", [1, 8, 4, 4], [1, 8, 4, 4])
    report = check_model(model, get_device(GPU_ONLY))
    assert report.verdict == "blocked"
    assert "unique (Unique: unsupported" in report.errors[0].message
    custom = helper.make_node("FancyOp", ["input"], ["output"], name="fancy", domain="com.example")
    graph = helper.make_graph(
        [custom],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    fancy = rows_by_name(check_model(model, get_device(GPU_ONLY)))["fancy"]
    assert fancy.parser.startswith("unsupported") and "plugin" in fancy.parser


# ----------------------------------------------------------------------------------------------- Q/DQ


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over a few seeded batches."""

    def __init__(self, count=4):
        self.batches = iter(
            [
                {"input": np.random.default_rng(i).standard_normal((1, 3, 16, 16)).astype(np.float32)}
                for i in range(count)
            ]
        )

    def get_next(self):
        return next(self.batches, None)


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory) -> Path:
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["output"], name="relu2"),
    ]
    model = _model(
        nodes,
        [1, 3, 16, 16],
        [1, 8, 16, 16],
        [_tensor("w1", (8, 3, 3, 3)), _tensor("b1", (8,), 1), _tensor("w2", (8, 8, 3, 3), 2), _tensor("b2", (8,), 3)],
        opset=17,
    )
    path = tmp_path_factory.mktemp("qdq") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def _quantize(source: Path, target: Path, symmetric: bool, quantize_bias: bool = False) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(source),
        str(target),
        _Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": quantize_bias},
    )
    return onnx.load(str(target))


def test_asymmetric_uint8_qdq_is_not_tensorrt_compliant(tiny_fp32, tmp_path):
    model = _quantize(tiny_fp32, tmp_path / "u8.onnx", symmetric=False)
    report = check_model(model, get_device(GPU_ONLY))
    assert report.precision == "int8" and report.verdict == "blocked"
    qdq = report.errors[0]
    assert qdq.code == "qdq" and "UINT8 zero point" in qdq.message and "--int8 --target tensorrt" in qdq.message
    activations = [row for row in report.nodes if "UINT8 zero point" in row.qdq]
    assert len(activations) == len(qdq.nodes) >= 4, "every activation Q and DQ is flagged"
    weights = [row for row in report.nodes if row.qdq == "ok (per-channel weights)"]
    assert weights, "the S8 per-channel weights themselves are fine"


def test_quantized_biases_are_not_tensorrt_compliant(tiny_fp32, tmp_path):
    model = _quantize(tiny_fp32, tmp_path / "bias.onnx", symmetric=True, quantize_bias=True)
    biases = [row for row in check_model(model, get_device(GPU_ONLY)).nodes if "INT32" in row.qdq]
    assert {row.node for row in biases} == {"b1_DequantizeLinear", "b2_DequantizeLinear"}


def test_symmetric_int8_qdq_is_compliant_and_converts_to_ranges(tiny_fp32, tmp_path):
    model = _quantize(tiny_fp32, tmp_path / "s8.onnx", symmetric=True)
    report = check_model(model, get_device(GPU_ONLY))
    assert report.verdict == "gpu", [issue.message for issue in report.errors]
    assert {row.qdq for row in report.nodes if row.qdq} == {"ok", "ok (per-channel weights)"}
    dla = check_model(model, get_device(ORIN_DLA), jetpack=JETPACK6)
    assert dla.dla_precision == "int8" and rows_by_name(dla)["conv1"].dla == "dla"

    float_model, ranges = qdq_to_ranges(model)
    assert not any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in float_model.graph.node)
    onnx.checker.check_model(float_model)
    produced = {name for node in float_model.graph.node for name in node.output} | {"input"}
    assert {"input", "r1"} <= set(ranges) <= produced and all(value > 0 for value in ranges.values())
    assert [o.name for o in float_model.graph.output] == ["output"]
    from edgecnn.runtime import create_session, run_session

    batch = np.random.default_rng(7).standard_normal((1, 3, 16, 16)).astype(np.float32)
    reference = run_session(create_session(str(tiny_fp32)), batch)
    converted = run_session(create_session(float_model.SerializeToString()), batch)
    np.testing.assert_allclose(converted, reference, atol=0.05 * np.abs(reference).max())
    cache = calibration_cache_text(ranges, "10.3").splitlines()
    assert cache[0] == "TRT-100300-EntropyCalibration2" and len(cache) == len(ranges) + 1
    scales = dict(line.split(": ") for line in cache[1:])
    scale = float(np.frombuffer(bytes.fromhex(scales["input"]), dtype=">f4")[0])
    assert scale == pytest.approx(ranges["input"] / 127, rel=1e-6)
    assert calibration_cache_text(ranges, "8.5.2").startswith("TRT-8502-")


def test_per_channel_scale_on_the_wrong_axis(tiny_fp32, tmp_path):
    model = _quantize(tiny_fp32, tmp_path / "axis.onnx", symmetric=True)
    weight_dq = next(
        node for node in model.graph.node if node.op_type == "DequantizeLinear" and node.input[0].startswith("w1")
    )
    for attribute in weight_dq.attribute:
        if attribute.name == "axis":
            attribute.i = 1
    row = rows_by_name(check_model(model, get_device(GPU_ONLY)))[weight_dq.name]
    assert row.qdq.startswith("non-compliant") and "output-channel axis is 0" in row.qdq


# ----------------------------------------------------------------------------------------------- planning and bad input


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, tiny_fp32) -> Path:
    """An export directory with FP32, FP16 and TensorRT Q/DQ artifacts of a tiny network (dynamic batch)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    directory = tmp_path_factory.mktemp("export") / "tiny"
    directory.mkdir()
    dynamic = onnx.load(str(tiny_fp32))
    for value in list(dynamic.graph.input) + list(dynamic.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del dynamic.graph.value_info[:]
    onnx.save(dynamic, str(directory / "tiny.onnx"))
    onnx.save(convert_float_to_float16(dynamic, keep_io_types=True), str(directory / "tiny.fp16.onnx"))
    static = directory.parent / "static.onnx"
    shutil.copy(tiny_fp32, static)
    _quantize(directory / "tiny.onnx", directory / "tiny.int8-tensorrt.onnx", symmetric=True)
    manifest = {
        "edgecnn_manifest": 1,
        "model": {"name": "tiny"},
        "artifacts": [
            {"format": "onnx-fp32", "file": "tiny.onnx"},
            {"format": "onnx-fp16", "file": "tiny.fp16.onnx"},
            {"format": "onnx-int8-tensorrt", "file": "tiny.int8-tensorrt.onnx"},
        ],
        "preprocessing": {"input_size": [16, 16], "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def _plan(artifact, device=GPU_ONLY, **options):
    options.setdefault("batch", 1)
    return plan_build(artifact, CompileOptions(device=device, **options))


@pytest.fixture(scope="module")
def opset13_fp16(tmp_path_factory) -> Path:
    """A float16 convolution at opset 13, the newest TensorRT 8.2 (Jetson Nano) parses."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    path = tmp_path_factory.mktemp("nano") / "nano.fp16.onnx"
    onnx.save(convert_float_to_float16(_opset13_conv(), keep_io_types=True), str(path))
    return path


def _opset13_conv() -> onnx.ModelProto:
    model = conv_model(size=16)
    model.opset_import[0].version = 13
    return model


def test_plans_per_tensorrt_version(export_dir, opset13_fp16, tmp_path):
    fp16 = _plan(export_dir, precision="fp16", output_dir=tmp_path)
    assert (fp16.network, fp16.precision, fp16.builder_flags) == ("strongly-typed", "fp16", [])
    assert fp16.workspace_bytes == get_device(GPU_ONLY).budget_bytes // 2
    assert fp16.engine_path == tmp_path / "tiny.fp16.engine" and fp16.sidecar_path.name == "tiny.fp16.engine.json"
    int8 = _plan(export_dir)
    assert int8.precision == "int8" and int8.int8_source == "qdq" and int8.onnx.name == "tiny.int8-tensorrt.onnx"
    dla = _plan(export_dir, device=ORIN_DLA, jetpack=JETPACK6, dla_core=1, gpu_fallback=True)
    assert (dla.network, dla.builder_flags, dla.int8_source) == (
        "weakly-typed",
        ["INT8", "FP16", "GPU_FALLBACK"],
        "qdq-ranges",
    )
    dla_fp32 = _plan(export_dir, device=ORIN_DLA, jetpack=JETPACK6, precision="fp32", dla_core=0)
    assert dla_fp32.precision == "fp16" and dla_fp32.builder_flags == ["FP16"] and dla_fp32.notes
    with pytest.raises(EdgecnnError, match="opset 17 is newer than TensorRT 8.2's ONNX parser supports"):
        _plan(export_dir, device="jetson-nano", precision="fp16")
    nano = _plan(opset13_fp16, device="jetson-nano")
    assert nano.network == "weakly-typed" and nano.builder_flags == ["FP16"]
    calibrated = _plan(export_dir, device=ORIN_DLA, jetpack=JETPACK6, dla_core=0, calibration="synthetic")
    assert calibrated.int8_source == "entropy-calibrator" and calibrated.build_onnx.name == "tiny.onnx"
    ranged = _plan(export_dir, batch=None, shapes=ShapeProfile(1, 4, 16))
    assert ranged.profile == ShapeProfile(1, 4, 16) and ranged.shape_for(16) == [16, 3, 16, 16]


def test_trtexec_command_lines_for_tensorrt_10_and_11(export_dir, opset13_fp16, tmp_path):
    ten = trtexec_commands(_plan(export_dir, precision="fp16", output_dir=tmp_path))
    build, profile = ten[0].argv, ten[1].argv
    assert build[:3] == ["trtexec", "--onnx=tiny.fp16.onnx", "--saveEngine=tiny.fp16.engine"], (
        "names beside the script, not workstation paths"
    )
    assert "--stronglyTyped" in build and "--fp16" not in build and "--skipInference" in build
    assert f"--memPoolSize=workspace:{get_device(GPU_ONLY).budget_bytes // 2 // 2**20}M" in build
    assert "--profilingVerbosity=detailed" in build and "--exportLayerInfo=tiny.fp16.layers.json" in build
    assert "--minShapes=input:1x3x16x16" in build and "--maxShapes=input:1x3x16x16" in build
    assert {
        "--exportProfile=tiny.fp16.profile.json",
        "--exportTimes=tiny.fp16.times.json",
        "--separateProfileRun",
    } <= set(profile)
    assert "--shapes=input:1x3x16x16" in profile
    eleven = trtexec_commands(_plan(export_dir, precision="fp16", output_dir=tmp_path, tensorrt="11.4"))[0].argv
    removed = {"--fp16", "--int8", "--best", "--stronglyTyped"}
    assert not removed & set(eleven) and not any(arg.startswith("--calib") for arg in eleven)
    nano = trtexec_commands(_plan(opset13_fp16, device="jetson-nano", output_dir=tmp_path))[0].argv
    assert "--fp16" in nano and "--buildOnly" in nano and any(arg.startswith("--workspace=") for arg in nano)


@pytest.mark.parametrize("core", [0, 1])
def test_trtexec_times_a_dla_engine_on_its_dla_core(export_dir, tmp_path, core):
    """trtexec selects a DLA core for the engine it loads only when given ``--useDLACore=N`` ("Select DLA core N
    for layers that support DLA", trtexec --help; it sets the runtime's DLA core before deserializing), so the
    timing command names the core the build used; ``--allowGPUFallback`` is a build option only. A GPU-only plan
    names no core."""
    plan = _plan(export_dir, device=ORIN_DLA, dla_core=core, gpu_fallback=True, output_dir=tmp_path)
    build, profile = (command.argv for command in trtexec_commands(plan))
    assert [a for a in build if a.startswith("--useDLACore")] == [f"--useDLACore={core}"]
    assert [a for a in profile if a.startswith("--useDLACore")] == [f"--useDLACore={core}"]
    assert "--allowGPUFallback" in build and "--allowGPUFallback" not in profile
    script = write_trtexec_script(plan, tmp_path).read_text()
    timing = next(line for line in script.splitlines() if "--loadEngine=" in line)
    assert f"--useDLACore={core}" in timing
    gpu = trtexec_commands(_plan(export_dir, precision="fp16", output_dir=tmp_path))
    assert not any(a.startswith("--useDLACore") for command in gpu for a in command.argv)


def test_emitted_dla_int8_script_carries_the_qdq_scales(export_dir, tmp_path):
    plan = _plan(export_dir, device="jetson-orin-nx-16gb", dla_core=0, gpu_fallback=True, output_dir=tmp_path)
    script = write_trtexec_script(plan, tmp_path)
    text = script.read_text()
    assert (
        "--fp16 --int8" in text
        and "--useDLACore=0 --allowGPUFallback" in text
        and "--calib=tiny.int8.dla0.calib" in text
    )
    assert "--onnx=tiny.int8.dla0.float.onnx" in text and "tee tiny.int8.dla0.trtexec.log" in text
    calib = (tmp_path / "tiny.int8.dla0.calib").read_text()
    assert calib.startswith("TRT-100300-EntropyCalibration2\n") and "\ninput: " in calib
    float_model = onnx.load(str(tmp_path / "tiny.int8.dla0.float.onnx"))
    assert not any(node.op_type == "QuantizeLinear" for node in float_model.graph.node)


def test_emitted_script_is_self_contained_and_stops_on_a_failed_build(export_dir, tmp_path):
    """Issue 13 (3): with -o elsewhere the script kept the workstation's relative ONNX path; it must run from its own
    folder on a clean Jetson, and a failing trtexec must stop it (``sh`` + ``| tee`` hid the failure)."""
    import subprocess

    out = tmp_path / "trt"
    script = write_trtexec_script(_plan(export_dir, precision="fp16", output_dir=out), out)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text and 'cd "$(dirname "$0")"' in text
    assert "--onnx=tiny.fp16.onnx " in text and str(export_dir) not in text
    assert (out / "tiny.fp16.onnx").read_bytes() == (export_dir / "tiny.fp16.onnx").read_bytes()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtexec"
    fake.write_text(
        '#!/usr/bin/env bash\nfor a in "$@"; do case $a in --onnx=*) test -f "${a#--onnx=}" || exit 3;; esac; done\n'
        'echo "$@" >> calls.txt\nexit "${FAKE_TRTEXEC_RC:-0}"\n'
    )
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    moved = tmp_path / "jetson" / "trt"
    shutil.copytree(out, moved)
    ran = subprocess.run(["bash", str(moved / script.name)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert len((moved / "calls.txt").read_text().splitlines()) == 2, "build and profile ran from the script's folder"
    failed = subprocess.run(
        ["bash", str(moved / script.name)],
        cwd=tmp_path,
        env={**env, "FAKE_TRTEXEC_RC": "1"},
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1 and len((moved / "calls.txt").read_text().splitlines()) == 3, (
        "stops after the failed build"
    )
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "tiny.fp16.onnx").write_bytes(b"another model")
    with pytest.raises(UsageError, match="already exists and is not"):
        write_trtexec_script(_plan(export_dir, precision="fp16", output_dir=clash), clash)


@pytest.mark.filterwarnings("ignore:calibrating on synthetic")
def test_emitted_calib_script_writes_the_cache_it_names(export_dir, tmp_path):
    """Issue 13 (2): ``--emit-trtexec --calib`` named a cache it never wrote, so trtexec calibrated on random data."""
    plan = _plan(
        export_dir,
        device=ORIN_DLA,
        jetpack=JETPACK6,
        dla_core=0,
        calibration="synthetic",
        calibration_samples=8,
        output_dir=tmp_path / "trt",
    )
    script = write_trtexec_script(plan, tmp_path / "trt")
    text = script.read_text()
    assert "--int8 --calib=tiny.entropy-calibration.cache" in text and "--onnx=tiny.onnx " in text
    cache = (tmp_path / "trt" / "tiny.entropy-calibration.cache").read_text().splitlines()
    assert cache[0] == "TRT-100300-EntropyCalibration2"
    scales = {
        name: float(np.frombuffer(bytes.fromhex(value), dtype=">f4")[0])
        for name, value in (line.split(": ") for line in cache[1:])
    }
    assert {"input", "r1"} <= set(scales) and all(0 < value < 1 for value in scales.values())
    assert (tmp_path / "trt" / "tiny.onnx").is_file()
    device_cache = tmp_path / "device"
    device_cache.mkdir()
    plan.calibration_cache = device_cache / "tiny.entropy-calibration.cache"
    plan.calibration_cache.write_text("TRT-100300-EntropyCalibration2\ninput: 3c010a14\n")
    write_trtexec_script(plan, tmp_path / "again")
    assert (tmp_path / "again" / "tiny.entropy-calibration.cache").read_text().endswith("input: 3c010a14\n"), (
        "TensorRT's own cache wins"
    )


@pytest.mark.filterwarnings("ignore:calibrating on synthetic")
def test_entropy_calibrator_gets_full_batches_without_tensorrt(export_dir, tmp_path, monkeypatch):
    """Issue 13 (1): ``_calibration_batches`` called ``CalibrationSet.batches``, which does not exist, so every
    ``compile --calib`` crashed. Runs the calibrator over a stand-in base class: no TensorRT needed."""
    import types

    import torch

    from edgecnn.export.tensorrt.engine import _calibration_batches, _entropy_calibrator

    plan = _plan(
        export_dir,
        device=ORIN_DLA,
        jetpack=JETPACK6,
        dla_core=0,
        calibration="synthetic",
        calibration_samples=10,
        output_dir=tmp_path,
    )
    batches = list(_calibration_batches(plan, 4))
    assert [batch.shape for batch in batches] == [(4, 3, 16, 16)] * 2 and all(
        batch.dtype == np.float32 for batch in batches
    )
    with pytest.raises(UsageError, match="fewer than one batch"):
        list(_calibration_batches(plan, 16))

    class EntropyCalibrator2:
        def __init__(self):
            pass

    monkeypatch.setattr(torch.Tensor, "cuda", lambda self: self)
    calibrator = _entropy_calibrator(
        types.SimpleNamespace(IInt8EntropyCalibrator2=EntropyCalibrator2), iter(batches), 4, plan.calibration_cache
    )
    assert calibrator.get_batch_size() == 4
    assert calibrator.get_batch(["input"]) == [calibrator.device_input.data_ptr()]
    np.testing.assert_array_equal(calibrator.device_input.numpy(), batches[0])
    assert calibrator.get_batch(["input"]) and calibrator.get_batch(["input"]) is None
    assert calibrator.read_calibration_cache() is None
    calibrator.write_calibration_cache(memoryview(b"TRT-100300-EntropyCalibration2\ninput: 3c010a14\n"))
    assert calibrator.read_calibration_cache().startswith(b"TRT-100300-")


def test_compile_emit_trtexec_cli(export_dir, tmp_path):
    result = invoke(
        "compile",
        export_dir,
        "--device",
        ORIN_DLA,
        "--jetpack",
        JETPACK6,
        "--batch",
        "1",
        "--dla-core",
        "0",
        "--gpu-fallback",
        "--emit-trtexec",
        "-o",
        tmp_path,
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert Path(payload["script"]).is_file() and payload["tensorrt"] == "10.3"
    assert [command["step"] for command in payload["commands"]] == ["build", "profile"]


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--device", GPU_ONLY, "--dla-core", "0"], ["has no DLA cores"]),
        (["--device", "jetson-orin-nx-8gb", "--dla-core", "1"], ["1 DLA core(s)", "--dla-core 1 does not exist"]),
        (["--device", GPU_ONLY, "--workspace", "9000"], ["larger than", "8192 MB of memory"]),
        (["--device", GPU_ONLY, "--gpu-fallback"], ["--gpu-fallback only applies with --dla-core"]),
        (["--device", ORIN_DLA, "--dla-core", "0", "--tensorrt", "11"], ["no DLA support"]),
        (["--device", GPU_ONLY, "--calib", "builtin", "--tensorrt", "11"], ["removed INT8 calibrators"]),
        (["--device", "raspberry-pi-5"], ["runs no TensorRT"]),
        (["--device", "jetson-orin-nano-9gb"], ["unknown device", "did you mean"]),
    ],
)
def test_compile_bad_input_is_one_line(tiny_fp32, args, fragments):
    assert_one_line_error(invoke("compile", tiny_fp32, *args), *fragments)


def test_compile_shape_errors_are_one_line(export_dir, tiny_fp32):
    assert_one_line_error(invoke("compile", export_dir, "--device", GPU_ONLY), "dynamic batch", "--batch N or --shapes")
    assert_one_line_error(invoke("compile", tiny_fp32, "--device", GPU_ONLY, "--shapes", "1,8,32"), "static shape")
    assert_one_line_error(
        invoke("compile", export_dir, "--device", ORIN_DLA, "--dla-core", "0", "--shapes", "1,8,32"),
        "DLA needs static shapes",
    )
    assert_one_line_error(
        invoke("compile", export_dir, "--device", GPU_ONLY, "--shapes", "8,1,32"), "min <= opt <= max"
    )


def test_compile_unparseable_onnx_names_the_nodes(tmp_path):
    path = tmp_path / "unique.onnx"
    onnx.save(single_node_model("Unique", [1, 8, 4, 4], [1, 8, 4, 4]), str(path))
    assert_one_line_error(invoke("compile", path, "--device", GPU_ONLY), "cannot import 1 node(s)", "unique (Unique")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(path.read_bytes()[:40])
    assert_one_line_error(invoke("compile", broken, "--device", GPU_ONLY), "not a readable ONNX model")


@pytest.mark.skipif(installed_tensorrt() is not None, reason="TensorRT is installed here")
def test_compile_without_tensorrt_points_at_emit_trtexec(tiny_fp32):
    assert_one_line_error(
        invoke("compile", tiny_fp32, "--device", GPU_ONLY), "TensorRT is not installed", "--emit-trtexec"
    )


def test_check_cli(tiny_fp32, tmp_path):
    result = invoke("check", tiny_fp32, "--device", ORIN_DLA, "--jetpack", JETPACK6, "--all")
    assert result.exit_code == 0, result.output
    assert "conv" in result.output and "dla" in result.output
    assert "JetPack 6.2, TensorRT 10.3" in result.output
    as_json = json.loads(invoke("check", tiny_fp32, "--device", ORIN_DLA, "--jetpack", JETPACK6, "--json").output)
    assert as_json["summary"]["verdict"] == "dla" and as_json["summary"]["dla_layers"] == 4
    assert as_json["summary"]["jetpack"] == "6.2"
    path = tmp_path / "gap.onnx"
    onnx.save(classifier_model(512), str(path))
    fallback = invoke("check", path, "--device", ORIN_DLA, "--jetpack", JETPACK6)
    assert fallback.exit_code == 0 and "GlobalAveragePool" in fallback.output and "dla+gpu" in fallback.output
    blocked = invoke("check", path, "--device", XAVIER, "--tensorrt", "8.2")
    assert blocked.exit_code == 1 and "opset 17" in blocked.output
    assert_one_line_error(invoke("check", tmp_path / "missing.onnx", "--device", GPU_ONLY), "does not exist")


# ----------------------------------------------------------------------------------------- engines without TensorRT


def test_files_that_are_not_engines(tiny_fp32, tmp_path):
    with pytest.raises(UsageError, match="looks like an ONNX model"):
        load_engine(tiny_fp32)
    text = tmp_path / "notes.engine"
    text.write_text('{"not": "an engine"}' * 100)
    with pytest.raises(UsageError, match="JSON text"):
        load_engine(text)
    tiny = tmp_path / "tiny.engine"
    tiny.write_bytes(b"\x00" * 10)
    with pytest.raises(UsageError, match="10 bytes"):
        load_engine(tiny)


def test_sidecar_refuses_other_tensorrt_versions_and_gpus(tmp_path):
    sidecar = {
        "edgecnn_engine": 1,
        "engine": {"file": "m.int8.engine"},
        "tensorrt": "10.3.0",
        "gpu": {"name": "Orin", "compute_capability": "8.7"},
    }
    assert check_engine_compatibility(sidecar, "10.3.0", GpuIdentity("Orin", "8.7")) == []
    with pytest.raises(EdgecnnError, match=r"built by TensorRT 10.3.0; this is TensorRT 10.7.0: rebuild"):
        check_engine_compatibility(sidecar, "10.7.0", GpuIdentity("Orin", "8.7"))
    with pytest.raises(EdgecnnError, match=r"compute capability 8.7.*NVIDIA H100 \(9.0\)"):
        check_engine_compatibility(sidecar, "10.3.0", GpuIdentity("NVIDIA H100", "9.0"))
    assert (
        "same compute capability" in check_engine_compatibility(sidecar, "10.3.0", GpuIdentity("Other Orin", "8.7"))[0]
    )
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\x01" * 2048)
    assert read_sidecar(engine) is None
    (tmp_path / "m.engine.json").write_text("{broken")
    with pytest.raises(UsageError, match="not valid JSON"):
        read_sidecar(engine)


def test_onnxruntime_tensorrt_ep_options_and_cache_rules(export_dir, tmp_path):
    plan = _plan(export_dir, device=ORIN_DLA, jetpack=JETPACK6, dla_core=0, gpu_fallback=True)
    options = tensorrt_ep_options(plan, tmp_path / "cache")
    assert options["trt_int8_enable"] and options["trt_fp16_enable"] and options["trt_engine_cache_enable"]
    assert options["trt_dla_enable"] and options["trt_dla_core"] == 0
    assert options["trt_profile_opt_shapes"] == "input:1x3x16x16"
    identity = {"tensorrt": "10.3.0", "gpu": "8.7", "precision": "int8"}
    prepare_ep_cache(tmp_path / "cache", identity)
    prepare_ep_cache(tmp_path / "cache", identity)
    with pytest.raises(EdgecnnError, match="tensorrt '10.3.0' -> '10.7.0'"):
        prepare_ep_cache(tmp_path / "cache", {**identity, "tensorrt": "10.7.0"})
    import onnxruntime

    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(EdgecnnError, match="TensorRT execution provider is not available"):
            create_tensorrt_ep_session(plan, tmp_path / "cache2")


# ----------------------------------------------------------------------------------------------- trtexec outputs


FIXTURES = sorted(p for p in DATA.iterdir() if p.suffix in (".json", ".log"))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_trtexec_fixture_parses(path, tmp_path):
    if path.name.endswith("profile.json"):
        profile = read_profile(path)
        assert profile.iterations >= 1 and profile.rows and all(row.average_ms >= 0 for row in profile.rows)
    elif "layerinfo" in path.name:
        info = read_layer_info(path)
        assert info.layers and info.bindings
    elif "times" in path.name:
        times = read_times(path)
        assert (
            times.inferences > 100 and times.latency_ms["min"] <= times.latency_ms["median"] <= times.latency_ms["max"]
        )
    else:
        log = read_log(path)
        assert log.tensorrt and log.gpu
    shutil.copy(path, tmp_path / path.name)
    imported = import_trtexec(tmp_path)
    assert len(imported.files) == 1


def test_profile_and_layer_info_values():
    mobilenet = read_profile(DATA / "trt8.4_mobilenetv2-qat_int8_titanrtx.profile.json")
    assert mobilenet.iterations == 6610 and len(mobilenet.rows) == 73
    assert mobilenet.rows[0].name == "QuantizeLinear_2" and mobilenet.rows[0].average_ms == pytest.approx(0.00474854)
    count1 = read_profile(DATA / "trt8.4_resnet18_a100_fp32_bs32_count1.profile.json")
    assert count1.iterations == 1 and all(row.total_ms == row.average_ms for row in count1.rows)
    assert any(row.average_ms == 0 for row in count1.rows)
    names_only = read_layer_info(DATA / "trt8.6_mnist-cnn_rtx3090.layerinfo-names.json")
    assert not names_only.detailed and len(names_only.layers) == 15 and names_only.bindings == ["tensor-0", "tensor-15"]
    detailed = read_layer_info(DATA / "trt10.16_mnist-cnn_h100.layerinfo-detailed.json")
    assert detailed.detailed and detailed.layers[0].onnx_nodes == ["node_conv2d", "node_relu"]
    assert detailed.layers[4].onnx_nodes == ["node_linear", "node_relu_2"]
    qat = read_layer_info(DATA / "trt8.4_mobilenetv2-qat_int8_titanrtx.layerinfo.json")
    assert qat.layers[1].precision == "int8" and qat.layers[1].layer_type == "CaskConvolution"


def test_times_and_logs():
    times = read_times(DATA / "trt8_resnet50-tf_rtx3090_fp32_bs32.times.json")
    assert times.inferences == 263 and times.latency_ms["min"] == pytest.approx(12.0986, abs=1e-4)
    assert read_times(DATA / "trt10.4_alexnet_rtx3060laptop_fp16.times.json").inferences == 6039
    verbose = read_log(DATA / "trt8.6_mnist-cnn_rtx3090_loadEngine_verbose.log")
    assert (verbose.tensorrt, verbose.gpu, verbose.compute_capability) == ("8.6.0", "NVIDIA GeForce RTX 3090", "8.6")
    assert verbose.throughput_qps == 21009.2
    assert verbose.latency_ms["median"] == pytest.approx(0.0517578) and verbose.latency_ms["p99"] == pytest.approx(
        0.0630798
    )
    assert verbose.gpu_compute_ms["mean"] == pytest.approx(0.0451127) and verbose.profile is None
    dump = read_log(DATA / "trt10.16_mnist-cnn_h100_dumpProfile.log")
    assert dump.tensorrt == "10.16.1" and not dump.has_summary
    assert dump.profile.iterations == 18362 and len(dump.profile.rows) == 15
    assert dump.profile.rows[1].name == "node_conv2d_myl0_1" and dump.profile.rows[1].average_ms == pytest.approx(
        0.0105
    )


def test_truncated_json_and_logs_are_one_line_errors(tmp_path):
    source = (DATA / "trt10.4_resnet18_rtx3060laptop_fp16.profile.json").read_text()
    truncated = tmp_path / "cut.profile.json"
    truncated.write_text(source[: len(source) // 2])
    with pytest.raises(
        UsageError,
        match=(
            r"cut.profile.json is not complete trtexec --exportProfile JSON \(truncated: it stops at line 15\): "
            r"re-run trtexec"
        ),
    ):
        read_profile(truncated)
    log = tmp_path / "cut.log"
    log.write_text(
        "".join((DATA / "trt8.6_mnist-cnn_rtx3090_loadEngine_verbose.log").read_text().splitlines(True)[:200])
    )
    with pytest.raises(UsageError, match="truncated or not a trtexec log"):
        read_log(log)
    directory = tmp_path / "run"
    directory.mkdir()
    shutil.copy(truncated, directory / truncated.name)
    with pytest.raises(UsageError, match="truncated"):
        import_trtexec(directory)


def test_fused_layer_names_map_back_to_onnx_nodes():
    assert onnx_nodes_of_layer("features.0.0.weight + QuantizeLinear_8 + Conv_12 + PWN(Clip_16)") == [
        "QuantizeLinear_8",
        "Conv_12",
        "Clip_16",
    ]
    assert onnx_nodes_of_layer("PWN(PWN(Sigmoid_1), Mul_2) + Add_3") == ["Sigmoid_1", "Mul_2", "Add_3"]
    assert onnx_nodes_of_layer("Reformatting CopyNode for Input Tensor 0 to Conv-1 + ReLU-2") == []
    known = ["Transpose-7", "Reshape-7", "MatMul-9", "Relu-10", "MatMul-12"]
    assert onnx_nodes_of_layer("Transpose-7 + Reshape-7 + reshape_before_MatMul-9", (), known) == [
        "Transpose-7",
        "Reshape-7",
        "MatMul-9",
    ]
    assert onnx_nodes_of_layer("{ForeignNode[Reshape-7...MatMul-12]}", (), known) == known[1:]
    assert onnx_nodes_of_layer("node_linear_myl5_2", (), ["node_linear"]) == ["node_linear"]


def test_import_trtexec_keys_real_resnet18_times_to_zoo_onnx_nodes(tmp_path):
    """TensorRT 10.4's ResNet-18 profile (torchvision export) lands on the zoo resnet18's ONNX node names."""
    for name in (
        "trt10.4_resnet18_rtx3060laptop_fp16.profile.json",
        "trt10.4_resnet18_rtx3060laptop_fp16.layerinfo.json",
    ):
        shutil.copy(DATA / name, tmp_path / name)
    graph = zoo_graph("resnet18")
    imported = import_trtexec(tmp_path, graph)
    assert imported.iterations == 21071 and len(imported.layers) == 26
    assert imported.node_times["/conv1/Conv"] == pytest.approx(0.0288488)
    assert imported.fused_into["/relu/Relu"] == "/conv1/Conv"
    assert imported.fused_into["/layer1/layer1.0/Add"] == "/layer1/layer1.0/conv2/Conv"
    assert "/fc/Gemm" in imported.node_times and "/avgpool/GlobalAveragePool" in imported.node_times
    covered = set(imported.node_times) | set(imported.fused_into)
    nodes = [node.name for node in graph.graph.node]
    assert len(covered & set(nodes)) >= len(nodes) - 1
    assert any(name.startswith("Reformatting CopyNode") for name in imported.unmapped_ms)
    total = sum(imported.node_times.values()) + sum(imported.unmapped_ms.values())
    assert total == pytest.approx(imported.total_layer_ms)


def test_import_trtexec_from_a_log_and_one_run_per_directory(tmp_path):
    shutil.copy(DATA / "trt10.16_mnist-cnn_h100_dumpProfile.log", tmp_path / "run.log")
    shutil.copy(DATA / "trt10.16_mnist-cnn_h100.layerinfo-detailed.json", tmp_path / "layers.json")
    imported = import_trtexec(tmp_path)
    assert imported.tensorrt == "10.16.1" and imported.gpu == "NVIDIA H100 PCIe" and imported.iterations == 18362
    assert imported.node_times["node_conv2d"] == pytest.approx(0.0105)
    assert imported.node_times["node_max_pool2d_1"] == pytest.approx(0.0045)
    shutil.copy(DATA / "trt10.4_resnet18_rtx3060laptop_fp16.layerinfo.json", tmp_path / "other.json")
    with pytest.raises(UsageError, match="2 trtexec layers files"):
        import_trtexec(tmp_path)
    with pytest.raises(UsageError, match="not a directory"):
        import_trtexec(tmp_path / "run.log")


def test_fixture_attribution_travels_with_the_fixtures():
    sources = (DATA / "SOURCES.md").read_text()
    assert "Apache-2.0" in sources
    assert all(path.name in sources or path.name.replace("_dumpProfile", "") in sources for path in FIXTURES)


# ----------------------------------------------------------------------------------------- with TensorRT and a GPU


@pytest.fixture
def tensorrt_gpu():
    tensorrt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    if not hasattr(tensorrt, "Builder"):
        pytest.skip("TensorRT is not installed (PyPI stub without libraries)")
    from edgecnn.export.tensorrt.engine import gpu_identity

    if gpu_identity() is None:
        pytest.skip("no NVIDIA GPU")
    return tensorrt


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_load_and_time_an_engine(tensorrt_gpu, export_dir, tmp_path, precision):
    from edgecnn.export.tensorrt.engine import build_engine, gpu_identity, measure_engine

    plan = _plan(
        export_dir, device=ORIN_DLA, precision=precision, output_dir=tmp_path, tensorrt=tensorrt_gpu.__version__
    )
    result = build_engine(plan)
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["tensorrt"] == tensorrt_gpu.__version__ and sidecar["precision"] == precision
    assert sidecar["gpu"]["compute_capability"] == gpu_identity().compute_capability
    assert sidecar["source_onnx"]["sha256"] == plan.source_sha256
    assert plan.timing_cache.is_file()
    timing = measure_engine(result.engine, iterations=20, warmup=5)
    assert 0 < timing.p50_ms <= timing.p99_ms
    engine, loaded_sidecar, _ = load_engine(result.engine)
    assert engine is not None and loaded_sidecar == sidecar


@pytest.mark.tensorrt
def test_engine_from_another_tensorrt_is_refused(tensorrt_gpu, export_dir, tmp_path):
    from edgecnn.export.tensorrt.engine import build_engine

    result = build_engine(_plan(export_dir, precision="fp16", output_dir=tmp_path, tensorrt=tensorrt_gpu.__version__))
    sidecar = json.loads(result.sidecar.read_text())
    sidecar["tensorrt"] = "9.9.9"
    result.sidecar.write_text(json.dumps(sidecar))
    with pytest.raises(EdgecnnError, match="built by TensorRT 9.9.9"):
        load_engine(result.engine)
    garbage = tmp_path / "garbage.engine"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(UsageError, match="is not a TensorRT"):
        load_engine(garbage)


def test_profile_import_trtexec_merges_device_layer_times(tmp_path):
    for name in (
        "trt10.4_resnet18_rtx3060laptop_fp16.profile.json",
        "trt10.4_resnet18_rtx3060laptop_fp16.layerinfo.json",
    ):
        shutil.copy(DATA / name, tmp_path / name)
    result = invoke(
        "profile",
        "resnet18",
        "--device",
        GPU_ONLY,
        "--precision",
        "fp16",
        "--layers",
        "--import-trtexec",
        tmp_path,
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["trtexec"]["iterations"] == 21071 and len(report["trtexec"]["layers"]) == 26
    layers = {layer["name"]: layer for layer in report["rows"][0]["layers"]}
    assert layers["/conv1/Conv"]["trtexec_ms"] == pytest.approx(0.0288488)
    assert layers["/relu/Relu"]["fused_into"] == "/conv1/Conv"
    text = invoke("profile", "resnet18", "--device", GPU_ONLY, "--precision", "fp16", "--import-trtexec", tmp_path)
    assert text.exit_code == 0 and "26 TensorRT layers" in text.output and "21,071 runs" in text.output


@pytest.mark.parametrize("case", ["two models", "missing directory", "empty directory"])
def test_profile_import_trtexec_bad_input(tmp_path, case):
    models, directory = ["resnet18"], tmp_path
    if case == "two models":
        models = ["resnet18", "mobilenet_v2"]
    elif case == "missing directory":
        directory = tmp_path / "missing"
    result = invoke("profile", *models, "--import-trtexec", directory)
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_check_defaults_to_the_newest_jetpack_and_says_so(tiny_fp32):
    """Issue 14: check and compile take TensorRT and DLA from the device's JetPack release (default the newest)."""
    model = onnx.load(str(tiny_fp32))
    newest = check_model(model, get_device(ORIN_DLA), profile=ShapeProfile.static(1))
    assert (newest.jetpack, newest.tensorrt, newest.dla_evaluated) == ("7.2.2", "11.4.1", True)
    assert newest.dla_precision == "fp32" and newest.gpu_fallback_layers == 4
    older = check_model(model, get_device(ORIN_DLA), jetpack="6", profile=ShapeProfile.static(1))
    assert (older.jetpack, older.tensorrt, older.verdict) == ("6.2", "10.3", "dla")
    nano = check_model(model, get_device(GPU_ONLY), profile=ShapeProfile.static(1))
    assert (nano.jetpack, nano.tensorrt) == ("6.2", "10.3")
    override = check_model(model, get_device(ORIN_DLA), tensorrt="10.8", profile=ShapeProfile.static(1))
    assert (override.jetpack, override.tensorrt, override.dla_evaluated) == (None, "10.8", False)
    with pytest.raises(UsageError, match="does not run JetPack 7"):
        check_model(model, get_device(GPU_ONLY), jetpack="7.x")
    result = invoke("check", tiny_fp32, "--device", ORIN_DLA)
    assert result.exit_code == 0 and "JetPack 7.2.2, TensorRT 11.4.1" in result.output
    assert_one_line_error(invoke("check", tiny_fp32, "--device", GPU_ONLY, "--jetpack", "7.x"), "does not run JetPack")


def test_compile_takes_tensorrt_and_dla_from_the_jetpack_release(export_dir, tmp_path):
    """DLA on AGX Orin under JetPack 7.2.2 (TensorRT 11.4.1, strongly typed); Thor's releases have no DLA."""
    plan = _plan(export_dir, device=ORIN_DLA, precision="fp16", dla_core=0, gpu_fallback=True, output_dir=tmp_path)
    assert (plan.jetpack, plan.tensorrt, plan.network, plan.dla_core) == ("7.2.2", "11.4.1", "strongly-typed", 0)
    assert _plan(export_dir, device=ORIN_DLA, jetpack="6.2", precision="fp16").tensorrt == "10.3"
    assert _plan(export_dir, device=ORIN_DLA, tensorrt="10.3", precision="fp16").jetpack is None
    thor = _plan(export_dir, device="jetson-agx-thor-t5000", jetpack="7.0", precision="fp16")
    assert (thor.jetpack, thor.tensorrt) == ("7.0", "10.13")
    with pytest.raises(UsageError, match="does not run JetPack 7"):
        _plan(export_dir, device=GPU_ONLY, jetpack="7.x")
    result = invoke(
        "compile",
        export_dir,
        "--device",
        ORIN_DLA,
        "--precision",
        "fp16",
        "--batch",
        "1",
        "--emit-trtexec",
        "-o",
        tmp_path / "jp7",
    )
    assert result.exit_code == 0, result.output
    assert "JetPack 7.2.2, TensorRT 11.4.1" in result.output
    assert "JetPack 7.2.2 (TensorRT 11.4.1)" in next((tmp_path / "jp7").rglob("*.sh")).read_text()
