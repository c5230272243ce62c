"""The precisions edgecnn knows, and the bytes one weight or activation element takes at each.

One table for the cost model, the device catalog's peaks, the profiler, the plots, the CLI's
``--precision`` choices and the TensorRT build flags.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from edgecnn.errors import UnknownNameError, UsageError

__all__ = ["PRECISIONS", "DEFAULT_PRECISIONS", "PRECISION_BYTES", "parse_precisions", "precision_order"]

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "fp8")
DEFAULT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
"""What a zoo model is profiled at when no precision is asked for: FP8 only on request, since only FP8 GPUs
(Jetson Thor among the catalog's devices) run it."""
PRECISION_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1, "fp8": 1}
"""FP8 is E4M3 (TensorRT's FP8 type): one byte like INT8; only FP8 GPUs (Ada, Hopper, Blackwell) have its peak."""


def precision_order(precision: str) -> int:
    """Sort key: the table's order, unknown precisions last."""
    return PRECISIONS.index(precision) if precision in PRECISIONS else len(PRECISIONS)


def parse_precisions(text: str | Sequence[str]) -> list[str]:
    """``fp32,fp16,int8`` to a list; an unknown name raises with the choices."""
    names = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    if not names:
        raise UsageError(f"give at least one precision: {', '.join(PRECISIONS)}")
    for name in names:
        if name not in PRECISIONS:
            close = difflib.get_close_matches(name, PRECISIONS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"choose from {', '.join(PRECISIONS)}"
            raise UnknownNameError(f"unknown precision {name!r}: {hint}")
    return list(dict.fromkeys(names))
