"""Run the node: database (embedded or given), migrations, and the DIMSE SCP in N processes."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

from sqlalchemy import Engine

from dicomnode.config import Settings
from dicomnode.db import migrate
from dicomnode.db.embedded import EmbeddedPostgres
from dicomnode.db.session import make_engine, make_sessionmaker
from dicomnode.logs import setup_logging
from dicomnode.net import handlers, qr, scp
from dicomnode.store import files
from dicomnode.store.ingest import Ingestor

logger = logging.getLogger(__name__)


class DatabaseNotReady(Exception):
    """The database schema is not at the revision this node needs."""


@contextlib.contextmanager
def database_url(settings: Settings, *, migrate_embedded: bool = True) -> Iterator[str]:
    """The database URL to use: the configured one, or an embedded server started here."""
    if settings.db.url:
        yield settings.db.url
        return
    embedded = EmbeddedPostgres(settings.db.embedded_dir)
    try:
        if migrate_embedded:
            migrate.upgrade(embedded.url)
        yield embedded.url
    finally:
        embedded.close()


def check_schema(url: str) -> None:
    """Refuse to serve a database that is not migrated to head."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    current = migrate.current_revision(url)
    if current != head:
        raise DatabaseNotReady(
            f"database is at revision {current or 'none'}, this node needs {head}: "
            "run `dicomnode db upgrade`"
        )


@dataclass
class RunningNode:
    """What one serving process holds; ``stop()`` shuts it down."""

    engine: Engine
    servers: list[object]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
        self.engine.dispose()


def start_in_process(settings: Settings, url: str, *, reuse_port: bool = False) -> RunningNode:
    """Start the SCP in this process (threads), using database ``url``."""
    scp.configure_pynetdicom(debug_dimse=settings.log.debug_dimse)
    engine = make_engine(url, pool_size=max(settings.db.pool_size, settings.net.max_associations))
    sessions = make_sessionmaker(engine)
    ingestor = Ingestor(settings=settings.store, sessions=sessions)
    log = handlers.AssociationLog(sessions)
    archive = qr.Archive(sessions=sessions, store_root=ingestor.root, destinations=settings.destinations)
    server = scp.start_scp(settings=settings.net, ingestor=ingestor, log=log, reuse_port=reuse_port, archive=archive)
    return RunningNode(engine=engine, servers=[server])


def _child(settings: Settings, url: str, index: int) -> None:
    setup_logging(level=settings.log.level, fmt=settings.log.format, debug_dimse=settings.log.debug_dimse)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    node = start_in_process(settings, url, reuse_port=True)
    logger.info("worker process serving", extra={"scp_process": index, "pid": os.getpid()})
    stop.wait()
    node.stop()


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM: embedded database if none configured, SCP in N processes."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with database_url(settings) as url:
        check_schema(url)
        store_root = settings.store.root.resolve()
        store_root.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=files.remove_partials, args=(store_root,), daemon=True).start()
        processes = settings.net.processes or os.cpu_count() or 1
        if processes == 1:
            node = start_in_process(settings, url)
            _wait(stop)
            node.stop()
            return
        _serve_processes(settings, url, processes, stop)


def _wait(stop: threading.Event) -> None:
    while not stop.wait(0.5):
        pass


def _serve_processes(settings: Settings, url: str, count: int, stop: threading.Event) -> None:
    context = multiprocessing.get_context("spawn")
    children: dict[int, multiprocessing.process.BaseProcess] = {}

    def spawn(index: int) -> None:
        child = context.Process(target=_child, args=(settings, url, index), name=f"dicomnode-scp-{index}")
        child.start()
        children[index] = child

    for index in range(count):
        spawn(index)
    logger.info("serving", extra={"processes": count, "port": settings.net.port})
    while not stop.wait(0.5):
        for index, child in list(children.items()):
            if not child.is_alive():
                logger.error("worker process died, restarting", extra={"scp_process": index, "exitcode": child.exitcode})
                time.sleep(0.5)
                spawn(index)
    for child in children.values():
        child.terminate()
    for child in children.values():
        child.join(timeout=10)
