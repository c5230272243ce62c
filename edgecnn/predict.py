"""Run an exported model on images: the artifact's preprocessing, the best backend here, top-k or output figures.

``edgecnn.load(ARTIFACT)`` takes an export directory, an ONNX file or a TensorRT engine (with its sidecar)
and returns a :class:`Predictor`. The backend is the TensorRT engine when there is one, TensorRT is
installed and the engine's sidecar names this TensorRT version; otherwise ONNX Runtime, with the CUDA
execution provider where its build has one (:func:`edgecnn.runtime.best_providers`). Inputs are image files,
folders of images, or ``.npy`` arrays: float32 arrays already shaped like the model input are fed as they
are, uint8 images (N, H, W[, C]) are preprocessed like image files. Images are preprocessed as the
manifest records (:class:`edgecnn.artifact.Preprocessing`); where it is unknown (an ONNX file without a
manifest) the caller must give the mean, std and input size, since a guess would give confident nonsense.

A classifier (one output shaped [N, classes]) reports its top-k classes, named from ``labels`` or, for a zoo
model's 1,000 ImageNet classes, from ``edgecnn/data/imagenet_classes.txt`` (torchvision 0.29.1's
``_IMAGENET_CATEGORIES``, BSD-3-Clause); any other model reports each output's shape and statistics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.artifact import MANIFEST_NAME, Preprocessing, find_images, read_image, read_manifest
from edgecnn.errors import EdgecnnError, UsageError
from edgecnn.export.tensorrt.engine import installed_tensorrt, read_sidecar
from edgecnn.export.tensorrt.runner import EngineRunner
from edgecnn.onnx_facts import load_onnx
from edgecnn.runtime import best_providers, cpu_session_optimization, create_session

__all__ = [
    "IMAGENET_CLASSES_FILE",
    "Prediction",
    "PredictionReport",
    "Predictor",
    "imagenet_classes",
    "load",
    "read_labels",
]

IMAGENET_CLASSES_FILE = "imagenet_classes.txt"
_ONNX_SUFFIXES = (".onnx", ".ort")
_FORMAT_PREFERENCE = ("onnx-fp32", "onnx-fp16", "onnx-int8-cpu", "onnx-int8-tensorrt", "ort")


def imagenet_classes() -> list[str]:
    """ImageNet-1k's class names in index order (torchvision's list), shipped for the zoo's classifiers."""
    return resources.files("edgecnn.data").joinpath(IMAGENET_CLASSES_FILE).read_text().splitlines()


def read_labels(path: str | Path) -> list[str]:
    """Class names from a text file, one per line in class-index order (blank lines at the end ignored)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"labels file {path} does not exist: give a text file with one class name per line")
    names = path.read_text().rstrip("\n").splitlines()
    return [name.strip() for name in names]


@dataclass
class Prediction:
    """What the model gave for one input: top-k (index, name, probability) for a classifier, else each
    output's shape and statistics."""

    input: str
    top: list[dict[str, Any]] | None = None
    outputs: dict[str, dict[str, Any]] | None = None


@dataclass
class PredictionReport:
    """Predictions for every input, with the backend that ran them and how long it took."""

    artifact: str
    model: str
    backend: str
    batch_size: int
    inputs: int
    latency_ms_per_batch: float
    latency_ms_per_input: float
    seconds: float
    predictions: list[Prediction]
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("arrays")
        return data


def _preprocessing_known(block: Any) -> bool:
    return isinstance(block, Mapping) and bool(block) and block.get("known", True) is not False


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities: the outputs themselves where they already are (non-negative rows summing to 1)."""
    if logits.min() >= 0 and np.allclose(logits.sum(axis=1), 1.0, atol=1e-3):
        return logits
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _statistics(array: np.ndarray) -> dict[str, Any]:
    values = array.astype(np.float64)
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "min": float(values.min()) if values.size else None,
        "max": float(values.max()) if values.size else None,
        "mean": float(values.mean()) if values.size else None,
        "std": float(values.std()) if values.size else None,
    }


class _OnnxRuntimeBackend:
    def __init__(self, path: Path, optimization: str, threads: int | None):
        import onnxruntime as ort

        self.session = create_session(path, threads=threads, optimization=optimization, providers=best_providers())
        self.input = self.session.get_inputs()[0]
        self.outputs = [o.name for o in self.session.get_outputs()]
        provider = self.session.get_providers()[0].removesuffix("ExecutionProvider")
        self.name = f"onnxruntime {ort.__version__} ({provider})"

    @property
    def input_name(self) -> str:
        return self.input.name

    @property
    def input_shape(self) -> list[int | None]:
        return [d if isinstance(d, int) and d > 0 else None for d in self.input.shape]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(None, {self.input.name: batch})))


class _TensorRTBackend:
    def __init__(self, path: Path):
        self.runner = EngineRunner(path)
        if len(self.runner.inputs) != 1:
            raise UsageError(f"{path.name} has {len(self.runner.inputs)} inputs: predict feeds one image input")
        self.input_name = self.runner.inputs[0]
        self.outputs = list(self.runner.outputs)
        self.name = f"tensorrt {self.runner.version}"

    @property
    def input_shape(self) -> list[int | None]:
        return [d if d > 0 else None for d in self.runner.input_shape(self.input_name)]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner.run({self.input_name: batch})


@dataclass
class _Resolved:
    onnx: Path | None
    engine: Path | None
    manifest: Mapping[str, Any] | None
    optimization: str
    notes: list[str]


def _manifest_near(path: Path) -> Mapping[str, Any] | None:
    return read_manifest(path.parent) if (path.parent / MANIFEST_NAME).is_file() else None


def _entry_optimization(manifest: Mapping[str, Any] | None, path: Path) -> str:
    entry = next((a for a in (manifest or {}).get("artifacts", []) if a.get("file") == path.name), None)
    level = ((entry or {}).get("quantization") or {}).get("onnxruntime_cpu_optimization")
    return level or (cpu_session_optimization(path) if path.suffix == ".onnx" else "all")


def _engine_usable(engine: Path, notes: list[str]) -> bool:
    """Whether TensorRT is installed here and the engine's sidecar names this version; why not goes in ``notes``."""
    version = installed_tensorrt()
    if version is None:
        notes.append(f"{engine.name} not used: TensorRT is not installed here")
        return False
    sidecar = read_sidecar(engine)
    if sidecar is None or str(sidecar.get("tensorrt")) != version:
        built = sidecar.get("tensorrt") if sidecar else "an unknown version (no sidecar)"
        notes.append(f"{engine.name} not used: built by TensorRT {built}, this is {version}")
        return False
    return True


def _resolve(artifact: Path, format_key: str | None) -> _Resolved:
    notes: list[str] = []
    if not artifact.exists():
        raise UsageError(f"artifact {artifact} does not exist: give an export directory, an ONNX file or an engine")
    if artifact.is_dir():
        manifest = read_manifest(artifact)
        entries = {a["format"]: artifact / a["file"] for a in manifest.get("artifacts", []) if "format" in a}
        if format_key is not None:
            if format_key not in entries:
                raise UsageError(
                    f"{artifact} has no {format_key} artifact: it has {', '.join(entries) or 'none'} "
                    f"(see {MANIFEST_NAME})"
                )
            chosen = entries[format_key]
            if chosen.suffix == ".engine":
                return _Resolved(None, chosen, manifest, "all", notes)
            return _Resolved(chosen, None, manifest, _entry_optimization(manifest, chosen), notes)
        engines = sorted(p for p in artifact.glob("*.engine") if p.with_name(p.name + ".json").is_file())
        onnx = next(
            (entries[k] for k in _FORMAT_PREFERENCE if k in entries and entries[k].suffix in _ONNX_SUFFIXES), None
        )
        if onnx is None:
            raise UsageError(f"{artifact}/{MANIFEST_NAME} lists no ONNX model: re-run the export")
        engine = next((e for e in engines if _engine_usable(e, notes)), None)
        return _Resolved(onnx, engine, manifest, _entry_optimization(manifest, onnx), notes)
    if artifact.suffix == ".engine":
        sidecar = read_sidecar(artifact)
        source = artifact.parent / sidecar["source_onnx"]["file"] if sidecar else None
        manifest = _manifest_near(artifact)
        onnx = source if source is not None and source.is_file() else None
        engine = artifact if _engine_usable(artifact, notes) else None
        if engine is None and onnx is None:
            raise EdgecnnError(f"{notes[-1]}, and the ONNX model it was built from is not beside it")
        return _Resolved(onnx, engine, manifest, _entry_optimization(manifest, onnx) if onnx else "all", notes)
    if artifact.suffix not in _ONNX_SUFFIXES:
        raise UsageError(f"{artifact} is not an export directory, an ONNX file or a TensorRT engine (.engine)")
    manifest = _manifest_near(artifact)
    return _Resolved(artifact, None, manifest, _entry_optimization(manifest, artifact), notes)


def _preprocessing(
    manifest: Mapping[str, Any] | None,
    input_shape: list[int | None],
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    input_size: tuple[int, int] | None,
) -> Preprocessing | None:
    """The manifest's preprocessing with the caller's overrides, or None when neither says it."""
    block = (manifest or {}).get("preprocessing")
    if _preprocessing_known(block):
        preprocessing = Preprocessing.from_manifest(block)
        if input_size is not None:
            preprocessing = replace(
                preprocessing,
                input_size=input_size,
                resize_shorter_side=int(round(min(input_size) * 256 / 224)),
            )
        if mean is not None or std is not None:
            preprocessing = replace(
                preprocessing,
                mean=tuple(mean) if mean is not None else preprocessing.mean,
                std=tuple(std) if std is not None else preprocessing.std,
            )
        preprocessing.check("--mean/--std/--input-size")
        return preprocessing
    if mean is None or std is None:
        return None
    channels = input_shape[1] if len(input_shape) == 4 and input_shape[1] else len(mean)
    size = input_size or (tuple(input_shape[2:4]) if len(input_shape) == 4 and all(input_shape[2:4]) else None)
    if size is None:
        return None
    preprocessing = Preprocessing.default(size, channels, mean, std)
    preprocessing.check("--mean/--std/--input-size")
    return preprocessing


class Predictor:
    """An exported model ready to run on images: ``predictor.predict(["cat.jpg"])`` -> :class:`PredictionReport`."""

    def __init__(
        self,
        artifact: Path,
        resolved: _Resolved,
        *,
        labels: Sequence[str] | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        input_size: tuple[int, int] | None,
        threads: int | None,
        backend: str,
    ):
        self.artifact = artifact
        self.manifest = resolved.manifest
        self.notes = list(resolved.notes)
        self.model = ((self.manifest or {}).get("model") or {}).get("name") or artifact.name.split(".")[0]
        if ((self.manifest or {}).get("model") or {}).get("randomly_initialized"):
            self.notes.append(
                f"{self.model} was exported with randomly initialized weights (no --weights): its predictions mean "
                "nothing; export trained weights with edgecnn export MODEL --weights CKPT"
            )
        if backend == "tensorrt" and resolved.engine is None:
            raise EdgecnnError(
                "; ".join(self.notes) or f"{artifact} has no TensorRT engine: build one with edgecnn compile"
            )
        if resolved.engine is not None and backend != "onnxruntime":
            self.backend: _OnnxRuntimeBackend | _TensorRTBackend = _TensorRTBackend(resolved.engine)
            self.notes += self.backend.runner.warnings
            self.file = resolved.engine
        else:
            self.backend = _OnnxRuntimeBackend(resolved.onnx, resolved.optimization, threads)
            self.file = resolved.onnx
        self.preprocessing = _preprocessing(self.manifest, self.backend.input_shape, mean, std, input_size)
        self.labels = list(labels) if labels is not None else self._default_labels()

    def _default_labels(self) -> list[str] | None:
        model = (self.manifest or {}).get("model") or {}
        if model.get("origin") == "zoo" and model.get("num_classes") == 1000:
            return imagenet_classes()
        return None

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def input_shape(self) -> list[int | None]:
        return self.backend.input_shape

    def _require_preprocessing(self) -> Preprocessing:
        if self.preprocessing is None:
            raise UsageError(
                f"the preprocessing of {self.artifact} is unknown (no {MANIFEST_NAME} records it): give --mean and "
                "--std (and --input-size when the model's input size is dynamic), or a .npy of model inputs"
            )
        return self.preprocessing

    def _crop_array(self, images: np.ndarray) -> np.ndarray:
        from PIL import Image

        preprocessing = self._require_preprocessing()
        return np.stack([preprocessing.crop_image(Image.fromarray(image)) for image in images])

    def inputs(self, sources: Sequence[str | Path]) -> Iterator[tuple[str, np.ndarray | None]]:
        """(name, one model input C,H,W float32, or None when unreadable) per image file, folder image or array row."""
        for source in map(Path, sources):
            if not source.exists():
                raise UsageError(f"input {source} does not exist: give image files, a folder of images or a .npy")
            if source.suffix == ".npy":
                yield from self._array_inputs(source)
                continue
            files = find_images(source) if source.is_dir() else [source]
            if source.is_dir() and not files:
                raise UsageError(f"{source} has no images (.jpg, .jpeg, .png, .bmp, .webp)")
            preprocessing = self._require_preprocessing()
            for path in files:
                crop = read_image(path, preprocessing)
                yield str(path), None if crop is None else preprocessing.normalize(crop[None])[0]

    def _array_inputs(self, path: Path) -> Iterator[tuple[str, np.ndarray]]:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise UsageError(f"{path} is not a readable .npy array ({error})") from None
        expected = self.input_shape[1:]
        if array.dtype == np.uint8:
            single = array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3))
            images = array[None] if single else array
            if images.ndim == 4 and images.shape[-1] == 1:
                images = images[..., 0]
            if images.ndim not in (3, 4):
                raise UsageError(f"{path} has shape {list(array.shape)}: uint8 images are (N, H, W) or (N, H, W, C)")
            batch = self._require_preprocessing().normalize(self._crop_array(images))
        elif array.ndim == len(expected) + 1 or array.ndim == len(expected):
            batch = array[None] if array.ndim == len(expected) else array
            fixed = [(got, want) for got, want in zip(batch.shape[1:], expected) if want is not None and got != want]
            if fixed:
                raise UsageError(
                    f"{path} holds arrays of shape {list(batch.shape[1:])}; the model takes "
                    f"{['N', *[d if d is not None else '?' for d in expected]]}: give model inputs, or uint8 images"
                )
            batch = batch.astype(np.float32)
        else:
            raise UsageError(
                f"{path} has shape {list(array.shape)}: "
                "give float32 model inputs (N, C, H, W) or uint8 images (N, H, W, C)"
            )
        for index, row in enumerate(batch):
            yield f"{path}[{index}]", row

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs for a float32 batch, in chunks of the model's fixed batch size (zero-padded) if it has one."""
        fixed = self.input_shape[0]
        if fixed is None:
            return self.backend.run(np.ascontiguousarray(batch, np.float32))
        pieces: list[dict[str, np.ndarray]] = []
        for start in range(0, len(batch), fixed):
            chunk = batch[start : start + fixed]
            count = len(chunk)
            if count < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - count, *chunk.shape[1:]), np.float32)])
            pieces.append({k: v[:count] for k, v in self.backend.run(np.ascontiguousarray(chunk, np.float32)).items()})
        return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}

    def predict(self, sources: Sequence[str | Path], *, batch_size: int = 8, top_k: int = 5) -> PredictionReport:
        """Run every input in batches of ``batch_size``; top-``top_k`` classes for a classifier."""
        if batch_size < 1 or top_k < 1:
            raise UsageError("--batch-size and --top-k must be at least 1")
        names: list[str] = []
        skipped: list[str] = []
        outputs: dict[str, list[np.ndarray]] = {}
        timings: list[float] = []
        pending: list[np.ndarray] = []
        started = time.perf_counter()

        def flush() -> None:
            if not pending:
                return
            begin = time.perf_counter()
            result = self.run(np.stack(pending))
            timings.append((time.perf_counter() - begin) * 1e3)
            for name, value in result.items():
                outputs.setdefault(name, []).append(value)
            pending.clear()

        for name, tensor in self.inputs(sources):
            if tensor is None:
                skipped.append(name)
                continue
            names.append(name)
            pending.append(tensor)
            if len(pending) == batch_size:
                flush()
        flush()
        if not names:
            raise UsageError("none of the inputs could be read: give JPEG/PNG images, a folder of them or a .npy")
        arrays = {name: np.concatenate(parts) for name, parts in outputs.items()}
        predictions = self._predictions(names, arrays, top_k)
        return PredictionReport(
            artifact=str(self.file),
            model=self.model,
            backend=self.backend_name,
            batch_size=batch_size,
            inputs=len(names),
            latency_ms_per_batch=float(np.mean(timings)),
            latency_ms_per_input=float(np.sum(timings) / len(names)),
            seconds=time.perf_counter() - started,
            predictions=predictions,
            skipped=skipped,
            notes=list(self.notes),
            arrays=arrays,
        )

    def is_classifier(self, arrays: Mapping[str, np.ndarray]) -> bool:
        """One output shaped [N, classes] with more than one class."""
        return len(arrays) == 1 and next(iter(arrays.values())).ndim == 2 and next(iter(arrays.values())).shape[1] > 1

    def _predictions(self, names: list[str], arrays: dict[str, np.ndarray], top_k: int) -> list[Prediction]:
        if not self.is_classifier(arrays):
            return [
                Prediction(name, outputs={key: _statistics(value[index]) for key, value in arrays.items()})
                for index, name in enumerate(names)
            ]
        probabilities = _softmax(next(iter(arrays.values())).astype(np.float64))
        classes = probabilities.shape[1]
        if self.labels is not None and len(self.labels) != classes:
            raise UsageError(f"the labels name {len(self.labels)} classes but {self.model} outputs {classes}")
        k = min(top_k, classes)
        ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [
            Prediction(
                name,
                top=[
                    {
                        "index": int(index),
                        "label": self.labels[index] if self.labels is not None else str(int(index)),
                        "probability": float(probabilities[row, index]),
                    }
                    for index in ranked[row]
                ],
            )
            for row, name in enumerate(names)
        ]


def load(
    artifact: str | Path,
    *,
    labels: str | Path | Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: tuple[int, int] | None = None,
    format: str | None = None,
    backend: str = "auto",
    threads: int | None = None,
) -> Predictor:
    """A :class:`Predictor` for an export directory, an ONNX file or a TensorRT engine.

    ``labels``: class names (a file with one per line, or a list); ``mean``/``std``/``input_size`` override
    the manifest's preprocessing, or give it where it is unknown; ``format``: which artifact of an export
    directory (a format key such as ``onnx-int8-cpu``; default: its engine when usable, else FP32);
    ``backend``: ``auto``, ``onnxruntime`` or ``tensorrt``.
    """
    if backend not in ("auto", "onnxruntime", "tensorrt"):
        raise UsageError(f"unknown backend {backend!r}: choose auto, onnxruntime or tensorrt")
    artifact = Path(artifact)
    resolved = _resolve(artifact, format)
    if backend == "onnxruntime" and resolved.onnx is None:
        raise UsageError(f"{artifact}: no ONNX model to run in ONNX Runtime beside the engine")
    if resolved.onnx is not None and resolved.onnx.suffix == ".onnx":
        load_onnx(resolved.onnx, load_external_data=False)
    names = read_labels(labels) if isinstance(labels, (str, Path)) else labels
    return Predictor(
        artifact, resolved, labels=names, mean=mean, std=std, input_size=input_size, threads=threads, backend=backend
    )
