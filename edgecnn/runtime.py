"""ONNX Runtime sessions, made in one place so that every command runs models with the same settings."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError

__all__ = ["create_session", "run_session"]


def create_session(model: str | Path | bytes, *, threads: int | None = None, optimization: str = "all"):
    """A CPU ONNX Runtime session. ``threads`` defaults to the machine's cores; ``optimization`` is basic/extended/all/disable."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EdgecnnError(f"ONNX Runtime cannot load the model: {first[:300]}") from None


def run_session(session, batch: np.ndarray) -> np.ndarray:
    """Run a single-input, single-output classifier session on a float32 batch."""
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
