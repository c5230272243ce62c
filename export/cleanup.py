"""Graph clean-up after export, with a maintained library, then the checks every artifact must pass.

onnxslim is the default (constant folding, identity/dead-node removal, Conv+BN folding where the exporter
left any, shape inference); ONNX Runtime's basic offline optimization is the alternative. The choice and
its measurement are in docs/exporters.md.
"""
from __future__ import annotations

import os
import tempfile

import onnx

from edgecnn.errors import EdgecnnError
from edgecnn.heap import release_free_heap

__all__ = ["OPTIMIZERS", "DEFAULT_OPTIMIZER", "clean_graph", "check_graph", "values_without_shape"]

OPTIMIZERS = ("onnxslim", "ort", "none")
DEFAULT_OPTIMIZER = "onnxslim"


def _ort_basic(model: onnx.ModelProto | str, scratch: str) -> str:
    import onnxruntime as ort

    target = os.path.join(scratch, "optimized.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = target
    options.log_severity_level = 3
    ort.InferenceSession(model if isinstance(model, str) else model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return target


def clean_graph(
    model: onnx.ModelProto | str | os.PathLike,
    optimizer: str = DEFAULT_OPTIMIZER,
    destination: str | os.PathLike | None = None,
) -> onnx.ModelProto:
    """Simplify ``model`` (a graph or an ONNX file) with ``optimizer`` and return it with inferred shapes for
    every value; with ``destination`` the result is also written there.

    Shape inference runs on files (``infer_shapes_path``), and the result is written by it rather than
    serialized again, so Python never holds the serialized copies that in-memory inference makes: for a
    VGG-sized model that is a gigabyte less at the peak.
    """
    if optimizer not in OPTIMIZERS:
        raise EdgecnnError(f"unknown graph optimizer {optimizer!r}: choose from {', '.join(OPTIMIZERS)}")
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model
    with tempfile.TemporaryDirectory(prefix="edgecnn-clean-") as scratch:
        simplified = os.path.join(scratch, "simplified.onnx")
        if optimizer == "onnxslim":
            import onnxslim

            slimmed = onnxslim.slim(source)
            slimmed.graph.ClearField("doc_string")
            release_free_heap()
            onnx.save_model(slimmed, simplified)
            del slimmed
        elif optimizer == "ort":
            simplified = _ort_basic(source, scratch)
        elif isinstance(source, str):
            simplified = source
        else:
            onnx.save_model(source, simplified)
        del source, model
        inferred = os.fspath(destination) if destination is not None else os.path.join(scratch, "inferred.onnx")
        onnx.shape_inference.infer_shapes_path(simplified, inferred, strict_mode=True, data_prop=True)
        cleaned = onnx.load(inferred)
    if cleaned.graph.doc_string:
        cleaned.graph.ClearField("doc_string")
        if destination is not None:
            onnx.save_model(cleaned, inferred)
    return cleaned


def values_without_shape(model: onnx.ModelProto) -> list[str]:
    """Names of node outputs that shape inference left without a complete tensor shape."""
    typed = {
        value.name: value
        for value in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)
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


def check_graph(model: onnx.ModelProto, path: str | os.PathLike | None = None) -> None:
    """onnx's checker, then no value may be left without a shape.

    Graphs from :func:`clean_graph` already passed onnx's strict shape inference, so the checker runs
    without repeating it (``full_check``); given the saved ``path`` it reads the file instead of
    serializing the model again (a second or more for VGG-sized weights).
    """
    try:
        onnx.checker.check_model(str(path) if path is not None else model)
    except onnx.checker.ValidationError as error:
        raise EdgecnnError(f"the ONNX model fails onnx's checker: {str(error).strip().splitlines()[0][:300]}") from None
    missing = values_without_shape(model)
    if missing:
        raise EdgecnnError(f"shape inference left {len(missing)} values without a shape, first: {', '.join(missing[:3])}")
