"""Read queries over the index for DICOMweb: QIDO-RS matching and WADO-RS instance lookups.

Everything is answered from the index tables; no file is opened here. Matching follows
PS3.4 C.2.2.2 as PS3.18 10.6.1.3 asks: single value and wildcard (``*``, ``?``) matching,
UID list matching, date and time range matching, and universal matching for empty values.
Person names match case-insensitively (PS3.4 C.2.2.2.1 allows it for PN); with fuzzy
matching a name matches when any of its components starts with the value.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, TypeAlias

from sqlalchemy import ColumnElement, Select, and_, func, literal, select
from sqlalchemy.orm import QueryableAttribute, Session, aliased

from dicomnode.db.models import Instance, Patient, Series, Study
from dicomnode.store import paths

_Column: TypeAlias = ColumnElement[Any] | QueryableAttribute[Any]
_Select: TypeAlias = Select[*tuple[Any, ...]]


class InvalidQuery(ValueError):
    """A matching value breaks the syntax its attribute's matching type allows."""


class Level(IntEnum):
    """Query/retrieve levels, ordered from top to bottom (PS3.4 C.6.2 study root)."""

    STUDY = 1
    SERIES = 2
    IMAGE = 3


class Matching(StrEnum):
    """How an attribute is matched (PS3.4 C.2.2.2); ``RETURN`` keys are only returned."""

    UID = "uid"  # UID list matching
    TEXT = "text"  # single value and wildcard matching, case-sensitive
    NAME = "name"  # person name: wildcard, case-insensitive, fuzzy on request
    DATE = "date"  # single date or range
    TIME = "time"  # single time or range
    INTEGER = "integer"  # single value
    CODES = "codes"  # ModalitiesInStudy: any of the listed values
    RETURN = "return"  # not matchable here; returned only


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute the index can match on or return."""

    keyword: str
    level: Level
    column: _Column
    matching: Matching


# Study counts as correlated subqueries over an alias, so they also work where series is joined.
_in_study = aliased(Series)
_study_series = (
    select(func.count(_in_study.id)).where(_in_study.study_fk == Study.id).correlate(Study).scalar_subquery()
)
_study_instances = (
    select(func.coalesce(func.sum(_in_study.instance_count), 0))
    .where(_in_study.study_fk == Study.id)
    .correlate(Study)
    .scalar_subquery()
)

_ATTRIBUTES = (
    # Patient attributes are study-level keys in the study root model (PS3.4 C.6.2.1.2).
    Attribute("PatientName", Level.STUDY, Patient.patient_name, Matching.NAME),
    Attribute("PatientID", Level.STUDY, Patient.patient_id, Matching.TEXT),
    Attribute("IssuerOfPatientID", Level.STUDY, Patient.issuer_of_patient_id, Matching.TEXT),
    Attribute("PatientBirthDate", Level.STUDY, Patient.patient_birth_date, Matching.DATE),
    Attribute("PatientSex", Level.STUDY, Patient.patient_sex, Matching.TEXT),
    Attribute("StudyInstanceUID", Level.STUDY, Study.study_instance_uid, Matching.UID),
    Attribute("StudyDate", Level.STUDY, Study.study_date, Matching.DATE),
    Attribute("StudyTime", Level.STUDY, Study.study_time, Matching.TIME),
    Attribute("AccessionNumber", Level.STUDY, Study.accession_number, Matching.TEXT),
    Attribute("StudyID", Level.STUDY, Study.study_id, Matching.TEXT),
    Attribute("StudyDescription", Level.STUDY, Study.study_description, Matching.TEXT),
    Attribute("ReferringPhysicianName", Level.STUDY, Study.referring_physician_name, Matching.NAME),
    Attribute("ModalitiesInStudy", Level.STUDY, Study.modalities_in_study, Matching.CODES),
    Attribute("NumberOfStudyRelatedSeries", Level.STUDY, _study_series, Matching.RETURN),
    Attribute("NumberOfStudyRelatedInstances", Level.STUDY, _study_instances, Matching.RETURN),
    Attribute("SeriesInstanceUID", Level.SERIES, Series.series_instance_uid, Matching.UID),
    Attribute("Modality", Level.SERIES, Series.modality, Matching.TEXT),
    Attribute("SeriesNumber", Level.SERIES, Series.series_number, Matching.INTEGER),
    Attribute("SeriesDescription", Level.SERIES, Series.series_description, Matching.TEXT),
    Attribute("BodyPartExamined", Level.SERIES, Series.body_part_examined, Matching.TEXT),
    Attribute("NumberOfSeriesRelatedInstances", Level.SERIES, Series.instance_count, Matching.RETURN),
    Attribute("SOPInstanceUID", Level.IMAGE, Instance.sop_instance_uid, Matching.UID),
    Attribute("SOPClassUID", Level.IMAGE, Instance.sop_class_uid, Matching.UID),
    Attribute("InstanceNumber", Level.IMAGE, Instance.instance_number, Matching.INTEGER),
    Attribute("Rows", Level.IMAGE, Instance.rows, Matching.INTEGER),
    Attribute("Columns", Level.IMAGE, Instance.columns, Matching.INTEGER),
    Attribute("NumberOfFrames", Level.IMAGE, Instance.number_of_frames, Matching.INTEGER),
)
#: keyword -> attribute, for every attribute the index holds.
ATTRIBUTES: Mapping[str, Attribute] = {a.keyword: a for a in _ATTRIBUTES}


def attributes_at(level: Level) -> list[Attribute]:
    """The attributes a query at ``level`` can return (its own level and the levels above)."""
    return [a for a in _ATTRIBUTES if a.level <= level]


@dataclass(frozen=True, slots=True)
class Query:
    """A QIDO-RS search, already split into matching values by keyword.

    ``match`` maps keywords of :data:`ATTRIBUTES` to the DICOM matching value as given
    (``"Doe*"``, ``"20200101-20201231"``, UID lists separated by ``\\`` or ``,``); an empty
    value is universal matching. ``study_instance_uid`` and ``series_instance_uid`` come from
    the target resource's path.
    """

    level: Level
    match: Mapping[str, str]
    fuzzy: bool = False
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """Where an instance's file is and what WADO-RS needs to know before opening it."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    file_path: str
    number_of_frames: int | None


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in re.split(r"[\\,]", value) if v.strip()]


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _regex_pattern(value: str) -> str:
    """A PostgreSQL ARE for ``value`` with * and ? as wildcards; other characters literal."""
    parts = []
    for char in value:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        elif char.isalnum():
            parts.append(char)
        else:
            parts.append("\\" + char)  # a backslash before a non-alphanumeric is a literal
    return "".join(parts)


def _text(column: _Column, value: str) -> ColumnElement[bool]:
    if "*" in value or "?" in value:
        return column.like(_like_pattern(value), escape="\\")
    return column == value


def _name(column: _Column, value: str, *, fuzzy: bool) -> ColumnElement[bool]:
    if fuzzy:
        # Any component (family, given, middle..., or a word of one) starting with the value.
        return column.regexp_match("(^|[\\^= ])" + _regex_pattern(value), flags="i")
    return column.ilike(_like_pattern(value), escape="\\")


def _date(value: str, keyword: str) -> dt.date:
    try:
        return dt.datetime.strptime(value.replace("-", "").replace(".", ""), "%Y%m%d").date()
    except ValueError:
        raise InvalidQuery(f"{keyword}={value!r}: a date is YYYYMMDD (PS3.5 DA)") from None


def _date_range(column: _Column, value: str, keyword: str) -> ColumnElement[bool]:
    if value.count("-") > 1 or value == "-":
        raise InvalidQuery(f"{keyword}={value!r}: use YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-")
    if "-" not in value:
        return column == _date(value, keyword)
    low, high = value.split("-")
    conditions = []
    if low:
        conditions.append(column >= _date(low, keyword))
    if high:
        conditions.append(column <= _date(high, keyword))
    return and_(*conditions)


_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def _time_bound(value: str, keyword: str, *, fill: str) -> str:
    value = value.replace(":", "")
    if not _TIME.match(value):
        raise InvalidQuery(f"{keyword}={value!r}: a time is HH[MM[SS[.FFFFFF]]] (PS3.5 TM)")
    return value.ljust(6, fill)[:6] if "." not in value else value


def _time_range(column: _Column, value: str, keyword: str) -> ColumnElement[bool]:
    if value.count("-") > 1 or value == "-":
        raise InvalidQuery(f"{keyword}={value!r}: use HHMMSS, HHMMSS-HHMMSS, -HHMMSS or HHMMSS-")
    low, _, high = value.partition("-") if "-" in value else (value, "", value)
    conditions = [column != ""]
    if low:
        conditions.append(column >= _time_bound(low, keyword, fill="0"))
    if high:
        conditions.append(func.substr(column, 1, 6) <= _time_bound(high, keyword, fill="9"))
    return and_(*conditions)


def _integer(column: _Column, value: str, keyword: str) -> ColumnElement[bool]:
    try:
        return column == int(value)
    except ValueError:
        raise InvalidQuery(f"{keyword}={value!r}: an integer is expected") from None


def _uids(column: _Column, value: str, keyword: str) -> ColumnElement[bool]:
    uids = _split_list(value)
    bad = [u for u in uids if not paths.is_valid_uid(u)]
    if bad:
        raise InvalidQuery(f"{keyword}: {bad[0][:80]!r} is not a valid UID (PS3.5 9.1)")
    return column.in_(uids)


def _condition(attribute: Attribute, value: str, *, fuzzy: bool) -> ColumnElement[bool]:
    column, keyword = attribute.column, attribute.keyword
    match attribute.matching:
        case Matching.UID:
            return _uids(column, value, keyword)
        case Matching.TEXT:
            return _text(column, value)
        case Matching.NAME:
            return _name(column, value, fuzzy=fuzzy)
        case Matching.DATE:
            return _date_range(column, value, keyword)
        case Matching.TIME:
            return _time_range(column, value, keyword)
        case Matching.INTEGER:
            return _integer(column, value, keyword)
        case Matching.CODES:
            return column.overlap(literal(_split_list(value), column.type))
    raise InvalidQuery(f"{keyword} is a return key and cannot be matched")


def matchable(keyword: str, level: Level) -> bool:
    """True when the index can match ``keyword`` in a query at ``level``."""
    attribute = ATTRIBUTES.get(keyword)
    return attribute is not None and attribute.level <= level and attribute.matching is not Matching.RETURN


def statement(query: Query) -> _Select:
    """The SELECT for ``query``; rows are labelled with keywords of :data:`ATTRIBUTES`.

    Raises
    ------
    InvalidQuery
        When a key cannot be matched at the query's level or its value breaks the syntax.
    """
    level = query.level
    columns = [a.column.label(a.keyword) for a in attributes_at(level)]
    stmt: _Select
    order: list[Any]
    if level is Level.STUDY:
        stmt = select(*columns).select_from(Study).join(Patient, Patient.id == Study.patient_fk)
        order = [Study.study_date.desc().nulls_last(), Study.study_time.desc(), Study.id.desc()]
    elif level is Level.SERIES:
        stmt = (
            select(*columns)
            .select_from(Series)
            .join(Study, Study.id == Series.study_fk)
            .join(Patient, Patient.id == Study.patient_fk)
        )
        order = [Study.id.desc(), Series.series_number.asc().nulls_last(), Series.id]
    else:
        stmt = (
            select(*columns)
            .select_from(Instance)
            .join(Series, Series.id == Instance.series_fk)
            .join(Study, Study.id == Series.study_fk)
            .join(Patient, Patient.id == Study.patient_fk)
        )
        order = [Series.id, Instance.instance_number.asc().nulls_last(), Instance.id]
    if query.study_instance_uid is not None:
        stmt = stmt.where(Study.study_instance_uid == query.study_instance_uid)
    if query.series_instance_uid is not None:
        stmt = stmt.where(Series.series_instance_uid == query.series_instance_uid)
    for keyword, value in query.match.items():
        if not matchable(keyword, level):
            raise InvalidQuery(f"{keyword} cannot be matched in a {level.name.lower()}-level query")
        value = value.strip()
        if value and value != "*":  # empty or a lone * is universal matching (PS3.4 C.2.2.2.3)
            stmt = stmt.where(_condition(ATTRIBUTES[keyword], value, fuzzy=query.fuzzy))
    if query.limit is not None and query.limit < 0 or query.offset < 0:
        raise InvalidQuery("limit and offset must not be negative")
    stmt = stmt.order_by(*order).offset(query.offset or None)
    if query.limit is not None:
        stmt = stmt.limit(query.limit)
    return stmt


def search(*, session: Session, query: Query) -> list[dict[str, Any]]:
    """Run a QIDO-RS search against the index.

    Returns
    -------
    list of dict
        One mapping per match, keyword -> value as stored (dates as ``datetime.date``).

    Raises
    ------
    InvalidQuery
        See :func:`statement`.
    """
    return [dict(row._mapping) for row in session.execute(statement(query))]


def exists(*, session: Session, study_instance_uid: str, series_instance_uid: str | None = None) -> bool:
    """True when the study (and the series in it, when given) is in the index."""
    stmt = select(Study.id).where(Study.study_instance_uid == study_instance_uid)
    if series_instance_uid is not None:
        stmt = (
            select(Series.id)
            .join(Study, Study.id == Series.study_fk)
            .where(Study.study_instance_uid == study_instance_uid)
            .where(Series.series_instance_uid == series_instance_uid)
        )
    return session.execute(stmt.limit(1)).first() is not None


def locate(
    *,
    session: Session,
    study_instance_uid: str,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> list[StoredInstance]:
    """The stored instances of a study, a series of it, or one instance of that series.

    Ordered by series then instance number, as a viewer loads them. Empty when nothing
    with these UIDs (in this hierarchy) is indexed.
    """
    stmt = (
        select(
            Study.study_instance_uid,
            Series.series_instance_uid,
            Instance.sop_instance_uid,
            Instance.sop_class_uid,
            Instance.transfer_syntax_uid,
            Instance.file_path,
            Instance.number_of_frames,
        )
        .select_from(Instance)
        .join(Series, Series.id == Instance.series_fk)
        .join(Study, Study.id == Series.study_fk)
        .where(Study.study_instance_uid == study_instance_uid)
    )
    if series_instance_uid is not None:
        stmt = stmt.where(Series.series_instance_uid == series_instance_uid)
    if sop_instance_uid is not None:
        stmt = stmt.where(Instance.sop_instance_uid == sop_instance_uid)
    stmt = stmt.order_by(
        Series.series_number.asc().nulls_last(), Series.id, Instance.instance_number.asc().nulls_last(), Instance.id
    )
    return [StoredInstance(*row) for row in session.execute(stmt)]


__all__: Sequence[str] = [
    "ATTRIBUTES",
    "Attribute",
    "InvalidQuery",
    "Level",
    "Matching",
    "Query",
    "StoredInstance",
    "attributes_at",
    "exists",
    "locate",
    "matchable",
    "search",
    "statement",
]
