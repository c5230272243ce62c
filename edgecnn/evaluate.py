"""Accuracy of exported artifacts on labelled images, and the accuracy-drop gate.

Each artifact (an ONNX file beside its ``manifest.json``, or every ONNX model of an export directory)
runs in an ONNX Runtime CPU session (:mod:`edgecnn.runtime`) on images preprocessed as its manifest says.
The report gives top-1 and top-k per artifact and, for every artifact with an FP32 reference (its export
directory's ``<model>.onnx``, added when not given), the top-1 drop in points and the top-1 agreement
with it. A drop above ``max_drop`` fails the gate; ``edgecnn eval`` then exits non-zero.

TensorRT-targeted INT8 models run here through ONNX Runtime's CPU kernels for the same Q/DQ graph:
the same quantization scales, so the same accuracy up to rounding differences between kernels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.artifact import MANIFEST_NAME, get_format, read_manifest
from edgecnn.datasets import LabelledImages, load_labelled
from edgecnn.errors import UsageError
from edgecnn.fidelity import drop_within_budget
from edgecnn.onnx_facts import graph_precision, load_onnx
from edgecnn.runtime import cpu_session_optimization, create_session

__all__ = ["Artifact", "ArtifactAccuracy", "EvaluationReport", "DEFAULT_MAX_DROP", "resolve_artifacts", "evaluate"]

DEFAULT_MAX_DROP = 1.0
"""Top-1 points an artifact may lose against FP32: the published PTQ budget for depthwise networks is 1.5."""

_RUNNABLE_SUFFIXES = (".onnx", ".ort")


@dataclass(frozen=True)
class Artifact:
    """A model file to evaluate, with the manifest that says how to feed it."""

    path: Path
    model: str
    format: str
    precision: str
    manifest: Mapping[str, Any] = field(repr=False, hash=False, compare=False)
    optimization: str = "all"

    @property
    def preprocessing(self) -> Mapping[str, Any]:
        return self.manifest["preprocessing"]

    @property
    def num_classes(self) -> int | None:
        return self.manifest.get("output", {}).get("num_classes") or self.manifest.get("model", {}).get("num_classes")

    @property
    def reference_path(self) -> Path | None:
        """The export directory's FP32 ONNX model, if the manifest lists one."""
        entry = next((a for a in self.manifest.get("artifacts", []) if a.get("format") == "onnx-fp32"), None)
        return self.path.parent / entry["file"] if entry else None


@dataclass
class ArtifactAccuracy:
    """One artifact's accuracy. Accuracies and drops are in percent and percentage points."""

    artifact: str
    model: str
    format: str
    precision: str
    images: int
    top1: float
    topk: float
    reference: str | None
    drop: float | None
    agreement: float | None
    status: str
    seconds: float


@dataclass
class EvaluationReport:
    """The evaluation of several artifacts on one labelled set, with the gate's outcome."""

    data: str
    images: int
    classes: int
    top_k: int
    max_drop: float | None
    skipped_images: int
    results: list[ArtifactAccuracy]

    @property
    def failures(self) -> list[ArtifactAccuracy]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def verdict(self) -> str:
        """One line per failing artifact (or a pass line), for assertion messages and the CLI."""
        if self.passed:
            gated = [r for r in self.results if r.drop is not None and r.status != "reference"]
            worst = max((r.drop for r in gated), default=None)
            return (
                f"accuracy gate passed on {self.data}: worst top-1 drop {worst:+.2f} points (budget {self.max_drop})"
                if worst is not None and self.max_drop is not None
                else f"evaluated {len(self.results)} artifacts on {self.data}"
            )
        return "\n".join(
            f"FAIL: {r.artifact}: top-1 {r.top1:.2f}% is {_points(r.drop)} FP32 {r.top1 + r.drop:.2f}% "
            f"({self.data}, {r.images} images), {_budget(self.max_drop)}"
            for r in self.failures
        )


def _points(drop: float) -> str:
    """``0.56 points below`` or, for a negative drop, ``0.56 points above``: never a signed distance."""
    size = abs(drop)
    return f"{size:.2f} {'point' if round(size, 2) == 1 else 'points'} {'below' if drop >= 0 else 'above'}"


def _budget(max_drop: float | None) -> str:
    if max_drop is not None and max_drop < 0:
        return f"short of the required gain of {-max_drop:g} {'point' if max_drop == -1 else 'points'}"
    return f"over the {max_drop:g}-point budget"


def _artifact_from_file(path: Path, manifest: Mapping[str, Any]) -> Artifact:
    """The artifact as its manifest lists it, or as its graph shows when the manifest does not list it.

    Symmetric-activation INT8 (the TensorRT form) computes what its graph says on ONNX Runtime's CPU only
    at optimization level ``basic`` (see :func:`edgecnn.runtime.cpu_session_optimization`): the
    manifest records the level each INT8 artifact needs; for an unlisted file its graph tells.
    """
    entry = next((a for a in manifest.get("artifacts", []) if a.get("file") == path.name), None)
    model = manifest.get("model", {}).get("name") or path.name.split(".")[0]
    if entry is not None:
        key = entry["format"]
        optimization = (entry.get("quantization") or {}).get(
            "onnxruntime_cpu_optimization"
        ) or cpu_session_optimization(key)
        return Artifact(path, model, key, get_format(key).precision, manifest, optimization)
    precision = "fp32" if path.suffix == ".ort" else graph_precision(load_onnx(path, load_external_data=False))
    optimization = cpu_session_optimization(path) if precision in ("int8", "fp8") else "all"
    return Artifact(path, model, f"onnx ({precision}, not in manifest)", precision, manifest, optimization)


def _manifest_beside(path: Path, reference: Path | None = None) -> Mapping[str, Any]:
    """The manifest.json beside ``path``, else the one beside ``reference``
    (an INT8 file written elsewhere is fed like its FP32 model)."""
    for folder in (path.parent, reference.parent if reference is not None else None):
        if folder is not None and (folder / MANIFEST_NAME).is_file():
            return read_manifest(folder)
    raise UsageError(
        f"{path} has no {MANIFEST_NAME} beside it, so its preprocessing is unknown: give --reference the FP32 model "
        f"of its export directory, or package it with 'edgecnn export {path}'"
    )


def resolve_artifacts(paths: Sequence[str | Path], reference: str | Path | None = None) -> list[Artifact]:
    """ONNX files and export directories to artifacts: a directory contributes every ONNX model its manifest lists.

    A file without a manifest beside it takes the manifest of ``reference`` (its FP32 model), when given.
    """
    reference = Path(reference) if reference is not None else None
    if not paths:
        raise UsageError(
            "name at least one artifact: an ONNX file or an export directory (for example exports/mobilenet_v2)"
        )
    artifacts: dict[Path, Artifact] = {}
    for given in map(Path, paths):
        if not given.exists():
            raise UsageError(f"artifact {given} does not exist: give an ONNX file or an export directory")
        if given.is_dir():
            manifest = read_manifest(given)
            entries = [a for a in manifest.get("artifacts", []) if str(a.get("format", "")).startswith("onnx-")]
            if not entries:
                raise UsageError(f"{given}/{MANIFEST_NAME} lists no ONNX model to evaluate")
            for entry in entries:
                path = given / entry["file"]
                if not path.is_file():
                    raise UsageError(f"{path} is listed in {given}/{MANIFEST_NAME} but missing: re-run the export")
                artifacts.setdefault(path.resolve(), _artifact_from_file(path, manifest))
            continue
        if given.suffix == ".engine":
            raise UsageError(
                f"{given} is a TensorRT engine, which needs a GPU: evaluate the ONNX model it was built from"
            )
        if given.suffix not in _RUNNABLE_SUFFIXES:
            raise UsageError(f"{given} is not an ONNX model: 'edgecnn eval' runs .onnx files and export directories")
        artifacts.setdefault(given.resolve(), _artifact_from_file(given, _manifest_beside(given, reference)))
    return list(artifacts.values())


def _with_references(
    artifacts: list[Artifact], reference: Path | None
) -> tuple[list[Artifact], dict[Path, Path | None]]:
    """Add each artifact's FP32 reference when it was not given; map every artifact to its reference."""
    chosen = {a.path.resolve(): a for a in artifacts}
    references: dict[Path, Path | None] = {}
    for artifact in list(chosen.values()):
        target = Path(reference) if reference is not None else artifact.reference_path
        if target is not None and target.resolve() not in chosen:
            if not target.is_file():
                raise UsageError(f"the FP32 reference {target} does not exist: give --reference or re-run the export")
            chosen[target.resolve()] = _artifact_from_file(target, _manifest_beside(target))
        references[artifact.path.resolve()] = target.resolve() if target is not None else None
    for path in chosen:
        references.setdefault(path, None)
    ordered = sorted(chosen.values(), key=lambda a: (str(a.path.parent), a.precision != "fp32", a.path.name))
    return ordered, references


def _check_evaluable(artifacts: Sequence[Artifact]) -> None:
    """Refuse, before any image is read, what top-1 cannot measure: a model that is not a classifier (its
    manifest says so: several outputs, or one that is not [N, classes]) and one whose preprocessing nobody
    declared (images cannot be turned into its inputs without guessing)."""
    for artifact in artifacts:
        manifest = artifact.manifest
        where = artifact.path.parent / MANIFEST_NAME
        if manifest.get("output", {}).get("task") or (manifest.get("import") or {}).get("classifier") is False:
            outputs = ", ".join(
                f"{o.get('name')} {'x'.join(map(str, o.get('shape') or []))}" for o in manifest.get("outputs", [])
            )
            raise UsageError(
                f"{artifact.path.name} is not a classifier (outputs: {outputs or 'not [N, classes]'}) and eval "
                f"measures top-1 of classifiers: for other models compare outputs with FP32 instead, as the SQNR, "
                f"cosine and max error per output that export and quantize record in {where} "
                "(edgecnn quantize DIR --min-sqnr DB --strict gates INT8 on them)"
            )
        if (manifest.get("preprocessing") or {}).get("declared") is False:
            raise UsageError(
                f"{artifact.path.name}'s preprocessing is not declared ({where}), so eval cannot turn images into "
                "its inputs without guessing: re-export the ONNX file with --mean R,G,B --std R,G,B (or --scale "
                "1/255) and --channel-order RGB|BGR"
            )


def _check_classes(artifacts: Sequence[Artifact], data: LabelledImages) -> None:
    for artifact in artifacts:
        if artifact.num_classes is not None and artifact.num_classes != data.num_classes:
            raise UsageError(
                f"{data.name} has {data.num_classes} classes but {artifact.path.name} outputs {artifact.num_classes}: "
                f"evaluate on data with the model's classes (one folder per class, in the model's class order)"
            )


def _fixed_batch(session) -> int | None:
    dimension = session.get_inputs()[0].shape[0]
    return dimension if isinstance(dimension, int) and dimension > 0 else None


def _logits(session, images: np.ndarray) -> np.ndarray:
    """Run ``images`` through ``session`` in chunks of its fixed batch (zero-padded), or all at once."""
    name = session.get_inputs()[0].name
    batch = _fixed_batch(session)
    if batch is None:
        return session.run(None, {name: images})[0]
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.float32)])
        outputs.append(session.run(None, {name: chunk})[0][: min(batch, len(images) - start)])
    return np.concatenate(outputs)


@dataclass
class _Tally:
    correct_top1: int = 0
    correct_topk: int = 0
    images: int = 0
    seconds: float = 0.0
    predictions: list[np.ndarray] = field(default_factory=list)


def _run_group(
    artifacts: Sequence[Artifact],
    data: LabelledImages,
    top_k: int,
    threads: int | None,
    on_images: Callable[[int], None] | None,
) -> dict[Path, _Tally]:
    """Decode each image once and run it through every artifact sharing this preprocessing."""
    sessions = {
        a.path.resolve(): create_session(a.path, threads=threads, optimization=a.optimization) for a in artifacts
    }
    tallies = {path: _Tally() for path in sessions}
    for batch in data.batches(artifacts[0].preprocessing):
        for path, session in sessions.items():
            started = time.perf_counter()
            logits = _logits(session, batch.images)
            tally = tallies[path]
            tally.seconds += time.perf_counter() - started
            if logits.ndim != 2:
                raise UsageError(
                    f"{path.name} outputs shape {list(logits.shape)}, not [N, classes]: is it a classifier?"
                )
            ranked = np.argsort(-logits, axis=1, kind="stable")[:, :top_k]
            tally.correct_top1 += int((ranked[:, 0] == batch.labels).sum())
            tally.correct_topk += int((ranked == batch.labels[:, None]).any(axis=1).sum())
            tally.images += len(batch.labels)
            tally.predictions.append(ranked[:, 0])
        if on_images is not None:
            on_images(len(batch.labels))
    return tallies


def evaluate(
    artifacts: Sequence[str | Path],
    data: str | Path | LabelledImages = "digits",
    *,
    top_k: int = 5,
    max_drop: float | None = DEFAULT_MAX_DROP,
    reference: str | Path | None = None,
    threads: int | None = None,
    on_images: Callable[[int], None] | None = None,
) -> EvaluationReport:
    """Evaluate ``artifacts`` on ``data`` (an ImageFolder tree, ``"digits"`` for its test split, or loaded images).

    ``max_drop`` (top-1 points below FP32) is the gate; None reports drops without gating. ``on_images``
    is called with the number of images done after each batch (for progress bars).
    """
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}")
    resolved, references = _with_references(
        resolve_artifacts(artifacts, reference), Path(reference) if reference else None
    )
    _check_evaluable(resolved)
    labelled = data if isinstance(data, LabelledImages) else load_labelled(data)
    _check_classes(resolved, labelled)
    k = min(top_k, labelled.num_classes)
    groups: dict[str, list[Artifact]] = {}
    for artifact in resolved:
        groups.setdefault(json.dumps(artifact.preprocessing, sort_keys=True), []).append(artifact)
    tallies: dict[Path, _Tally] = {}
    skipped = 0
    for group in groups.values():
        tallies.update(_run_group(group, labelled, k, threads, on_images))
        skipped = max(skipped, len(labelled.skipped))
    baselines = {ref for path, ref in references.items() if ref is not None and ref != path}
    results = []
    for artifact in resolved:
        path = artifact.path.resolve()
        tally = tallies[path]
        top1 = 100.0 * tally.correct_top1 / tally.images
        reference_path = references[path]
        drop = agreement = None
        status = "reference" if path in baselines else "-"
        if reference_path is not None and reference_path != path:
            base = tallies[reference_path]
            drop = 100.0 * (base.correct_top1 - tally.correct_top1) / tally.images
            agreement = 100.0 * float((np.concatenate(base.predictions) == np.concatenate(tally.predictions)).mean())
            if max_drop is not None:
                status = "pass" if drop_within_budget(drop, max_drop) else "fail"
        results.append(
            ArtifactAccuracy(
                artifact=str(artifact.path),
                model=artifact.model,
                format=artifact.format,
                precision=artifact.precision,
                images=tally.images,
                top1=top1,
                topk=100.0 * tally.correct_topk / tally.images,
                reference=str(reference_path) if reference_path is not None and reference_path != path else None,
                drop=drop,
                agreement=agreement,
                status=status,
                seconds=tally.seconds,
            )
        )
    return EvaluationReport(
        data=labelled.name,
        images=min(t.images for t in tallies.values()),
        classes=labelled.num_classes,
        top_k=k,
        max_drop=max_drop,
        skipped_images=skipped,
        results=results,
    )


def top1_evaluator(data: str | Path, preprocessing, *, batch_size: int = 64) -> Callable[[Path], float]:
    """``evaluate(model_path) -> top-1 %`` on labelled ``data`` (an ImageFolder tree or ``"digits"``), for
    :func:`edgecnn.calibration.fallback.auto_fallback`.

    Each model runs in an ONNX Runtime CPU session at the optimization level its Q/DQ form needs
    (:func:`~edgecnn.runtime.cpu_session_optimization`), in batches of its fixed batch size when it has one.
    """
    labelled = load_labelled(data)

    def top1(model_path: Path) -> float:
        session = create_session(model_path, optimization=cpu_session_optimization(model_path))
        correct = total = 0
        for batch in labelled.batches(preprocessing, batch_size=batch_size):
            logits = _logits(session, batch.images)
            if logits.shape[-1] != labelled.num_classes:
                raise UsageError(
                    f"{model_path.name} has {logits.shape[-1]} outputs but {labelled.name} has {labelled.num_classes} "
                    "classes: evaluate on data with the model's classes"
                )
            correct += int((logits.argmax(-1) == batch.labels).sum())
            total += len(batch.labels)
        return 100.0 * correct / total

    return top1
