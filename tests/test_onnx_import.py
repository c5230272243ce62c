"""The import step for foreign ONNX on the third-party-style corpus, and the one-line errors of bad cases."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import corpus
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn.errors import UsageError
from edgecnn.onnx_import import (
    ImportResult,
    graph_outputs_info,
    import_onnx,
    is_classifier,
    model_opset,
    parameter_count,
    unresolved_values,
)

MODELS = list(corpus.BUILDERS)

RAW_FEATURES: dict[str, dict[str, object]] = {
    "alexnet_lrn_dropout_opset9": {"ops": {"LRN": 2, "Dropout": 2}},
    "mobilenetv3_dynamic_opset11": {"ops": {"Shape": 1, "Slice": 1, "Concat": 1, "Reshape": 1}, "dynamic": True},
    "resnet_constants_opset13": {"ops": {"Constant": 30}, "initializers": 0, "dynamic": True},
    "vgg_subgraph_weights_opset17": {
        "ops": {"ConstantOfShape": 1, "Reshape": 3, "Transpose": 2, "Cast": 2},
        "initializers": 0,
    },
    "unet_segmentation_opset13": {"ops": {"Shape": 2, "Resize": 2}, "dynamic": True},
    "detector_two_outputs_opset11": {"ops": {"Shape": 1, "Concat": 2, "Reshape": 2}, "dynamic": True},
    "crnn_ctc_opset17": {"ops": {"LSTM": 1}, "dynamic": True},
    "two_inputs_rgbd_opset13": {"ops": {}, "dynamic": True},
    "convnet_training_outputs_opset9": {"ops": {"BatchNormalization": 3, "Dropout": 1}},
    "squeezenet_caffe2_opset7": {"ops": {}, "initializers_as_inputs": True},
    "mobilenetv3_opset21": {"ops": {"HardSwish": 12}},
}

_imports: dict[str, ImportResult] = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, corpus.CorpusModel]]:
    return corpus.build_corpus(tmp_path_factory.mktemp("corpus"))


def imported(built: dict[str, tuple[Path, corpus.CorpusModel]], name: str) -> ImportResult:
    if name not in _imports:
        path, info = built[name]
        _imports[name] = import_onnx(path, info.input_shapes)
    return _imports[name]


def run(model: onnx.ModelProto | Path, inputs: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session.run(outputs, inputs)


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * 0.1 * scale)


def test_models_are_in_the_feature_table():
    assert set(RAW_FEATURES) == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_corpus_file_has_its_features(built, name):
    """The file as written holds what the model stands for, so the import is tested on it."""
    path, info = built[name]
    model = onnx.load(str(path))
    features = RAW_FEATURES[name]
    assert model_opset(model) == info.opset
    ops = Counter(node.op_type for node in model.graph.node)
    for op, count in features["ops"].items():
        assert ops[op] >= count, (op, ops)
    if "initializers" in features:
        assert len(model.graph.initializer) == features["initializers"]
    inputs = [value for value in model.graph.input if value.name not in {t.name for t in model.graph.initializer}]
    if features.get("initializers_as_inputs"):
        assert model.ir_version == 3 and len(inputs) < len(model.graph.input)
    else:
        assert [value.name for value in inputs] == list(info.inputs)
    dynamic = any(d.dim_param for value in inputs for d in value.type.tensor_type.shape.dim)
    assert dynamic == bool(features.get("dynamic"))
    assert set(info.outputs) <= {value.name for value in model.graph.output}
    for output, shape in info.outputs.items():
        assert list(info.reference[output].shape) == shape


@pytest.mark.parametrize("name", MODELS)
def test_import_gives_a_checked_static_inference_graph(built, name):
    _, info = built[name]
    result = imported(built, name)
    model = result.model
    onnx.checker.check_model(model, full_check=True)
    assert unresolved_values(model) == []
    assert result.input_shapes == info.inputs
    assert {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input} == info.inputs
    assert {o.name: list(o.shape) for o in graph_outputs_info(model)} == info.outputs
    left = {node.op_type for node in model.graph.node} & {"Constant", "Dropout", "Identity"}
    assert not left
    assert all(len(node.output) == 1 for node in model.graph.node if node.op_type == "BatchNormalization")
    assert model_opset(model) == info.opset
    assert result.source_opset == info.opset


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_equals_the_torch_count(built, name):
    _, info = built[name]
    counted = parameter_count(imported(built, name).model)
    assert abs(counted - info.parameters) <= 0.01 * info.parameters, (counted, info.parameters)


@pytest.mark.parametrize("name", MODELS)
def test_outputs_equal_the_source_file_and_torch(built, name):
    path, info = built[name]
    model = imported(built, name).model
    inputs = corpus.random_inputs(info.inputs)
    outputs = list(info.outputs)
    actual = run(model, inputs, outputs)
    if info.source_is_inference:
        for got, expected in zip(actual, run(path, inputs, outputs)):
            assert_close(got, expected, rtol=1e-4)
    for output, got in zip(outputs, actual):
        assert_close(got, info.reference[output], rtol=1e-3)


@pytest.mark.parametrize("name", MODELS)
def test_classifier_only_when_the_output_says_so(built, name):
    _, info = built[name]
    model = imported(built, name).model
    assert is_classifier(model) == info.classifier
    assert [o.dtype for o in graph_outputs_info(model)] == ["float32"] * len(info.outputs)


def test_notes_say_what_was_done(built):
    notes = {name: " | ".join(imported(built, name).notes) for name in MODELS}
    assert "folded 30 Constant nodes into initializers" in notes["resnet_constants_opset13"]
    assert "fixed input images to 4x3x64x64 (was <N>x3x64x64)" in notes["resnet_constants_opset13"]
    assert "removed 2 Dropout" in notes["alexnet_lrn_dropout_opset9"]
    assert "ConstantOfShape" in notes["vgg_subgraph_weights_opset17"]
    assert "Shape" in notes["unet_segmentation_opset13"]
    assert "training-only outputs of 3 BatchNormalization, 1 Dropout" in notes["convnet_training_outputs_opset9"]
    assert "running statistics" in notes["convnet_training_outputs_opset9"]
    assert "22 initializers were listed as graph inputs" in notes["squeezenet_caffe2_opset7"]


def test_training_outputs_leave_the_graph_outputs(built):
    path, _ = built["convnet_training_outputs_opset9"]
    assert len(onnx.load(str(path)).graph.output) == 8
    assert [o.name for o in graph_outputs_info(imported(built, "convnet_training_outputs_opset9").model)] == ["logits"]


@pytest.mark.parametrize("name", ["alexnet_lrn_dropout_opset9", "squeezenet_caffe2_opset7", "crnn_ctc_opset17"])
def test_opset_upgrade_on_request(built, name):
    path, info = built[name]
    result = import_onnx(path, info.input_shapes, opset_min=13)
    assert model_opset(result.model) == max(13, info.opset)
    if info.opset < 13:
        assert f"upgraded opset {info.opset} -> 13" in result.notes
    inputs = corpus.random_inputs(info.inputs)
    for output, got in zip(info.outputs, run(result.model, inputs, list(info.outputs))):
        assert_close(got, info.reference[output], rtol=1e-3)


def test_ort_optimizer_gives_the_same_outputs(built):
    path, info = built["unet_segmentation_opset13"]
    result = import_onnx(path, info.input_shapes, optimizer="ort")
    assert result.optimizer == "ort"
    assert unresolved_values(result.model) == []
    inputs = corpus.random_inputs(info.inputs)
    (got,) = run(result.model, inputs, ["mask"])
    assert_close(got, info.reference["mask"], rtol=1e-3)


def test_importing_twice_changes_nothing_more(built):
    first = imported(built, "mobilenetv3_dynamic_opset11").model
    again = import_onnx(first)
    assert again.notes == []
    assert [n.op_type for n in again.model.graph.node] == [n.op_type for n in first.graph.node]


def test_a_model_given_in_memory_is_left_as_it_was(built):
    path, info = built["resnet_constants_opset13"]
    model = onnx.load(str(path))
    before = model.SerializeToString()
    import_onnx(model, info.input_shapes)
    assert model.SerializeToString() == before


def test_parameter_count_finds_weights_in_constant_nodes_and_subgraphs(built):
    """Before import the weights live in Constant nodes; the count is the same as after folding."""
    path, info = built["resnet_constants_opset13"]
    assert parameter_count(onnx.load(str(path))) == info.parameters


def _tiny(nodes, inputs, outputs, initializers=(), opset=13) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vector_model(opset: int = 13) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    return _tiny([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=opset)


def _one_line_usage_error(source, *args, **kwargs) -> str:
    with pytest.raises(UsageError) as caught:
        import_onnx(source, *args, **kwargs)
    message = str(caught.value)
    assert message and "\n" not in message
    return message


def test_dynamic_input_without_a_shape_names_the_input_and_the_option(built):
    path, _ = built["mobilenetv3_dynamic_opset11"]
    message = _one_line_usage_error(path)
    assert "input 'input'" in message and "--input-shape input=<batch>x3x<height>x<width>" in message


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        ({"image": [1, 3, 64]}, "has 4 dimensions"),
        ({"image": [1, 4, 64, 64]}, "fixed dimension 1 = 3"),
        ({"image": [-1, 3, 64, 64]}, "positive integers"),
        ({"image": [1, 3, 64.5, 64]}, "positive integers"),
        ({"img": [1, 3, 64, 64]}, "no input named 'img'"),
    ],
)
def test_bad_input_shapes(built, shapes, expected):
    path, _ = built["unet_segmentation_opset13"]
    assert expected in _one_line_usage_error(path, shapes)


def test_an_unnamed_shape_needs_a_single_input(built):
    path, _ = built["two_inputs_rgbd_opset13"]
    message = _one_line_usage_error(path, [1, 3, 64, 64])
    assert "2 inputs (rgb, depth)" in message and "--input-shape rgb=" in message


def test_missing_and_unreadable_files(tmp_path):
    assert "does not exist" in _one_line_usage_error(tmp_path / "absent.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01not an onnx model at all" * 10)
    assert "is not a readable ONNX model" in _one_line_usage_error(garbage)


@pytest.mark.parametrize("opset", [6, 22])
def test_opsets_outside_the_range(opset):
    assert f"opset {opset}; edgecnn imports opsets 7-21" in _one_line_usage_error(_vector_model(opset))


def test_upgrade_target_outside_the_range():
    assert "cannot upgrade to opset 25" in _one_line_usage_error(_vector_model(), opset_min=25)


def test_unknown_optimizer():
    assert "unknown graph optimizer 'fast'" in _one_line_usage_error(_vector_model(), optimizer="fast")


def test_data_dependent_shape_names_the_node():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, None)
    model = _tiny([helper.make_node("NonZero", ["x"], ["y"], name="keep")], [x], [y])
    message = _one_line_usage_error(model)
    assert "NonZero node 'keep'" in message and "depends on the input values" in message


def test_a_read_dropout_mask_is_a_training_graph():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    nodes = [
        helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop", ratio=0.5),
        helper.make_node("Mul", ["d", "mask"], ["y"]),
    ]
    message = _one_line_usage_error(_tiny(nodes, [x], [y], opset=9))
    assert "Dropout node 'drop'" in message and "'mask'" in message and "eval mode" in message


def test_identity_to_a_graph_output_keeps_the_output_name():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"])]
    result = import_onnx(_tiny(nodes, [x], [y]))
    assert [n.op_type for n in result.model.graph.node] == ["Relu"]
    assert result.model.graph.node[0].output[0] == "y"
    assert "removed 1 Identity" in result.notes


def test_symbolic_shape_inference_is_the_fallback():
    """A contrib operator onnx has no shape inference for: ONNX Runtime's symbolic inference knows it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Gelu", ["c"], ["y"], domain="com.microsoft"),
    ]
    graph = helper.make_graph(nodes, "contrib", [x], [y], [weight])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)]
    )
    result = import_onnx(model)
    assert any("symbolic inference resolved" in note for note in result.notes)
    assert [list(o.shape) for o in graph_outputs_info(result.model)] == [[1, 4, 8, 8]]
