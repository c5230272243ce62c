"""Fit this host's CPU efficiency factors from a short ONNX Runtime microbenchmark (``devices --calibrate-host``).

The shipped CPU factors were fitted on one AVX-512 host; on an AVX2 machine estimates came out about 35% low.
Six small graphs, each a chain of one layer kind (tiny layers for the per-layer overhead, elementwise adds on a
zoo-sized activation for the normalization/pooling/elementwise kinds, 3x3 convolution, pointwise convolution,
depthwise convolution, matrix product), are timed with ONNX Runtime (the session settings of ``profile
--measure``), and each factor is solved so that the roofline estimate
(:func:`edgecnn.profile.estimate.estimate_latency`, the same formula every estimate uses) equals the measured
p50, relative to the host's GEMM peak and copy bandwidth measured in the same run. The result is saved per CPU
model and instruction set (:mod:`edgecnn.profile.host_factors`). It takes a few seconds, well under a minute.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecnn.devices import Device, measure_host
from edgecnn.profile.cost import analyze
from edgecnn.profile.estimate import EXECUTION_CLASSES, estimate_latency
from edgecnn.profile.host_factors import cpu_identity, save_host_factors
from edgecnn.profile.measure import measure_latency

__all__ = ["MICROBENCHMARKS", "HostCalibration", "microbenchmark_graph", "calibrate_host"]

MICROBENCHMARKS: dict[str, dict[str, Any]] = {
    "overhead": {"kind": "overhead", "op": "Sigmoid", "shape": (1, 8, 4, 4), "layers": 24},
    "stream": {"kind": "elementwise", "op": "Add", "shape": (1, 64, 56, 56), "layers": 8},
    "conv3x3": {"kind": "conv", "op": "Conv", "shape": (1, 64, 56, 56), "layers": 2, "kernel": 3, "group": 1},
    "pointwise": {"kind": "pointwise", "op": "Conv", "shape": (1, 128, 56, 56), "layers": 3, "kernel": 1, "group": 1},
    "depthwise": {"kind": "depthwise", "op": "Conv", "shape": (1, 128, 56, 56), "layers": 4, "kernel": 3, "group": 128},
    "gemm": {"kind": "gemm", "op": "MatMul", "shape": (1, 1024), "layers": 4},
}
"""Graph name -> what it times: one layer kind, repeated ``layers`` times so a run lasts about a millisecond."""


@dataclass
class HostCalibration:
    """The fitted factors for one CPU, what they were fitted from, and where they were saved."""

    cpu: dict[str, str]
    fitted_at: str
    host_peak_gflops: float
    host_bandwidth_gbps: float
    compute_efficiency: dict[str, float]
    memory_efficiency: float
    layer_overhead_us: float
    half_size_macs: float
    measurements: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path) if self.path else None
        return data


def microbenchmark_graph(name: str) -> tuple[onnx.ModelProto, dict[str, list[int]]]:
    """The FP32 graph for one :data:`MICROBENCHMARKS` entry, with random weights, and its input shape."""
    spec = MICROBENCHMARKS[name]
    rng = np.random.default_rng(0)
    shape = list(spec["shape"])
    nodes, initializers = [], []
    current = "input"
    for index in range(spec["layers"]):
        output = f"y{index}"
        if spec["op"] == "Conv":
            channels, kernel, group = shape[1], spec["kernel"], spec["group"]
            weight = rng.standard_normal((channels, channels // group, kernel, kernel)).astype(np.float32) * 0.05
            initializers += [numpy_helper.from_array(weight, f"w{index}")]
            nodes.append(
                helper.make_node(
                    "Conv", [current, f"w{index}"], [output], pads=[kernel // 2] * 4, group=group, name=f"conv{index}"
                )
            )
        elif spec["op"] == "MatMul":
            weight = rng.standard_normal((shape[1], shape[1])).astype(np.float32) * 0.03
            initializers.append(numpy_helper.from_array(weight, f"w{index}"))
            nodes.append(helper.make_node("MatMul", [current, f"w{index}"], [output], name=f"matmul{index}"))
        elif spec["op"] == "Add":
            nodes.append(helper.make_node("Add", [current, current], [output], name=f"add{index}"))
        else:
            nodes.append(helper.make_node(spec["op"], [current], [output], name=f"{spec['op'].lower()}{index}"))
        current = output
    graph = helper.make_graph(
        nodes,
        f"calibrate_{name}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model), {"input": shape}


def _time_graph(name: str) -> float:
    """p50 milliseconds of one microbenchmark graph on this host (ONNX Runtime, ``profile --measure`` settings)."""
    model, shapes = microbenchmark_graph(name)
    return measure_latency(model, shapes, warmup=3, min_runs=20, min_seconds=0.4, max_runs=400).p50_ms


def _solve(estimate: Callable[[float], float], measured_ms: float, low: float, high: float) -> float:
    """The factor in [low, high] at which ``estimate`` (decreasing in it) equals ``measured_ms``, by bisection
    in log space; a bound when the measurement lies outside what the range can reach."""
    if estimate(high) >= measured_ms:
        return high
    if estimate(low) <= measured_ms:
        return low
    for _ in range(40):
        middle = (low * high) ** 0.5
        if estimate(middle) > measured_ms:
            low = middle
        else:
            high = middle
    return (low * high) ** 0.5


def calibrate_host(
    *, timer: Callable[[str], float] | None = None, host: Device | None = None, save: bool = True
) -> HostCalibration:
    """Time the microbenchmarks, fit the CPU factors to them, and save them for this CPU.

    ``timer(name) -> p50 ms`` and ``host`` replace the measurements (tests pass fixed timings); the fit runs
    in this order: per-layer overhead; memory efficiency from the elementwise chain (an Add moves 12 bytes per
    FLOP: memory-bound), relative to the copy bandwidth measured on the spot (a 256 MB copy, while zoo-sized
    activations stay in cache, so it may exceed 1); the elementwise-like kinds (norm, pool, elementwise...,
    one factor as in the shipped class) just fast enough that the Add stays memory-bound; then each compute
    kind's efficiency.
    """
    timer = timer or _time_graph
    host = host or measure_host.__wrapped__()
    base = EXECUTION_CLASSES["cpu"]
    costs = {name: analyze(microbenchmark_graph(name)[0], name=name) for name in MICROBENCHMARKS}
    measured = {name: timer(name) for name in MICROBENCHMARKS}
    klass = base

    def estimated(name: str, **changes: Any) -> float:
        return estimate_latency(costs[name], host, dataclasses.replace(klass, **changes)).total_ms

    layers = MICROBENCHMARKS["overhead"]["layers"]
    without = estimated("overhead", layer_overhead_us=0.0)
    overhead_us = float(np.clip((measured["overhead"] - without) * 1e3 / layers, 0.5, 200.0))
    klass = dataclasses.replace(klass, layer_overhead_us=overhead_us)
    small = [kind for kind, value in base.compute_efficiency.items() if value == base.compute_efficiency["elementwise"]]
    unbound = klass.compute_efficiency | dict.fromkeys(small, 1e6)
    memory = _solve(
        lambda value: estimated("stream", compute_efficiency=unbound, memory_efficiency=value),
        measured["stream"],
        0.05,
        50.0,
    )
    klass = dataclasses.replace(klass, memory_efficiency=memory)
    stream = costs["stream"].nodes[0]
    memory_s = stream.bytes_moved / (host.bandwidth_gbps * 1e9 * memory)
    elementwise = max(
        base.compute_efficiency["elementwise"], stream.flops / (host.peak_gflops["fp32"] * 1e9 * memory_s)
    )
    efficiency = base.compute_efficiency | dict.fromkeys(small, round(elementwise, 4))
    for name, spec in MICROBENCHMARKS.items():
        kind = spec["kind"]
        if kind not in efficiency or kind == "elementwise":
            continue
        efficiency[kind] = _solve(
            lambda value, kind=kind, name=name: estimated(name, compute_efficiency=efficiency | {kind: value}),
            measured[name],
            0.005,
            4.0,
        )
    klass = dataclasses.replace(klass, compute_efficiency=efficiency)
    rows = [
        {
            "graph": name,
            "kind": spec["kind"],
            "measured_ms": round(measured[name], 4),
            "shipped_factors_ms": round(estimate_latency(costs[name], host, base).total_ms, 4),
            "fitted_factors_ms": round(estimate_latency(costs[name], host, klass).total_ms, 4),
        }
        for name, spec in MICROBENCHMARKS.items()
    ]
    calibration = HostCalibration(
        cpu=cpu_identity(),
        fitted_at=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        host_peak_gflops=host.peak_gflops["fp32"],
        host_bandwidth_gbps=host.bandwidth_gbps,
        compute_efficiency={kind: round(value, 4) for kind, value in efficiency.items()},
        memory_efficiency=round(memory, 4),
        layer_overhead_us=round(overhead_us, 3),
        half_size_macs=base.half_size_macs,
        measurements=rows,
    )
    if save:
        calibration.path = save_host_factors(
            {k: v for k, v in calibration.as_dict().items() if k != "path"}, calibration.cpu
        )
    return calibration
