"""Durable writes: the whole file or nothing, no partial file left behind, a free-space floor."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomnode.errors import StoreFull
from dicomnode.store.files import (
    PARTIAL_SUFFIX,
    check_free_space,
    ensure_dir,
    remove_partials,
    write_atomic,
)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("fsync", [True, False])
def test_write_atomic_writes_all_chunks(tmp_path: Path, fsync: bool) -> None:
    target = tmp_path / "1.2.3.dcm"
    chunks = [b"\x00" * 128, b"DICM", memoryview(b"abc" * 100_000), b""]
    size = write_atomic(target, chunks, fsync=fsync)
    assert size == 128 + 4 + 300_000
    assert target.read_bytes() == b"\x00" * 128 + b"DICM" + b"abc" * 100_000
    assert listing(tmp_path) == ["1.2.3.dcm"]  # no partial file left


def test_write_atomic_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "1.2.3.dcm"
    target.write_bytes(b"old contents that are longer than the new ones")
    write_atomic(target, [b"new"], fsync=True)
    assert target.read_bytes() == b"new"
    assert listing(tmp_path) == ["1.2.3.dcm"]


def failing_after(first: bytes, error: BaseException) -> Iterator[bytes]:
    yield first
    raise error


@pytest.mark.parametrize("error", [RuntimeError("sender went away"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_failure_mid_write_leaves_nothing(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "1.2.3.dcm"
    with pytest.raises(type(error)):
        write_atomic(target, failing_after(b"x" * 4096, error), fsync=True)
    assert listing(tmp_path) == []


def test_failure_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "1.2.3.dcm"
    target.write_bytes(b"complete old copy")
    with pytest.raises(RuntimeError):
        write_atomic(target, failing_after(b"half of the new", RuntimeError("cut")), fsync=True)
    assert target.read_bytes() == b"complete old copy"
    assert listing(tmp_path) == ["1.2.3.dcm"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
def test_disk_full_mid_write_is_store_full(tmp_path: Path, code: int) -> None:
    target = tmp_path / "1.2.3.dcm"
    with pytest.raises(StoreFull, match="1.2.3.dcm"):
        write_atomic(target, failing_after(b"x", OSError(code, os.strerror(code))), fsync=False)
    assert listing(tmp_path) == []


def test_other_os_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(OSError) as exc:
        write_atomic(tmp_path / "a.dcm", failing_after(b"x", OSError(errno.EIO, "I/O error")), fsync=False)
    assert not isinstance(exc.value, StoreFull)
    assert listing(tmp_path) == []


def test_write_into_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "a.dcm", [b"x"], fsync=False)
    assert listing(tmp_path) == []


def test_partial_file_is_hidden_and_marked(tmp_path: Path) -> None:
    """While a write is under way its temp file is hidden, beside the target, named .part."""
    seen: list[str] = []

    def chunks() -> Iterator[bytes]:
        yield b"first"
        seen.extend(listing(tmp_path))
        yield b"second"

    write_atomic(tmp_path / "1.2.3.dcm", chunks(), fsync=False)
    assert len(seen) == 1
    assert seen[0].startswith(".1.2.3.dcm.") and seen[0].endswith(PARTIAL_SUFFIX)
    assert (tmp_path / "1.2.3.dcm").read_bytes() == b"firstsecond"


def test_remove_partials(tmp_path: Path) -> None:
    series = tmp_path / "1.2" / "1.2.3"
    series.mkdir(parents=True)
    (series / "1.2.3.4.dcm").write_bytes(b"kept")
    (series / ".1.2.3.5.dcm.0a1b2c3d4e5f.part").write_bytes(b"half")
    (tmp_path / "1.2" / ".1.2.3.6.dcm.abcdefabcdef.part").write_bytes(b"half")
    (series / "visible.part").write_bytes(b"not ours")
    (series / ".hidden").write_bytes(b"not ours")
    assert remove_partials(tmp_path) == 2
    assert listing(series) == [".hidden", "1.2.3.4.dcm", "visible.part"]
    assert listing(tmp_path / "1.2") == ["1.2.3"]
    assert remove_partials(tmp_path) == 0


def test_ensure_dir_creates_nested_directories(tmp_path: Path) -> None:
    target = tmp_path / "1.2" / "1.2.3"
    ensure_dir(target, root=tmp_path, fsync=True)
    assert target.is_dir()
    ensure_dir(target, root=tmp_path, fsync=True)  # idempotent
    assert listing(tmp_path) == ["1.2"]


def test_check_free_space_passes_below_floor(tmp_path: Path) -> None:
    check_free_space(tmp_path, min_free_bytes=0)
    check_free_space(tmp_path, min_free_bytes=1)


def test_check_free_space_raises_store_full(tmp_path: Path) -> None:
    with pytest.raises(StoreFull) as exc:
        check_free_space(tmp_path, min_free_bytes=2**70)
    message = str(exc.value)
    assert "store.min_free_mb" in message
    assert "MB free" in message
