"""Rules in the database: every edit is a new version (who, when, why); any version can be restored.

The rule table holds one row per name and the number of its current version; ``rule_version``
holds each version's body (the rule as :func:`~dicomnode.routing.rules.parse_rule` reads it).
Runs name the version that routed them, so a version is never changed or removed. Rules start in
``conf/rules.yaml``, loaded by :func:`seed_if_empty` when the table is empty; from then on the
database owns them and :func:`export_rules` writes YAML back.

The caller commits (and writes the audit entry, :mod:`dicomnode.provenance.audit`, in the same
transaction): nothing here imports a sibling package.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicomnode.db.models import RoutingRule, RuleVersion
from dicomnode.routing.rules import Rule, RuleError, RuleInvalid, dump_rules, load_rules, parse_rule

__all__ = [
    "ImportSummary",
    "RuleExists",
    "RuleNotFound",
    "StoredRule",
    "create_rule",
    "current_rules",
    "delete_rule",
    "export_rules",
    "get_rule",
    "history",
    "import_rules",
    "restore_version",
    "seed_if_empty",
    "set_enabled",
    "update_rule",
]

logger = logging.getLogger(__name__)


class RuleNotFound(LookupError):
    """No rule (or rule version) of that name."""


class RuleExists(ValueError):
    """A rule of that name exists already."""


@dataclass(frozen=True, slots=True)
class StoredRule:
    """One version of a rule as stored, with the parsed rule."""

    rule_id: int
    version_id: int
    version: int
    current_version: int
    rule: Rule
    action: str
    author: str
    reason: str
    created_at: dt.datetime

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def is_current(self) -> bool:
        return self.version == self.current_version


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What :func:`import_rules` did, by rule name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def body_of(rule: Rule) -> dict[str, Any]:
    """The JSON body stored for a rule (defaults kept, so a version means what it meant then)."""
    return rule.model_dump(mode="json", by_alias=True, exclude_none=True)


def _stored(row: RuleVersion, rule_row: RoutingRule) -> StoredRule:
    return StoredRule(
        rule_id=rule_row.id,
        version_id=row.id,
        version=row.version,
        current_version=rule_row.current_version,
        rule=parse_rule(row.body, path=f"{rule_row.name}@v{row.version}"),
        action=row.action,
        author=row.author,
        reason=row.reason,
        created_at=row.created_at,
    )


def _current_rows(session: Session, *, name: str | None = None) -> list[tuple[RuleVersion, RoutingRule]]:
    statement = (
        select(RuleVersion, RoutingRule)
        .join(RoutingRule, RoutingRule.id == RuleVersion.rule_fk)
        .where(RuleVersion.version == RoutingRule.current_version, RoutingRule.deleted_at.is_(None))
        .order_by(RoutingRule.name)
    )
    if name is not None:
        statement = statement.where(RoutingRule.name == name)
    return [(row[0], row[1]) for row in session.execute(statement).all()]


def current_rules(*, session: Session) -> list[StoredRule]:
    """The current version of every rule that is not deleted (enabled or not), by name.

    A stored body that no longer validates (the rule language got stricter) is left out and
    logged; :func:`history` still shows it.
    """
    rules = []
    for row, rule_row in _current_rows(session):
        try:
            rules.append(_stored(row, rule_row))
        except RuleInvalid as exc:
            logger.error(
                "stored rule is invalid, skipped",
                extra={"rule": rule_row.name, "version": row.version, "error": str(exc)},
            )
    return rules


def get_rule(*, session: Session, name: str) -> StoredRule | None:
    """The current version of the rule ``name``, or None (deleted rules included as None)."""
    rows = _current_rows(session, name=name)
    return _stored(*rows[0]) if rows else None


def history(*, session: Session, name: str) -> list[StoredRule]:
    """Every version of the rule ``name``, oldest first.

    Raises
    ------
    RuleNotFound
        When no rule has that name.
    """
    rule_row = _rule_row(session, name)
    rows = session.scalars(
        select(RuleVersion).where(RuleVersion.rule_fk == rule_row.id).order_by(RuleVersion.version)
    ).all()
    return [_stored(row, rule_row) for row in rows]


def _rule_row(session: Session, name: str, *, lock: bool = False) -> RoutingRule:
    statement = select(RoutingRule).where(RoutingRule.name == name)
    if lock:
        statement = statement.with_for_update()
    rule_row = session.scalars(statement).one_or_none()
    if rule_row is None:
        raise RuleNotFound(f"no rule named {name!r}")
    return rule_row


def _add_version(
    session: Session, rule_row: RoutingRule, rule: Rule, *, action: str, author: str, reason: str
) -> StoredRule:
    if not author.strip():
        raise ValueError("author must not be empty: every rule change says who made it")
    latest = session.scalar(select(func.max(RuleVersion.version)).where(RuleVersion.rule_fk == rule_row.id)) or 0
    row = RuleVersion(
        rule_fk=rule_row.id,
        version=latest + 1,
        body=body_of(rule),
        enabled=rule.enabled,
        action=action,
        author=author,
        reason=reason,
    )
    session.add(row)
    rule_row.current_version = row.version
    session.flush()
    session.refresh(row)
    logger.info("rule version saved", extra={"rule": rule.name, "version": row.version, "rule_action": action})
    return _stored(row, rule_row)


def create_rule(*, session: Session, rule: Rule, author: str, reason: str = "", action: str = "created") -> StoredRule:
    """Save a new rule as version 1 (or, for a deleted rule's name, as its next version).

    Raises
    ------
    RuleExists
        When a rule of that name exists and is not deleted.
    """
    rule_row = session.scalars(select(RoutingRule).where(RoutingRule.name == rule.name).with_for_update()).one_or_none()
    if rule_row is not None and rule_row.deleted_at is None:
        raise RuleExists(f"a rule named {rule.name!r} exists already (update it instead)")
    if rule_row is None:
        rule_row = RoutingRule(name=rule.name, current_version=0)
        session.add(rule_row)
        session.flush()
    rule_row.deleted_at = None
    return _add_version(session, rule_row, rule, action=action, author=author, reason=reason)


def update_rule(*, session: Session, rule: Rule, author: str, reason: str = "") -> StoredRule:
    """Save ``rule`` as the next version of the rule of the same name.

    Raises
    ------
    RuleNotFound
        When no (undeleted) rule has that name.
    """
    rule_row = _rule_row(session, rule.name, lock=True)
    if rule_row.deleted_at is not None:
        raise RuleNotFound(f"rule {rule.name!r} was deleted (create it again)")
    return _add_version(session, rule_row, rule, action="updated", author=author, reason=reason)


def set_enabled(*, session: Session, name: str, enabled: bool, author: str, reason: str = "") -> StoredRule:
    """Enable or disable a rule: a new version with ``enabled`` changed."""
    current = get_rule(session=session, name=name)
    if current is None:
        raise RuleNotFound(f"no rule named {name!r}")
    rule = current.rule.model_copy(update={"enabled": enabled})
    rule_row = _rule_row(session, name, lock=True)
    action = "enabled" if enabled else "disabled"
    return _add_version(session, rule_row, rule, action=action, author=author, reason=reason)


def restore_version(*, session: Session, name: str, version: int, author: str, reason: str = "") -> StoredRule:
    """Make an earlier version current again, as a new version with the same body.

    Raises
    ------
    RuleNotFound
        When the rule or that version does not exist.
    """
    rule_row = _rule_row(session, name, lock=True)
    row = session.scalars(
        select(RuleVersion).where(RuleVersion.rule_fk == rule_row.id, RuleVersion.version == version)
    ).one_or_none()
    if row is None:
        raise RuleNotFound(f"rule {name!r} has no version {version}")
    rule = parse_rule(row.body, path=f"{name}@v{version}")
    rule_row.deleted_at = None
    why = reason or f"restored version {version}"
    return _add_version(session, rule_row, rule, action="restored", author=author, reason=why)


def delete_rule(*, session: Session, name: str, author: str, reason: str = "") -> StoredRule:
    """Delete a rule: a last, disabled version is recorded and the rule stops routing."""
    current = get_rule(session=session, name=name)
    if current is None:
        raise RuleNotFound(f"no rule named {name!r}")
    rule_row = _rule_row(session, name, lock=True)
    stored = _add_version(
        session, rule_row, current.rule.model_copy(update={"enabled": False}), action="deleted", author=author,
        reason=reason,
    )
    rule_row.deleted_at = func.now()
    session.flush()
    return stored


def import_rules(
    *, session: Session, rules: Sequence[Rule], author: str, reason: str = "", replace: bool = False
) -> ImportSummary:
    """Bring the database in line with ``rules``: create new names, version changed ones.

    Parameters
    ----------
    rules
        Validated rules (e.g. from :func:`~dicomnode.routing.rules.load_rules`).
    replace
        Also delete the rules that are not in ``rules``.

    Returns
    -------
    ImportSummary
        The names created, updated (a new version), unchanged and deleted.
    """
    summary = ImportSummary()
    existing = {stored.name: stored for stored in current_rules(session=session)}
    for rule in rules:
        stored = existing.get(rule.name)
        if stored is None:
            create_rule(session=session, rule=rule, author=author, reason=reason, action="imported")
            summary.created.append(rule.name)
        elif body_of(stored.rule) == body_of(rule):
            summary.unchanged.append(rule.name)
        else:
            update_rule(session=session, rule=rule, author=author, reason=reason)
            summary.updated.append(rule.name)
    if replace:
        wanted = {rule.name for rule in rules}
        for name in sorted(set(existing) - wanted):
            delete_rule(session=session, name=name, author=author, reason=reason or "not in the imported rules")
            summary.deleted.append(name)
    return summary


def seed_if_empty(*, session: Session, path: Path, author: str = "dicomnode") -> int:
    """Load the rules file into an empty rule table (the first start); returns how many were loaded.

    A missing file loads nothing.

    Raises
    ------
    RuleInvalid
        When the file holds an invalid rule (with the path and reason of each error).
    """
    if session.scalar(select(func.count()).select_from(RoutingRule)):
        return 0
    if not path.is_file():
        logger.info("no rules file to seed from", extra={"path": str(path)})
        return 0
    try:
        rules = load_rules(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RuleInvalid([RuleError("rules", f"{path} is not UTF-8 text: {exc}")]) from None
    summary = import_rules(session=session, rules=rules, author=author, reason=f"seeded from {path}")
    logger.info("rules seeded", extra={"path": str(path), "rules": len(summary.created)})
    return len(summary.created)


def export_rules(*, session: Session) -> str:
    """The current rules as YAML, for ``dicomnode rules export`` and ``rules import`` back."""
    return dump_rules(stored.rule for stored in current_rules(session=session))
