"""Rule endpoints of the admin API: list, get, create, update, enable/disable, delete, versions,
restore, dry-run.

Each change is a new rule version (``routing.versions``) with the token's name as author and
the body's ``reason``, audited (``provenance.audit``) in the same transaction. The same service
functions back ``dicomnode rules``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomnode.db.models import Series
from dicomnode.provenance import audit
from dicomnode.routing import completion, versions
from dicomnode.routing.rules import Rule, RuleError, RuleInvalid, parse_rule
from dicomnode.web.admin import schemas
from dicomnode.web.admin.auth import AdminUser, require_token
from dicomnode.web.admin.schemas import ReasonBody, ReasonQuery
from dicomnode.web.deps import ServicesDep, SessionDep
from dicomnode.web.problem import not_found

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require_token)])


# --- rules ------------------------------------------------------------------------------------


def _rule_out(stored: versions.StoredRule) -> schemas.RuleOut:
    return schemas.RuleOut(
        name=stored.name, version=stored.version, enabled=stored.rule.enabled, priority=stored.rule.priority,
        action=stored.action, author=stored.author, reason=stored.reason, changed_at=stored.created_at,
        rule=versions.body_of(stored.rule),
    )


def _version_out(stored: versions.StoredRule) -> schemas.VersionOut:
    return schemas.VersionOut(
        version=stored.version, current=stored.is_current, action=stored.action, enabled=stored.rule.enabled,
        author=stored.author, reason=stored.reason, created_at=stored.created_at, rule=versions.body_of(stored.rule),
    )


def _parse(data: dict[str, Any], *, name: str | None = None) -> Rule:
    if name is not None:
        data = {"name": name, **data}
        if data["name"] != name:
            raise RuleInvalid(
                [RuleError("name", f"must be {name!r} as in the URL (a rule is not renamed: create a new one)")]
            )
    return parse_rule(data)


def _current(session: Session, name: str) -> versions.StoredRule:
    stored = versions.get_rule(session=session, name=name)
    if stored is None:
        raise not_found(f"rule {name!r}")
    return stored


def _audit(session: Session, user: str, action: str, name: str, reason: str, **detail: Any) -> None:
    audit.record(session=session, actor=user, action=action, target=f"rule:{name}", reason=reason, detail=detail)


@router.get("/rules", tags=["rules"])
def list_rules(session: SessionDep) -> list[schemas.RuleOut]:
    """Every rule that is not deleted, in its current version (enabled or not), by name."""
    return [_rule_out(stored) for stored in versions.current_rules(session=session)]


@router.post("/rules", status_code=201, tags=["rules"])
def create_rule(body: schemas.RuleEdit, session: SessionDep, user: AdminUser) -> schemas.RuleOut:
    """Create a rule (version 1). 422 with every error's path and reason; 409 when the name is taken."""
    rule = _parse(body.rule)
    stored = versions.create_rule(session=session, rule=rule, author=user, reason=body.reason)
    _audit(session, user, "rule.create", rule.name, body.reason, version=stored.version)
    session.commit()
    return _rule_out(stored)


@router.get("/rules/{name}", tags=["rules"])
def get_rule(name: str, session: SessionDep) -> schemas.RuleOut:
    """One rule in its current version."""
    return _rule_out(_current(session, name))


@router.put("/rules/{name}", tags=["rules"])
def update_rule(name: str, body: schemas.RuleEdit, session: SessionDep, user: AdminUser) -> schemas.RuleOut:
    """Replace a rule's content: a new version. The body's rule may leave out ``name``."""
    rule = _parse(body.rule, name=name)
    stored = versions.update_rule(session=session, rule=rule, author=user, reason=body.reason)
    _audit(session, user, "rule.update", name, body.reason, version=stored.version)
    session.commit()
    return _rule_out(stored)


@router.delete("/rules/{name}", tags=["rules"])
def delete_rule(name: str, session: SessionDep, user: AdminUser, reason: ReasonQuery = "") -> schemas.VersionOut:
    """Delete a rule: it stops routing; its versions stay for the runs that name them."""
    stored = versions.delete_rule(session=session, name=name, author=user, reason=reason)
    _audit(session, user, "rule.delete", name, reason, version=stored.version)
    session.commit()
    return _version_out(stored)


def _set_enabled(session: Session, user: str, name: str, enabled: bool, body: schemas.Reason | None) -> schemas.RuleOut:
    reason = body.reason if body is not None else ""
    stored = versions.set_enabled(session=session, name=name, enabled=enabled, author=user, reason=reason)
    _audit(session, user, "rule.enable" if enabled else "rule.disable", name, reason, version=stored.version)
    session.commit()
    return _rule_out(stored)


@router.post("/rules/{name}/disable", tags=["rules"])
def disable_rule(
    name: str, session: SessionDep, user: AdminUser, body: ReasonBody = None
) -> schemas.RuleOut:
    """Disable a rule (a new version with ``enabled: false``)."""
    return _set_enabled(session, user, name, False, body)


@router.post("/rules/{name}/enable", tags=["rules"])
def enable_rule(name: str, session: SessionDep, user: AdminUser, body: ReasonBody = None) -> schemas.RuleOut:
    """Enable a rule (a new version with ``enabled: true``)."""
    return _set_enabled(session, user, name, True, body)


@router.get("/rules/{name}/versions", tags=["rules"])
def list_versions(name: str, session: SessionDep) -> list[schemas.VersionOut]:
    """Every version of a rule, oldest first (deleted rules too)."""
    return [_version_out(stored) for stored in versions.history(session=session, name=name)]


@router.get("/rules/{name}/versions/{version}", tags=["rules"])
def get_version(name: str, version: int, session: SessionDep) -> schemas.VersionOut:
    """One version of a rule."""
    for stored in versions.history(session=session, name=name):
        if stored.version == version:
            return _version_out(stored)
    raise not_found(f"version {version} of rule {name!r}")


@router.post("/rules/{name}/versions/{version}/restore", tags=["rules"])
def restore_version(
    name: str, version: int, session: SessionDep, user: AdminUser, body: ReasonBody = None
) -> schemas.RuleOut:
    """Make an earlier version current again, recorded as a new version."""
    reason = body.reason if body is not None else ""
    stored = versions.restore_version(session=session, name=name, version=version, author=user, reason=reason)
    _audit(session, user, "rule.restore", name, reason, restored=version, version=stored.version)
    session.commit()
    return _rule_out(stored)


@router.post("/rules/dry-run", tags=["rules"])
def dry_run(body: schemas.DryRun, session: SessionDep, services: ServicesDep) -> schemas.DryRunOut:
    """Evaluate a saved or proposed rule against stored series: which match, and why or why not.

    Reasons quote attribute values (a rule on PatientName quotes names): they are for admins.
    """
    if body.name is not None:
        stored = _current(session, body.name)
    else:
        rule = _parse(body.rule or {})
        existing = versions.get_rule(session=session, name=rule.name)
        stored = versions.StoredRule(
            rule_id=existing.rule_id if existing else 0, version_id=0, version=0, current_version=0, rule=rule,
            action="proposed", author="", reason="", created_at=dt.datetime.now(dt.UTC),
        )
    uids = body.series_instance_uids
    if uids is None:
        uids = list(
            session.scalars(
                select(Series.series_instance_uid).order_by(Series.last_received_at.desc(), Series.id.desc())
                .limit(body.limit)
            ).all()
        )
    verdicts = []
    for uid in uids:
        try:
            (verdict,) = completion.explain_series(
                session=session, store_root=services.store_root, series_instance_uid=uid, rules=[stored]
            )
        except LookupError as exc:
            verdicts.append(schemas.SeriesVerdict(series_instance_uid=uid, matched=False, would_route=False,
                                                  error=str(exc)))
            continue
        verdicts.append(
            schemas.SeriesVerdict(
                series_instance_uid=uid, matched=verdict.ok, would_route=verdict.ok and not verdict.blocked,
                blocked=verdict.blocked, reasons=list(verdict.reasons),
            )
        )
    return schemas.DryRunOut(
        rule=stored.name, version=stored.version or None, proposed=body.name is None,
        matched=sum(v.matched for v in verdicts), series=verdicts,
    )
