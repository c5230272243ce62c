"""PyTorch -> ONNX with either of torch's exporters; the default was chosen by measurement (docs/exporters.md)."""
from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn

from edgecnn.errors import EdgecnnError

__all__ = ["EXPORTERS", "DEFAULT_EXPORTER", "DEFAULT_OPSET", "INPUT_NAME", "OUTPUT_NAME", "torch_to_onnx"]

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"
DEFAULT_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def torch_to_onnx(
    module: nn.Module,
    input_shape: tuple[int, int, int, int],
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    exporter: str = DEFAULT_EXPORTER,
) -> onnx.ModelProto:
    """Export ``module`` (eval mode) for NCHW float32 ``input_shape``; a dynamic batch is named ``batch``."""
    if exporter not in EXPORTERS:
        raise EdgecnnError(f"unknown exporter {exporter!r}: choose {' or '.join(EXPORTERS)}")
    module = module.eval()
    batch = max(2, input_shape[0]) if dynamic_batch else input_shape[0]
    example = torch.zeros(batch, *input_shape[1:])
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                buffer = io.BytesIO()
                torch.onnx.export(
                    module,
                    (example,),
                    buffer,
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
                    do_constant_folding=True,
                )
                return onnx.load_from_string(buffer.getvalue())
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
            return program.model_proto
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EdgecnnError(f"the {exporter} exporter failed: {type(error).__name__}: {first[:300]}") from None
