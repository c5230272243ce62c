"""Export steps: PyTorch -> verified ONNX (FP32, FP16) and compiled engines."""
