"""The format table: every artifact edgecnn can make or run, one row each.

One table drives file naming, manifest entries, ``--formats`` validation ("did you mean") and the
benchmark loop, in the manner of ultralytics' ``export_formats()``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import UnknownNameError

__all__ = ["Format", "FORMATS", "get_format", "artifact_name", "model_name_of"]


@dataclass(frozen=True)
class Format:
    key: str
    precision: str
    suffix: str
    runtime: str
    cpu: bool
    gpu: bool
    description: str
    cpu_optimization: str = "all"
    """The ONNX Runtime optimization level at which the artifact computes what its graph says on the CPU EP."""


FORMATS: tuple[Format, ...] = (
    Format("torch", "fp32", "", "torch", True, True, "PyTorch eager module (the reference)"),
    Format("onnx-fp32", "fp32", ".onnx", "onnxruntime", True, True, "ONNX, float32"),
    Format(
        "onnx-fp16",
        "fp16",
        ".fp16.onnx",
        "onnxruntime",
        True,
        True,
        "ONNX, float16 weights and compute, float32 inputs and outputs",
    ),
    Format(
        "onnx-int8-cpu",
        "int8",
        ".int8-cpu.onnx",
        "onnxruntime",
        True,
        False,
        "Q/DQ INT8 for CPUs: U8 activations, S8 per-channel weights",
    ),
    Format(
        "onnx-int8-tensorrt",
        "int8",
        ".int8-tensorrt.onnx",
        "tensorrt",
        False,
        True,
        "Q/DQ INT8 for TensorRT: symmetric S8, per-channel weights",
        "basic",
    ),
    Format(
        "onnx-fp8-tensorrt",
        "fp8",
        ".fp8-tensorrt.onnx",
        "tensorrt",
        False,
        True,
        "Q/DQ FP8 E4M3 (opset 19) for TensorRT on FP8 GPUs: per-tensor activations, per-channel weights",
        "basic",
    ),
    Format("ort", "fp32", ".ort", "onnxruntime", True, False, "ORT format for minimal ONNX Runtime builds"),
    Format("engine", "any", ".engine", "tensorrt", False, True, "serialized TensorRT engine"),
)

_BY_KEY = {fmt.key: fmt for fmt in FORMATS}


def get_format(key: str) -> Format:
    try:
        return _BY_KEY[key]
    except KeyError:
        close = difflib.get_close_matches(key, list(_BY_KEY), n=2)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose from {', '.join(_BY_KEY)}"
        raise UnknownNameError(f"unknown format {key!r}: {hint}") from None


def artifact_name(model_name: str, key: str) -> str:
    """File name of a model's artifact in format ``key``, e.g. ``mobilenet_v2.fp16.onnx``."""
    return model_name + get_format(key).suffix


def model_name_of(file_name: str) -> str:
    """The model name in an artifact's file name: the name less its format suffix (the longest that matches),
    so ``net.v1.int8-cpu.onnx`` -> ``net.v1`` and ``ch_model_v2.0_det.onnx`` -> ``ch_model_v2.0_det``."""
    suffixes = sorted((fmt.suffix for fmt in FORMATS if fmt.suffix), key=len, reverse=True)
    suffix = next((s for s in suffixes if file_name.endswith(s) and len(file_name) > len(s)), "")
    return file_name.removesuffix(suffix) if suffix else Path(file_name).stem
