"""edgecnn predict / edgecnn.load on the committed LeNet-5 digits export and on a non-classifier ONNX model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

import edgecnn
from edgecnn.cli import main
from edgecnn.errors import UsageError
from edgecnn.predict import imagenet_classes

DATA = Path(__file__).parent / "data"
ARTIFACT = DATA / "lenet5_digits"
DIGITS = DATA / "digits_sample"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_digits_are_classified_with_the_manifest_preprocessing():
    predictor = edgecnn.load(ARTIFACT)
    report = predictor.predict([DIGITS], batch_size=4, top_k=3)
    assert report.inputs == 30 and report.backend.startswith("onnxruntime")
    truth = [Path(p.input).parent.name for p in report.predictions]
    guessed = [p.top[0]["label"] for p in report.predictions]
    assert sum(t == g for t, g in zip(truth, guessed)) >= 29
    assert all(len(p.top) == 3 and p.top[0]["probability"] >= p.top[1]["probability"] for p in report.predictions)
    assert report.latency_ms_per_input > 0


def test_npy_of_model_inputs_gives_the_same_logits_as_images(tmp_path):
    predictor = edgecnn.load(ARTIFACT)
    images = sorted(DIGITS.rglob("*.png"))[:5]
    from_images = predictor.predict(images).arrays["logits"]
    from edgecnn.artifact import read_image

    inputs = np.stack(
        [predictor.preprocessing.normalize(read_image(p, predictor.preprocessing)[None])[0] for p in images]
    )
    np.save(tmp_path / "inputs.npy", inputs)
    from_array = predictor.predict([tmp_path / "inputs.npy"]).arrays["logits"]
    np.testing.assert_allclose(from_array, from_images, rtol=1e-6, atol=1e-6)


def test_cli_json_and_saved_outputs(tmp_path):
    result = invoke(
        "predict", ARTIFACT, DIGITS / "7", "--json", "--save-outputs", tmp_path / "out", "--labels", _labels(tmp_path)
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["inputs"] == 3 and [p["top"][0]["label"] for p in data["predictions"]] == ["seven"] * 3
    saved = np.load(tmp_path / "out" / "logits.npy")
    assert saved.shape == (3, 10)
    assert json.loads((tmp_path / "out" / "inputs.json").read_text()) == [p["input"] for p in data["predictions"]]


def _labels(tmp_path) -> Path:
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def test_cli_table_names_backend_and_latency():
    result = invoke("predict", ARTIFACT, DIGITS / "2", "--top-k", "2", "--format", "onnx-int8-cpu")
    assert result.exit_code == 0, result.output
    assert (
        "lenet5.int8-cpu.onnx" in result.output and "ms per input" in result.output and "onnxruntime" in result.output
    )


def _non_classifier(path: Path) -> Path:
    """A 1x3x8x8 -> 1x2x8x8 convolution: not a classifier."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], np.ones(6, np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["features"])],
        "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 2, 8, 8])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_a_non_classifier_reports_each_outputs_shape_and_statistics(tmp_path):
    model = _non_classifier(tmp_path / "conv.onnx")
    np.save(tmp_path / "x.npy", np.full((2, 3, 8, 8), 0.5, np.float32))
    result = invoke("predict", model, tmp_path / "x.npy", "--json")
    assert result.exit_code == 0, result.output
    outputs = [p["outputs"]["features"] for p in json.loads(result.output)["predictions"]]
    assert len(outputs) == 2 and outputs[0]["shape"] == [2, 8, 8] and outputs[0]["mean"] == pytest.approx(1.5)


def test_unknown_preprocessing_is_refused_for_images_until_given(tmp_path):
    model = _non_classifier(tmp_path / "conv.onnx")
    image = next(DIGITS.rglob("*.png"))
    refused = invoke("predict", model, image)
    assert refused.exit_code == 2 and "preprocessing" in refused.output and "--mean" in refused.output
    assert "Traceback" not in refused.output
    given = invoke("predict", model, image, "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--json")
    assert given.exit_code == 0, given.output
    assert json.loads(given.output)["predictions"][0]["outputs"]["features"]["shape"] == [2, 8, 8]


def test_a_manifest_without_preprocessing_is_unknown(tmp_path):
    copy = shutil.copytree(ARTIFACT, tmp_path / "lenet5")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["preprocessing"] = None
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match="unknown"):
        edgecnn.load(copy).predict([DIGITS / "1"])


def test_bad_inputs_are_one_line_errors(tmp_path):
    assert invoke("predict", tmp_path / "missing", DIGITS).exit_code == 2
    missing_input = invoke("predict", ARTIFACT, tmp_path / "nothing.png")
    assert missing_input.exit_code == 2 and "does not exist" in missing_input.output
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 5, 5), np.float32))
    wrong = invoke("predict", ARTIFACT, tmp_path / "wrong.npy")
    assert wrong.exit_code == 2 and "the model takes" in wrong.output
    no_engine = invoke("predict", ARTIFACT, DIGITS, "--backend", "tensorrt")
    assert no_engine.exit_code != 0 and "Traceback" not in no_engine.output


def test_the_zoo_ships_imagenets_class_names():
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "tench" and names[1] == "goldfish" and names[999] == "toilet tissue"
