"""Make edgecnn's built-in calibration set: augmented crops of scikit-learn's two bundled photographs.

Run once; the output is committed as ``edgecnn/data/calibration_builtin.npz``::

    python scripts/make_builtin_calibration.py

The source photographs are ``china.jpg`` and ``flower.jpg`` from ``sklearn.datasets.load_sample_images``
(427x640 each, both CC BY 2.0; see ATTRIBUTION below). Each crop is a seeded random-resized crop with
flips, small rotations, colour jitter, occasional greyscale and blur, stored as a JPEG so that the set
stays a few MB. The npz holds the JPEG bytes end to end (``jpeg``), their offsets (``offsets``), the
crop size and the attribution; :mod:`edgecnn.calibration.builtin` reads it.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

ATTRIBUTION = (
    "Built from scikit-learn's sample images (sklearn.datasets.load_sample_images). "
    "china.jpg: photo by danielbuechele, https://www.flickr.com/photos/danielbuechele/6061409035, "
    "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/). "
    "flower.jpg: photo by vultilion, https://www.flickr.com/photos/vultilion/6056698931, CC BY 2.0. "
    "Both retrieved 2011-08-21 by Robert Layton for scikit-learn. Crops, flips, rotations and colour "
    "changes by edgecnn's scripts/make_builtin_calibration.py."
)

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "edgecnn" / "data" / "calibration_builtin.npz"


def _random_box(rng: np.random.Generator, width: int, height: int) -> tuple[float, float, float, float]:
    """A torchvision-style RandomResizedCrop box: 4%-100% of the area, aspect ratio 3/4 to 4/3."""
    area = width * height
    for _ in range(20):
        target = area * rng.uniform(0.04, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w, h = np.sqrt(target * aspect), np.sqrt(target / aspect)
        if w <= width and h <= height:
            left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
            return left, top, w, h
    side = min(width, height)
    return (width - side) / 2, (height - side) / 2, side, side


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(shift * 255))) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def augmented_crop(photo: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    left, top, w, h = _random_box(rng, *photo.size)
    angle = rng.uniform(-20, 20) if rng.random() < 0.3 else 0.0
    cx, cy = left + w / 2, top + h / 2
    margin = 0.5 * np.hypot(w, h)
    fits = margin <= min(cx, cy, photo.size[0] - cx, photo.size[1] - cy)
    if angle and fits:
        # Rotate a larger region about the box centre, then cut the box out of it: no empty corners.
        region = photo.crop((int(cx - margin), int(cy - margin), int(cx + margin), int(cy + margin)))
        region = region.rotate(angle, resample=Image.BILINEAR)
        rx, ry = region.size[0] / 2, region.size[1] / 2
        crop = region.crop((int(rx - w / 2), int(ry - h / 2), int(rx + w / 2), int(ry + h / 2)))
    else:
        crop = photo.crop((int(left), int(top), int(left + w), int(top + h)))
    crop = crop.resize((size, size), Image.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.6, 1.4))
    crop = ImageEnhance.Contrast(crop).enhance(rng.uniform(0.6, 1.4))
    crop = ImageEnhance.Color(crop).enhance(rng.uniform(0.6, 1.4))
    if rng.random() < 0.5:
        crop = _shift_hue(crop, rng.uniform(-0.05, 0.05))
    if rng.random() < 0.1:
        crop = crop.convert("L").convert("RGB")
    if rng.random() < 0.2:
        crop = crop.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    return crop


def make_builtin(count: int, size: int, quality: int, seed: int) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(image) for image in load_sample_images().images]
    rng = np.random.default_rng(seed)
    blobs = []
    for index in range(count):
        crop = augmented_crop(photos[index % len(photos)], rng, size)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=quality, optimize=True)
        blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(blob) for blob in blobs]).astype(np.int64)
    return {
        "jpeg": np.concatenate(blobs),
        "offsets": offsets,
        "crop_size": np.array(size, dtype=np.int64),
        "seed": np.array(seed, dtype=np.int64),
        "attribution": np.array(ATTRIBUTION),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="number of crops")
    parser.add_argument("--size", type=int, default=160, help="crop side in pixels")
    parser.add_argument("--quality", type=int, default=88, help="JPEG quality")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    arrays = make_builtin(args.count, args.size, args.quality, args.seed)
    np.savez(args.output, **arrays)
    print(
        f"wrote {args.output}: {args.count} crops of {args.size}x{args.size}, {args.output.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
