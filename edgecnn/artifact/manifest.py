"""The self-describing part of an artifact: hashes, versions and ``manifest.json``."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from edgecnn.errors import UsageError

__all__ = [
    "MANIFEST_NAME",
    "AddedArtifact",
    "ArtifactStep",
    "sha256_file",
    "package_versions",
    "library_versions",
    "read_manifest",
    "manifest_json",
]

MANIFEST_NAME = "manifest.json"


@dataclass
class AddedArtifact:
    """An artifact a later step made from an export's FP32 model, in the export's staging directory.

    ``key`` is its format key, ``entry`` its manifest entry; ``result`` is the step's own report (for INT8,
    a :class:`~edgecnn.calibration.QuantizationResult`), ``notes`` what the step wants the user told.
    """

    key: str
    path: Path
    entry: dict[str, Any]
    result: Any = None
    notes: tuple[str, ...] = ()


class ArtifactStep(Protocol):
    """A step that adds an artifact to an export while it is still staged, so the export stays all-or-nothing.

    Called with the staged FP32 ONNX file, the export's preprocessing block, its staging directory and whether
    the model's weights are random (a zoo model exported without weights: it has no task to keep).
    Steps are plain picklable objects: several models export in worker processes.
    """

    def __call__(
        self, fp32_path: Path, preprocessing: dict[str, Any], staging: Path, *, random_weights: bool = False
    ) -> AddedArtifact: ...


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions(packages) -> dict[str, str]:
    """Installed versions of ``packages``; those not installed are left out."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact depends on, for its manifest."""
    return {
        "python": platform.python_version(),
        **package_versions(("edgecnn", "torch", "onnx", "onnxruntime", "onnxslim")),
    }


def manifest_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise UsageError(
            f"{directory} is not an edgecnn export directory (no {MANIFEST_NAME}): run 'edgecnn export' first"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}): re-run the export") from None
