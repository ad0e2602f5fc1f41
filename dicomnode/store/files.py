"""Durable file writes: temp file in the target directory, fsync, rename, fsync the directory."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from dicomnode.errors import StoreFull

logger = logging.getLogger(__name__)

#: Suffix of files being written; never indexed, removed by ``remove_partials`` at start.
PARTIAL_SUFFIX = ".part"


def check_free_space(root: Path, *, min_free_bytes: int) -> None:
    """Raise StoreFull when the filesystem holding ``root`` has less than the floor free."""
    free = shutil.disk_usage(root).free
    if free < min_free_bytes:
        raise StoreFull(f"{free // 2**20} MB free, below store.min_free_mb={min_free_bytes // 2**20} on {root}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path, *, root: Path, fsync: bool) -> None:
    """Create ``directory`` (below ``root``) and make each new entry durable in its parent."""
    if directory.is_dir():
        return
    missing: list[Path] = []
    probe = directory
    while not probe.is_dir() and probe != root:
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue  # another association created it first
        if fsync:
            _fsync_dir(path.parent)


def write_atomic(target: Path, chunks: Iterable[bytes | memoryview], *, fsync: bool) -> int:
    """Write ``chunks`` to ``target`` so that readers see the old file or the whole new one.

    Returns
    -------
    int
        Bytes written.

    Raises
    ------
    StoreFull
        When the disk fills up during the write (the partial file is removed).
    """
    temp, size = write_partial(target, chunks, fsync=fsync)
    publish(temp, target, fsync=fsync)
    return size


def write_partial(
    target: Path, chunks: Iterable[bytes | memoryview], *, fsync: bool, directory: Path | None = None
) -> tuple[Path, int]:
    """The first half of ``write_atomic``: the bytes in a hidden partial file.

    The partial file lies beside ``target``, or in ``directory`` (on the same filesystem)
    when the target's directory may not be created yet. Returns the partial file and its
    size; ``publish`` moves it into place, or ``with_suppressed_unlink`` drops it. Raises
    StoreFull as ``write_atomic`` does.
    """
    temp = (directory or target.parent) / f".{target.name}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    size = 0
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                    size += written
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        with_suppressed_unlink(temp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull(f"disk full while writing {target.name}") from exc
        raise
    except BaseException:
        with_suppressed_unlink(temp)
        raise
    return temp, size


def publish(temp: Path, target: Path, *, fsync: bool) -> None:
    """The second half of ``write_atomic``: rename the partial file over ``target``, durably.

    Only ``target``'s directory is fsynced: the entry that must survive a crash is there; a
    partial file's old entry that reappears is removed by ``remove_partials`` at start.
    """
    try:
        os.replace(temp, target)
    except OSError as exc:
        with_suppressed_unlink(temp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull(f"disk full while writing {target.name}") from exc
        raise
    if fsync:
        _fsync_dir(target.parent)


def with_suppressed_unlink(path: Path) -> None:
    """Remove ``path`` if it exists; errors are logged, not raised (used on failure paths)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        logger.warning("could not remove file", extra={"path": str(path)}, exc_info=True)


def remove_partials(root: Path) -> int:
    """Delete partial files a killed process left behind; returns how many were removed."""
    removed = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
                with_suppressed_unlink(Path(directory, name))
                removed += 1
    if removed:
        logger.info("removed partial files", extra={"count": removed, "root": str(root)})
    return removed
