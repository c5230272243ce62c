"""Where the profiler's ONNX graphs come from: the zoo (exported once and cached), a user's file, an export directory.

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
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgecnn.errors import UsageError

__all__ = [
    "CACHE_ENV",
    "STRIPPED_MARK",
    "GraphSource",
    "cache_dir",
    "zoo_graph",
    "SHIPPED_GRAPHS_DIR",
    "source_fingerprint",
    "shipped_graph",
    "write_shipped_graphs",
    "load_onnx",
    "export_dir_graphs",
    "graph_precision",
    "strip_weights",
    "fill_weights",
    "is_stripped",
    "onnx_file_source",
]

CACHE_ENV = "EDGECNN_CACHE"
STRIPPED_MARK = "edgecnn:shape-only"
KEEP_ELEMENTS = 64
"""Float initializers up to this size keep their data (shape arithmetic may read them)."""
GRAPH_RECIPE = 2
"""Version of :func:`_build_zoo_graph`'s recipe, part of the cache key: bump it when the recipe changes."""


@dataclass
class GraphSource:
    """One graph to profile: its name, the graph, what it is and where it came from.

    ``precision`` is the graph's own precision (fp32, fp16 or int8 for a Q/DQ graph); ``path`` is the file
    when there is one (measurement runs it as it is); ``model_name`` is the zoo name when the graph is a zoo
    model's, for its reference figures.
    """

    name: str
    model: onnx.ModelProto
    origin: str
    precision: str
    path: Path | None = None
    model_name: str | None = None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgecnn")


SHIPPED_GRAPHS_DIR = Path(__file__).parent / "data" / "zoo_graphs"
SHIPPED_INDEX = "index.json"
GRAPH_LIBRARIES = ("onnx", "onnxslim")
"""Libraries that shape a graph's details (clean-up, opset handling) but not its layers' shapes."""


def _library_versions(names) -> dict[str, str]:
    """:func:`edgecnn.export.manifest.package_versions`, imported late: loading edgecnn.export imports torch."""
    from edgecnn.export.manifest import package_versions

    return package_versions(names)


@functools.cache
def source_fingerprint() -> str:
    """Hash of the graph recipe, the zoo's and the exporter's sources and the torch version: what decides
    a zoo graph's layers and shapes, and so whether a shipped graph is still current."""
    import edgecnn
    from edgecnn.export import cleanup, to_onnx

    package = Path(edgecnn.__file__).parent
    files = sorted((package / "models").glob("*.py")) + [package / "layers.py", Path(to_onnx.__file__), Path(cleanup.__file__)]
    digest = hashlib.sha256(f"graph-recipe-{GRAPH_RECIPE}".encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for package_name, version in _library_versions(["torch"]).items():
        digest.update(f"{package_name}={version}".encode())
    return digest.hexdigest()


@functools.cache
def _code_fingerprint() -> str:
    """:func:`source_fingerprint` plus the ONNX libraries' versions: part of every user-cache key."""
    digest = hashlib.sha256(source_fingerprint().encode())
    for package_name, version in _library_versions(GRAPH_LIBRARIES).items():
        digest.update(f"{package_name}={version}".encode())
    return digest.hexdigest()


@functools.cache
def _shipped_index(directory: Path = SHIPPED_GRAPHS_DIR) -> dict:
    try:
        return json.loads((directory / SHIPPED_INDEX).read_text())
    except (OSError, ValueError):
        return {}


def shipped_graph(name: str, input_size: tuple[int, int], num_classes: int, directory: Path = SHIPPED_GRAPHS_DIR) -> onnx.ModelProto | None:
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
    from edgecnn.registry import get_spec

    spec = get_spec(name)
    height, width = spec.input_size
    model = _build_zoo_graph(spec.name, height, width, spec.num_classes)
    return spec.name, model.SerializeToString(), [height, width], spec.num_classes


def write_shipped_graphs(directory: Path = SHIPPED_GRAPHS_DIR, names: list[str] | None = None, jobs: int = 1, on_done=None) -> dict:
    """Build the default graph of every zoo model (or ``names``) and write them with their index to
    ``directory``, replacing what was there; ``jobs`` processes build in parallel. Returns the index."""
    import contextlib
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from edgecnn.export.staging import write_bytes_atomic
    from edgecnn.registry import list_models

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
        "libraries": _library_versions(("torch", *GRAPH_LIBRARIES)),
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


def is_stripped(model: onnx.ModelProto) -> bool:
    return STRIPPED_MARK in model.doc_string


def strip_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without the data of float initializers larger than ``KEEP_ELEMENTS``; shapes and dtypes stay."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    for tensor in stripped.graph.initializer:
        if tensor.data_type in floats and int(np.prod(tensor.dims, dtype=np.int64)) > KEEP_ELEMENTS:
            for data_field in ("raw_data", "float_data", "int32_data", "double_data"):
                tensor.ClearField(data_field)
    stripped.doc_string = f"{STRIPPED_MARK}: large float initializers keep their shapes, not their data"
    return stripped


def fill_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A runnable copy of a shape-only graph: stripped initializers get seeded He-scaled normal values.

    He scaling (std = sqrt(2 / fan_in)) keeps activations finite through deep stacks, so timing is not
    disturbed by infinities or denormals.
    """
    if not is_stripped(model):
        return model
    filled = onnx.ModelProto()
    filled.CopyFrom(model)
    rng = np.random.default_rng(seed)
    for tensor in filled.graph.initializer:
        has_data = tensor.raw_data or tensor.float_data or tensor.int32_data or tensor.double_data
        if has_data or not tensor.dims:
            continue
        shape = tuple(tensor.dims)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 0
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        values = rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in)) if fan_in else np.zeros(shape, np.float32)
        tensor.raw_data = values.astype(dtype).tobytes()
    filled.doc_string = ""
    return filled


def _build_zoo_graph(name: str, height: int, width: int, num_classes: int) -> onnx.ModelProto:
    """Export on one thread: the trace's single forward pass gains nothing from more, and on a loaded
    machine extra threads made it five times slower (measured).

    Weights are small seeded uniform values (norm scales and variances in [0.5, 1.5]). They must differ
    from tensor to tensor: with constant fills onnxslim's common-subexpression pass merges sibling
    convolutions that became identical (GoogLeNet lost two).
    """
    import torch

    from edgecnn.export.cleanup import clean_graph
    from edgecnn.export.to_onnx import torch_to_onnx
    from edgecnn.registry import get_spec

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
        exported = torch_to_onnx(module, (1, spec.in_chans, height, width), dynamic_batch=True)
    finally:
        torch.set_num_threads(threads)
    return strip_weights(clean_graph(exported))


def zoo_graph(name: str, input_size: tuple[int, int] | None = None, num_classes: int | None = None) -> onnx.ModelProto:
    """The shape-only ONNX graph of zoo model ``name`` (dynamic batch): shipped with the package, from the
    user's cache, or built and cached."""
    from edgecnn.export.staging import write_bytes_atomic
    from edgecnn.registry import get_spec

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


def graph_precision(model: onnx.ModelProto) -> str:
    """The precision a graph runs at: int8 when it holds Q/DQ (or QLinear) nodes, fp16 with float16 weights, else fp32."""
    quantized = {"DequantizeLinear", "QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
    if any(node.op_type in quantized for node in model.graph.node):
        return "int8"
    if any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in model.graph.initializer):
        return "fp16"
    return "fp32"


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file (external data included); anything unreadable is a one-line usage error."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path))
    except Exception as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise UsageError(f"{path} is not a readable ONNX model (truncated or not ONNX?): {first}") from None
    if not model.graph.node:
        raise UsageError(f"{path} is not a readable ONNX model: it has no graph nodes (truncated or not ONNX?)")
    return model


def export_dir_graphs(directory: str | Path) -> list[GraphSource]:
    """Every ONNX artifact of an ``edgecnn export`` directory, each at its own precision (from manifest.json)."""
    from edgecnn.export.formats import get_format
    from edgecnn.export.manifest import read_manifest
    from edgecnn.registry import list_models

    directory = Path(directory)
    manifest = read_manifest(directory)
    name = manifest.get("model", {}).get("name") or directory.name
    zoo_name = name if manifest.get("model", {}).get("origin") == "zoo" and name in list_models() else None
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


def onnx_file_source(path: str | Path) -> GraphSource:
    model = load_onnx(path)
    path = Path(path)
    return GraphSource(path.name.split(".")[0], model, "onnx", graph_precision(model), path, None)


def scratch_model_file(model: onnx.ModelProto) -> Path:
    """Write ``model`` to a temporary file (ONNX Runtime sessions over large graphs load faster from disk)."""
    handle, name = tempfile.mkstemp(suffix=".onnx", prefix="edgecnn-")
    with os.fdopen(handle, "wb") as stream:
        stream.write(model.SerializeToString())
    return Path(name)
