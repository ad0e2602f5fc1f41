"""procrastinate: the job queue's schema, as the installed procrastinate ships it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 09:30:00

Executes ``procrastinate.schema.SchemaManager.get_schema()`` (procrastinate 3.x), so jobs live in
the node's database and a job is deferred in the same transaction as the rows that caused it.
The version applied is written as a comment on ``procrastinate_jobs``: a later revision for a
procrastinate upgrade applies only the files from ``SchemaManager.get_migrations_path()`` newer
than that version, so a database created fresh (which got the newer schema here) is not migrated
twice.
"""

from __future__ import annotations

from importlib.metadata import version

from alembic import op
from procrastinate.schema import SchemaManager

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _driver_connection():  # type: ignore[no-untyped-def]
    # The raw psycopg connection, inside Alembic's transaction: psycopg runs a parameterless
    # multi-statement script as is (SQLAlchemy's text() would read ':name' as a bind parameter).
    return op.get_bind().connection.driver_connection


def upgrade() -> None:
    installed = version("procrastinate")
    if not installed.startswith("3."):
        raise RuntimeError(f"this revision applies procrastinate 3.x's schema; procrastinate {installed} is installed")
    connection = _driver_connection()
    connection.execute(SchemaManager.get_schema())
    connection.execute(f"COMMENT ON TABLE procrastinate_jobs IS 'procrastinate {installed}'")


def downgrade() -> None:
    connection = _driver_connection()
    connection.execute(
        "DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, "
        "procrastinate_jobs, procrastinate_workers CASCADE"
    )
    functions = connection.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%'"
    ).fetchall()
    for (signature,) in functions:
        connection.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")
    types = connection.execute(
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate%' AND t.typtype IN ('e', 'c')"
    ).fetchall()
    for (name,) in types:
        connection.execute(f'DROP TYPE IF EXISTS "{name}" CASCADE')
