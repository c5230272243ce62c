"""Atomic artifacts: everything is written under a temporary name and renamed when complete.

Files and directories get the mode the user's umask gives a new file (``mkstemp`` and ``mkdtemp`` create them
0600 and 0700, which another user or a container could not read). A destination that cannot be written is a
one-line :class:`~edgecnn.errors.UsageError`, never an ``OSError`` traceback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgecnn.artifact.manifest import MANIFEST_NAME
from edgecnn.errors import UsageError

__all__ = ["staged_directory", "staged_file", "write_bytes_atomic", "umask_mode", "cannot_write"]


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process umask: what ``open()`` (or ``mkdir`` for 0o777) gives a new file."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("Umask:"))
        umask = int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return mode & ~umask


def cannot_write(path: Path, error: OSError) -> UsageError:
    """The one-line error for a destination the user cannot write."""
    blocker = next((parent for parent in Path(path).parents if parent.exists() and not parent.is_dir()), None)
    reason = f"{blocker} is a file, not a directory" if blocker is not None else error.strerror or str(error)
    return UsageError(f"cannot write {path}: {reason}; choose a writable location")


@contextmanager
def staged_file(path: Path, mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (with its suffix, for writers that go by the extension); when the
    block succeeds it gets ``mode`` less the umask and is renamed to ``path``, on any failure it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise cannot_write(path, error) from None
    temporary = Path(name)
    try:
        yield temporary
        publish(temporary, path, mode)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def publish(temporary: Path, path: Path, mode: int = 0o666) -> None:
    """Give the finished ``temporary`` the umask's ``mode`` and rename it to ``path``."""
    try:
        os.chmod(temporary, umask_mode(mode))
        os.replace(temporary, path)
    except OSError as error:
        raise cannot_write(path, error) from None


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory."""
    with staged_file(path, mode) as temporary:
        temporary.write_bytes(data)


@contextmanager
def staged_directory(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty sibling directory to fill; on any failure it is removed and ``final`` is untouched.

    On success, with ``replace`` the staged directory replaces ``final`` whole. Otherwise its files are added
    to ``final``: each replaces only its namesake, every other file in ``final`` stays, and ``manifest.json``
    is renamed in last, so the manifest never lists a file that is not there yet. A rename that fails while
    publishing is undone (the previous directory, or the files it replaced, put back) and reported as a
    one-line :class:`~edgecnn.errors.UsageError`: ``final`` is the previous export or the new one, never a mix.
    The caller decides what may be replaced (see :func:`edgecnn.export.pipeline.export_model`).
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as error:
        raise UsageError(
            f"cannot write to {final.parent}: {error.strerror or error}; choose another directory with -o"
        ) from None
    try:
        yield staging
        staging.chmod(umask_mode(0o777))
        try:
            if not final.exists():
                os.replace(staging, final)
            elif replace:
                _replace_directory(staging, final)
            else:
                _add_files(staging, final)
                staging.rmdir()
        except OSError as error:
            raise cannot_write(final, error) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_directory(staging: Path, final: Path) -> None:
    """Rename ``final`` aside, ``staging`` in its place, and drop the old one; put it back if the swap fails."""
    retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    previous = retired / final.name
    try:
        os.replace(final, previous)
        os.replace(staging, final)
    except BaseException:
        if previous.exists():
            os.replace(previous, final)
        retired.rmdir()
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _add_files(staging: Path, final: Path) -> None:
    """Rename each staged file over its namesake in ``final``, ``manifest.json`` last.

    Each namesake is first linked (or copied) aside, so it stays in place until it is replaced; if a rename
    fails, the files already renamed in are put back as they were (or removed, where they are new). Should
    putting one back fail too, the directory holding the old files is left beside ``final`` rather than lost.
    """
    names = sorted((p.name for p in staging.iterdir()), key=lambda name: name == MANIFEST_NAME)
    kept = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    done: list[str] = []
    try:
        for name in names:
            if (final / name).is_file():
                _keep(final / name, kept / name)
            os.replace(staging / name, final / name)
            done.append(name)
    except BaseException:
        for name in reversed(done):
            if (kept / name).exists():
                os.replace(kept / name, final / name)
            elif (final / name).is_dir():
                shutil.rmtree(final / name)
            else:
                (final / name).unlink(missing_ok=True)
        shutil.rmtree(kept, ignore_errors=True)
        raise
    shutil.rmtree(kept, ignore_errors=True)


def _keep(path: Path, copy: Path) -> None:
    """A second name for ``path``'s current content: a hard link where the file system has them, else a copy."""
    try:
        os.link(path, copy)
    except OSError:
        shutil.copy2(path, copy)
