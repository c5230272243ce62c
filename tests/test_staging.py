"""Staged publishing (edgecnn.artifact.staging) under failure: every rename it makes is made to fail in turn.

The directory being published to must afterwards hold either the previous export, byte for byte, or the
complete new one, never a mix, and nothing staged or retired may be left beside it. While files are added to
an existing export, the manifest there must never list a file that is not in place with the listed hash.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from edgecnn.artifact.staging import staged_directory
from edgecnn.errors import UsageError

OLD = {"m.onnx": b"old fp32", "m.fp16.onnx": b"old fp16"}
NEW = {"m.onnx": b"new fp32", "m.int8-cpu.onnx": b"new int8", "m.calib.json": b"{}"}


def _manifest(files: dict[str, bytes]) -> bytes:
    """A manifest in edgecnn's form: one artifact entry per file, with its SHA-256."""
    entries = [{"file": name, "sha256": hashlib.sha256(data).hexdigest()} for name, data in sorted(files.items())]
    return json.dumps({"edgecnn_manifest": 1, "artifacts": entries}).encode()


def _write(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in {**files, "manifest.json": _manifest(files)}.items():
        (directory / name).write_bytes(data)


def _hashes(directory: Path) -> dict[str, str] | None:
    if not directory.exists():
        return None
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def _expected(files: dict[str, bytes] | None) -> dict[str, str] | None:
    if files is None:
        return None
    return {
        name: hashlib.sha256(data).hexdigest() for name, data in {**files, "manifest.json": _manifest(files)}.items()
    }


def _publish(final: Path, replace: bool) -> None:
    """Stage the new export and publish it: the whole directory (``replace``) or its files added to ``final``."""
    added = NEW if replace or not final.exists() else {**OLD, **NEW}
    with staged_directory(final, replace=replace) as staging:
        for name, data in NEW.items():
            (staging / name).write_bytes(data)
        (staging / "manifest.json").write_bytes(_manifest(added))


def _leftovers(parent: Path, final: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != final.name)


class _FailingRenames:
    """os.replace and os.rename (Path.replace and Path.rename call them) counted; the ``fail_at``-th raises EIO."""

    def __init__(self, monkeypatch, fail_at: int | None = None):
        self.calls = 0
        self.fail_at = fail_at
        for name in ("replace", "rename"):
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))

    def _wrap(self, real):
        def rename(source, target, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                raise OSError(errno.EIO, "injected I/O error", str(target))
            return real(source, target, **kwargs)

        return rename


SCENARIOS = {
    "new directory": (None, True),
    "replace the previous export": (OLD, True),
    "add to the previous export": (OLD, False),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_failing_rename_leaves_the_previous_or_the_complete_new_export(tmp_path, monkeypatch, scenario):
    previous, replace = SCENARIOS[scenario]
    finished = NEW if previous is None or replace else {**previous, **NEW}
    with monkeypatch.context() as patch:
        counted = _FailingRenames(patch)
        (tmp_path / "count").mkdir()
        if previous is not None:
            _write(tmp_path / "count" / "m", previous)
        _publish(tmp_path / "count" / "m", replace)
    renames = counted.calls
    assert _hashes(tmp_path / "count" / "m") == _expected(finished)
    assert renames >= (1 if previous is None or replace else len(NEW) + 1)
    for fail_at in range(1, renames + 1):
        parent = tmp_path / f"fail{fail_at}"
        parent.mkdir()
        final = parent / "m"
        if previous is not None:
            _write(final, previous)
        with monkeypatch.context() as patch:
            _FailingRenames(patch, fail_at)
            with pytest.raises(UsageError, match="cannot write .*injected I/O error"):
                _publish(final, replace)
        outcome = _hashes(final)
        assert outcome in (_expected(previous), _expected(finished)), f"rename {fail_at} of {renames}: a mix"
        assert outcome == _expected(previous), f"rename {fail_at} of {renames} failed, yet the new export is there"
        assert _leftovers(parent, final) == [], f"rename {fail_at} of {renames} left {_leftovers(parent, final)}"


def test_the_manifest_never_lists_a_file_not_yet_in_place(tmp_path, monkeypatch):
    """Watch the export after every rename while files are added: the manifest there lists only files that are
    there (it is renamed in after the files it lists)."""
    final = tmp_path / "m"
    _write(final, OLD)
    missing_after_each_rename = []

    def watch(real):
        def rename(source, target, **kwargs):
            result = real(source, target, **kwargs)
            listed = [entry["file"] for entry in json.loads((final / "manifest.json").read_text())["artifacts"]]
            missing_after_each_rename.append(sorted(name for name in listed if not (final / name).is_file()))
            return result

        return rename

    monkeypatch.setattr(os, "replace", watch(os.replace))
    _publish(final, replace=False)
    assert len(missing_after_each_rename) == len(NEW) + 1
    assert missing_after_each_rename == [[]] * (len(NEW) + 1), "the manifest listed files not yet in place"
    assert _hashes(final) == _expected({**OLD, **NEW})


@pytest.mark.parametrize("replace", [True, False])
def test_a_failure_while_staging_leaves_the_previous_export(tmp_path, replace):
    final = tmp_path / "m"
    _write(final, OLD)
    with pytest.raises(KeyboardInterrupt):
        with staged_directory(final, replace=replace) as staging:
            (staging / "m.onnx").write_bytes(b"half written")
            raise KeyboardInterrupt
    assert _hashes(final) == _expected(OLD) and _leftovers(tmp_path, final) == []
