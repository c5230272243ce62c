"""The built-in calibration set: real photographs shipped with edgecnn, so INT8 works offline out of the box.

``edgecnn/data/calibration_builtin.npz`` holds 500 augmented 160x160 JPEG crops of scikit-learn's two
bundled photographs (china.jpg and flower.jpg, CC BY 2.0; ``ATTRIBUTION`` in the file and in
:func:`builtin_attribution`), made once by ``scripts/make_builtin_calibration.py``. The crops are resized
and centre-cropped to the model's input like any other image, so the set serves every input size.
Two photographs are a narrow sample of the world: good enough for activation ranges of ImageNet-style
networks, no substitute for the user's own images (``--calib DIR``).
"""

from __future__ import annotations

import functools
import io
from importlib import resources

import numpy as np

from edgecnn.artifact import Preprocessing
from edgecnn.calibration.sets import CalibrationSet
from edgecnn.errors import EdgecnnError
from edgecnn.onnx_import import graph_outputs_info

__all__ = ["BUILTIN_FILE", "builtin_attribution", "builtin_size", "domain_note", "load_builtin"]

BUILTIN_FILE = "calibration_builtin.npz"
IMAGENET_CLASSES = (1000, 1001)
"""Class counts of ImageNet-1k classifiers (1001: TensorFlow's background class first)."""


@functools.cache
def _archive() -> dict[str, np.ndarray]:
    try:
        with resources.files("edgecnn.data").joinpath(BUILTIN_FILE).open("rb") as handle:
            with np.load(io.BytesIO(handle.read()), allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise EdgecnnError(
            f"the built-in calibration set ({BUILTIN_FILE}) is missing or damaged ({error}): reinstall edgecnn"
        ) from None


def builtin_attribution() -> str:
    return str(_archive()["attribution"])


def builtin_size() -> int:
    return len(_archive()["offsets"]) - 1


def load_builtin(preprocessing: Preprocessing, samples: int, seed: int) -> CalibrationSet:
    """A seeded sample of ``samples`` built-in crops, preprocessed for the model."""
    from PIL import Image

    archive = _archive()
    blob, offsets = archive["jpeg"], archive["offsets"]
    count = len(offsets) - 1
    preprocessing.image_mode()
    chosen = np.sort(np.random.default_rng(seed).permutation(count)[:samples])
    crops = []
    for index in chosen:
        with Image.open(io.BytesIO(blob[offsets[index] : offsets[index + 1]].tobytes())) as image:
            crops.append(preprocessing.crop_image(image))
    side = int(archive["crop_size"])
    return CalibrationSet(
        source="builtin",
        kind="images",
        description=(
            f"built-in set (augmented {side}x{side} crops of scikit-learn's sample photos "
            f"china.jpg and flower.jpg, {count} crops)"
        ),
        preprocessing=preprocessing,
        requested=samples,
        seed=seed,
        available=count,
        images=np.stack(crops),
    )


def domain_note(name: str, model) -> str | None:
    """A plain warning when the built-in photos calibrate a model they may not suit: anything but an
    ImageNet-style classifier (one [N, 1000] or [N, 1001] output). Two photographs of a temple and a flower
    give ranges for natural-image features; a detector's boxes, a text line or a medical scan see other
    statistics, so the user is told how to give the model's own data. It never refuses."""
    outputs = graph_outputs_info(model)
    if len(outputs) == 1 and len(outputs[0].shape) == 2 and outputs[0].shape[1] in IMAGENET_CLASSES:
        return None
    shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in outputs)
    return (
        f"{name} is not an ImageNet-style classifier (outputs {shapes}), but it is calibrated on the built-in "
        "photos (two natural photographs): its ranges may not suit its domain; give a sample of its own inputs "
        "with --calib DIR (images, preprocessed as declared) or --calib FILE.npz (model inputs)"
    )
