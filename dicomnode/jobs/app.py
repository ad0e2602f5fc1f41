"""The procrastinate App on the node's database, built by a factory from the settings.

Nothing happens at import: :func:`build_app` makes an App with a psycopg 3 connector on the
node's database URL and registers the tasks (their retry strategies and the sweep interval come
from ``settings.jobs``). :class:`Services` holds what the tasks of one process share: settings,
an engine and its sessions, and the store's ingestor.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import procrastinate
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ai_pipelines import registry
from dicomnode.config import Settings
from dicomnode.db.session import make_engine, make_sessionmaker
from dicomnode.store.ingest import Ingestor

__all__ = ["Services", "build_app", "conninfo"]


def conninfo(url: str) -> str:
    """A libpq connection string (what psycopg takes) from a node database URL."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


@dataclass
class Services:
    """What the tasks of one worker process share, made on first use and closed by :meth:`close`."""

    settings: Settings
    url: str
    #: Built-in pipelines, name -> "module:Class" (``ai_pipelines.registry``); entry points add more.
    pipelines: Mapping[str, str] = field(default_factory=lambda: registry.BUILT_INS)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _engine: Engine | None = field(default=None, repr=False)
    _sessions: sessionmaker[Session] | None = field(default=None, repr=False)
    _ingestor: Ingestor | None = field(default=None, repr=False)

    def _open(self) -> None:
        with self._lock:
            if self._engine is None:
                pool_size = max(2, self.settings.jobs.concurrency + 1)
                self._engine = make_engine(self.url, pool_size=pool_size, application_name="dicomnode-jobs")
                self._sessions = make_sessionmaker(self._engine)
                self._ingestor = Ingestor(settings=self.settings.store, sessions=self._sessions)

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions on the node's database."""
        self._open()
        assert self._sessions is not None
        return self._sessions

    @property
    def ingestor(self) -> Ingestor:
        """The store's single entry point, for pipeline outputs."""
        self._open()
        assert self._ingestor is not None
        return self._ingestor

    def close(self) -> None:
        """Dispose of the engine (its connections close)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = self._sessions = self._ingestor = None


def build_app(settings: Settings, url: str, *, services: Services | None = None, **pool: Any) -> procrastinate.App:
    """The procrastinate App for the node's database, with the tasks registered.

    Parameters
    ----------
    settings
        The node's settings; ``settings.jobs`` sets retries, the sweep interval and the queues.
    url
        The node's database URL (procrastinate's tables are in it, from migration 0002).
    services
        What the tasks use; a new :class:`Services` on ``settings`` and ``url`` by default.
    **pool
        Arguments for psycopg's connection pool (e.g. ``min_size``).

    Returns
    -------
    procrastinate.App
        Not opened: a worker opens it (``open_async``); so does the CLI to list jobs (``open``).
    """
    from dicomnode.jobs import tasks

    pool.setdefault("min_size", 1)
    pool.setdefault("max_size", settings.jobs.concurrency + 3)
    connector = procrastinate.PsycopgConnector(conninfo=conninfo(url), **pool)
    app = procrastinate.App(connector=connector, import_paths=["dicomnode.jobs.tasks"])
    tasks.register(app, services or Services(settings=settings, url=url))
    return app
