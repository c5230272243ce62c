"""edgecnn: classic CNNs from PyTorch to edge devices (zoo, export, INT8, TensorRT, profiling)."""

from importlib.metadata import PackageNotFoundError, version

from edgecnn.registry import ModelSpec, get_model, get_spec, list_models, register_model, resolve_name

try:
    __version__ = version("edgecnn")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "ModelSpec", "get_model", "get_spec", "list_models", "register_model", "resolve_name"]
