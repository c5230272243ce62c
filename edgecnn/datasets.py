"""Labelled images for evaluation and calibration: an ImageFolder tree or scikit-learn's bundled digits.

Every image goes through :class:`edgecnn.artifact.Preprocessing`, the export manifest's
``preprocessing`` block (resize the shorter side, centre crop, scale to [0, 1], normalize), so that
training, calibration and evaluation see exactly the tensors the exported model expects.

``digits`` is scikit-learn's copy of the UCI handwritten digits: 1,797 real 8x8 grayscale images of ten
classes, shipped inside scikit-learn and so available offline. It is split once, seeded and stratified,
into train (1,257), calibration (180) and test (360) images; the reference models are trained on the
train split, quantizers calibrate on the calibration split, and accuracy is measured on the test split
only, so calibration never sees an image it is scored on.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.artifact import Preprocessing, find_images
from edgecnn.errors import UsageError
from edgecnn.extras import missing_extra

__all__ = [
    "DIGITS",
    "DIGITS_SPLITS",
    "DIGITS_SPLIT_SEED",
    "LabelledImages",
    "Batch",
    "digits_split_indices",
    "digits_split_sha256",
    "load_digits",
    "load_image_folder",
    "load_labelled",
    "write_digits_split",
]

DIGITS = "digits"
DIGITS_SPLIT_SEED = 20_240_517
DIGITS_SPLITS = {"train": 1257, "calibration": 180, "test": 360}
"""Sizes of the fixed digits split (70% / 10% / 20% of 1,797, stratified by class)."""

_DIGITS_LEVELS = 16


@dataclass
class Batch:
    """Preprocessed images (float32 NCHW) and their labels."""

    images: np.ndarray
    labels: np.ndarray


@dataclass
class LabelledImages:
    """A labelled image set whose images are decoded and preprocessed lazily, batch by batch.

    ``items`` are image paths (a folder tree) or uint8 arrays (digits); ``labels[i]`` is the index in
    ``classes`` of ``items[i]``. Unreadable images are skipped while iterating and counted in ``skipped``.
    """

    name: str
    classes: tuple[str, ...]
    items: list[Any]
    labels: np.ndarray
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _open(self, item):
        from PIL import Image

        if isinstance(item, np.ndarray):
            return Image.fromarray(item)
        image = Image.open(item)
        image.load()
        return image

    def batches(self, preprocessing: Mapping[str, Any] | Preprocessing, batch_size: int = 64) -> Iterator[Batch]:
        """Preprocessed batches in a fixed order; unreadable images are skipped and recorded in ``skipped``."""
        from PIL import Image, UnidentifiedImageError

        if not isinstance(preprocessing, Preprocessing):
            preprocessing = Preprocessing.from_manifest(preprocessing)
        self.skipped = []
        crops, labels = [], []
        for item, label in zip(self.items, self.labels):
            try:
                crops.append(preprocessing.crop_image(self._open(item)))
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                self.skipped.append(str(item))
                continue
            labels.append(label)
            if len(crops) == batch_size:
                yield Batch(preprocessing.normalize(np.stack(crops)), np.asarray(labels, np.int64))
                crops, labels = [], []
        if crops:
            yield Batch(preprocessing.normalize(np.stack(crops)), np.asarray(labels, np.int64))
        if len(self.skipped) == len(self.items):
            raise UsageError(
                f"none of the {len(self.items)} images in {self.name} could be read: are they JPEG/PNG files?"
            )

    def arrays(self, preprocessing: Mapping[str, Any] | Preprocessing) -> Batch:
        """Every image at once: for small sets such as digits (a large tree should be iterated with :meth:`batches`)."""
        batches = list(self.batches(preprocessing, batch_size=256))
        return Batch(np.concatenate([b.images for b in batches]), np.concatenate([b.labels for b in batches]))


@functools.cache
def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 8x8 images (its 0..16 levels scaled to 0..255) and int64 labels."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise missing_extra("sklearn", "the digits set (it ships with scikit-learn)") from None
    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / _DIGITS_LEVELS)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def digits_split_indices(seed: int = DIGITS_SPLIT_SEED) -> dict[str, np.ndarray]:
    """Sorted indices of the train/calibration/test splits: stratified by class, fixed by ``seed``."""
    return {name: indices.copy() for name, indices in _split_indices(seed).items()}


@functools.cache
def _split_indices(seed: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    _, labels = _digits_images()
    everything = np.arange(len(labels))
    rest, test = train_test_split(everything, test_size=DIGITS_SPLITS["test"], stratify=labels, random_state=seed)
    train, calibration = train_test_split(
        rest, test_size=DIGITS_SPLITS["calibration"], stratify=labels[rest], random_state=seed
    )
    return {"train": np.sort(train), "calibration": np.sort(calibration), "test": np.sort(test)}


def digits_split_sha256(seed: int = DIGITS_SPLIT_SEED) -> str:
    """Fingerprint of the split: the reference weights record it, so a changed split cannot go unnoticed."""
    splits = digits_split_indices(seed)
    digest = hashlib.sha256()
    for name in ("train", "calibration", "test"):
        digest.update(name.encode() + splits[name].astype("<i4").tobytes())
    return digest.hexdigest()


def load_digits(split: str = "test") -> LabelledImages:
    """One split of the digits set (``train``, ``calibration``, ``test``) or ``all`` 1,797 images."""
    images, labels = _digits_images()
    if split == "all":
        chosen = np.arange(len(labels))
    elif split in DIGITS_SPLITS:
        chosen = digits_split_indices()[split]
    else:
        raise UsageError(f"unknown digits split {split!r}: choose train, calibration, test or all")
    return LabelledImages(
        name=f"digits ({split} split)" if split != "all" else "digits",
        classes=tuple(str(digit) for digit in range(10)),
        items=[images[index] for index in chosen],
        labels=labels[chosen],
    )


def load_image_folder(root: str | Path) -> LabelledImages:
    """An ImageFolder tree: ``root/<class>/<image>``; classes are the sub-folder names in sorted order."""
    root = Path(root)
    if not root.exists():
        raise UsageError(f"evaluation data {root} does not exist: give an image folder tree or 'digits'")
    if not root.is_dir():
        raise UsageError(
            f"evaluation data {root} is not a directory: give an image folder tree (ROOT/<class>/<image>) or 'digits'"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(
            f"{root} has no class folders: "
            "an evaluation tree needs one sub-folder of images per class (ROOT/<class>/<image>)"
        )
    items, labels = [], []
    for index, name in enumerate(classes):
        files = find_images(root / name)
        items += files
        labels += [index] * len(files)
    if not items:
        raise UsageError(
            f"{root} has class folders ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}) "
            "but no images in them"
        )
    return LabelledImages(name=str(root), classes=tuple(classes), items=items, labels=np.asarray(labels, np.int64))


def load_labelled(source: str | Path, split: str = "test") -> LabelledImages:
    """``digits`` (its ``split``) or an ImageFolder tree."""
    if str(source) == DIGITS:
        return load_digits(split)
    return load_image_folder(source)


def write_digits_split(
    split: str, destination: str | Path, preprocessing: Mapping[str, Any] | Preprocessing | None = None
) -> Path:
    """Write a digits split for tools that read files, such as the INT8 calibrator.

    ``destination`` ending in ``.npz``: the split preprocessed for a model (``preprocessing`` is an export
    manifest's block) as ``images`` (float32 NCHW) and ``labels`` (int64). Otherwise a folder tree
    ``destination/<digit>/<index>.png`` of the original 8x8 images, which any model's preprocessing reads.
    """
    from PIL import Image

    data = load_digits(split)
    destination = Path(destination)
    if destination.suffix == ".npz":
        if preprocessing is None:
            raise UsageError(
                "writing a preprocessed .npz needs the model's preprocessing (the manifest's 'preprocessing' block)"
            )
        arrays = data.arrays(preprocessing)
        destination.parent.mkdir(parents=True, exist_ok=True)
        np.savez(destination, images=arrays.images, labels=arrays.labels)
        return destination
    indices = digits_split_indices()[split] if split in DIGITS_SPLITS else np.arange(len(data))
    for index, image, label in zip(indices, data.items, data.labels):
        folder = destination / data.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    return destination
