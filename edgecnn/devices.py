"""The device catalog: one data file (``data/devices.json``), every figure with its source, plus ``host``.

``host`` is this machine, measured on the spot: a float32 GEMM for peak GFLOP/s and a large copy for
memory bandwidth, run once per process.

A Jetson may run more than one JetPack release, and the release decides the TensorRT version (and with it
what ``check`` and ``compile`` accept, and whether TensorRT can use the DLA). Each device lists its
releases; :func:`resolve_jetpack` picks one for a command (``--jetpack``, default the newest).
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

from edgecnn.errors import UnknownNameError, UsageError
from edgecnn.extras import available

__all__ = [
    "Device",
    "JetpackRelease",
    "list_devices",
    "get_device",
    "resolve_devices",
    "resolve_jetpack",
    "device_as_dict",
    "measure_host",
    "fast_int8_note",
]


def _version_key(version: str) -> tuple[int, ...]:
    """``"7.2.2"`` -> (7, 2, 2), for ordering releases; the catalog holds only numeric versions."""
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class JetpackRelease:
    """One JetPack release on one device: the TensorRT (and CUDA) it gives, and whether TensorRT can use the DLA.

    ``dla`` is False on devices without DLA cores and on releases whose TensorRT lacks DLA support for that
    device; ``source`` says where the versions come from.
    """

    jetpack: str
    tensorrt: str
    cuda: str | None = None
    dla: bool = False
    source: str = ""

    @property
    def tensorrt_major(self) -> int:
        return int(self.tensorrt.split(".")[0])

    @property
    def label(self) -> str:
        """``JetPack 7.1 (TensorRT 10.13)``: how reports name the release they assumed."""
        return f"JetPack {self.jetpack} (TensorRT {self.tensorrt})"


@dataclass(frozen=True)
class Device:
    """One target. Peaks are dense, in GFLOP/s (GOP/s for int8), keyed by precision; a precision the hardware
    has no native path for (fp8 and fp4 before Blackwell) has no key, so ``peak`` returns None for it.

    ``jetpack_releases`` is ordered oldest first. ``jetpack`` and ``tensorrt`` keep their old meaning, the
    baseline release (the oldest listed, JetPack 6.2 on Orin) that commands assumed before ``--jetpack``
    existed; new code asks :func:`resolve_jetpack` instead.
    """

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
    jetpack_releases: tuple[JetpackRelease, ...] = ()

    def __post_init__(self) -> None:
        """Accept releases as catalog dicts, order them oldest first, and fill the baseline jetpack/tensorrt."""
        releases = tuple(r if isinstance(r, JetpackRelease) else JetpackRelease(**r) for r in self.jetpack_releases)
        releases = tuple(sorted(releases, key=lambda r: _version_key(r.jetpack)))
        object.__setattr__(self, "jetpack_releases", releases)
        if releases and self.jetpack is None:
            object.__setattr__(self, "jetpack", releases[0].jetpack)
        if releases and self.tensorrt is None:
            object.__setattr__(self, "tensorrt", releases[0].tensorrt)

    def peak(self, precision: str) -> float | None:
        """Dense peak in GFLOP/s (GOP/s) for ``precision``, or None where the hardware has no native path."""
        value = self.peak_gflops.get(precision)
        return float(value) if value is not None else None

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
    """This machine as a device: peak from a float32 GEMM (all cores; torch where installed, else numpy),
    bandwidth from a 256 MB copy."""
    import numpy as np

    n = 1024
    if available("torch"):
        import torch

        library, a, b, matmul = "torch", torch.randn(n, n), torch.randn(n, n), torch.mm
    else:
        generator = np.random.default_rng(0)
        a, b = generator.standard_normal((n, n), np.float32), generator.standard_normal((n, n), np.float32)
        library, matmul = "numpy", np.matmul
    matmul(a, b)
    seconds = _timed_best(lambda: matmul(a, b), 8)
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
            "peak_gflops.fp32": f"measured now: {n}x{n} float32 GEMM in {library}, best of 8",
            "peak_gflops.fp16": "ONNX Runtime runs FP16 on x86 CPUs through FP32 kernels: FP32 rate",
            "peak_gflops.int8": "AVX2 without VNNI has no INT8 compute advantage (devices.md): FP32 rate",
            "bandwidth_gbps": "measured now: 256 MB numpy copy (read + write), best of 5",
            "overhead_mb": f"estimate: Python + {library} + ONNX Runtime resident size",
        },
    )


def list_devices(include_host: bool = True) -> list[Device]:
    """Every catalog device in catalog order, then ``host`` (measured now) unless ``include_host`` is False."""
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


def _jetpack_parts(text: str) -> tuple[int, ...] | None:
    """``"7.x"``/``"7"`` -> (7,), ``"6.2"`` -> (6, 2); None for text that is not a JetPack version."""
    parts = text.strip().lower().removeprefix("jetpack").strip().split(".")
    while parts and parts[-1] in ("x", "*"):
        parts.pop()
    if not parts or not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def _same_line(release: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    """True when one version is a prefix of the other: 7 -> 7.2.2, and 6.2.1 -> the 6.2 line."""
    shorter = min(len(release), len(wanted))
    return release[:shorter] == wanted[:shorter]


def resolve_jetpack(device: Device | str, jetpack: str | None = None) -> JetpackRelease:
    """The JetPack release a command assumes for ``device``: ``jetpack`` if given, else the newest it supports.

    ``jetpack`` may name a release line: ``"7"`` or ``"7.x"`` picks the newest 7.x release, ``"6.2.1"`` picks
    the catalog's 6.2 line (6.2.x releases share a TensorRT). A device without JetPack, an unparsable
    version or a release the device does not run raises a one-line UsageError listing its releases.
    """
    device = get_device(device) if isinstance(device, str) else device
    releases = device.jetpack_releases
    if not releases:
        raise UsageError(f"{device.id} runs no JetPack ({device.processor} device): --jetpack applies to Jetsons")
    if jetpack is None:
        return releases[-1]
    listed = ", ".join(r.jetpack for r in releases)
    wanted = _jetpack_parts(jetpack)
    if wanted is None:
        raise UsageError(
            f"--jetpack {jetpack!r} is not a JetPack version such as 6.2 or 7.x: {device.id} runs {listed}"
        )
    matches = [r for r in releases if _same_line(_version_key(r.jetpack), wanted)]
    if not matches:
        raise UsageError(f"{device.id} does not run JetPack {jetpack}: it runs JetPack {listed}")
    return matches[-1]


def device_as_dict(device: Device) -> dict[str, Any]:
    """The device as plain data (JSON output, saved benchmark hosts); releases become a list of dicts."""
    from dataclasses import asdict

    data = asdict(device)
    data["jetpack_releases"] = [asdict(r) for r in device.jetpack_releases]
    return data


def fast_int8_note(device: Device) -> str | None:
    """What TensorRT does with INT8 on a GPU without fast INT8 (Jetson Nano, TX2), or None where INT8 is fast.

    TensorRT's ``platformHasFastInt8()`` is false on compute capability 5.3 (Maxwell: no INT8 instructions)
    and 6.2 (TX2); the TensorRT 8.x support matrix ("Hardware and Precision") lists no INT8 for either. The
    builder then has no INT8 kernels to choose, so Q/DQ layers run in FP32/FP16 with conversions around
    them: an INT8 model is not faster than FP16 there, often slower.
    """
    if device.processor != "gpu" or device.compute_capability not in ("5.3", "6.2"):
        return None
    return (
        f"{device.id}'s GPU (compute capability {device.compute_capability}) has no fast INT8: TensorRT's "
        "platformHasFastInt8() is false there and its builder has no INT8 kernels to pick, so the Q/DQ layers run "
        "in FP32/FP16 with conversions around them: expect no speed-up over FP16. Compile the FP16 model "
        "(--precision fp16) [TensorRT 8.x support matrix, Hardware and Precision]"
    )
