"""Calibration in bounded, flat memory, and the same inputs giving the same bytes: ranges equal to ONNX
Runtime's from all samples at once whatever the chunking and the memory budget, repeat quantizations
byte-identical, a repeated ``export --int8`` served from the cache, peak memory independent of the
number of samples."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgecnn.calibration import quantize as quantize_module
from edgecnn.calibration import quantize_onnx
from edgecnn.calibration.memory import BASE_BYTES, plan_calibration
from edgecnn.calibration.ranges import (
    ENTROPY_BINS,
    ENTROPY_QUANTIZED_BINS,
    PERCENTILE_BINS,
    compute_ranges,
    quantizable_op_types,
    quiet_ort,
)
from edgecnn.calibration.reader import CalibrationReader
from edgecnn.calibration.sensitivity import analyze
from edgecnn.calibration.sets import InputsSet
from edgecnn.cli import main
from edgecnn.errors import UsageError
from edgecnn.onnx_import import import_onnx
from edgecnn.options import MB

SHAPE = (3, 16, 16)


def small_net(path: Path) -> Path:
    """Conv -> Relu -> Conv -> Sigmoid, and a Concat of the Relu and Sigmoid outputs: one-sided, two-sided
    and saturating activations."""
    rng = np.random.default_rng(3)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.3).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["s2"], name="sigmoid2"),
        helper.make_node("Concat", ["r1", "s2"], ["y"], name="concat", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, *SHAPE[1:]])],
        [w1, w2],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def widening_inputs(count: int) -> InputsSet:
    """Samples whose scale grows by orders of magnitude: chunked histograms that widen their first bins
    (ORT's collector) land elsewhere than one histogram of everything."""
    rng = np.random.default_rng(0)
    scales = np.logspace(-1, 1, count).astype(np.float32)[:, None, None, None]
    x = (rng.standard_normal((count, *SHAPE)) * scales).astype(np.float32)
    return InputsSet("test", "arrays", "widening test inputs", {"x": SHAPE}, count, 0, count, arrays={"x": x})


def ort_ranges(model: Path, calibration: InputsSet, method: str, samples_per_call: int):
    """ONNX Runtime's own calibrator, ``collect_data`` called once per ``samples_per_call`` samples."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    options = {
        "minmax": (CalibrationMethod.MinMax, {"symmetric": False}),
        "entropy": (
            CalibrationMethod.Entropy,
            {"symmetric": False, "num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS},
        ),
        "percentile": (
            CalibrationMethod.Percentile,
            {"symmetric": False, "num_bins": PERCENTILE_BINS, "percentile": 99.999},
        ),
    }[method]
    with tempfile.TemporaryDirectory() as workdir, quiet_ort():
        calibrator = create_calibrator(
            model,
            quantizable_op_types(),
            augmented_model_path=f"{workdir}/augmented.onnx",
            calibrate_method=options[0],
            extra_options=options[1],
        )
        reader = CalibrationReader(calibration, ["x"], 1)
        for start in range(0, len(reader), samples_per_call):
            reader.set_range(start, start + samples_per_call)
            calibrator.collect_data(reader)
        return calibrator.compute_data()


def bounds(ranges) -> dict[str, tuple[float, float]]:
    return {name: tuple(float(np.asarray(v).reshape(-1)[0]) for v in data.range_value) for name, data in ranges.items()}


@pytest.mark.parametrize("method", ["percentile", "entropy", "minmax"])
def test_ranges_are_onnxruntimes_from_all_samples_at_once(method, tmp_path):
    """One sample per run here equals ORT's calibrator given every sample in one call, bit for bit; ORT's
    calibrator fed one sample per call does not (percentile shown; its entropy search on the widened
    histograms takes minutes), so the comparison can fail."""
    model = small_net(tmp_path / "small.onnx")
    calibration = widening_inputs(12)
    ours = bounds(compute_ranges(model, calibration, method=method))
    at_once = bounds(ort_ranges(model, calibration, method, samples_per_call=12))
    assert ours == at_once
    if method == "percentile":
        one_by_one = bounds(ort_ranges(model, calibration, method, samples_per_call=1))
        assert one_by_one != at_once, "ORT's chunked histograms should differ on widening data"


def test_ranges_do_not_depend_on_the_budget_and_repeats_write_the_same_bytes(tmp_path):
    model = small_net(tmp_path / "small.onnx")
    np.savez(tmp_path / "data.npz", x=widening_inputs(24).arrays["x"])
    imported = import_onnx(onnx.load(str(model)), {"x": [1, *SHAPE]}).model
    tight = plan_calibration(imported, batch=1, data_bytes=24 * int(np.prod(SHAPE)) * 4).estimate()
    made = []
    for index, budget in enumerate([tight, tight, 8 * 1024 * MB]):
        output = tmp_path / f"int8-{index}.onnx"
        cache = tmp_path / f"ranges-{index}.json"
        result = quantize_onnx(
            model, output, calibration=tmp_path / "data.npz", samples=20, calib_memory=budget, cache=cache
        )
        assert not result.cache_hit and result.plan.budget_bytes == budget
        made.append((result.sha256, json.loads(cache.read_text())["ranges"], result.check))
    assert made[0] == made[1] == made[2]
    assert hashlib.sha256((tmp_path / "int8-0.onnx").read_bytes()).hexdigest() == made[0][0]
    with pytest.raises(UsageError, match=rf"needs about \d+ MB at batch 1 \(.* budget is {(tight - MB) / MB:,.0f} MB"):
        quantize_onnx(model, tmp_path / "refused.onnx", calibration=tmp_path / "data.npz", calib_memory=tight - MB)
    assert not (tmp_path / "refused.onnx").exists()


def test_plan_holds_one_run_whatever_the_number_of_samples(tmp_path):
    """The estimate grows with the calibration set's bytes only; below it the budget is refused, one line."""
    imported = import_onnx(onnx.load(str(small_net(tmp_path / "small.onnx"))), {"x": [1, *SHAPE]}).model
    per_sample = int(np.prod(SHAPE))
    few = plan_calibration(imported, batch=1, data_bytes=50 * per_sample, budget=4096 * MB)
    many = plan_calibration(imported, batch=1, data_bytes=500 * per_sample, budget=4096 * MB)
    run = 4 * (3 + 8 + 8 + 8 + 8 + 16) * SHAPE[1] * SHAPE[2]
    assert few.run_bytes == many.run_bytes == run, "x, c1, r1, c2, s2 and y, float32, at batch 1"
    assert many.estimate() - few.estimate() == 450 * per_sample
    assert few.estimate() == BASE_BYTES + 3 * few.weight_bytes + few.data_bytes + 2 * run
    with pytest.raises(UsageError) as refused:
        plan_calibration(imported, batch=1, data_bytes=0, budget=BASE_BYTES)
    message = str(refused.value)
    assert "\n" not in message and f"budget is {BASE_BYTES // MB} MB" in message and "MB of activations" in message


PEAK_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from onnx import TensorProto, helper, save
    from edgecnn.calibration.ranges import compute_ranges
    from edgecnn.calibration.sets import InputsSet

    shape = (4, 256, 256)
    nodes = [helper.make_node("Relu", ["x"], ["t0"])] + [
        helper.make_node("Add", [f"t{i}", f"t{i}"], [f"t{i + 1}"]) for i in range(5)
    ]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *shape])],
        [helper.make_tensor_value_info("t5", TensorProto.FLOAT, [1, *shape])],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), sys.argv[1])
    samples = int(sys.argv[2])
    inputs = InputsSet("t", "synthetic", "t", {"x": shape}, samples, 0, samples, synthetic_count=samples)
    compute_ranges(sys.argv[1], inputs, method="percentile")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)


def test_peak_memory_does_not_grow_with_the_number_of_samples(tmp_path):
    """6 MB of calibrated activations per run: 8 runs and 64 runs peak within a few MB of each other (ORT's
    histogram calibrators keep every run of a chunk: 300 MB more for 56 more runs)."""

    def peak(samples: int) -> int:
        done = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, str(tmp_path / "chain.onnx"), str(samples)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(done.stdout.split()[-1])

    few, many = peak(8), peak(64)
    assert many - few < 32, f"peak RSS {few} MB for 8 samples, {many} MB for 64"


def test_export_rerun_reuses_the_ranges_and_writes_the_same_bytes(tmp_path, monkeypatch):
    def export():
        return CliRunner().invoke(
            main,
            ["export", "lenet5", "--int8", "--calib-samples", "16", "--json", "-o", str(tmp_path / "exports")],
        )

    first = export()
    assert first.exit_code == 0, first.output
    int8 = tmp_path / "exports" / "lenet5" / "lenet5.int8-cpu.onnx"
    digest = hashlib.sha256(int8.read_bytes()).hexdigest()

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibrated again although the same export was made before")

    monkeypatch.setattr(quantize_module, "compute_ranges", no_calibration)
    for _ in range(2):
        again = export()
        assert again.exit_code == 0, again.output
        assert hashlib.sha256(int8.read_bytes()).hexdigest() == digest
    text = CliRunner().invoke(main, ["export", "lenet5", "--int8", "--calib-samples", "16", "-o", str(tmp_path / "x")])
    assert text.exit_code == 0 and "ranges reused from the calibration cache" in text.output
    assert hashlib.sha256((tmp_path / "x" / "lenet5" / "lenet5.int8-cpu.onnx").read_bytes()).hexdigest() == digest


def detector_head(path: Path) -> Path:
    """A detector head: box coordinates in pixels (a ReLU'd Conv with large weights) and class scores (a
    Sigmoid on logits biased to -5, so mostly about 0.007), concatenated into one output; the scores are a
    second output."""
    rng = np.random.default_rng(1)
    initializers = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.5).astype(np.float32), "w1"),
        numpy_helper.from_array((np.abs(rng.standard_normal((4, 8, 1, 1))) * 20).astype(np.float32), "wbox"),
        numpy_helper.from_array((rng.standard_normal((4, 8, 1, 1)) * 0.3).astype(np.float32), "wcls"),
        numpy_helper.from_array(np.full(4, -5.0, np.float32), "bcls"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "wbox"], ["boxes"], name="box_conv"),
        helper.make_node("Conv", ["r1", "wcls", "bcls"], ["logits"], name="cls_conv"),
        helper.make_node("Sigmoid", ["logits"], ["scores"], name="scores_sigmoid"),
        helper.make_node("Concat", ["boxes", "scores"], ["detections"], name="concat", axis=1),
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, channels, *SHAPE[1:]])
        for name, channels in (("detections", 8), ("scores", 4))
    ]
    graph = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *SHAPE])], outputs, initializers
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_analyze_ranks_the_output_layers_of_a_detector(target, tmp_path):
    """The Concat that puts scores under the boxes' scale, and the final Sigmoid, rank at the top by their
    output error; by input and weight error alone (the former ranking) the Sigmoid ranks last and the
    Concat's figure is tens of dB better than what its output suffers."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, *SHAPE)).astype(np.float32)
    x[rng.random(x.shape) < 0.002] = 25.0
    calibration = InputsSet("test", "arrays", "detector test inputs", {"x": SHAPE}, 40, 0, 40, arrays={"x": x})
    model = detector_head(tmp_path / "head.onnx")
    quantize_onnx(model, tmp_path / "int8.onnx", calibration=calibration, target=target)
    rows = analyze(model, tmp_path / "int8.onnx", calibration, samples=16)
    ranked = [row.node for row in rows if row.sqnr_db is not None]
    assert ranked[0] == "concat" and "scores_sigmoid" in ranked[:3]
    concat = next(row for row in rows if row.node == "concat")
    assert concat.output_sqnr_db < 3 < 20 < concat.accumulated_sqnr_db, "the scores' part is crushed, not the boxes'"
    former = sorted(
        (row for row in rows if row.sqnr_db is not None),
        key=lambda r: min(v for v in (r.input_sqnr_db, r.weight_sqnr_db) if v is not None),
    )
    assert former[-1].node == "scores_sigmoid"
    assert min(concat.input_sqnr_db, 99.0) > 20
