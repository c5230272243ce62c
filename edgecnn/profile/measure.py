"""Latency measured on this machine through ONNX Runtime, and per-node times from its profiling trace.

Timing: a few warm-up runs (first runs allocate and tune), then timed runs until at least ``min_runs`` and
``min_seconds`` are reached (capped at ``max_runs``), so that percentiles rest on enough samples; p50,
p90 and p99 with numpy's linear interpolation, throughput = batch / p50.

Per-node times come from ONNX Runtime's own profiler (``SessionOptions.enable_profiling``), whose trace
names each kernel after the node it runs. ONNX Runtime fuses and renames nodes while optimizing (a Conv
with its activation becomes one kernel named after the fused output, with an ``_nchwc`` suffix where it
switched layouts), so :func:`join_node_times` maps each kernel back to the static table: by node name,
then by the tensor it writes, then up through fused activations to the node of the kernel's op type. Kernels that
match no node (layout reorders the runtime inserted) are reported as runtime rows, not dropped. Kernel
names carry what the optimizer adds (a ``fused `` prefix; ``_nchwc``, ``_bn``, ``_token_N`` suffixes): the
prefix is dropped and up to four trailing ``_suffix`` parts are stripped until a node or tensor name matches.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgecnn.errors import EdgecnnError, first_line
from edgecnn.profile.cost import GraphCost
from edgecnn.runtime import (
    MEASURED_SETTINGS,
    create_session,
    session_options,
    session_settings,
    time_runs,
    usable_cores,
)

__all__ = [
    "LatencyMeasurement",
    "NodeTime",
    "MEASURED_LABEL",
    "measure_latency",
    "profile_nodes",
    "join_node_times",
    "node_time_rows",
]

MEASURED_LABEL = "measured on this host (ONNX Runtime, CPU)"

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(bool)": np.bool_,
}


@dataclass
class LatencyMeasurement:
    """Host latency of one graph at one batch size; milliseconds per batch. ``threads`` is the intra-op
    thread count (one per core when ONNX Runtime picks it)."""

    batch: int
    threads: int
    warmup_runs: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    throughput_per_s: float
    label: str = MEASURED_LABEL


@dataclass
class NodeTime:
    """Mean time per run of the kernels joined to one static node (or to one runtime-inserted kernel)."""

    node: str
    kernels: list[str] = field(default_factory=list)
    ms: float = 0.0


def _session_inputs(session, shapes: Mapping[str, Sequence[int]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in session.get_inputs():
        if value.name not in shapes:
            raise EdgecnnError(f"no shape for input {value.name!r}")
        dtype = _NUMPY_TYPES.get(value.type, np.float32)
        shape = tuple(int(d) for d in shapes[value.name])
        if np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[value.name] = np.zeros(shape, dtype)
    return feeds


def _as_source(model: onnx.ModelProto | str | Path) -> bytes | str:
    return model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)


def measure_latency(
    model: onnx.ModelProto | str | Path,
    shapes: Mapping[str, Sequence[int]],
    *,
    warmup: int = 3,
    min_runs: int = 10,
    min_seconds: float = 1.0,
    max_runs: int = 500,
    threads: int | None = None,
) -> LatencyMeasurement:
    """Time ``model`` at the concrete input ``shapes`` (batch = dim 0 of the first input)."""
    session = create_session(_as_source(model), threads=threads)
    feeds = _session_inputs(session, shapes)

    def run() -> None:
        """One inference; returning None lets time_runs take the wall-clock time (it reads a number as ms)."""
        session.run(None, feeds)

    try:
        samples = time_runs(
            run,
            warmup=warmup,
            min_runs=min_runs,
            min_seconds=min_seconds,
            max_runs=max_runs,
        )
    except Exception as error:  # onnxruntime's own error types
        first = first_line(error, 300)
        raise EdgecnnError(f"ONNX Runtime failed to run the model: {first}") from None
    times = np.asarray(samples)
    batch = int(next(iter(shapes.values()))[0])
    p50 = float(np.percentile(times, 50))
    return LatencyMeasurement(
        batch=batch,
        threads=session_settings(threads)["intra_op_threads"] or usable_cores(),
        warmup_runs=warmup,
        runs=len(samples),
        p50_ms=p50,
        p90_ms=float(np.percentile(times, 90)),
        p99_ms=float(np.percentile(times, 99)),
        mean_ms=float(times.mean()),
        min_ms=float(times.min()),
        throughput_per_s=batch / (p50 / 1e3),
    )


def _profiling_session(source: bytes | str, threads: int | None, directory: str):
    """A session with :func:`edgecnn.runtime.create_session`'s settings and ONNX Runtime's profiler on
    (create_session has no profiling switch)."""
    import dataclasses

    import onnxruntime as ort

    settings = dataclasses.replace(MEASURED_SETTINGS, intra_op_threads=threads) if threads else MEASURED_SETTINGS
    options = session_options(settings)
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(directory, "edgecnn-profile")
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as error:
        first = first_line(error, 300)
        raise EdgecnnError(f"ONNX Runtime cannot load the model: {first}") from None


def profile_nodes(
    model: onnx.ModelProto | str | Path,
    shapes: Mapping[str, Sequence[int]],
    *,
    warmup: int = 2,
    runs: int = 5,
    threads: int | None = None,
) -> dict[str, tuple[str, float]]:
    """Mean per-run time of each kernel in ONNX Runtime's trace: ``{kernel name: (op type, ms)}``.

    Warm-up runs are traced too; their kernels are left out by timestamp.
    """
    with tempfile.TemporaryDirectory(prefix="edgecnn-profile-") as directory:
        session = _profiling_session(_as_source(model), threads, directory)
        feeds = _session_inputs(session, shapes)
        for _ in range(warmup + runs):
            session.run(None, feeds)
        trace_path = session.end_profiling()
        events = json.loads(Path(trace_path).read_text())
    model_runs = sorted(
        (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    if len(model_runs) < warmup + runs:
        raise EdgecnnError("ONNX Runtime's profiling trace lacks the expected runs")
    timed_from = model_runs[warmup][0]
    kernels: dict[str, tuple[str, float]] = {}
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time") or event["ts"] < timed_from:
            continue
        kernel = name.removesuffix("_kernel_time")
        op_type = event.get("args", {}).get("op_name", "")
        previous = kernels.get(kernel, (op_type, 0.0))[1]
        kernels[kernel] = (op_type, previous + event["dur"] / 1e3 / runs)
    return kernels


_KERNEL_OP_FAMILY = {
    "FusedConv": "Conv",
    "NchwcConv": "Conv",
    "QLinearConv": "Conv",
    "ConvInteger": "Conv",
    "FusedGemm": "Gemm",
    "FusedMatMul": "MatMul",
    "QLinearMatMul": "MatMul",
    "MatMulInteger": "MatMul",
    "MatMulIntegerToFloat": "MatMul",
    "DynamicQuantizeMatMul": "MatMul",
    "NchwcMaxPool": "MaxPool",
    "NchwcAveragePool": "AveragePool",
    "NchwcGlobalAveragePool": "GlobalAveragePool",
    "NchwcGlobalMaxPool": "GlobalMaxPool",
    "QLinearAdd": "Add",
    "QLinearMul": "Mul",
    "QLinearGlobalAveragePool": "GlobalAveragePool",
    "QLinearAveragePool": "AveragePool",
    "QLinearConcat": "Concat",
    "QLinearSigmoid": "Sigmoid",
    "QLinearLeakyRelu": "LeakyRelu",
}


def join_node_times(
    cost: GraphCost, kernels: Mapping[str, tuple[str, float]]
) -> tuple[dict[str, NodeTime], list[NodeTime]]:
    """Attach each kernel's time to a node of ``cost``; return (times by node name, unmatched runtime kernels)."""
    by_name = {node.name: node for node in cost.nodes}
    producer = {output: node for node in cost.nodes for output in node.outputs}
    joined: dict[str, NodeTime] = {}
    runtime: list[NodeTime] = []
    for kernel, (op_type, ms) in kernels.items():
        node, candidate_name = None, kernel.removeprefix("fused ")
        for _ in range(4):
            node = by_name.get(candidate_name) or producer.get(candidate_name)
            if node is not None or "_" not in candidate_name:
                break
            candidate_name = candidate_name.rsplit("_", 1)[0]
        if node is None:
            runtime.append(NodeTime(f"(runtime) {kernel}", [op_type], ms))
            continue
        family = _KERNEL_OP_FAMILY.get(op_type, op_type)
        candidate = node
        while candidate is not None and candidate.op_type != family and candidate.kind == "elementwise":
            candidate = producer.get(candidate.inputs[0]) if candidate.inputs else None
        node = candidate if candidate is not None and candidate.op_type == family else node
        entry = joined.setdefault(node.name, NodeTime(node.name))
        entry.kernels.append(op_type)
        entry.ms += ms
    return joined, runtime


def node_time_rows(cost: GraphCost, kernels: Mapping[str, tuple[str, float]]) -> list[dict[str, Any]]:
    """The static table with measured time beside it: each node's MAC share and time share (percent)."""
    joined, runtime = join_node_times(cost, kernels)
    total_ms = sum(t.ms for t in joined.values()) + sum(t.ms for t in runtime)
    total_macs = cost.macs or 1
    rows = []
    for node in cost.nodes:
        measured = joined.get(node.name)
        rows.append(
            {
                **node.as_row(),
                "mac_share": 100.0 * node.macs / total_macs if node.counted else None,
                "measured_ms": measured.ms if measured else None,
                "time_share": 100.0 * measured.ms / total_ms if measured and total_ms else None,
                "kernels": ",".join(measured.kernels) if measured else "",
            }
        )
    for entry in runtime:
        rows.append(
            {
                "name": entry.node,
                "op_type": entry.kernels[0],
                "kind": "runtime",
                "measured_ms": entry.ms,
                "time_share": 100.0 * entry.ms / total_ms if total_ms else None,
                "kernels": entry.kernels[0],
            }
        )
    return rows
