"""The zoo's shape-only ONNX graphs, for the profiler and ``edgecnn info``: shipped, cached, or exported once.

Zoo graphs go through the export path itself (:func:`edgecnn.export.to_onnx.torch_to_onnx` and
:func:`edgecnn.export.cleanup.clean_graph`) with a dynamic batch, but without verification and from a model
built on the meta device and materialized with ``to_empty()``: costs need shapes, not trained values. The
cached copy keeps every shape and drops the data of large float initializers ("shape-only"), so the whole
zoo's cache is a few megabytes and loads in well under a second. :func:`fill_weights` gives such a graph
seeded random weights again when it has to run (host measurement).

The cache lives in ``$EDGECNN_CACHE/graphs`` (default ``~/.cache/edgecnn/graphs``); its key covers the
model, input size, class count, the zoo's and the exporter's source files and the library versions, so an
edit to a model or an upgrade never serves a stale graph.

The package also ships every zoo model's graph at its default input size and class count
(``edgecnn/data/zoo_graphs``, built by ``make zoo-graphs``), so that a first profile of the whole zoo does
not spend minutes exporting: building all of them takes about five minutes on two cores, and issue 5 asks
for the whole zoo's static profile in under a minute. They are used only while the zoo's and the
exporter's sources and the torch version are the ones they were built from (:func:`source_fingerprint`);
the tests fail when they are stale.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import onnx
import torch

import edgecnn
from edgecnn.artifact import package_versions, write_bytes_atomic
from edgecnn.cache import cache_dir
from edgecnn.export import cleanup, to_onnx
from edgecnn.onnx_facts import strip_weights
from edgecnn.registry import get_spec, list_models

__all__ = [
    "SHIPPED_GRAPHS_DIR",
    "zoo_graph",
    "source_fingerprint",
    "shipped_graph",
    "write_shipped_graphs",
]

GRAPH_RECIPE = 2
"""Version of :func:`_build_zoo_graph`'s recipe, part of the cache key: bump it when the recipe changes."""


SHIPPED_GRAPHS_DIR = Path(edgecnn.__file__).parent / "data" / "zoo_graphs"
SHIPPED_INDEX = "index.json"
GRAPH_LIBRARIES = ("onnx", "onnxslim")
"""Libraries that shape a graph's details (clean-up, opset handling) but not its layers' shapes."""


@functools.cache
def source_fingerprint() -> str:
    """Hash of the graph recipe, the zoo's and the exporter's sources and the torch version: what decides
    a zoo graph's layers and shapes, and so whether a shipped graph is still current."""
    package = Path(edgecnn.__file__).parent
    files = sorted((package / "models").glob("*.py")) + [
        package / "layers.py",
        Path(to_onnx.__file__),
        Path(cleanup.__file__),
    ]
    digest = hashlib.sha256(f"graph-recipe-{GRAPH_RECIPE}".encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for package_name, version in package_versions(["torch"]).items():
        digest.update(f"{package_name}={version}".encode())
    return digest.hexdigest()


@functools.cache
def _code_fingerprint() -> str:
    """:func:`source_fingerprint` plus the ONNX libraries' versions: part of every user-cache key."""
    digest = hashlib.sha256(source_fingerprint().encode())
    for package_name, version in package_versions(GRAPH_LIBRARIES).items():
        digest.update(f"{package_name}={version}".encode())
    return digest.hexdigest()


@functools.cache
def _shipped_index(directory: Path = SHIPPED_GRAPHS_DIR) -> dict:
    try:
        return json.loads((directory / SHIPPED_INDEX).read_text())
    except (OSError, ValueError):
        return {}


def shipped_graph(
    name: str, input_size: tuple[int, int], num_classes: int, directory: Path = SHIPPED_GRAPHS_DIR
) -> onnx.ModelProto | None:
    """The graph shipped with the package for this configuration, or None when there is none or it is stale."""
    index = _shipped_index(directory)
    entry = index.get("graphs", {}).get(name)
    if entry is None or index.get("source_fingerprint") != source_fingerprint():
        return None
    if tuple(entry["input_size"]) != tuple(input_size) or entry["num_classes"] != num_classes:
        return None
    try:
        return onnx.load(str(directory / entry["file"]))
    except Exception:
        return None


def _build_default_graph(name: str) -> tuple[str, bytes, list[int], int]:
    spec = get_spec(name)
    height, width = spec.input_size
    model = _build_zoo_graph(spec.name, height, width, spec.num_classes)
    return spec.name, model.SerializeToString(), [height, width], spec.num_classes


def write_shipped_graphs(
    directory: Path = SHIPPED_GRAPHS_DIR, names: list[str] | None = None, jobs: int = 1, on_done=None
) -> dict:
    """Build the default graph of every zoo model (or ``names``) and write them with their index to
    ``directory``, replacing what was there; ``jobs`` processes build in parallel. Returns the index."""
    import contextlib
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    names = names or list_models()
    directory.mkdir(parents=True, exist_ok=True)
    graphs = {}
    with contextlib.ExitStack() as stack:
        build = map
        if jobs > 1:
            build = stack.enter_context(ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))).map
        for name, data, size, classes in build(_build_default_graph, names):
            graphs[name] = (data, size, classes)
            if on_done:
                on_done(name)
    index = {
        "source_fingerprint": source_fingerprint(),
        "libraries": package_versions(("torch", *GRAPH_LIBRARIES)),
        "graphs": {},
    }
    for stale in directory.glob("*.onnx"):
        if stale.stem not in graphs:
            stale.unlink()
    for name, (data, size, classes) in sorted(graphs.items()):
        write_bytes_atomic(directory / f"{name}.onnx", data)
        index["graphs"][name] = {"file": f"{name}.onnx", "input_size": size, "num_classes": classes}
    write_bytes_atomic(directory / SHIPPED_INDEX, (json.dumps(index, indent=1, sort_keys=True) + "\n").encode())
    _shipped_index.cache_clear()
    return index


def _build_zoo_graph(name: str, height: int, width: int, num_classes: int) -> onnx.ModelProto:
    """Export on one thread: the trace's single forward pass gains nothing from more, and on a loaded
    machine extra threads made it five times slower (measured).

    Weights are small seeded uniform values (norm scales and variances in [0.5, 1.5]). They must differ
    from tensor to tensor: with constant fills onnxslim's common-subexpression pass merges sibling
    convolutions that became identical (GoogLeNet lost two).
    """
    spec = get_spec(name)
    with torch.device("meta"):
        module = spec.builder(num_classes=num_classes)
    module = module.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                low, high = (0.5, 1.5) if tensor.dim() <= 1 else (-0.05, 0.05)
                tensor.uniform_(low, high, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exported = to_onnx.torch_to_onnx(module, (1, spec.in_chans, height, width), dynamic_batch=True)
    finally:
        torch.set_num_threads(threads)
    return strip_weights(cleanup.clean_graph(exported))


def zoo_graph(name: str, input_size: tuple[int, int] | None = None, num_classes: int | None = None) -> onnx.ModelProto:
    """The shape-only ONNX graph of zoo model ``name`` (dynamic batch): shipped with the package, from the
    user's cache, or built and cached."""
    spec = get_spec(name)
    height, width = input_size or spec.input_size
    classes = num_classes or spec.num_classes
    shipped = shipped_graph(spec.name, (height, width), classes)
    if shipped is not None:
        return shipped
    key = hashlib.sha256(f"{spec.name}|{height}x{width}|{classes}|{_code_fingerprint()}".encode()).hexdigest()[:16]
    path = cache_dir() / "graphs" / f"{spec.name}-{height}x{width}-{classes}-{key}.onnx"
    if path.is_file():
        try:
            return onnx.load(str(path))
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    model = _build_zoo_graph(spec.name, height, width, classes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, model.SerializeToString())
    except OSError:
        pass  # an unwritable cache costs time on the next run, nothing else
    return model
