"""Per-layer structure of a zoo model: module path, type, output shape and parameters, traced with forward hooks.

MACs come from the one cost model on the model's ONNX graph (:mod:`edgecnn.profile.cost`), joined to the module
rows by the module path the exporter writes into each node's name (``/features/features.0/Conv``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from torch import nn

from edgecnn.errors import UsageError, first_line
from edgecnn.export.zoo_graphs import zoo_graph
from edgecnn.options import parse_input_size
from edgecnn.precisions import PRECISION_BYTES
from edgecnn.profile.cost import CONVENTION, analyze
from edgecnn.registry import get_model, get_spec

__all__ = [
    "LayerRow",
    "ModelSummary",
    "count_parameters",
    "module_macs",
    "summarize",
    "training_heads_note",
    "training_only_parameters",
]


@dataclass
class LayerRow:
    path: str
    type: str
    output_shape: list[int] | None
    params: int
    macs: int | None = None


@dataclass
class ModelSummary:
    name: str
    family: str
    input_shape: list[int]
    num_classes: int
    params: int
    weight_bytes: dict[str, int]
    layers: list[LayerRow] = field(default_factory=list)
    macs: int | None = None
    convention: str = ""


def count_parameters(name: str, num_classes: int | None = None, **config) -> int:
    """Parameter count without allocating weights: the model is built on the meta device."""
    spec = get_spec(name)
    with torch.device("meta"):
        model = spec.builder(num_classes=spec.num_classes if num_classes is None else num_classes, **config)
    return sum(p.numel() for p in model.parameters())


def _leaf_modules(model: nn.Module):
    for path, module in model.named_modules():
        if path and not any(True for _ in module.children()):
            yield path, module


def module_macs(name: str, input_size: tuple[int, int], num_classes: int) -> tuple[int, dict[str, int]]:
    """Total MACs of zoo model ``name`` and MACs per module path, from its ONNX graph's cost table."""
    cost = analyze(zoo_graph(name, input_size, num_classes), name=name)
    by_module: dict[str, int] = {}
    for node in cost.nodes:
        if node.counted and node.macs:
            module = _module_path(node.name)
            by_module[module] = by_module.get(module, 0) + node.macs
    return cost.macs, by_module


def _module_path(node_name: str) -> str:
    """``/features/features.0/conv/conv.0/Conv`` -> ``features.0.conv.0``: the exporter qualifies a scope
    with its parent's scope name where the parent is a container, so each part adds what follows that prefix."""
    parts, names, previous = node_name.strip("/").split("/")[:-1], [], ""
    for part in parts:
        names.append(part[len(previous) + 1 :] if previous and part.startswith(previous + ".") else part)
        previous = part
    return ".".join(names)


def summarize(
    name: str, input_size=None, num_classes: int | None = None, *, macs: bool = True, **config
) -> ModelSummary:
    """Trace one forward pass of a batch-1 input and record every leaf module that ran, in execution order.

    With ``macs`` (and no builder ``config``, which the cached graphs do not cover) each row also gets
    its MACs from the cost model.
    """
    spec = get_spec(name)
    height, width = parse_input_size(input_size, spec)
    model = get_model(spec.name, num_classes=num_classes, **config)
    rows: list[LayerRow] = []
    seen: set[str] = set()

    def record(path: str):
        def hook(module: nn.Module, _inputs, output) -> None:
            shape = list(output.shape) if isinstance(output, torch.Tensor) else None
            params = sum(p.numel() for p in module.parameters(recurse=False)) if path not in seen else 0
            seen.add(path)
            rows.append(LayerRow(path, type(module).__name__, shape, params))

        return hook

    handles = [module.register_forward_hook(record(path)) for path, module in _leaf_modules(model)]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, spec.in_chans, height, width))
    except RuntimeError as error:
        raise UsageError(f"{spec.name} cannot run at {height}x{width}: {first_line(error)}") from None
    finally:
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    classes = model.spec.num_classes if num_classes is None else num_classes
    total_macs = None
    if macs and not config:
        total_macs, by_module = module_macs(spec.name, (height, width), classes)
        for row in rows:
            row.macs = by_module.pop(row.path, 0)
    return ModelSummary(
        name=spec.name,
        family=spec.family,
        input_shape=[1, spec.in_chans, height, width],
        num_classes=classes,
        params=params,
        weight_bytes={precision: params * size for precision, size in PRECISION_BYTES.items()},
        layers=rows,
        macs=total_macs,
        convention=CONVENTION if total_macs is not None else "",
    )


@functools.cache
def training_only_parameters(name: str) -> int:
    """Parameters of zoo model ``name`` in submodules that only run in training (its spec's
    ``training_heads``, e.g. Inception v3's auxiliary head): counted by :func:`count_parameters`
    (PyTorch's ``parameters()``), absent from the inference graph that ``edgecnn profile`` costs."""
    spec = get_spec(name)
    if not spec.training_heads:
        return 0
    with torch.device("meta"):
        model = spec.builder(num_classes=spec.num_classes)
    return sum(p.numel() for head in spec.training_heads for p in model.get_submodule(head).parameters())


def training_heads_note(name: str, view: str) -> str | None:
    """One line that says which parameter count is which for a model with training-only heads; ``view`` is
    ``list`` (PyTorch's count) or ``profile`` (the inference graph's)."""
    extra = training_only_parameters(name)
    if not extra:
        return None
    spec = get_spec(name)
    heads = ", ".join(spec.training_heads)
    total = count_parameters(name)
    if view == "list":
        return (
            f"{name}: params {total / 1e6:.2f} M are PyTorch's, with {extra / 1e6:.2f} M in its training-only "
            f"{heads}; edgecnn profile counts the inference graph, without it and with BatchNorm folded"
        )
    return (
        f"{name}: params are the inference graph's, without the training-only {heads} "
        f"({extra / 1e6:.2f} M; edgecnn list shows PyTorch's {total / 1e6:.2f} M)"
    )
