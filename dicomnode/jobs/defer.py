"""Defer a job by task name inside the caller's SQLAlchemy transaction.

procrastinate's SQLAlchemy connector is built on psycopg2; the node runs SQLAlchemy 2 on
psycopg 3. So the INSERT goes through procrastinate's psycopg 3 connector on the *session's own
driver connection*: the job row commits with the rows that caused it, or not at all. Deferring
by name means the caller never imports the task (nor, for process_series, torch).
"""

from __future__ import annotations

import functools
from typing import Any

from procrastinate import manager, tasks
from procrastinate.sync_psycopg_connector import SyncPsycopgConnector
from sqlalchemy.orm import Session

__all__ = ["CHECK_COMPLETION", "DELIVER", "PROCESS_SERIES", "RETRY_STALLED_JOBS", "defer_in_transaction"]

#: Task names (stable: they are stored in job rows).
CHECK_COMPLETION = "check_completion"
PROCESS_SERIES = "process_series"
DELIVER = "deliver"
RETRY_STALLED_JOBS = "retry_stalled_jobs"


@functools.cache
def _job_manager() -> manager.JobManager:
    # Never opened: with an external connection it needs no pool of its own.
    return manager.JobManager(connector=SyncPsycopgConnector())


def defer_in_transaction(
    *,
    session: Session,
    task_name: str,
    queue: str,
    lock: str | None = None,
    queueing_lock: str | None = None,
    **task_kwargs: Any,
) -> int:
    """Insert a job in the session's current transaction; it exists only if the session commits.

    Parameters
    ----------
    session
        A session on the node's database (psycopg 3 driver), in a transaction the caller ends.
    task_name
        The task's registered name, e.g. :data:`PROCESS_SERIES`.
    queue
        The queue workers take it from.
    lock, queueing_lock
        procrastinate's locks: jobs with one ``lock`` run one at a time; a ``queueing_lock``
        allows one waiting job. A clash raises ``procrastinate.exceptions.AlreadyEnqueued`` and
        spoils the transaction, so use locks unique to what is deferred (``run:<id>``).
    **task_kwargs
        The task's JSON-able arguments.

    Returns
    -------
    int
        The job id.
    """
    connection = session.connection().connection.driver_connection
    deferrer = tasks.configure_task(
        name=task_name,
        job_manager=_job_manager(),
        queue=queue,
        lock=lock,
        queueing_lock=queueing_lock,
        connection=connection,
        task_kwargs=task_kwargs,
    )
    return deferrer.defer()
