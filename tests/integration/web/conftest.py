"""DICOMweb fixtures: the app from ``create_app`` served by a real uvicorn on loopback.

``web_factory`` starts servers on the per-test database; ``loaded`` is one server per module,
on a database of its own, with a small study set stored through STOW-RS by dicomweb-client.
Tests that use ``loaded`` only read.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import psycopg
import pytest
import uvicorn
from dicomweb_client import DICOMwebClient
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from dicomnode.config import Settings
from dicomnode.web.app import create_app
from tests.helpers import get_port, make_settings


@dataclass
class WebServer:
    """A running app: its settings, root URL and DICOMweb URL."""

    settings: Settings
    root: str
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def dicomweb(self) -> str:
        return self.root + self.settings.web.dicomweb_prefix

    def client(self, **kwargs: object) -> DICOMwebClient:
        return DICOMwebClient(url=self.dicomweb, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(settings: Settings, port: int) -> WebServer:
    """Serve ``create_app(settings)`` with uvicorn in a thread; returns once it accepts requests."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return WebServer(settings=settings, root=f"http://127.0.0.1:{port}", server=server, thread=thread)


@pytest.fixture
def web_factory(db_url: str, tmp_path: Path) -> Iterator[Callable[..., WebServer]]:
    """Start servers on this test's database; ``web={...}`` and ``store={...}`` override settings."""
    started: list[WebServer] = []

    def start(store_root: Path | None = None, **sections: dict) -> WebServer:  # type: ignore[type-arg]
        port = get_port()
        sections["web"] = {"public_url": f"http://127.0.0.1:{port}", **sections.get("web", {})}
        settings = make_settings(db_url, store_root or tmp_path / "store", **sections)
        running = start_server(settings, port)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def web(web_factory: Callable[..., WebServer]) -> WebServer:
    """A server with default web settings on this test's database."""
    return web_factory()


# --- the module-wide loaded server -----------------------------------------------------------

STUDY_ROOT = "1.2.826.0.1.3680043.8.498.91"


def bundled(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} missing (pip install pydicom-data)"
    return Path(path)


def part10(ds: Dataset) -> bytes:
    """What dicomweb-client sends for ``ds`` (it encodes with pydicom.dcmwrite)."""
    with BytesIO() as buffer:
        dcmwrite(buffer, ds)
        return buffer.getvalue()


@dataclass
class Loaded:
    """A server with known content; ``sent`` maps SOP Instance UID -> the Part 10 bytes sent."""

    server: WebServer
    datasets: dict[str, Dataset] = field(default_factory=dict)
    sent: dict[str, bytes] = field(default_factory=dict)

    def by_file(self, name: str) -> Dataset:
        return self.datasets[name]


def _content() -> dict[str, Dataset]:
    """CT (two series: CT and an OT copy), MR, NM in JPEG 2000, RGB secondary capture, 10-frame MR."""
    ct = dcmread(bundled("CT_small.dcm"))
    ct.AccessionNumber = "ACC-CT-1"
    ct_other = dcmread(bundled("CT_small.dcm"))
    ct_other.AccessionNumber = "ACC-CT-1"
    ct_other.Modality = "OT"
    ct_other.SeriesInstanceUID = f"{STUDY_ROOT}.2.1"
    ct_other.SeriesNumber = 2
    ct_other.SOPInstanceUID = ct_other.file_meta.MediaStorageSOPInstanceUID = f"{STUDY_ROOT}.3.1"
    ct_other.InstanceNumber = 2
    mr = dcmread(bundled("MR_small.dcm"))
    mr.AccessionNumber = "ACC-MR-1"
    return {
        "CT_small.dcm": ct,
        "CT_other": ct_other,
        "MR_small.dcm": mr,
        "JPEG2000.dcm": dcmread(bundled("JPEG2000.dcm")),
        "SC_rgb.dcm": dcmread(bundled("SC_rgb.dcm")),
        "emri_small.dcm": dcmread(bundled("emri_small.dcm")),
    }


@pytest.fixture(scope="module")
def loaded(pg_server: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """One server per module on its own database, loaded by STOW-RS with dicomweb-client."""
    name = f"dicomnode_w_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    base, _, query = pg_server.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")
    port = get_port()
    # dicomweb-client sends Host without the port, so answers take their URLs from public_url.
    settings = make_settings(
        url,
        tmp_path_factory.mktemp("web-store"),
        store={"fsync": False},
        web={"public_url": f"http://127.0.0.1:{port}"},
    )
    server = start_server(settings, port)
    try:
        content = _content()
        loaded = Loaded(server=server)
        client = server.client()
        for key, ds in content.items():
            loaded.datasets[key] = ds
            loaded.sent[str(ds.SOPInstanceUID)] = part10(ds)
        answer = client.store_instances(list(content.values()))
        assert len(answer.ReferencedSOPSequence) == len(content)
        assert "FailedSOPSequence" not in answer
        yield loaded
    finally:
        server.stop()
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


__all__ = ["Loaded", "WebServer", "bundled", "get_port", "part10", "start_server"]
