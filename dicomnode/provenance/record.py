"""Provenance rows of a run as it moves: queued, running, done (inputs, outputs) or failed.

Each function writes in the caller's transaction and never commits, so a state change and what
it causes (a job deferred, a delivery planned) commit together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dicomnode.db.models import Instance, RuleVersion, Run, RunInput, RunOutput, RunState, Series

__all__ = [
    "InputRecord",
    "OutputRecord",
    "StoredOutput",
    "create_run",
    "fail_run",
    "finish_run",
    "has_run",
    "list_runs",
    "plan_outputs",
    "record_inputs",
    "requeue_run",
    "set_job",
    "start_run",
]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """An instance a run reads."""

    instance_id: int
    sop_instance_uid: str
    sha256: str


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """An instance a run made, before it is stored."""

    sop_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """An output as stored and indexed."""

    sop_instance_uid: str
    series_instance_uid: str
    sha256: str


def create_run(
    *,
    session: Session,
    series_id: int,
    series_instance_uid: str,
    rule_version_id: int,
    generation: int,
    pipeline_name: str,
    params: Mapping[str, Any],
    queue: str,
) -> int | None:
    """Insert a queued run; None when this series x rule version x pipeline x generation has one.

    The unique constraint makes this idempotent: two sweeps, or a sweep run twice, queue one run.
    """
    return session.execute(
        insert(Run)
        .values(
            series_fk=series_id,
            series_instance_uid=series_instance_uid,
            rule_version_fk=rule_version_id,
            generation=generation,
            pipeline_name=pipeline_name,
            params=dict(params),
            queue=queue,
            state=RunState.QUEUED,
            attempts=0,
        )
        .on_conflict_do_nothing(
            index_elements=[Run.series_fk, Run.rule_version_fk, Run.pipeline_name, Run.generation]
        )
        .returning(Run.id)
    ).scalar()


def set_job(*, session: Session, run_id: int, job_id: int) -> None:
    """Remember the procrastinate job that runs ``run_id``."""
    session.execute(update(Run).where(Run.id == run_id).values(job_id=job_id))


def has_run(*, session: Session, series_id: int, rule_id: int, pipeline_name: str) -> bool:
    """Whether any version of the rule already ran (or queued) the pipeline on the series."""
    return bool(
        session.scalar(
            select(func.count())
            .select_from(Run)
            .join(RuleVersion, RuleVersion.id == Run.rule_version_fk)
            .where(Run.series_fk == series_id, RuleVersion.rule_fk == rule_id, Run.pipeline_name == pipeline_name)
        )
    )


def start_run(*, session: Session, run_id: int, host: str, device: str, software_version: str) -> Run | None:
    """Lock the run and mark it running (one more attempt); None when it is done already.

    A run that failed for good is started again only after :func:`requeue_run` (a manual retry).
    """
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        raise LookupError(f"no run {run_id}")
    if run.state in (RunState.DONE, RunState.FAILED):
        return None
    run.state = RunState.RUNNING
    run.attempts += 1
    run.host = host
    run.device = device
    run.software_version = software_version
    run.started_at = func.now()  # type: ignore[assignment]
    run.finished_at = None
    session.flush()
    return run


def record_inputs(*, session: Session, run_id: int, inputs: Sequence[InputRecord]) -> None:
    """Replace the run's inputs with ``inputs`` (a retry may see more instances)."""
    session.execute(delete(RunInput).where(RunInput.run_fk == run_id))
    if inputs:
        session.execute(
            insert(RunInput),
            [
                {"run_fk": run_id, "instance_fk": i.instance_id, "sop_instance_uid": i.sop_instance_uid,
                 "sha256": i.sha256}
                for i in inputs
            ],
        )


def plan_outputs(*, session: Session, run_id: int, outputs: Sequence[OutputRecord]) -> None:
    """Record outputs before they are stored, so completion sees at once that their series are ours.

    Outputs of an attempt that died are kept (their series stay ours); outputs made again by a
    retry with the same UIDs are recorded once.
    """
    if not outputs:
        return
    session.execute(
        insert(RunOutput)
        .values(
            [
                {"run_fk": run_id, "sop_instance_uid": o.sop_instance_uid,
                 "series_instance_uid": o.series_instance_uid, "sop_class_uid": o.sop_class_uid}
                for o in outputs
            ]
        )
        .on_conflict_do_nothing(index_elements=[RunOutput.run_fk, RunOutput.sop_instance_uid])
    )


def finish_run(
    *,
    session: Session,
    run_id: int,
    pipeline_version: str,
    weights_sha256: str,
    outputs: Sequence[StoredOutput],
) -> list[int]:
    """Mark the run done with its stored outputs; mark their series as ours; supersede older runs.

    Returns
    -------
    list[int]
        Ids of the earlier runs of the same rule and pipeline on the same series that this one
        supersedes (their outputs stay stored and recorded).
    """
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        raise LookupError(f"no run {run_id}")
    for output in outputs:
        session.execute(
            update(RunOutput)
            .where(RunOutput.run_fk == run_id, RunOutput.sop_instance_uid == output.sop_instance_uid)
            .values(
                sha256=output.sha256,
                instance_fk=select(Instance.id)
                .where(Instance.sop_instance_uid == output.sop_instance_uid)
                .scalar_subquery(),
            )
        )
    series_uids = sorted({o.series_instance_uid for o in outputs})
    if series_uids:
        session.execute(
            update(Series).where(Series.series_instance_uid.in_(series_uids)).values(source_run_fk=run_id)
        )
    run.state = RunState.DONE
    run.pipeline_version = pipeline_version
    run.weights_sha256 = weights_sha256
    run.failure_reason = ""
    run.finished_at = func.now()  # type: ignore[assignment]
    rule_id = select(RuleVersion.rule_fk).where(RuleVersion.id == run.rule_version_fk).scalar_subquery()
    same_rule_versions = select(RuleVersion.id).where(RuleVersion.rule_fk == rule_id)
    superseded = session.scalars(
        update(Run)
        .where(
            Run.series_fk == run.series_fk,
            Run.pipeline_name == run.pipeline_name,
            Run.rule_version_fk.in_(same_rule_versions),
            Run.id != run.id,
            Run.generation < run.generation,
            Run.state == RunState.DONE,
            Run.superseded_by_fk.is_(None),
        )
        .values(superseded_by_fk=run.id)
        .returning(Run.id)
    ).all()
    session.flush()
    return list(superseded)


def fail_run(*, session: Session, run_id: int, reason: str, final: bool) -> None:
    """Record a failed attempt: failed for good when ``final``, else queued for the retry."""
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(
            state=RunState.FAILED if final else RunState.QUEUED,
            failure_reason=reason[:2000],
            finished_at=func.now() if final else None,
        )
    )


def requeue_run(*, session: Session, run_id: int) -> Run:
    """Make a failed run queued again (a manual retry); the caller defers its job.

    Raises
    ------
    LookupError
        When there is no such run.
    ValueError
        When the run is not failed.
    """
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        raise LookupError(f"no run {run_id}")
    if run.state is not RunState.FAILED:
        raise ValueError(f"run {run_id} is {run.state.value}; only a failed run can be retried")
    run.state = RunState.QUEUED
    run.finished_at = None
    session.flush()
    return run


def list_runs(
    *, session: Session, states: Sequence[RunState] = (), limit: int = 50, since: dt.datetime | None = None
) -> list[Run]:
    """The latest runs, newest first, optionally in some states."""
    statement = select(Run).order_by(Run.queued_at.desc(), Run.id.desc()).limit(limit)
    if states:
        statement = statement.where(Run.state.in_(list(states)))
    if since is not None:
        statement = statement.where(Run.queued_at >= since)
    return list(session.scalars(statement).all())
