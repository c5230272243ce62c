"""The built-in photos calibrating a model they may not suit says so, without refusing (issue 22, item 8)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn.calibration import QuantizationWarning
from edgecnn.calibration.quantize import quantize_onnx

PREPROCESSING = {"input_size": [32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def conv_model(path: Path, head: str) -> Path:
    """A 3x32x32 conv net ending in a [1, 1000] ImageNet-style classifier, a [1, 10] one, or a [1, 8, 16, 16] map."""
    rng = np.random.default_rng(0)
    weights = {"w": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "b": np.zeros(8, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2])]
    if head == "map":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
        shape = [1, 8, 16, 16]
    else:
        classes = int(head)
        weights["fc"] = rng.normal(0, 0.3, (8, classes)).astype(np.float32)
        nodes += [
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("MatMul", ["f", "fc"], ["y"]),
        ]
        shape = [1, classes]
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def quantize(path: Path, calibration: str) -> tuple[list[str], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = quantize_onnx(
            path,
            path.with_suffix(".int8.onnx"),
            calibration=calibration,
            preprocessing=PREPROCESSING,
            samples=8,
            check_samples=4,
        )
    shown = [str(w.message) for w in caught if issubclass(w.category, QuantizationWarning)]
    return result.warnings, shown


@pytest.mark.parametrize("head", ["map", "10"])
def test_builtin_photos_on_another_domain_warn_and_say_how_to_give_data(head, tmp_path):
    recorded, shown = quantize(conv_model(tmp_path / "net.onnx", head), "builtin")
    notes = [w for w in recorded if "not an ImageNet-style classifier" in w]
    assert len(notes) == 1 and notes[0] in shown
    assert "--calib DIR" in notes[0] and "--calib FILE.npz" in notes[0] and "net.onnx" in notes[0]


def test_an_imagenet_classifier_on_the_builtin_photos_gets_no_domain_note(tmp_path):
    recorded, shown = quantize(conv_model(tmp_path / "net.onnx", "1000"), "builtin")
    assert not [w for w in recorded + shown if "ImageNet-style" in w]


def test_its_own_data_gets_no_domain_note(tmp_path):
    from PIL import Image

    folder = tmp_path / "own"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for index in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    recorded, shown = quantize(conv_model(tmp_path / "net.onnx", "map"), str(folder))
    assert not [w for w in recorded + shown if "ImageNet-style" in w]
