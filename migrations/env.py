"""Alembic environment: runs migrations online against the URL dicomnode passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from dicomnode.db import (
    migrate,
    models,  # noqa: F401  (registers the tables on Base.metadata)
)
from dicomnode.db.base import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: run migrations through `dicomnode db upgrade`")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, include_name=migrate.include_name
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; use `dicomnode db upgrade`")
run_migrations_online()
