"""Q/R key matching (PS3.4 C.2.2.2) as SQL conditions on the index columns.

- Universal (C.2.2.2.3): a zero-length key, or a value of only ``*``, matches everything.
- Single value (C.2.2.2.1): exact and case-sensitive; PN keys (PatientName,
  ReferringPhysicianName) match case-insensitively, as C.2.2.2.1 allows for PN.
- Wild card (C.2.2.2.4): ``*`` and ``?`` in text keys (CS, LO, PN, SH); not in UI, DA, TM or
  IS keys, where they are taken literally.
- List of UID (C.2.2.2.2): a UI key with several values matches any of them.
- Range (C.2.2.2.5): DA and TM keys accept ``A-B``, ``-B`` and ``A-``. A TM value matches at
  its own precision (``10`` is 10:00:00 to 10:59:59). DA and TM are matched independently:
  combined date-time matching needs Extended Negotiation, which we do not offer.
- Several values in any other key (e.g. ModalitiesInStudy ``CT\\MR``): undefined without
  Extended Negotiation (C.2.2.2.8 note 4); we match any of the values.
- Sequence keys (C.2.2.2.6) are not matched (see ``query``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from sqlalchemy import ColumnElement, Text, and_, any_, func, literal, or_, select

from dicomnode.db.models import Instance, Patient, Series, Study


class QueryRetrieveLevelValues(StrEnum):
    """Values of (0008,0052) Query/Retrieve Level, top to bottom."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


#: How deep each level is in the patient root hierarchy.
DEPTH: Mapping[QueryRetrieveLevelValues, int] = {
    QueryRetrieveLevelValues.PATIENT: 0,
    QueryRetrieveLevelValues.STUDY: 1,
    QueryRetrieveLevelValues.SERIES: 2,
    QueryRetrieveLevelValues.IMAGE: 3,
}


class InvalidIdentifier(ValueError):
    """The identifier cannot be answered: no or a wrong level, a missing unique key, a bad value.

    The message (for the peer's ErrorComment) may quote the value; ``keyword`` names the
    attribute without it, for logs that must stay free of PHI.
    """

    def __init__(self, message: str, *, keyword: str) -> None:
        super().__init__(message)
        self.keyword = keyword


class KeyKind(StrEnum):
    """How a key is matched."""

    TEXT = "text"  # single value or wild card, case-sensitive
    NAME = "name"  # PN: single value or wild card, case-insensitive
    UID = "uid"  # single value or list of UIDs
    DATE = "date"  # single value or range
    TIME = "time"  # single value or range, at the precision given
    NUMBER = "number"  # IS/US: single value
    CODES = "codes"  # a multi-valued CS column (ModalitiesInStudy): any value matches


@dataclass(frozen=True, slots=True)
class Attribute:
    """A key the index can match and return."""

    keyword: str
    #: The level it belongs to in the patient root model.
    entity: QueryRetrieveLevelValues
    column: Any
    kind: KeyKind


_L = QueryRetrieveLevelValues
ATTRIBUTES: Mapping[str, Attribute] = {
    a.keyword: a
    for a in (
        Attribute("PatientID", _L.PATIENT, Patient.patient_id, KeyKind.TEXT),
        Attribute("IssuerOfPatientID", _L.PATIENT, Patient.issuer_of_patient_id, KeyKind.TEXT),
        Attribute("PatientName", _L.PATIENT, Patient.patient_name, KeyKind.NAME),
        Attribute("PatientBirthDate", _L.PATIENT, Patient.patient_birth_date, KeyKind.DATE),
        Attribute("PatientSex", _L.PATIENT, Patient.patient_sex, KeyKind.TEXT),
        Attribute("StudyInstanceUID", _L.STUDY, Study.study_instance_uid, KeyKind.UID),
        Attribute("StudyDate", _L.STUDY, Study.study_date, KeyKind.DATE),
        Attribute("StudyTime", _L.STUDY, Study.study_time, KeyKind.TIME),
        Attribute("AccessionNumber", _L.STUDY, Study.accession_number, KeyKind.TEXT),
        Attribute("StudyID", _L.STUDY, Study.study_id, KeyKind.TEXT),
        Attribute("StudyDescription", _L.STUDY, Study.study_description, KeyKind.TEXT),
        Attribute("ReferringPhysicianName", _L.STUDY, Study.referring_physician_name, KeyKind.NAME),
        Attribute("ModalitiesInStudy", _L.STUDY, Study.modalities_in_study, KeyKind.CODES),
        Attribute("SeriesInstanceUID", _L.SERIES, Series.series_instance_uid, KeyKind.UID),
        Attribute("Modality", _L.SERIES, Series.modality, KeyKind.TEXT),
        Attribute("SeriesNumber", _L.SERIES, Series.series_number, KeyKind.NUMBER),
        Attribute("SeriesDescription", _L.SERIES, Series.series_description, KeyKind.TEXT),
        Attribute("BodyPartExamined", _L.SERIES, Series.body_part_examined, KeyKind.TEXT),
        Attribute("SOPInstanceUID", _L.IMAGE, Instance.sop_instance_uid, KeyKind.UID),
        Attribute("SOPClassUID", _L.IMAGE, Instance.sop_class_uid, KeyKind.UID),
        Attribute("InstanceNumber", _L.IMAGE, Instance.instance_number, KeyKind.NUMBER),
        Attribute("Rows", _L.IMAGE, Instance.rows, KeyKind.NUMBER),
        Attribute("Columns", _L.IMAGE, Instance.columns, KeyKind.NUMBER),
        Attribute("NumberOfFrames", _L.IMAGE, Instance.number_of_frames, KeyKind.NUMBER),
    )
}


@dataclass(frozen=True, slots=True)
class Condition:
    """One non-universal key: its attribute and its values (checked by ``condition``)."""

    attribute: Attribute
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        condition(self)  # an invalid value never makes a Condition


def key_values(element: DataElement) -> tuple[str, ...]:
    """A key's values as stripped strings; () means universal matching."""
    value = element.value
    if value is None or value == "" or element.VR == "SQ":
        return ()
    items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    texts = tuple(text for text in (str(item).strip() for item in items) if text)
    if not texts or any(text == "*" for text in texts):
        return ()
    return texts


_DATE_RE = re.compile(r"^\d{8}$")
_TIME_RE = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def _date(value: str, keyword: str) -> dt.date:
    if _DATE_RE.match(value):
        try:
            return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            pass
    raise InvalidIdentifier(f"{keyword} {value[:40]!r} is not a date (YYYYMMDD) or date range", keyword=keyword)


def _time_bounds(value: str, keyword: str) -> tuple[str, str]:
    """The HHMMSS bounds of a TM value at its own precision: '10' -> ('100000', '105959')."""
    if not _TIME_RE.match(value):
        raise InvalidIdentifier(f"{keyword} {value[:40]!r} is not a time (HHMMSS) or time range", keyword=keyword)
    digits = value.split(".", 1)[0]
    upper = digits + "595959"[len(digits) :]
    return digits.ljust(6, "0"), upper


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _text(attribute: Attribute, value: str) -> ColumnElement[bool]:
    column = attribute.column
    if attribute.kind is KeyKind.NAME:
        if _has_wildcard(value):
            return column.ilike(_like(value), escape="\\")  # type: ignore[no-any-return]
        return func.lower(column) == value.lower()
    if _has_wildcard(value):
        return column.like(_like(value), escape="\\")  # type: ignore[no-any-return]
    return column == value  # type: ignore[no-any-return]


def _codes(attribute: Attribute, value: str) -> ColumnElement[bool]:
    if _has_wildcard(value):
        code = func.unnest(attribute.column).table_valued("value").render_derived()
        return select(literal(1)).select_from(code).where(code.c.value.like(_like(value), escape="\\")).exists()
    return literal(value, Text) == any_(attribute.column)


def _range(value: str) -> tuple[str, str] | None:
    if "-" not in value:
        return None
    low, _, high = value.partition("-")
    return low.strip(), high.strip()


def _date_match(attribute: Attribute, value: str) -> ColumnElement[bool]:
    column, keyword = attribute.column, attribute.keyword
    bounds = _range(value)
    if bounds is None:
        return column == _date(value, keyword)  # type: ignore[no-any-return]
    low, high = bounds
    clauses = [column.is_not(None)]
    if low:
        clauses.append(column >= _date(low, keyword))
    if high:
        clauses.append(column <= _date(high, keyword))
    return and_(*clauses)


def _time_match(attribute: Attribute, value: str) -> ColumnElement[bool]:
    column, keyword = attribute.column, attribute.keyword
    bounds = _range(value)
    if bounds is None:
        lower, upper = _time_bounds(value, keyword)
    else:
        lower = _time_bounds(bounds[0], keyword)[0] if bounds[0] else "000000"
        upper = _time_bounds(bounds[1], keyword)[1] if bounds[1] else "999999"
    # Stored TM strings vary in precision (and old ones carry colons): compare as HHMMSS.
    digits = func.regexp_replace(func.split_part(column, ".", 1), "[^0-9]", "", "g")
    return and_(column != "", func.rpad(digits, 6, "0").between(lower, upper))


def _number(attribute: Attribute, value: str) -> ColumnElement[bool]:
    try:
        return attribute.column == int(value)  # type: ignore[no-any-return]
    except ValueError:
        message = f"{attribute.keyword} {value[:40]!r} is not an integer"
        raise InvalidIdentifier(message, keyword=attribute.keyword) from None


_MATCHERS = {
    KeyKind.TEXT: _text,
    KeyKind.NAME: _text,
    KeyKind.CODES: _codes,
    KeyKind.DATE: _date_match,
    KeyKind.TIME: _time_match,
    KeyKind.NUMBER: _number,
}


def condition(key: Condition) -> ColumnElement[bool]:
    """The WHERE clause for one key: any of its values matches.

    Raises
    ------
    InvalidIdentifier
        A value that cannot be matched for its VR (a DA that is not a date, an IS that is not
        an integer), naming the attribute.
    """
    attribute = key.attribute
    if attribute.kind is KeyKind.UID:
        return attribute.column.in_(key.values)  # type: ignore[no-any-return]
    matcher = _MATCHERS[attribute.kind]
    clauses = [matcher(attribute, value) for value in key.values]
    return clauses[0] if len(clauses) == 1 else or_(*clauses)


def where(keys: Sequence[Condition]) -> list[ColumnElement[bool]]:
    """The WHERE clauses for all keys (all must match)."""
    return [condition(key) for key in keys]
