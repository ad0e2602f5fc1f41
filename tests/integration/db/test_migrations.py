"""Migrations and models agree, and the chain upgrades from nothing to head."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from dicomnode.db import migrate
from dicomnode.db.base import Base
from dicomnode.db.session import sqlalchemy_url


def test_migrated_schema_matches_models(db_url: str) -> None:
    engine = create_engine(sqlalchemy_url(db_url))
    try:
        with engine.connect() as connection:
            # procrastinate's tables come from its own SQL (revision 0002), not from our models
            context = MigrationContext.configure(connection, opts={"include_name": migrate.include_name})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ; generate a revision: {diff}"


def test_database_is_at_head(db_url: str) -> None:
    head = ScriptDirectory.from_config(migrate.alembic_config(db_url)).get_current_head()
    assert migrate.current_revision(db_url) == head


def test_single_migration_chain(db_url: str) -> None:
    assert len(ScriptDirectory.from_config(migrate.alembic_config(db_url)).get_heads()) == 1
