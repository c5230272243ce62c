"""`edgecnn profile`: budgets, devices side by side, the recommendation, measurement, plots and bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgecnn.cli import main
from edgecnn.devices import resolve_devices
from edgecnn.errors import UsageError
from edgecnn.options import parse_batches, parse_input_shape, parse_memory_size
from edgecnn.precisions import parse_precisions

MB = 2**20


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, exit_code=2):
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("512MB", 512 * MB),
        ("10MB", 10 * MB),
        ("1.5GB", int(1.5 * 2**30)),
        ("256 KiB", 256 * 2**10),
        ("2g", 2 * 2**30),
        ("4096B", 4096),
        (4096, 4096),
    ],
)
def test_memory_sizes(text, expected):
    assert parse_memory_size(text) == expected


@pytest.mark.parametrize("text", ["12XB", "MB", "-5MB", "0MB", "1.2.3GB"])
def test_bad_memory_sizes(text):
    with pytest.raises(UsageError):
        parse_memory_size(text)


def test_a_number_without_a_unit_is_refused_naming_the_units():
    with pytest.raises(UsageError, match=r"'10' has no unit: add KB, MB or GB \(for example 10MB\), or B for bytes"):
        parse_memory_size("10")


def test_option_parsers():
    assert parse_batches("1,8") == [1, 8]
    assert parse_precisions("int8,fp16") == ["int8", "fp16"]
    assert parse_input_shape("1x3x224x224") == {"*": [1, 3, 224, 224]}
    assert parse_input_shape("img=Nx3x64x64") == {"img": [0, 3, 64, 64]}
    with pytest.raises(UsageError):
        parse_input_shape("1x3xbig")


def test_budget_typo_is_a_one_line_error():
    line = one_line_error(invoke("profile", "squeezenet1_1", "--memory-budget", "12XB"))
    assert "12XB" in line and "MB" in line


def test_batch_zero_is_a_one_line_error():
    assert "at least 1" in one_line_error(invoke("profile", "squeezenet1_1", "--batch", "0"))


def test_unknown_precision_is_a_one_line_error():
    close = one_line_error(invoke("profile", "squeezenet1_1", "--precision", "fp4"))
    assert "unknown precision 'fp4'" in close and "did you mean fp8" in close
    far = one_line_error(invoke("profile", "squeezenet1_1", "--precision", "bf19"))
    assert "fp8" in far and "fp16" in far


def test_unknown_device_lists_close_matches():
    line = one_line_error(invoke("profile", "squeezenet1_1", "--device", "jetson-orin-nano-8g"))
    assert "did you mean" in line and "jetson-orin-nano-8gb" in line


def test_corrupt_and_non_onnx_files_are_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07\x12\x04garbage-that-is-not-a-model" * 10)
    text = tmp_path / "notes.onnx"
    text.write_text("this is not an ONNX model\n")
    for path in (corrupt, text):
        assert "not a readable ONNX model" in one_line_error(invoke("profile", path))
    assert "does not exist" in one_line_error(invoke("profile", tmp_path / "missing.onnx"))


def _dynamic_model(path):
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["img", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])],
        "dynamic",
        [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_dynamic_dims_need_input_shape(tmp_path):
    path = _dynamic_model(tmp_path / "dynamic.onnx")
    assert "--input-shape" in one_line_error(invoke("profile", path))
    result = invoke("profile", path, "--input-shape", "1x3x32x32", "--batch", "1,2", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [row["batch"] for row in rows] == [1, 2]
    assert rows[0]["precision"] == "fp32" and rows[0]["basis"] == "graph"
    assert rows[1]["macs"] == 2 * rows[0]["macs"] == 2 * 32 * 32 * 4 * 27


def test_unknown_op_without_shapes_is_a_one_line_error(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["h"], domain="vendor"), helper.make_node("Relu", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "custom.onnx"
    onnx.save_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("vendor", 1)]), path
    )
    assert "vendor.Mystery" in one_line_error(invoke("profile", path))


def test_ten_megabytes_shows_which_networks_fit_at_int8():
    result = invoke(
        "profile",
        "squeezenet1_1",
        "mobilenet_v2",
        "resnet50",
        "--precision",
        "int8",
        "--memory-budget",
        "10MB",
        "--device",
        "jetson-nano",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    fits = {row["model"]: row["devices"][0] for row in report["rows"]}
    assert fits["squeezenet1_1"]["fits"] and fits["mobilenet_v2"]["fits"]
    assert not fits["resnet50"]["fits"] and fits["resnet50"]["headroom_bytes"] < 0
    assert all(fit["budget_bytes"] == 10 * MB for fit in fits.values())
    picks = report["recommendations"][0]["picks"]
    assert [pick["model"] for pick in picks] == ["mobilenet_v2", "squeezenet1_1"]
    table = invoke(
        "profile",
        "squeezenet1_1",
        "resnet50",
        "--precision",
        "int8",
        "--memory-budget",
        "10MB",
        "--device",
        "jetson-nano",
    )
    assert table.exit_code == 0, table.output
    assert "Best on jetson-nano" in table.output and "squeezenet1_1 int8" in table.output


def test_every_jetson_side_by_side_with_assumptions_in_json():
    jetsons = [device.id for device in resolve_devices("jetson")]
    result = invoke("profile", "squeezenet1_1", "--device", "jetson", "--precision", "fp16", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["devices"] == jetsons
    row = report["rows"][0]
    assert [fit["device"] for fit in row["devices"]] == jetsons
    nano, orin = row["devices"][0], row["devices"][-1]
    assert nano["estimated_ms"] > orin["estimated_ms"] > 0
    assumptions = report["assumptions"]
    assert {"formula", "execution_classes", "devices", "label"} <= set(assumptions)
    assert "estimated" in assumptions["label"] and "estimated" in report["estimated_label"]
    assert "FLOPs = 2 x MACs" in report["convention"]
    for _, klass in assumptions["execution_classes"].items():
        assert klass["source"] and klass["compute_efficiency"]["depthwise"] < klass["compute_efficiency"]["conv"]
    table = invoke("profile", "squeezenet1_1", "--device", "jetson", "--precision", "fp16")
    assert table.exit_code == 0, table.output
    assert "orin-nano-8gb" in table.output and "agx-orin-64gb" in table.output


def test_tags_batches_and_csv():
    result = invoke(
        "profile", "--tag", "efficient", "--device", "raspberry-pi-5", "--precision", "fp32", "--batch", "1,4", "--csv"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("model,origin,precision,basis,batch")
    models = {line.split(",")[0] for line in lines[1:]}
    assert {"mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x1_0"} <= models and "vgg16" not in models
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    by_batch = {(r["model"], int(r["batch"])): r for r in rows}
    one, four = by_batch[("mobilenet_v2", 1)], by_batch[("mobilenet_v2", 4)]
    assert int(four["peak_activation_bytes"]) == 4 * int(one["peak_activation_bytes"])
    assert int(four["weight_bytes"]) == int(one["weight_bytes"])


def test_measure_and_layers_on_the_host():
    result = invoke("profile", "lenet5", "--precision", "fp32", "--measure", "--layers", "--batch", "1,2", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    for row in rows:
        measured = row["measured"]
        assert 0 < measured["p50_ms"] <= measured["p90_ms"] <= measured["p99_ms"]
        assert measured["runs"] >= 10 and measured["throughput_per_s"] > 0
        assert "measured" in measured["label"]
        convs = [layer for layer in row["layers"] if layer["op_type"] == "Conv"]
        assert convs and all(layer["measured_ms"] is not None and layer["mac_share"] > 0 for layer in convs)
        shares = [layer["time_share"] for layer in row["layers"] if layer.get("time_share") is not None]
        assert sum(shares) == pytest.approx(100.0, abs=0.5)


def test_host_fp16_measurement_says_why_it_is_slow():
    result = invoke("profile", "lenet5", "--precision", "fp16", "--measure")
    assert result.exit_code == 0, result.output
    assert "Host FP16 is no speed-up on a CPU" in result.output and "OperatorKernels.md" in result.output


def test_quantizing_for_timing_leaves_no_ort_warnings_behind(tmp_path):
    """In a fresh process (pytest installs its own log handlers): ORT's pre-processing reminder is silenced, and
    its logging.warning call leaves no stderr handler on the root logger to print later messages."""
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "from edgecnn.calibration import quantize_for_timing\n"
        "import onnx\n"
        "from edgecnn.export.zoo_graphs import zoo_graph\nfrom edgecnn.onnx_facts import fill_weights\n"
        f"onnx.save(fill_weights(zoo_graph('lenet5')), {str(tmp_path / 'fp32.onnx')!r})\n"
        f"quantize_for_timing({str(tmp_path / 'fp32.onnx')!r}, {str(tmp_path / 'int8.onnx')!r})\n"
        "print(len(logging.getLogger().handlers))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pre-processing" not in done.stderr and "WARNING:root" not in done.stderr, done.stderr
    assert done.stdout.strip() == "0", "ORT's logging.warning left a stderr handler on the root logger"


def test_export_directory_is_profiled_at_its_precisions(tmp_path):
    from edgecnn.export import export_model

    result = export_model("lenet5", output_dir=tmp_path, fp16=True, check_samples=2)
    profiled = invoke("profile", result.directory, "--json")
    assert profiled.exit_code == 0, profiled.output
    rows = {row["precision"]: row for row in json.loads(profiled.output)["rows"]}
    assert set(rows) == {"fp32", "fp16"} and {row["basis"] for row in rows.values()} == {"graph"}
    assert rows["fp16"]["macs"] == rows["fp32"]["macs"]
    assert rows["fp16"]["weight_bytes"] == pytest.approx(rows["fp32"]["weight_bytes"] / 2, rel=0.01)
    assert rows["fp32"]["ref_top1"] is None


def test_plot_files(tmp_path):
    png, svg = tmp_path / "profile.png", tmp_path / "profile.svg"
    result = invoke(
        "profile",
        "squeezenet1_1",
        "mobilenet_v2",
        "--device",
        "jetson-nano",
        "--memory-budget",
        "10MB",
        "--max-latency",
        "20",
        "--plot",
        png,
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert invoke("profile", "squeezenet1_1", "--plot", svg).exit_code == 0
    assert "<svg" in svg.read_text()[:2000]
    assert "png or .svg" in one_line_error(invoke("profile", "squeezenet1_1", "--plot", tmp_path / "x.jpg"))


def test_info_and_list_use_the_cost_model():
    from edgecnn.export.zoo_graphs import zoo_graph
    from edgecnn.profile.cost import analyze

    expected = analyze(zoo_graph("squeezenet1_1")).macs
    info = invoke("info", "squeezenet1_1", "--json")
    assert info.exit_code == 0, info.output
    summary = json.loads(info.output)
    assert summary["macs"] == expected == sum(layer["macs"] for layer in summary["layers"])
    assert "FLOPs = 2 x MACs" in summary["convention"]
    listed = invoke("list", "squeezenet1_1", "--macs", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)[0]["gmacs"] == pytest.approx(expected / 1e9)


def test_wide_tables_are_not_folded_outside_a_terminal():
    """A log or a pipe has no screen width: a 17-column profile must keep each row on one line."""
    import io

    from rich.console import Console

    from edgecnn.render import render_rows

    rows = [
        {"model": f"inception_resnet_v{i}", **{f"device_{d}_est_ms": 123.456 + d for d in range(16)}} for i in (1, 2)
    ]
    stream = io.StringIO()
    render_rows(rows, console=Console(file=stream, width=80, force_terminal=False))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 + len(rows) + 1
    assert sum("inception_resnet_v" in line for line in lines) == 2
    assert all("123.456" in line for line in lines if "inception_resnet_v" in line)


def test_zoo_models_are_profiled_at_another_input_size():
    def macs(*args: str) -> int:
        result = invoke("profile", "squeezenet1_1", "--precision", "fp32", "--json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["rows"][0]["macs"]

    # About the area ratio; SqueezeNet's unpadded stem and pools make it 0.224 rather than 0.25.
    assert macs("--input-size", "112") / macs() == pytest.approx((112 / 224) ** 2, rel=0.15)
    fixed = one_line_error(invoke("profile", "squeezenet1_1", "--input-shape", "1x3x112x112"))
    assert "fixes it at 224" in fixed and "--input-size" in fixed
    assert "too small" in one_line_error(invoke("profile", "squeezenet1_1", "--input-size", "8"))
