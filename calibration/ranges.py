"""Activation ranges in bounded memory, the same whatever the chunking: ONNX Runtime's calibration math
on histograms edgecnn collects itself.

ORT's calibrators keep every activation of the data a ``collect_data`` call is given, and the histogram
collector merges chunks by widening the first chunk's bins, so a chunked result depends on how the data
was chunked (a detector's histogram asked for 60 million bins that way; ranges moved with the memory
budget, and re-runs wrote different INT8 files). edgecnn instead runs ORT's augmented model (every
tensor ORT would calibrate made a graph output, :class:`~onnxruntime.quantization.calibrate.HistogramCalibrater`)
one batch at a time, in sample order, and keeps nothing of a run once it is counted:

1. exact per-tensor minimum and maximum (order-independent); MinMax ranges are these;
2. for percentile and entropy, a histogram of each tensor with fixed edges: the ``num_bins`` bins over
   ``[-t, t]``, ``t = max(|min|, |max|)``, that ORT's ``HistogramCollector.collect_value`` makes when it is
   given all samples at once; integer counts, summed (exactly order- and chunk-independent). The thresholds
   then come from ORT's own ``HistogramCollector`` (``compute_percentile`` / ``compute_entropy``) on these
   histograms.

So the ranges are those ORT computes from one ``collect_data`` call on the whole set, bit for bit, and they
depend on neither the chunking nor the memory budget (which therefore is not part of the cache key). The
price is a second pass over the data for the histogram methods. Memory: one run's outputs at a time, plus
``np.histogram``'s own blocks of 65536 values (see :mod:`edgecnn.calibration.memory`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgecnn.calibration.reader import CalibrationReader
from edgecnn.calibration.sets import CalibrationSet, InputsSet
from edgecnn.errors import EdgecnnError, first_line
from edgecnn.runtime import usable_cores

__all__ = [
    "METHODS",
    "DEFAULT_PERCENTILE",
    "compute_ranges",
    "method_key",
    "quantizable_op_types",
    "quiet_ort",
    "augmented_session",
]

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_PERCENTILE = 99.999
# Histogram settings: 2048 bins is TensorRT's entropy calibrator's resolution; ORT's Entropy default of 128
# bins and 128 quantized bins leaves a single candidate threshold (the maximum), i.e. MinMax.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 512, 128
PERCENTILE_BINS = 2048
HISTOGRAM_BINS = {"entropy": ENTROPY_BINS, "percentile": PERCENTILE_BINS}


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
    """ONNX Runtime raises its own exception types: report them as one line."""
    try:
        yield
    except EdgecnnError:
        raise
    except Exception as error:
        raise EdgecnnError(f"calibrating {Path(model_path).name} failed: {first_line(error, 300)}") from error


def augmented_session(model_path: str | Path, workdir: str | Path):
    """(session, tensor names): an ORT session of ``model_path`` with every tensor ORT's calibrators calibrate
    (the inputs and outputs of the op types ``quantize_static`` quantizes) as a graph output, sorted by name.

    The graph is augmented by ORT's own ``HistogramCalibrater``, and run unoptimized as ORT's calibrators run
    it, so every tensor keeps its name and its value."""
    import onnxruntime
    from onnxruntime.quantization.calibrate import HistogramCalibrater

    augmented = Path(workdir) / "augmented.onnx"
    calibrator = HistogramCalibrater(Path(model_path), quantizable_op_types(), augmented_model_path=str(augmented))
    calibrator.augment_graph()
    names = sorted(calibrator.tensors_to_calibrate)
    del calibrator
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(augmented), options, providers=["CPUExecutionProvider"])
    return session, names


def _runs(session, names: list[str], reader: CalibrationReader):
    """``{tensor: values}`` of each batch of ``reader``, in order, one run at a time."""
    reader.rewind()
    for feeds in reader:
        yield dict(zip(names, session.run(names, feeds)))


def _extremes(session, names: list[str], reader: CalibrationReader) -> tuple[dict, dict]:
    """Pass 1: each tensor's exact minimum and maximum over every run (NaN ignored, as ORT's ``np.nanmin``);
    0 for a tensor that was always empty, as ORT has it."""
    lows: dict[str, np.ndarray] = {}
    highs: dict[str, np.ndarray] = {}
    for outputs in _runs(session, names, reader):
        for name in names:
            values = outputs[name]
            if values.size == 0:
                continue
            low, high = np.fmin.reduce(values, axis=None), np.fmax.reduce(values, axis=None)
            lows[name] = low if name not in lows else np.fmin(lows[name], low)
            highs[name] = high if name not in highs else np.fmax(highs[name], high)
    for name in names:
        dtype = np.dtype(_output_dtype(session, name))
        lows.setdefault(name, np.zeros((), dtype)[()])
        highs.setdefault(name, np.zeros((), dtype)[()])
        if not (np.isfinite(lows[name]) and np.isfinite(highs[name])):
            raise EdgecnnError(
                f"tensor {name} reaches {lows[name]} .. {highs[name]} on the calibration data, which has no "
                "INT8 range: check the calibration data and its preprocessing"
            )
    return lows, highs


def _output_dtype(session, name: str):
    """The numpy dtype of the session output ``name``."""
    kind = next(o.type for o in session.get_outputs() if o.name == name)
    return {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}.get(
        kind, np.float32
    )


def _histograms(session, names, reader, lows, highs, bins: int) -> dict[str, tuple]:
    """Pass 2: per tensor ``(counts, edges, min, max, threshold)`` as ORT's ``HistogramCollector`` keeps it,
    with the edges ``collect_value`` gives all the data at once: ``bins`` bins over ``[-t, t]``.

    A run's tensors are counted in parallel (numpy releases the GIL), each tensor by one task at a time,
    and the next run starts when all are counted, so one run's outputs are held at a time."""
    thresholds = {name: np.array(max(abs(lows[name]), abs(highs[name])), dtype=lows[name].dtype) for name in names}
    counts: dict[str, np.ndarray] = {name: np.zeros(bins, np.int64) for name in names}
    edges: dict[str, np.ndarray] = {}

    def count(name: str, values: np.ndarray) -> None:
        threshold = thresholds[name]
        hist, edges[name] = np.histogram(values.reshape(-1), bins, range=(-threshold, threshold))
        counts[name] += hist

    with ThreadPoolExecutor(usable_cores()) as pool:
        for outputs in _runs(session, names, reader):
            for task in [pool.submit(count, name, outputs[name]) for name in names]:
                task.result()
    return {name: (counts[name], edges[name], lows[name], highs[name], thresholds[name]) for name in names}


def compute_ranges(
    model_path: str | Path,
    calibration: CalibrationSet | InputsSet,
    *,
    method: str = "percentile",
    percentile: float = DEFAULT_PERCENTILE,
    batch_size: int = 1,
    static_batch: bool = True,
    progress: Callable[[int, int], None] | None = None,
):
    """Run ``calibration`` through the model and return ORT's ``TensorsData`` of activation ranges.

    ``calibration`` feeds every model input (an :class:`InputsSet`) or the first one (a
    :class:`CalibrationSet`), ``batch_size`` samples per run. ``progress(done, total)`` counts samples over
    both passes. See the module docstring for how, and why the result does not depend on memory."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import HistogramCollector, TensorsData

    if method not in METHODS:
        raise EdgecnnError(f"unknown calibration method {method!r}: choose {', '.join(METHODS)}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise EdgecnnError(f"percentile must be in (0, 100], got {percentile}")
    passes = 1 if method == "minmax" else 2
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, passes * len(calibration))

    with tempfile.TemporaryDirectory(prefix="edgecnn-calib-") as workdir, quiet_ort(), _as_edgecnn_error(model_path):
        session, names = augmented_session(model_path, workdir)
        inputs = [i.name for i in session.get_inputs()]
        if isinstance(calibration, CalibrationSet):
            inputs = inputs[:1]
        reader = CalibrationReader(calibration, inputs, batch_size, static_batch=static_batch, on_batch=advance)
        if len(reader) == 0:
            raise EdgecnnError("the calibration set is empty: give at least one sample")
        lows, highs = _extremes(session, names, reader)
        if method == "minmax":
            return TensorsData(CalibrationMethod.MinMax, {name: (lows[name], highs[name]) for name in names})
        collector = HistogramCollector(
            method=method,
            symmetric=False,
            num_bins=HISTOGRAM_BINS[method],
            num_quantized_bins=ENTROPY_QUANTIZED_BINS,
            percentile=percentile,
            scenario="same",
        )
        collector.histogram_dict = _histograms(session, names, reader, lows, highs, HISTOGRAM_BINS[method])
        del session
        calibration_method = CalibrationMethod.Entropy if method == "entropy" else CalibrationMethod.Percentile
        return TensorsData(calibration_method, collector.compute_collection_result())
