"""Accuracy gates for pytest suites, and the digits reference models edgecnn's own regression tests use.

The gate, in a user's test suite (``data/val`` is an ImageFolder tree: one sub-folder of images per class)::

    from edgecnn.testing import assert_accuracy_drop

    def test_int8_model_keeps_its_accuracy():
        assert_accuracy_drop(
            "exports/mobilenet_v2/mobilenet_v2.int8-cpu.onnx",   # or the export directory: every artifact in it
            data="data/val",                                     # or "digits"
            max_drop=1.0,                                        # top-1 points below the FP32 model
        )

The FP32 reference is the export directory's ``<model>.onnx`` unless ``reference=`` names another file.
On failure the assertion message lists each artifact's top-1 and its drop.

The reference models are small versions of six classic networks trained on the digits train split by
``scripts/train_digits.py`` (seeded, reproducible); the small ones' weights ship in
``edgecnn/data/reference_weights`` as float16 state_dicts (cast back to float32 on load), ResNet-18's
(11 M parameters, 22 MB even in float16) are trained where they are needed and cached.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgecnn.artifact import Preprocessing
from edgecnn.evaluate import evaluate
from edgecnn.registry import get_model, get_spec

__all__ = [
    "assert_accuracy_drop",
    "ReferenceModel",
    "REFERENCE_MODELS",
    "REFERENCE_INPUT_SIZE",
    "reference_model",
    "reference_records",
    "reference_weights_path",
    "save_state_dict_fp16",
]

REFERENCE_INPUT_SIZE = 32
"""The digits are upsampled from 8x8 to 32x32, LeNet-5's native size and every reference model's minimum."""


def assert_accuracy_drop(
    artifacts: str | Path | Sequence[str | Path],
    *,
    data: str | Path,
    max_drop: float = 1.0,
    reference: str | Path | None = None,
    top_k: int = 5,
):
    """Fail (``AssertionError``) when any artifact's top-1 on ``data`` is more than ``max_drop`` points below FP32.

    ``artifacts``: ONNX files or export directories; ``data``: an ImageFolder tree or ``"digits"`` (its
    test split); ``reference``: the FP32 ONNX to compare with (default: the export directory's).
    Returns the :class:`edgecnn.evaluate.EvaluationReport` when the gate passes.
    """
    __tracebackhide__ = True  # pytest reports the failure at the caller's line
    paths = [artifacts] if isinstance(artifacts, (str, Path)) else list(artifacts)
    report = evaluate(paths, data, top_k=top_k, max_drop=max_drop, reference=reference)
    if not report.passed:
        raise AssertionError(report.verdict())
    return report


@dataclass(frozen=True)
class ReferenceModel:
    """A reference network: the zoo builder, its reduced-width config, and how to train it (AdamW, one-cycle)."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    learning_rate: float = 2e-3
    shipped: bool = True

    def build(self, seed: int = 0):
        """The untrained network: 10 classes, the config above, seeded initial weights."""
        return get_model(self.name, num_classes=10, seed=seed, **self.config)

    @property
    def preprocessing(self):
        """The preprocessing ``edgecnn export`` records for this network at the reference input size."""
        spec = get_spec(self.name)
        return Preprocessing.default((REFERENCE_INPUT_SIZE, REFERENCE_INPUT_SIZE), spec.in_chans, spec.mean, spec.std)

    def export_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`edgecnn.export.export_model` that reproduce this network."""
        return {"num_classes": 10, "input_size": str(REFERENCE_INPUT_SIZE), "config": dict(self.config)}


REFERENCE_MODELS: dict[str, ReferenceModel] = {
    model.name: model
    for model in (
        ReferenceModel("lenet5"),
        ReferenceModel("mobilenet_v1", {"width_mult": 0.25}),
        ReferenceModel("mobilenet_v2", {"width_mult": 0.35}),
        ReferenceModel("shufflenet_v2_x0_5"),
        ReferenceModel("squeezenet1_1"),
        ReferenceModel("resnet18", epochs=3, shipped=False),
    )
}

_RECORDS = "reference_models.json"


def _weights_folder():
    return resources.files("edgecnn.data").joinpath("reference_weights")


def reference_weights_path(name: str) -> Path:
    """The shipped float16 state_dict of reference model ``name`` (not every model ships one: see ``shipped``)."""
    model = REFERENCE_MODELS[name]
    if not model.shipped:
        raise FileNotFoundError(f"{name}'s weights are not shipped: train them with scripts/train_digits.py {name}")
    return Path(str(_weights_folder().joinpath(f"{name}.pt")))


def reference_records() -> dict[str, Any]:
    """What the training script recorded for each shipped model: test accuracy, seed, epochs, hashes."""
    path = _weights_folder().joinpath(_RECORDS)
    return json.loads(path.read_text()) if path.is_file() else {}


def reference_model(name: str, weights: str | Path | None = None):
    """Reference model ``name`` in eval mode with its trained weights (the shipped file unless ``weights``)."""
    from edgecnn.export.weights import load_weights

    model = REFERENCE_MODELS[name].build()
    load_weights(model, weights if weights is not None else reference_weights_path(name))
    return model.eval()


def save_state_dict_fp16(module, path: str | Path) -> Path:
    """Save ``module``'s state_dict with floating-point tensors in float16: half the size, loaded back into float32."""
    import torch

    state = {key: value.half() if value.is_floating_point() else value for key, value in module.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
