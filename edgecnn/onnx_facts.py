"""Facts about an ONNX graph that every step needs: one way to load a file, its inputs, opset and precision,
and shape-only copies.

Export, calibration, TensorRT checks, evaluation and the profiler all read ONNX files; they do it through
:func:`load_onnx`, so a missing, truncated or foreign file is the same one-line error everywhere.

An ONNX file may keep its weights in external data files (``torch.onnx.export`` writes ``model.onnx.data``
beside every model it exports; onnx can write one file per tensor, or put them in a subfolder). Such a
model is the ``.onnx`` file and every file it refers to: :func:`onnx_files` lists them and counts their
bytes, :func:`model_sha256` hashes them all, :func:`save_onnx` writes one file where protobuf allows it.
Locations are relative to the ``.onnx`` file's folder and must stay inside it (onnx and ONNX Runtime both
refuse absolute paths and ``..``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgecnn.errors import UsageError, first_line

__all__ = [
    "STRIPPED_MARK",
    "KEEP_ELEMENTS",
    "QUANTIZED_OPS",
    "GraphIndex",
    "PROTOBUF_LIMIT",
    "OnnxFiles",
    "onnx_files",
    "model_sha256",
    "save_onnx",
    "load_onnx",
    "opset_version",
    "input_dims",
    "value_shape",
    "graph_precision",
    "values_without_shape",
    "is_stripped",
    "strip_weights",
    "fill_weights",
]

STRIPPED_MARK = "edgecnn:shape-only"
KEEP_ELEMENTS = 64
"""Float initializers up to this size keep their data in a shape-only graph (shape arithmetic may read them)."""
QUANTIZED_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
)


PROTOBUF_LIMIT = 2**31 - 1
"""Protobuf's limit on one serialized message: a model larger than this must keep its weights outside the file."""
_MARK = b"location"
"""The key every external data entry carries: a file without these bytes keeps all its tensors inline."""


@dataclass(frozen=True)
class OnnxFiles:
    """An ONNX model as stored: the ``.onnx`` file, the external data files it refers to (each once, in order
    of first reference, as locations relative to the file's folder) and the bytes of them all."""

    path: Path
    locations: tuple[str, ...]
    total_bytes: int

    @property
    def external(self) -> bool:
        return bool(self.locations)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    yield from _node_tensors(graph.node)


def _node_tensors(nodes) -> Iterator[onnx.TensorProto]:
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graph_tensors(subgraph)


def _model_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor that can hold data: initializers and attribute tensors, in subgraphs and functions too."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)


def _external_spans(model: onnx.ModelProto) -> dict[str, int]:
    """Each external data location the model refers to, with the end of the last byte read from it."""
    ends: dict[str, int] = {}
    for tensor in _model_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        try:
            end = int(entries.get("offset") or 0) + int(entries.get("length") or 0)
        except ValueError:
            end = 0
        ends[location] = max(ends.get(location, 0), end)
    return ends


def _checked_locations(path: Path, model: onnx.ModelProto) -> tuple[str, ...]:
    """The external data locations of ``model`` (read from ``path``), each present, inside the model's folder
    and long enough for what the tensors read from it; otherwise a one-line :class:`UsageError`."""
    spans = _external_spans(model)
    folder = path.parent.resolve()
    missing = []
    for location, end in spans.items():
        target = (path.parent / location).resolve()
        if not location or os.path.isabs(location) or not target.is_relative_to(folder):
            raise UsageError(
                f"{path.name} refers to external data at {location or '(no location)'!r}, outside its folder: onnx "
                "and ONNX Runtime read external data only from the model's folder or below; move the data there "
                "and save the model again with that location"
            )
        if not target.is_file():
            missing.append(location)
        elif end > target.stat().st_size:
            raise UsageError(
                f"{path.name} reads {end} bytes from {location}, which holds {target.stat().st_size}: "
                f"the data file is truncated or belongs to another model; copy the one exported with {path.name}"
            )
    if missing:
        more = f" (and {len(missing) - 1} more data files)" if len(missing) > 1 else ""
        where = "next to the .onnx file" if "/" not in missing[0] else f"to {missing[0]} under the .onnx file's folder"
        raise UsageError(f"{path.name} refers to {missing[0]}, which is missing beside it{more}: copy it {where}")
    return tuple(spans)


def _mentions_external_data(path: Path) -> bool:
    """False when the file cannot refer to external data (the bytes ``location`` appear nowhere in it), so an
    inline model is not parsed just to learn that; True means it may, and the graph is read to know."""
    overlap = len(_MARK) - 1
    tail = b""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            if _MARK in tail + block:
                return True
            tail = block[-overlap:]
    return False


def _parse(path: Path) -> onnx.ModelProto:
    """The graph at ``path`` without its external tensors' values; an unreadable file is a one-line error."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, ValueError, OSError... for truncated or foreign files
        raise UsageError(f"{path} is not a readable ONNX model (truncated or not ONNX?): {first_line(error)}") from None


def onnx_files(path: str | Path) -> OnnxFiles:
    """The files the ONNX model at ``path`` is stored in and their total bytes (each data file counted once).

    A data file that is missing, outside the model's folder or shorter than its tensors need is a one-line
    :class:`UsageError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"ONNX file {path} does not exist")
    locations = _checked_locations(path, _parse(path)) if _mentions_external_data(path) else ()
    total = path.stat().st_size + sum((path.parent / location).stat().st_size for location in locations)
    return OnnxFiles(path, locations, total)


def model_sha256(model: str | Path | OnnxFiles) -> str:
    """SHA-256 of an ONNX model (a path, or its :func:`onnx_files`) with its external data: of the file's bytes
    alone for a self-contained file (so it equals the file's own hash), else of the file followed, for each
    data file in order, by its location and its bytes. Manifests and caches identify FP32 models by it."""
    files = model if isinstance(model, OnnxFiles) else onnx_files(model)
    digest = hashlib.sha256()
    _hash_file(digest, files.path)
    for location in files.locations:
        digest.update(b"\0" + location.encode() + b"\0")
        _hash_file(digest, files.path.parent / location)
    return digest.hexdigest()


def _hash_file(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def save_onnx(model: onnx.ModelProto, path: str | Path) -> OnnxFiles:
    """Write ``model`` (its tensors' data loaded) to ``path``: one self-contained file when it fits under
    protobuf's 2 GB (:data:`PROTOBUF_LIMIT`), else the graph with every tensor of 1 KB or more in one data
    file ``<name>.data`` beside it (smaller ones, shape constants among them, stay inline: ONNX Runtime must
    read those while loading). ``model`` keeps its data either way."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    if model.ByteSize() < PROTOBUF_LIMIT:
        path.write_bytes(model.SerializeToString())
        return OnnxFiles(path, (), path.stat().st_size)
    from onnx.external_data_helper import load_external_data_for_model

    with contextlib.chdir(path.parent):  # onnx refuses a location that exists relative to the working directory
        onnx.save_model(
            model, str(path.resolve()), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name
        )
    load_external_data_for_model(model, str(path.parent))
    return OnnxFiles(path, (data.name,), path.stat().st_size + data.stat().st_size)


def load_onnx(path: str | Path, *, load_external_data: bool = True) -> onnx.ModelProto:
    """Read an ONNX file, its external data included (from any location inside its folder); anything
    unreadable, and a data file that is missing, is a one-line usage error naming it. Without
    ``load_external_data`` the graph comes without the external tensors' values, but their files are checked."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"ONNX file {path} does not exist")
    model = _parse(path)
    if not model.graph.node:
        raise UsageError(f"{path} is not a readable ONNX model: it has no graph nodes (truncated or not ONNX?)")
    if _checked_locations(path, model) and load_external_data:
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, str(path.parent))
        except Exception as error:  # onnx's ValidationError, OSError
            raise UsageError(f"cannot read the external data of {path}: {first_line(error)}") from None
    return model


def opset_version(model: onnx.ModelProto) -> int:
    """The default-domain opset the graph imports (0 when it declares none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def value_shape(value: onnx.ValueInfoProto) -> list[int | str]:
    """A value's dims: an int where fixed, the symbolic name (or "") where not."""
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


def input_dims(model: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    """Each real graph input (initializers excluded) with its dims: an int, a symbolic name, or None."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    dims = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape = value.type.tensor_type.shape
        dims[value.name] = (
            [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]
            if value.type.tensor_type.HasField("shape")
            else []
        )
    return dims


def values_without_shape(model: onnx.ModelProto) -> list[str]:
    """Names of node outputs that shape inference left without a complete tensor shape."""
    typed = {
        value.name: value for value in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)
    }
    missing = []
    for node in model.graph.node:
        for name in node.output:
            value = typed.get(name)
            if not name:
                continue
            if value is None or not value.type.tensor_type.HasField("shape"):
                missing.append(name)
                continue
            dims = value.type.tensor_type.shape.dim
            if any(not (d.HasField("dim_value") or d.HasField("dim_param")) for d in dims):
                missing.append(name)
    return missing


class GraphIndex:
    """Lookups over one graph that the cost model and the TensorRT checker both build on: initializers,
    Constant nodes, each value's producer and readers (node, input index), and the declared value types."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.model = model
        self.graph = graph
        self.initializers: dict[str, onnx.TensorProto] = {tensor.name: tensor for tensor in graph.initializer}
        self.constant_nodes = {
            node.output[0]: node for node in graph.node if node.op_type == "Constant" and node.output
        }
        self.types = {value.name: value.type.tensor_type for value in [*graph.value_info, *graph.input, *graph.output]}
        self.producers = {output: node for node in graph.node for output in node.output if output}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, index))

    def readers(self, name: str) -> list[onnx.NodeProto]:
        """The nodes that read value ``name``, in graph order."""
        return [node for node, _ in self.consumers.get(name, [])]


def graph_precision(model: onnx.ModelProto) -> str:
    """The precision a graph runs at: fp8 with Q/DQ nodes on FLOAT8E4M3FN, int8 with other Q/DQ (or QLinear)
    nodes, fp16 with float16 weights or a float16 Cast inside, else fp32."""
    if any(node.op_type in QUANTIZED_OPS for node in model.graph.node):
        fp8 = {onnx.TensorProto.FLOAT8E4M3FN}
        return "fp8" if any(tensor.data_type in fp8 for tensor in model.graph.initializer) else "int8"
    if any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in model.graph.initializer):
        return "fp16"
    for node in model.graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in node.attribute):
            return "fp16"
    return "fp32"


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
        values = (
            rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            if fan_in
            else np.zeros(shape, np.float32)
        )
        tensor.raw_data = values.astype(dtype).tobytes()
    filled.doc_string = ""
    return filled
