"""The embedded default: no database URL, so `dicomnode serve` runs PostgreSQL itself (pgserver).

What a newcomer does first (issue 2, "two commands"): start the node with nothing configured
but a data directory, echo it, send it a couple of files, stop it with SIGTERM, and list what
it holds with `dicomnode studies`, which starts the embedded server again on the same data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from tests.helpers import ServeProcess, dataset_bytes, dicomnode_command, get_port, serve_env

pytestmark = [pytest.mark.embedded, pytest.mark.slow, pytest.mark.timeout(240)]

BUNDLED = ["CT_small.dcm", "MR_small.dcm"]  # two studies, explicit VR little endian


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


@pytest.fixture
def pgdata(tmp_path: Path) -> Iterator[Path]:
    """The embedded data directory; a postmaster left running by a failed test is stopped."""
    path = tmp_path / "pgdata"
    yield path
    pid = _postmaster_pid(path)
    if pid is None:
        return
    # pg_ctl starts postgres in its own session, so killing the node's group does not reach it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)


def test_embedded_serve_echo_send_stop_list(pgdata: Path, tmp_path: Path) -> None:
    port = get_port()
    env = serve_env(
        DB__EMBEDDED_DIR=pgdata, STORE__ROOT=tmp_path / "store", STORE__MIN_FREE_MB=0,
        NET__HOST="127.0.0.1", NET__PORT=port,
    )
    assert "DICOMNODE_DB__URL" not in env  # conf/dicomnode.yaml says url: null -> embedded
    for name in ("COLUMNS", "LINES"):  # as under cron, a pipe or a log collector
        env.pop(name, None)
    peer = f"DICOMNODE@127.0.0.1:{port}"
    files = [Path(str(get_testdata_file(name))) for name in BUNDLED]
    originals = [dcmread(path, stop_before_pixels=True) for path in files]

    def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            dicomnode_command(*args), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout
        )

    with ServeProcess(env=env, log_path=tmp_path / "serve.log", cwd=tmp_path) as node:
        ready = node.wait_ready(port=port, timeout=120)  # initdb + start + migrations the first time
        print(f"embedded node answered C-ECHO after {ready:.1f} s")
        assert (pgdata / "PG_VERSION").is_file(), "no PostgreSQL data directory was created"
        assert _postmaster_pid(pgdata) is not None, "no postmaster running in the data directory"

        echo = cli("echo", peer)
        assert echo.returncode == 0, echo.stdout + echo.stderr
        assert "0x0000" in echo.stdout

        sent = cli("send", *map(str, files), "--to", peer)
        assert sent.returncode == 0, sent.stdout + sent.stderr + node.log_tail()
        assert "0x0000 Success" in sent.stdout

        started = time.monotonic()
        code = node.terminate(timeout=15)
        stopped = time.monotonic() - started
        print(f"SIGTERM -> exit {code} in {stopped:.1f} s")
        assert code == 0, node.log_tail()
    assert _postmaster_pid(pgdata) is None, "the embedded PostgreSQL outlived the node"
    assert "Traceback" not in node.log(), node.log_tail()

    root = (tmp_path / "store").resolve()
    for path, original in zip(files, originals, strict=True):
        stored = root / original.StudyInstanceUID / original.SeriesInstanceUID / f"{original.SOPInstanceUID}.dcm"
        assert stored.is_file(), f"{path.name} not stored"
        assert dataset_bytes(stored) == dataset_bytes(path)

    started = time.monotonic()
    studies = cli("studies", timeout=120)
    print(f"`dicomnode studies` took {time.monotonic() - started:.1f} s")
    assert studies.returncode == 0, studies.stdout + studies.stderr
    # piped output is a header line plus one tab-separated line per study
    assert len(studies.stdout.strip().splitlines()) == 1 + 2, studies.stdout
    assert _postmaster_pid(pgdata) is None, "`dicomnode studies` left the embedded PostgreSQL running"
    for original in originals:
        uid = str(original.StudyInstanceUID)
        assert uid in studies.stdout, f"study {uid} not listed in full:\n{studies.stdout}"


def test_embedded_postgres_stopped_after_a_killed_node_restarts(pgdata: Path, tmp_path: Path) -> None:
    """kill -9 leaves the embedded PostgreSQL running (pg_ctl gives it its own session); the next
    node must adopt it and, on a clean stop, stop it: an orphan server must not live on forever."""
    port = get_port()
    env = serve_env(
        DB__EMBEDDED_DIR=pgdata, STORE__ROOT=tmp_path / "store", STORE__MIN_FREE_MB=0,
        NET__HOST="127.0.0.1", NET__PORT=port, NET__PROCESSES=1,
    )
    with ServeProcess(env=env, log_path=tmp_path / "serve-1.log", cwd=tmp_path) as node:
        node.wait_ready(port=port, timeout=120)
        postmaster = _postmaster_pid(pgdata)
        assert postmaster is not None
        node.kill()
    assert _postmaster_pid(pgdata) == postmaster, "expected the orphaned postmaster to keep running"

    with ServeProcess(env=env, log_path=tmp_path / "serve-2.log", cwd=tmp_path) as node:
        node.wait_ready(port=port, timeout=120)
        assert _postmaster_pid(pgdata) == postmaster  # adopted, not a second server
        assert node.terminate(timeout=15) == 0, node.log_tail()
    assert _postmaster_pid(pgdata) is None, (
        f"the embedded PostgreSQL (pid {postmaster}) outlived a cleanly stopped node that adopted it:\n"
        + node.log_tail(10)
    )
