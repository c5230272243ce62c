"""The calibration cache: tensor ranges as JSON, keyed by model sha256 + calibration-set sha256 + method.

A cache whose key matches is reused without running the model; one whose key differs is refused (a
stale range table quietly applied to another model or data set is how INT8 accuracy goes wrong unnoticed).
Ranges do not depend on the target: the quantizer, not the calibrator, makes them symmetric for TensorRT,
so one cache serves both ``--target cpu`` and ``--target tensorrt``.

The ranges do not depend on the calibration memory budget or on how the samples were chunked
(:mod:`edgecnn.calibration.ranges`), so neither is part of the key.

ONNX Runtime's own cache (``quantize_static(calibration_cache_path=...)``) has no such key; edgecnn keeps
its keyed file and hands ORT the ranges through ORT's format (:func:`write_ort_cache`).

Besides the file a caller names, :func:`shared_cache_path` names one per key under edgecnn's cache
directory: ``edgecnn export --int8`` builds each export in a fresh staging directory, so a re-run finds
its ranges there rather than beside the previous INT8 file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.artifact.staging import write_bytes_atomic
from edgecnn.cache import cache_dir
from edgecnn.errors import UsageError

__all__ = ["CacheKey", "read_cache", "write_cache", "write_ort_cache", "shared_cache_path", "CACHE_FORMAT"]

CACHE_FORMAT = 1


@dataclass(frozen=True)
class CacheKey:
    model_sha256: str
    calibration_sha256: str
    method: str

    def differences(self, other: CacheKey) -> list[str]:
        labels = {"model_sha256": "model", "calibration_sha256": "calibration set", "method": "method"}
        return [
            f"{labels[name]} {getattr(other, name)[:12]} here vs {getattr(self, name)[:12]} in the cache"
            for name in labels
            if getattr(self, name) != getattr(other, name)
        ]


def shared_cache_path(key: CacheKey) -> Path:
    """The file for ``key`` under ``$EDGECNN_CACHE/calibration``, named by a digest of the whole key."""
    digest = hashlib.sha256(json.dumps(asdict(key), sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "calibration" / f"{digest}.json"


def _method_enum(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method.split("(")[0]]


def read_cache(path: str | Path, key: CacheKey):
    """The cached ranges (an ORT ``TensorsData``) when ``path`` exists and its key matches; None when absent."""
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    path = Path(path)
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text())
        stored = CacheKey(**payload["key"])
        ranges = payload["ranges"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise UsageError(
            f"{path} is not an edgecnn calibration cache ({type(error).__name__}): "
            "delete it or choose another --cache path"
        ) from None
    if payload.get("edgecnn_calibration_cache") != CACHE_FORMAT:
        raise UsageError(
            f"{path} was written by another edgecnn cache format ({payload.get('edgecnn_calibration_cache')}): "
            "delete it to recalibrate"
        )
    if stored != key:
        raise UsageError(
            f"calibration cache {path} does not match this run ({'; '.join(stored.differences(key))}): "
            "delete it, or give another --cache path, to recalibrate"
        )
    return TensorsData(
        _method_enum(key.method),
        {name: TensorData(lowest=np.float32(low), highest=np.float32(high)) for name, (low, high) in ranges.items()},
    )


def _scalar(value) -> float:
    """A per-tensor range bound (ORT gives 0-d or one-element arrays) as a float."""
    array = np.asarray(value, dtype=np.float32).reshape(-1)
    if array.size != 1:
        raise ValueError(f"expected one per-tensor range bound, got {array.size} values")
    return float(array[0])


def write_cache(path: str | Path, key: CacheKey, ranges, calibration: dict[str, Any]) -> None:
    """Write ``ranges`` (an ORT ``TensorsData``) with its key, atomically."""
    from onnxruntime import __version__ as ort_version

    path = Path(path)
    payload = {
        "edgecnn_calibration_cache": CACHE_FORMAT,
        "key": asdict(key),
        "calibration": calibration,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "onnxruntime": ort_version,
        "ranges": {name: [_scalar(data.range_value[0]), _scalar(data.range_value[1])] for name, data in ranges.items()},
    }
    try:
        write_bytes_atomic(path, (json.dumps(payload, indent=1) + "\n").encode())
    except OSError as error:
        raise UsageError(f"cannot write the calibration cache {path}: {error.strerror or error}") from None


def write_ort_cache(ranges, path: str | Path) -> None:
    """Ranges in ONNX Runtime's cache format, for ``quantize_static(calibration_cache_path=path)``."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    save_tensors_data(ranges, path)
