"""Export steps: PyTorch -> verified ONNX (FP32, FP16, ORT format), packaged with a manifest.

The Python API mirrors ``edgecnn export``::

    from edgecnn.export import export_model
    result = export_model("mobilenet_v2", fp16=True, output_dir="exports")

The names below load on first use (PEP 562), so ``edgecnn.export.tensorrt`` and the device-side commands
import without PyTorch.
"""

import importlib

_EXPORTS = {
    "ExportOptions": "edgecnn.export.pipeline",
    "ExportResult": "edgecnn.export.pipeline",
    "export_model": "edgecnn.export.pipeline",
    "export_many": "edgecnn.export.pipeline",
    "ModelSource": "edgecnn.export.source",
    "resolve_source": "edgecnn.export.source",
    "Verification": "edgecnn.export.verify",
    "load_weights": "edgecnn.export.weights",
    "read_state_dict": "edgecnn.export.weights",
    "FORMATS": "edgecnn.artifact.formats",
    "Format": "edgecnn.artifact.formats",
    "get_format": "edgecnn.artifact.formats",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgecnn.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
