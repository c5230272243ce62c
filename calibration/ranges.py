"""Activation ranges from ONNX Runtime's calibrators, collected chunk by chunk so memory stays bounded.

``quantize_static`` hands its calibrator the whole data reader at once; ORT's histogram calibrators
(Entropy, Percentile) then keep every activation of every sample until the end (peers blew past 200 GB that
way). ORT's calibrators merge across ``collect_data`` calls (MinMax merges ranges, the histogram
collector merges histograms), so edgecnn calls ``collect_data`` once per chunk, sized so one chunk's
activations fit in ``CHUNK_BYTES`` (or as :class:`~edgecnn.calibration.memory.CalibrationPlan` says, for
every method), and then ``compute_data`` once.

Wide ranges: ORT's histogram collector keeps the bin width of the first chunk and adds bins when a later
chunk reaches further, so a tensor whose first values are tiny and later ones large asks for millions of
bins (a detector: "Too many bins for data range. Cannot create 60299344 finite-sized bins").
:class:`CappedHistogramCollector` caps a histogram at :data:`MAX_BINS_FACTOR` times the method's bins: past
that, the old counts are moved into evenly spaced bins over the new range (at their bin centres) and the
tensor is counted in ``notes``, so the summary says how many ranges rest on a coarser histogram.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from edgecnn.calibration.memory import CalibrationPlan
from edgecnn.calibration.reader import CalibrationReader
from edgecnn.calibration.sets import CalibrationSet, InputsSet
from edgecnn.errors import EdgecnnError, first_line

__all__ = ["METHODS", "DEFAULT_PERCENTILE", "compute_ranges", "method_key", "quantizable_op_types", "quiet_ort"]

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_PERCENTILE = 99.999
CHUNK_BYTES = 512 * 2**20
MINMAX_CHUNK_BATCHES = 64
# Histogram settings: 2048 bins is TensorRT's entropy calibrator's resolution; ORT's Entropy default of 128
# bins and 128 quantized bins leaves a single candidate threshold (the maximum), i.e. MinMax.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 512, 128
PERCENTILE_BINS = 2048
MAX_BINS_FACTOR = 8


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
        raise EdgecnnError(f"calibrating {Path(model_path).name} failed: {first_line(error, 300)}") from error


def _bytes_per_batch(model: onnx.ModelProto, names: set[str], batch: int = 1) -> int:
    """Float32 bytes of the calibrated tensors for one run, from the shape-inferred graph. A dynamic
    dimension is refused (a model reaches calibration with static shapes, see edgecnn.onnx_import), except
    a dynamic batch, which counts ``batch``."""
    total = 0
    infos = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    for info in infos:
        if info.name not in names:
            continue
        elements = 1
        for axis, dim in enumerate(info.type.tensor_type.shape.dim):
            if dim.dim_value > 0:
                elements *= dim.dim_value
            elif axis == 0:
                elements *= batch
            else:
                raise EdgecnnError(
                    f"cannot size calibration memory: tensor {info.name} has a dynamic dimension {axis}; "
                    "give --input-shape"
                )
        total += 4 * elements
    return max(total, 1)


def _capped_collector(calibrator, notes: list[str] | None):
    """ORT's HistogramCollector with bins capped at MAX_BINS_FACTOR x the method's bins (see the module
    docstring); ``notes`` gets one line when any histogram was re-binned."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    cap = MAX_BINS_FACTOR * calibrator.num_bins
    rebinned: set[str] = set()

    class CappedHistogramCollector(HistogramCollector):
        def collect_value(self, name_to_arr):
            for tensor, data in name_to_arr.items():
                self._tensor = tensor
                super().collect_value({tensor: data})

        def merge_histogram(self, old_histogram, data_arr, new_min, new_max, new_threshold):
            old_hist, old_edges, old_min, old_max, old_threshold = old_histogram
            if new_threshold > old_threshold and old_threshold > 0:
                stride = 2 * old_threshold / len(old_hist)
                wanted = len(old_hist) + 2 * int((new_threshold - old_threshold) // stride + 1)
                if wanted > cap or not np.isfinite(wanted):
                    rebinned.add(self._tensor)
                    edges = np.linspace(-new_threshold, new_threshold, cap + 1).astype(data_arr.dtype)
                    centres = (old_edges[:-1].astype(np.float64) + old_edges[1:]) / 2
                    moved, _ = np.histogram(centres, bins=edges, weights=old_hist)
                    hist, _ = np.histogram(data_arr, bins=edges)
                    return (
                        hist + np.rint(moved).astype(hist.dtype),
                        edges,
                        min(old_min, new_min),
                        max(old_max, new_max),
                        new_threshold,
                    )
            return super().merge_histogram(old_histogram, data_arr, new_min, new_max, new_threshold)

    collector = CappedHistogramCollector(
        method=calibrator.method,
        symmetric=calibrator.symmetric,
        num_bins=calibrator.num_bins,
        num_quantized_bins=calibrator.num_quantized_bins,
        percentile=calibrator.percentile,
        scenario=getattr(calibrator, "scenario", "same"),
    )

    def report() -> None:
        if rebinned and notes is not None:
            notes.append(
                f"histogram bins capped at {cap} for {len(rebinned)} tensors whose range widened by orders of "
                f"magnitude between chunks (e.g. {sorted(rebinned)[0]}): their {calibrator.method} ranges rest on "
                "a coarser histogram"
            )

    return collector, report


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
    calibration: CalibrationSet | InputsSet,
    *,
    method: str = "percentile",
    percentile: float = DEFAULT_PERCENTILE,
    batch_size: int = 1,
    static_batch: bool = True,
    progress: Callable[[int, int], None] | None = None,
    plan: CalibrationPlan | None = None,
    notes: list[str] | None = None,
):
    """Run ``calibration`` through the model and return ORT's ``TensorsData`` of activation ranges.

    ``calibration`` feeds every model input (an :class:`InputsSet`) or the first one (a
    :class:`CalibrationSet`). ``plan`` (from :func:`edgecnn.calibration.memory.plan_calibration`) sets the
    batches per ``collect_data`` call for every method; without it the chunk holds ``CHUNK_BYTES``.
    Notes on fallbacks taken (capped histogram bins) are appended to ``notes``."""
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
        names = [i.name for i in calibrator.infer_session.get_inputs()]
        if isinstance(calibration, CalibrationSet):
            names = names[:1]
        reader = CalibrationReader(calibration, names, batch_size, static_batch=static_batch, on_batch=advance)
        report = None
        if method != "minmax":
            calibrator.collector, report = _capped_collector(calibrator, notes)
        if plan is not None:
            chunk = plan.chunk
        elif method == "minmax":
            chunk = MINMAX_CHUNK_BATCHES
        else:
            tensors, _ = calibrator.select_tensors_to_calibrate(calibrator.model)
            chunk = max(1, CHUNK_BYTES // _bytes_per_batch(calibrator.model, tensors, batch_size))
        for start in range(0, len(reader), chunk):
            reader.set_range(start, start + chunk)
            calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        if report is not None:
            report()
        del calibrator
    return ranges
