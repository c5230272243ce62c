"""The model registry: the one place that knows every network, how to build it and what it expects.

Modelled on torchvision's ``_api.py`` and timm's ``_registry.py``: builders register themselves with a
decorator, ``list_models`` filters names with fnmatch, ``get_model`` builds by name or family alias.
Importing this module does not import PyTorch (``import edgecnn`` stays torch-free for the device side);
listing the zoo imports the model files, and so PyTorch.
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from edgecnn.artifact.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from edgecnn.errors import UnknownNameError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ALIASES",
    "Reference",
    "ModelSpec",
    "register_model",
    "list_models",
    "get_model",
    "get_spec",
    "resolve_name",
]


ALIASES: dict[str, str] = {
    "lenet": "lenet5",
    "vgg": "vgg16",
    "inception": "inception_v3",
    "inception_resnet": "inception_resnet_v2",
    "resnet": "resnet50",
    "preact_resnet": "preact_resnet50",
    "wide_resnet": "wide_resnet50_2",
    "wrn": "wrn_28_10",
    "resnext": "resnext50_32x4d",
    "densenet": "densenet121",
    "squeezenet": "squeezenet1_1",
    "mobilenet": "mobilenet_v2",
    "mobilenet_v3": "mobilenet_v3_large",
    "shufflenet": "shufflenet_v2_x1_0",
    "shufflenet_v1": "shufflenet_v1_g3",
    "shufflenet_v2": "shufflenet_v2_x1_0",
}
"""Family aliases: each resolves to one documented default member."""


@dataclass(frozen=True)
class Reference:
    """Published figures for a network, from ``data/zoo_reference.csv`` (see its ``source`` column).

    ``rule`` says how closely our definition must match: ``exact``, ``within N%`` or ``document``
    (no canonical count exists; the builder's docstring names the configuration and its source).
    """

    source: str
    input_size: str
    params: float | None
    gmacs: float | None
    top1: float | None
    top5: float | None
    rule: str
    note: str

    @property
    def params_tolerance(self) -> float | None:
        """Allowed relative difference in parameter count, or None where no count is canonical."""
        if self.rule.startswith("exact"):
            return 0.0
        if self.rule.startswith("within"):
            return float(self.rule.split()[1].rstrip("%")) / 100.0
        return None


def _parse_number(text: str) -> float | None:
    text = text.strip().removeprefix("about").strip()
    return float(text) if text else None


@functools.cache
def reference_table() -> dict[str, Reference]:
    """The zoo reference table shipped with the package, keyed by model name."""
    with resources.files("edgecnn.data").joinpath("zoo_reference.csv").open(newline="") as handle:
        return {
            row["name"]: Reference(
                source=row["source"],
                input_size=row["input_size"],
                params=_parse_number(row["params"]),
                gmacs=_parse_number(row["gmacs"]),
                top1=_parse_number(row["top1"]),
                top5=_parse_number(row["top5"]),
                rule=row["params_rule"],
                note=row["note"],
            )
            for row in csv.DictReader(handle)
        }


@dataclass(frozen=True)
class ModelSpec:
    """What a network is and what it expects: everything export, calibration and profiling need.

    ``torchvision_config`` is set where torchvision 0.29.1 has the same architecture under the same
    name: the builder config that reproduces ``torchvision.models.get_model(name, weights=None)``
    (usually empty), so that torchvision's checkpoints load into ours with ``strict=True``.
    """

    name: str
    family: str
    builder: Callable[..., nn.Module] = field(repr=False)
    input_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    tags: frozenset[str] = frozenset()
    paper: str = ""
    min_input_size: int = 32
    torchvision_config: Mapping[str, Any] | None = None
    training_heads: tuple[str, ...] = ()
    """Submodules that only run in training (Inception v3's ``AuxLogits``): in PyTorch's parameter count,
    not in the exported inference graph."""

    @property
    def reference(self) -> Reference | None:
        return reference_table().get(self.name)

    @property
    def summary(self) -> str:
        """First line of the builder's docstring."""
        return (self.builder.__doc__ or "").strip().splitlines()[0] if self.builder.__doc__ else ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    *,
    family: str,
    paper: str,
    input_size: int | tuple[int, int] = 224,
    in_chans: int = 3,
    num_classes: int = 1000,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    tags: Iterable[str] = (),
    min_input_size: int = 32,
    torchvision: bool | Mapping[str, Any] = False,
    training_heads: Iterable[str] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register the decorated builder under its function name. A duplicate name raises ValueError.

    ``torchvision=True`` marks a torchvision-exact architecture; a dict gives the builder config that
    matches torchvision's default construction (for example ``{"aux_logits": True}`` for GoogLeNet).
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        if name in ALIASES:
            raise ValueError(f"model name {name!r} is already an alias for {ALIASES[name]!r}")
        _REGISTRY[name] = ModelSpec(
            name=name,
            family=family,
            builder=builder,
            input_size=size,
            in_chans=in_chans,
            num_classes=num_classes,
            mean=tuple(mean),
            std=tuple(std),
            tags=frozenset(tags),
            paper=paper,
            min_input_size=min_input_size,
            torchvision_config=(
                dict(torchvision if isinstance(torchvision, Mapping) else {}) if torchvision is not False else None
            ),
            training_heads=tuple(training_heads),
        )
        return builder

    return decorate


def _ensure_zoo_loaded() -> None:
    import edgecnn.models  # noqa: F401  (importing the zoo registers every family)


def list_models(pattern: str | Iterable[str] | None = None, tags: Iterable[str] = ()) -> list[str]:
    """Sorted names of registered models matching any fnmatch ``pattern`` and carrying every tag in ``tags``."""
    _ensure_zoo_loaded()
    patterns = [pattern] if isinstance(pattern, str) else list(pattern or ["*"])
    wanted = set(tags)
    return sorted(
        name
        for name, spec in _REGISTRY.items()
        if any(fnmatch.fnmatchcase(name, p) for p in patterns) and wanted <= spec.tags
    )


def resolve_name(name: str) -> str:
    """The registered name behind ``name`` or its alias; an unknown name raises with close matches."""
    _ensure_zoo_loaded()
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in _REGISTRY:
        return key
    choices = list(_REGISTRY) + list(ALIASES)
    close = difflib.get_close_matches(key, choices, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "run 'edgecnn list' to see the zoo"
    raise UnknownNameError(f"unknown model {name!r}: {hint}")


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model or alias."""
    return _REGISTRY[resolve_name(name)]


def get_model(name: str, num_classes: int | None = None, *, seed: int = 0, **config) -> nn.Module:
    """Build a registered model (or alias) in eval mode with deterministically seeded initial weights.

    ``config`` goes to the builder (for example ``width_mult`` for MobileNet, ``aux_logits`` for
    GoogLeNet). The returned module carries its spec as ``model.spec``.
    """
    import torch

    spec = get_spec(name)
    classes = spec.num_classes if num_classes is None else int(num_classes)
    if classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.builder(num_classes=classes, **config)
    model.spec = spec
    return model.eval()
