"""Where edgecnn keeps what it can rebuild: ``$EDGECNN_CACHE`` (default ``~/.cache/edgecnn``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir"]

CACHE_ENV = "EDGECNN_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgecnn")
