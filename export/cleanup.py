"""Graph clean-up after export, with a maintained library, then the checks every artifact must pass.

onnxslim is the default (constant folding, identity/dead-node removal, Conv+BN folding where the exporter
left any, shape inference); ONNX Runtime's basic offline optimization is the alternative. The choice and
its measurement are in docs/exporters.md.
"""

from __future__ import annotations

import math
import os
import tempfile

import onnx

from edgecnn.errors import EdgecnnError, first_line
from edgecnn.export.to_onnx import load_inline, mark_external
from edgecnn.heap import release_free_heap
from edgecnn.onnx_facts import values_without_shape

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
    ort.InferenceSession(
        model if isinstance(model, str) else model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return target


EXTERNAL_MIN_ELEMENTS = 4096
"""Initializers from this many elements on stay in a side file while the graph is cleaned. onnxslim
compares constants' values in weight tying (below 1000 elements) and in common-subexpression elimination;
above this size it now compares file offsets, so two identical large weights would no longer be merged
(trained or seeded weights never are identical; the whole zoo cleans to the same bytes as in memory)."""


def _structure_only(source: str, scratch: str) -> onnx.ModelProto:
    """The graph at ``source`` with the data of its large initializers moved to ``scratch/weights.bin``
    (ONNX external data, read and written one tensor at a time)."""
    from onnx.external_data_helper import (
        load_external_data_for_tensor,
        uses_external_data,
    )

    model = onnx.load(source, load_external_data=False)
    base_dir = os.path.dirname(os.path.abspath(source))
    location = "weights.bin"
    with open(os.path.join(scratch, location), "wb") as stream:
        for tensor in model.graph.initializer:
            if uses_external_data(tensor):
                load_external_data_for_tensor(tensor, base_dir)
                del tensor.external_data[:]
                tensor.ClearField("data_location")
            if not tensor.HasField("raw_data") or math.prod(tensor.dims) < EXTERNAL_MIN_ELEMENTS:
                continue
            offset = stream.tell()
            stream.write(tensor.raw_data)
            length = len(tensor.raw_data)
            tensor.ClearField("raw_data")
            mark_external(tensor, location, offset, length)
    return model


def clean_graph(
    model: onnx.ModelProto | str | os.PathLike,
    optimizer: str = DEFAULT_OPTIMIZER,
    destination: str | os.PathLike | None = None,
) -> onnx.ModelProto:
    """Simplify ``model`` (a graph or an ONNX file, whose weights may be external data) with ``optimizer``
    and return it with inferred shapes for every value and its weights inline; with ``destination`` the
    result is also written there.

    The optimizer and shape inference see the graph's structure only: the large weights wait in a side
    file and are read back once, at the end. onnxslim on a whole in-memory VGG held its weights four and a
    half times over; this way the clean-up's peak is the finished graph and its serialized copy.
    """
    if optimizer not in OPTIMIZERS:
        raise EdgecnnError(f"unknown graph optimizer {optimizer!r}: choose from {', '.join(OPTIMIZERS)}")
    with tempfile.TemporaryDirectory(prefix="edgecnn-clean-") as scratch:
        if isinstance(model, (str, os.PathLike)):
            source = os.fspath(model)
        else:
            source = os.path.join(scratch, "source.onnx")
            onnx.save_model(model, source)
        del model
        structure = _structure_only(source, scratch)
        simplified = os.path.join(scratch, "simplified.onnx")
        if optimizer == "onnxslim":
            import onnxslim

            structure = onnxslim.slim(structure)
        elif optimizer == "ort":
            onnx.save_model(structure, simplified)
            structure = onnx.load(_ort_basic(simplified, scratch), load_external_data=False)
        structure.graph.ClearField("doc_string")
        onnx.save_model(structure, simplified)
        del structure
        release_free_heap()
        inferred = os.path.join(scratch, "inferred.onnx")
        onnx.shape_inference.infer_shapes_path(simplified, inferred, strict_mode=True, data_prop=True)
        cleaned = load_inline(inferred)
    cleaned.graph.ClearField("doc_string")
    if destination is not None:
        onnx.save_model(cleaned, os.fspath(destination))
    return cleaned


def check_graph(model: onnx.ModelProto, path: str | os.PathLike | None = None) -> None:
    """onnx's checker, then no value may be left without a shape.

    Graphs from :func:`clean_graph` already passed onnx's strict shape inference, so the checker runs
    without repeating it (``full_check``); given the saved ``path`` it reads the file instead of
    serializing the model again (a second or more for VGG-sized weights).
    """
    try:
        onnx.checker.check_model(str(path) if path is not None else model)
    except onnx.checker.ValidationError as error:
        raise EdgecnnError(f"the ONNX model fails onnx's checker: {first_line(error, 300)}") from None
    missing = values_without_shape(model)
    if missing:
        raise EdgecnnError(
            f"shape inference left {len(missing)} values without a shape, first: {', '.join(missing[:3])}"
        )
