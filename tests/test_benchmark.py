"""edgecnn benchmark: one row per format and batch (none dropped), alternating timing, export reuse, accuracy,
CLI errors.

Small and fast: SqueezeNet 1.1 at 64x64, one timing round, INT8 calibrated on a few builtin images.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgecnn.benchmark import (
    FAILED,
    NOT_AVAILABLE,
    OK,
    Latency,
    benchmark,
    measure_alternating,
    parse_batches,
    parse_formats,
)
from edgecnn.cache import cache_dir
from edgecnn.cli import main
from edgecnn.errors import UnknownNameError, UsageError
from edgecnn.export import export_model
from edgecnn.export.tensorrt.engine import installed_tensorrt
from edgecnn.runtime import MEASURED_SETTINGS, SessionSettings, create_session, session_settings

MODEL, SIZE = "squeezenet1_1", "64"
FAST = {"warmup": 0, "rounds": 1, "round_seconds": 0.0}
FORMATS = ["torch", "onnx-fp32", "onnx-int8-cpu", "onnx-int8-tensorrt", "engine"]
RUNNABLE = ["torch", "onnx-fp32", "onnx-int8-cpu"]
TENSORRT_PRESENT = installed_tensorrt() is not None


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def report(export_dir):
    return benchmark(
        MODEL, FORMATS, batches=(1, 2), input_size=SIZE, export_dir=export_dir, quantize_options={"samples": 8}, **FAST
    )


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                tmp_path / "data" / label / f"{index}.png"
            )
    return tmp_path / "data"


def test_every_requested_format_has_a_row_at_every_batch(report):
    assert [(row.format, row.batch) for row in report.rows] == [(f, b) for b, f in product((1, 2), FORMATS)]
    assert report.input_shape == [3, 64, 64] and report.batches == [1, 2]


def test_runnable_formats_are_timed_against_eager(report):
    for key, batch in product(RUNNABLE, (1, 2)):
        row = report.row(key, batch)
        assert row.status == OK, (key, row.reason)
        assert 0 < row.p50_ms <= row.p90_ms
        assert row.throughput == pytest.approx(batch * 1000 / row.p50_ms)
        assert row.speedup == pytest.approx(report.row("torch", batch).p50_ms / row.p50_ms)
    assert report.row("torch").speedup == 1.0


def test_sizes_are_the_artifacts(report):
    fp32 = report.row("onnx-fp32")
    assert fp32.size_mb == pytest.approx((Path(report.directory) / fp32.file).stat().st_size / 1e6)
    assert report.row("onnx-int8-cpu").size_mb < 0.3 * fp32.size_mb
    assert report.row("torch").size_mb == pytest.approx(fp32.size_mb, rel=0.05)


@pytest.mark.skipif(TENSORRT_PRESENT, reason="TensorRT is installed here, so its formats may run")
def test_tensorrt_formats_show_as_not_available_with_the_reason(report):
    for key, batch in product(("onnx-int8-tensorrt", "engine"), (1, 2)):
        row = report.row(key, batch)
        assert row.status == NOT_AVAILABLE
        assert "TensorRT" in row.reason
        assert row.p50_ms is None and row.speedup is None


def test_what_the_benchmark_builds_goes_to_its_cache(report, export_dir):
    assert Path(report.directory).is_relative_to(cache_dir() / "benchmark")
    assert not any(export_dir.iterdir()), "the user's export directory is never written"


def test_a_second_run_reuses_the_export(report, export_dir):
    directory = Path(report.directory)
    before = {path.name: path.stat().st_mtime_ns for path in directory.iterdir()}
    again = benchmark(
        MODEL, ["onnx-fp32", "onnx-int8-cpu"], batches=(2,), input_size=SIZE, export_dir=export_dir, **FAST
    )
    assert {path.name: path.stat().st_mtime_ns for path in directory.iterdir()} == before
    assert [row.status for row in again.rows] == [OK, OK]
    assert not any("left as it is" in note for note in again.notes)


def test_a_static_export_is_kept_when_another_batch_is_asked(tmp_path):
    export_model(MODEL, output_dir=tmp_path, input_size=SIZE, check_samples=1)
    before = (tmp_path / MODEL / "manifest.json").read_text()
    result = benchmark(MODEL, ["onnx-fp32"], batches=(1, 3), input_size=SIZE, export_dir=tmp_path, **FAST)
    assert any("left as it is" in note and "fixed at 1" in note for note in result.notes)
    assert result.row("onnx-fp32", 3).status == OK
    assert (tmp_path / MODEL / "manifest.json").read_text() == before
    assert json.loads((Path(result.directory) / "manifest.json").read_text())["dynamic_batch"] is True


def test_accuracy_on_an_image_folder(image_folder, tmp_path):
    result = benchmark(
        MODEL,
        ["torch", "onnx-fp32", "onnx-fp16"],
        data=image_folder,
        num_classes=2,
        input_size=SIZE,
        export_dir=tmp_path / "exports",
        **FAST,
    )
    assert result.data_images == 6
    torch_row, fp32, fp16 = (result.row(k) for k in ("torch", "onnx-fp32", "onnx-fp16"))
    assert fp32.top1 in {0.0, 100 / 6, 200 / 6, 50.0, 400 / 6, 500 / 6, 100.0}
    assert torch_row.top1 == pytest.approx(fp32.top1) and fp32.top1_drop == 0.0
    assert fp16.top1_drop == pytest.approx(fp32.top1 - fp16.top1)
    assert any("randomly initialized" in note for note in result.notes)


def test_data_with_other_classes_is_refused(image_folder, tmp_path):
    with pytest.raises(UsageError, match="2 classes but the model has 1000"):
        benchmark(MODEL, ["torch"], data=image_folder, input_size=SIZE, export_dir=tmp_path, **FAST)


def test_digits_with_the_reference_weights(tmp_path):
    from edgecnn.testing import reference_weights_path

    if not reference_weights_path("mobilenet_v2").is_file():
        pytest.skip("the digits reference weights of mobilenet_v2 are not in this checkout")
    result = benchmark(
        "mobilenet_v2", ["torch", "onnx-fp32", "onnx-int8-cpu"], data="digits", export_dir=tmp_path, **FAST
    )
    assert result.num_classes == 10 and result.data_images == 360
    assert any("reference weights" in note for note in result.notes)
    assert result.row("onnx-fp32").top1 >= 90.0
    assert result.row("torch").top1 == pytest.approx(result.row("onnx-fp32").top1, abs=0.3)
    int8 = result.row("onnx-int8-cpu")
    assert int8.status == OK, int8.reason
    assert int8.top1_drop <= 2.0


def test_measure_alternating_runs_every_candidate_each_round_in_varying_order():
    calls = []
    candidates = {name: (lambda n=name: calls.append(n)) for name in "abcd"}
    latencies = measure_alternating(candidates, warmup=1, rounds=6, round_seconds=0.0, settle_seconds=0.0)
    assert calls[:4] == list("abcd")
    rounds = [calls[4 + 4 * i : 8 + 4 * i] for i in range(6)]
    assert all(sorted(order) == list("abcd") for order in rounds)
    predecessors_of_a = {order[order.index("a") - 1] for order in rounds if order.index("a") > 0}
    assert len({tuple(order) for order in rounds}) > 1 and len(predecessors_of_a) > 1
    assert all(latency.runs == 6 for latency in latencies.values())


def test_latency_percentiles():
    latency = Latency((4.0, 1.0, 3.0, 2.0))
    assert latency.p50_ms == 2.5 and latency.p90_ms == pytest.approx(3.7) and latency.min_ms == 1.0
    assert latency.throughput(8) == pytest.approx(8 * 1000 / 2.5)


def test_format_and_batch_parsing():
    assert parse_formats("onnx-fp32, torch,onnx-fp32") == ["onnx-fp32", "torch"]
    with pytest.raises(UnknownNameError, match="did you mean onnx-fp32"):
        parse_formats("torch,onnx-fp23")
    assert parse_batches("1,8,1") == [1, 8]
    for bad in ("0", "1,x", ""):
        with pytest.raises(UsageError):
            parse_batches(bad)


def test_cli_unknown_format_is_one_line_with_a_suggestion():
    result = invoke("benchmark", MODEL, "--formats", "torch,onnx-fp23")
    assert result.exit_code == 2
    assert "did you mean onnx-fp32" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_bad_batch_is_refused():
    result = invoke("benchmark", MODEL, "--batch", "1,0")
    assert result.exit_code == 2 and "at least 1" in result.output


def test_cli_json_and_csv(tmp_path):
    result = invoke(
        "benchmark", MODEL, "--input-size", SIZE, "--formats", "torch,engine", "--rounds", "1", "-o", tmp_path, "--json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["model"] == MODEL and [row["format"] for row in payload["rows"]] == ["torch", "engine"]
    assert payload["rows"][0]["status"] == OK and payload["rows"][1]["status"] in (NOT_AVAILABLE, FAILED, OK)
    assert payload["session_settings"]["onnxruntime"] and "intra_op_threads" in payload["session_settings"]
    result = invoke(
        "benchmark", MODEL, "--input-size", SIZE, "--formats", "torch", "--rounds", "1", "-o", tmp_path, "--csv"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("format,batch,status,size_mb,top1")


def test_session_settings_are_applied_and_reported(report):
    assert session_settings(threads=1)["intra_op_threads"] == 1
    assert session_settings()["allow_spinning"] == MEASURED_SETTINGS.allow_spinning
    path = Path(report.directory) / f"{MODEL}.onnx"
    session = create_session(path, settings=replace(MEASURED_SETTINGS, allow_spinning=False, intra_op_threads=1))
    options = session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1
    with pytest.raises(UsageError, match="unknown graph optimization level"):
        replace(MEASURED_SETTINGS, optimization="fastest")


def test_onnxruntime_picks_threads_only_when_every_core_is_usable(monkeypatch):
    import edgecnn.runtime as runtime

    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 8)
    assert SessionSettings().thread_request() == 0
    assert SessionSettings(onnxruntime_picks_threads=False).thread_request() == 8
    assert SessionSettings(intra_op_threads=3).thread_request() == 3
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    assert SessionSettings().thread_request() == 2


EXPORT = Path(__file__).parent / "data" / "lenet5_digits"
DIGITS_SAMPLE = Path(__file__).parent / "data" / "digits_sample"


def test_an_export_directory_is_benchmarked_without_torch():
    code = (
        "import json, sys; sys.modules['torch'] = None\n"
        "from edgecnn.benchmark import benchmark\n"
        f"report = benchmark({str(EXPORT)!r}, data={str(DIGITS_SAMPLE)!r}, warmup=0, rounds=1, round_seconds=0.0)\n"
        "rows = [[r.format, r.status, r.reason, r.top1, r.speedup] for r in report.rows]\n"
        "torch = sorted(f'{m}={sys.modules[m]}' for m in sys.modules if m.split('.')[0] == 'torch')\n"
        "print(json.dumps({'baseline': report.baseline, 'rows': rows, 'torch': torch}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(result.stdout)
    rows = {row[0]: row[1:] for row in payload["rows"]}
    assert list(rows) == ["torch", "onnx-fp32", "onnx-int8-cpu"]
    assert rows["torch"][:2] == [NOT_AVAILABLE, "PyTorch is not installed (the export extra installs it)"]
    assert payload["baseline"] == "onnx-fp32" and rows["onnx-fp32"][3] == 1.0
    for key in ("onnx-fp32", "onnx-int8-cpu"):
        status, reason, top1, speedup = rows[key]
        assert status == OK, reason
        assert top1 >= 90.0 and speedup > 0
    assert payload["torch"] == ["torch=None"], "only the blocker itself: nothing imported torch"


def test_an_export_directory_with_torch_gets_its_eager_row():
    report = benchmark(EXPORT, data=DIGITS_SAMPLE, batches=(1,), **FAST)
    assert report.baseline == "torch" and report.directory == str(EXPORT) and report.input_shape == [1, 32, 32]
    eager, fp32 = report.row("torch"), report.row("onnx-fp32")
    assert eager.status == OK, eager.reason
    assert eager.top1 == pytest.approx(fp32.top1) and eager.speedup == 1.0
    assert fp32.speedup == pytest.approx(eager.p50_ms / fp32.p50_ms)
    assert any("lenet5.pt" in note for note in report.notes)


def test_an_export_directory_says_what_it_lacks(tmp_path):
    directory = tmp_path / "lenet5"
    shutil.copytree(EXPORT, directory)
    (directory / "lenet5.int8-cpu.onnx").unlink()
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["model"]["weights"]["sha256"] = "0" * 64
    (directory / "manifest.json").write_text(json.dumps(manifest))
    report = benchmark(directory, ["torch", "onnx-fp32", "onnx-fp16", "onnx-int8-cpu", "engine"], **FAST)
    assert report.row("onnx-fp32").status == OK and report.baseline == "onnx-fp32"
    torch_row = report.row("torch")
    assert torch_row.status == NOT_AVAILABLE and "weights it was exported from (lenet5.pt)" in torch_row.reason
    assert report.row("onnx-fp16").status == NOT_AVAILABLE and "lists no onnx-fp16" in report.row("onnx-fp16").reason
    int8 = report.row("onnx-int8-cpu")
    assert int8.status == FAILED and "missing or changed" in int8.reason
    engine = report.row("engine")
    assert engine.status == NOT_AVAILABLE and "no TensorRT engine" in engine.reason


def test_an_export_directory_refuses_model_options_and_a_bare_folder_is_refused(tmp_path):
    with pytest.raises(UsageError, match="--weights, --num-classes does not apply"):
        benchmark(EXPORT, weights="w.pt", num_classes=3, **FAST)
    result = invoke("benchmark", tmp_path)
    assert result.exit_code != 0 and "without manifest.json" in result.output
    assert "Traceback" not in result.output


def test_cli_on_an_export_directory_names_its_baseline():
    result = invoke("benchmark", EXPORT, "--formats", "onnx-fp32,onnx-int8-cpu", "--rounds", "1", "--csv")
    assert result.exit_code == 0, result.output
    assert [line.split(",")[0] for line in result.stdout.splitlines()[1:]] == ["onnx-fp32", "onnx-int8-cpu"]
    result = invoke("benchmark", EXPORT, "--formats", "onnx-fp32,onnx-int8-cpu", "--rounds", "1")
    assert result.exit_code == 0, result.output
    assert "vs fp32" in result.stdout and "ONNX FP32 p50 / format p50" in result.stdout


def test_an_engine_in_the_export_directory_is_timed_and_scored(tmp_path, monkeypatch):
    import edgecnn.benchmark as bench

    directory = tmp_path / "lenet5"
    shutil.copytree(EXPORT, directory)
    (directory / "lenet5.engine").write_bytes(b"\0" * 2048)
    (directory / "lenet5.old.engine").write_bytes(b"\0" * 1024)
    (directory / "lenet5.engine.json").write_text(json.dumps({"edgecnn_engine": 1, "tensorrt": "10.3.0"}))
    (directory / "lenet5.old.engine.json").write_text(json.dumps({"edgecnn_engine": 1, "tensorrt": "8.6.1"}))
    loaded = []

    class FakeEngineRunner:
        """ONNX Runtime behind the engine runner's interface, at the engine's fixed batch of 1."""

        inputs, outputs = ["input"], ["logits"]

        def __init__(self, path):
            loaded.append(Path(path).name)
            self.session = create_session(EXPORT / "lenet5.onnx")

        def input_shape(self, name):
            return [1, 1, 32, 32]

        def run(self, feeds):
            assert feeds["input"].shape[0] == 1
            return {"logits": self.session.run(None, feeds)[0]}

    monkeypatch.setattr(bench, "installed_tensorrt", lambda: "10.3.0")
    monkeypatch.setattr(bench, "gpu_identity", lambda: object())
    monkeypatch.setattr(bench, "EngineRunner", FakeEngineRunner)
    report = benchmark(directory, ["onnx-fp32", "engine"], data=DIGITS_SAMPLE, **FAST)
    engine, fp32 = report.row("engine"), report.row("onnx-fp32")
    assert loaded == ["lenet5.engine"], "the engine built by the installed TensorRT"
    assert engine.status == OK and engine.file == "lenet5.engine" and engine.size_mb == 2048 / 1e6
    assert engine.top1 == fp32.top1 and engine.top1_drop == 0.0 and engine.p50_ms > 0
    assert report.baseline == "onnx-fp32" and engine.speedup == pytest.approx(fp32.p50_ms / engine.p50_ms)

    (directory / "lenet5.engine.json").write_text(json.dumps({"edgecnn_engine": 1, "tensorrt": "8.6.1"}))
    stale = benchmark(directory, ["engine"], **FAST).row("engine")
    assert stale.status == NOT_AVAILABLE and "this is 10.3.0" in stale.reason
