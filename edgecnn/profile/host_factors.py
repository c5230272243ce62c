"""This host's CPU efficiency factors, kept per CPU model and instruction set under the user cache.

``edgecnn devices --calibrate-host`` (:func:`edgecnn.profile.calibrate.calibrate_host`) fits them from a short
microbenchmark; :func:`edgecnn.profile.estimate.execution_class` uses them for ``host`` when a file for this
CPU exists, and the shipped factors otherwise. Keying by CPU model and instruction set (AVX-512, AVX2, NEON...)
keeps a home directory shared between machines from mixing them up.
"""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path
from typing import Any

from edgecnn.artifact.staging import write_bytes_atomic
from edgecnn.cache import cache_dir

__all__ = ["cpu_identity", "factors_path", "load_host_factors", "save_host_factors"]

_ISA_ORDER = (("avx512f", "avx512"), ("avx2", "avx2"), ("avx", "avx"), ("sse4_2", "sse4"))


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_identity(cpuinfo: str | None = None) -> dict[str, str]:
    """``{"model", "isa", "machine"}`` of this CPU: its model name and the widest vector instruction set it has."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    machine = platform.machine() or "unknown"
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu part") or platform.processor()
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    isa = next((name for flag, name in _ISA_ORDER if flag in flags), "")
    if not isa:
        isa = "neon" if {"asimd", "neon"} & flags or machine in ("aarch64", "arm64") else machine
    return {"model": model or machine, "isa": isa, "machine": machine}


def _key(identity: dict[str, str]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{identity['model']}-{identity['isa']}".lower()).strip("-")
    return slug or "unknown-cpu"


def factors_path(identity: dict[str, str] | None = None) -> Path:
    """Where this CPU's fitted factors live: ``<cache>/host_factors/<model>-<isa>.json``."""
    return cache_dir() / "host_factors" / f"{_key(identity or cpu_identity())}.json"


def load_host_factors(identity: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The factors fitted on this CPU (model and instruction set), or None when it was never calibrated."""
    path = factors_path(identity)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "compute_efficiency" in data else None


def save_host_factors(factors: dict[str, Any], identity: dict[str, str] | None = None) -> Path:
    """Write ``factors`` for this CPU (atomically) and return the file."""
    path = factors_path(identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(factors, indent=2) + "\n").encode())
    return path
