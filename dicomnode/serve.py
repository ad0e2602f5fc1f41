"""Run the node: database (embedded or given), migrations, the DIMSE SCP in N processes, and a job worker."""

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
from typing import TYPE_CHECKING, Any

from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy import Engine

from dicomnode.config import DimseDestination, Settings
from dicomnode.db import migrate
from dicomnode.db.embedded import EmbeddedPostgres
from dicomnode.db.session import make_engine, make_sessionmaker
from dicomnode.logs import setup_logging
from dicomnode.net import balance, handlers, qr, scp
from dicomnode.store import files
from dicomnode.store.ingest import Ingestor

if TYPE_CHECKING:
    from dicomnode.jobs.worker import BackgroundWorker

logger = logging.getLogger(__name__)

# How long the parent waits for every SCP process to serve before listening with fewer.
_START_TIMEOUT = 120.0


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
            f"database is at revision {current or 'none'}, this node needs {head}: run `dicomnode db upgrade`"
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


def start_in_process(
    settings: Settings, url: str, *, server_class: type[ThreadedAssociationServer] = ThreadedAssociationServer
) -> RunningNode:
    """Start the SCP in this process (threads), using database ``url``."""
    scp.configure_pynetdicom(debug_dimse=settings.log.debug_dimse, reactor_interval=settings.net.poll_interval)
    engine = make_engine(url, pool_size=max(settings.db.pool_size, settings.net.max_associations))
    sessions = make_sessionmaker(engine)
    ingestor = Ingestor(settings=settings.store, sessions=sessions)
    log = handlers.AssociationLog(engine)
    # C-MOVE sends only to DIMSE peers; DICOMweb destinations are for results (dispatch)
    dimse_peers = [d for d in settings.destinations if isinstance(d, DimseDestination)]
    archive = qr.Archive(sessions=sessions, store_root=ingestor.root, destinations=dimse_peers)
    server = scp.start_scp(
        settings=settings.net, ingestor=ingestor, log=log, archive=archive, server_class=server_class
    )
    return RunningNode(engine=engine, servers=[server])


class StopSignal:
    """A stop request set by a signal handler and polled by the main thread.

    Not a ``threading.Event``: the handler runs in the main thread, and ``Event.set()`` called
    while that thread sits in ``Event.wait()`` deadlocks on the Event's own lock.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True once a stop was requested."""
        deadline = time.monotonic() + seconds
        while self.signal_name is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.signal_name is not None


def _child(settings: Settings, url: str, index: int, shared: balance.SharedListener) -> None:
    setup_logging(level=settings.log.level, fmt=settings.log.format, debug_dimse=settings.log.debug_dimse)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    # SIGTERM keeps its default until we serve: starting holds nothing that needs a clean stop
    node = start_in_process(settings, url, server_class=balance.server_class(shared, index))
    stop = StopSignal()
    signal.signal(signal.SIGTERM, stop.handle)
    logger.info("worker process serving", extra={"scp_process": index, "pid": os.getpid()})
    while not stop.wait(1.0):
        pass
    node.stop()


def seed_rules(settings: Settings, url: str) -> None:
    """Load ``jobs.rules_file`` into an empty rule table: the first start of any node process.

    Front ends and workers may start at once, so the check-and-load runs under a transaction
    advisory lock; whoever comes second finds the table filled.
    """
    from sqlalchemy import text

    from dicomnode.jobs import admin

    engine = make_engine(url, pool_size=1)
    try:
        with make_sessionmaker(engine)() as session:
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext('dicomnode.seed_rules'))"))
            admin.seed_rules(session=session, path=settings.jobs.rules_file)
            session.commit()
    finally:
        engine.dispose()


def _start_jobs(settings: Settings, url: str) -> BackgroundWorker:
    """Run a job worker (and the completion sweep) in a thread."""
    from dicomnode.jobs import worker

    return worker.BackgroundWorker(settings, url).start()


@dataclass
class WebServer:
    """The HTTP service (DICOMweb, health) running in a thread of the main process."""

    server: Any
    thread: threading.Thread
    engine: Engine

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.engine.dispose()


def _start_web(settings: Settings, url: str) -> WebServer:
    """uvicorn serving ``web.app.create_app`` on web.host:web.port, in a thread."""
    import uvicorn

    from dicomnode.web.app import create_app

    engine = make_engine(url, pool_size=settings.db.pool_size, application_name="dicomnode-web")
    app = create_app(settings, engine=engine)
    config = uvicorn.Config(
        app, host=settings.web.host, port=settings.web.port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        engine.dispose()
        raise OSError(f"HTTP service did not start on {settings.web.host}:{settings.web.port} (see web.port)")
    logger.info("HTTP service listening", extra={"address": f"{settings.web.host}:{settings.web.port}"})
    return WebServer(server=server, thread=thread, engine=engine)


def serve(settings: Settings, *, worker: bool = True, web: bool = True) -> None:
    """Serve until SIGINT/SIGTERM: embedded database if none configured, SCP in N processes.

    With ``worker`` (embedded mode, the default) a job worker runs in this process too; front
    ends of a distributed node pass ``worker=False`` and leave jobs to ``dicomnode worker``.
    With ``web`` the HTTP service (DICOMweb, /healthz) runs in this process on web.port.
    """
    stop = StopSignal()
    signal.signal(signal.SIGTERM, stop.handle)
    signal.signal(signal.SIGINT, stop.handle)
    with database_url(settings) as url:
        check_schema(url)
        store_root = settings.store.root.resolve()
        store_root.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=files.remove_partials, args=(store_root,), daemon=True).start()
        seed_rules(settings, url)
        http = _start_web(settings, url) if web else None
        jobs = _start_jobs(settings, url) if worker else None
        try:
            processes = settings.net.processes or os.cpu_count() or 1
            if processes == 1:
                node = start_in_process(settings, url)
                _wait(stop)
                node.stop()
                return
            _serve_processes(settings, url, processes, stop)
        finally:
            if jobs is not None:
                jobs.stop()
            if http is not None:
                http.stop()


def _wait(stop: StopSignal) -> None:
    while not stop.wait(0.5):
        pass
    logger.info("stopping", extra={"signal": stop.signal_name})


def _serve_processes(settings: Settings, url: str, count: int, stop: StopSignal) -> None:
    context = multiprocessing.get_context("spawn")
    children: dict[int, multiprocessing.process.BaseProcess] = {}
    shared = balance.SharedListener.bind(settings.net.host, settings.net.port, processes=count, context=context)

    def spawn(index: int) -> None:
        shared.restarting(index)
        child = context.Process(target=_child, args=(settings, url, index, shared), name=f"dicomnode-scp-{index}")
        child.start()
        children[index] = child

    for index in range(count):
        spawn(index)
    _wait_serving(shared, children, stop)
    shared.open()
    logger.info("serving", extra={"processes": count, "serving": shared.serving(), "port": settings.net.port})
    while not stop.wait(0.5):
        for index, child in list(children.items()):
            if not child.is_alive():
                logger.error(
                    "worker process died, restarting", extra={"scp_process": index, "exitcode": child.exitcode}
                )
                time.sleep(0.5)
                spawn(index)
    logger.info("stopping", extra={"signal": stop.signal_name})
    for child in children.values():
        child.terminate()
    for child in children.values():
        child.join(timeout=10)
        if child.is_alive():  # a child stuck in shutdown must not keep the node from exiting
            child.kill()
    shared.close()


def _wait_serving(
    shared: balance.SharedListener, children: dict[int, multiprocessing.process.BaseProcess], stop: StopSignal
) -> None:
    """Until every SCP process serves, so the first senders are spread over all of them.

    Gives up (and listens with those that serve) when one dies starting or after
    ``_START_TIMEOUT``: a node that serves some is better than one that refuses all.
    """
    deadline = time.monotonic() + _START_TIMEOUT
    while shared.serving() < len(children) and stop.signal_name is None:
        dead = [index for index, child in children.items() if not child.is_alive()]
        if dead or time.monotonic() > deadline:
            logger.error(
                "not every SCP process started; listening with those that did",
                extra={"serving": shared.serving(), "processes": len(children), "dead": dead},
            )
            return
        stop.wait(0.05)
