"""A calibration set: a seeded sample of model inputs, kept small (uint8 crops) and normalized batch by batch.

A :class:`CalibrationSet` keeps the seeded sample as uint8 crops at the model's input size (150 KB per
224x224 RGB sample, 75 MB for 500) and normalizes one batch at a time, so float inputs never pile up.
Its ``sha256`` covers the preprocessed pixels and the preprocessing, and keys the calibration cache.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from edgecnn.artifact import Preprocessing

__all__ = ["CalibrationWarning", "CalibrationSet", "InputsSet", "warn", "check_counts"]


class CalibrationWarning(UserWarning):
    """Calibration went ahead, but with less or worse data than asked for."""


@dataclass
class CalibrationSet:
    """A seeded sample of calibration inputs for one model input shape.

    Exactly one of ``images`` (uint8 NHWC crops, normalized per batch), ``inputs`` (float32 NCHW model
    inputs given as an array) or ``synthetic_count`` holds the samples.
    """

    source: str
    kind: str
    description: str
    preprocessing: Preprocessing
    requested: int
    seed: int
    available: int
    images: np.ndarray | None = None
    inputs: np.ndarray | None = None
    synthetic_count: int = 0
    synthetic_offset: int = 0
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        if self.images is not None:
            return len(self.images)
        if self.inputs is not None:
            return len(self.inputs)
        return self.synthetic_count

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.preprocessing.channels, *self.preprocessing.input_size)

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        """Model inputs (float32 NCHW) for the given sample indices."""
        indices = list(indices)
        if self.images is not None:
            return self.preprocessing.normalize(self.images[indices])
        if self.inputs is not None:
            return np.ascontiguousarray(self.inputs[indices], dtype=np.float32)
        return np.stack(
            [
                np.random.default_rng([self.seed, self.synthetic_offset + index]).standard_normal(
                    self.input_shape, dtype=np.float32
                )
                for index in indices
            ]
        )

    def head(self, count: int) -> CalibrationSet:
        """The first ``count`` samples as a set of their own."""
        return self.subset(0, count)

    def subset(self, start: int, stop: int) -> CalibrationSet:
        """Samples ``start:stop`` as a set of their own (synthetic samples keep their indices' values)."""
        stop = min(stop, len(self))
        if self.images is None and self.inputs is None:
            return replace(
                self, synthetic_count=max(0, stop - start), synthetic_offset=self.synthetic_offset + start, warnings=[]
            )
        return replace(
            self,
            images=None if self.images is None else self.images[start:stop],
            inputs=None if self.inputs is None else self.inputs[start:stop],
            warnings=[],
        )

    def feeds(self, indices: Sequence[int], names: Sequence[str]) -> dict[str, np.ndarray]:
        """``{input name: batch}`` for a model with the one image input ``names[0]``."""
        return {names[0]: self.batch(indices)}

    @cached_property
    def sha256(self) -> str:
        """Digest of the preprocessed samples and the preprocessing: the calibration half of a cache key."""
        digest = hashlib.sha256()
        digest.update(
            json.dumps({"kind": self.kind, "preprocessing": self.preprocessing.as_dict()}, sort_keys=True).encode()
        )
        if self.images is not None:
            digest.update(np.ascontiguousarray(self.images).data)
        elif self.inputs is not None:
            for start in range(0, len(self.inputs), 64):
                digest.update(np.ascontiguousarray(self.inputs[start : start + 64], dtype=np.float32).data)
        else:
            digest.update(
                f"synthetic seed={self.seed} count={self.synthetic_count} offset={self.synthetic_offset}".encode()
            )
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        """What the manifest and the CLI report about the set."""
        return {
            "source": self.source,
            "kind": self.kind,
            "description": self.description,
            "samples": len(self),
            "requested": self.requested,
            "available": self.available,
            "skipped_unreadable": self.skipped,
            "seed": self.seed,
            "sha256": self.sha256,
        }

    def describe(self) -> str:
        """One line: which set, how many samples (of how many asked), what was skipped."""
        text = f"{self.description}: {len(self)} samples"
        if len(self) < self.requested:
            text += f" (asked for {self.requested})"
        if self.skipped:
            text += f", {self.skipped} unreadable files skipped"
        return text


@dataclass
class InputsSet:
    """Calibration samples for a model with several inputs or inputs that are not images: one float array
    per input name (axis 0: samples, as a .npz holds them) or seeded standard-normal samples of ``shapes``.

    Same interface as :class:`CalibrationSet` for the reader, the range computation and the INT8 check;
    there is no preprocessing, the arrays are the model's inputs as they are.
    """

    source: str
    kind: str
    description: str
    shapes: dict[str, tuple[int, ...]]
    requested: int
    seed: int
    available: int
    arrays: dict[str, np.ndarray] | None = None
    synthetic_count: int = 0
    synthetic_offset: int = 0
    warnings: list[str] = field(default_factory=list)
    preprocessing: None = None

    def __len__(self) -> int:
        if self.arrays is not None:
            return len(next(iter(self.arrays.values())))
        return self.synthetic_count

    def feeds(self, indices: Sequence[int], names: Sequence[str]) -> dict[str, np.ndarray]:
        """``{input name: batch}`` for the given sample indices, every input of the model."""
        indices = list(indices)
        if self.arrays is not None:
            return {name: np.ascontiguousarray(self.arrays[name][indices], dtype=np.float32) for name in names}
        feeds = {}
        for position, name in enumerate(names):
            feeds[name] = np.stack(
                [
                    np.random.default_rng([self.seed, position, self.synthetic_offset + index]).standard_normal(
                        self.shapes[name], dtype=np.float32
                    )
                    for index in indices
                ]
            )
        return feeds

    def head(self, count: int) -> InputsSet:
        return self.subset(0, count)

    def subset(self, start: int, stop: int) -> InputsSet:
        stop = min(stop, len(self))
        if self.arrays is None:
            return replace(
                self, synthetic_count=max(0, stop - start), synthetic_offset=self.synthetic_offset + start, warnings=[]
            )
        return replace(self, arrays={k: v[start:stop] for k, v in self.arrays.items()}, warnings=[])

    @cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps({"kind": self.kind, "shapes": self.shapes}, sort_keys=True).encode())
        if self.arrays is not None:
            for name in sorted(self.arrays):
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(self.arrays[name], dtype=np.float32).data)
        else:
            digest.update(
                f"synthetic seed={self.seed} count={self.synthetic_count} offset={self.synthetic_offset}".encode()
            )
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "description": self.description,
            "inputs": {name: list(shape) for name, shape in self.shapes.items()},
            "samples": len(self),
            "requested": self.requested,
            "available": self.available,
            "skipped_unreadable": 0,
            "seed": self.seed,
            "sha256": self.sha256,
        }

    def describe(self) -> str:
        text = f"{self.description}: {len(self)} samples"
        if len(self) < self.requested:
            text += f" (asked for {self.requested})"
        return text


def warn(calibration: CalibrationSet | InputsSet, message: str) -> None:
    calibration.warnings.append(message)
    warnings.warn(message, CalibrationWarning, stacklevel=3)


def check_counts(calibration):
    if len(calibration) < calibration.requested:
        warn(
            calibration,
            f"calibration set {calibration.source} has {len(calibration)} usable samples, "
            f"fewer than the {calibration.requested} asked for: "
            "ranges rest on fewer samples",
        )
    return calibration
