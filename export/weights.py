"""Load user weights into a torch module safely: ``torch.load(weights_only=True)`` only, never arbitrary unpickling."""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from edgecnn.artifact.manifest import sha256_file
from edgecnn.errors import EdgecnnError, UsageError, first_line

__all__ = ["read_state_dict", "load_weights"]

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_SHOWN = 4


def _unwrap(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    """Find the state_dict in a checkpoint: itself, or under ``state_dict``/``model``; strip ``module.`` prefixes."""
    for _ in range(3):
        if (
            isinstance(checkpoint, Mapping)
            and checkpoint
            and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
        ):
            break
        if isinstance(checkpoint, Mapping):
            inner = next((checkpoint[k] for k in _WRAPPER_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
            if inner is not None:
                checkpoint = inner
                continue
        raise UsageError(
            f"{path} holds no state_dict (looked at the top level and under {', '.join(_WRAPPER_KEYS)}): "
            "save one with torch.save(model.state_dict(), path)"
        )
    return {(key[len("module.") :] if key.startswith("module.") else key): value for key, value in checkpoint.items()}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict (or a checkpoint dict holding one) with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        if "GLOBAL" in message or "Unsupported global" in message:
            culprit = re.search(r"GLOBAL ([\w.]+)", message)
            raise UsageError(
                f"{path} needs arbitrary unpickling "
                f"(it references {culprit.group(1) if culprit else 'a Python object'}), "
                "which edgecnn refuses for safety: "
                "re-save it as a plain state_dict with torch.save(model.state_dict(), path)"
            ) from None
        raise UsageError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        first = first_line(error)
        raise UsageError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {first[:200]}"
        ) from None
    return _unwrap(checkpoint, path)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load ``path`` into ``model`` strictly; mismatches raise naming the first offenders. Returns the file's sha256."""
    state_dict = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes (checkpoint vs model): {_listed(wrong_shape)}")
    if problems:
        hint = "is it for another architecture or class count (see --num-classes)?"
        raise UsageError(f"{path} does not fit this model: {'; '.join(problems)}; {hint}")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise EdgecnnError(f"{path} could not be loaded: {first_line(error)}") from None
    return sha256_file(path)
