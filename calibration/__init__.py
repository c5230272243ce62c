"""Calibration data and INT8/FP8 post-training quantization to Q/DQ ONNX.

The Python API mirrors ``edgecnn quantize`` and ``edgecnn export --int8/--fp8``::

    from edgecnn.calibration import quantize_onnx, load_calibration
    result = quantize_onnx("exports/mobilenet_v2/mobilenet_v2.onnx", "mobilenet_v2.int8-cpu.onnx",
                           calibration="builtin", target="cpu", method="percentile")
    print(result.describe(), result.size_ratio)
    fp8 = quantize_onnx("exports/mobilenet_v2/mobilenet_v2.onnx", "mobilenet_v2.fp8-tensorrt.onnx",
                        precision="fp8", target="tensorrt")
"""

from edgecnn.calibration.data import (
    DEFAULT_SAMPLES,
    CalibrationSet,
    CalibrationWarning,
    Preprocessing,
    load_calibration,
)
from edgecnn.calibration.quantize import (
    DEFAULT_METHOD,
    FP8_PRESETS,
    PRESETS,
    TARGETS,
    QuantizationResult,
    QuantizationWarning,
    QuantizeStep,
    choose_target,
    cpu_session_optimization,
    preset_for,
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
    "QuantizeStep",
    "preset_for",
    "cpu_session_optimization",
    "quantize_for_timing",
    "PRESETS",
    "FP8_PRESETS",
    "TARGETS",
    "METHODS",
    "DEFAULT_METHOD",
    "DEFAULT_PERCENTILE",
]
