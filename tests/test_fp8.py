"""FP8 (E4M3) Q/DQ for TensorRT: graph form, ONNX Runtime runs it, SQNR, manifest, check, profile, eval gate;
FP8 is a preset of the one quantizer (import step, held-out check, written-graph counts, size)."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from edgecnn.calibration import Preprocessing, preset_for, quantize_export, quantize_onnx
from edgecnn.cli import main
from edgecnn.errors import UsageError
from edgecnn.export import export_model
from edgecnn.onnx_facts import graph_precision
from edgecnn.onnx_import import model_opset
from edgecnn.runtime import cpu_session_optimization, create_session
from edgecnn.testing import REFERENCE_MODELS, assert_accuracy_drop, reference_weights_path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def lenet_fp8(tmp_path_factory):
    """The digits LeNet-5 exported and quantized to FP8 on the digits calibration split."""
    from edgecnn.datasets import write_digits_split

    root = tmp_path_factory.mktemp("fp8")
    reference = REFERENCE_MODELS["lenet5"]
    export = export_model(
        "lenet5",
        output_dir=root,
        weights=reference_weights_path("lenet5"),
        check_samples=2,
        **reference.export_options(),
    )
    calibration = write_digits_split("calibration", root / "calibration")
    result = quantize_export(export.directory, precision="fp8", target="tensorrt", calibration=calibration, samples=180)
    return export.directory, result


def test_fp8_graph_form(lenet_fp8):
    _, result = lenet_fp8
    model = onnx.load(str(result.path))
    assert result.path.name == "lenet5.fp8-tensorrt.onnx"
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    initializers = {init.name: init for init in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zero_point = initializers[node.input[2]]
        assert zero_point.data_type == onnx.TensorProto.FLOAT8E4M3FN
        assert not np.asarray(numpy_helper.to_array(zero_point), dtype=np.float32).any()
    weight_dqs = [n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in initializers]
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    assert len(weight_dqs) >= 3
    for node in weight_dqs:
        weights = initializers[node.input[0]]
        assert weights.data_type == onnx.TensorProto.FLOAT8E4M3FN
        scale = numpy_helper.to_array(initializers[node.input[1]])
        if node.output[0] in conv_weights:
            assert scale.shape == (weights.dims[0],), "per-output-channel weight scales"
    assert graph_precision(model) == "fp8"
    assert cpu_session_optimization(result.path) == "basic"


def test_fp8_runs_in_onnxruntime_close_to_fp32(lenet_fp8):
    directory, result = lenet_fp8
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((1, 1, 32, 32)).astype(np.float32)
    fp32 = create_session(directory / "lenet5.onnx")
    fp8 = create_session(result.path)
    name = fp32.get_inputs()[0].name
    reference, quantized = fp32.run(None, {name: batch})[0], fp8.run(None, {name: batch})[0]
    sqnr = 10 * np.log10(np.sum(reference**2) / np.sum((reference - quantized) ** 2))
    assert 15 < sqnr < 80, "FP8 is lossy but close: an output equal to FP32 means the Q/DQ did nothing"
    assert result.check["output_sqnr_db"] > 20


def test_fp8_manifest_entry(lenet_fp8):
    directory, result = lenet_fp8
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["format"] == "onnx-fp8-tensorrt")
    assert entry["file"] == result.path.name
    assert entry["quantization"]["precision"] == "fp8"
    assert entry["quantization"]["method"] == "minmax"
    assert entry["quantization"]["scale"] == "amax / 448"
    assert "per-channel" in entry["quantization"]["weights"]


def test_fp8_eval_gate(lenet_fp8):
    _, result = lenet_fp8
    report = assert_accuracy_drop(result.path, data="digits", max_drop=0.5)
    assert report.results[-1].format == "onnx-fp8-tensorrt"


def test_check_fp8_on_thor_and_orin(lenet_fp8):
    directory, _ = lenet_fp8
    thor = invoke("check", directory, "--device", "jetson-agx-thor-t5000", "--precision", "fp8")
    assert thor.exit_code == 0, thor.output
    assert "FP8 tensor cores" in thor.output and "blocked" not in thor.output
    orin = invoke("check", directory, "--device", "jetson-agx-orin-64gb", "--precision", "fp8")
    assert "no FP8 tensor cores" in orin.output and "INT8" in orin.output


def test_profile_fp8_on_thor_not_orin():
    from edgecnn.devices import get_device
    from edgecnn.profile.estimate import _peak_flops

    thor = get_device("jetson-agx-thor-t5000")
    assert _peak_flops(thor, "fp8") == pytest.approx(thor.peak("fp8") * 1e9)
    result = invoke("profile", "lenet5", "--device", thor.id, "--precision", "fp8", "--json")
    assert result.exit_code == 0, result.output
    with pytest.raises(UsageError, match="no FP8"):
        _peak_flops(get_device("jetson-agx-orin-64gb"), "fp8")


def test_quantize_cli_fp8_refuses_int8_only_options(lenet_fp8):
    directory, _ = lenet_fp8
    result = invoke("quantize", directory, "--precision", "fp8", "--target", "cpu")
    assert result.exit_code != 0 and "INT8 only" in result.output


def _weight_dequantizers(model: onnx.ModelProto) -> dict[str, int]:
    """Counted here, apart from edgecnn's graph facts: the stored element type of every Conv/Gemm weight that
    a DequantizeLinear feeds from an initializer."""
    initializers = {t.name: t for t in model.graph.initializer}
    dequantized = {
        node.output[0]: initializers[node.input[0]].data_type
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers
    }
    weights = [node.input[1] for node in model.graph.node if node.op_type in ("Conv", "Gemm")]
    return dict(Counter(onnx.TensorProto.DataType.Name(dequantized[w]).lower() for w in weights if w in dequantized))


def test_fp8_report_counts_are_the_written_files(lenet_fp8):
    """The counts the result, the manifest and the CLI report are those of the written file (they said 0)."""
    directory, result = lenet_fp8
    written = onnx.load(str(result.path))
    ops = Counter(node.op_type for node in written.graph.node)
    fp32 = onnx.load(str(directory / "lenet5.onnx"))
    layers = sum(node.op_type in ("Conv", "Gemm") for node in fp32.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    assert result.graph["quantize_nodes"] == ops["QuantizeLinear"]
    assert result.graph["dequantize_nodes"] == ops["DequantizeLinear"]
    assert _weight_dequantizers(written) == {"float8e4m3fn": layers} == result.graph["quantized_weight_types"]
    assert result.graph["quantized_weights"] == result.graph["per_channel_weights"] == layers
    assert result.graph["float_weights"] == 0
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["format"] == "onnx-fp8-tensorrt")
    assert entry["quantization"]["graph"] == result.graph
    assert entry["quantization"]["weights"] == f"{layers} float8e4m3fn symmetric per-channel"
    calibration = directory.parent / "calibration"
    cli = invoke("quantize", directory, "--precision", "fp8", "--calib", calibration, "--calib-samples", 180)
    assert cli.exit_code == 0, cli.output
    text = " ".join(cli.output.split())
    assert f"{ops['QuantizeLinear']} QuantizeLinear, {ops['DequantizeLinear']} DequantizeLinear" in text


def test_fp8_size_under_the_precision_neutral_name(lenet_fp8):
    directory, result = lenet_fp8
    size = result.path.stat().st_size
    assert result.quantized_bytes == size and not hasattr(result, "int8_bytes")
    assert result.size_ratio == pytest.approx(size / (directory / "lenet5.onnx").stat().st_size)
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["format"] == "onnx-fp8-tensorrt")
    assert entry["size_bytes"] == size
    assert entry["quantization"]["size_vs_fp32"] == round(size / (directory / "lenet5.onnx").stat().st_size, 4)


def test_fp8_check_runs_on_held_out_samples_as_int8s_does(lenet_fp8, tmp_path, monkeypatch):
    """40 distinct model inputs: 24 calibrate, the last 16 are the check's and none of them calibrates
    (the FP8 check once ran on the samples it had calibrated on); INT8 calls the check the same way."""
    from edgecnn.calibration import quantize as quantize_module

    directory, _ = lenet_fp8
    inputs = np.random.default_rng(3).standard_normal((40, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    ranges_calls, check_calls = [], []
    compute_ranges, check = quantize_module.compute_ranges, quantize_module._check

    def ranges_spy(model_path, calibration, **options):
        ranges_calls.append(calibration)
        return compute_ranges(model_path, calibration, **options)

    def check_spy(*args, **options):
        check_calls.append((args, [model_opset(onnx.load(str(path))) for path in args[:2]]))
        return check(*args, **options)

    monkeypatch.setattr(quantize_module, "compute_ranges", ranges_spy)
    monkeypatch.setattr(quantize_module, "_check", check_spy)
    results = {
        precision: quantize_onnx(
            directory / "lenet5.onnx",
            tmp_path / f"lenet5.{precision}.onnx",
            calibration=tmp_path / "inputs.npy",
            precision=precision,
            target="tensorrt",
            samples=24,
        )
        for precision in ("fp8", "int8")
    }
    assert len(ranges_calls) == len(check_calls) == 2
    (fp8_args, fp8_opsets), (int8_args, int8_opsets) = check_calls
    calibrated = ranges_calls[0].batch(range(len(ranges_calls[0])))
    checked = fp8_args[2].batch(range(len(fp8_args[2])))
    assert len(calibrated) == 24 and len(checked) == 16
    np.testing.assert_array_equal(checked, inputs[24:])
    seen = {sample.tobytes() for sample in calibrated}
    assert not any(sample.tobytes() in seen for sample in checked)
    fp8 = results["fp8"]
    assert fp8.check["data"] == "held-out calibration samples" and fp8.check["samples"] == 16
    assert fp8.calibration["held_out_for_check"] == 16 and fp8.calibration["samples"] == 24
    assert fp8_args[2].sha256 == int8_args[2].sha256 and ranges_calls[0].sha256 == ranges_calls[1].sha256
    assert fp8_args[3:] == int8_args[3:] == (["input"], 1, "basic", True, True)
    assert fp8_opsets == [19, 19], "FP8 is checked against the imported (opset 19) FP32 graph it was made from"
    assert int8_opsets[0] == int8_opsets[1] < 19
    assert results["int8"].check["samples"] == fp8.check["samples"]


def test_outside_model_quantizes_to_fp8_through_the_import_step(tmp_path):
    """A third-party-style file (opset 13, every weight a Constant node, dynamic batch, 1.3 M parameters): the
    import step makes the weights initializers, so they are stored in FP8 and the file is small; the graph is
    upgraded to opset 19 there."""
    from corpus import BUILDERS

    path, info = BUILDERS["resnet_constants_opset13"](tmp_path)
    source = onnx.load(str(path))
    layers = sum(node.op_type in ("Conv", "Gemm") for node in source.graph.node)
    assert not source.graph.initializer and info.parameters > 1_000_000
    channels, height, width = next(iter(info.inputs.values()))[1:]
    result = quantize_onnx(
        path,
        tmp_path / "outside.fp8-tensorrt.onnx",
        precision="fp8",
        target="tensorrt",
        samples=16,
        input_shapes=info.input_shapes,
        preprocessing=Preprocessing.declare((height, width), channels, mean=(0.5,) * channels, std=(0.25,) * channels),
        fallback=False,
    )
    written = onnx.load(str(result.path))
    assert result.calibration["import"]["source_opset"] == 13 and result.calibration["import"]["opset"] == 19
    assert model_opset(written) == 19
    assert _weight_dequantizers(written) == {"float8e4m3fn": layers} == result.graph["quantized_weight_types"]
    assert result.graph["float_weights"] == 0
    assert result.size_ratio < 0.35, "FP8 weights take one byte: the file is about a quarter of FP32"
    assert result.check["data"] == "held-out calibration samples"
    assert all(o["sqnr_db"] > 15 for o in result.check["outputs"].values()), result.check
    assert result.plan is not None and result.plan.describe()


def test_fp8_and_int8_caches_and_files_stay_apart(lenet_fp8, tmp_path):
    """INT8 and FP8 calibrated with one method in one export keep separate auto caches (FP8's ranges are of
    the opset-19 graph); an INT8 file is not silently replaced by FP8."""
    directory, _ = lenet_fp8
    copy = shutil.copytree(directory, tmp_path / "lenet5")
    calibration = directory.parent / "calibration"
    int8 = quantize_export(copy, target="tensorrt", method="minmax", calibration=calibration, samples=40)
    fp8 = quantize_export(copy, precision="fp8", target="tensorrt", calibration=calibration, samples=40, force=True)
    assert fp8.method == "minmax" and not fp8.cache_hit
    assert int8.cache_path != fp8.cache_path and int8.cache_path.exists() and fp8.cache_path.exists()
    assert ".calib-fp8-minmax-" in fp8.cache_path.name
    with pytest.raises(UsageError, match="precision int8 there, fp8 now"):
        quantize_export(copy, precision="fp8", target="tensorrt", output=int8.path, calibration=calibration, samples=40)


def test_fp8_preset_is_tensorrts_only():
    assert preset_for("fp8", "tensorrt").format_key == "onnx-fp8-tensorrt"
    with pytest.raises(UsageError, match="unknown FP8 target 'cpu': choose tensorrt"):
        preset_for("fp8", "cpu")
    with pytest.raises(UsageError, match="unknown quantized precision 'fp16'"):
        quantize_onnx("missing.onnx", "out.onnx", precision="fp16")
