"""Test helpers shared by the suites (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomnode.config import Settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def get_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningNode:
    """A node serving on loopback for one test."""

    settings: Settings
    db_url: str
    store_root: Path

    @property
    def port(self) -> int:
        return self.settings.net.port

    @property
    def ae_title(self) -> str:
        return self.settings.net.ae_title

    @property
    def peer(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"


def make_settings(db_url: str, store_root: Path, **sections: dict) -> Settings:  # type: ignore[type-arg]
    net = {"ae_title": "DICOMNODE", "host": "127.0.0.1", "port": get_port(), **sections.pop("net", {})}
    store = {"root": store_root, "min_free_mb": 0, **sections.pop("store", {})}
    return Settings(net=net, store=store, db={"url": db_url}, **sections)


def dcmtk(tool: str) -> str:
    """Absolute path of a DCMTK tool (a venv's pynetdicom puts its own echoscu first on PATH)."""
    path = f"/usr/bin/{tool}"
    if not os.path.exists(path):
        pytest.skip(f"DCMTK {tool} not installed (apt-get install dcmtk)")
    return path


requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared test data not found at {SHARED_DATA}"
)


# ---------------------------------------------------------------------------------------------
# Sending exact bytes and reading the index back (store, bad-input and association tests).
# Imports are local to each helper so this block can stay below the ones above.


@dataclass(frozen=True)
class StoreResponse:
    """What the node answered to one C-STORE: status (None: no answer) and ErrorComment."""

    status: int | None
    comment: str = ""


def split_part10(data: bytes) -> tuple[bytes, bytes]:
    """Split a Part 10 byte string into (preamble + file meta, dataset bytes)."""
    from io import BytesIO

    from pydicom.filereader import read_dataset, read_preamble

    with BytesIO(data) as fp:
        read_preamble(fp, False)
        read_dataset(fp, is_implicit_VR=False, is_little_endian=True, stop_when=lambda tag, vr, length: tag.group != 2)
        offset = fp.tell()
    return data[:offset], data[offset:]


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the File Meta group of a file: what travels over DIMSE."""
    return split_part10(Path(path).read_bytes())[1]


def part10(dataset: bytes, *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """``dataset`` (bytes, any content) behind a File Meta that announces the given UIDs."""
    import struct
    from io import BytesIO

    from pydicom import config as pydicom_config
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    with pydicom_config.disable_value_validation():
        meta = FileMetaDataset()
        meta.FileMetaInformationVersion = b"\x00\x01"
        meta.MediaStorageSOPClassUID = sop_class_uid
        meta.MediaStorageSOPInstanceUID = sop_instance_uid
        meta.TransferSyntaxUID = transfer_syntax_uid
        meta.ImplementationClassUID = "1.2.3.4"
        elements = BytesIO()
        # not enforce_standard: that refuses the empty UIDs some tests need to send
        write_file_meta_info(elements, meta, enforce_standard=False)
    group = elements.getvalue()
    group_length = b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<I", len(group))
    return b"\x00" * 128 + b"DICM" + group_length + group + dataset


def encode(ds: object, transfer_syntax_uid: str = "1.2.840.10008.1.2.1") -> bytes:
    """Encode a pydicom Dataset (values unchecked, so bad UIDs survive) in a transfer syntax."""
    from pydicom import config as pydicom_config
    from pydicom.uid import UID
    from pynetdicom.dsutils import encode as pynetdicom_encode

    ts = UID(transfer_syntax_uid)
    with pydicom_config.disable_value_validation():
        encoded = pynetdicom_encode(ds, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)  # type: ignore[arg-type]
    assert encoded is not None
    return encoded


def c_store_files(
    node: RunningNode, paths: list[Path], *, calling_ae_title: str = "TESTSCU", timeout: float = 30
) -> list[StoreResponse]:
    """C-STORE Part 10 files over one association, exactly as they are on disk.

    The command's SOP Class/Instance UIDs come from the File Meta and the dataset bytes after
    it are sent untouched (pynetdicom's chunked send), so a file can carry any bytes at all.
    """
    assoc = associate(node, calling_ae_title=calling_ae_title, files=paths, timeout=timeout)
    assert assoc.is_established, "association with the node failed"  # type: ignore[attr-defined]
    try:
        return [c_store_on(assoc, path) for path in paths]
    finally:
        if assoc.is_established:  # type: ignore[attr-defined]
            assoc.release()  # type: ignore[attr-defined]


def c_store_on(assoc: object, path: Path) -> StoreResponse:
    """C-STORE one Part 10 file, bytes as on disk, on an association made by ``associate``."""
    from pydicom import config as pydicom_config
    from pynetdicom import _config

    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        with pydicom_config.disable_value_validation():
            rsp = assoc.send_c_store(path)  # type: ignore[attr-defined]
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    if "Status" not in rsp:
        return StoreResponse(None)
    return StoreResponse(int(rsp.Status), str(rsp.get("ErrorComment", "")))


def c_store_bytes(
    node: RunningNode,
    tmp_path: Path,
    dataset: bytes,
    *,
    sop_class_uid: str = "1.2.840.10008.5.1.4.1.1.7",
    sop_instance_uid: str,
    transfer_syntax_uid: str = "1.2.840.10008.1.2.1",
    calling_ae_title: str = "TESTSCU",
    timeout: float = 30,
) -> StoreResponse:
    """C-STORE raw dataset bytes under the given command UIDs and presentation context."""
    import uuid

    path = tmp_path / f"raw-{uuid.uuid4().hex}.dcm"
    path.write_bytes(
        part10(
            dataset, sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
        )
    )
    return c_store_files(node, [path], calling_ae_title=calling_ae_title, timeout=timeout)[0]


def c_echo(node: RunningNode, *, calling_ae_title: str = "ECHOSCU", timeout: float = 10) -> int | None:
    """C-ECHO the node; the status, or None when there was no association or no answer."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        return None
    try:
        rsp = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    return int(rsp.Status) if "Status" in rsp else None


def query(db_url: str, statement: object) -> list:  # type: ignore[type-arg]
    """Run a SQLAlchemy select against the node's database; rows detached, engine disposed."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    from dicomnode.db.session import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(db_url), poolclass=NullPool)
    try:
        with Session(engine, expire_on_commit=False) as session:
            rows = list(session.execute(statement).all())  # type: ignore[call-overload]
            session.expunge_all()
            return rows
    finally:
        engine.dispose()


def indexed(db_url: str, sop_instance_uid: str) -> tuple | None:  # type: ignore[type-arg]
    """(Instance, Series, Study, Patient) rows of an indexed instance, or None."""
    from sqlalchemy import select

    from dicomnode.db.models import Instance, Patient, Series, Study

    rows = query(
        db_url,
        select(Instance, Series, Study, Patient)
        .join(Series, Series.id == Instance.series_fk)
        .join(Study, Study.id == Series.study_fk)
        .join(Patient, Patient.id == Study.patient_fk)
        .where(Instance.sop_instance_uid == sop_instance_uid),
    )
    return tuple(rows[0]) if rows else None


def count_rows(db_url: str, model: type) -> int:
    """Rows in the table of ORM class ``model``."""
    from sqlalchemy import func, select

    return int(query(db_url, select(func.count()).select_from(model))[0][0])


def store_contents(root: Path) -> list[Path]:
    """Every file below a store root, hidden and partial (``.part``) files included."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- e2e: `dicomnode serve` as a subprocess -------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]


def serve_env(**settings: str | int | Path) -> dict[str, str]:
    """This process's environment minus any DICOMNODE_*, plus ``settings`` as DICOMNODE_<KEY>.

    Keys are spelled as after the prefix, e.g. ``NET__PORT=11112``. The repository's
    conf/dicomnode.yaml is named explicitly so the child reads it whatever its working directory.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMNODE_")}
    env["DICOMNODE_CONFIG"] = str(REPO_ROOT / "conf" / "dicomnode.yaml")
    env["PYTHONUNBUFFERED"] = "1"
    # A free HTTP port unless the test names one: serve also runs DICOMweb, and two nodes
    # (or a node and another test) must not fight over web.port's default.
    env["DICOMNODE_WEB__PORT"] = str(get_port())
    env["DICOMNODE_WEB__HOST"] = "127.0.0.1"
    env.update({f"DICOMNODE_{key}": str(value) for key, value in settings.items()})
    return env


def dicomnode_command(*args: str) -> list[str]:
    """``python -m dicomnode ARGS`` with this interpreter (the venv's)."""
    return [sys.executable, "-m", "dicomnode", *args]


class ServeProcess:
    """``python -m dicomnode serve`` in its own session (so its whole process group can be killed).

    stderr (the log) goes to ``log_path``, so a chatty node never blocks on a full pipe.
    """

    def __init__(self, *, env: dict[str, str], log_path: Path, cwd: Path, args: Sequence[str] = ()) -> None:
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                dicomnode_command("serve", *self.args),
                env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_ready(self, *, port: int, ae_title: str = "DICOMNODE", timeout: float = 30) -> float:
        """Poll with C-ECHO until the node answers Success; returns the seconds it took."""
        from dicomnode.net import scu, status

        assert self.process is not None, "not started"
        peer = scu.Peer(ae_title, "127.0.0.1", port)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                # Port first: pynetdicom leaks its socket (a ResourceWarning) on a refused connect.
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                if scu.echo(peer, timeout=5) == status.SUCCESS:
                    return time.monotonic() - started
            except (ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve did not answer C-ECHO within {timeout} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group (the node and any SCP processes it spawned)."""
        assert self.process is not None, "not started"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, *, timeout: float = 15) -> int:
        """SIGTERM the node (as `kill PID` or a service manager would); returns its exit code."""
        assert self.process is not None, "not started"
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


def wait_for(predicate: object, *, timeout: float = 5.0, interval: float = 0.05) -> object:
    """Poll ``predicate()`` until it returns something truthy (returned) or ``timeout`` passes.

    For what the node writes just after the peer has its answer (an association row closed
    on release, a rejection logged after the A-ASSOCIATE-RJ went out).
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()  # type: ignore[operator]
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def associate(
    node: RunningNode,
    *,
    calling_ae_title: str = "TESTSCU",
    files: list[Path] | None = None,
    bind_port: int = 0,
    timeout: float = 10,
) -> object:
    """Request an association with the node: Verification, plus one presentation context per
    (SOP class, transfer syntax) of ``files`` (so they can be sent without conversion)."""
    from pydicom.filereader import read_file_meta_info
    from pynetdicom import AE
    from pynetdicom.presentation import build_context
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    metas = [read_file_meta_info(p) for p in files or []]
    pairs = sorted({(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in metas})
    ae.requested_contexts = [build_context(Verification), *(build_context(sop, [ts]) for sop, ts in pairs)]
    return ae.associate("127.0.0.1", node.port, ae_title=node.ae_title, bind_address=("127.0.0.1", bind_port))
