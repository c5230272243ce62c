"""Estimated latency: a roofline per layer, times documented efficiency factors by device class and layer kind.

For each node of the static table (:mod:`edgecnn.profile.cost`)::

    compute_s = FLOPs / (peak[precision] x compute_efficiency[kind] x size_factor)
    memory_s  = (weight + input + output bytes) / (bandwidth x memory_efficiency)
    layer_s   = max(compute_s, memory_s) + layer_overhead

``size_factor = MACs / (MACs + half_size_macs)``: a layer with ``half_size_macs`` multiply-accumulates
reaches half of its kind's efficiency, because small layers cannot fill the machine at batch 1 (SIMD
lanes and cores on a CPU, streaming multiprocessors on a GPU). Activations and residual adds that
directly follow a convolution or matrix product are fused into it by the runtimes edgecnn
targets (ONNX Runtime's Conv+activation and NCHWc fusions, TensorRT's layer fusion) and cost nothing of
their own; so do QuantizeLinear/DequantizeLinear nodes, which TensorRT and ONNX Runtime's QDQ
transformer fold into the quantized layers; view ops (Reshape, Flatten, ...) cost nothing.

Every figure is an estimate and is labelled so; the factors and their sources travel in every report's
JSON (``assumptions``). The CPU factors were fitted to ONNX Runtime's batch-1 latency of half the zoo
on the development host and checked on the other half (bench/profile_bench.py; leave-one-family-out
results in docs/profile.md); ``edgecnn devices --calibrate-host`` fits them for this CPU
(:mod:`edgecnn.profile.calibrate`), and ``host`` estimates then use those. The GPU factors are
engineering estimates from published batch-1 results, to be replaced by measurement on a device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from edgecnn.devices import Device
from edgecnn.errors import UsageError
from edgecnn.profile.cost import CONVENTION, GraphCost
from edgecnn.profile.host_factors import load_host_factors

__all__ = [
    "ESTIMATED_LABEL",
    "ExecutionClass",
    "EXECUTION_CLASSES",
    "LayerEstimate",
    "LatencyEstimate",
    "execution_class",
    "host_execution_class",
    "estimate_latency",
    "validation_notes",
    "assumptions",
]

ESTIMATED_LABEL = "estimated (roofline x efficiency factors; not measured)"

_FUSABLE_KINDS = {"elementwise"}
_COMPUTE_KINDS = {"conv", "pointwise", "depthwise", "grouped", "gemm"}


@dataclass(frozen=True)
class ExecutionClass:
    """How one class of device runs a graph: efficiency by layer kind, bandwidth efficiency, per-layer overhead."""

    name: str
    description: str
    compute_efficiency: dict[str, float]
    half_size_macs: float
    memory_efficiency: float
    layer_overhead_us: float
    free_kinds: frozenset[str] = frozenset({"view", "quant"})
    source: str = ""


EXECUTION_CLASSES: dict[str, ExecutionClass] = {
    "cpu": ExecutionClass(
        name="cpu",
        description="CPU cores through ONNX Runtime's MLAS kernels (NCHWc layout on x86, NEON on Arm)",
        compute_efficiency={
            "conv": 1.20,
            "pointwise": 1.00,
            "grouped": 0.30,
            "depthwise": 0.20,
            "gemm": 0.60,
            "norm": 0.05,
            "pool": 0.05,
            "elementwise": 0.05,
            "quant": 0.05,
            "data": 0.05,
            "other": 0.05,
        },
        half_size_macs=1e5,
        memory_efficiency=1.0,
        layer_overhead_us=5.0,
        source=(
            "fitted (grid search, bench/profile_bench.py fit) to ONNX Runtime 1.32's batch-1 FP32 latency of "
            "half the zoo on a quiet 2-core AMD EPYC host with AVX-512 (2026-11-28), relative to the host's "
            "GEMM peak and copy bandwidth measured right before and after each model "
            "(bench/results/profile_estimator_fitdata.json): median absolute error 8% on the fitted half, 7% "
            "on the held-out half; a fresh run with these factors is bench/results/profile_estimator.md. "
            "ONNX Runtime's convolutions beat torch's GEMM there, hence efficiencies above 1. The previous "
            "fit, on an AVX2 host under load 11-17, gave 0.8/0.6 for conv/pointwise: expect larger errors on "
            "loaded machines. Raspberry Pi estimates reuse them: unvalidated on a Pi."
        ),
    ),
    "gpu-cuda-cores": ExecutionClass(
        name="gpu-cuda-cores",
        description="GPU CUDA cores through TensorRT (FP32 anywhere; every precision on Maxwell/Pascal)",
        compute_efficiency={
            "conv": 0.85,
            "pointwise": 0.70,
            "grouped": 0.30,
            "depthwise": 0.10,
            "gemm": 0.50,
            "norm": 0.10,
            "pool": 0.10,
            "elementwise": 0.10,
            "quant": 0.10,
            "data": 0.10,
            "other": 0.10,
        },
        half_size_macs=5e6,
        memory_efficiency=0.7,
        layer_overhead_us=8.0,
        free_kinds=frozenset({"view", "quant", "data"}),
        source=(
            "estimate, anchored on NVIDIA's Jetson Nano inference benchmarks with TensorRT FP16 at batch 1 "
            "(developer.nvidia.com/embedded/jetson-nano-dl-inference-benchmarks: ResNet-50 about 36 images/s, "
            "Inception v4 about 11, VGG-19 about 10; figures recalled, not re-verified here): large 3x3 "
            "convolutions run near 85% of the CUDA-core peak; estimates for those three come out at 25, 71 "
            "and 112 ms. Depthwise layers are memory- and latency-bound (Canziani et al. 2017; devices.md). "
            "TensorRT removes concatenations and reshapes ('data' and 'view' kinds cost nothing). "
            "Unvalidated on a device: measure there and replace."
        ),
    ),
    "gpu-tensor-cores": ExecutionClass(
        name="gpu-tensor-cores",
        description="GPU tensor cores through TensorRT (FP16/INT8 on Volta and Ampere Jetsons)",
        compute_efficiency={
            "conv": 0.35,
            "pointwise": 0.30,
            "grouped": 0.06,
            "depthwise": 0.025,
            "gemm": 0.20,
            "norm": 0.025,
            "pool": 0.025,
            "elementwise": 0.025,
            "quant": 0.025,
            "data": 0.025,
            "other": 0.025,
        },
        half_size_macs=5e6,
        memory_efficiency=0.7,
        layer_overhead_us=5.0,
        free_kinds=frozenset({"view", "quant", "data"}),
        source=(
            "estimate: dense tensor-core peaks assume large GEMMs, and batch-1 convolutions reach about a third "
            "of them; depthwise and grouped layers do not map onto tensor cores and run at about 10% of the "
            "CUDA cores' FP16 rate (2 x FP32 = a quarter of the tensor peak on Volta and Ampere Jetsons). "
            "Compared with NetsPresso's published TensorRT FP16 batch-1 latencies of ResNet-50 compressed to "
            "ratio 0.5 (docs/benchmarks/device_compat_matrix/tensorrt.md in Nota-NetsPresso/netspresso-trainer: "
            "3.24 ms on Orin Nano, 0.95 ms on AGX Orin), the estimates for the full ResNet-50 (3.3 and 1.1 ms) "
            "are about equal, so they are probably optimistic for full models, by up to about 2x. "
            "Unvalidated on a device: measure there and replace."
        ),
    ),
}


def host_execution_class() -> ExecutionClass:
    """The CPU class for ``host``: this CPU's fitted factors (``edgecnn devices --calibrate-host``), else the
    shipped ones; its ``source`` says which."""
    fitted = load_host_factors()
    if fitted is None:
        return EXECUTION_CLASSES["cpu"]
    cpu = fitted.get("cpu", {})
    return dataclasses.replace(
        EXECUTION_CLASSES["cpu"],
        name="cpu-fitted-on-this-host",
        compute_efficiency=EXECUTION_CLASSES["cpu"].compute_efficiency | dict(fitted["compute_efficiency"]),
        memory_efficiency=float(fitted["memory_efficiency"]),
        layer_overhead_us=float(fitted["layer_overhead_us"]),
        half_size_macs=float(fitted["half_size_macs"]),
        source=(
            f"fitted on this host ({cpu.get('model', '?')}, {cpu.get('isa', '?')}) at {fitted.get('fitted_at', '?')} "
            "by edgecnn devices --calibrate-host (ONNX Runtime microbenchmark, edgecnn/profile/calibrate.py)"
        ),
    )


def execution_class(device: Device, precision: str) -> ExecutionClass:
    """The execution class of ``device`` at ``precision``: tensor cores for FP16/INT8 from compute capability 7.0;
    for ``host``, this CPU's fitted factors where it was calibrated."""
    if device.kind == "host":
        return host_execution_class()
    if device.processor != "gpu":
        return EXECUTION_CLASSES["cpu"]
    capability = float(device.compute_capability or 0)
    if precision in ("fp16", "int8") and capability >= 7.0:
        return EXECUTION_CLASSES["gpu-tensor-cores"]
    return EXECUTION_CLASSES["gpu-cuda-cores"]


@dataclass
class LayerEstimate:
    name: str
    op_type: str
    kind: str
    compute_ms: float
    memory_ms: float
    ms: float
    bound: str


@dataclass
class LatencyEstimate:
    """Estimated latency of one graph on one device at its precision and batch size; milliseconds per batch."""

    device: str
    precision: str
    batch: int
    total_ms: float
    compute_bound_ms: float
    memory_bound_ms: float
    overhead_ms: float
    layers: list[LayerEstimate] = field(default_factory=list, repr=False)
    label: str = ESTIMATED_LABEL

    @property
    def throughput_per_s(self) -> float:
        return self.batch / (self.total_ms / 1e3) if self.total_ms else 0.0


def _fused_nodes(cost: GraphCost) -> set[str]:
    """Names of elementwise nodes folded into the convolution or matrix product that feeds them."""
    producer = {output: node for node in cost.nodes for output in node.outputs}
    readers: dict[str, int] = {}
    for node in cost.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    fused: set[str] = set()
    heads: set[str] = set()
    for node in cost.nodes:
        if node.kind in _COMPUTE_KINDS:
            heads.add(node.name)
            continue
        if node.kind not in _FUSABLE_KINDS or not node.counted:
            continue
        for name in node.inputs:
            source = producer.get(name)
            if source is not None and source.name in heads and readers.get(name, 0) == 1:
                fused.add(node.name)
                heads.add(node.name)
                break
    return fused


def _peak_flops(device: Device, precision: str) -> float:
    """The device's peak at ``precision``; FP8 without a native FP8 peak is refused, never costed at another peak."""
    if precision == "fp8" and device.peak("fp8") is None:
        raise UsageError(
            f"{device.id} has no FP8 (E4M3) tensor cores, so there is no FP8 estimate: TensorRT runs FP8 only on "
            "compute capability 8.9+ (Ada, Hopper, Blackwell such as Jetson Thor); profile it at int8 or fp16"
        )
    return float(device.peak_gflops.get(precision) or device.peak_gflops["fp32"]) * 1e9


def estimate_latency(cost: GraphCost, device: Device, klass: ExecutionClass | None = None) -> LatencyEstimate:
    """Per-layer and total estimated latency of ``cost`` (one precision, one batch) on ``device``.

    ``klass`` overrides the device's execution class (the benchmark fits factors with it).
    """
    klass = klass or execution_class(device, cost.precision)
    peak = _peak_flops(device, cost.precision)
    bandwidth = device.bandwidth_gbps * 1e9 * klass.memory_efficiency
    fused = _fused_nodes(cost)
    layers: list[LayerEstimate] = []
    compute_bound = memory_bound = overhead = 0.0
    for node in cost.nodes:
        if node.name in fused or node.kind in klass.free_kinds:
            layers.append(
                LayerEstimate(
                    node.name, node.op_type, node.kind, 0.0, 0.0, 0.0, "fused" if node.name in fused else "free"
                )
            )
            continue
        efficiency = klass.compute_efficiency.get(node.kind, klass.compute_efficiency["other"])
        size_factor = node.macs / (node.macs + klass.half_size_macs) if node.macs else 1.0
        flops = node.flops if node.counted else 0
        compute_s = flops / (peak * efficiency * size_factor) if flops else 0.0
        memory_s = node.bytes_moved / bandwidth
        layer_overhead_s = klass.layer_overhead_us * 1e-6
        seconds = max(compute_s, memory_s) + layer_overhead_s
        bound = "compute" if compute_s >= memory_s else "memory"
        if not node.counted:
            bound = "memory (uncounted op)"
        if bound == "compute":
            compute_bound += compute_s
        else:
            memory_bound += memory_s
        overhead += layer_overhead_s
        layers.append(
            LayerEstimate(node.name, node.op_type, node.kind, compute_s * 1e3, memory_s * 1e3, seconds * 1e3, bound)
        )
    return LatencyEstimate(
        device=device.id,
        precision=cost.precision,
        batch=cost.batch,
        total_ms=(compute_bound + memory_bound + overhead) * 1e3,
        compute_bound_ms=compute_bound * 1e3,
        memory_bound_ms=memory_bound * 1e3,
        overhead_ms=overhead * 1e3,
        layers=layers,
    )


def assumptions(devices: list[Device], precisions: list[str]) -> dict[str, Any]:
    """Everything the estimates rest on, for the JSON report: formula, factors, device figures and sources."""
    classes = {
        klass.name: klass
        for klass in (execution_class(device, precision) for device in devices for precision in precisions)
    }
    return {
        "label": ESTIMATED_LABEL,
        "convention": CONVENTION,
        "formula": (
            "layer_ms = max(FLOPs / (peak[precision] x compute_efficiency[kind] x MACs/(MACs + half_size_macs)), "
            "bytes / (bandwidth x memory_efficiency)) + layer_overhead; elementwise nodes right after a conv "
            "or matrix product are fused (0 ms), and the execution class's free_kinds (views, Q/DQ; on GPUs "
            "also concatenations and copies) cost nothing; total = sum over layers"
        ),
        "execution_classes": {name: asdict(classes[name]) for name in sorted(classes)},
        "notes": validation_notes(devices),
        "devices": {
            device.id: {
                "peak_gflops": device.peak_gflops,
                "bandwidth_gbps": device.bandwidth_gbps,
                "execution_class": {precision: execution_class(device, precision).name for precision in precisions},
                "sources": {
                    key: value
                    for key, value in device.sources.items()
                    if key.startswith(("peak_gflops", "bandwidth", "overhead", "memory"))
                },
            }
            for device in devices
        },
        "int8_derivation": (
            "zoo models at a precision they were not exported in are costed from their FP32 graph: FP16 = 2 bytes "
            "per float; INT8 = 1-byte activations and conv/matmul weights with an FP32 scale per output channel, "
            "INT32 biases, other parameters FP32"
        ),
        "uncounted_ops": (
            "ops without a cost rule contribute memory time only (their bytes are known, their arithmetic is not)"
        ),
    }


def validation_notes(devices: list[Device]) -> list[str]:
    """What the estimates for ``devices`` were checked against: which CPU factors ``host`` used, and which
    devices have no published on-device figure to test them (docs/profile.md has the tables)."""
    notes = []
    if any(device.kind == "host" for device in devices):
        klass = host_execution_class()
        if klass is EXECUTION_CLASSES["cpu"]:
            notes.append(
                "host: shipped CPU factors (fitted on a 2-core AVX-512 AMD EPYC; leave-one-family-out error in "
                "docs/profile.md); run 'edgecnn devices --calibrate-host' to fit this CPU's"
            )
        else:
            notes.append(f"host: CPU factors {klass.source}")
    unvalidated = [device.id for device in devices if device.kind == "raspberry-pi"]
    if unvalidated:
        notes.append(
            f"{', '.join(unvalidated)}: unvalidated: no published on-device latency has been checked against these "
            "estimates yet (they reuse the CPU factors fitted on an x86 host)"
        )
    return notes
