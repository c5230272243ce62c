"""Calibration data and INT8 post-training quantization to Q/DQ ONNX.

The Python API mirrors ``edgecnn quantize`` and ``edgecnn export --int8``::

    from edgecnn.calibration import quantize_onnx, load_calibration
    result = quantize_onnx("exports/mobilenet_v2/mobilenet_v2.onnx", "mobilenet_v2.int8-cpu.onnx",
                           calibration="builtin", target="cpu", method="percentile")
    print(result.describe(), result.size_ratio)
"""

from edgecnn.calibration.data import (
    DEFAULT_SAMPLES,
    CalibrationSet,
    CalibrationWarning,
    Preprocessing,
    load_calibration,
)
from edgecnn.calibration.fp8 import Fp8Result, Fp8Step, quantize_fp8, quantize_fp8_export
from edgecnn.calibration.quantize import (
    DEFAULT_METHOD,
    PRESETS,
    TARGETS,
    Int8Step,
    QuantizationResult,
    QuantizationWarning,
    choose_target,
    cpu_session_optimization,
    quantize_export,
    quantize_for_timing,
    quantize_onnx,
    target_for_device,
)
from edgecnn.calibration.ranges import DEFAULT_PERCENTILE, METHODS

__all__ = [
    "CalibrationSet",
    "CalibrationWarning",
    "Preprocessing",
    "load_calibration",
    "DEFAULT_SAMPLES",
    "QuantizationResult",
    "QuantizationWarning",
    "quantize_onnx",
    "quantize_export",
    "target_for_device",
    "choose_target",
    "Int8Step",
    "Fp8Result",
    "Fp8Step",
    "quantize_fp8",
    "quantize_fp8_export",
    "cpu_session_optimization",
    "quantize_for_timing",
    "PRESETS",
    "TARGETS",
    "METHODS",
    "DEFAULT_METHOD",
    "DEFAULT_PERCENTILE",
]
