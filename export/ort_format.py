"""ONNX -> ORT format, for minimal ONNX Runtime builds on small CPU devices.

Done the way onnxruntime.tools.convert_onnx_models_to_ort does it ("Fixed" style): a session with basic
optimizations saves the model in ORT format.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["to_ort_format"]


def to_ort_format(onnx_path: Path, ort_path: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(ort_path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
