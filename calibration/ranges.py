"""Activation ranges from ONNX Runtime's calibrators, collected chunk by chunk so memory stays bounded.

``quantize_static`` hands its calibrator the whole data reader at once; ORT's histogram calibrators
(Entropy, Percentile) then keep every activation of every sample until the end (peers blew past 200 GB that
way). ORT's calibrators merge across ``collect_data`` calls (MinMax merges ranges, the histogram
collector merges histograms), so edgecnn calls ``collect_data`` once per chunk, sized so one chunk's
activations fit in ``CHUNK_BYTES``, and then ``compute_data`` once.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx

from edgecnn.calibration.reader import CalibrationReader
from edgecnn.calibration.sets import CalibrationSet
from edgecnn.errors import EdgecnnError

__all__ = ["METHODS", "DEFAULT_PERCENTILE", "compute_ranges", "method_key", "quantizable_op_types", "quiet_ort"]

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_PERCENTILE = 99.999
CHUNK_BYTES = 512 * 2**20
MINMAX_CHUNK_BATCHES = 64
# Histogram settings: 2048 bins is TensorRT's entropy calibrator's resolution; ORT's Entropy default of 128
# bins and 128 quantized bins leaves a single candidate threshold (the maximum), i.e. MinMax.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 512, 128
PERCENTILE_BINS = 2048


def method_key(method: str, percentile: float = DEFAULT_PERCENTILE) -> str:
    """The method part of a cache key: the method and whatever parameter changes its ranges."""
    if method == "percentile":
        return f"percentile({percentile:g})"
    if method == "entropy":
        return f"entropy(bins={ENTROPY_BINS},quantized={ENTROPY_QUANTIZED_BINS})"
    return method


def quantizable_op_types() -> list[str]:
    """The op types ``quantize_static`` quantizes by default (so calibration covers exactly their tensors)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


@contextlib.contextmanager
def quiet_ort():
    """Silence ORT quantization's prints and root-logger messages (pre-processing reminders,
    unmatched shared biases) while it runs.

    ORT calls ``logging.warning``, which installs a stderr handler on a root logger that has none: a
    placeholder handler stops that, so no ``WARNING:root:`` line can surface later either."""
    root = logging.getLogger()
    level = root.level
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    root.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
        root.removeHandler(placeholder)


@contextlib.contextmanager
def _as_edgecnn_error(model_path):
    """ONNX Runtime's calibrator raises its own exception types: report them as one line."""
    try:
        yield
    except EdgecnnError:
        raise
    except Exception as error:
        text = str(error).strip()
        first = (text.splitlines()[0] if text else type(error).__name__)[:300]
        raise EdgecnnError(f"calibrating {Path(model_path).name} failed: {first}") from error


def _bytes_per_batch(model: onnx.ModelProto, names: set[str]) -> int:
    """Float32 bytes of the calibrated tensors for one run, from the shape-inferred graph
    (a dynamic dimension counts 1)."""
    total = 0
    infos = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    for info in infos:
        if info.name not in names:
            continue
        elements = 1
        for dim in info.type.tensor_type.shape.dim:
            elements *= dim.dim_value if dim.dim_value > 0 else 1
        total += 4 * elements
    return max(total, 1)


def _create_calibrator(model_path: Path, method: str, percentile: float, workdir: Path):
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    options = {
        "minmax": (CalibrationMethod.MinMax, {"symmetric": False}),
        "entropy": (
            CalibrationMethod.Entropy,
            {"symmetric": False, "num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS},
        ),
        # Signed histograms (symmetric=False) keep one-sided ranges, e.g. [0, t] after ReLU, for uint8 targets;
        # the quantizer symmetrizes them for TensorRT.
        "percentile": (
            CalibrationMethod.Percentile,
            {"symmetric": False, "num_bins": PERCENTILE_BINS, "percentile": percentile},
        ),
    }
    calibrate_method, extra = options[method]
    return create_calibrator(
        model_path,
        quantizable_op_types(),
        augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=calibrate_method,
        extra_options=extra,
    )


def compute_ranges(
    model_path: str | Path,
    calibration: CalibrationSet,
    *,
    method: str = "percentile",
    percentile: float = DEFAULT_PERCENTILE,
    batch_size: int = 1,
    static_batch: bool = True,
    progress: Callable[[int, int], None] | None = None,
):
    """Run ``calibration`` through the model and return ORT's ``TensorsData`` of activation ranges."""
    if method not in METHODS:
        raise EdgecnnError(f"unknown calibration method {method!r}: choose {', '.join(METHODS)}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise EdgecnnError(f"percentile must be in (0, 100], got {percentile}")
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, len(calibration))

    with tempfile.TemporaryDirectory(prefix="edgecnn-calib-") as workdir, quiet_ort(), _as_edgecnn_error(model_path):
        calibrator = _create_calibrator(Path(model_path), method, percentile, Path(workdir))
        input_name = calibrator.infer_session.get_inputs()[0].name
        reader = CalibrationReader(calibration, input_name, batch_size, static_batch=static_batch, on_batch=advance)
        if method == "minmax":
            chunk = MINMAX_CHUNK_BATCHES
        else:
            tensors, _ = calibrator.select_tensors_to_calibrate(calibrator.model)
            per_batch = _bytes_per_batch(calibrator.model, tensors) * (1 if static_batch else batch_size)
            chunk = max(1, CHUNK_BYTES // per_batch)
        for start in range(0, len(reader), chunk):
            reader.set_range(start, start + chunk)
            calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        del calibrator
    return ranges
