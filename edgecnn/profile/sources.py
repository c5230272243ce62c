"""What the profiler costs: ONNX graphs, each with its name, precision and origin.

The profiler reads ONNX files, export directories and the device catalog only. Graphs of zoo models are
built by the export step and handed in (:mod:`edgecnn.profiling` does that for the CLI), with the zoo's
reference figures attached, so this package never imports the zoo or the exporter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from edgecnn.artifact import get_format, read_manifest
from edgecnn.errors import UsageError
from edgecnn.onnx_facts import graph_precision, load_onnx
from edgecnn.onnx_import import import_onnx
from edgecnn.profile.cost import concrete_inputs

__all__ = ["GraphSource", "ProfileTarget", "export_dir_graphs", "onnx_file_source"]


@dataclass
class GraphSource:
    """One graph to profile: its name, the graph, what it is and where it came from.

    ``precision`` is the graph's own precision (fp32, fp16 or int8 for a Q/DQ graph); ``path`` is the file
    when there is one (measurement runs it as it is); ``model_name`` is the zoo name when the graph is a zoo
    model's, and ``tags``/``ref_top1`` its reference figures, filled in by whoever knows the zoo.
    """

    name: str
    model: onnx.ModelProto
    origin: str
    precision: str
    path: Path | None = None
    model_name: str | None = None
    tags: list[str] = field(default_factory=list)
    ref_top1: float | None = None
    notes: list[str] = field(default_factory=list)
    batch: int | None = None


@dataclass
class ProfileTarget:
    """One thing named on the command line, resolved lazily to its graphs (zoo graphs take seconds to build).

    ``origin`` is ``zoo``, ``onnx`` (a file) or ``export`` (an ``edgecnn export`` directory); ``load`` gives
    its graphs. ``load_at`` (ONNX files) gives them at one batch size and ``--input-shape``: a foreign file
    is imported at fixed shapes, so each batch is its own graph.
    """

    name: str
    origin: str
    load: Callable[[], list[GraphSource]]
    path: Path | None = None
    load_at: Callable[[int, dict[str, list[int]] | None], list[GraphSource]] | None = None

    def sources(self, batch: int = 1, input_shapes: dict[str, list[int]] | None = None) -> list[GraphSource]:
        return self.load_at(batch, input_shapes) if self.load_at is not None else self.load()


def export_dir_graphs(directory: str | Path) -> list[GraphSource]:
    """Every ONNX artifact of an ``edgecnn export`` directory, each at its own precision (from manifest.json)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    name = manifest.get("model", {}).get("name") or directory.name
    zoo_name = name if manifest.get("model", {}).get("origin") == "zoo" else None
    sources = []
    for artifact in manifest.get("artifacts", []):
        if not str(artifact.get("file", "")).endswith(".onnx"):
            continue
        path = directory / artifact["file"]
        model = load_onnx(path)
        try:
            precision = get_format(artifact.get("format", "")).precision
        except UsageError:
            precision = graph_precision(model)
        sources.append(GraphSource(name, model, "export", precision, path, zoo_name))
    if not sources:
        raise UsageError(f"{directory}/manifest.json lists no ONNX artifact: re-run 'edgecnn export'")
    return sources


def onnx_file_source(path: str | Path, input_shapes: dict[str, list[int]] | None = None, batch: int = 1) -> GraphSource:
    """An ONNX file as the cost model needs it: imported (:func:`edgecnn.onnx_import.import_onnx`) at the
    given shapes, so Dropout-era files, weights stored as Constant nodes or constant subgraphs and
    Shape-computed reshapes cost what the network holds; the import's notes come along."""
    raw = load_onnx(path)
    path = Path(path)
    shapes = concrete_inputs(raw, batch, input_shapes)
    imported = import_onnx(raw, shapes)
    model = imported.model
    first = next(iter(shapes.values()))
    return GraphSource(
        path.name.split(".")[0],
        model,
        "onnx",
        graph_precision(model),
        path,
        None,
        notes=imported.notes,
        batch=first[0] if first else batch,
    )
