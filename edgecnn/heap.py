"""Give freed heap memory back to the operating system between the stages of a large export.

Exporting a model copies its weights several times (tracing, serialization, clean-up), and glibc keeps
most of the freed medium-sized blocks in the process rather than returning them, so each later stage
raises the resident peak further. ``malloc_trim`` returns them; with it the export pipeline's peak is its
largest single stage instead of the sum (bench/results/export.md). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

__all__ = ["release_free_heap"]


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def release_free_heap() -> None:
    """Collect garbage, then return free heap pages to the OS (glibc's ``malloc_trim(0)``)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
