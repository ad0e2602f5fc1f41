"""Kill -9 the node in the middle of a 500-instance storescu transfer: nothing acknowledged is lost.

The contract under test (DESIGN "Store layout", issue 2 "Durability test"): Success is sent
only once the file is fsynced, renamed into place and indexed. So after SIGKILL on the node's
whole process group, every instance DCMTK ``storescu`` saw acknowledged with 0x0000 must be on
disk under its final name, byte-identical to what was sent, and in the index with the sha256 of
that file; no file under a final name may be partial; the partial files the crash left are
removed when the node starts again; and a full resend ends with each instance stored and
indexed exactly once.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from pydicom import dcmread

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.store.files import PARTIAL_SUFFIX
from tests.helpers import ServeProcess, dataset_bytes, dcmtk, get_port, serve_env, split_part10

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk, pytest.mark.timeout(240)]

COUNT = 500
AE_TITLE = "DICOMNODE"
CALLING_AE = "DURABILITY"


@dataclass(frozen=True, slots=True)
class Source:
    """One generated instance as sent."""

    path: Path
    study_instance_uid: str
    series_instance_uid: str
    dataset: bytes  # the bytes after the file meta

    @property
    def relative_path(self) -> str:
        return f"{self.study_instance_uid}/{self.series_instance_uid}/{self.path.stem}.dcm"


def write_sources(directory: Path) -> dict[str, Source]:
    """500 synthetic 64x64 CT slices, one series, Explicit VR Little Endian Part 10 files."""
    directory.mkdir()
    sources: dict[str, Source] = {}
    for ds in synthetic_ct(shape=(COUNT, 64, 64), spacing=(1.0, 5.0, 5.0), seed=20240502):
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        sources[ds.SOPInstanceUID] = Source(
            path, ds.StudyInstanceUID, ds.SeriesInstanceUID, dataset_bytes(path)
        )
    assert len({s.series_instance_uid for s in sources.values()}) == 1
    assert len(sources) == COUNT
    return sources


# storescu -d prints each DIMSE message it receives as a block of "D: key : value" lines
# between "INCOMING DIMSE MESSAGE" and "END DIMSE MESSAGE"; a C-STORE RSP block names the
# Affected SOP Instance UID and "DIMSE Status : 0x0000: Success".
_FIELD = re.compile(r"^D: (?P<key>[A-Za-z][A-Za-z ]*?)\s+: (?P<value>.*)$")


@dataclass
class StoreScuRun:
    """What one storescu run reported: acknowledged SOP Instance UIDs, their statuses."""

    statuses: dict[str, int] = field(default_factory=dict)
    returncode: int | None = None
    tail: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> set[str]:
        return {uid for uid, code in self.statuses.items() if code == 0x0000}


def run_storescu(
    files: list[Path], *, port: int, kill_after: int | None = None, on_kill: Callable[[], None] | None = None,
    timeout: float = 120,
) -> StoreScuRun:
    """Send ``files`` over one association; call ``on_kill()`` once ``kill_after`` are acknowledged.

    The output is parsed as it streams, so the kill lands while storescu is still sending.
    """
    command = [
        dcmtk("storescu"), "-d", "-xe", "-R", "-aet", CALLING_AE, "-aec", AE_TITLE,
        "127.0.0.1", str(port), *map(str, files),
    ]
    run = StoreScuRun()
    block: dict[str, str] | None = None
    killed = False
    # Debian's DCMTK keeps Nagle on unless TCP_NODELAY is set: 40 ms per C-STORE otherwise.
    with subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
        env={**os.environ, "TCP_NODELAY": "1"},
    ) as process:
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            assert process.stderr is not None
            for line in process.stderr:
                line = line.rstrip("\n")
                run.tail = [*run.tail[-30:], line]
                if "INCOMING DIMSE MESSAGE" in line:
                    block = {}
                elif "END DIMSE MESSAGE" in line:
                    if block is not None and block.get("Message Type") == "C-STORE RSP":
                        uid = block["Affected SOP Instance UID"]
                        run.statuses[uid] = int(block["DIMSE Status"].split(":")[0], 16)
                    block = None
                    due = kill_after is not None and len(run.acknowledged) >= kill_after
                    if on_kill is not None and due and not killed:
                        killed = True
                        on_kill()
                elif block is not None and (match := _FIELD.match(line)):
                    block[match["key"]] = match["value"].strip()
            run.returncode = process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
    return run


def index_rows(db_url: str) -> dict[str, tuple[str, str, int]]:
    """SOP Instance UID -> (file_path, sha256, file_size) of every indexed instance."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT sop_instance_uid, file_path, sha256, file_size FROM instance").fetchall()
    return {uid: (path, digest, size) for uid, path, digest, size in rows}


def series_counts(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT series_instance_uid, instance_count FROM series").fetchall()
    return dict(rows)


def partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{PARTIAL_SUFFIX}") if p.is_file()]


def check_store(root: Path, db_url: str, sources: dict[str, Source]) -> dict[str, tuple[str, str, int]]:
    """Everything under a final name is a whole, known instance; every index row points at one."""
    rows = index_rows(db_url)
    for path in root.rglob("*.dcm"):
        uid = path.stem
        assert uid in sources, f"unexpected file {path}"
        source = sources[uid]
        assert path.relative_to(root).as_posix() == source.relative_path
        data = path.read_bytes()
        assert split_part10(data)[1] == source.dataset, f"{path.name} is not the instance sent"
        ds = dcmread(path)  # parses to the end: pixel data complete
        assert ds.SOPInstanceUID == uid
        assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
        if uid in rows:
            file_path, digest, size = rows[uid]
            assert file_path == source.relative_path
            assert digest == hashlib.sha256(data).hexdigest(), f"{uid}: index sha256 is not the file's"
            assert size == len(data)
    for uid, (file_path, _digest, _size) in rows.items():
        assert (root / file_path).is_file(), f"{uid} is indexed but {file_path} is not on disk"
    counts = series_counts(db_url)
    for series_instance_uid, count in counts.items():
        indexed = sum(1 for row in rows.values() if row[0].split("/")[1] == series_instance_uid)
        assert count == indexed, f"series {series_instance_uid}: instance_count {count}, {indexed} rows"
    return rows


def port_refuses(port: int, *, within: float = 5) -> bool:
    """True once nothing accepts connections on ``port`` (killed processes take a moment to go)."""
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except ConnectionRefusedError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


# One SCP process, and the multi-process mode (children sharing one socket) that kill -9 on the
# process group must take down whole.
@pytest.mark.parametrize("processes", [1, 2], ids=["1-process", "2-processes"])
def test_kill_9_mid_transfer_loses_nothing_acknowledged(db_url: str, tmp_path: Path, processes: int) -> None:
    sources = write_sources(tmp_path / "source")
    files = sorted(s.path for s in sources.values())
    random.Random().shuffle(files)  # no help from send order: instance numbers arrive scrambled
    root = (tmp_path / "store").resolve()
    port = get_port()
    env = serve_env(
        DB__URL=db_url, STORE__ROOT=root, STORE__MIN_FREE_MB=0, NET__HOST="127.0.0.1", NET__PORT=port,
        NET__AE_TITLE=AE_TITLE, NET__PROCESSES=processes,
    )
    kill_after = random.randint(150, 250)
    delay = random.uniform(0, 0.015)  # lands anywhere in the next instance: receive, write, fsync, index
    print(f"killing the node {delay * 1000:.1f} ms after the {kill_after}th acknowledgement")

    # 1. Send, and SIGKILL the node's process group in the middle.
    with ServeProcess(env=env, log_path=tmp_path / "serve-1.log", cwd=tmp_path) as node:
        node.wait_ready(port=port, ae_title=AE_TITLE)
        first = run_storescu(
            files, port=port, kill_after=kill_after, on_kill=lambda: threading.Timer(delay, node.kill).start()
        )
        assert node.process is not None
        assert node.process.wait(timeout=30) == -signal.SIGKILL, node.log_tail()
    if not port_refuses(port):
        survivors = subprocess.run(["ps", "-o", "pid,pgid,sid,stat,args", "-s", str(node.pid)],
                                   capture_output=True, text=True).stdout
        pytest.fail(f"an SCP process survived kill -9 of the node's process group:\n{survivors}")
    acknowledged = first.acknowledged
    assert kill_after <= len(acknowledged) < COUNT, "the kill did not land mid-transfer:\n" + "\n".join(first.tail)
    assert first.returncode != 0, "storescu should see the association die"
    assert all(code == 0 for code in first.statuses.values()), first.statuses

    # 2. As the crash left it: every acknowledged instance on disk, identical, indexed.
    rows = check_store(root, db_url, sources)
    for uid in acknowledged:
        source = sources[uid]
        stored = root / source.relative_path
        assert stored.is_file(), f"acknowledged {uid} is not on disk"
        assert dataset_bytes(stored) == source.dataset
        assert uid in rows, f"acknowledged {uid} is not indexed"
    # Stored and indexed but not acknowledged can only be the one(s) in flight at the kill.
    assert len(rows) - len(acknowledged) <= 2, (len(rows), len(acknowledged))
    left_by_crash = partial_files(root)
    # A partial file as a crash mid-write leaves one, whether or not this kill made one.
    series_dir = root / next(iter(sources.values())).relative_path.rsplit("/", 1)[0]
    planted = series_dir / f".{files[-1].stem}.dcm.0123456789ab{PARTIAL_SUFFIX}"
    planted.write_bytes(files[-1].read_bytes()[:1000])
    on_disk = len(list(root.rglob("*.dcm")))
    print(f"acknowledged {len(acknowledged)}, on disk {on_disk}, indexed {len(rows)}, partial {len(left_by_crash)}")

    # 3. Restart: partial files go; resend everything: each instance stored and indexed once.
    with ServeProcess(env=env, log_path=tmp_path / "serve-2.log", cwd=tmp_path) as node:
        node.wait_ready(port=port, ae_title=AE_TITLE)
        deadline = time.monotonic() + 10  # serve removes them in a background thread
        while partial_files(root) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert partial_files(root) == [], "partial files survived the restart"
        second = run_storescu(files, port=port)
        assert second.returncode == 0, "\n".join(second.tail)
        assert second.acknowledged == set(sources), {u: c for u, c in second.statuses.items() if c}
        assert node.terminate() == 0, node.log_tail()
    rows = check_store(root, db_url, sources)
    assert set(rows) == set(sources)
    assert sorted(p.stem for p in root.rglob("*.dcm")) == sorted(sources)
    assert partial_files(root) == []
    assert series_counts(db_url) == {next(iter(sources.values())).series_instance_uid: COUNT}
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM instance").fetchone() == (COUNT,)
        assert conn.execute("SELECT count(*) FROM study").fetchone() == (1,)
