"""Export steps: PyTorch -> verified ONNX (FP32, FP16, ORT format), packaged with a manifest.

The Python API mirrors ``edgecnn export``::

    from edgecnn.export import export_model
    result = export_model("mobilenet_v2", fp16=True, output_dir="exports")
"""
from edgecnn.export.formats import FORMATS, Format, get_format
from edgecnn.export.pipeline import ExportOptions, ExportResult, export_many, export_model
from edgecnn.export.source import ModelSource, resolve_source
from edgecnn.export.verify import Verification
from edgecnn.export.weights import load_weights, read_state_dict

__all__ = [
    "FORMATS", "Format", "get_format", "ExportOptions", "ExportResult", "export_model", "export_many",
    "ModelSource", "resolve_source", "Verification", "load_weights", "read_state_dict",
]
