"""INT8: calibration data, Q/DQ form per target, the range cache, sensitivity, fallback, bad input, export --int8."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from PIL import Image

from edgecnn.calibration import (
    CalibrationWarning,
    Preprocessing,
    QuantizationWarning,
    load_calibration,
    quantize_onnx,
    target_for_device,
)
from edgecnn.calibration import quantize as quantize_module
from edgecnn.calibration.data import CalibrationSet
from edgecnn.calibration.fallback import auto_fallback
from edgecnn.cli import main
from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.export import export_model

SIZE = 64
PREP = Preprocessing.default((SIZE, SIZE), 3)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory) -> Path:
    """An export directory of mobilenet_v2 at 64x64 (depthwise convolutions, Clip, Add, Gemm)."""
    return export_model(
        "mobilenet_v2", output_dir=tmp_path_factory.mktemp("exports"), input_size=str(SIZE), check_samples=2
    ).directory


@pytest.fixture(scope="module")
def squeezenet(tmp_path_factory) -> Path:
    return export_model(
        "squeezenet1_1", output_dir=tmp_path_factory.mktemp("exports"), input_size=str(SIZE), check_samples=2
    ).directory


@pytest.fixture(scope="module")
def builtin8() -> CalibrationSet:
    return load_calibration("builtin", preprocessing=PREP, samples=8)


def fresh_copy(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / directory.name
    shutil.copytree(directory, target)
    return target


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def write_image(path: Path, mode: str = "RGB", size=(80, 60)) -> None:
    rng = np.random.default_rng(len(str(path)))
    channels = {"RGB": 3, "RGBA": 4, "L": 1}.get(mode, 3)
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, "RGB" if mode == "P" else mode)
    if mode == "P":
        image = image.convert("P")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


# Q/DQ form per target -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_qdq_form_per_target(target, mobilenet, builtin8, tmp_path):
    output = tmp_path / f"model.int8-{target}.onnx"
    result = quantize_onnx(mobilenet / "mobilenet_v2.onnx", output, calibration=builtin8, target=target)
    model = onnx.load(str(output))
    onnx.checker.check_model(model, full_check=True)
    values = initializers(model)
    nodes = model.graph.node
    quantize_zero_points = [values[n.input[2]] for n in nodes if n.op_type == "QuantizeLinear"]
    assert quantize_zero_points, "no QuantizeLinear nodes"
    conv_weight_dq = [
        n
        for n in nodes
        if n.op_type == "DequantizeLinear" and n.output[0] in {c.input[1] for c in nodes if c.op_type == "Conv"}
    ]
    assert len(conv_weight_dq) == sum(n.op_type == "Conv" for n in nodes)
    for node in conv_weight_dq:
        weight, scale = values[node.input[0]], values[node.input[1]]
        assert weight.dtype == np.int8
        assert scale.shape == (weight.shape[0],), "weights are per output channel"
        assert next(a.i for a in node.attribute if a.name == "axis") == 0
        assert not values[node.input[2]].any(), "symmetric weights have zero point 0"
    if target == "tensorrt":
        assert all(zp.dtype == np.int8 and not zp.any() for zp in quantize_zero_points)
        assert not any(v.dtype == np.int32 for v in values.values()), "TensorRT takes float biases, not INT32 DQ"
        assert result.check["onnxruntime_optimization"] == "basic"
    else:
        assert all(zp.dtype == np.uint8 for zp in quantize_zero_points)
        assert any(v.dtype == np.int32 for v in values.values()), "ORT CPU fuses QLinearConv with int32 biases"
        assert set(result.weight_range_sqnr_db) == {"8-bit", "7-bit"}, "the cpu form measures both weight ranges"
        assert result.check["output_sqnr_db"] == max(result.weight_range_sqnr_db.values())
    assert result.check["finite"] and result.check["output_sqnr_db"] > 10
    entry = result.manifest_entry()
    assert entry["format"] == f"onnx-int8-{target}"
    assert entry["quantization"]["calibration"]["samples"] == 8


def test_int8_file_is_at_most_27_percent_of_fp32_for_a_conv_net(tmp_path):
    directory = export_model("resnet18", output_dir=tmp_path, input_size=str(SIZE), check_samples=1).directory
    with pytest.warns(CalibrationWarning, match="meaningless"):
        result = quantize_onnx(
            directory / "resnet18.onnx", tmp_path / "resnet18.int8.onnx", calibration="synthetic", samples=2
        )
    assert result.size_ratio <= 0.27, result.size_ratio


def test_device_chooses_the_target():
    assert target_for_device(None)[0] == "cpu"
    assert target_for_device("jetson-orin-nano-8gb")[0] == "tensorrt"
    assert target_for_device("raspberry-pi-5")[0] == "cpu"
    assert quantize_module.cpu_session_optimization("onnx-int8-tensorrt") == "basic"


# The range cache -----------------------------------------------------------------------------------


def test_cache_is_reused_and_refused_on_key_mismatch(squeezenet, builtin8, tmp_path, monkeypatch):
    fp32 = squeezenet / "squeezenet1_1.onnx"
    cache = tmp_path / "ranges.json"
    first = quantize_onnx(fp32, tmp_path / "a.onnx", calibration=builtin8, cache=cache)
    assert not first.cache_hit and cache.is_file()
    stored = json.loads(cache.read_text())
    assert stored["key"]["calibration_sha256"] == builtin8.sha256

    def no_recalibration(*args, **kwargs):
        raise AssertionError("recalibrated although the cache matches")

    monkeypatch.setattr(quantize_module, "compute_ranges", no_recalibration)
    second = quantize_onnx(fp32, tmp_path / "b.onnx", calibration=builtin8, cache=cache, target="tensorrt")
    assert second.cache_hit
    with pytest.raises(UsageError, match="does not match this run.*calibration set"):
        quantize_onnx(fp32, tmp_path / "c.onnx", calibration=builtin8.head(4), cache=cache)
    with pytest.raises(UsageError, match="does not match this run.*method"):
        quantize_onnx(fp32, tmp_path / "c.onnx", calibration=builtin8, cache=cache, method="minmax")
    assert not (tmp_path / "c.onnx").exists()


# Calibration data and bad input --------------------------------------------------------------------


def test_builtin_set_says_which_set_and_how_many(builtin8):
    assert len(builtin8) == 8 and builtin8.images.shape == (8, SIZE, SIZE, 3)
    assert "built-in set" in builtin8.describe() and "8 samples" in builtin8.describe()
    assert "china.jpg" in builtin8.description
    inputs = builtin8.batch([0, 1])
    assert inputs.shape == (2, 3, SIZE, SIZE) and inputs.dtype == np.float32
    assert load_calibration("builtin", preprocessing=PREP, samples=8).sha256 == builtin8.sha256
    assert load_calibration("builtin", preprocessing=PREP, samples=8, seed=1).sha256 != builtin8.sha256


def test_synthetic_warns():
    with pytest.warns(CalibrationWarning, match="meaningless for accuracy"):
        calibration = load_calibration("synthetic", preprocessing=PREP, samples=3)
    assert calibration.batch([0, 1, 2]).shape == (3, 3, SIZE, SIZE)


def test_image_folder_modes_and_corrupt_files(tmp_path):
    for index, mode in enumerate(["RGB", "RGBA", "L", "P"]):
        write_image(tmp_path / "cats" / f"{index}.png", mode)
    write_image(tmp_path / "dogs" / "a.jpg")
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "dogs" / "notes.txt").write_text("ignored")
    with pytest.warns(CalibrationWarning) as caught:
        calibration = load_calibration(tmp_path, preprocessing=PREP, samples=10)
    assert len(calibration) == 5 and calibration.skipped == 1
    assert any("skipped 1 unreadable" in str(w.message) for w in caught)
    assert any("fewer than the 10 asked" in str(w.message) for w in caught)
    assert "ImageFolder tree, 2 class folders" in calibration.description
    with pytest.warns(CalibrationWarning, match="skipped"):
        grayscale = load_calibration(tmp_path, preprocessing=Preprocessing.default((SIZE, SIZE), 1), samples=5)
    assert grayscale.batch([0]).shape == (1, 1, SIZE, SIZE)


def test_flat_folder_sample_is_seeded(tmp_path):
    for index in range(6):
        write_image(tmp_path / f"{index}.jpg")
    first = load_calibration(tmp_path, preprocessing=PREP, samples=3, seed=5)
    again = load_calibration(tmp_path, preprocessing=PREP, samples=3, seed=5)
    assert first.sha256 == again.sha256 and "flat folder" in first.description


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: d, "has no JPG/JPEG/PNG"),
        (lambda d: _write(d / "x.txt", b"x").parent, "other files"),
        (lambda d: _write(d / "bad.png", b"garbage").parent, "none of the 1 images"),
        (lambda d: _write(d / "x.csv", b"1,2"), "is a .csv file"),
    ],
    ids=["missing-dir", "empty-dir", "no-images", "only-corrupt", "other-file"],
)
def test_bad_calibration_sources_are_one_line_errors(setup, message, tmp_path):
    source = setup(tmp_path)
    with pytest.raises(UsageError, match=message) as error:
        load_calibration(source, preprocessing=PREP, samples=4)
    assert "\n" not in str(error.value)


def test_arrays(tmp_path):
    inputs = np.random.default_rng(0).standard_normal((5, 3, SIZE, SIZE)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    calibration = load_calibration(tmp_path / "inputs.npy", preprocessing=PREP, samples=5)
    np.testing.assert_array_equal(calibration.batch(range(5)), inputs)
    images = np.random.default_rng(0).integers(0, 255, (4, 90, 70, 3), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", images=images, labels=np.arange(4))
    calibration = load_calibration(tmp_path / "images.npz", preprocessing=PREP, samples=4)
    assert calibration.images.shape == (4, SIZE, SIZE, 3)


@pytest.mark.parametrize(
    "arrays,message",
    [
        (
            {"x": np.zeros((4, 1, SIZE, SIZE), np.float32)},
            r"shape \(4, 1, 64, 64\).*expected float32 model inputs of shape \(N, 3, 64, 64\)",
        ),
        ({"x": np.zeros((4, 3, 32, 32), np.float32)}, r"shape \(4, 3, 32, 32\)"),
        ({"x": np.zeros((4, 8, 8, 2), np.uint8)}, r"shape \(4, 8, 8, 2\)"),
        ({"x": np.zeros((4, 3, SIZE, SIZE), np.int64)}, "dtype int64"),
        ({"a": np.zeros(3), "b": np.zeros(3)}, "several arrays"),
        ({"x": np.zeros((0, 3, SIZE, SIZE), np.float32)}, "no samples"),
    ],
    ids=["channels", "size", "uint8-channels", "dtype", "ambiguous", "empty"],
)
def test_wrong_arrays_are_one_line_errors(arrays, message, tmp_path):
    np.savez(tmp_path / "calib.npz", **arrays)
    with pytest.raises(UsageError, match=message):
        load_calibration(tmp_path / "calib.npz", preprocessing=PREP, samples=4)


def test_images_cannot_feed_a_four_channel_model(tmp_path):
    write_image(tmp_path / "a.png")
    with pytest.raises(UsageError, match="4-channel input"):
        load_calibration(tmp_path, preprocessing=Preprocessing.default((SIZE, SIZE), 4), samples=1)


def test_model_and_calibration_shapes_must_agree(squeezenet, tmp_path):
    other = load_calibration("builtin", preprocessing=Preprocessing.default((32, 32), 3), samples=2)
    with pytest.raises(UsageError, match="takes input"):
        quantize_onnx(squeezenet / "squeezenet1_1.onnx", tmp_path / "x.onnx", calibration=other)
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    with pytest.raises(UsageError, match="not a readable ONNX model"):
        quantize_onnx(tmp_path / "broken.onnx", tmp_path / "y.onnx", calibration="synthetic")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()


def test_cli_bad_input_is_one_line_and_writes_nothing(squeezenet, tmp_path):
    directory = fresh_copy(squeezenet, tmp_path)
    before = sorted(p.name for p in directory.iterdir())
    for args in (["--calib", tmp_path / "nowhere"], ["--exclude", "no-such-node*"], ["--auto-fallback"]):
        result = invoke("quantize", directory, *args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert sorted(p.name for p in directory.iterdir()) == before
    assert "onnx-int8" not in (directory / "manifest.json").read_text()


# Sensitivity, exclusion and fallback ---------------------------------------------------------------


def test_exclude_keeps_nodes_in_float(mobilenet, builtin8, tmp_path):
    result = quantize_onnx(
        mobilenet / "mobilenet_v2.onnx", tmp_path / "m.onnx", calibration=builtin8, exclude=["*/classifier/*Gemm"]
    )
    assert result.excluded_nodes == ["/classifier/classifier.1/Gemm"]
    model = onnx.load(str(tmp_path / "m.onnx"))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert initializers(model)[gemm.input[1]].dtype == np.float32, "the excluded Gemm keeps its float weight"
    assert result.manifest_entry()["quantization"]["excluded_nodes"] == ["/classifier/classifier.1/Gemm"]


def test_per_tensor_on_a_depthwise_network_warns(mobilenet, builtin8, tmp_path):
    with pytest.warns(QuantizationWarning, match="depthwise"):
        result = quantize_onnx(
            mobilenet / "mobilenet_v2.onnx", tmp_path / "m.onnx", calibration=builtin8.head(4), per_channel=False
        )
    assert not result.manifest_entry()["quantization"]["per_channel"]


def test_analyze_lists_layers_worst_first(squeezenet, tmp_path):
    directory = fresh_copy(squeezenet, tmp_path)
    result = invoke("quantize", directory, "--analyze", "--calib-samples", 4, "--analyze-samples", 2, "--json")
    assert result.exit_code == 0, result.output
    layers = json.loads(result.output)["layers"]
    ranked = [layer["sqnr_db"] for layer in layers if layer["sqnr_db"] is not None]
    assert len(ranked) > 10 and ranked == sorted(ranked)
    assert {layer["op_type"] for layer in layers} >= {"Conv"}
    assert not list(directory.glob("*.int8-*.onnx")), "--analyze writes no model"
    table = invoke("quantize", directory, "--analyze", "--calib-samples", 4, "--analyze-samples", 2, "--top", 3)
    assert table.exit_code == 0 and "worst first" in table.output


def test_auto_fallback_keeps_the_fewest_worst_layers_in_float(squeezenet, builtin8, tmp_path, monkeypatch):
    """A stand-in evaluator: INT8 loses one point for each of the three worst-ranked layers left quantized."""
    from edgecnn.calibration import fallback

    fp32 = squeezenet / "squeezenet1_1.onnx"
    ranked: list[str] = []
    excluded_by_path: dict[Path, list[str]] = {}
    original_analyze, original_quantize = fallback.analyze, fallback.quantize_onnx

    def analyze(*args, **kwargs):
        rows = original_analyze(*args, **kwargs)
        ranked.extend(row.node for row in rows if row.sqnr_db is not None)
        return rows

    def quantize(fp32_path, output_path, **kwargs):
        result = original_quantize(fp32_path, output_path, **kwargs)
        excluded_by_path[Path(output_path)] = result.excluded_nodes
        return result

    def evaluate(path: Path) -> float:
        if path == fp32:
            return 90.0
        if not ranked:
            return 85.0
        return 90.0 - sum(1.0 for name in ranked[:3] if name not in excluded_by_path[path])

    monkeypatch.setattr(fallback, "analyze", analyze)
    monkeypatch.setattr(fallback, "quantize_onnx", quantize)
    outcome = auto_fallback(fp32, tmp_path / "s.int8-cpu.onnx", evaluate=evaluate, max_drop=1.0, calibration=builtin8)
    assert outcome.kept_float == ranked[:2]
    assert outcome.drop <= 1.0 and outcome.steps[0].float_layers == 0 and not outcome.steps[0].met
    assert outcome.result.excluded_nodes == ranked[:2]
    assert (tmp_path / "s.int8-cpu.onnx").is_file()
    with pytest.raises(EdgecnnError, match="auto-fallback"):
        auto_fallback(
            fp32,
            tmp_path / "t.onnx",
            evaluate=lambda path: 90.0 if path == fp32 else 0.0,
            max_drop=1.0,
            calibration=builtin8,
        )
    assert not (tmp_path / "t.onnx").exists()


# The commands --------------------------------------------------------------------------------------


def test_quantize_command_writes_the_artifact_and_the_manifest(squeezenet, tmp_path):
    directory = fresh_copy(squeezenet, tmp_path)
    first = invoke("quantize", directory, "--calib-samples", 4, "--json")
    assert first.exit_code == 0, first.output
    payload = json.loads(first.output)
    assert payload["target"] == "cpu" and "default" in payload["target_reason"] and not payload["cache_hit"]
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["format"] == "onnx-int8-cpu")
    assert entry["file"] == "squeezenet1_1.int8-cpu.onnx" and (directory / entry["file"]).is_file()
    assert entry["quantization"]["calibration"]["source"] == "builtin"
    again = invoke("quantize", directory, "--calib-samples", 4, "--target", "tensorrt", "--json")
    assert json.loads(again.output)["cache_hit"], "the second target reuses the first one's ranges"
    formats = [a["format"] for a in json.loads((directory / "manifest.json").read_text())["artifacts"]]
    assert formats == ["onnx-fp32", "onnx-int8-cpu", "onnx-int8-tensorrt"]


def test_export_int8_says_what_it_used(tmp_path):
    result = invoke(
        "export",
        "squeezenet",
        "--int8",
        "--input-size",
        SIZE,
        "--calib-samples",
        6,
        "--device",
        "jetson-orin-nano-8gb",
        "-o",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert "built-in set" in result.output and "6 samples" in result.output
    assert "target tensorrt (from --device jetson-orin-nano-8gb" in result.output
    manifest = json.loads((tmp_path / "squeezenet1_1" / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["format"] == "onnx-int8-tensorrt")
    assert (tmp_path / "squeezenet1_1" / entry["file"]).is_file()
    assert entry["quantization"]["calibration"]["samples"] == 6


def test_export_int8_failure_leaves_nothing(tmp_path):
    result = invoke(
        "export",
        "squeezenet1_1",
        "--int8",
        "--input-size",
        SIZE,
        "--calib",
        tmp_path / "missing",
        "-o",
        tmp_path / "out",
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    leftovers = list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert leftovers == [], "a failed INT8 step leaves no directory, staging or partial file"
    options_without_int8 = invoke("export", "squeezenet1_1", "--calib-method", "entropy", "-o", tmp_path / "out")
    assert options_without_int8.exit_code == 2 and "add --int8" in options_without_int8.output


def test_the_weight_range_note_says_what_to_make_of_it():
    from types import SimpleNamespace

    from edgecnn.cli.quantize import weight_range_note

    seven = weight_range_note(SimpleNamespace(weight_bits=7, weight_range_sqnr_db={"8-bit": 14.2, "7-bit": 27.0}))
    assert "8-bit 14.2 dB, 7-bit 27.0 dB" in seven and "higher is closer" in seven
    assert "nothing needs doing" in seven and "VNNI" in seven
    eight = weight_range_note(SimpleNamespace(weight_bits=8, weight_range_sqnr_db={"8-bit": 30.1, "7-bit": 28.0}))
    assert "Nothing needs doing" in eight and "VNNI" not in eight
