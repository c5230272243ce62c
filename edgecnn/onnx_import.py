"""One import step for ONNX files from any exporter: a clean, static, inference-only graph and what was done.

Files users bring come from older torch exports, tf2onnx, paddle2onnx or Caffe2 conversions. Before any
command can count, quantize or compile them, :func:`import_onnx` puts them in one form:

1. opset 7-21 accepted; upgraded with onnx's version converter only to ``opset_min`` (per-channel Q/DQ
   needs 13), never downgraded;
2. initializers no longer listed as graph inputs (IR 3 files), so they are constants, not overridable
   inputs;
3. Dropout and Identity bypassed, training-only outputs dropped (Dropout masks, BatchNormalization's
   running and saved statistics, ``training_mode`` cleared): an inference graph never needs them and
   shape inference and quantizers stumble on them;
4. ``input_shapes`` fixes dynamic batch, height and width of every input (all inputs must end static);
5. ``Constant`` nodes turned into initializers, then constant subgraphs folded (ConstantOfShape,
   Reshape/Transpose/Cast of constants, Shape -> Slice/Gather -> Concat on the now fixed shapes) by
   onnxslim;
6. onnx's shape inference with data propagation, ONNX Runtime's symbolic shape inference as the fallback;
   every value must end with a static shape, or a one-line :class:`~edgecnn.errors.UsageError` names the
   node and what to do.

Folding, onnxslim vs ONNX Runtime's basic offline optimizer (``optimized_model_filepath``), measured on the
11 models of the test corpus (tests/corpus.py) after steps 1-4, best of 3 per model, one process on a
shared 2-core machine, two runs (onnxslim 0.1.98, onnxruntime 1.32.0); the source's outputs are ONNX
Runtime's on the file as written, for the 10 models it runs in inference mode:

===============================  =====================  ======================
                                 onnxslim (chosen)      ORT basic
===============================  =====================  ======================
nodes left with constant inputs  0                      0
Constant / Dropout / Identity    0 / 0 / 0              0 / 0 / 0
nodes after, whole corpus        289                    301
HardSwish nodes kept (of 12)     12                     0 (inlined, 24 nodes)
outputs vs the source file       max abs. err / max     max abs. err / max
                                 9.5e-8                 9.5e-8
time, whole corpus               0.71-0.77 s            0.09-0.17 s
===============================  =====================  ======================

Both fold every constant subgraph of the corpus, drop the initializers that folding left unused and fuse
BatchNormalization into the preceding convolution. onnxslim is chosen because it leaves the operators it has
no reason to touch as they are: ONNX Runtime inlines function operators its CPU provider has no kernel for
(HardSwish became HardSigmoid + Mul, at opsets 17, 18, 20 and 21 alike), so the graph edgecnn counts,
quantizes and hands to TensorRT would depend on ONNX Runtime's kernel list. Its cost, 0.02-0.17 s per model,
is small next to the rest of an import; it is also the clean-up of edgecnn's own exports.
``optimizer="ort"`` selects the alternative.

The module is a foundation: it imports only numpy, onnx, onnxruntime, onnxslim and :mod:`edgecnn.errors`.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecnn.errors import UsageError, first_line
from edgecnn.onnx_facts import load_onnx

__all__ = [
    "DEFAULT_OPTIMIZER",
    "MAX_OPSET",
    "MIN_OPSET",
    "OPTIMIZERS",
    "ImportResult",
    "OutputInfo",
    "graph_outputs_info",
    "import_onnx",
    "inference_form",
    "is_classifier",
    "model_opset",
    "parameter_count",
    "unresolved_values",
]

MIN_OPSET = 7
MAX_OPSET = 21
OPTIMIZERS = ("onnxslim", "ort")
DEFAULT_OPTIMIZER = "onnxslim"

_EXTERNAL_DATA_BYTES = 1 << 30
"""Models from this size on reach ONNX Runtime's optimizer as a file with external data (protobuf's 2 GB limit)."""

_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
_DATA_DEPENDENT_OPS = {
    "NonZero",
    "NonMaxSuppression",
    "TopK",
    "Unique",
    "Compress",
    "Loop",
    "If",
    "Scan",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "StringSplit",
}
_QUANTIZER_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_RECURRENT_OPS = {"RNN", "GRU", "LSTM"}


@dataclass
class ImportResult:
    """The imported graph, the shapes its inputs were fixed to, and one note per change, in order."""

    model: onnx.ModelProto
    input_shapes: dict[str, list[int]]
    notes: list[str] = field(default_factory=list)
    source_opset: int = 0
    optimizer: str = DEFAULT_OPTIMIZER


@dataclass(frozen=True)
class OutputInfo:
    """One graph output as a task-agnostic manifest records it; unknown dimensions are their names or None."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


def model_opset(model: onnx.ModelProto) -> int:
    """The model's version of the default ONNX operator set."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise UsageError("the ONNX model imports no version of the default operator set (ai.onnx)")


def import_onnx(
    source: str | os.PathLike | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None = None,
    *,
    opset_min: int | None = None,
    optimizer: str = DEFAULT_OPTIMIZER,
) -> ImportResult:
    """Import an ONNX file or model (not modified) into a static, inference-only graph with weights as
    initializers; see the module docstring for the steps.

    ``input_shapes`` maps input names to dimensions; a bare sequence of dimensions applies to a model with
    a single input. Raises :class:`UsageError` (one line) for what the user can fix: a missing or invalid
    file, an opset outside 7-21, unknown or conflicting shapes, inputs left dynamic, values whose shapes
    depend on the data.
    """
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown graph optimizer {optimizer!r}: choose from {', '.join(OPTIMIZERS)}")
    model = _load(source)
    notes: list[str] = []
    opset = model_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(
            f"the model uses opset {opset}; edgecnn imports opsets {MIN_OPSET}-{MAX_OPSET}: "
            "re-export it within that range"
        )
    if opset_min is not None and not MIN_OPSET <= opset_min <= MAX_OPSET:
        raise UsageError(f"cannot upgrade to opset {opset_min}: choose a target from {MIN_OPSET} to {MAX_OPSET}")
    _initializers_out_of_inputs(model, notes)
    _constants_to_initializers(model, notes)
    _drop_training_outputs(model, notes)
    _bypass_passthroughs(model, notes)
    if opset_min is not None and opset < opset_min:
        model = _upgrade(model, opset, opset_min, notes)
        _constants_to_initializers(model, notes)
    fixed = _fix_input_shapes(model, input_shapes, notes)
    model = _fold(model, optimizer, notes)
    _constants_to_initializers(model, notes)
    model = _infer_static_shapes(model, notes)
    model.graph.ClearField("doc_string")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise UsageError(f"the imported graph fails onnx's checker: {first_line(error)}") from None
    return ImportResult(model, fixed, notes, opset, optimizer)


def inference_form(source: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """The file as written, changed only where it would not infer: initializers out of the inputs, training
    outputs dropped and BatchNormalization out of training mode. Export verifies an import against it, so
    a training-mode file is compared with its own graph at inference, not with batch statistics."""
    model = _load(source)
    notes: list[str] = []
    _initializers_out_of_inputs(model, notes)
    _drop_training_outputs(model, notes)
    return model


def _load(source: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        return model
    return load_onnx(os.fspath(source))


def _walk(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of its subgraphs (If branches, Loop and Scan bodies)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _walk(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _walk(subgraph)


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Every read of value ``old`` in ``graph`` and its subgraphs (outer-scope reads included) reads ``new``."""
    for node in _walk(graph):
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new


def _initializers_out_of_inputs(model: onnx.ModelProto, notes: list[str]) -> None:
    """IR 3 lists every initializer as a graph input: runtimes then treat them as overridable, and
    ONNX Runtime does not fold them. Inputs that have an initializer become plain constants."""
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    kept = [value for value in graph.input if value.name not in constants]
    dropped = len(graph.input) - len(kept)
    if dropped:
        del graph.input[:]
        graph.input.extend(kept)
        notes.append(f"{dropped} initializers were listed as graph inputs: now constants only")
    if model.ir_version < 4:
        notes.append(f"IR version {model.ir_version} -> 4")
        model.ir_version = 4


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The value of a Constant node as a tensor named after its output; None for sparse or string values."""
    for attribute in node.attribute:
        name = attribute.name
        if name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attribute.t)
        elif name == "value_float":
            tensor = numpy_helper.from_array(np.array(attribute.f, np.float32))
        elif name == "value_floats":
            tensor = numpy_helper.from_array(np.array(list(attribute.floats), np.float32))
        elif name == "value_int":
            tensor = numpy_helper.from_array(np.array(attribute.i, np.int64))
        elif name == "value_ints":
            tensor = numpy_helper.from_array(np.array(list(attribute.ints), np.int64))
        else:
            return None
        tensor.name = node.output[0]
        return tensor
    return None


def _constants_to_initializers(model: onnx.ModelProto, notes: list[str]) -> None:
    """Top-level ``Constant`` nodes become initializers of the same name (weights stored the tf2onnx way)."""
    graph = model.graph
    kept: list[onnx.NodeProto] = []
    moved: list[onnx.TensorProto] = []
    for node in graph.node:
        tensor = _constant_tensor(node) if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
        if tensor is None:
            kept.append(node)
        else:
            moved.append(tensor)
    if not moved:
        return
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(moved)
    notes.append(f"folded {len(moved)} Constant nodes into initializers")


def _readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in _walk(graph):
        for name in node.input:
            if name:
                readers.setdefault(name, []).append(node)
    return readers


def _node_label(node: onnx.NodeProto) -> str:
    op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
    return f"{op} node '{node.name or node.output[0]}'"


def _drop_training_outputs(model: onnx.ModelProto, notes: list[str]) -> None:
    """Dropout masks and BatchNormalization statistics outputs removed from their nodes and the graph
    outputs; BatchNormalization's ``training_mode`` cleared. Raises when a node reads one of them (the
    graph then trains, it does not infer)."""
    graph = model.graph
    readers = _readers(graph)
    dropped: list[str] = []
    counts: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type not in ("Dropout", "BatchNormalization") or node.domain not in ("", "ai.onnx"):
            continue
        extra = [name for name in node.output[1:] if name]
        for name in extra:
            if name in readers:
                raise UsageError(
                    f"{_node_label(node)}: its training output '{name}' is read by "
                    f"{_node_label(readers[name][0])}; export the model for inference (eval mode)"
                )
        training = [a for a in node.attribute if a.name == "training_mode" and a.i]
        if extra or training:
            counts[node.op_type] += 1
        del node.output[1:]
        dropped += extra
        for attribute in training:
            node.attribute.remove(attribute)
    if not dropped and not counts:
        return
    kept = [value for value in graph.output if value.name not in set(dropped)]
    removed_outputs = len(graph.output) - len(kept)
    del graph.output[:]
    graph.output.extend(kept)
    what = ", ".join(f"{count} {op}" for op, count in sorted(counts.items()))
    notes.append(
        f"removed the training-only outputs of {what} ({len(dropped)} values, {removed_outputs} of them graph outputs)"
    )
    if counts["BatchNormalization"]:
        notes.append(
            f"{counts['BatchNormalization']} BatchNormalization nodes were in training mode (batch statistics): "
            "they now normalize with their running statistics, as inference does"
        )


def _bypass_passthroughs(model: onnx.ModelProto, notes: list[str]) -> None:
    """Dropout (identity at inference) and Identity nodes removed; a graph output they produced keeps its
    name by renaming the value they copied. A node copying a graph input or a constant straight to a graph
    output stays: the output needs a producer."""
    graph = model.graph
    outputs = {value.name for value in graph.output}
    sources = {value.name for value in graph.input} | {tensor.name for tensor in graph.initializer}
    removed: Counter[str] = Counter()
    for node in list(graph.node):
        if node.op_type not in ("Dropout", "Identity") or node.domain not in ("", "ai.onnx"):
            continue
        source, target = node.input[0], node.output[0]
        if target not in outputs:
            graph.node.remove(node)
            _rename_uses(graph, target, source)
        elif source in sources or source in outputs:
            continue
        else:
            graph.node.remove(node)
            for producer in _walk(graph):
                for index, name in enumerate(producer.output):
                    if name == source:
                        producer.output[index] = target
            _rename_uses(graph, source, target)
        removed[node.op_type] += 1
    if removed:
        notes.append("removed " + ", ".join(f"{count} {op}" for op, count in sorted(removed.items())))


def _upgrade(model: onnx.ModelProto, opset: int, target: int, notes: list[str]) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(model, target)
    except Exception as error:
        raise UsageError(
            f"onnx's version converter cannot upgrade opset {opset} -> {target}: {first_line(error)}"
        ) from None
    notes.append(f"upgraded opset {opset} -> {target}")
    return upgraded


def _dims_text(dims: Sequence[int | str | None]) -> str:
    return "x".join(str(d) if isinstance(d, int) else f"<{d or '?'}>" for d in dims)


def _declared_dims(value: onnx.ValueInfoProto) -> list[int | str | None] | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim]


def _fix_input_shapes(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | Sequence[int] | None, notes: list[str]
) -> dict[str, list[int]]:
    """Fix the given inputs' shapes (checked against the declared rank and static dimensions); every input
    must end static. Stale intermediate and output shapes are cleared for shape inference to redo."""
    graph = model.graph
    inputs = list(graph.input)
    names = [value.name for value in inputs]
    if input_shapes is None:
        requested: dict[str, Sequence[int]] = {}
    elif isinstance(input_shapes, Mapping):
        requested = dict(input_shapes)
    else:
        if len(inputs) != 1:
            raise UsageError(
                f"the model has {len(inputs)} inputs ({', '.join(names)}): name each shape, "
                f"e.g. --input-shape {names[0]}=DIMS"
            )
        requested = {names[0]: input_shapes}
    unknown = [name for name in requested if name not in names]
    if unknown:
        raise UsageError(f"the model has no input named '{unknown[0]}': its inputs are {', '.join(names)}")
    fixed: dict[str, list[int]] = {}
    for value in inputs:
        declared = _declared_dims(value)
        given = requested.get(value.name)
        if given is not None:
            dims = list(given)
            if not dims or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
                raise UsageError(
                    f"the shape given for input '{value.name}' must be positive integers, got {list(given)}"
                )
            dims = [int(d) for d in dims]
            if declared is not None and len(declared) != len(dims):
                raise UsageError(
                    f"input '{value.name}' has {len(declared)} dimensions ({_dims_text(declared)}), "
                    f"the shape given has {len(dims)}"
                )
            if declared is not None:
                for axis, (old, new) in enumerate(zip(declared, dims)):
                    if isinstance(old, int) and old > 0 and old != new:
                        raise UsageError(
                            f"input '{value.name}' has fixed dimension {axis} = {old}, the shape given says {new} "
                            f"({_dims_text(declared)} vs {_dims_text(dims)})"
                        )
            if declared != dims:
                notes.append(f"fixed input {value.name} to {_dims_text(dims)} (was {_dims_text(declared or ['?'])})")
            shape = value.type.tensor_type.shape
            shape.ClearField("dim")
            for d in dims:
                shape.dim.add().dim_value = d
            fixed[value.name] = dims
        elif declared is None or any(not isinstance(d, int) or d < 1 for d in declared):
            template = _dims_text(declared) if declared is not None else "DIMS"
            raise UsageError(
                f"input '{value.name}' has dynamic dimensions ({template}): give them, "
                f"e.g. --input-shape {value.name}={template}"
            )
        else:
            fixed[value.name] = [int(d) for d in declared]
    graph.ClearField("value_info")
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")
    return fixed


def _as_files(model: onnx.ModelProto, directory: str, stem: str) -> str:
    path = os.path.join(directory, f"{stem}.onnx")
    large = model.ByteSize() >= _EXTERNAL_DATA_BYTES
    onnx.save_model(model, path, save_as_external_data=large, location=f"{stem}.weights" if large else None)
    return path


def _fold_ort(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's basic level (constant folding, redundant-node elimination, Conv/BN fusion) written out
    with ``optimized_model_filepath``."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgecnn-import-") as scratch:
        source = _as_files(model, scratch, "source")
        target = os.path.join(scratch, "folded.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = target
        options.log_severity_level = 3
        if model.ByteSize() >= _EXTERNAL_DATA_BYTES:
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", "folded.weights"
            )
            options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        try:
            ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise UsageError(f"ONNX Runtime cannot load the model: {first_line(error)}") from None
        return onnx.load(target)


def _fold_onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    try:
        return onnxslim.slim(model)
    except Exception as error:
        raise UsageError(f"onnxslim cannot simplify the model: {first_line(error)}") from None


def _fold(model: onnx.ModelProto, optimizer: str, notes: list[str]) -> onnx.ModelProto:
    """Constant subgraphs folded into initializers by ``optimizer``; the note lists the nodes that went."""
    before = Counter(node.op_type for node in model.graph.node)
    interface = ([v.name for v in model.graph.input], [v.name for v in model.graph.output])
    folded = _fold_ort(model) if optimizer == "ort" else _fold_onnxslim(model)
    if ([v.name for v in folded.graph.input], [v.name for v in folded.graph.output]) != interface:
        raise UsageError(f"the {optimizer} optimizer changed the graph's inputs or outputs; try the other optimizer")
    after = Counter(node.op_type for node in folded.graph.node)
    gone = before - after
    if gone:
        listed = ", ".join(f"{count} {op}" for op, count in sorted(gone.items(), key=lambda item: (-item[1], item[0])))
        notes.append(
            f"{optimizer} folded constants and fused: {sum(before.values())} -> {sum(after.values())} nodes "
            f"(removed {listed})"
        )
    used = {name for node in _walk(folded.graph) for name in node.input} | {v.name for v in folded.graph.output}
    kept = [tensor for tensor in folded.graph.initializer if tensor.name in used]
    if len(kept) != len(folded.graph.initializer):
        del folded.graph.initializer[:]
        folded.graph.initializer.extend(kept)
    folded.graph.ClearField("value_info")
    return folded


def _static(value: onnx.ValueInfoProto | None) -> bool:
    if value is None or not value.type.HasField("tensor_type"):
        return False
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return False
    return all(d.HasField("dim_value") for d in tensor_type.shape.dim)


def unresolved_values(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str]]:
    """(node, output) for every top-level node output and graph output without a static shape."""
    graph = model.graph
    typed = {value.name: value for value in list(graph.value_info) + list(graph.output) + list(graph.input)}
    missing = [(node, name) for node in graph.node for name in node.output if name and not _static(typed.get(name))]
    return missing


def _shape_inference(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)


def _symbolic_shape_inference(model: onnx.ModelProto) -> onnx.ModelProto | None:
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    # it writes sym_shape_infer_temp.onnx into the working directory: run it in a scratch one
    with tempfile.TemporaryDirectory(prefix="edgecnn-shapes-") as scratch, contextlib.chdir(scratch):
        try:
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        except Exception:
            return None


def _infer_static_shapes(model: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    """Static shapes for every value by onnx's inference, else ONNX Runtime's symbolic inference; what
    neither resolves is a one-line error naming the node."""
    inferred = _shape_inference(model)
    missing = unresolved_values(inferred)
    if not missing:
        return inferred
    symbolic = _symbolic_shape_inference(model)
    if symbolic is not None and not unresolved_values(symbolic):
        notes.append(
            f"onnx's shape inference left {len(missing)} values without a static shape; "
            "symbolic inference resolved them"
        )
        return symbolic
    if symbolic is not None:
        missing = unresolved_values(symbolic)
    node, name = missing[0]
    if node.op_type in _DATA_DEPENDENT_OPS:
        reason = "its output size depends on the input values; edgecnn needs static shapes: cut the graph before it"
    else:
        reason = (
            "neither onnx's nor ONNX Runtime's symbolic shape inference resolves it; "
            "check that every --input-shape is right"
        )
    raise UsageError(
        f"cannot resolve the shape of {_node_label(node)} (output '{name}', {len(missing)} values unresolved): {reason}"
    )


def graph_outputs_info(model: onnx.ModelProto) -> list[OutputInfo]:
    """Name, shape and numpy dtype name of every graph output, in order."""
    infos = []
    for value in model.graph.output:
        tensor_type = value.type.tensor_type
        dims = _declared_dims(value) or []
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name if tensor_type.elem_type else "unknown"
        infos.append(OutputInfo(value.name, tuple(dims), dtype))
    return infos


def is_classifier(model: onnx.ModelProto) -> bool:
    """True when the graph has exactly one output, a float [N, C] with a static C: the only shape that
    says "class scores" without a registry saying so."""
    infos = graph_outputs_info(model)
    if len(infos) != 1:
        return False
    shape, dtype = infos[0].shape, infos[0].dtype
    return len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0 and dtype.startswith(("float", "bfloat"))


def _graph_constants(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        if node.op_type == "Constant":
            tensor = _constant_tensor(node)
            if tensor is not None:
                yield tensor
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graph_constants(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _graph_constants(subgraph)


def parameter_count(model: onnx.ModelProto) -> int:
    """Weights as PyTorch counts parameters, wherever the graph keeps them (initializers, Constant nodes,
    subgraphs): float tensors of rank >= 1 plus quantized weight data (input 0 of DequantizeLinear), but
    neither BatchNormalization running statistics, recurrent initial states (RNN/GRU/LSTM ``initial_h``,
    ``initial_c``: zeros sized by the batch) nor quantization scales and zero points. Each tensor
    counts once, however many nodes read it."""
    statistics: set[str] = set()
    quantizer_aux: set[str] = set()
    quantized: set[str] = set()
    for node in _walk(model.graph):
        if node.op_type == "BatchNormalization":
            statistics.update(node.input[3:5])
        elif node.op_type in _RECURRENT_OPS:
            statistics.update(node.input[5:7])
        elif node.op_type in _QUANTIZER_OPS:
            quantizer_aux.update(node.input[1:3])
            if node.op_type == "DequantizeLinear":
                quantized.add(node.input[0])
    counted: set[str] = set()
    total = 0
    for tensor in _graph_constants(model.graph):
        name = tensor.name
        if name in counted or name in statistics or name in quantizer_aux or not tensor.dims:
            continue
        if tensor.data_type in _FLOAT_TYPES or name in quantized:
            counted.add(name)
            total += math.prod(tensor.dims)
    return total
