"""ONNX Runtime sessions, made in one place so that every command runs models with the same settings.

The settings (:data:`MEASURED_SETTINGS`) were chosen by measurement with ``bench/ort_settings.py``: each
knob varied alone against ONNX Runtime's defaults on a few zoo models, candidates alternated in one
process (results and the machine in ``bench/results/ort_settings.md``). :func:`session_settings` returns
what :func:`create_session` applies, for export manifests and benchmark reports.
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.artifact.formats import get_format
from edgecnn.errors import EdgecnnError, UsageError, first_line

__all__ = [
    "time_runs",
    "cpu_session_optimization",
    "OPTIMIZATION_LEVELS",
    "EXECUTION_MODES",
    "SessionSettings",
    "MEASURED_SETTINGS",
    "usable_cores",
    "session_settings",
    "session_options",
    "create_session",
    "best_providers",
    "run_session",
]

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow), not the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class SessionSettings:
    """The ONNX Runtime CPU session knobs edgecnn sets.

    ``intra_op_threads`` None (the default) lets ONNX Runtime pick the count, one thread per physical
    core, each pinned to its core, when ``onnxruntime_picks_threads`` is on and this process may use every
    core of the machine; otherwise it asks for :func:`usable_cores` threads (which ONNX Runtime does not
    pin), because ONNX Runtime's own count ignores a narrowed affinity mask (taskset, container CPU sets)
    and would oversubscribe it. ``inter_op_threads`` matters in parallel execution mode only (None: ONNX
    Runtime's default). ``allow_spinning`` lets idle pool threads
    busy-wait for the next operator; ``dynamic_block_base`` 0 keeps ONNX Runtime's static work partition,
    a positive value makes blocks shrink as the threads finish (``session.dynamic_block_base``).
    """

    intra_op_threads: int | None = None
    onnxruntime_picks_threads: bool = True
    optimization: str = "all"
    execution_mode: str = "sequential"
    inter_op_threads: int | None = None
    cpu_mem_arena: bool = True
    mem_pattern: bool = True
    allow_spinning: bool = True
    dynamic_block_base: int = 0

    def __post_init__(self) -> None:
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise UsageError(
                f"unknown graph optimization level {self.optimization!r}: choose {', '.join(OPTIMIZATION_LEVELS)}"
            )
        if self.execution_mode not in EXECUTION_MODES:
            raise UsageError(f"unknown execution mode {self.execution_mode!r}: choose {' or '.join(EXECUTION_MODES)}")
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.intra_op_threads}")

    def thread_request(self) -> int:
        """The intra-op thread count ONNX Runtime is given (0: its own choice, pinned)."""
        if self.intra_op_threads is not None:
            return self.intra_op_threads
        return 0 if self.onnxruntime_picks_threads and usable_cores() == (os.cpu_count() or 1) else usable_cores()

    def resolved(self) -> dict[str, Any]:
        """The settings as applied, as a plain dict: the thread count ONNX Runtime is given, and whether it chooses."""
        values = asdict(self)
        values["intra_op_threads"] = self.thread_request()
        values["onnxruntime_picks_threads"] = values["intra_op_threads"] == 0
        return values


MEASURED_SETTINGS = SessionSettings()
"""What bench/ort_settings.py chose on the development host (2 AVX2 cores): ONNX Runtime's own defaults.
No knob beat them by 3% on the five zoo models without being slower on one (bench/results/ort_settings.md);
turning spinning off had won once, at a load average of 10, where spinning threads burn the time slices
other processes need, and lost on a quieter machine. Re-run the script on the target device; it prints
whether these settings still agree."""


def session_settings(threads: int | None = None, optimization: str | None = None) -> dict[str, Any]:
    """The settings :func:`create_session` applies for these arguments, with the ONNX Runtime version."""
    import onnxruntime as ort

    settings = _settings(threads, optimization)
    return {**settings.resolved(), "provider": "CPUExecutionProvider", "onnxruntime": ort.__version__}


def _settings(threads: int | None, optimization: str | None, base: SessionSettings | None = None) -> SessionSettings:
    settings = base or MEASURED_SETTINGS
    if threads is not None:
        settings = replace(settings, intra_op_threads=threads)
    if optimization is not None:
        settings = replace(settings, optimization=optimization)
    return settings


def session_options(settings: SessionSettings):
    """``onnxruntime.SessionOptions`` for ``settings`` (quiet: warnings and below are not logged)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = settings.thread_request()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.optimization]
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if settings.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    if settings.inter_op_threads is not None:
        options.inter_op_num_threads = settings.inter_op_threads
    options.enable_cpu_mem_arena = settings.cpu_mem_arena
    options.enable_mem_pattern = settings.mem_pattern
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0")
    if settings.dynamic_block_base > 0:
        options.add_session_config_entry("session.dynamic_block_base", str(settings.dynamic_block_base))
    return options


def create_session(
    model: str | Path | bytes,
    *,
    threads: int | None = None,
    optimization: str | None = None,
    settings: SessionSettings | None = None,
    providers: list[str] | None = None,
):
    """An ONNX Runtime session with :data:`MEASURED_SETTINGS`, on the CPU unless ``providers`` says otherwise.

    ``threads`` and ``optimization`` (disable/basic/extended/all) override those settings; ``settings`` replaces
    them altogether (bench/ort_settings.py measures variants this way). ``providers``: execution providers in
    order of preference (:func:`best_providers` for the fastest this onnxruntime build has).
    """
    import onnxruntime as ort

    options = session_options(_settings(threads, optimization, settings))
    source = model if isinstance(model, bytes) else str(model)
    providers = providers or ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(source, options, providers=providers)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        first = first_line(error)
    if not isinstance(model, bytes) and "external" in first.lower():
        inline = _with_data_loaded(Path(model))
        if inline is not None:
            try:
                return ort.InferenceSession(inline, options, providers=providers)
            except Exception as error:
                first = first_line(error)
    raise EdgecnnError(f"ONNX Runtime cannot load the model: {first[:300]}")


def _with_data_loaded(path: Path) -> bytes | None:
    """The model at ``path`` serialized with its external data inline, None when that passes protobuf's 2 GB;
    a missing data file is :func:`~edgecnn.onnx_facts.load_onnx`'s one-line error naming it.

    ONNX Runtime resolves external data relative to the model path, but its shape inference at load time
    cannot read a shape constant (a Reshape's shape, a ReduceMean's axes) kept in external data (onnx's
    ``size_threshold=0`` writes even those out); the same graph loads once its data are in the proto."""
    from edgecnn.onnx_facts import PROTOBUF_LIMIT, load_onnx

    model = load_onnx(path)
    return model.SerializeToString() if model.ByteSize() < PROTOBUF_LIMIT else None


def best_providers() -> list[str]:
    """The execution providers to run an artifact with: CUDA where this onnxruntime build has it (Jetson and
    GPU builds), then the CPU. The TensorRT provider is left out: it builds an engine on first run, which
    ``edgecnn compile`` does once instead."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider",) if p in available] + ["CPUExecutionProvider"]


def cpu_session_optimization(artifact) -> str:
    """The ONNX Runtime optimization level at which an INT8 artifact computes what its graph says on the CPU EP.

    ``artifact``: a format key (``onnx-int8-tensorrt``), an ONNX path or a loaded model. Symmetric int8
    activations (zero point 0, the TensorRT form) need ``basic``: the ``extended`` level's ClipQuantFusion
    drops the ReLU/Clip before a symmetric QuantizeLinear (see :mod:`edgecnn.calibration.quantize`), and
    FP8 (FLOAT8E4M3FN) Q/DQ fails to load at ``extended`` when a Clip precedes it (:mod:`edgecnn.calibration.fp8`);
    anything else runs at ``all``.
    """
    import onnx
    from onnx import numpy_helper

    if isinstance(artifact, str) and not artifact.endswith(".onnx"):
        try:
            return get_format(artifact).cpu_optimization
        except UsageError:
            return "all"
    model = artifact if isinstance(artifact, onnx.ModelProto) else onnx.load(str(artifact), load_external_data=False)
    initializers = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in initializers:
            if initializers[node.input[2]].data_type == onnx.TensorProto.FLOAT8E4M3FN:
                return "basic"
            zero_point = numpy_helper.to_array(initializers[node.input[2]])
            if zero_point.dtype == np.int8 and not zero_point.any():
                return "basic"
    return "all"


def run_session(session, batch: np.ndarray) -> np.ndarray:
    """Run a single-input, single-output classifier session on a float32 batch."""
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


def time_runs(
    run: Callable[[], Any],
    *,
    warmup: int = 0,
    min_runs: int = 1,
    min_seconds: float = 0.0,
    max_runs: int = 1000,
) -> list[float]:
    """Milliseconds per call of ``run``: the one timing loop behind host, benchmark and engine latency.

    After ``warmup`` untimed calls, ``run`` is called until it has run ``min_runs`` times and ``min_seconds``
    have passed, or ``max_runs`` times. A call that returns a real number reports its own time in ms (a CUDA
    event pair, say); for any other return value (outputs, None) its wall-clock time is taken.
    """
    for _ in range(warmup):
        run()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() - started < min_seconds):
        begin = time.perf_counter()
        reported = run()
        elapsed = (time.perf_counter() - begin) * 1e3
        samples.append(float(reported) if isinstance(reported, numbers.Real) else elapsed)
    return samples
