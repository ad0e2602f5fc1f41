"""What an admin does with jobs: list them with the run or delivery they serve, retry a failed one;
and the first start's seeding of the rule table from the rules file.

Used by ``dicomnode jobs`` and, later, the admin API. A retry of a failed pipeline run or
delivery makes the row queued/pending again and defers a *new* job (a fresh retry budget) in
the same transaction as the audit entry; any other failed job is put back by procrastinate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from dicomnode.db.models import Delivery, Run
from dicomnode.dispatch import deliver
from dicomnode.jobs import defer
from dicomnode.provenance import audit, record
from dicomnode.routing import versions

__all__ = ["JOB_STATUSES", "JobRow", "list_jobs", "retry_job", "seed_rules"]

#: procrastinate's job statuses.
JOB_STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborting", "aborted")

_LIST = text(
    """
    SELECT j.id, j.task_name, j.queue_name, j.status::text, j.attempts, j.scheduled_at, j.args,
           run.id AS run_id, run.state AS run_state, run.failure_reason,
           d.id AS delivery_id, d.state AS delivery_state, d.destination, d.last_error
    FROM procrastinate_jobs j
    LEFT JOIN run ON j.task_name = 'process_series' AND run.id = (j.args->>'run_id')::bigint
    LEFT JOIN delivery d ON j.task_name = 'deliver' AND d.id = (j.args->>'delivery_id')::bigint
    WHERE (CAST(:statuses AS text[]) IS NULL OR j.status::text = ANY(CAST(:statuses AS text[])))
    ORDER BY j.id DESC
    LIMIT :limit
    """
)


@dataclass(frozen=True, slots=True)
class JobRow:
    """One procrastinate job and what it works on."""

    job_id: int
    task_name: str
    queue: str
    status: str
    attempts: int
    scheduled_at: dt.datetime | None
    #: ``run 12``, ``delivery 3 -> pacs``, or the task's arguments.
    subject: str
    #: The run's or delivery's own state (``done``, ``sent``), when it has one.
    subject_state: str
    #: The run's failure reason or the delivery's last error.
    error: str


def list_jobs(*, session: Session, statuses: Sequence[str] = (), limit: int = 50) -> list[JobRow]:
    """The latest jobs, newest first, optionally in some statuses.

    Raises
    ------
    ValueError
        For a status procrastinate does not have.
    """
    unknown = sorted(set(statuses) - set(JOB_STATUSES))
    if unknown:
        raise ValueError(f"unknown job status {', '.join(unknown)}; expected one of {', '.join(JOB_STATUSES)}")
    rows = session.execute(_LIST, {"statuses": list(statuses) or None, "limit": limit}).mappings().all()
    jobs = []
    for row in rows:
        if row["run_id"] is not None:
            subject, state, error = f"run {row['run_id']}", row["run_state"], row["failure_reason"]
        elif row["delivery_id"] is not None:
            subject = f"delivery {row['delivery_id']} -> {row['destination']}"
            state, error = row["delivery_state"], row["last_error"]
        else:
            subject = ", ".join(f"{k}={v}" for k, v in sorted((row["args"] or {}).items()))
            state, error = "", ""
        jobs.append(
            JobRow(
                job_id=row["id"], task_name=row["task_name"], queue=row["queue_name"], status=row["status"],
                attempts=row["attempts"], scheduled_at=row["scheduled_at"], subject=subject,
                subject_state=str(state or ""), error=str(error or ""),
            )
        )
    return jobs


def retry_job(*, session: Session, job_id: int, actor: str, reason: str = "") -> int:
    """Retry a failed job; returns the id of the job that will run (the caller commits).

    Raises
    ------
    LookupError
        When there is no such job.
    ValueError
        When the job (or its run or delivery) is not failed.
    """
    row = session.execute(
        text("SELECT task_name, status::text, args, queue_name FROM procrastinate_jobs WHERE id = :id FOR UPDATE"),
        {"id": job_id},
    ).first()
    if row is None:
        raise LookupError(f"no job {job_id}")
    task_name, status, args, queue = row
    if status != "failed":
        raise ValueError(f"job {job_id} is {status}; only a failed job can be retried")
    args = args or {}
    if task_name == defer.PROCESS_SERIES and "run_id" in args:
        run: Run = record.requeue_run(session=session, run_id=int(args["run_id"]))
        new_id = defer.defer_in_transaction(
            session=session, task_name=defer.PROCESS_SERIES, queue=run.queue, queueing_lock=f"run:{run.id}",
            run_id=run.id,
        )
        record.set_job(session=session, run_id=run.id, job_id=new_id)
        target = f"run:{run.id}"
    elif task_name == defer.DELIVER and "delivery_id" in args:
        delivery: Delivery = deliver.requeue(session=session, delivery_id=int(args["delivery_id"]))
        new_id = defer.defer_in_transaction(
            session=session, task_name=defer.DELIVER, queue=queue, lock=f"delivery:{delivery.id}",
            queueing_lock=f"delivery:{delivery.id}", delivery_id=delivery.id,
        )
        deliver.set_job(session=session, delivery_id=delivery.id, job_id=new_id)
        target = f"delivery:{delivery.id}"
    else:
        session.execute(text("SELECT procrastinate_retry_job_v2(:id, now(), NULL, NULL, NULL)"), {"id": job_id})
        new_id, target = job_id, f"job:{job_id}"
    audit.record(
        session=session, actor=actor, action="job.retry", target=target, reason=reason,
        detail={"job_id": job_id, "new_job_id": new_id, "task": task_name},
    )
    return new_id


def seed_rules(*, session: Session, path: Path) -> int:
    """Load the rules file into an empty rule table (first start), audited; returns how many were loaded.

    Raises
    ------
    RuleInvalid
        When the file holds an invalid rule (with the path and reason of each error).
    """
    loaded = versions.seed_if_empty(session=session, path=path, author="dicomnode")
    if loaded:
        audit.record(
            session=session, actor="dicomnode", action="rule.seed", target="rules", reason=f"first start: {path}",
            detail={"rules": loaded},
        )
    return loaded
