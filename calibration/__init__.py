"""Calibration data and INT8 post-training quantization to Q/DQ ONNX."""
