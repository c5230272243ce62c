"""Calibration data: images or arrays, preprocessed exactly as an export manifest's ``preprocessing`` block says.

Sources (:func:`load_calibration`): a directory (an ImageFolder tree or a flat folder; JPEG/PNG/BMP/WebP;
grayscale, RGB, RGBA and palette images), a ``.npy``/``.npz`` array, ``"builtin"`` (real photographs shipped
with edgecnn, see :mod:`edgecnn.calibration.builtin`) or ``"synthetic"`` (random inputs, with a warning).

A :class:`CalibrationSet` keeps the seeded sample as uint8 crops at the model's input size (150 KB per
224x224 RGB sample, 75 MB for 500) and normalizes one batch at a time, so float inputs never pile up.
Its ``sha256`` covers the preprocessed pixels and the preprocessing, and keys the calibration cache.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgecnn.errors import UsageError

__all__ = [
    "CalibrationWarning", "Preprocessing", "CalibrationSet", "load_calibration", "find_images",
    "IMAGE_EXTENSIONS", "DEFAULT_SAMPLES", "DEFAULT_SEED",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_SAMPLES = 200
DEFAULT_SEED = 0
ARRAY_KEYS = ("images", "inputs", "x", "data")



class CalibrationWarning(UserWarning):
    """Calibration went ahead, but with less or worse data than asked for."""


_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input: the manifest's ``preprocessing`` block, typed.

    Resize the shorter side to ``resize_shorter_side``, centre-crop ``input_size`` (padding with zeros where
    the resized image is smaller, as torchvision's CenterCrop does), scale to [0, 1], subtract ``mean`` and
    divide by ``std`` per channel, NCHW.
    """

    input_size: tuple[int, int]
    resize_shorter_side: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: str = "RGB"
    crop: str = "center"
    interpolation: str = "bilinear"
    scale: str = "1/255"
    layout: str = "NCHW"

    @property
    def channels(self) -> int:
        if self.channel_order == "RGB":
            return 3
        if self.channel_order == "grayscale":
            return 1
        return int(self.channel_order.split()[0])

    @classmethod
    def default(
        cls,
        input_size: tuple[int, int],
        in_chans: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> "Preprocessing":
        """ImageNet-style evaluation preprocessing: shorter side to size x 256/224, centre crop."""
        from edgecnn.registry import IMAGENET_MEAN, IMAGENET_STD

        height, width = input_size
        if mean is None:
            mean = IMAGENET_MEAN if in_chans == 3 else (0.5,) * in_chans
        if std is None:
            std = IMAGENET_STD if in_chans == 3 else (0.5,) * in_chans
        order = "RGB" if in_chans == 3 else "grayscale" if in_chans == 1 else f"{in_chans} channels"
        return cls(
            input_size=(int(height), int(width)),
            resize_shorter_side=int(round(min(height, width) * 256 / 224)),
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            channel_order=order,
        )

    @classmethod
    def from_manifest(cls, block: Mapping[str, Any], origin: str = "manifest.json") -> "Preprocessing":
        try:
            height, width = (int(v) for v in block["input_size"])
            preprocessing = cls(
                input_size=(height, width),
                resize_shorter_side=int(block.get("resize_shorter_side") or round(min(height, width) * 256 / 224)),
                mean=tuple(float(m) for m in block["mean"]),
                std=tuple(float(s) for s in block["std"]),
                channel_order=str(block.get("channel_order", "RGB")),
                crop=str(block.get("crop", "center")),
                interpolation=str(block.get("interpolation", "bilinear")),
                scale=str(block.get("scale", "1/255")),
                layout=str(block.get("layout", "NCHW")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise UsageError(f"{origin}: the preprocessing block is incomplete or malformed ({type(error).__name__}: {error}): re-run the export") from None
        preprocessing.check(origin)
        return preprocessing

    def check(self, origin: str = "preprocessing") -> None:
        if self.crop != "center":
            raise UsageError(f"{origin}: crop {self.crop!r} is not supported (only 'center')")
        if self.interpolation not in _INTERPOLATIONS:
            raise UsageError(f"{origin}: interpolation {self.interpolation!r} is not one of {', '.join(_INTERPOLATIONS)}")
        if self.scale not in ("1/255", "1"):
            raise UsageError(f"{origin}: scale {self.scale!r} is not supported ('1/255' or '1')")
        if self.layout != "NCHW":
            raise UsageError(f"{origin}: layout {self.layout!r} is not supported (only NCHW)")
        if len(self.mean) != self.channels or len(self.std) != self.channels or min(self.std) <= 0:
            raise UsageError(f"{origin}: mean/std must have one positive entry per channel ({self.channels})")

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "resize_shorter_side": self.resize_shorter_side,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
            "layout": self.layout,
        }

    def image_mode(self) -> str:
        if self.channels not in (1, 3):
            raise UsageError(
                f"the model takes {self.channels}-channel input; images give 1 (grayscale) or 3 (RGB) channels: "
                f"calibrate with a .npy/.npz array of shape (N, {self.channels}, {self.input_size[0]}, {self.input_size[1]})"
            )
        return "RGB" if self.channels == 3 else "L"

    def crop_image(self, image) -> np.ndarray:
        """A PIL image -> uint8 HxWxC at the input size: channel conversion, shorter-side resize, centre crop."""
        from PIL import Image

        mode = self.image_mode()
        if image.mode == "P":
            image = image.convert("RGBA")
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            image = Image.fromarray((255 * array / max(float(array.max()), 1.0)).astype(np.uint8), "L")
        image = image.convert(mode)
        width, height = image.size
        short = self.resize_shorter_side
        if width <= height:
            new_width, new_height = short, int(short * height / width)
        else:
            new_width, new_height = int(short * width / height), short
        if (new_width, new_height) != (width, height):
            image = image.resize((new_width, new_height), getattr(Image.Resampling, self.interpolation.upper()))
        pixels = np.asarray(image, dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        return _center_crop(pixels, self.input_size)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC crops -> float32 NCHW model inputs."""
        scale = np.float32(1 / 255) if self.scale == "1/255" else np.float32(1)
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        batch = images.transpose(0, 3, 1, 2).astype(np.float32) * scale
        return np.ascontiguousarray((batch - mean) / std, dtype=np.float32)


def _center_crop(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torchvision's CenterCrop on an HxWxC array: zero padding first where the image is smaller."""
    crop_height, crop_width = size
    height, width = pixels.shape[:2]
    if height < crop_height or width < crop_width:
        pad_top, pad_left = max(crop_height - height, 0) // 2, max(crop_width - width, 0) // 2
        padded = np.zeros((max(height, crop_height), max(width, crop_width), pixels.shape[2]), np.uint8)
        padded[pad_top:pad_top + height, pad_left:pad_left + width] = pixels
        pixels, (height, width) = padded, padded.shape[:2]
    top = int(round((height - crop_height) / 2.0))
    left = int(round((width - crop_width) / 2.0))
    return pixels[top:top + crop_height, left:left + crop_width]


@dataclass
class CalibrationSet:
    """A seeded sample of calibration inputs for one model input shape.

    Exactly one of ``images`` (uint8 NHWC crops, normalized per batch), ``inputs`` (float32 NCHW model
    inputs given as an array) or ``synthetic_count`` holds the samples.
    """

    source: str
    kind: str
    description: str
    preprocessing: Preprocessing
    requested: int
    seed: int
    available: int
    images: np.ndarray | None = None
    inputs: np.ndarray | None = None
    synthetic_count: int = 0
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        if self.images is not None:
            return len(self.images)
        if self.inputs is not None:
            return len(self.inputs)
        return self.synthetic_count

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.preprocessing.channels, *self.preprocessing.input_size)

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        """Model inputs (float32 NCHW) for the given sample indices."""
        indices = list(indices)
        if self.images is not None:
            return self.preprocessing.normalize(self.images[indices])
        if self.inputs is not None:
            return np.ascontiguousarray(self.inputs[indices], dtype=np.float32)
        return np.stack([
            np.random.default_rng([self.seed, index]).standard_normal(self.input_shape, dtype=np.float32)
            for index in indices
        ])

    def head(self, count: int) -> "CalibrationSet":
        """The first ``count`` samples as a set of their own."""
        return replace(
            self,
            images=None if self.images is None else self.images[:count],
            inputs=None if self.inputs is None else self.inputs[:count],
            synthetic_count=min(self.synthetic_count, count),
            warnings=[],
        )

    @cached_property
    def sha256(self) -> str:
        """Digest of the preprocessed samples and the preprocessing: the calibration half of a cache key."""
        digest = hashlib.sha256()
        digest.update(json.dumps({"kind": self.kind, "preprocessing": self.preprocessing.as_dict()}, sort_keys=True).encode())
        if self.images is not None:
            digest.update(np.ascontiguousarray(self.images).data)
        elif self.inputs is not None:
            for start in range(0, len(self.inputs), 64):
                digest.update(np.ascontiguousarray(self.inputs[start:start + 64], dtype=np.float32).data)
        else:
            digest.update(f"synthetic seed={self.seed} count={self.synthetic_count}".encode())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        """What the manifest and the CLI report about the set."""
        return {
            "source": self.source,
            "kind": self.kind,
            "description": self.description,
            "samples": len(self),
            "requested": self.requested,
            "available": self.available,
            "skipped_unreadable": self.skipped,
            "seed": self.seed,
            "sha256": self.sha256,
        }

    def describe(self) -> str:
        """One line: which set, how many samples (of how many asked), what was skipped."""
        text = f"{self.description}: {len(self)} samples"
        if len(self) < self.requested:
            text += f" (asked for {self.requested})"
        if self.skipped:
            text += f", {self.skipped} unreadable files skipped"
        return text


def _warn(calibration: CalibrationSet, message: str) -> None:
    calibration.warnings.append(message)
    warnings.warn(message, CalibrationWarning, stacklevel=3)


def _check_counts(calibration: CalibrationSet) -> CalibrationSet:
    if len(calibration) < calibration.requested:
        _warn(
            calibration,
            f"calibration set {calibration.source} has {len(calibration)} usable samples, fewer than the {calibration.requested} asked for: "
            "ranges rest on fewer samples",
        )
    return calibration


def find_images(directory: Path) -> list[Path]:
    """Image files under ``directory`` (recursively, so ImageFolder trees and flat folders both work), sorted."""
    return sorted(
        path for path in directory.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def _read_image(path: Path, preprocessing: Preprocessing) -> np.ndarray | None:
    """The preprocessed crop of one image file, or None when the file cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return preprocessing.crop_image(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _load_directory(directory: Path, preprocessing: Preprocessing, samples: int, seed: int) -> CalibrationSet:
    if not directory.exists():
        raise UsageError(f"calibration directory {directory} does not exist: give a folder of images, a .npy/.npz file, 'builtin' or 'synthetic'")
    preprocessing.image_mode()
    files = find_images(directory)
    if not files:
        others = sum(1 for p in directory.rglob("*") if p.is_file())
        found = f" (it holds {others} other files)" if others else " (it is empty)"
        raise UsageError(f"calibration directory {directory} has no {'/'.join(e[1:].upper() for e in IMAGE_EXTENSIONS)} images{found}")
    order = np.random.default_rng(seed).permutation(len(files))
    crops, skipped = [], []
    for index in order:
        crop = _read_image(files[index], preprocessing)
        if crop is None:
            skipped.append(str(files[index].relative_to(directory)))
            continue
        crops.append(crop)
        if len(crops) == samples:
            break
    if not crops:
        raise UsageError(f"none of the {len(files)} images in {directory} could be read ({len(skipped)} unreadable or corrupt, e.g. {skipped[0]})")
    classes = sorted({Path(name).parts[0] for name in map(str, (f.relative_to(directory) for f in files)) if len(Path(name).parts) > 1})
    layout = f"ImageFolder tree, {len(classes)} class folders" if classes else "flat folder"
    calibration = CalibrationSet(
        source=str(directory),
        kind="images",
        description=f"images from {directory} ({layout}, {len(files)} images)",
        preprocessing=preprocessing,
        requested=samples,
        seed=seed,
        available=len(files),
        images=np.stack(crops),
        skipped=len(skipped),
        skipped_files=skipped,
    )
    if skipped:
        _warn(calibration, f"skipped {len(skipped)} unreadable or corrupt image files in {directory} (first: {skipped[0]})")
    return _check_counts(calibration)


def _select_array(path: Path) -> tuple[np.ndarray, str]:
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), "array"
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"{path} is not a readable {path.suffix} file: {str(error).splitlines()[0][:200]}") from None
    with archive:
        keys = list(archive.files)
        if not keys:
            raise UsageError(f"{path} holds no arrays")
        key = keys[0] if len(keys) == 1 else next((k for k in ARRAY_KEYS if k in keys), None)
        if key is None:
            raise UsageError(f"{path} holds several arrays ({', '.join(keys)}): name the calibration array one of {', '.join(ARRAY_KEYS)}")
        try:
            return archive[key], key
        except ValueError as error:
            raise UsageError(f"{path}: array {key!r} cannot be read without pickle ({error})") from None


def _load_array(path: Path, preprocessing: Preprocessing, samples: int, seed: int) -> CalibrationSet:
    """Float arrays are model inputs (N, C, H, W) used as they are; uint8 arrays are images, preprocessed."""
    from PIL import Image

    if not path.is_file():
        raise UsageError(f"calibration file {path} does not exist")
    array, key = _select_array(path)
    channels, (height, width) = preprocessing.channels, preprocessing.input_size
    expected = (
        f"expected float32 model inputs of shape (N, {channels}, {height}, {width}) "
        "or uint8 images of shape (N, H, W) or (N, H, W, C)"
    )
    where = f"{path}" + (f" array {key!r}" if key != "array" else "")
    if array.ndim == 0 or len(array) == 0:
        raise UsageError(f"{where} holds no samples (shape {tuple(array.shape)}): {expected}")
    chosen = np.sort(np.random.default_rng(seed).permutation(len(array))[:samples])
    if np.issubdtype(array.dtype, np.floating):
        if array.ndim != 4 or tuple(array.shape[1:]) != (channels, height, width):
            raise UsageError(f"{where} has shape {tuple(array.shape)}: {expected}")
        inputs = np.ascontiguousarray(array[chosen], dtype=np.float32)
        if not np.isfinite(inputs).all():
            raise UsageError(f"{where} contains NaN or infinity")
        calibration = CalibrationSet(
            source=str(path), kind="array",
            description=f"preprocessed inputs from {path.name} ({len(array)} samples)",
            preprocessing=preprocessing, requested=samples, seed=seed, available=len(array), inputs=inputs,
        )
        return _check_counts(calibration)
    if array.dtype != np.uint8:
        raise UsageError(f"{where} has dtype {array.dtype}: {expected}")
    if array.ndim == 4 and array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3, 4)):
        raise UsageError(f"{where} has shape {tuple(array.shape)}: {expected}")
    image_channels = 1 if array.ndim == 3 else array.shape[-1]
    preprocessing.image_mode()
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[image_channels]
    crops = []
    for index in chosen:
        pixels = np.asarray(array[index])
        crops.append(preprocessing.crop_image(Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and image_channels == 1 else pixels, mode)))
    calibration = CalibrationSet(
        source=str(path), kind="images",
        description=f"uint8 images from {path.name} ({len(array)} images, {image_channels} channels)",
        preprocessing=preprocessing, requested=samples, seed=seed, available=len(array), images=np.stack(crops),
    )
    return _check_counts(calibration)


def _synthetic(preprocessing: Preprocessing, samples: int, seed: int) -> CalibrationSet:
    calibration = CalibrationSet(
        source="synthetic", kind="synthetic",
        description="synthetic standard-normal inputs",
        preprocessing=preprocessing, requested=samples, seed=seed, available=samples, synthetic_count=samples,
    )
    _warn(calibration, "calibrating on synthetic random data: the ranges are meaningless for accuracy; use real images (--calib DIR or the default 'builtin')")
    return calibration


def load_calibration(
    source: str | Path,
    *,
    preprocessing: Preprocessing | Mapping[str, Any],
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> CalibrationSet:
    """A seeded sample of ``samples`` calibration inputs from ``source``.

    ``source``: a directory of images (ImageFolder tree or flat), a ``.npy``/``.npz`` file, ``"builtin"`` or
    ``"synthetic"``. ``preprocessing``: a :class:`Preprocessing` or a manifest ``preprocessing`` block.
    Unreadable images are skipped and counted; fewer usable samples than asked is a
    :class:`CalibrationWarning`; no usable sample, a missing or empty directory, or arrays of the wrong
    shape raise :class:`~edgecnn.errors.UsageError`.
    """
    if not isinstance(preprocessing, Preprocessing):
        preprocessing = Preprocessing.from_manifest(preprocessing, "preprocessing")
    if samples < 1:
        raise UsageError(f"the number of calibration samples must be at least 1, got {samples}")
    name = str(source)
    if name == "builtin":
        from edgecnn.calibration.builtin import load_builtin

        return _check_counts(load_builtin(preprocessing, samples, seed))
    if name == "synthetic":
        return _synthetic(preprocessing, samples, seed)
    path = Path(source)
    if path.suffix.lower() in (".npy", ".npz"):
        return _load_array(path, preprocessing, samples, seed)
    if path.is_file():
        raise UsageError(f"calibration source {path} is a {path.suffix or 'plain'} file: give a directory of images, a .npy/.npz file, 'builtin' or 'synthetic'")
    return _load_directory(path, preprocessing, samples, seed)

