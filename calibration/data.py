"""Calibration data: images or arrays, preprocessed exactly as an export manifest's ``preprocessing`` block says.

Sources (:func:`load_calibration`): a directory (an ImageFolder tree or a flat folder; JPEG/PNG/BMP/WebP;
grayscale, RGB, RGBA and palette images), a ``.npy``/``.npz`` array, ``"builtin"`` (real photographs shipped
with edgecnn, see :mod:`edgecnn.calibration.builtin`) or ``"synthetic"`` (random inputs, with a warning).

The set itself is :class:`edgecnn.calibration.sets.CalibrationSet`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgecnn.artifact.preprocessing import (
    IMAGE_EXTENSIONS,
    Preprocessing,
    find_images,
    read_image,
)
from edgecnn.calibration.builtin import load_builtin
from edgecnn.calibration.sets import (
    CalibrationSet,
    CalibrationWarning,
    InputsSet,
    check_counts,
    warn,
)
from edgecnn.errors import UsageError, first_line

__all__ = [
    "CalibrationWarning",
    "Preprocessing",
    "CalibrationSet",
    "InputsSet",
    "load_calibration",
    "load_inputs",
    "feeds_images",
    "image_input",
    "find_images",
    "IMAGE_EXTENSIONS",
    "DEFAULT_SAMPLES",
    "DEFAULT_SEED",
]

DEFAULT_SAMPLES = 200
DEFAULT_SEED = 0
ARRAY_KEYS = ("images", "inputs", "x", "data")


def _load_directory(directory: Path, preprocessing: Preprocessing, samples: int, seed: int) -> CalibrationSet:
    if not directory.exists():
        raise UsageError(
            f"calibration directory {directory} does not exist: "
            "give a folder of images, a .npy/.npz file, 'builtin' or 'synthetic'"
        )
    preprocessing.image_mode()
    files = find_images(directory)
    if not files:
        others = sum(1 for p in directory.rglob("*") if p.is_file())
        found = f" (it holds {others} other files)" if others else " (it is empty)"
        raise UsageError(
            f"calibration directory {directory} has no "
            f"{'/'.join(e[1:].upper() for e in IMAGE_EXTENSIONS)} images{found}"
        )
    order = np.random.default_rng(seed).permutation(len(files))
    crops, skipped = [], []
    for index in order:
        crop = read_image(files[index], preprocessing)
        if crop is None:
            skipped.append(str(files[index].relative_to(directory)))
            continue
        crops.append(crop)
        if len(crops) == samples:
            break
    if not crops:
        raise UsageError(
            f"none of the {len(files)} images in {directory} could be read "
            f"({len(skipped)} unreadable or corrupt, e.g. {skipped[0]})"
        )
    classes = sorted(
        {
            Path(name).parts[0]
            for name in map(str, (f.relative_to(directory) for f in files))
            if len(Path(name).parts) > 1
        }
    )
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
        warn(
            calibration,
            f"skipped {len(skipped)} unreadable or corrupt image files in {directory} (first: {skipped[0]})",
        )
    return check_counts(calibration)


def _select_array(path: Path) -> tuple[np.ndarray, str]:
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), "array"
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"{path} is not a readable {path.suffix} file: {first_line(error)}") from None
    with archive:
        keys = list(archive.files)
        if not keys:
            raise UsageError(f"{path} holds no arrays")
        key = keys[0] if len(keys) == 1 else next((k for k in ARRAY_KEYS if k in keys), None)
        if key is None:
            raise UsageError(
                f"{path} holds several arrays ({', '.join(keys)}): "
                f"name the calibration array one of {', '.join(ARRAY_KEYS)}"
            )
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
            source=str(path),
            kind="array",
            description=f"preprocessed inputs from {path.name} ({len(array)} samples)",
            preprocessing=preprocessing,
            requested=samples,
            seed=seed,
            available=len(array),
            inputs=inputs,
        )
        return check_counts(calibration)
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
        crops.append(
            preprocessing.crop_image(
                Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and image_channels == 1 else pixels, mode)
            )
        )
    calibration = CalibrationSet(
        source=str(path),
        kind="images",
        description=f"uint8 images from {path.name} ({len(array)} images, {image_channels} channels)",
        preprocessing=preprocessing,
        requested=samples,
        seed=seed,
        available=len(array),
        images=np.stack(crops),
    )
    return check_counts(calibration)


def _synthetic(preprocessing: Preprocessing, samples: int, seed: int) -> CalibrationSet:
    calibration = CalibrationSet(
        source="synthetic",
        kind="synthetic",
        description="synthetic standard-normal inputs",
        preprocessing=preprocessing,
        requested=samples,
        seed=seed,
        available=samples,
        synthetic_count=samples,
    )
    warn(
        calibration,
        "calibrating on synthetic random data: the ranges are meaningless for accuracy; "
        "use real images (--calib DIR or the default 'builtin')",
    )
    return calibration


def feeds_images(source: object) -> bool:
    """Whether calibration ``source`` gives images to preprocess (builtin, a folder, a uint8 array), not model
    inputs used as they are (a float .npy/.npz, ``"synthetic"``, a loaded set): only images need preprocessing."""
    if isinstance(source, (CalibrationSet, InputsSet)) or str(source) == "synthetic":
        return False
    if str(source) == "builtin":
        return True
    path = Path(str(source))
    if path.suffix.lower() in (".npy", ".npz") and path.is_file():
        array, _ = _select_array(path)
        return array.dtype == np.uint8
    return True


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
        return check_counts(load_builtin(preprocessing, samples, seed))
    if name == "synthetic":
        return _synthetic(preprocessing, samples, seed)
    path = Path(source)
    if path.suffix.lower() in (".npy", ".npz"):
        return _load_array(path, preprocessing, samples, seed)
    if path.is_file():
        raise UsageError(
            f"calibration source {path} is a {path.suffix or 'plain'} file: "
            "give a directory of images, a .npy/.npz file, 'builtin' or 'synthetic'"
        )
    return _load_directory(path, preprocessing, samples, seed)


def load_inputs(
    source: str | Path, shapes: Mapping[str, Sequence[int]], *, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED
) -> InputsSet:
    """Calibration samples for a model whose inputs are not one image: a ``.npz`` holding one float array per
    input name (axis 0: samples; the rest: that input's per-sample shape ``shapes[name]``) or
    ``"synthetic"`` (seeded standard-normal samples, with a warning)."""
    shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
    names = ", ".join(shapes)
    if samples < 1:
        raise UsageError(f"the number of calibration samples must be at least 1, got {samples}")
    if str(source) == "synthetic":
        calibration = InputsSet(
            "synthetic", "synthetic", "synthetic standard-normal inputs", shapes, samples, seed, samples,
            synthetic_count=samples,
        )  # fmt: skip
        warn(
            calibration,
            "calibrating on synthetic random data: the ranges are meaningless for accuracy; "
            f"give a .npz with one array per input ({names})",
        )
        return calibration
    path = Path(source)
    if path.suffix.lower() != ".npz":
        raise UsageError(
            f"the model's inputs ({names}) are not one image: calibrate from a .npz holding one array per input "
            f"name or 'synthetic', not {source}"
        )
    if not path.is_file():
        raise UsageError(f"calibration file {path} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"{path} is not a readable .npz file: {first_line(error)}") from None
    with archive:
        missing = [name for name in shapes if name not in archive.files]
        if missing:
            raise UsageError(
                f"{path} has no array named {missing[0]!r}: it needs one array per model input ({names}), "
                f"it holds {', '.join(archive.files) or 'nothing'}"
            )
        arrays = {name: archive[name] for name in shapes}
    counts = {len(a) if a.ndim else 0 for a in arrays.values()}
    for name, array in arrays.items():
        if not np.issubdtype(array.dtype, np.floating) or tuple(array.shape[1:]) != shapes[name]:
            raise UsageError(
                f"{path} array {name!r} is {array.dtype} {tuple(array.shape)}: expected float samples of shape "
                f"(N, {', '.join(map(str, shapes[name]))})"
            )
    if len(counts) != 1 or 0 in counts:
        raise UsageError(f"{path}: every input array needs the same number of samples (at least 1), got {counts}")
    available = counts.pop()
    chosen = np.sort(np.random.default_rng(seed).permutation(available)[:samples])
    chosen_arrays = {name: np.ascontiguousarray(array[chosen], dtype=np.float32) for name, array in arrays.items()}
    if not all(np.isfinite(a).all() for a in chosen_arrays.values()):
        raise UsageError(f"{path} contains NaN or infinity")
    calibration = InputsSet(
        str(path), "arrays", f"model inputs from {path.name} ({available} samples)", shapes, samples, seed, available,
        arrays=chosen_arrays,
    )  # fmt: skip
    return check_counts(calibration)


def image_input(model: onnx.ModelProto, path: Path) -> tuple[str, list[int | None]]:
    """The name and NCHW dims (None where dynamic) of the model's one float32 image input; else a usage error."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"{path}: expected one image input, found {len(inputs)}")
    dims = [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in inputs[0].type.tensor_type.shape.dim
    ]
    if len(dims) != 4:
        raise UsageError(f"{path}: expected an NCHW image input, found {inputs[0].name} with {len(dims)} dimensions")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise UsageError(
            f"{path}: INT8 calibration needs a float32 model; input {inputs[0].name} is "
            f"{onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type)}"
        )
    return inputs[0].name, dims
