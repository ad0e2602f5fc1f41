"""The C-STORE receivers the ingest bench compares: our node, DCMTK storescp, Orthanc.

Each receiver starts fresh (empty store, empty index) on 127.0.0.1 in its own process group,
is ready once it answers a C-ECHO, reports how many instances it holds, and is stopped by
signalling its own process group (never by name). Everything it writes lives in one temp
directory that ``stop`` removes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

STORESCP = Path("/usr/bin/storescp")
ECHOSCU = Path("/usr/bin/echoscu")
ORTHANC = Path("/usr/sbin/Orthanc")
CALLING_AE_TITLE = "BENCHSCU"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def dcmtk_env() -> dict[str, str]:
    """Environment for DCMTK programs: Debian's DCMTK 3.6.7 disables Nagle only when asked."""
    return {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_sockets(port: int) -> int:
    """How many sockets listen on ``port``."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat from field 3 (state) on, or None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, with reaped children) of one process; 0 when it is gone."""
    fields = _stat_fields(pid)
    # fields[0] is field 3 of proc(5); utime, stime, cutime, cstime are fields 14-17
    return sum(int(v) for v in fields[11:15]) / CLOCK_TICKS if fields else 0.0


def process_group_cpu_seconds(pgid: int) -> float:
    """CPU time of the live processes in group ``pgid`` (field 5), with their reaped children."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields and int(fields[2]) == pgid:
                total += sum(int(v) for v in fields[11:15]) / CLOCK_TICKS
    return total


class Receiver(ABC):
    """A receiver started fresh for one run; use as a context manager."""

    #: Name shown in the table.
    label: str
    ae_title: str

    def __init__(self, *, base_dir: Path) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.kind}-", dir=base_dir))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.keep = False

    @property
    @abstractmethod
    def kind(self) -> str:
        """Short machine name, used for temp directory names."""

    @abstractmethod
    def _launch(self) -> None:
        """Start the receiver's process (``self._spawn``)."""

    @abstractmethod
    def stored_instances(self) -> int:
        """Instances the receiver holds now."""

    @property
    def log_path(self) -> Path:
        return self.workdir / "receiver.log"

    def _spawn(self, command: list[str], *, env: Mapping[str, str], cwd: Path | None = None) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd or self.workdir,
                start_new_session=True,  # its own process group, stopped as one
            )

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"{self.label} exited during start-up with status {self.process.returncode}; "
                f"log: {self.log_path}\n{self.log_tail()}"
            )

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> list[str]:
        """Lines the receiver logged after byte ``offset``."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _echo_ok(self) -> bool:
        result = subprocess.run(
            [str(ECHOSCU), "-aet", CALLING_AE_TITLE, "-aec", self.ae_title, "-to", "5",
             "127.0.0.1", str(self.port)],
            env=dcmtk_env(), capture_output=True, timeout=30,
        )
        return result.returncode == 0

    def wait_ready(self, timeout: float) -> None:
        """Block until the receiver answers C-ECHO (and ``_extra_ready`` holds)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if listening_sockets(self.port) and self._extra_ready() and self._echo_ok():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.label} not answering C-ECHO on port {self.port} after {timeout:.0f} s")
            time.sleep(0.1)

    def _extra_ready(self) -> bool:
        return True

    def start(self, *, timeout: float = 120.0) -> None:
        self._launch()
        self.wait_ready(timeout)

    def cpu_seconds(self) -> float:
        """CPU used so far by the receiver's process group (an approximation; see the README)."""
        return process_group_cpu_seconds(self.process.pid) if self.process else 0.0

    def database_cpu_seconds(self) -> dict[int, float]:
        """CPU time so far of each database server process working for the receiver (none here)."""
        return {}

    def stop(self) -> None:
        """Stop the process group: SIGTERM, then SIGKILL after 20 s; remove the temp dir unless kept."""
        if self.process is not None and self.process.poll() is None:
            pgid = self.process.pid
            try:
                os.killpg(pgid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self.process is not None:
            try:  # children that outlived the leader (e.g. storescp --fork) belong to the group too
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._cleanup()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _cleanup(self) -> None:
        """Release what lives outside the temp dir (a database); nothing by default."""
        return None

    def __enter__(self) -> Receiver:
        try:
            self.start()
        except BaseException:
            self.keep = True
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DicomnodeReceiver(Receiver):
    """Our node: ``python -m dicomnode serve`` on a fresh PostgreSQL database and store."""

    ae_title = "DICOMNODE"

    def __init__(self, *, base_dir: Path, python: str, repo: Path, server_url: str, processes: int,
                 label: str = "dicomnode") -> None:
        super().__init__(base_dir=base_dir)
        self.label = label
        self.python = python
        self.repo = repo
        self.processes = processes
        self.server_url = server_url
        self.database = f"dicomnode_bench_{os.getpid()}_{self.port}"
        self.database_url = _with_database(server_url, self.database)
        self.store_root = self.workdir / "store"
        self._created = False

    @property
    def kind(self) -> str:
        return "dicomnode"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DICOMNODE_DB__URL": self.database_url,
            "DICOMNODE_STORE__ROOT": str(self.store_root),
            "DICOMNODE_STORE__MIN_FREE_MB": "0",
            "DICOMNODE_NET__HOST": "127.0.0.1",
            "DICOMNODE_NET__PORT": str(self.port),
            "DICOMNODE_NET__AE_TITLE": self.ae_title,
            "DICOMNODE_NET__PROCESSES": str(self.processes),
            "DICOMNODE_LOG__LEVEL": "WARNING",
        }

    def _launch(self) -> None:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self._created = True
        self.store_root.mkdir()
        with open(self.log_path, "ab") as log:
            migrated = subprocess.run(
                [self.python, "-m", "dicomnode", "db", "upgrade"], cwd=self.repo, env=self._env(),
                stdout=log, stderr=subprocess.STDOUT, timeout=300,
            )
        if migrated.returncode != 0:
            raise RuntimeError(f"`dicomnode db upgrade` failed ({migrated.returncode}); log: {self.log_path}\n"
                               f"{self.log_tail()}")
        # The receive path only: no HTTP service, no job worker (the seed rule would start
        # montages of the bench series after their quiet period).
        self._spawn(
            [self.python, "-m", "dicomnode", "serve", "--no-web", "--no-worker"], env=self._env(), cwd=self.repo
        )

    def stored_instances(self) -> int:
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM instance").fetchone()
        return int(row[0]) if row else 0

    def database_cpu_seconds(self) -> dict[int, float]:
        """CPU of the PostgreSQL backends serving our database (a local server only; {} otherwise)."""
        if urlsplit(self.server_url).hostname not in (None, "", "127.0.0.1", "localhost", "::1"):
            return {}  # its backends' PIDs are not in our /proc
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)).fetchall()
        return {pid: process_cpu_seconds(pid) for (pid,) in rows if Path(f"/proc/{pid}").exists()}

    def _cleanup(self) -> None:
        if not self._created:
            return
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self._created = False


def postgres_summary(server_url: str) -> str:
    """Version and the settings that decide whether a commit is durable, for the report header."""
    import psycopg

    try:
        with psycopg.connect(server_url, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            values = [
                f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
                for name in ("fsync", "synchronous_commit", "wal_sync_method")
            ]
    except psycopg.Error as exc:
        return f"PostgreSQL unreachable ({exc})"
    return f"PostgreSQL {version[0] if version else '?'} ({' '.join(values)})"


def _with_database(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


class StorescpReceiver(Receiver):
    """DCMTK storescp, forking one child per association, files written without fsync."""

    label = "storescp"
    ae_title = "STORESCP"

    @property
    def kind(self) -> str:
        return "storescp"

    def _launch(self) -> None:
        self.output = self.workdir / "out"
        self.output.mkdir()
        self._spawn([str(STORESCP), "--fork", "-aet", self.ae_title, "-od", str(self.output), str(self.port)],
                    env=dcmtk_env())

    def stored_instances(self) -> int:
        return sum(len(names) for _, _, names in os.walk(self.output))


class OrthancReceiver(Receiver):
    """Orthanc with its own storage directory and SQLite index, no plugins, no authentication."""

    label = "orthanc"
    ae_title = "ORTHANC"

    @property
    def kind(self) -> str:
        return "orthanc"

    def _launch(self) -> None:
        self.http_port = free_port()
        config = {
            "Name": "dicomnode-bench",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "StorageCompression": False,
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.port,
            "DicomCheckCalledAet": False,
            "SaveJobs": False,
        }
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(config, indent=1))
        self._spawn([str(ORTHANC), str(path)], env=dcmtk_env())

    def _statistics(self) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.http_port}/statistics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(json.loads(response.read()))

    def _extra_ready(self) -> bool:
        try:
            self._statistics()
        except OSError:
            return False
        return True

    def stored_instances(self) -> int:
        return int(self._statistics()["CountInstances"])  # type: ignore[call-overload]
