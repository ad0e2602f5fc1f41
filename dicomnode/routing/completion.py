"""Series completion: which series have gone quiet, and which rules are due on them.

A series is complete for a rule when no instance has arrived for the rule's ``quiet_seconds``
(``jobs.quiet_seconds`` when the rule sets none). Arrivals come in *generations*: the instances
received up to a moment; an instance arriving after a generation was routed opens the next one,
and rules with ``rerun_on_new_instances`` (the default) run again on it. ``series_completion``
records, per series, the generation and the ``last_received_at`` it covers, and ``routed_at``
once every matching rule has had its quiet period.

:func:`find_quiet_series` locks the series rows it returns (``FOR UPDATE OF series SKIP LOCKED``)
so that two sweeps never route one series twice and an instance arriving meanwhile waits for the
sweep's commit (and then opens a new generation). The caller inserts the runs and commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dicomnode.db.models import SeriesCompletion
from dicomnode.routing import match
from dicomnode.routing.versions import StoredRule

__all__ = [
    "Due",
    "QuietSeries",
    "SeriesVerdict",
    "due_rules",
    "explain_series",
    "find_quiet_series",
    "mark_routed",
    "read_attributes",
]

logger = logging.getLogger(__name__)

# The scan is over series joined to series_completion (one row per series each). It costs a
# join over the whole index each sweep: fine for a node's archive of some 10^5 series; beyond
# that, an "unrouted" flag written by ingest (one column, indexed) would make it an index scan.
_QUIET = text(
    """
    SELECT s.id, s.series_instance_uid, st.study_instance_uid, s.last_received_at, s.instance_count,
           EXTRACT(EPOCH FROM (now() - s.last_received_at)) AS quiet_for,
           c.generation, c.last_received_at AS covered, c.routed_at,
           COALESCE(s.source_run_fk,
                    (SELECT max(o.run_fk) FROM run_output o WHERE o.series_instance_uid = s.series_instance_uid))
    FROM series s
    JOIN study st ON st.id = s.study_fk
    LEFT JOIN series_completion c ON c.series_fk = s.id
    WHERE s.last_received_at <= now() - make_interval(secs => :min_quiet)
      AND (c.series_fk IS NULL OR c.routed_at IS NULL OR c.last_received_at < s.last_received_at)
    -- series seen before and still waiting (a longer quiet period, an unreadable file) go last,
    -- so however many of them there are, newly quiet series are never starved
    ORDER BY COALESCE(c.routed_at IS NULL AND c.last_received_at >= s.last_received_at, false), s.last_received_at
    LIMIT :limit
    FOR UPDATE OF s SKIP LOCKED
    """
)

_REPRESENTATIVE = text(
    """
    SELECT file_path, calling_ae_title, peer_address FROM instance
    WHERE series_fk = :series_id
    ORDER BY instance_number NULLS LAST, id
    LIMIT 1
    """
)

_PRODUCING_RULE = text(
    """
    SELECT rv.rule_fk FROM run JOIN rule_version rv ON rv.id = run.rule_version_fk WHERE run.id = :run_id
    """
)


@dataclass(frozen=True, slots=True)
class QuietSeries:
    """A series quiet long enough to route, locked until the caller's transaction ends."""

    series_id: int
    series_instance_uid: str
    study_instance_uid: str
    last_received_at: dt.datetime
    #: Seconds since the last instance arrived (when the query ran).
    quiet_for: float
    #: The generation being routed (1 for the first arrivals).
    generation: int
    instance_count: int
    #: When we made the series: the run that made it; else None.
    produced_by_run_id: int | None
    #: The rule (``rule.id``) of that run, so a rule never routes its own outputs.
    produced_by_rule_id: int | None
    #: What rules test; None when the series has no instance, or none could be read.
    attrs: match.SeriesAttributes | None
    #: An instance is indexed but its file could not be read (the sweep tries again later).
    unreadable: bool = False


@dataclass(frozen=True, slots=True)
class Due:
    """The rules due on a quiet series now, and whether any matching rule still waits."""

    ready: tuple[StoredRule, ...]
    waiting: tuple[StoredRule, ...]


def read_attributes(
    *, session: Session, store_root: Path, series_id: int, instance_count: int
) -> match.SeriesAttributes | None:
    """What a rule can test about a series: one instance's header and the arrival facts.

    Returns None when the series has no instance.

    Raises
    ------
    OSError
        When the instance's file cannot be read or decoded (missing, truncated, not DICOM).
    """
    row = session.execute(_REPRESENTATIVE, {"series_id": series_id}).first()
    if row is None:
        return None
    path = store_root / row[0]
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise OSError(f"{path} is not a readable DICOM file: {exc}") from exc
    return match.attrs_from_dataset(
        ds, instance_count=instance_count, calling_ae_title=row[1] or None, peer_host=row[2] or None
    )


def find_quiet_series(
    *, session: Session, store_root: Path, min_quiet_seconds: float, limit: int = 100
) -> list[QuietSeries]:
    """Lock and return the series quiet for at least ``min_quiet_seconds`` and not routed yet.

    A series that received instances since its last routed generation starts the next
    generation here (its ``series_completion`` row is written in the caller's transaction).

    Parameters
    ----------
    session
        The caller's session; the rows stay locked until it commits or rolls back.
    store_root
        The store, to read one header per series.
    min_quiet_seconds
        The shortest quiet period of any rule (and of the default).
    limit
        Most series returned; the oldest quiet ones first.
    """
    rows = session.execute(_QUIET, {"min_quiet": float(min_quiet_seconds), "limit": limit}).all()
    found = []
    for row in rows:
        series_id, series_uid, study_uid, last_received_at, instance_count, quiet_for = row[:6]
        generation, covered, routed_at, produced_by = row[6:]
        if generation is None or covered < last_received_at:
            generation = (generation or 0) + 1
            session.execute(
                insert(SeriesCompletion)
                .values(series_fk=series_id, generation=generation, last_received_at=last_received_at, routed_at=None)
                .on_conflict_do_update(
                    index_elements=[SeriesCompletion.series_fk],
                    set_={"generation": generation, "last_received_at": last_received_at, "routed_at": None},
                )
            )
        produced_by_rule = (
            session.execute(_PRODUCING_RULE, {"run_id": produced_by}).scalar() if produced_by is not None else None
        )
        try:
            attrs = read_attributes(
                session=session, store_root=store_root, series_id=series_id, instance_count=instance_count
            )
            unreadable = False
        except OSError as exc:
            logger.warning("series header unreadable, routing it later", extra={"error": str(exc)})
            attrs, unreadable = None, True
        found.append(
            QuietSeries(
                series_id=series_id,
                series_instance_uid=series_uid,
                study_instance_uid=study_uid,
                last_received_at=last_received_at,
                quiet_for=float(quiet_for),
                generation=generation,
                instance_count=instance_count,
                produced_by_run_id=produced_by,
                produced_by_rule_id=produced_by_rule,
                attrs=attrs,
                unreadable=unreadable,
            )
        )
    return found


def due_rules(series: QuietSeries, rules: Sequence[StoredRule], *, default_quiet_seconds: int) -> Due:
    """Which enabled rules match the series and have had their quiet period.

    Our own outputs are routed only by rules with ``route_own_outputs``, and never by the rule
    that made them. Rules come back highest priority first.
    """
    if series.attrs is None:
        return Due(ready=(), waiting=())
    ready: list[StoredRule] = []
    waiting: list[StoredRule] = []
    for stored in sorted(rules, key=lambda s: (-s.rule.priority, s.rule.name)):
        rule = stored.rule
        if not rule.enabled:
            continue
        if series.produced_by_run_id is not None and (
            not rule.route_own_outputs or series.produced_by_rule_id == stored.rule_id
        ):
            continue
        if not match.match(rule, series.attrs).ok:
            continue
        quiet = rule.quiet_seconds or default_quiet_seconds
        (ready if series.quiet_for >= quiet else waiting).append(stored)
    return Due(ready=tuple(ready), waiting=tuple(waiting))


def mark_routed(*, session: Session, series_id: int) -> None:
    """Record that every matching rule has had its turn on the series' current generation."""
    session.execute(
        text("UPDATE series_completion SET routed_at = now() WHERE series_fk = :series_id"), {"series_id": series_id}
    )


@dataclass(frozen=True, slots=True)
class SeriesVerdict:
    """A dry run of one rule on one stored series: would it match, and each fact it rested on."""

    rule: StoredRule
    ok: bool
    reasons: tuple[str, ...]
    #: Why the rule would not route the series even though it matches (disabled, our output).
    blocked: str = ""


def explain_series(
    *, session: Session, store_root: Path, series_instance_uid: str, rules: Sequence[StoredRule]
) -> list[SeriesVerdict]:
    """Evaluate ``rules`` (stored or proposed) against a stored series, with the matcher's reasons.

    The reasons may quote attribute values (a rule on PatientName quotes the name): show them to
    admins, never log them.

    Raises
    ------
    LookupError
        When the series is not stored, has no instances, or its instance cannot be read.
    """
    row = session.execute(
        text(
            "SELECT s.id, s.instance_count, COALESCE(s.source_run_fk, (SELECT max(o.run_fk) FROM run_output o "
            "WHERE o.series_instance_uid = s.series_instance_uid)) FROM series s WHERE s.series_instance_uid = :uid"
        ),
        {"uid": series_instance_uid},
    ).first()
    if row is None:
        raise LookupError(f"no series {series_instance_uid} in the index")
    series_id, instance_count, produced_by = row
    try:
        attrs = read_attributes(
            session=session, store_root=store_root, series_id=series_id, instance_count=instance_count
        )
    except OSError as exc:
        raise LookupError(f"series {series_instance_uid}: {exc}") from exc
    if attrs is None:
        raise LookupError(f"series {series_instance_uid} has no instances")
    producing_rule = (
        session.execute(_PRODUCING_RULE, {"run_id": produced_by}).scalar() if produced_by is not None else None
    )
    verdicts = []
    for stored in rules:
        result = match.match(stored.rule, attrs)
        blocked = ""
        if not stored.rule.enabled:
            blocked = "the rule is disabled"
        elif produced_by is not None and producing_rule == stored.rule_id:
            blocked = f"the series was made by this rule (run {produced_by})"
        elif produced_by is not None and not stored.rule.route_own_outputs:
            blocked = f"the series is our own output (run {produced_by}) and the rule does not set route_own_outputs"
        verdicts.append(SeriesVerdict(rule=stored, ok=result.ok, reasons=result.reasons, blocked=blocked))
    return verdicts
