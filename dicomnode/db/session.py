"""Engine and session factory for the index database."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def sqlalchemy_url(url: str) -> str:
    """Spell a PostgreSQL URL for SQLAlchemy's psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"{url!r} is not a PostgreSQL URL")


def make_engine(url: str, *, pool_size: int = 8, application_name: str = "dicomnode") -> Engine:
    """Create the engine; connections fail fast (5 s) so a dead database becomes a status, not a hang."""
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per checkout on the ingest hot path. A connection
        # the server dropped fails once; ingest retries on a fresh one.
        pool_timeout=10,
        connect_args={"connect_timeout": 5, "application_name": application_name},
    )

    @event.listens_for(engine, "connect")
    def _statement_timeout(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # A stuck lock must not hang a DIMSE handler forever.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '30s'")
        dbapi_connection.commit()

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (handlers read them after committing)."""
    return sessionmaker(engine, expire_on_commit=False)
