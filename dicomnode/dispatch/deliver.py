"""Deliveries: one row per (output series, destination); ``deliver`` makes one attempt and records it.

The job (``jobs.tasks.deliver``) turns a failed attempt into a retry with backoff, or, on the
last attempt, into a delivery that failed for good. No transaction is held while sending: the
row is read, the files are sent, then the attempt is written in a transaction of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from dicomnode.config import Destination, DimseDestination
from dicomnode.db.models import Delivery, DeliveryState
from dicomnode.dispatch import destinations, dicomweb, dimse
from dicomnode.errors import UnknownDestination
from dicomnode.logs import bound

__all__ = ["DeliveryOutcome", "deliver", "list_deliveries", "plan", "requeue", "set_job"]

logger = logging.getLogger(__name__)

_FILES = text(
    """
    SELECT instance.file_path FROM run_output
    JOIN instance ON instance.sop_instance_uid = run_output.sop_instance_uid
    WHERE run_output.run_fk = :run_id AND run_output.series_instance_uid = :series_instance_uid
    ORDER BY instance.instance_number NULLS LAST, instance.id
    """
)


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one attempt did."""

    delivery_id: int
    state: DeliveryState
    sent: int = 0
    failed: int = 0
    error: str = ""
    #: The attempt cannot succeed by retrying (unknown destination, nothing to send).
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.state is DeliveryState.SENT


def plan(*, session: Session, run_id: int, series_instance_uids: Iterable[str], names: Iterable[str]) -> list[int]:
    """Insert a pending delivery per output series x destination name (in the caller's transaction).

    Returns
    -------
    list[int]
        Ids of the deliveries created (existing ones are left as they are).
    """
    rows = [
        {"run_fk": run_id, "series_instance_uid": uid, "destination": name, "state": DeliveryState.PENDING}
        for uid in sorted(set(series_instance_uids))
        for name in names
    ]
    if not rows:
        return []
    return list(
        session.scalars(
            insert(Delivery)
            .values(rows)
            .on_conflict_do_nothing(
                index_elements=[Delivery.run_fk, Delivery.series_instance_uid, Delivery.destination]
            )
            .returning(Delivery.id)
        ).all()
    )


def set_job(*, session: Session, delivery_id: int, job_id: int) -> None:
    """Remember the procrastinate job that sends the delivery."""
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(job_id=job_id))


def _send(destination: Destination, paths: Sequence[Path], *, calling_ae_title: str) -> dimse.SendReport:
    if isinstance(destination, DimseDestination):
        return dimse.send(destination, paths, calling_ae_title=calling_ae_title)
    return dicomweb.send(destination, paths)


def deliver(
    *,
    sessions: sessionmaker[Session],
    delivery_id: int,
    destinations_config: Sequence[Destination],
    store_root: Path,
    calling_ae_title: str,
    final: bool = False,
) -> DeliveryOutcome:
    """Make one attempt at a delivery and record it (attempts, time, error, state).

    Parameters
    ----------
    sessions
        Sessions on the node's database.
    delivery_id
        The delivery row.
    destinations_config
        The configured destinations (``settings.destinations``).
    store_root
        The store the output files are in.
    calling_ae_title
        Our AE title, for C-STORE.
    final
        This is the last attempt the job allows: a failure is recorded as failed for good.

    Returns
    -------
    DeliveryOutcome
        ``ok`` when the destination kept every instance; a delivery sent before is not sent again.
    """
    with sessions() as session:
        row = session.get(Delivery, delivery_id)
        if row is None:
            raise LookupError(f"no delivery {delivery_id}")
        if row.state is DeliveryState.SENT:
            return DeliveryOutcome(delivery_id, DeliveryState.SENT)
        run_id, series_uid, name = row.run_fk, row.series_instance_uid, row.destination
        found = session.execute(_FILES, {"run_id": run_id, "series_instance_uid": series_uid}).all()
        files = [store_root / r[0] for r in found]
    with bound(run_id=run_id, series_instance_uid=series_uid):
        try:
            destination = destinations.find(destinations_config, name)
        except UnknownDestination as exc:
            return _record(sessions, delivery_id, sent=0, failed=0, error=str(exc), final=True, permanent=True)
        if not files:
            error = "no stored instance of this output series to send"
            return _record(sessions, delivery_id, sent=0, failed=0, error=error, final=True, permanent=True)
        report = _send(destination, files, calling_ae_title=calling_ae_title)
        more = len(report.errors) - 5
        error = "; ".join(report.errors[:5]) + (f" (and {more} more)" if more > 0 else "")
        outcome = _record(sessions, delivery_id, sent=report.sent, failed=report.failed, error=error, final=final)
        log = logger.info if outcome.ok else logger.warning
        log(
            "delivery sent" if outcome.ok else "delivery failed",
            extra={"destination": name, "delivery_id": delivery_id, "sent": report.sent, "failed": report.failed},
        )
        return outcome


def _record(
    sessions: sessionmaker[Session],
    delivery_id: int,
    *,
    sent: int,
    failed: int,
    error: str,
    final: bool,
    permanent: bool = False,
) -> DeliveryOutcome:
    ok = failed == 0 and not error
    state = DeliveryState.SENT if ok else DeliveryState.FAILED if final else DeliveryState.PENDING
    with sessions() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(
                attempts=Delivery.attempts + 1,
                last_attempt_at=func.now(),
                last_error="" if ok else error[:2000],
                state=state,
                delivered_at=func.now() if ok else None,
            )
        )
        session.commit()
    return DeliveryOutcome(delivery_id, state, sent=sent, failed=failed, error=error, permanent=permanent)


def requeue(*, session: Session, delivery_id: int) -> Delivery:
    """Make a failed delivery pending again (a manual retry); the caller defers its job.

    Raises
    ------
    LookupError
        When there is no such delivery.
    ValueError
        When it was sent already.
    """
    row = session.get(Delivery, delivery_id, with_for_update=True)
    if row is None:
        raise LookupError(f"no delivery {delivery_id}")
    if row.state is DeliveryState.SENT:
        raise ValueError(f"delivery {delivery_id} was sent already")
    row.state = DeliveryState.PENDING
    session.flush()
    return row


def list_deliveries(
    *, session: Session, states: Sequence[DeliveryState] = (), run_id: int | None = None, limit: int = 50
) -> list[Delivery]:
    """The latest deliveries, newest first."""
    statement = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    if states:
        statement = statement.where(Delivery.state.in_(list(states)))
    if run_id is not None:
        statement = statement.where(Delivery.run_fk == run_id)
    return list(session.scalars(statement).all())
