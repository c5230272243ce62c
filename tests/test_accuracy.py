"""Accuracy: the digits reference models through FP32, FP16 and INT8 ONNX, the accuracy-drop gate, bad eval input.

The reference models (edgecnn.testing.REFERENCE_MODELS) are trained on the digits train split; INT8 is
calibrated on the calibration split and every accuracy is measured on the test split (360 images, so one
image is 0.28 points).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgecnn.artifact.manifest import read_manifest
from edgecnn.calibration import quantize_export
from edgecnn.cli import main
from edgecnn.datasets import DIGITS_SPLITS, digits_split_indices, digits_split_sha256, load_digits, write_digits_split
from edgecnn.evaluate import evaluate
from edgecnn.export import export_model
from edgecnn.runtime import create_session
from edgecnn.testing import (
    REFERENCE_MODELS,
    assert_accuracy_drop,
    reference_model,
    reference_records,
    reference_weights_path,
    save_state_dict_fp16,
)

pytest.importorskip("sklearn", reason="the digits set ships with scikit-learn, which is not installed")

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "scripts" / "train_digits.py"
TARGETS = ("cpu", "tensorrt")
INT8_BUDGET = 1.0
FP16_BUDGET = 0.2
CALIBRATION_SAMPLES = DIGITS_SPLITS["calibration"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def _train_script():
    spec = importlib.util.spec_from_file_location("train_digits", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_digits"] = module
    spec.loader.exec_module(module)
    return module


def _trained_weights(folder: Path, name: str) -> Path:
    """Train an unshipped reference model (seeded, one thread) into ``folder``, keyed by everything that shapes it."""
    key = hashlib.sha256(
        TRAIN_SCRIPT.read_bytes()
        + json.dumps(dataclasses.asdict(REFERENCE_MODELS[name]), sort_keys=True).encode()
        + torch.__version__.encode()
        + digits_split_sha256().encode()
    ).hexdigest()[:16]
    path = folder / f"{name}-{key}.pt"
    if not path.is_file():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            model, _, _ = _train_script().train(name, log=lambda line: None)
        finally:
            torch.set_num_threads(threads)
        partial = save_state_dict_fp16(model, path.with_suffix(".tmp"))
        os.replace(partial, path)
    return path


@pytest.fixture(scope="session")
def weights(request, tmp_path_factory):
    """name -> weights file: the shipped ones, or (ResNet-18) trained once and kept in pytest's cache between
    sessions."""
    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir("edgecnn-reference-weights")) if cache is not None else tmp_path_factory.mktemp("weights")
    found: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in found:
            found[name] = (
                reference_weights_path(name) if REFERENCE_MODELS[name].shipped else _trained_weights(folder, name)
            )
        return found[name]

    return get


@pytest.fixture(scope="session")
def calibration_tree(tmp_path_factory) -> Path:
    """The digits calibration split as PNG files in class folders (the quantizer reads them like any images)."""
    return write_digits_split("calibration", tmp_path_factory.mktemp("digits") / "calibration")


@pytest.fixture(scope="session")
def reference_exports(tmp_path_factory, weights, calibration_tree):
    """name -> (export directory with FP32, FP16 and both INT8 artifacts, {target: QuantizationResult}); built on
    first use."""
    root = tmp_path_factory.mktemp("reference-exports")
    built = {}

    def build(name: str):
        if name not in built:
            model = REFERENCE_MODELS[name]
            directory = export_model(
                name, output_dir=root, weights=weights(name), fp16=True, check_samples=2, **model.export_options()
            ).directory
            results = {
                target: quantize_export(
                    directory, target=target, calibration=calibration_tree, samples=CALIBRATION_SAMPLES, cache="auto"
                )
                for target in TARGETS
            }
            built[name] = directory, results
        return built[name]

    return build


@pytest.fixture(scope="session")
def reports(reference_exports):
    """name -> EvaluationReport of every artifact of that reference model on the digits test split (no gate)."""
    made = {}

    def report(name: str):
        if name not in made:
            made[name] = evaluate([reference_exports(name)[0]], "digits", max_drop=None, threads=1)
        return made[name]

    return report


def result_of(report, fmt: str):
    return next(r for r in report.results if r.format == fmt)


# The split ------------------------------------------------------------------------------------------


def test_digits_split_is_fixed_stratified_and_disjoint():
    splits = digits_split_indices()
    assert {name: len(indices) for name, indices in splits.items()} == DIGITS_SPLITS
    combined = np.concatenate(list(splits.values()))
    assert len(np.unique(combined)) == 1797, "train, calibration and test share no image"
    labels = load_digits("all").labels
    for name, indices in splits.items():
        counts = np.bincount(labels[indices], minlength=10)
        expected = np.bincount(labels, minlength=10) * len(indices) / len(labels)
        assert np.all(np.abs(counts - expected) <= 1), f"{name} split is not stratified: {counts}"
    recorded = {record["split_sha256"] for record in reference_records().values()}
    assert recorded == {digits_split_sha256()}, (
        "the shipped weights were trained on another split: retrain with scripts/train_digits.py"
    )


def test_shipped_weights_are_the_recorded_ones_and_small():
    from edgecnn.artifact.manifest import sha256_file

    records = reference_records()
    shipped = [name for name, model in REFERENCE_MODELS.items() if model.shipped]
    assert sorted(records) == sorted(shipped)
    for name in shipped:
        assert sha256_file(reference_weights_path(name)) == records[name]["weights_sha256"], name
    assert sum(reference_weights_path(name).stat().st_size for name in shipped) < 10 * 2**20


# The reference models through FP32, FP16 and INT8 ---------------------------------------------------


@pytest.mark.parametrize("name", list(REFERENCE_MODELS))
def test_fp32_onnx_agrees_with_pytorch_on_every_test_image(name, weights, reference_exports, reports):
    directory, _ = reference_exports(name)
    manifest = read_manifest(directory)
    test = load_digits("test").arrays(manifest["preprocessing"])
    with torch.inference_mode():
        torch_predictions = reference_model(name, weights(name))(torch.from_numpy(test.images)).argmax(1).numpy()
    session = create_session(directory / f"{name}.onnx", threads=1)
    onnx_predictions = np.concatenate(
        [session.run(None, {session.get_inputs()[0].name: image[None]})[0].argmax(1) for image in test.images]
    )
    assert np.array_equal(onnx_predictions, torch_predictions), (
        f"{(onnx_predictions != torch_predictions).sum()} of {len(test.labels)} differ"
    )
    fp32 = result_of(reports(name), "onnx-fp32")
    assert fp32.top1 == pytest.approx(100.0 * float((torch_predictions == test.labels).mean()))
    assert fp32.top1 >= 90.0, f"{name} is not a trained reference model (top-1 {fp32.top1:.2f}%)"
    record = reference_records().get(name)
    if REFERENCE_MODELS[name].shipped:
        assert fp32.top1 == pytest.approx(record["test_top1"], abs=1e-3), (
            "the shipped weights no longer give the recorded accuracy"
        )


@pytest.mark.parametrize("name", list(REFERENCE_MODELS))
def test_fp16_drop_is_within_budget(name, reports):
    fp16 = result_of(reports(name), "onnx-fp16")
    assert fp16.drop <= FP16_BUDGET, f"{name} FP16 top-1 {fp16.top1:.2f}% drops {fp16.drop:.2f} points"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(REFERENCE_MODELS))
def test_int8_drop_is_within_budget(name, target, reports):
    int8 = result_of(reports(name), f"onnx-int8-{target}")
    assert int8.drop <= INT8_BUDGET, f"{name} INT8 ({target}) top-1 {int8.top1:.2f}% drops {int8.drop:.2f} points"
    assert int8.agreement >= 95.0


def test_calibration_cache_is_reused(reference_exports, calibration_tree):
    directory, results = reference_exports("lenet5")
    assert not results["cpu"].cache_hit and results["tensorrt"].cache_hit, "the second target reuses the first's ranges"
    assert results["cpu"].cache_path.is_file()
    again = quantize_export(
        directory,
        target="cpu",
        calibration=calibration_tree,
        samples=CALIBRATION_SAMPLES,
        cache=results["cpu"].cache_path,
        output=directory.parent / "lenet5-again.int8-cpu.onnx",
    )
    assert again.cache_hit and again.cache_path == results["cpu"].cache_path
    assert again.sha256 == results["cpu"].sha256, "the same ranges give the same INT8 model"


# The gate -------------------------------------------------------------------------------------------


def test_eval_command_passes_within_budget_and_fails_an_impossible_one(reference_exports):
    directory, _ = reference_exports("lenet5")
    within = invoke("eval", directory, "--data", "digits", "--json")
    assert within.exit_code == 0, within.output
    payload = json.loads(within.stdout)
    assert payload["passed"] and payload["images"] == 360 and payload["classes"] == 10
    assert {r["format"] for r in payload["results"]} == {
        "onnx-fp32",
        "onnx-fp16",
        "onnx-int8-cpu",
        "onnx-int8-tensorrt",
    }
    impossible = invoke("eval", directory / "lenet5.int8-cpu.onnx", "--data", "digits", "--max-drop", "-100")
    assert impossible.exit_code == 1, impossible.output
    assert "FAIL" in impossible.output and "lenet5.int8-cpu.onnx" in impossible.output and "-100" in impossible.output
    table = invoke("eval", directory / "lenet5.fp16.onnx", "--data", "digits", "--top-k", "3")
    assert table.exit_code == 0 and "top-3 %" in table.output and "reference" in table.output, table.output


def test_assert_accuracy_drop(reference_exports):
    directory, _ = reference_exports("lenet5")
    report = assert_accuracy_drop(directory / "lenet5.int8-tensorrt.onnx", data="digits", max_drop=INT8_BUDGET)
    assert report.passed and len(report.results) == 2
    with pytest.raises(
        AssertionError,
        match=r"lenet5.int8-tensorrt.onnx: top-1 .* below FP32 .* short of the required gain of 100 points",
    ):
        assert_accuracy_drop(directory / "lenet5.int8-tensorrt.onnx", data="digits", max_drop=-100.0)


def test_an_image_folder_tree_gives_the_digits_numbers(reference_exports, tmp_path):
    directory, _ = reference_exports("lenet5")
    tree = write_digits_split("test", tmp_path / "test")
    from_tree = evaluate([directory / "lenet5.onnx"], tree, max_drop=None).results[0]
    from_digits = evaluate([directory / "lenet5.onnx"], "digits", max_drop=None).results[0]
    assert (from_tree.images, from_tree.top1, from_tree.topk) == (
        from_digits.images,
        from_digits.top1,
        from_digits.topk,
    )


def test_auto_fallback_meets_the_budget_that_eval_then_confirms(reference_exports, calibration_tree, tmp_path):
    """Clipping ranges at the 98th percentile costs ShuffleNet v2 accuracy (1.1 points; 0.3 at the 99th, whose
    calibration now holds samples out for the check); fallback keeps layers in float until
    half that cost fits."""
    directory, _ = reference_exports("shufflenet_v2_x0_5")
    fp32 = directory / "shufflenet_v2_x0_5.onnx"
    options = ["--calib", calibration_tree, "--calib-samples", CALIBRATION_SAMPLES, "--percentile", "98", "--no-cache"]
    clipped = tmp_path / "clipped" / "shufflenet_v2_x0_5.int8-cpu.onnx"
    assert invoke("quantize", fp32, *options, "--output", clipped).exit_code == 0
    plain_drop = next(
        r.drop
        for r in evaluate([clipped], "digits", reference=fp32, max_drop=None, threads=1).results
        if r.precision == "int8"
    )
    assert plain_drop > 0.5, (
        f"the 98th-percentile INT8 model was expected to lose accuracy, lost {plain_drop:.2f} points"
    )
    budget = round(plain_drop / 2, 2)
    output = tmp_path / "fallback" / "shufflenet_v2_x0_5.int8-cpu.onnx"
    result = invoke(
        "quantize",
        fp32,
        *options,
        "--auto-fallback",
        "--max-drop",
        budget,
        "--eval-data",
        "digits",
        "--output",
        output,
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["steps"][0]["float_layers"] == 0 and payload["steps"][0]["drop"] == pytest.approx(plain_drop)
    assert payload["kept_float"] and payload["drop"] <= budget
    confirmed = invoke("eval", output, "--data", "digits", "--reference", fp32, "--max-drop", budget, "--json")
    assert confirmed.exit_code == 0, confirmed.output
    int8 = next(r for r in json.loads(confirmed.stdout)["results"] if r["precision"] == "int8")
    assert int8["top1"] == pytest.approx(payload["int8_top1"]) and int8["drop"] <= budget


# Bad input ------------------------------------------------------------------------------------------


@pytest.fixture
def lenet_directory(reference_exports) -> Path:
    return reference_exports("lenet5")[0]


def _png_tree(root: Path, classes: int, per_class: int = 2) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(classes):
        (root / f"class{index}").mkdir(parents=True)
        for number in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / f"class{index}" / f"{number}.png")
    return root


def test_eval_bad_input_is_a_one_line_error(lenet_directory, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes(b"not an image")
    cases = {
        "no class folders": (["eval", lenet_directory, "--data", flat], "has no class folders"),
        "class count": (
            ["eval", lenet_directory, "--data", _png_tree(tmp_path / "three", 3)],
            "has 3 classes but lenet5.onnx outputs 10",
        ),
        "missing artifact": (["eval", tmp_path / "missing.onnx", "--data", "digits"], "does not exist"),
        "missing data": (["eval", lenet_directory, "--data", tmp_path / "nowhere"], "does not exist"),
        "no manifest": (
            ["eval", _copy(lenet_directory / "lenet5.onnx", tmp_path / "bare"), "--data", "digits"],
            "no manifest.json beside it",
        ),
        "not onnx": (["eval", lenet_directory / "manifest.json", "--data", "digits"], "is not an ONNX model"),
        "empty classes": (["eval", lenet_directory, "--data", _empty_classes(tmp_path / "empty")], "no images in them"),
    }
    for case, (args, message) in cases.items():
        result = invoke(*args)
        assert result.exit_code == 2, f"{case}: {result.output}"
        assert message in one_line_error(result), case


def test_unreadable_eval_images_are_skipped_and_counted(lenet_directory, tmp_path):
    tree = _png_tree(tmp_path / "ten", 10)
    (tree / "class3" / "broken.png").write_bytes(b"\x89PNG truncated")
    result = invoke("eval", lenet_directory / "lenet5.onnx", "--data", tree, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["skipped_images"] == 1 and payload["images"] == 20
    for path in tree.rglob("*.png"):
        path.write_bytes(b"garbage")
    unreadable = invoke("eval", lenet_directory / "lenet5.onnx", "--data", tree)
    assert unreadable.exit_code == 2 and "could be read" in one_line_error(unreadable)


def _copy(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    target = folder / source.name
    target.write_bytes(source.read_bytes())
    return target


def _empty_classes(root: Path) -> Path:
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    return root


def test_the_verdict_marks_every_failure_and_reads_as_a_distance():
    from edgecnn.cli.eval import _count
    from edgecnn.evaluate import ArtifactAccuracy, EvaluationReport

    def result(name: str, top1: float, drop: float) -> ArtifactAccuracy:
        return ArtifactAccuracy(
            name, "lenet5", "onnx-int8-cpu", "int8", 360, top1, 99.0, "fp32.onnx", drop, 99.0, "fail", 1.0
        )

    report = EvaluationReport(
        "digits", 360, 1, 5, -1.0, 0, [result("a.onnx", 90.56, -0.56), result("b.onnx", 89.0, 1.0)]
    )
    lines = report.verdict().splitlines()
    assert len(lines) == 2 and all(line.startswith("FAIL: ") for line in lines)
    assert "a.onnx: top-1 90.56% is 0.56 points above FP32 90.00%" in lines[0]
    assert "short of the required gain of 1 point" in lines[0]
    assert "b.onnx: top-1 89.00% is 1.00 point below FP32 90.00%" in lines[1]
    assert "-0.56" not in report.verdict()
    assert (_count(1, "class"), _count(10, "class"), _count(1, "image")) == ("1 class", "10 classes", "1 image")
