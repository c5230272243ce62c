"""The artifact contract: what an export directory holds and how every step reads and writes it.

Export writes artifacts; calibration, TensorRT, evaluation, profile and prediction read them. The contract
is the manifest (``manifest.json``: model, input, preprocessing, outputs, artifacts with their hashes), the
format table (one row per artifact kind), atomic staging (nothing half-written) and the preprocessing record.
"""

from edgecnn.artifact.formats import FORMATS, Format, artifact_name, get_format, model_name_of
from edgecnn.artifact.manifest import (
    MANIFEST_NAME,
    AddedArtifact,
    ArtifactStep,
    library_versions,
    manifest_json,
    package_versions,
    read_manifest,
    sha256_file,
)
from edgecnn.artifact.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    find_images,
    read_image,
)
from edgecnn.artifact.staging import cannot_write, staged_directory, staged_file, umask_mode, write_bytes_atomic

__all__ = [
    "FORMATS",
    "Format",
    "artifact_name",
    "get_format",
    "model_name_of",
    "MANIFEST_NAME",
    "AddedArtifact",
    "ArtifactStep",
    "library_versions",
    "manifest_json",
    "package_versions",
    "read_manifest",
    "sha256_file",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Preprocessing",
    "find_images",
    "read_image",
    "cannot_write",
    "staged_directory",
    "staged_file",
    "umask_mode",
    "write_bytes_atomic",
]
