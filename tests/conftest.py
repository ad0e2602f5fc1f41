"""Shared fixtures: a real PostgreSQL per test (cloned from a migrated template), a running SCP."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import RunningNode, make_settings


def _server_url() -> tuple[str, object | None]:
    """Admin URL of a PostgreSQL server: $DICOMNODE_TEST_PG, the local one, or pgserver."""
    url = os.environ.get("DICOMNODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return url, None
    except psycopg.OperationalError:
        from dicomnode.db.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="dicomnode-pg-")) / "data")
        return embedded.url, embedded


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


def _admin(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    url, embedded = _server_url()
    yield url
    if embedded is not None:
        embedded.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> Iterator[str]:
    """A database migrated once with ``alembic upgrade head``; tests clone it."""
    from dicomnode.db import migrate

    name = f"dicomnode_tpl_{uuid.uuid4().hex[:10]}"
    _admin(pg_server, f'CREATE DATABASE "{name}"')
    migrate.upgrade(_with_database(pg_server, name))
    yield name
    _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server: str, template_db: str) -> Iterator[str]:
    """A fresh migrated database for this test, dropped afterwards."""
    name = f"dicomnode_t_{uuid.uuid4().hex[:12]}"
    _admin(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _with_database(pg_server, name)
    _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def node_factory(db_url: str, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Start nodes with per-test settings overrides; all are stopped at teardown."""
    from dicomnode.serve import start_in_process

    started = []

    def start(**sections: dict) -> RunningNode:  # type: ignore[type-arg]
        store_root = tmp_path / f"store{len(started)}"
        settings = make_settings(db_url, store_root, **sections)
        running = start_in_process(settings, db_url)
        started.append(running)
        return RunningNode(settings=settings, db_url=db_url, store_root=store_root.resolve())

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def node(node_factory) -> RunningNode:  # type: ignore[no-untyped-def]
    """A node with default settings."""
    return node_factory()


