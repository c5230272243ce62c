"""What is being exported: a zoo model, a factory in the user's own code, or an existing ONNX file.

Each is resolved to a :class:`ModelSource`: the torch module (None for ONNX) and what the artifact must
record about its input (size, channels, normalization) and output (class count).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecnn.errors import UsageError, first_line
from edgecnn.export.weights import load_weights
from edgecnn.onnx_facts import onnx_files
from edgecnn.options import parse_input_size, parse_size
from edgecnn.registry import IMAGENET_MEAN, IMAGENET_STD, get_model, get_spec

__all__ = ["ModelSource", "resolve_source"]


@dataclass
class ModelSource:
    name: str
    origin: str
    module: nn.Module | None
    input_size: tuple[int, int]
    in_chans: int
    num_classes: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    min_input_size: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    onnx_path: Path | None = None
    weights_path: Path | None = None
    weights_sha256: str | None = None
    factory_sets_weights: bool = False
    reference: str = ""
    """What the user named: the zoo name, ``file.py:fn`` or the .onnx path (``edgecnn export REFERENCE``)."""
    preprocessing: dict[str, Any] | None = None
    imported: dict[str, Any] = field(default_factory=dict)

    @property
    def randomly_initialized(self) -> bool:
        """True when no weights were given and the module's weights are its seeded random initialization (a
        factory that loads its own weights builds the same module under any seed)."""
        if self.weights_path is not None or self.origin == "onnx":
            return False
        return not self.factory_sets_weights


def _load_factory(
    reference: str, num_classes: int | None, config: dict[str, Any], seed: int = 0
) -> tuple[str, nn.Module, Any]:
    file_part, _, function_name = reference.rpartition(":")
    path = Path(file_part)
    if not path.is_file():
        raise UsageError(f"factory file {path} does not exist (expected path/to/file.py:build_fn)")
    module_name = f"edgecnn_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path} is not an importable Python file")
    user_module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = user_module
    try:
        spec.loader.exec_module(user_module)
    except Exception as error:
        raise UsageError(f"importing {path} failed: {type(error).__name__}: {error}") from None
    factory = getattr(user_module, function_name, None)
    if not callable(factory):
        raise UsageError(f"{path} has no function {function_name!r}")
    kwargs = dict(config)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        torch.manual_seed(seed)
        module = factory(**kwargs)
    except Exception as error:
        raise UsageError(
            f"{reference}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(module, nn.Module):
        raise UsageError(f"{reference} returned {type(module).__name__}, not a torch.nn.Module")
    return function_name, module.eval(), lambda: _build_seeded(factory, kwargs, seed + 1)


def _build_seeded(factory, kwargs: dict[str, Any], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return factory(**kwargs)


def _sets_own_weights(module: nn.Module, rebuild) -> bool:
    """Whether a factory's module holds weights of its own: built again under another seed, it is the same."""
    first = module.state_dict()
    try:
        second = rebuild().state_dict()
    except Exception:  # the factory worked once; a second call that fails says nothing about its weights
        return False
    floats = [key for key, value in first.items() if value.is_floating_point() and value.numel() > 1]
    return bool(floats) and all(
        key in second and second[key].shape == first[key].shape and torch.equal(second[key], first[key])
        for key in floats
    )


def _first_conv_channels(module: nn.Module) -> int:
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def resolve_source(
    model: str,
    *,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    input_size: str | tuple[int, int] | None = None,
    config: dict[str, Any] | None = None,
    name: str | None = None,
) -> ModelSource:
    """Resolve ``model`` (zoo name or alias, ``file.py:fn``, or ``file.onnx``) and load ``weights`` into it.

    The source is named ``name`` when given, else by the zoo's name or by the whole stem of the file
    (``net.v1.onnx`` -> ``net.v1``, ``mynet.py:build`` -> ``mynet``), so different files never share a name.
    """
    if name is not None and (not name or name in (".", "..") or "/" in name or "\\" in name):
        raise UsageError(f"--name {name!r} is not a usable directory name: give a plain name such as 'mynet_v2'")
    config = dict(config or {})
    if model.endswith(".onnx"):
        path = Path(model)
        onnx_files(path)  # a missing file, or missing external data, is refused before anything is written
        if weights is not None:
            raise UsageError("--weights applies to PyTorch models, not to an existing .onnx file")
        if num_classes is not None:
            raise UsageError("--num-classes applies to PyTorch models: an ONNX file's outputs are what it computes")
        return ModelSource(
            name=name or path.stem,
            reference=str(path),
            origin="onnx",
            module=None,
            input_size=parse_size(input_size) if input_size else (0, 0),
            in_chans=0,
            num_classes=None,
            mean=(),
            std=(),
            onnx_path=path,
        )
    if ".py:" in model:
        _, module, rebuild = _load_factory(model, num_classes, config)
        size = parse_size(input_size) if input_size is not None else (224, 224)
        in_chans = _first_conv_channels(module)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((0.5,) * in_chans, (0.5,) * in_chans)
        file_name = Path(model.rpartition(":")[0]).stem
        source = ModelSource(
            name or file_name, "factory", module, size, in_chans, num_classes, mean, std, config=config
        )
        source.factory_sets_weights = weights is None and _sets_own_weights(module, rebuild)
        source.reference = model
    else:
        spec = get_spec(model)
        size = parse_input_size(input_size, spec)
        module = get_model(spec.name, num_classes=num_classes, **config)
        source = ModelSource(
            name=name or spec.name,
            origin="zoo",
            module=module,
            input_size=size,
            in_chans=spec.in_chans,
            num_classes=spec.num_classes if num_classes is None else num_classes,
            mean=spec.mean,
            std=spec.std,
            min_input_size=spec.min_input_size,
            config=config,
            reference=spec.name,
        )
    if weights is not None:
        source.weights_sha256 = load_weights(source.module, weights)
        source.weights_path = Path(weights)
    source.num_classes = _probe_classes(source)
    return source


def _probe_classes(source: ModelSource) -> int:
    """Run one batch-1 forward pass: proves the input size works and reads the class count."""
    height, width = source.input_size
    try:
        with torch.inference_mode():
            out = source.module(torch.zeros(1, source.in_chans, height, width))
    except RuntimeError as error:
        raise UsageError(f"{source.name} cannot run at input size {height}x{width}: {first_line(error)}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise UsageError(f"{source.name} must return [N, num_classes] logits in eval mode, got {type(out).__name__}")
    return int(out.shape[1])
