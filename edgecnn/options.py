"""Parsers for the option values that the CLI and the Python API both accept: sizes, batches, input shapes.

Each turns text into a value or raises a one-line :class:`~edgecnn.errors.UsageError` that shows a valid example.
Memory sizes follow the device catalog: 1 MB = 2**20 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from edgecnn.errors import UsageError

__all__ = ["MB", "parse_memory_size", "parse_batches", "parse_input_shape", "parse_size", "parse_input_size"]

MB = 2**20
_UNITS = {
    "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": MB, "mb": MB, "mib": MB,
    "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40,
}  # fmt: skip


def parse_memory_size(text: str | int) -> int:
    """``512MB``, ``10MB``, ``1.5GB``, ``256KiB`` or ``4096B`` to bytes (KB/MB/GB are binary, as in the catalog).

    A bare number is refused rather than read as bytes: ``--memory-budget 10`` meant 10 MB or GB, never 10 bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if unit == "":
        raise UsageError(
            f"memory size {text!r} has no unit: add KB, MB or GB (for example {match.group(1)}MB), or B for bytes"
        )
    if match is None or unit not in _UNITS:
        raise UsageError(
            f"memory size {text!r} is not a size: give a number with KB, MB or GB (for example 512MB or 1.5GB)"
        )
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise UsageError(f"memory size {text!r} must be more than zero")
    return size


def parse_batches(value: str | int | Iterable[int]) -> list[int]:
    """``"1,8"`` or integers -> distinct positive batch sizes in the given order."""
    items = str(value).split(",") if isinstance(value, (str, int)) else list(value)
    batches: list[int] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            batch = int(text)
        except ValueError:
            raise UsageError(f"batch size {text!r} is not a whole number: give sizes such as --batch 1,8") from None
        if batch < 1:
            raise UsageError(f"batch sizes must be at least 1, got {batch}")
        if batch not in batches:
            batches.append(batch)
    if not batches:
        raise UsageError("give at least one batch size, such as --batch 1 or --batch 1,8")
    return batches


def parse_input_shape(text: str | None) -> dict[str, list[int]] | None:
    """``1x3x224x224`` (the single input) or ``name=1x3x224x224[,name2=...]``; N/?/batch marks the batch dim."""
    if not text:
        return None
    shapes: dict[str, list[int]] = {}
    for part in text.split(","):
        name, _, dims = part.rpartition("=")
        try:
            values = [0 if d.strip().lower() in ("n", "?", "batch") else int(d) for d in dims.lower().split("x")]
        except ValueError:
            raise UsageError(
                f"input shape {part!r} is not DxDx... (for example 1x3x224x224 or input=Nx3x224x224)"
            ) from None
        if not values or any(v < 0 for v in values):
            raise UsageError(f"input shape {part!r} has a negative or missing dimension")
        shapes[name.strip() or "*"] = values
    return shapes


def parse_size(text: str | int | tuple[int, int]) -> tuple[int, int]:
    """``224`` or ``224x192`` (H x W) to a (H, W) pair of positive integers."""
    if isinstance(text, tuple):
        return text
    try:
        size = tuple(int(p) for p in str(text).lower().split("x"))
    except ValueError:
        raise UsageError(f"input size {text!r} is not a number or HxW (for example 224 or 224x192)") from None
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 1:
        raise UsageError(f"input size {text!r} must be H or HxW with positive integers")
    return size


def parse_input_size(text: str | int | tuple[int, int] | None, spec) -> tuple[int, int]:
    """The (H, W) a zoo model (its :class:`~edgecnn.registry.ModelSpec`) runs at: ``text`` parsed and checked
    against its minimum, or its default."""
    if text is None:
        return spec.input_size
    size = parse_size(text)
    if min(size) < spec.min_input_size:
        raise UsageError(
            f"input size {size[0]}x{size[1]} is too small for {spec.name}: it needs at least "
            f"{spec.min_input_size}x{spec.min_input_size}"
        )
    return size
