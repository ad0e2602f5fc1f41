"""The audit log: who did what, when and why (rule edits, token changes, manual retries)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomnode.db.models import AuditEntry

__all__ = ["entries", "record"]


def record(
    *,
    session: Session,
    actor: str,
    action: str,
    target: str = "",
    reason: str = "",
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry in the caller's transaction (the caller commits with the change it records).

    Parameters
    ----------
    actor
        Who: a user or token name, or ``cli:<os user>``.
    action
        What, as ``<noun>.<verb>``: ``rule.update``, ``rule.restore``, ``job.retry``.
    target
        What it was done to: ``rule:<name>``, ``run:<id>``.
    reason
        Why, in the actor's words.
    detail
        JSON-able facts (a rule version number, a job id).

    Raises
    ------
    ValueError
        When ``actor`` or ``action`` is empty.
    """
    if not actor.strip() or not action.strip():
        raise ValueError("an audit entry needs an actor and an action")
    entry = AuditEntry(actor=actor, action=action, target=target, reason=reason, detail=dict(detail or {}))
    session.add(entry)
    session.flush()
    return entry


def entries(*, session: Session, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
    """The latest entries, newest first, optionally for one target."""
    statement = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if target is not None:
        statement = statement.where(AuditEntry.target == target)
    return list(session.scalars(statement).all())
