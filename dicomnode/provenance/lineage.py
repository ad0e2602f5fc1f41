"""Lineage by SOP Instance UID: which run made an instance, from what; what was made from it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomnode.db.models import Delivery, RoutingRule, RuleVersion, Run, RunInput, RunOutput

__all__ = ["DeliveryStep", "Lineage", "RunStep", "trace"]


@dataclass(frozen=True, slots=True)
class DeliveryStep:
    """Where one output series of a run went."""

    delivery_id: int
    series_instance_uid: str
    destination: str
    state: str
    attempts: int
    last_error: str
    delivered_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class RunStep:
    """A run with everything needed to reproduce it."""

    run_id: int
    state: str
    rule_name: str
    rule_version: int
    rule_body: dict[str, Any]
    pipeline_name: str
    pipeline_version: str
    params: dict[str, Any]
    weights_sha256: str
    device: str
    host: str
    software_version: str
    generation: int
    attempts: int
    failure_reason: str
    superseded_by_run_id: int | None
    series_instance_uid: str
    queued_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    #: (SOP Instance UID, sha256 of its file as indexed)
    inputs: tuple[tuple[str, str], ...]
    #: (SOP Instance UID, Series Instance UID, sha256 as stored)
    outputs: tuple[tuple[str, str, str], ...]
    deliveries: tuple[DeliveryStep, ...]


@dataclass(frozen=True, slots=True)
class Lineage:
    """What the database knows of one instance's making and use."""

    sop_instance_uid: str
    #: The run(s) that made it (one, unless a retry made the same UID again).
    made_by: tuple[RunStep, ...]
    #: The runs that read it.
    used_by: tuple[RunStep, ...]

    @property
    def found(self) -> bool:
        return bool(self.made_by or self.used_by)


def _step(session: Session, run: Run) -> RunStep:
    version, rule = session.execute(
        select(RuleVersion, RoutingRule)
        .join(RoutingRule, RoutingRule.id == RuleVersion.rule_fk)
        .where(RuleVersion.id == run.rule_version_fk)
    ).one()
    inputs = session.execute(
        select(RunInput.sop_instance_uid, RunInput.sha256).where(RunInput.run_fk == run.id).order_by(RunInput.id)
    ).all()
    outputs = session.execute(
        select(RunOutput.sop_instance_uid, RunOutput.series_instance_uid, RunOutput.sha256)
        .where(RunOutput.run_fk == run.id)
        .order_by(RunOutput.id)
    ).all()
    deliveries = session.scalars(select(Delivery).where(Delivery.run_fk == run.id).order_by(Delivery.id)).all()
    return RunStep(
        run_id=run.id,
        state=run.state.value,
        rule_name=rule.name,
        rule_version=version.version,
        rule_body=dict(version.body),
        pipeline_name=run.pipeline_name,
        pipeline_version=run.pipeline_version,
        params=dict(run.params or {}),
        weights_sha256=run.weights_sha256,
        device=run.device,
        host=run.host,
        software_version=run.software_version,
        generation=run.generation,
        attempts=run.attempts,
        failure_reason=run.failure_reason,
        superseded_by_run_id=run.superseded_by_fk,
        series_instance_uid=run.series_instance_uid,
        queued_at=run.queued_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        inputs=tuple((r[0], r[1]) for r in inputs),
        outputs=tuple((r[0], r[1], r[2]) for r in outputs),
        deliveries=tuple(
            DeliveryStep(
                delivery_id=d.id,
                series_instance_uid=d.series_instance_uid,
                destination=d.destination,
                state=d.state.value,
                attempts=d.attempts,
                last_error=d.last_error,
                delivered_at=d.delivered_at,
            )
            for d in deliveries
        ),
    )


def trace(*, session: Session, sop_instance_uid: str) -> Lineage:
    """The full chain for an instance: the runs that made it and the runs that read it.

    Parameters
    ----------
    sop_instance_uid
        Any instance: an output (``made_by`` is filled) or an input (``used_by``).

    Returns
    -------
    Lineage
        Empty (``found`` False) when no run made or read the instance.
    """
    made_by = session.scalars(
        select(Run).join(RunOutput, RunOutput.run_fk == Run.id).where(RunOutput.sop_instance_uid == sop_instance_uid)
        .order_by(Run.id)
    ).all()
    used_by = session.scalars(
        select(Run).join(RunInput, RunInput.run_fk == Run.id).where(RunInput.sop_instance_uid == sop_instance_uid)
        .order_by(Run.id)
    ).all()
    return Lineage(
        sop_instance_uid=sop_instance_uid,
        made_by=tuple(_step(session, run) for run in made_by),
        used_by=tuple(_step(session, run) for run in used_by),
    )
