"""The optional parts of edgecnn and the pip extra that installs each.

``pip install edgecnn`` is the device side (ONNX, ONNX Runtime, TensorRT when JetPack has it): check,
compile, profile of ONNX files and export directories, eval, benchmark of existing artifacts, predict.
Building models and exporting them need PyTorch (``edgecnn[export]``), the digits reference set needs
scikit-learn (``edgecnn[data]``), plots need matplotlib (``edgecnn[plots]``). A command that reaches a
missing one says which extra to install, in one line.
"""

from __future__ import annotations

import importlib.util

from edgecnn.errors import EdgecnnError

__all__ = ["EXTRAS", "MissingExtraError", "available", "extra_for", "missing_extra", "require"]

EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("export", "torch"),
    "onnxscript": ("export", "onnxscript"),
    "onnxslim": ("export", "onnxslim"),
    "sklearn": ("data", "scikit-learn"),
    "matplotlib": ("plots", "matplotlib"),
}
"""Importable top-level module -> (the extra that installs it, its name on PyPI)."""


class MissingExtraError(EdgecnnError):
    """A part of edgecnn that needs an optional dependency which is not installed."""


def available(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it."""
    return importlib.util.find_spec(module) is not None


def extra_for(module: str) -> str | None:
    """The extra that installs the top-level ``module`` (``torch`` -> ``export``), None for a core dependency."""
    entry = EXTRAS.get(module.split(".")[0])
    return entry[0] if entry else None


def missing_extra(module: str, what: str) -> MissingExtraError:
    """The one-line error for ``what`` (``edgecnn export``) needing the missing ``module``."""
    extra, package = EXTRAS.get(module.split(".")[0], ("all", module))
    return MissingExtraError(f"{what} needs {package}: pip install 'edgecnn[{extra}]'")


def require(module: str, what: str) -> None:
    """Raise :class:`MissingExtraError` when ``module`` is not installed."""
    if not available(module):
        raise missing_extra(module, what)
