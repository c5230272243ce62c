"""The device catalog: one data file (``data/devices.json``), every figure with its source, plus ``host``.

``host`` is this machine, measured on the spot: a float32 GEMM for peak GFLOP/s and a large copy for
memory bandwidth, run once per process.
"""
from __future__ import annotations

import difflib
import functools
import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from edgecnn.errors import UnknownNameError

__all__ = ["Device", "list_devices", "get_device", "resolve_devices", "measure_host"]

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    kind: str
    processor: str
    peak_gflops: dict[str, float]
    memory_mb: float
    bandwidth_gbps: float
    overhead_mb: float
    dla_cores: int = 0
    dla_version: str | None = None
    jetpack: str | None = None
    tensorrt: str | None = None
    compute_capability: str | None = None
    gpu: str = ""
    power_modes: str = ""
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def budget_bytes(self) -> int:
        """Memory a model may use by default: the device's RAM less its documented runtime overhead."""
        return int((self.memory_mb - self.overhead_mb) * 2**20)

    @property
    def tensorrt_major(self) -> int | None:
        return int(self.tensorrt.split(".")[0]) if self.tensorrt else None


@functools.cache
def _catalog() -> dict[str, Device]:
    raw = json.loads(resources.files("edgecnn.data").joinpath("devices.json").read_text())
    return {entry["id"]: Device(**entry) for entry in raw["devices"]}


def _timed_best(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def measure_host() -> Device:
    """This machine as a device: peak from a float32 GEMM (all cores), bandwidth from a 256 MB copy."""
    import numpy as np
    import torch

    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    seconds = _timed_best(lambda: torch.mm(a, b), 8)
    gflops = 2 * n**3 / seconds / 1e9
    source = np.ones(32 * 2**20, dtype=np.float64)
    target = np.empty_like(source)
    np.copyto(target, source)
    copy_seconds = _timed_best(lambda: np.copyto(target, source), 5)
    bandwidth = 2 * source.nbytes / copy_seconds / 1e9
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    return Device(
        id="host",
        name=f"this machine ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        kind="host",
        processor="cpu",
        peak_gflops={"fp32": round(gflops, 1), "fp16": round(gflops, 1), "int8": round(gflops, 1)},
        memory_mb=round(memory_mb),
        bandwidth_gbps=round(bandwidth, 1),
        overhead_mb=600,
        gpu="none: CPU through ONNX Runtime",
        sources={
            "peak_gflops.fp32": f"measured now: {n}x{n} float32 GEMM in torch, best of 8",
            "peak_gflops.fp16": "ONNX Runtime runs FP16 on x86 CPUs through FP32 kernels: FP32 rate",
            "peak_gflops.int8": "AVX2 without VNNI has no INT8 compute advantage (devices.md): FP32 rate",
            "bandwidth_gbps": "measured now: 256 MB numpy copy (read + write), best of 5",
            "overhead_mb": "estimate: Python + torch + ONNX Runtime resident size",
        },
    )


def list_devices(include_host: bool = True) -> list[Device]:
    devices = list(_catalog().values())
    return devices + [measure_host()] if include_host else devices


def get_device(device_id: str) -> Device:
    """One device by id; an unknown id raises with the close matches."""
    key = device_id.strip().lower()
    if key == "host":
        return measure_host()
    if key in _catalog():
        return _catalog()[key]
    choices = list(_catalog()) + ["host"] + sorted({d.kind for d in _catalog().values()})
    close = difflib.get_close_matches(key, choices, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run 'edgecnn devices' to see the catalog"
    raise UnknownNameError(f"unknown device {device_id!r}: {hint}")


def resolve_devices(selector: str) -> list[Device]:
    """A device id, or a kind ("jetson", "raspberry-pi") meaning every device of that kind, comma-separated."""
    devices: list[Device] = []
    for part in (p.strip() for p in selector.split(",") if p.strip()):
        kind = [d for d in _catalog().values() if d.kind == part.lower()]
        devices += kind if kind else [get_device(part)]
    return devices


def device_as_dict(device: Device) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(device)
