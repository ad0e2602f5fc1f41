"""Helpers and fixtures for the AI loop tests: a DCMTK storescp destination, a worker drain, rules.

Imported by the conftest.py of tests/integration/{jobs,routing,dispatch}. Everything is real:
PostgreSQL (a fresh migrated database per test), the node's SCP, DCMTK's storescp as the
destination, procrastinate's worker, and the real key-image montage pipeline.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from dicomnode.config import Settings
from dicomnode.db.session import sqlalchemy_url
from dicomnode.jobs.app import Services, build_app
from dicomnode.jobs.worker import worker_options
from tests.helpers import RunningNode, c_store_files, dcmtk, get_port, wait_for

#: The real montage, named explicitly so the tests do not depend on the registry's built-in table.
PIPELINES = {"key_image_montage": "ai_pipelines.montage.pipeline:KeyImageMontage"}

MONTAGE_RULE = {
    "name": "ct-montage",
    "when": {"all": [{"attr": "Modality", "equals": "CT"}, {"not": {"attr": "ImageType", "contains": "DERIVED"}}]},
    "run": "key_image_montage",
    "send_to": ["storescp"],
    "quiet_seconds": 1,
}


def jobs_section(**overrides: Any) -> dict[str, Any]:
    """Jobs settings for fast tests: 1 s quiet, quick retries."""
    return {
        "quiet_seconds": 1,
        "retry_backoff_seconds": 0.2,
        "retry_max_backoff_seconds": 1.0,
        "poll_interval": 0.2,
        "delete_succeeded_jobs": False,
        **overrides,
    }


class Storescp:
    """DCMTK storescp on a free loopback port, writing what it receives to ``directory``."""

    def __init__(self, directory: Path, port: int, ae_title: str = "STORESCP") -> None:
        self.directory = directory
        self.port = port
        self.ae_title = ae_title
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Storescp:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [dcmtk("storescp"), "-aet", self.ae_title, "-od", str(self.directory), "+xa", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import socket

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        assert wait_for(listening, timeout=10), "storescp did not start"
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def received(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file()) if self.directory.exists() else []

    def destination(self, name: str = "storescp") -> dict[str, Any]:
        return {"name": name, "ae_title": self.ae_title, "host": "127.0.0.1", "port": self.port}


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Storescp]:
    """A storescp destination, not started yet (``.start()``), stopped at teardown."""
    receiver = Storescp(tmp_path / "storescp", get_port())
    yield receiver
    receiver.stop()


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the test database (no pool: nothing lingers after the test)."""
    engine = create_engine(sqlalchemy_url(db_url), poolclass=NullPool)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def send_series(
    node: RunningNode, datasets: list[Dataset], directory: Path, *, calling_ae_title: str = "MODALITY"
) -> None:
    """Write datasets as Part 10 files and C-STORE them to the node; all must succeed."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    responses = c_store_files(node, paths, calling_ae_title=calling_ae_title)
    assert [r.status for r in responses] == [0] * len(paths)


def age_series(db_url: str, seconds: float = 60) -> None:
    """Pretend every series went quiet ``seconds`` ago (instead of sleeping through the quiet period)."""
    engine = create_engine(sqlalchemy_url(db_url), poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE series SET last_received_at = last_received_at - make_interval(secs => :s)"), {"s": seconds}
        )
    engine.dispose()


class Jobs:
    """The node's job side for one test: its services, an app without periodic tasks, and a drain."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self.services = Services(settings=settings, url=url, pipelines=PIPELINES)
        self.app = build_app(settings, url, services=self.services)
        # sweeps are run by the tests themselves, so what a drain does is deterministic
        self.app.periodic_registry.periodic_tasks.clear()

    def route(self) -> Any:
        from dicomnode.jobs import route

        return route.route_quiet_series(services=self.services)

    def drain(self, timeout: float = 60) -> None:
        """Run a worker until no job is due (jobs scheduled later stay queued)."""

        async def run() -> None:
            async with self.app.open_async():
                options = worker_options(self.settings, queues=None, name="test")
                options.update(wait=False, install_signal_handlers=False, listen_notify=False)
                await asyncio.wait_for(self.app.run_worker_async(**options), timeout)

        asyncio.run(run())

    def drain_until(self, predicate: Callable[[], object], timeout: float = 30) -> object:
        """Drain repeatedly (retries come due) until ``predicate()`` is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def job_rows(self) -> list[dict[str, Any]]:
        engine = create_engine(sqlalchemy_url(self.url), poolclass=NullPool)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id, task_name, queue_name, status, attempts, args FROM procrastinate_jobs ORDER BY id")
            ).mappings().all()
        engine.dispose()
        return [dict(r) for r in rows]

    def close(self) -> None:
        self.services.close()


@pytest.fixture
def jobs_factory(db_url: str) -> Iterator[Callable[[Settings], Jobs]]:
    made: list[Jobs] = []

    def make(settings: Settings) -> Jobs:
        jobs = Jobs(settings, db_url)
        made.append(jobs)
        return jobs

    yield make
    for jobs in made:
        jobs.close()


def seed_rules(sessions: sessionmaker[Session], *rules: dict[str, Any], author: str = "test") -> None:
    """Save rules in the database (as `dicomnode rules import` does)."""
    from dicomnode.routing import rules as rule_model
    from dicomnode.routing import versions

    with sessions() as session:
        versions.import_rules(
            session=session, rules=[rule_model.parse_rule(r) for r in rules], author=author, reason="test"
        )
        session.commit()

