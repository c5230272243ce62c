"""FP8 (E4M3) Q/DQ for TensorRT: graph form, ONNX Runtime runs it, SQNR, manifest, check, profile, eval gate."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from edgecnn.calibration import quantize_export
from edgecnn.cli import main
from edgecnn.errors import UsageError
from edgecnn.export import export_model
from edgecnn.onnx_facts import graph_precision
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
