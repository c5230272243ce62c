"""The export pipeline: model source -> ONNX -> clean-up -> verification -> FP16 / ORT -> manifest.

Every artifact is verified against PyTorch before anything is written; a failed step leaves no
directory behind (see :mod:`edgecnn.artifact.staging`). The CLI's ``edgecnn export`` calls :func:`export_model`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgecnn.artifact import (
    MANIFEST_NAME,
    AddedArtifact,
    ArtifactStep,
    Preprocessing,
    artifact_name,
    library_versions,
    manifest_json,
    read_manifest,
    sha256_file,
    staged_directory,
)
from edgecnn.errors import EdgecnnError, UsageError, first_line
from edgecnn.export.cleanup import DEFAULT_OPTIMIZER, check_graph, clean_graph
from edgecnn.export.fp16 import to_fp16
from edgecnn.export.ort_format import to_ort_format
from edgecnn.export.source import ModelSource, resolve_source
from edgecnn.export.to_onnx import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    remove_onnx_file,
    torch_to_onnx_file,
)
from edgecnn.export.verify import Verification, check_inputs, compare, compare_outputs, torch_outputs
from edgecnn.heap import release_free_heap
from edgecnn.onnx_facts import (
    PROTOBUF_LIMIT,
    OnnxFiles,
    input_dims,
    load_onnx,
    model_sha256,
    onnx_files,
    save_onnx,
)
from edgecnn.onnx_import import graph_outputs_info, import_onnx, inference_form, is_classifier
from edgecnn.runtime import create_session, run_session, usable_cores

__all__ = ["ExportOptions", "ExportResult", "export_model", "export_many", "DYNAMIC_CHECK_BATCHES"]

DYNAMIC_CHECK_BATCHES = (1, 7)


@dataclass
class ExportOptions:
    """Options of ``edgecnn export``; the CLI fills one of these and calls :func:`export_model`.

    ``name`` names the export directory and its files (default: the model's name, see
    :func:`~edgecnn.export.source.resolve_source`); ``force`` lets the export replace an export of that name
    made from other inputs (see :func:`export_model`).

    ``steps`` add artifacts made from the verified FP32 model inside the same staging directory, so the
    export stays all-or-nothing: ``edgecnn export --int8`` passes an
    :class:`edgecnn.calibration.QuantizeStep` (see :class:`~edgecnn.artifact.ArtifactStep`).
    """

    output_dir: Path = Path("exports")
    weights: Path | None = None
    num_classes: int | None = None
    input_size: str | tuple[int, int] | None = None
    batch: int = 1
    dynamic_batch: bool = False
    opset: int = DEFAULT_OPSET
    fp16: bool = False
    ort: bool = False
    exporter: str = DEFAULT_EXPORTER
    optimizer: str = DEFAULT_OPTIMIZER
    check_samples: int = 8
    config: dict[str, Any] = field(default_factory=dict)
    steps: tuple[ArtifactStep, ...] = ()
    name: str | None = None
    force: bool = False
    input_shapes: dict[str, list[int]] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: str | None = None
    channel_order: str | None = None
    resize: int | None = None

    @property
    def declares_preprocessing(self) -> bool:
        return any(v is not None for v in (self.mean, self.std, self.scale, self.channel_order, self.resize))


@dataclass
class ExportResult:
    name: str
    directory: Path
    files: dict[str, Path]
    verifications: list[Verification]
    seconds: float
    randomly_initialized: bool
    manifest: dict[str, Any]
    added: list[AddedArtifact] = field(default_factory=list)

    @property
    def quantization(self) -> Any:
        """The INT8 step's result, when the export made one."""
        return next((added.result for added in self.added if added.key.startswith("onnx-int8")), None)

    @property
    def max_error(self) -> float:
        return max((v.max_abs_error for v in self.verifications if v.precision == "fp32"), default=float("nan"))


def _run_batched(session, inputs: np.ndarray, batch: int | None) -> np.ndarray:
    """Run ``inputs`` through a session whose batch is fixed at ``batch`` (None: any batch)."""
    if batch is None:
        return run_session(session, inputs)
    chunks = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        padded = (
            np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.float32)])
            if len(chunk) < batch
            else chunk
        )
        chunks.append(run_session(session, padded)[: len(chunk)])
    return np.concatenate(chunks)


def _references(source: ModelSource, options: ExportOptions) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """PyTorch's outputs on every check input (the check batch, and batch 1 and 7 for a dynamic batch), keyed
    by (samples, seed): computed once, before export, and shared by every precision."""
    height, width = source.input_size
    wanted = [(max(options.check_samples, 1), 0)] + (
        [(size, size) for size in DYNAMIC_CHECK_BATCHES] if options.dynamic_batch else []
    )
    references = {}
    for samples, seed in wanted:
        inputs = check_inputs((samples, source.in_chans, height, width), seed=seed)
        references[samples, seed] = inputs, torch_outputs(source.module, inputs)
    return references


def _verify(path: Path, references: dict, options: ExportOptions, precision: str) -> list[Verification]:
    """Compare ONNX Runtime on the saved model with PyTorch's outputs from :func:`_references`."""
    session = create_session(path)
    batch = None if options.dynamic_batch else options.batch
    results = []
    for (_samples, seed), (inputs, expected) in references.items():
        produced = _run_batched(session, inputs, batch) if seed == 0 else run_session(session, inputs)
        results.append(compare(expected, produced, precision))
    return results


def _raise_if_failed(verifications: list[Verification], name: str) -> None:
    failed = next((v for v in verifications if not v.passed), None)
    if failed is not None:
        raise EdgecnnError(
            f"{name}: {failed.precision} ONNX does not match PyTorch at batch {failed.batch}: {failed.reason}"
        )


def _save(model: onnx.ModelProto, path: Path) -> OnnxFiles:
    """One self-contained file under protobuf's 2 GB, else the graph and one ``<name>.data`` beside it."""
    return save_onnx(model, path)


def _graph_shape(model: onnx.ModelProto, value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


def _preprocessing(source: ModelSource) -> dict[str, Any]:
    if source.preprocessing is not None:
        return source.preprocessing
    return {
        "declared": True,
        **Preprocessing.default(source.input_size, source.in_chans, source.mean, source.std).as_dict(),
    }


def _artifact_entry(key: str, path: Path, verifications: list[Verification]) -> dict[str, Any]:
    """The manifest entry of an artifact: an ONNX file's hash and size cover its external data, which it lists."""
    stored = onnx_files(path) if path.suffix == ".onnx" else None
    entry = {
        "format": key,
        "file": path.name,
        "sha256": model_sha256(stored) if stored is not None else sha256_file(path),
        "size_bytes": stored.total_bytes if stored is not None else path.stat().st_size,
        "verification": [v.as_dict() for v in verifications],
    }
    if stored is not None and stored.external:
        entry["external_data"] = list(stored.locations)
    return entry


def _build_manifest(
    source: ModelSource, model: onnx.ModelProto, options: ExportOptions, artifacts: list[dict]
) -> dict[str, Any]:
    graph_input, graph_output = model.graph.input[0], model.graph.output[0]
    manifest = {
        "edgecnn_manifest": 1,
        "model": {
            "name": source.name,
            "origin": source.origin,
            "source": source.reference,
            "config": source.config,
            "num_classes": source.num_classes,
            "weights": (
                {"file": source.weights_path.name, "sha256": source.weights_sha256}
                if source.weights_path is not None
                else None
            ),
            "randomly_initialized": source.randomly_initialized,
        },
        "input": {
            "name": graph_input.name,
            "shape": _graph_shape(model, graph_input),
            "dtype": "float32",
            "layout": "NCHW",
        },
        "preprocessing": _preprocessing(source),
        "output": {
            "name": graph_output.name,
            "shape": _graph_shape(model, graph_output),
            "num_classes": source.num_classes,
        },
        "outputs": [
            {"name": info.name, "shape": list(info.shape), "dtype": info.dtype} for info in graph_outputs_info(model)
        ],
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "exporter": options.exporter if source.origin != "onnx" else None,
        "optimizer": options.optimizer if source.origin != "onnx" else source.imported.get("optimizer"),
        "dynamic_batch": options.dynamic_batch,
        "artifacts": artifacts,
        "versions": library_versions(),
    }
    if len(model.graph.input) > 1:
        manifest["inputs"] = [
            {"name": value.name, "shape": _graph_shape(model, value), "dtype": _dtype(value)}
            for value in model.graph.input
        ]
    if source.num_classes is None:
        del manifest["output"]["num_classes"]
        manifest["output"]["task"] = "not a classifier: see outputs"
    if source.imported:
        manifest["import"] = source.imported
    return manifest


def _dtype(value: onnx.ValueInfoProto) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name


def _export_torch(
    source: ModelSource, options: ExportOptions, staging: Path
) -> tuple[dict[str, Path], list[Verification], list[dict], onnx.ModelProto]:
    if options.batch < 1:
        raise UsageError(f"batch must be at least 1, got {options.batch}")
    height, width = source.input_size
    references = _references(source, options)
    exported = torch_to_onnx_file(
        source.module,
        (options.batch, source.in_chans, height, width),
        staging / "exported.onnx",
        opset=options.opset,
        dynamic_batch=options.dynamic_batch,
        exporter=options.exporter,
    )
    source.module = None  # every later step runs on the ONNX file and the references; the weights can go
    release_free_heap()
    fp32_path = staging / artifact_name(source.name, "onnx-fp32")
    fp32 = clean_graph(exported, options.optimizer, destination=fp32_path)
    remove_onnx_file(exported)
    release_free_heap()
    files, artifacts, all_verifications = {}, [], []

    def add_verified(key: str, graph: onnx.ModelProto, path: Path, precision: str) -> None:
        check_graph(graph, path)
        verifications = _verify(path, references, options, precision)
        _raise_if_failed(verifications, source.name)
        files[key] = path
        artifacts.append(_artifact_entry(key, path, verifications))
        all_verifications.extend(verifications)

    add_verified("onnx-fp32", fp32, fp32_path, "fp32")
    if options.fp16:
        half = to_fp16(fp32)
        half_path = staging / artifact_name(source.name, "onnx-fp16")
        _save(half, half_path)
        add_verified("onnx-fp16", half, half_path, "fp16")
    return files, all_verifications, artifacts, fp32


def _onnx_input_shapes(model: onnx.ModelProto, source: ModelSource, options: ExportOptions) -> dict[str, list[int]]:
    """Every input's fixed shape: ``--input-shape`` first, ``--input-size`` (a single NCHW input), then the
    file's static dims, with ``--batch`` for a dynamic batch; what stays dynamic is a one-line error."""
    declared = input_dims(model)
    names = list(declared)
    given = dict(options.input_shapes or {})
    file = source.onnx_path.name if source.onnx_path else source.name
    if "*" in given:
        if len(names) != 1:
            raise UsageError(
                f"{file} has {len(names)} inputs ({', '.join(names)}): name each shape, "
                f"e.g. --input-shape {names[0]}=DIMS"
            )
        given = {names[0]: given.pop("*")}
    unknown = [name for name in given if name not in declared]
    if unknown:
        raise UsageError(f"{file} has no input named '{unknown[0]}': its inputs are {', '.join(names)}")
    if source.input_size != (0, 0) and (len(names) != 1 or len(declared[names[0]]) != 4):
        raise UsageError(
            f"--input-size applies to one NCHW image input; {file} has {', '.join(names)}: "
            "give each with --input-shape NAME=DIMS"
        )
    shapes: dict[str, list[int]] = {}
    for name, dims in declared.items():
        wanted: list[Any] = list(given.get(name, dims))
        if name not in given and source.input_size != (0, 0):
            wanted[2:] = list(source.input_size)
        if wanted and not (isinstance(wanted[0], int) and wanted[0] > 0):
            wanted[0] = options.batch
        elif wanted and options.batch != 1 and wanted[0] != options.batch:
            raise UsageError(
                f"input '{name}' of {file} has a static batch of {wanted[0]}: drop --batch {options.batch}"
            )
        if not wanted or any(not isinstance(d, int) or d < 1 for d in wanted):
            example = "x".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in wanted) or "DIMS"
            hint = " or --input-size HxW" if len(names) == 1 and len(wanted) == 4 else ""
            raise UsageError(
                f"input '{name}' of {file} has dynamic dimensions ({example}): give --input-shape {name}={example} "
                f"with each ? a number{hint}"
            )
        shapes[name] = [int(d) for d in wanted]
    return shapes


def _seeded_inputs(model: onnx.ModelProto, shapes: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal float inputs (zeros for integer inputs), one array per graph input."""
    inputs = {}
    for index, value in enumerate(model.graph.input):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        shape = tuple(shapes[value.name])
        inputs[value.name] = (
            check_inputs(shape, seed=seed + index).astype(dtype)
            if np.issubdtype(dtype, np.floating)
            else np.zeros(shape, dtype)
        )
    return inputs


def _run_all(model: str | Path | bytes, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = create_session(str(model) if isinstance(model, Path) else model)
    names = [output.name for output in session.get_outputs()]
    try:
        return dict(zip(names, session.run(names, inputs)))
    except Exception as error:
        raise EdgecnnError(f"ONNX Runtime cannot run the model on seeded inputs: {first_line(error)}") from None


def _declared_preprocessing(model: onnx.ModelProto, source: ModelSource, options: ExportOptions) -> dict[str, Any]:
    """The preprocessing the user declared for a single NCHW image input, or the "not declared" block."""
    inputs = list(model.graph.input)
    dims = _graph_shape(model, inputs[0])
    image = len(inputs) == 1 and len(dims) == 4
    if not options.declares_preprocessing:
        return Preprocessing.unknown((dims[2], dims[3]) if image else None, "NCHW" if image else None)
    if not image:
        what = f"{len(inputs)} inputs" if len(inputs) > 1 else f"input {inputs[0].name} of shape {dims}"
        raise UsageError(
            f"--mean/--std/--scale/--channel-order/--resize describe one NCHW image input; {source.name} has {what}"
        )
    declared = Preprocessing.declare(
        (dims[2], dims[3]),
        dims[1],
        mean=options.mean,
        std=options.std,
        scale=options.scale,
        channel_order=options.channel_order,
        resize_shorter_side=options.resize,
    )
    return {"declared": True, **declared.as_dict()}


def _package_onnx(
    source: ModelSource, options: ExportOptions, staging: Path
) -> tuple[dict[str, Path], list[Verification], list[dict], onnx.ModelProto]:
    """A foreign ONNX file: imported (:func:`edgecnn.onnx_import.import_onnx`: constants folded, Dropout
    gone, shapes fixed), then every output compared with the original file's in ONNX Runtime on seeded
    inputs; FP16 likewise when asked."""
    if options.dynamic_batch:
        raise UsageError(
            "--dynamic-batch applies to PyTorch models: an ONNX file is exported at fixed shapes "
            "(--batch, --input-size or --input-shape)"
        )
    stored = onnx_files(source.onnx_path)
    raw = load_onnx(source.onnx_path)
    shapes = _onnx_input_shapes(raw, source, options)
    imported = import_onnx(raw, shapes)
    model = imported.model
    classifier = is_classifier(model)
    first = shapes[model.graph.input[0].name]
    source.in_chans = first[1] if len(first) == 4 else 0
    source.input_size = (first[2], first[3]) if len(first) == 4 else (0, 0)
    source.num_classes = int(graph_outputs_info(model)[0].shape[1]) if classifier else None
    source.preprocessing = _declared_preprocessing(model, source, options)
    source.imported = {
        "source_file": source.onnx_path.name,
        "source_sha256": model_sha256(stored),
        **({"source_external_data": list(stored.locations)} if stored.external else {}),
        "source_opset": imported.source_opset,
        "input_shapes": imported.input_shapes,
        "optimizer": imported.optimizer,
        "classifier": classifier,
        "notes": imported.notes,
    }
    inputs = _seeded_inputs(model, shapes)
    scratch = staging / ".source-inference-form.onnx"
    reference = _run_all(_session_source(inference_form(raw), scratch), inputs)
    del raw
    scratch.unlink(missing_ok=True)
    scratch.with_name(scratch.name + ".data").unlink(missing_ok=True)
    files, artifacts, all_verifications = {}, [], []

    def add_verified(key: str, graph: onnx.ModelProto, precision: str) -> None:
        path = staging / artifact_name(source.name, key)
        written = _save(graph, path)
        if key == "onnx-fp32" and (stored.external or written.external):
            source.imported["notes"].append(_weights_note(stored, written))
        check_graph(graph, path)
        verifications = compare_outputs(reference, _run_all(path, inputs), precision, classifier)
        failed = next((v for v in verifications if not v.passed), None)
        if failed is not None:
            raise EdgecnnError(
                f"{source.name}: the imported {precision} graph's output {failed.output} does not match the "
                f"original file's: {failed.reason}"
            )
        files[key] = path
        artifacts.append(_artifact_entry(key, path, verifications))
        all_verifications.extend(verifications)

    add_verified("onnx-fp32", model, "fp32")
    if options.fp16:
        add_verified("onnx-fp16", to_fp16(model), "fp16")
    return files, all_verifications, artifacts, model


def _session_source(model: onnx.ModelProto, scratch: Path) -> bytes | Path:
    """What ONNX Runtime loads ``model`` from: its bytes under protobuf's 2 GB, else a file written at ``scratch``
    with its weights beside it."""
    if model.ByteSize() < PROTOBUF_LIMIT:
        return model.SerializeToString()
    save_onnx(model, scratch)
    return scratch


def _weights_note(source: OnnxFiles, written: OnnxFiles) -> str:
    """Where an imported file's weights came from and where the export put them."""
    read = (
        f"weights read from {', '.join(source.locations[:2])}"
        + (f" and {len(source.locations) - 2} more data files" if len(source.locations) > 2 else "")
        + f" beside {source.path.name} ({source.total_bytes / 1e6:,.2f} MB in all)"
        if source.external
        else f"weights read from {source.path.name}"
    )
    if written.external:
        return (
            f"{read}; written to {written.locations[0]} beside {written.path.name} ({written.total_bytes / 1e9:,.2f} "
            "GB in all, over protobuf's 2 GB limit for one file): keep the two files together"
        )
    return f"{read}; written inline: {written.path.name} is self-contained ({written.total_bytes / 1e6:,.2f} MB)"


def export_model(model: str, options: ExportOptions | None = None, **overrides) -> ExportResult:
    """Export ``model`` (zoo name or alias, ``file.py:fn`` or ``file.onnx``) to ``options.output_dir/<name>/``.

    An existing export there is never lost: when it was made from the same inputs (model, weights, config,
    classes, input shape, opset, exporter, clean-up) the new artifacts are added to it, each replacing only
    its own rebuilt namesake, and the manifest is updated last; an INT8 artifact that would replace one
    made with other calibration settings, or an export from other inputs, is refused with a one-line error
    naming ``--force`` (which replaces the whole directory). The work is staged, so an interrupted or failed
    export leaves the directory as it was.

    Keyword ``overrides`` set fields of :class:`ExportOptions`, so ``export_model("resnet18", fp16=True)`` works.
    """
    options = ExportOptions(**{**(options.__dict__ if options else {}), **overrides})
    options.output_dir = Path(options.output_dir)
    started = time.perf_counter()
    source = resolve_source(
        model,
        weights=options.weights,
        num_classes=options.num_classes,
        input_size=options.input_size,
        config=options.config,
        name=options.name,
    )
    final = options.output_dir / source.name
    previous = _previous_export(final, options.force)
    if previous is not None:
        _refuse_other_inputs(final, _identity(previous), _early_identity(source, options))
    with staged_directory(final, replace=previous is None) as staging:
        if source.module is not None:
            files, verifications, artifacts, reference_model = _export_torch(source, options, staging)
        else:
            files, verifications, artifacts, reference_model = _package_onnx(source, options, staging)
        if options.ort:
            path = staging / artifact_name(source.name, "ort")
            to_ort_format(files["onnx-fp32"], path)
            files["ort"] = path
            artifacts.append(_artifact_entry("ort", path, []))
        added = []
        for step in options.steps:
            addition = step(
                files["onnx-fp32"], _preprocessing(source), staging, random_weights=source.randomly_initialized
            )
            files[addition.key] = addition.path
            artifacts.append(addition.entry)
            added.append(addition)
        manifest = _build_manifest(source, reference_model, options, artifacts)
        if previous is not None:
            _refuse_other_inputs(final, _identity(previous), _identity(manifest))
            manifest["artifacts"] = _merged_artifacts(final, previous, artifacts)
        (staging / MANIFEST_NAME).write_text(manifest_json(manifest))
    return ExportResult(
        name=source.name,
        directory=final,
        files={key: final / path.name for key, path in files.items()},
        verifications=verifications,
        seconds=time.perf_counter() - started,
        randomly_initialized=source.randomly_initialized,
        manifest=manifest,
        added=[_moved(addition, staging, final) for addition in added],
    )


_IDENTITY_LABELS = {
    "name": "model",
    "origin": "origin",
    "config": "config",
    "weights": "weights",
    "num_classes": "classes",
    "input": "input shape",
    "source_sha256": "source ONNX file",
    "opset": "opset",
    "exporter": "exporter",
    "optimizer": "clean-up",
}
_INT8_INPUTS = ("target", "method", "percentile", "per_channel", "excluded_nodes")


def _previous_export(final: Path, force: bool) -> dict[str, Any] | None:
    """The manifest of the export already at ``final`` that new artifacts are added to; None when there is none
    or ``force`` replaces it. A directory that is not an edgecnn export is refused unless ``force``."""
    if force or not final.exists():
        return None
    if not final.is_dir() or not (final / MANIFEST_NAME).is_file():
        if final.is_dir() and not any(final.iterdir()):
            return None
        raise UsageError(
            f"{final} exists and is not an edgecnn export: pass --force to replace it, or choose --name or -o"
        )
    try:
        return read_manifest(final)
    except UsageError:
        raise UsageError(
            f"{final}/{MANIFEST_NAME} is unreadable: pass --force to replace that export, or choose --name or -o"
        ) from None


def _identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """What an export was made from, by the manifest: artifacts made from equal identities are the same."""
    model = manifest.get("model") or {}
    shape = list((manifest.get("input") or {}).get("shape") or [])
    if shape and not isinstance(shape[0], int):
        shape[0] = "dynamic"
    fp32 = next((a for a in manifest.get("artifacts", []) if a.get("format") == "onnx-fp32"), {})
    return {
        "name": model.get("name"),
        "origin": model.get("origin"),
        "config": model.get("config") or {},
        "weights": (model.get("weights") or {}).get("sha256"),
        "num_classes": model.get("num_classes"),
        "input": shape,
        "source_sha256": fp32.get("sha256") if model.get("origin") == "onnx" else None,
        "opset": manifest.get("opset"),
        "exporter": manifest.get("exporter"),
        "optimizer": manifest.get("optimizer"),
    }


def _early_identity(source: ModelSource, options: ExportOptions) -> dict[str, Any]:
    """The part of :func:`_identity` known before exporting (a PyTorch model), to refuse before the work."""
    if source.module is None:
        return {"name": source.name, "origin": source.origin}
    shape = ["dynamic" if options.dynamic_batch else options.batch, source.in_chans, *source.input_size]
    return {
        "name": source.name,
        "origin": source.origin,
        "config": source.config or {},
        "weights": source.weights_sha256,
        "num_classes": source.num_classes,
        "input": shape,
        "opset": options.opset,
        "exporter": options.exporter,
        "optimizer": options.optimizer,
    }


def _refuse_other_inputs(final: Path, previous: dict[str, Any], current: dict[str, Any]) -> None:
    differences = [
        f"{_IDENTITY_LABELS[key]} {_short(previous.get(key))} there, {_short(value)} now"
        for key, value in current.items()
        if previous.get(key) != value
    ]
    if differences:
        raise UsageError(
            f"{final} holds an export made from other inputs ({'; '.join(differences)}): "
            "pass --force to replace it, or keep both with --name NAME or -o DIR"
        )


def _short(value: Any) -> str:
    text = "none" if value is None else str(value)
    return text[:12] if len(text) == 64 else text


def _merged_artifacts(final: Path, previous: dict[str, Any], artifacts: list[dict]) -> list[dict]:
    """The previous export's manifest entries with this export's added or rebuilt ones in their place.

    An INT8 artifact rebuilt with other calibration settings or data is refused (the manifest holds one
    artifact per format, which check, compile, eval and benchmark choose by format).
    """
    new = {entry["format"]: entry for entry in artifacts}
    for entry in previous.get("artifacts", []):
        made = new.get(entry.get("format"))
        if made is None or "quantization" not in made:
            continue
        before, now = _int8_inputs(entry), _int8_inputs(made)
        if before != now:
            changed = ", ".join(
                f"{key} {_short(before.get(key))} there, {_short(now.get(key))} now"
                for key in now
                if before.get(key) != now.get(key)
            )
            raise UsageError(
                f"{final}/{entry.get('file')} was made with other "
                f"{made['quantization'].get('precision', 'int8').upper()} settings ({changed}): pass --force to "
                f"replace it, or keep both with edgecnn quantize {final} --output FILE"
            )
    kept = [entry for entry in previous.get("artifacts", []) if entry.get("format") not in new]
    order = [entry.get("format") for entry in previous.get("artifacts", [])]
    merged = kept + artifacts
    return sorted(merged, key=lambda e: order.index(e["format"]) if e["format"] in order else len(order))


def _int8_inputs(entry: dict[str, Any]) -> dict[str, Any]:
    quantization = entry.get("quantization") or {}
    inputs = {key: quantization.get(key) for key in _INT8_INPUTS}
    calibration = quantization.get("calibration") or {}
    inputs["calibration"] = calibration.get("sha256")
    return inputs


def _moved(addition: AddedArtifact, staging: Path, final: Path) -> AddedArtifact:
    """The added artifact with its paths (and those of its result) in the final directory, not the staging one."""
    result = addition.result
    if result is not None and hasattr(result, "moved"):
        result = result.moved(staging, final)
    return replace(addition, path=final / addition.path.name, result=result)


def default_jobs(models: int) -> int:
    """Processes for exporting ``models`` models: one per usable core, at most 4 (each may hold a VGG-sized model)."""
    return max(1, min(models, usable_cores(), 4))


def export_many(
    names: Iterable[str],
    options: ExportOptions,
    on_done: Callable[[str, ExportResult | None, str], None] | None = None,
    jobs: int | None = None,
) -> list[tuple[str, ExportResult | None, str]]:
    """Export each name, in ``jobs`` processes (None: :func:`default_jobs`); a failure is recorded with its
    reason and the rest go on. Outcomes come back in the order of ``names``.

    Export is mostly single-threaded (tracing, graph clean-up and serialization), so on a 2-core machine
    two processes export the zoo in a little over half the time of one (bench/results/export.md).
    """
    names = list(names)
    jobs = default_jobs(len(names)) if jobs is None else jobs
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if jobs == 1 or len(names) == 1:
        outcomes = []
        for name in names:
            outcome = _export_one(name, options)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(*outcome)
        return outcomes
    return _export_in_processes(names, options, on_done, jobs)


def _export_one(name: str, options: ExportOptions) -> tuple[str, ExportResult | None, str]:
    try:
        return name, export_model(name, options), ""
    except EdgecnnError as error:
        return name, None, str(error)


def _export_in_processes(names, options, on_done, jobs: int) -> list[tuple[str, ExportResult | None, str]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    core_sets = context.Queue()
    for index in range(jobs):
        share = cores[index::jobs] if len(cores) >= jobs else cores
        core_sets.put(share)
    threads = max(1, usable_cores() // jobs)
    portable = ExportOptions(**{**options.__dict__, "steps": tuple(_portable(step) for step in options.steps)})
    outcomes: dict[str, tuple[str, ExportResult | None, str]] = {}
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_start_worker, initargs=(core_sets, threads)
    ) as pool:
        futures = {pool.submit(_export_one, name, portable): name for name in names}
        for future in as_completed(futures):
            name = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # a worker that died (out of memory) fails its model, not the batch
                outcome = (name, None, f"the export process failed: {type(error).__name__}: {error}")
            outcomes[name] = outcome
            if on_done is not None:
                on_done(*outcome)
    return [outcomes[name] for name in names]


def _portable(step: ArtifactStep) -> ArtifactStep:
    """A step fit for a worker process: without a progress callback (it reports to this process's terminal)."""
    return replace(step, progress=None) if hasattr(step, "progress") else step


def _start_worker(core_sets, threads: int) -> None:
    """Each export process gets its own cores, so the processes' thread pools do not oversubscribe them."""
    import torch

    cores = core_sets.get()
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    torch.set_num_threads(threads)
