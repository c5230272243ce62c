"""How much memory calibration needs, and how it is kept under a budget (``--calib-memory``).

ONNX Runtime's calibrators run an augmented model whose outputs are every tensor to calibrate, and keep
each run's outputs until ``collect_data`` returns. edgecnn calls ``collect_data`` once per chunk of
batches (:mod:`edgecnn.calibration.ranges`); this module sizes the chunk from the model's static shapes
(fixed by the import step, :func:`edgecnn.onnx_import.import_onnx`) so that the estimated peak stays under
the budget, and refuses up front, with the numbers, when even one batch cannot fit.

The estimate, in bytes, for chunks of ``k`` batches:

    base + 3 x weights + calibration set + run + k x run + 2 x largest

``run`` is every float value of one forward pass at the model's batch (inputs, intermediates, outputs),
an upper bound of the calibrated tensors the augmented model returns and of ONNX Runtime's activation
arena for that run; ``k x run`` are the outputs a chunk keeps; ``2 x largest`` the copies ORT's
collectors make of one tensor (stacking and flattening) while they update its range or histogram;
``3 x weights`` the model, its augmented copy and the session's initializers; ``base`` the Python,
numpy and ONNX Runtime baseline (:data:`BASE_BYTES`, measured at 330-380 MB here).

The default budget is :data:`DEFAULT_MEMORY_FRACTION` of ``MemAvailable`` in /proc/meminfo: half of what
the kernel says it can give without swapping, so that calibration leaves room for the rest of the
machine. bench/outside_models.py compares the estimate with the measured peak RSS.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import helper

from edgecnn.errors import UsageError
from edgecnn.options import MB

__all__ = [
    "BASE_BYTES",
    "DEFAULT_MEMORY_FRACTION",
    "CalibrationPlan",
    "available_memory_bytes",
    "default_budget",
    "plan_calibration",
    "value_bytes",
]

DEFAULT_MEMORY_FRACTION = 0.5
BASE_BYTES = 400 * MB


def available_memory_bytes() -> int:
    """``MemAvailable`` from /proc/meminfo; physical memory where that file is missing."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_budget() -> tuple[int, str]:
    """(bytes, where they come from): :data:`DEFAULT_MEMORY_FRACTION` of the memory available now."""
    available = available_memory_bytes()
    budget = int(available * DEFAULT_MEMORY_FRACTION)
    return budget, f"default: {DEFAULT_MEMORY_FRACTION:.0%} of {available / MB:,.0f} MB available"


def _tensor_bytes(value: onnx.ValueInfoProto) -> int | None:
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    if not tensor_type.HasField("shape") or None in dims:
        return None
    return math.prod(dims) * helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).itemsize


def value_bytes(model: onnx.ModelProto) -> tuple[int, int, list[str]]:
    """(bytes of every float value of one run, bytes of the largest, names of values without a static shape)
    of a shape-inferred model: inputs, intermediates and outputs, each counted once."""
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    seen: set[str] = set()
    total, largest, unknown = 0, 0, []
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.name in seen or value.name in constants:
            continue
        seen.add(value.name)
        size = _tensor_bytes(value)
        if size is None:
            if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
                unknown.append(value.name)
            continue
        total += size
        largest = max(largest, size)
    return total, largest, unknown


def _weight_bytes(model: onnx.ModelProto) -> int:
    return sum(
        math.prod(t.dims) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize for t in model.graph.initializer
    )


@dataclass(frozen=True)
class CalibrationPlan:
    """How calibration runs: ``batch`` samples per run, ``chunk`` runs per ``collect_data`` call, and the
    numbers behind it."""

    batch: int
    chunk: int
    run_bytes: int
    largest_bytes: int
    weight_bytes: int
    data_bytes: int
    budget_bytes: int
    budget_source: str

    def estimate(self, chunk: int | None = None) -> int:
        chunk = self.chunk if chunk is None else chunk
        fixed = BASE_BYTES + 3 * self.weight_bytes + self.data_bytes + self.run_bytes
        return fixed + chunk * self.run_bytes + 2 * self.largest_bytes

    def summary(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "batches_per_chunk": self.chunk,
            "activation_mb_per_run": round(self.run_bytes / MB, 2),
            "estimated_peak_mb": round(self.estimate() / MB, 1),
            "budget_mb": round(self.budget_bytes / MB, 1),
            "budget": self.budget_source,
        }

    def describe(self) -> str:
        return (
            f"batch {self.batch}, {self.chunk} batches per chunk: about {self.estimate() / MB:,.0f} MB "
            f"({self.run_bytes / MB:,.1f} MB of activations per run) within {self.budget_bytes / MB:,.0f} MB "
            f"({self.budget_source})"
        )


def plan_calibration(
    model: onnx.ModelProto,
    *,
    batch: int,
    batches: int,
    data_bytes: int,
    budget: int | None = None,
    budget_source: str = "--calib-memory",
    what: str = "the model",
) -> CalibrationPlan:
    """The chunk size that keeps the estimated peak under ``budget`` (default :func:`default_budget`) for
    ``model`` (static shapes, shape-inferred) run ``batches`` times at ``batch``; a one-line
    :class:`UsageError` with the numbers when one batch does not fit."""
    if budget is None:
        budget, budget_source = default_budget()
    run, largest, unknown = value_bytes(model)
    if unknown:
        raise UsageError(
            f"cannot size calibration memory for {what}: {len(unknown)} values have no static shape "
            f"(first: {unknown[0]}); give --input-shape"
        )
    plan = CalibrationPlan(batch, 1, run, largest, _weight_bytes(model), data_bytes, budget, budget_source)
    if plan.estimate(1) > budget:
        raise UsageError(
            f"calibrating {what} needs about {plan.estimate(1) / MB:,.0f} MB at batch {batch} "
            f"({run / MB:,.1f} MB of activations per run, {plan.weight_bytes / MB:,.1f} MB of weights, "
            f"{BASE_BYTES / MB:,.0f} MB runtime) but the budget is {budget / MB:,.0f} MB ({budget_source}): "
            "give a larger --calib-memory or a smaller --input-shape"
        )
    spare = budget - plan.estimate(0)
    chunk = max(1, min(batches, spare // max(run, 1)))
    return CalibrationPlan(batch, int(chunk), run, largest, plan.weight_bytes, data_bytes, budget, budget_source)
