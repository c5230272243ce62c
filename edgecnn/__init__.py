"""edgecnn: classic CNNs from PyTorch to edge devices (zoo, export, INT8, TensorRT, profiling).

``import edgecnn`` does not import PyTorch: the zoo's names (``get_model``, ``list_models``, ...) and
``load`` (an exported model, ready to predict) are loaded on first use (PEP 562), so the device side runs
from the torch-free core install.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgecnn")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "ModelSpec": "edgecnn.registry",
    "get_model": "edgecnn.registry",
    "get_spec": "edgecnn.registry",
    "list_models": "edgecnn.registry",
    "register_model": "edgecnn.registry",
    "resolve_name": "edgecnn.registry",
    "load": "edgecnn.predict",
    "Predictor": "edgecnn.predict",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
