"""The cost model and the liveness plan: zoo MACs against the reference table, rules, precisions, Q/DQ, memory."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn import get_spec, list_models
from edgecnn.errors import UsageError
from edgecnn.export.zoo_graphs import zoo_graph
from edgecnn.onnx_facts import fill_weights, graph_precision
from edgecnn.profile.cost import COST_RULES, analyze, analyze_precisions, cost_rule
from edgecnn.profile.memory import plan_memory

MAC_TOLERANCE = 0.02


@functools.cache
def zoo_cost(name: str):
    """One graph build per model per test session (and per cache: graphs persist in $EDGECNN_CACHE)."""
    return analyze(zoo_graph(name), name=name)


def torch_module_macs(name: str) -> int:
    """MACs counted on the PyTorch module, independent of the ONNX cost model: forward hooks on every convolution
    (output elements x input channels per group x kernel area) and linear layer (output elements x input
    features), on the meta device (no weights allocated, no arithmetic done) at the model's default size."""
    import torch
    from torch import nn

    from edgecnn.registry import get_model

    spec = get_spec(name)
    with torch.device("meta"):
        model = get_model(name).eval()
    macs = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal macs
        if isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features
        else:
            macs += output.numel() * (module.in_channels // module.groups) * int(np.prod(module.kernel_size))

    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.empty(1, spec.in_chans, *spec.input_size, device="meta"))
    return macs


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_zoo_macs_match_the_reference(name):
    """Against the published count where zoo_reference.csv has one; otherwise against an independent count on the
    PyTorch module (the 17 models without a published figure: pre-activation ResNets, ShuffleNet v1, ...)."""
    reference = get_spec(name).reference
    cost = zoo_cost(name)
    assert cost.uncounted == {}, f"{name} has ops without a cost rule: {cost.uncounted}"
    if reference is not None and reference.gmacs:
        assert cost.macs / 1e9 == pytest.approx(reference.gmacs, rel=MAC_TOLERANCE)
    else:
        assert cost.macs == pytest.approx(torch_module_macs(name), rel=0.01)


def test_the_torch_mac_count_agrees_with_published_figures():
    """The independent count is itself checked where a published figure exists."""
    for name in ("resnet18", "mobilenet_v2", "squeezenet1_1"):
        assert torch_module_macs(name) / 1e9 == pytest.approx(get_spec(name).reference.gmacs, rel=MAC_TOLERANCE)


def test_zoo_graph_params_are_the_deployed_ones():
    """BatchNorm folded into convolutions: one bias per channel instead of a weight and a bias."""
    cost = zoo_cost("resnet18")
    torch_params = get_spec("resnet18").reference.params
    batchnorm_channels = 64 + 2 * 2 * (64 + 128 + 256 + 512) + (128 + 256 + 512)
    assert cost.params == torch_params - batchnorm_channels


def _tensor(name, shape, dtype=np.float32, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(dtype), name)


def _model(nodes, inputs, outputs, initializers=(), value_info=(), opset=18, domains=()):
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers), value_info=list(value_info))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets)


def _conv_model(batch="N", channels=8, groups=1, kernel=3, size=16):
    weight = _tensor("w", (channels, channels // groups, kernel, kernel))
    bias = _tensor("b", (channels,))
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", group=groups, pads=[kernel // 2] * 4),
        helper.make_node("Relu", ["y"], ["z"], name="relu"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [weight, bias],
    )


def test_conv_rule_counts_macs_ops_and_bytes():
    cost = analyze(_conv_model())
    conv, relu = cost.nodes
    assert conv.macs == 16 * 16 * 8 * 8 * 9
    assert conv.kind == "conv" and conv.params == 8 * 8 * 9 + 8
    assert conv.weight_bytes == 4 * conv.params
    assert conv.input_bytes == conv.output_bytes == 4 * 8 * 16 * 16
    assert relu.macs == 0 and relu.ops == 8 * 16 * 16 and relu.kind == "elementwise"
    assert conv.intensity == pytest.approx(conv.flops / (conv.weight_bytes + conv.input_bytes + conv.output_bytes))
    assert cost.flops == 2 * cost.macs
    assert "FLOPs = 2 x MACs" in cost.totals()["convention"]


def test_depthwise_and_pointwise_kinds():
    assert analyze(_conv_model(groups=8)).nodes[0].kind == "depthwise"
    assert analyze(_conv_model(groups=8)).nodes[0].macs == 16 * 16 * 8 * 9
    assert analyze(_conv_model(groups=2)).nodes[0].kind == "grouped"
    assert analyze(_conv_model(kernel=1)).nodes[0].kind == "pointwise"


def test_gemm_and_matmul():
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1),
        helper.make_node("MatMul", ["y", "m"], ["z"], name="mm"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [_tensor("w", (32, 64)), _tensor("b", (32,)), _tensor("m", (32, 10))],
    )
    fc, mm = analyze(model, batch=4).nodes
    assert fc.macs == 4 * 32 * 64 and fc.kind == "gemm"
    assert mm.macs == 4 * 10 * 32


def test_macs_and_activations_scale_with_batch_weights_do_not():
    one, eight = (analyze(_conv_model(), batch=batch) for batch in (1, 8))
    assert eight.macs == 8 * one.macs
    assert eight.weight_bytes == one.weight_bytes
    assert plan_memory(eight).peak_bytes == 8 * plan_memory(one).peak_bytes


def test_a_duplicate_rule_raises():
    with pytest.raises(ValueError, match="already has a cost rule"):
        cost_rule("Conv")(lambda context: None)
    assert "Conv" in COST_RULES


def test_an_op_without_a_rule_is_uncounted_not_zero():
    assert "CumSum" not in COST_RULES
    axis = numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("CumSum", ["r", "axis"], ["y"], name="cumsum"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 100])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [axis],
    )
    cost = analyze(model)
    cumsum = cost.nodes[1]
    assert cost.uncounted == {"CumSum": 1}
    assert cumsum.counted is False and cumsum.kind == "uncounted"
    assert cumsum.as_row()["macs"] is None and cumsum.as_row()["ops"] is None
    assert cumsum.input_bytes == cumsum.output_bytes == 400


def test_a_custom_op_with_declared_shapes_is_uncounted():
    nodes = [helper.make_node("MyOp", ["x"], ["y"], name="custom", domain="my.domain")]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        domains=["my.domain"],
    )
    assert analyze(model).uncounted == {"my.domain.MyOp": 1}


def test_a_custom_op_without_shapes_is_a_one_line_error():
    nodes = [
        helper.make_node("MyOp", ["x"], ["h"], name="custom", domain="my.domain"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        domains=["my.domain"],
    )
    with pytest.raises(UsageError, match=r"ops that ONNX does not define \(my.domain.MyOp\)") as error:
        analyze(model)
    assert "\n" not in str(error.value)


def test_dynamic_dims_need_an_input_shape():
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(UsageError, match="--input-shape Nx3x\\?x\\?"):
        analyze(model)
    assert analyze(model, input_shapes={"x": [1, 3, 8, 8]}, batch=2).input_shapes == {"x": [2, 3, 8, 8]}


def test_a_static_batch_cannot_be_changed():
    with pytest.raises(UsageError, match="static batch of 1"):
        analyze(_conv_model(batch=1), batch=8)
    assert analyze(_conv_model(batch=1)).batch == 1


def test_fp16_graph_counts_two_bytes_per_weight():
    model = _conv_model()
    for tensor in model.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    assert graph_precision(model) == "fp16"
    cost = analyze(model)
    assert cost.precision == "fp16" and not cost.derived
    assert cost.weight_bytes == 2 * cost.params
    assert cost.nodes[0].precision == "fp16" and cost.nodes[0].input_bytes == 2 * 8 * 16 * 16


def test_derived_precisions_from_one_graph():
    costs = analyze_precisions(_conv_model(), ["fp32", "fp16", "int8"])
    fp32, fp16, int8 = costs["fp32"], costs["fp16"], costs["int8"]
    assert fp32.macs == fp16.macs == int8.macs
    assert not fp32.derived and fp16.derived and int8.derived
    assert fp16.weight_bytes == fp32.weight_bytes // 2
    weights, biases = 8 * 8 * 9, 8
    assert int8.weight_bytes == weights + 4 * 8 + 4 * biases
    assert int8.nodes[0].input_bytes == 8 * 16 * 16


def _quantized_model(tmp_path):
    """A Q/DQ graph made by ONNX Runtime's quantize_static from a small conv net."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    fp32 = _conv_model(batch=1, channels=16, size=12)
    fp32.graph.node.append(helper.make_node("GlobalAveragePool", ["z"], ["p"], name="pool"))
    fp32.graph.node.append(helper.make_node("Flatten", ["p"], ["f"], name="flatten"))
    fp32.graph.node.append(helper.make_node("Gemm", ["f", "fcw", "fcb"], ["logits"], name="fc", transB=1))
    fp32.graph.initializer.extend([_tensor("fcw", (10, 16), seed=1), _tensor("fcb", (10,), seed=2)])
    fp32.graph.ClearField("output")
    fp32.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, None))
    source, target = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    onnx.save_model(fp32, source)

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.batches = iter([{"x": rng.standard_normal((1, 16, 12, 12)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return fp32, onnx.load(str(target))


def test_qdq_graph_counts_weights_at_int8(tmp_path):
    fp32, int8 = _quantized_model(tmp_path)
    assert graph_precision(int8) == "int8"
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in int8.graph.node}
    reference, cost = analyze(fp32), analyze(int8)
    assert cost.precision == "int8" and not cost.derived
    assert cost.macs == reference.macs
    assert cost.params == reference.params
    conv = next(node for node in cost.nodes if node.op_type == "Conv")
    assert conv.precision == "int8"
    conv_weights = 16 * 16 * 9
    assert conv_weights <= conv.weight_bytes < reference.nodes[0].weight_bytes / 2
    assert conv.input_bytes == 16 * 12 * 12
    quantizers = [node for node in cost.nodes if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert quantizers and all(node.kind == "quant" and node.macs == 0 for node in quantizers)
    assert plan_memory(cost).peak_bytes < plan_memory(reference).peak_bytes / 2


def _chain(sizes_and_ops):
    """x -> op -> t1 -> op -> t2 ...: a graph of elementwise nodes over [1, n] tensors."""
    nodes, name = [], "x"
    for index, op in enumerate(sizes_and_ops):
        nodes.append(helper.make_node(op, [name], [f"t{index}"], name=f"n{index}"))
        name = f"t{index}"
    return nodes, name


def test_liveness_of_a_chain_is_two_tensors():
    nodes, last = _chain(["Relu", "Sigmoid", "Relu", "Tanh"])
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 250])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)],
    )
    plan = plan_memory(analyze(model))
    assert plan.naive_bytes == 5 * 1000
    assert plan.peak_bytes == 2 * 1000


def test_liveness_with_a_skip_connection_and_a_view():
    """x -> a -> b -> reshape(b) -> add(x, b'): x stays live across the branch; the reshape shares b's buffer."""
    shape = numpy_helper.from_array(np.array([1, 250], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["a"], ["b"], name="sigmoid"),
        helper.make_node("Reshape", ["b", "shape"], ["c"], name="reshape"),
        helper.make_node("Add", ["x", "c"], ["y"], name="add"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 250])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [shape],
    )
    plan = plan_memory(analyze(model))
    assert plan.naive_bytes == 5 * 1000
    assert plan.peak_bytes == 3 * 1000
    assert plan.peak_bytes <= plan.naive_bytes


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "squeezenet1_1"])
def test_zoo_peak_is_below_the_naive_sum(name):
    cost = zoo_cost(name)
    plan = plan_memory(cost)
    largest = max(cost.activation_bytes.values())
    assert 2 * largest <= plan.peak_bytes < plan.naive_bytes / 2


def test_shape_only_graph_runs_once_filled():
    from edgecnn.runtime import create_session, run_session

    model = zoo_graph("lenet5")
    session = create_session(fill_weights(model).SerializeToString())
    out = run_session(session, np.zeros((3, 1, 32, 32), np.float32))
    assert out.shape == (3, 10) and np.isfinite(out).all()


def _shipped_index() -> dict:
    import json

    from edgecnn.export.zoo_graphs import SHIPPED_GRAPHS_DIR

    path = SHIPPED_GRAPHS_DIR / "index.json"
    assert path.is_file(), f"{path} is missing: run `make zoo-graphs` and commit edgecnn/data/zoo_graphs"
    return json.loads(path.read_text())


def test_shipped_zoo_graphs_are_current():
    """The graphs shipped for a fast first profile must come from the current zoo and exporter sources."""
    from edgecnn.export.zoo_graphs import source_fingerprint

    index = _shipped_index()
    stale = "the zoo graphs in edgecnn/data/zoo_graphs are stale: run `make zoo-graphs` and commit them"
    assert index["source_fingerprint"] == source_fingerprint(), stale
    missing = sorted(set(list_models()) - set(index["graphs"]))
    assert not missing, f"{stale} (no graph for {', '.join(missing)})"
    for name, entry in index["graphs"].items():
        spec = get_spec(name)
        assert (tuple(entry["input_size"]), entry["num_classes"]) == (tuple(spec.input_size), spec.num_classes), stale


@pytest.mark.parametrize("name", ["lenet5", "squeezenet1_1", "shufflenet_v2_x0_5"])
def test_shipped_graph_is_what_a_fresh_build_gives(name):
    """Structure byte for byte; the few small initializers a shape-only graph keeps (folded biases) to
    float rounding, since another CPU's vector kernels may round BatchNorm folding differently: a rebuild of
    all 59 on a Xeon differed from the committed graphs (built on an EPYC) by at most 4.8e-7, a few float32
    ulps at these magnitudes."""
    from edgecnn.artifact import package_versions
    from edgecnn.export.zoo_graphs import GRAPH_LIBRARIES, _build_zoo_graph, shipped_graph

    index = _shipped_index()
    built_with = {package: index["libraries"].get(package) for package in GRAPH_LIBRARIES}
    here = package_versions(GRAPH_LIBRARIES)
    if built_with != here:
        pytest.skip(f"the shipped graphs were built with {built_with}, this environment has {here}")
    spec = get_spec(name)
    shipped = shipped_graph(name, spec.input_size, spec.num_classes)
    assert shipped is not None
    fresh = _build_zoo_graph(name, *spec.input_size, spec.num_classes)
    shipped_values = {t.name: numpy_helper.to_array(t) for t in shipped.graph.initializer if t.raw_data}
    fresh_values = {t.name: numpy_helper.to_array(t) for t in fresh.graph.initializer if t.raw_data}
    assert shipped_values.keys() == fresh_values.keys()
    for key, value in shipped_values.items():
        np.testing.assert_allclose(fresh_values[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    for graph in (shipped, fresh):
        for tensor in graph.graph.initializer:
            tensor.ClearField("raw_data")
    assert shipped.SerializeToString() == fresh.SerializeToString(), "same nodes, shapes, names and attributes"


def test_zoo_graph_takes_the_shipped_graph_without_exporting(monkeypatch):
    from edgecnn.export import zoo_graphs as graphs

    def no_build(*args):
        raise AssertionError("the shipped graph should have been used")

    monkeypatch.setattr(graphs, "_build_zoo_graph", no_build)
    assert len(zoo_graph("resnet50").graph.node) > 50


def test_stale_or_mismatched_shipped_graphs_are_ignored(tmp_path):
    import json
    import shutil

    from edgecnn.export.zoo_graphs import SHIPPED_GRAPHS_DIR, shipped_graph

    index = _shipped_index()
    shutil.copy(SHIPPED_GRAPHS_DIR / "lenet5.onnx", tmp_path / "lenet5.onnx")
    (tmp_path / "index.json").write_text(json.dumps({**index, "graphs": {"lenet5": index["graphs"]["lenet5"]}}))
    spec = get_spec("lenet5")
    assert shipped_graph("lenet5", spec.input_size, spec.num_classes, tmp_path) is not None
    assert shipped_graph("lenet5", (64, 64), spec.num_classes, tmp_path) is None
    assert shipped_graph("lenet5", spec.input_size, 7, tmp_path) is None
    assert shipped_graph("resnet18", (224, 224), 1000, tmp_path) is None
    stale_dir = tmp_path / "stale"
    stale_dir.mkdir()
    shutil.copy(tmp_path / "lenet5.onnx", stale_dir / "lenet5.onnx")
    (stale_dir / "index.json").write_text(json.dumps({**index, "source_fingerprint": "0" * 64}))
    assert shipped_graph("lenet5", spec.input_size, spec.num_classes, stale_dir) is None
