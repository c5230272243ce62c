"""How an image becomes a model input: the ``preprocessing`` block of an artifact's manifest, typed.

Export writes it; calibration, evaluation and prediction read it, so every step sees exactly the tensors
the exported model expects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import UsageError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "Preprocessing", "find_images", "read_image"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input: the manifest's ``preprocessing`` block, typed.

    Resize the shorter side to ``resize_shorter_side``, centre-crop ``input_size`` (padding with zeros where
    the resized image is smaller, as torchvision's CenterCrop does), scale to [0, 1], subtract ``mean`` and
    divide by ``std`` per channel, NCHW.

    A manifest block with ``"declared": false`` records that nobody stated how images become inputs (an
    ONNX file exported without ``--mean/--std`` or ``--scale``): it keeps only the input size and layout,
    and :meth:`from_manifest` refuses it, so nothing feeds such a model guessed ImageNet tensors.
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
        if self.channel_order in ("RGB", "BGR"):
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
    ) -> Preprocessing:
        """ImageNet-style evaluation preprocessing: shorter side to size x 256/224, centre crop."""
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
    def declare(
        cls,
        input_size: tuple[int, int],
        in_chans: int,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        scale: str | None = None,
        channel_order: str | None = None,
        resize_shorter_side: int | None = None,
    ) -> Preprocessing:
        """Preprocessing a user stated for a model edgecnn did not build: nothing ImageNet-specific is assumed.

        ``scale`` defaults to ``1/255``; ``mean`` to 0 and ``std`` to 1 per channel; the shorter side is
        resized to the input's shorter side (no crop margin) unless ``resize_shorter_side`` says otherwise.
        """
        height, width = (int(v) for v in input_size)
        order = channel_order or ("RGB" if in_chans == 3 else "grayscale" if in_chans == 1 else f"{in_chans} channels")
        if channel_order in ("RGB", "BGR") and in_chans != 3:
            raise UsageError(f"--channel-order {channel_order} needs a 3-channel input; the model's has {in_chans}")
        preprocessing = cls(
            input_size=(height, width),
            resize_shorter_side=int(resize_shorter_side or min(height, width)),
            mean=tuple(float(m) for m in (mean if mean is not None else (0.0,) * in_chans)),
            std=tuple(float(s) for s in (std if std is not None else (1.0,) * in_chans)),
            channel_order=order,
            scale=scale or "1/255",
        )
        if preprocessing.resize_shorter_side < min(height, width):
            raise UsageError(
                f"--resize {preprocessing.resize_shorter_side} is smaller than the input's shorter side "
                f"{min(height, width)}: give at least {min(height, width)}"
            )
        preprocessing.check("the declared preprocessing")
        return preprocessing

    @staticmethod
    def unknown(input_size: tuple[int, int] | None, layout: str | None = "NCHW") -> dict[str, Any]:
        """The manifest block for a model whose preprocessing nobody declared."""
        return {
            "declared": False,
            "input_size": list(input_size) if input_size else None,
            "layout": layout,
            "note": "not declared: re-export with --mean/--std (or --scale) and --channel-order to evaluate or "
            "calibrate from images",
        }

    @classmethod
    def from_manifest(cls, block: Mapping[str, Any], origin: str = "manifest.json") -> Preprocessing:
        if block and block.get("declared") is False:
            raise UsageError(
                f"{origin}: the model's preprocessing was not declared, so images cannot be turned into its inputs: "
                "re-export it with --mean R,G,B --std R,G,B (or --scale 1/255) and --channel-order RGB|BGR"
            )
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
            raise UsageError(
                f"{origin}: the preprocessing block is incomplete or malformed "
                f"({type(error).__name__}: {error}): re-run the export"
            ) from None
        preprocessing.check(origin)
        return preprocessing

    def check(self, origin: str = "preprocessing") -> None:
        if self.crop != "center":
            raise UsageError(f"{origin}: crop {self.crop!r} is not supported (only 'center')")
        if self.interpolation not in _INTERPOLATIONS:
            raise UsageError(
                f"{origin}: interpolation {self.interpolation!r} is not one of {', '.join(_INTERPOLATIONS)}"
            )
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
                "calibrate with a .npy/.npz array of shape "
                f"(N, {self.channels}, {self.input_size[0]}, {self.input_size[1]})"
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
        if self.channel_order == "BGR":
            pixels = pixels[:, :, ::-1]
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
        padded[pad_top : pad_top + height, pad_left : pad_left + width] = pixels
        pixels, (height, width) = padded, padded.shape[:2]
    top = int(round((height - crop_height) / 2.0))
    left = int(round((width - crop_width) / 2.0))
    return pixels[top : top + crop_height, left : left + crop_width]


def find_images(directory: Path) -> list[Path]:
    """Image files under ``directory`` (recursively, so ImageFolder trees and flat folders both work), sorted."""
    return sorted(
        path
        for path in directory.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def read_image(path: Path, preprocessing: Preprocessing) -> np.ndarray | None:
    """The preprocessed crop of one image file, or None when the file cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return preprocessing.crop_image(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
