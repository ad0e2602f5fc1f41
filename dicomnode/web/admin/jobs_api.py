"""Operations endpoints of the admin API: jobs, runs and deliveries (list, retry), lineage, the
audit log and API tokens.

Retries go through ``jobs.admin.retry_job`` (as ``dicomnode jobs retry``): the run or delivery
is queued again and a new job deferred, by task name, in the transaction of the audit entry.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from dicomnode.db.models import Delivery, DeliveryState, Run, RunState
from dicomnode.dispatch import deliver
from dicomnode.jobs import admin
from dicomnode.provenance import audit, lineage, record
from dicomnode.web import problem
from dicomnode.web.admin import schemas, tokens
from dicomnode.web.admin.auth import AdminUser, require_token
from dicomnode.web.admin.schemas import ReasonBody, ReasonQuery
from dicomnode.web.deps import SessionDep
from dicomnode.web.problem import Problem, not_found

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require_token)])


# --- jobs, runs, deliveries -------------------------------------------------------------------


@router.get("/jobs", tags=["jobs"])
def list_jobs(
    session: SessionDep,
    status: Annotated[list[str] | None, Query(description=f"One of {', '.join(admin.JOB_STATUSES)} (repeat).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[schemas.JobOut]:
    """The latest jobs, newest first, each with its run or delivery, that one's state and last error."""
    try:
        rows = admin.list_jobs(session=session, statuses=status or (), limit=limit)
    except ValueError as exc:
        raise problem.bad_request(str(exc)) from None
    return [
        schemas.JobOut(
            job_id=r.job_id, task=r.task_name, queue=r.queue, status=r.status, attempts=r.attempts,
            scheduled_at=r.scheduled_at, subject=r.subject, subject_state=r.subject_state, error=r.error,
        )
        for r in rows
    ]


@router.get("/runs", tags=["jobs"])
def list_runs(
    session: SessionDep,
    state: Annotated[list[RunState] | None, Query(description="queued, running, done, failed (repeat).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[schemas.RunOut]:
    """The latest pipeline runs, newest first."""
    runs = record.list_runs(session=session, states=state or (), limit=limit)
    return [
        schemas.RunOut(
            run_id=run.id, state=run.state.value, series_instance_uid=run.series_instance_uid,
            rule=run.rule_version.rule.name, rule_version=run.rule_version.version, pipeline=run.pipeline_name,
            pipeline_version=run.pipeline_version, generation=run.generation, attempts=run.attempts,
            failure_reason=run.failure_reason, job_id=run.job_id, queued_at=run.queued_at,
            started_at=run.started_at, finished_at=run.finished_at,
        )
        for run in runs
    ]


@router.get("/deliveries", tags=["jobs"])
def list_deliveries(
    session: SessionDep,
    state: Annotated[list[DeliveryState] | None, Query(description="pending, sent, failed (repeat).")] = None,
    run_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[schemas.DeliveryOut]:
    """The latest deliveries, newest first."""
    rows = deliver.list_deliveries(session=session, states=state or (), run_id=run_id, limit=limit)
    return [
        schemas.DeliveryOut(
            delivery_id=d.id, run_id=d.run_fk, series_instance_uid=d.series_instance_uid, destination=d.destination,
            state=d.state.value, attempts=d.attempts, last_error=d.last_error, job_id=d.job_id,
            last_attempt_at=d.last_attempt_at, delivered_at=d.delivered_at,
        )
        for d in rows
    ]


def _retry(session: Session, user: str, job_id: int, body: schemas.Reason | None) -> schemas.RetryOut:
    try:
        new_id = admin.retry_job(session=session, job_id=job_id, actor=user, reason=body.reason if body else "")
    except LookupError as exc:
        raise Problem(404, "NotFound", str(exc)) from None
    except ValueError as exc:
        raise Problem(409, "Conflict", str(exc)) from None
    session.commit()
    return schemas.RetryOut(retried_job_id=job_id, job_id=new_id)


@router.post("/jobs/{job_id}/retry", tags=["jobs"])
def retry_job(job_id: int, session: SessionDep, user: AdminUser, body: ReasonBody = None) -> schemas.RetryOut:
    """Retry a failed job; a run or delivery gets a fresh set of attempts. 409 when it is not failed."""
    return _retry(session, user, job_id, body)


@router.post("/runs/{run_id}/retry", tags=["jobs"])
def retry_run(run_id: int, session: SessionDep, user: AdminUser, body: ReasonBody = None) -> schemas.RetryOut:
    """Retry a failed pipeline run (its failed job). 409 when the run is not failed."""
    run = session.get(Run, run_id)
    if run is None:
        raise not_found(f"run {run_id}")
    if run.state is not RunState.FAILED or run.job_id is None:
        raise Problem(409, "Conflict", f"run {run_id} is {run.state.value}; only a failed run can be retried")
    return _retry(session, user, run.job_id, body)


@router.post("/deliveries/{delivery_id}/retry", tags=["jobs"])
def retry_delivery(
    delivery_id: int, session: SessionDep, user: AdminUser, body: ReasonBody = None
) -> schemas.RetryOut:
    """Retry a failed delivery (its failed job). 409 when it is not failed."""
    row = session.get(Delivery, delivery_id)
    if row is None:
        raise not_found(f"delivery {delivery_id}")
    if row.state is not DeliveryState.FAILED or row.job_id is None:
        raise Problem(
            409, "Conflict", f"delivery {delivery_id} is {row.state.value}; only a failed delivery can be retried"
        )
    return _retry(session, user, row.job_id, body)


# --- lineage, audit, tokens -------------------------------------------------------------------


@router.get("/trace/{sop_instance_uid}", tags=["provenance"])
@router.get("/provenance/{sop_instance_uid}", tags=["provenance"])
def trace(sop_instance_uid: str, session: SessionDep) -> dict[str, Any]:
    """Lineage of an instance: the runs that made it (rule version, pipeline, inputs, deliveries) and read it."""
    chain = lineage.trace(session=session, sop_instance_uid=sop_instance_uid)
    if not chain.found:
        raise not_found(f"a run that made or read {sop_instance_uid}")
    return dataclasses.asdict(chain)


@router.get("/audit", tags=["provenance"])
def list_audit(
    session: SessionDep,
    target: Annotated[str | None, Query(description="e.g. rule:ct-montage, run:12, token:ci")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.AuditOut]:
    """The latest audit entries, newest first: rule edits, retries, token changes."""
    return [
        schemas.AuditOut(at=e.at, actor=e.actor, action=e.action, target=e.target, reason=e.reason, detail=e.detail)
        for e in audit.entries(session=session, target=target, limit=limit)
    ]


def _token_out(info: tokens.TokenInfo) -> schemas.TokenOut:
    return schemas.TokenOut(
        name=info.name, active=info.active, created_at=info.created_at, last_used_at=info.last_used_at,
        revoked_at=info.revoked_at,
    )


@router.get("/tokens", tags=["tokens"])
def list_tokens(session: SessionDep) -> list[schemas.TokenOut]:
    """Every API token (never a secret), revoked ones included."""
    return [_token_out(info) for info in tokens.list_tokens(session=session)]


@router.post("/tokens", status_code=201, tags=["tokens"])
def create_token(body: schemas.TokenCreate, session: SessionDep, user: AdminUser) -> schemas.TokenCreated:
    """Make a token; its secret is in this answer only. 409 when the name is taken."""
    try:
        info, secret = tokens.create_token(session=session, name=body.name, actor=user)
    except tokens.TokenExists:
        raise
    except ValueError as exc:
        raise problem.bad_request(str(exc)) from None
    session.commit()
    return schemas.TokenCreated(**_token_out(info).model_dump(), token=secret)


@router.delete("/tokens/{name}", tags=["tokens"])
def revoke_token(name: str, session: SessionDep, user: AdminUser, reason: ReasonQuery = "") -> schemas.TokenOut:
    """Revoke a token: it stops working at once."""
    info = tokens.revoke_token(session=session, name=name, actor=user, reason=reason)
    session.commit()
    return _token_out(info)
