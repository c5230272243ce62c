"""How much memory calibration needs, and the budget (``--calib-memory``) that refuses it up front.

:func:`edgecnn.calibration.ranges.compute_ranges` runs the model one batch at a time and keeps nothing of a
run once it is counted, so its memory does not grow with the number of samples, and the ranges do not
depend on the budget (which is why the cache key leaves it out): the budget only refuses, with the numbers,
a model whose single run cannot fit. The estimate, in bytes, from the model's static shapes (fixed by the
import step, :func:`edgecnn.onnx_import.import_onnx`):

    base + 3 x weights + calibration set + 2 x run

``run`` is every float value of one forward pass at the model's batch (inputs, intermediates, outputs):
an upper bound of ONNX Runtime's buffers for the run and, again, of the calibrated tensors it hands back
(the augmented model returns every one of them); ``3 x weights`` the model, its augmented copy and the
session's initializers; ``calibration set`` the samples as held (uint8 crops for images); ``base`` the
Python, numpy and ONNX Runtime baseline (:data:`BASE_BYTES`, measured at 330-380 MB here). The histograms
(2048 int64 counts per tensor) and ``np.histogram``'s blocks of 65536 values are small beside these.

The default budget is :data:`DEFAULT_MEMORY_FRACTION` of ``MemAvailable`` in /proc/meminfo: half of what
the kernel says it can give without swapping, so that calibration leaves room for the rest of the
machine. bench/calibration_memory.py compares the estimate with the measured peak RSS.
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
    """How calibration runs: ``batch`` samples per run, one run's values held at a time, and the numbers
    behind the estimate."""

    batch: int
    run_bytes: int
    weight_bytes: int
    data_bytes: int
    budget_bytes: int
    budget_source: str

    def estimate(self) -> int:
        return BASE_BYTES + 3 * self.weight_bytes + self.data_bytes + 2 * self.run_bytes

    def summary(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "activation_mb_per_run": round(self.run_bytes / MB, 2),
            "estimated_peak_mb": round(self.estimate() / MB, 1),
            "budget_mb": round(self.budget_bytes / MB, 1),
            "budget": self.budget_source,
        }

    def describe(self) -> str:
        return (
            f"batch {self.batch}, one run at a time: about {self.estimate() / MB:,.0f} MB "
            f"({self.run_bytes / MB:,.1f} MB of activations per run) within {self.budget_bytes / MB:,.0f} MB "
            f"({self.budget_source})"
        )


def plan_calibration(
    model: onnx.ModelProto,
    *,
    batch: int,
    data_bytes: int,
    budget: int | None = None,
    budget_source: str = "--calib-memory",
    what: str = "the model",
) -> CalibrationPlan:
    """The calibration plan of ``model`` (static shapes, shape-inferred) run at ``batch``, checked against
    ``budget`` (default :func:`default_budget`): a one-line :class:`UsageError` with the numbers when the
    estimate does not fit. The number of samples does not enter: only the calibration set's
    ``data_bytes`` grow with it."""
    if budget is None:
        budget, budget_source = default_budget()
    run, _, unknown = value_bytes(model)
    if unknown:
        raise UsageError(
            f"cannot size calibration memory for {what}: {len(unknown)} values have no static shape "
            f"(first: {unknown[0]}); give --input-shape"
        )
    plan = CalibrationPlan(batch, run, _weight_bytes(model), data_bytes, budget, budget_source)
    if plan.estimate() > budget:
        raise UsageError(
            f"calibrating {what} needs about {plan.estimate() / MB:,.0f} MB at batch {batch} "
            f"({run / MB:,.1f} MB of activations per run, {plan.weight_bytes / MB:,.1f} MB of weights, "
            f"{data_bytes / MB:,.1f} MB of samples, {BASE_BYTES / MB:,.0f} MB runtime) but the budget is "
            f"{budget / MB:,.0f} MB ({budget_source}): give a larger --calib-memory or a smaller --input-shape"
        )
    return plan
