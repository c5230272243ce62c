"""The accuracy-drop gate at its threshold: a drop equal to the budget passes, any drop past it fails.

Two one-input ONNX classifiers are built whose every prediction is known: each image is one grey level, and
the model looks its logits up in a table by that level. The reference gets all 1000 images right; a candidate
gets the first ``wrong`` images wrong, so its drop is exactly ``wrong / 10`` points, computed here by hand.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn.artifact import Preprocessing
from edgecnn.datasets import LabelledImages
from edgecnn.evaluate import evaluate
from edgecnn.testing import assert_accuracy_drop

IMAGES, CLASSES, SIZE = 1000, 10, 8
MOST_WRONG = 30


def _labels_and_levels() -> tuple[np.ndarray, np.ndarray]:
    """Image i < MOST_WRONG has its own grey level 100 + i (label 0); the rest have level = label (0-9)."""
    labels = np.arange(IMAGES) % CLASSES
    levels = labels.copy()
    labels[:MOST_WRONG] = 0
    levels[:MOST_WRONG] = 100 + np.arange(MOST_WRONG)
    return labels, levels


def _lookup_classifier(path, table: np.ndarray) -> None:
    """logits = table[round(255 * mean pixel)]: the grey level of a uniform image picks a row of ``table``."""
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["mean", "levels"], ["scaled"]),
        helper.make_node("Round", ["scaled"], ["rounded"]),
        helper.make_node("Cast", ["rounded"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["logits"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "lookup",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        [
            numpy_helper.from_array(np.array(255.0, np.float32), "levels"),
            numpy_helper.from_array(table.astype(np.float32), "table"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """An export directory (manifest, reference ``gate.onnx``), candidates by number of wrong images, the images."""
    directory = tmp_path_factory.mktemp("gate") / "gate"
    directory.mkdir()
    labels, levels = _labels_and_levels()
    right = np.zeros((256, CLASSES))
    right[levels, labels] = 1.0
    _lookup_classifier(directory / "gate.onnx", right)
    candidates = {}
    for wrong in (10, 11):
        table = right.copy()
        table[levels[:wrong]] = np.roll(right[levels[:wrong]], 1, axis=1)
        candidates[wrong] = directory / f"gate.wrong{wrong}.onnx"
        _lookup_classifier(candidates[wrong], table)
    preprocessing = Preprocessing(
        input_size=(SIZE, SIZE), resize_shorter_side=SIZE, mean=(0.0,), std=(1.0,), channel_order="grayscale"
    )
    manifest = {
        "edgecnn_manifest": 1,
        "model": {"name": "gate", "num_classes": CLASSES},
        "preprocessing": preprocessing.as_dict(),
        "artifacts": [{"format": "onnx-fp32", "file": "gate.onnx"}],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    images = LabelledImages(
        name="grey levels",
        classes=tuple(str(k) for k in range(CLASSES)),
        items=[np.full((SIZE, SIZE), level, np.uint8) for level in levels],
        labels=labels,
    )
    return candidates, images


@pytest.mark.parametrize(
    "wrong,budget,passes",
    [
        (10, 1.0, True),  # a 1.0-point drop on a 1.0-point budget
        (10, 1.0 - 1e-6, False),  # the same drop, past a budget a hair smaller
        (11, 1.0, False),  # 1.1 points
        (11, 1.1, True),
    ],
)
def test_drop_equal_to_the_budget_passes_and_past_it_fails(gate, wrong, budget, passes):
    candidates, images = gate
    report = evaluate([candidates[wrong]], images, max_drop=budget, top_k=1)
    result = next(r for r in report.results if r.artifact == str(candidates[wrong]))
    assert result.drop == pytest.approx(wrong / 10, abs=1e-12) and result.top1 == pytest.approx(100 - wrong / 10)
    assert result.status == ("pass" if passes else "fail") and report.passed is passes


def test_assert_accuracy_drop_at_and_past_the_budget(gate):
    candidates, images = gate
    assert assert_accuracy_drop(candidates[10], data=images, max_drop=1.0).passed
    with pytest.raises(AssertionError, match="over the 1-point budget"):
        assert_accuracy_drop(candidates[11], data=images, max_drop=1.0)


@pytest.fixture(scope="module")
def tiny_cnn(tmp_path_factory):
    """Two 3x3 convolutions over a 3x16x16 image: something to quantize in a second."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["output"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16, 16])],
        [
            numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.standard_normal((4, 8, 3, 3)).astype(np.float32), "w2"),
        ],
    )
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_auto_fallback_meets_a_budget_its_drop_equals(tiny_cnn, tmp_path):
    """auto_fallback's own copy of the gate, on the top-1 values edgecnn.evaluate.top1_evaluator returns: 644 and
    634 of 1000 images right is a 1.0-point drop (ten images), though 64.4 - 63.4 is 1.000000000000007 in floating
    point; quantizing everything meets a 1.0-point budget, so no layer is kept in float."""
    from edgecnn.calibration.fallback import auto_fallback

    def top1(path):
        return 100.0 * (644 if path == tiny_cnn else 634) / 1000

    outcome = auto_fallback(
        tiny_cnn,
        tmp_path / "tiny.int8-cpu.onnx",
        evaluate=top1,
        max_drop=1.0,
        calibration="builtin",
        samples=4,
        preprocessing=Preprocessing.default((16, 16)),
    )
    assert outcome.steps[0].met and outcome.kept_float == []


def test_auto_fallback_refuses_a_drop_past_its_budget(tiny_cnn, tmp_path):
    """The failing side of the same gate: 1.1 points on a 1.0-point budget, whatever is kept in float."""
    from edgecnn.calibration.fallback import auto_fallback
    from edgecnn.errors import EdgecnnError

    with pytest.raises(EdgecnnError, match="stays 1.10 points"):
        auto_fallback(
            tiny_cnn,
            tmp_path / "tiny.int8-cpu.onnx",
            evaluate=lambda path: 100.0 * (644 if path == tiny_cnn else 633) / 1000,
            max_drop=1.0,
            calibration="builtin",
            samples=4,
            analyze_samples=2,
            preprocessing=Preprocessing.default((16, 16)),
        )
    assert not (tmp_path / "tiny.int8-cpu.onnx").exists()
