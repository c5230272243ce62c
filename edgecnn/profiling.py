"""The profile workflow: what the user named (zoo models, ONNX files, export directories) -> graphs -> report.

:mod:`edgecnn.profile` costs graphs and knows nothing of the zoo or the exporter; this module is where they
meet. Zoo models become their shape-only graphs (:func:`edgecnn.export.zoo_graphs.zoo_graph`) with the
registry's reference figures attached, and host measurement at a precision a graph lacks converts it the
way export and calibration would (FP16 with the exporter's converter; INT8 with the calibration step's
quantizer, on synthetic data, since latency does not depend on the calibration values).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import onnx

from edgecnn.calibration import quantize_for_timing
from edgecnn.errors import UnknownNameError, UsageError
from edgecnn.extras import available
from edgecnn.onnx_facts import save_onnx
from edgecnn.options import parse_input_size
from edgecnn.profile import (
    GraphSource,
    ProfileOptions,
    ProfileReport,
    ProfileTarget,
    export_dir_graphs,
    onnx_file_source,
    profile,
)
from edgecnn.registry import get_spec, list_models, reference_table

__all__ = ["resolve_targets", "convert_for_measurement", "profile_targets", "profile_models"]


def _with_reference(sources: list[GraphSource]) -> list[GraphSource]:
    """Attach the zoo's tags and reference top-1; without PyTorch (the core install) the zoo's model files
    cannot be imported, so the reference table alone gives top-1 and there are no tags."""
    torch_free = not available("torch")
    for source in sources:
        if source.model_name is not None and torch_free and source.model_name in reference_table():
            source.ref_top1 = reference_table()[source.model_name].top1
        elif source.model_name is not None and not torch_free and source.model_name in list_models():
            spec = get_spec(source.model_name)
            source.tags = sorted(spec.tags)
            source.ref_top1 = spec.reference.top1 if spec.reference else None
        else:
            source.model_name = None
    return sources


def _zoo_target(name: str, input_size: str | None = None) -> ProfileTarget:
    """A zoo model at its default input size, or at ``input_size`` (H or HxW, checked against its minimum)."""
    size = parse_input_size(input_size, get_spec(name)) if input_size is not None else None

    def load() -> list[GraphSource]:
        from edgecnn.export.zoo_graphs import zoo_graph

        return _with_reference([GraphSource(name, zoo_graph(name, size), "zoo", "fp32", None, name)])

    return ProfileTarget(name, "zoo", load)


def _export_target(path: Path) -> ProfileTarget:
    return ProfileTarget(path.name, "export", lambda: _with_reference(export_dir_graphs(path)), path)


def _file_target(path: Path) -> ProfileTarget:
    return ProfileTarget(
        path.name.split(".")[0],
        "onnx",
        lambda: [onnx_file_source(path)],
        path,
        lambda batch, shapes: [onnx_file_source(path, shapes, batch)],
    )


def resolve_targets(
    models: Iterable[str] = (), all_models: bool = False, tags: Iterable[str] = (), input_size: str | None = None
) -> list[ProfileTarget]:
    """Zoo names, aliases and globs, ONNX files and export directories, plus ``--all`` / ``--tag`` (any of the tags).

    Naming nothing profiles the whole zoo, as ``edgecnn profile --device jetson`` does. ``input_size`` (H or HxW)
    builds the zoo models at that size; files and exports have their own graphs (``--input-shape`` for those).
    """
    models = list(models)
    targets: list[ProfileTarget] = []
    for model in models:
        path = Path(model)
        if model.endswith(".onnx") or path.is_file():
            if not path.is_file():
                raise UsageError(f"ONNX file {path} does not exist")
            targets.append(_file_target(path))
        elif path.is_dir() and (path / "manifest.json").is_file():
            targets.append(_export_target(path))
        elif any(ch in model for ch in "*?["):
            matched = list_models(model)
            if not matched:
                raise UsageError(f"no model matches {model!r}: run 'edgecnn list'")
            targets += [_zoo_target(name, input_size) for name in matched]
        else:
            try:
                targets.append(_zoo_target(get_spec(model).name, input_size))
            except UnknownNameError:
                if not path.is_dir():
                    raise
                targets.append(_export_target(path))
    wanted_tags = [t.strip() for tag in tags for t in tag.split(",") if t.strip()]
    for tag in wanted_tags:
        if tag not in ("efficient", "heavy"):
            raise UsageError(f"unknown tag {tag!r}: choose efficient or heavy")
        targets += [_zoo_target(name, input_size) for name in list_models(tags=[tag])]
    if all_models:
        targets += [_zoo_target(name, input_size) for name in list_models()]
    if not models and not wanted_tags:
        targets = [_zoo_target(name, input_size) for name in list_models()]
    if input_size is not None and any(t.origin != "zoo" for t in targets):
        files = ", ".join(str(t.path or t.name) for t in targets if t.origin != "zoo")
        raise UsageError(
            f"--input-size builds zoo models at another size; {files} has its own graph: use --input-shape for it"
        )
    return list({(t.origin, t.name, str(t.path)): t for t in targets}.values())


def convert_for_measurement(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """A runnable FP32 graph at ``precision`` for host timing: FP16 as export writes it; INT8 as the
    ``onnx-int8-cpu`` format (U8 activations, S8 per-channel weights) from the calibration step's quantizer
    on synthetic inputs."""
    if precision == "fp16":
        from edgecnn.export.fp16 import to_fp16

        return to_fp16(model)
    if precision != "int8":
        raise UsageError(f"no {precision} conversion for host measurement")
    with tempfile.TemporaryDirectory(prefix="edgecnn-int8-") as scratch:
        source, target = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        save_onnx(model, source)
        quantize_for_timing(source, target)
        return onnx.load(str(target))


def profile_targets(
    targets: Sequence[ProfileTarget],
    options: ProfileOptions,
    *,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[str], None] | None = None,
) -> ProfileReport:
    """:func:`edgecnn.profile.profile` with host measurement able to convert zoo graphs to FP16 and INT8."""
    if options.measure and options.convert is None:
        options.convert = convert_for_measurement
    return profile(targets, options, on_start=on_start, on_done=on_done)


def profile_models(
    models: Sequence[str] = (),
    options: ProfileOptions | None = None,
    *,
    all_models: bool = False,
    tags: Iterable[str] = (),
    input_size: str | None = None,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[str], None] | None = None,
) -> ProfileReport:
    """Profile what ``models`` name (see :func:`resolve_targets`) with ``options``: the Python face of
    ``edgecnn profile``."""
    targets = resolve_targets(models, all_models, tags, input_size)
    return profile_targets(targets, options or ProfileOptions(), on_start=on_start, on_done=on_done)
