"""PyTorch -> ONNX with either of torch's exporters; the default was chosen by measurement (docs/exporters.md)."""

from __future__ import annotations

import contextlib
import math
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
from torch import nn

from edgecnn.errors import EdgecnnError, first_line

__all__ = [
    "adaptive_avg_pool2d_as_matmul",
    "EXPORTERS",
    "DEFAULT_EXPORTER",
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "torch_to_onnx",
    "torch_to_onnx_file",
    "weights_file",
    "mark_external",
    "load_inline",
    "remove_onnx_file",
]

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"
DEFAULT_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def adaptive_avg_pool2d_as_matmul(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` written as two matrix products with constant averaging matrices.

    Same bins as PyTorch (rows ``floor(i*H/out)`` to ``ceil((i+1)*H/out)``), so the result matches to float
    rounding. The torchscript exporter refuses adaptive pooling whose output size does not divide the input
    size (AlexNet or VGG at 256x256); MatMul exports everywhere and TensorRT runs it, unlike the GatherND
    the dynamo exporter decomposes it into.
    """
    height, width = int(x.shape[-2]), int(x.shape[-1])
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    out_h, out_w = out_h or height, out_w or width
    rows = _averaging_matrix(height, out_h, x.dtype)
    columns = _averaging_matrix(width, out_w, x.dtype)
    return torch.matmul(torch.matmul(rows, x), columns.t())


def _averaging_matrix(size: int, bins: int, dtype: torch.dtype) -> torch.Tensor:
    matrix = torch.zeros(bins, size, dtype=dtype)
    for index in range(bins):
        start, end = (index * size) // bins, math.ceil((index + 1) * size / bins)
        matrix[index, start:end] = 1.0 / (end - start)
    return matrix


@contextlib.contextmanager
def _exportable_adaptive_pools(module: nn.Module) -> Iterator[None]:
    """While exporting, adaptive average pools whose bins are uneven run as :func:`adaptive_avg_pool2d_as_matmul`."""

    def forward_for(pool: nn.AdaptiveAvgPool2d):
        def forward(x: torch.Tensor) -> torch.Tensor:
            out_h, out_w = (pool.output_size,) * 2 if isinstance(pool.output_size, int) else pool.output_size
            if (out_h is None or x.shape[-2] % out_h == 0) and (out_w is None or x.shape[-1] % out_w == 0):
                return nn.functional.adaptive_avg_pool2d(x, pool.output_size)
            return adaptive_avg_pool2d_as_matmul(x, pool.output_size)

        return forward

    pools = [pool for pool in module.modules() if isinstance(pool, nn.AdaptiveAvgPool2d)]
    for pool in pools:
        pool.forward = forward_for(pool)
    try:
        yield
    finally:
        for pool in pools:
            del pool.forward


def weights_file(path: str | Path) -> Path:
    """Where :func:`torch_to_onnx_file` keeps the weights of the graph it writes to ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".weights")


def remove_onnx_file(path: str | Path) -> None:
    """Delete an ONNX file written by :func:`torch_to_onnx_file` and its weights file."""
    Path(path).unlink(missing_ok=True)
    weights_file(path).unlink(missing_ok=True)


def mark_external(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    """Point ``tensor`` at ``length`` bytes from ``offset`` in ``location`` (ONNX external data, relative to
    the model file), for a tensor whose data are not in the proto."""
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL


def load_inline(path: str | Path) -> onnx.ModelProto:
    """Load ``path`` with any external weights read into the graph, so that it serializes as one file (and
    byte for byte as if the weights had always been inline)."""
    model = onnx.load(str(path), load_external_data=True)
    for tensor in model.graph.initializer:
        if tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.DEFAULT:
            tensor.ClearField("data_location")
    return model


@contextlib.contextmanager
def _weights_set_aside(captured: dict[str, torch.Tensor]) -> Iterator[None]:
    """While the TorchScript exporter runs, serialize its graph without the weights and hand the weights
    (name -> tensor, after the exporter's BatchNorm folding and constant folding) to ``captured``.

    torch serializes the weights into a C++ ModelProto, then into a string, then into Python bytes, all
    alive at once beside the module: four copies of a VGG's half gigabyte, the export's peak memory.
    Without them the serialized graph names each weight as an input, and :func:`_attach_weights` turns
    those inputs back into initializers, streamed to a file one tensor at a time. There is no public switch
    for this (torch uses external data only above 2 GB), so ``torch._C.Graph._export_onnx`` is wrapped for
    the duration of the call. It is private: :func:`_private_serializer` checks that it exists, and
    :func:`_streamed_as_expected` that the graph it gave names exactly the captured weights as inputs;
    otherwise the export is redone with the public exporter alone (the test suite checks both ways give
    torch's own serialization byte for byte).
    """
    graph_class = torch._C.Graph
    serialize = _private_serializer()

    def serialize_without_weights(graph, params, *args, **kwargs):
        captured.update(params)
        return serialize(graph, {}, *args, **kwargs)

    graph_class._export_onnx = serialize_without_weights
    try:
        yield
    finally:
        graph_class._export_onnx = serialize


def _private_serializer():
    """``torch._C.Graph._export_onnx`` (graph, params, opset, ...) when this torch has it, else None."""
    serializer = getattr(getattr(torch._C, "Graph", None), "_export_onnx", None)
    return serializer if callable(serializer) else None


def _streamed_as_expected(path: Path, weights: dict[str, torch.Tensor]) -> bool:
    """Whether the graph at ``path`` is what the wrapped serializer should give: every input but the image
    is a captured weight, and every captured weight is an input (none lost, none inline twice)."""
    model = onnx.load(str(path), load_external_data=False)
    inputs = {value.name for value in model.graph.input} - {INPUT_NAME}
    initializers = {tensor.name for tensor in model.graph.initializer}
    return inputs == set(weights) and not (initializers & set(weights))


def _attach_weights(path: Path, weights: dict[str, torch.Tensor]) -> None:
    """Make the graph inputs at ``path`` that name a captured weight into initializers whose data lie in
    :func:`weights_file` (ONNX external data), in the order torch itself would have written them."""
    model = onnx.load(str(path), load_external_data=False)
    location = weights_file(path).name
    offset = 0
    with open(weights_file(path), "wb") as stream:
        for value in model.graph.input:
            weight = weights.get(value.name)
            if weight is None:
                continue
            array = weight.detach().cpu().contiguous().numpy()
            tensor = onnx.TensorProto(
                name=value.name, dims=array.shape, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
            )
            data = memoryview(array).cast("B")
            stream.write(data)
            mark_external(tensor, location, offset, data.nbytes)
            model.graph.initializer.append(tensor)
            offset += data.nbytes
    inputs = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.save_model(model, str(path))


def torch_to_onnx(
    module: nn.Module,
    input_shape: tuple[int, int, int, int],
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    exporter: str = DEFAULT_EXPORTER,
) -> onnx.ModelProto:
    """Export ``module`` (eval mode) for NCHW float32 ``input_shape``; a dynamic batch is named ``batch``."""
    with tempfile.TemporaryDirectory(prefix="edgecnn-export-") as scratch:
        path = Path(scratch) / "exported.onnx"
        torch_to_onnx_file(module, input_shape, path, opset=opset, dynamic_batch=dynamic_batch, exporter=exporter)
        return load_inline(path)


def torch_to_onnx_file(
    module: nn.Module,
    input_shape: tuple[int, int, int, int],
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    exporter: str = DEFAULT_EXPORTER,
) -> Path:
    """:func:`torch_to_onnx` written straight to ``path``, the TorchScript exporter's weights in
    :func:`weights_file` beside it (remove both with :func:`remove_onnx_file`): the export then holds the
    weights about once instead of four times (issue 3's memory budget is 3x the weights + 1 GiB)."""
    if exporter not in EXPORTERS:
        raise EdgecnnError(f"unknown exporter {exporter!r}: choose {' or '.join(EXPORTERS)}")
    path = Path(path)
    module = module.eval()
    batch = max(2, input_shape[0]) if dynamic_batch else input_shape[0]
    example = torch.zeros(batch, *input_shape[1:])
    try:
        with (
            warnings.catch_warnings(),
            torch.inference_mode(False),
            torch.no_grad(),
            _exportable_adaptive_pools(module),
        ):
            warnings.simplefilter("ignore")
            if exporter == "torchscript":

                def export_torchscript() -> None:
                    torch.onnx.export(
                        module,
                        (example,),
                        str(path),
                        dynamo=False,
                        opset_version=opset,
                        input_names=[INPUT_NAME],
                        output_names=[OUTPUT_NAME],
                        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
                        do_constant_folding=True,
                    )

                if _private_serializer() is not None:
                    weights: dict[str, torch.Tensor] = {}
                    with _weights_set_aside(weights):
                        export_torchscript()
                    if _streamed_as_expected(path, weights):
                        _attach_weights(path, weights)
                        return path
                    remove_onnx_file(path)
                export_torchscript()
                return path
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None,
                external_data=False,
                optimize=True,
                verbose=False,
            )
            onnx.save_model(program.model_proto, str(path))
            return path
    except Exception as error:
        first = first_line(error)
        raise EdgecnnError(f"the {exporter} exporter failed: {type(error).__name__}: {first[:300]}") from None
