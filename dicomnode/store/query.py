"""Query/Retrieve over the index: C-FIND identifiers in, matching identifiers or files out (PS3.4 C.4, C.6).

Matching itself (universal, single value, wild card, UID list, range) is ``store.matching``.
This module reads the identifier, decides which keys are matched and returned at its level,
and answers from the index, never from the files.

The query is hierarchical in the sense of PS3.4 C.4.1.3.1: keys of the query level and the
levels above it are matched; keys of levels below come back zero-length. Unique keys of the
levels above are not required (a STUDY query in the patient root model without PatientID is
answered, not refused). Keys the index cannot answer come back zero-length and are listed in
``FindQuery.unsupported``, for which the caller answers Pending 0xFF01 (C.4.1.1.4). Sequence
keys are not matched (C.2.2.2.6 allows an SCP not to) and come back as empty sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydicom import config as pydicom_config
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from sqlalchemy import RowMapping, Select, distinct, func, literal, select
from sqlalchemy.orm import Session, aliased

from dicomnode.db.models import Instance, Patient, Series, Study
from dicomnode.store import matching
from dicomnode.store.matching import DEPTH, InvalidIdentifier, QueryRetrieveLevelValues

__all__ = [
    "LEVELS",
    "UNIQUE_KEYS",
    "FindQuery",
    "InformationModel",
    "InvalidIdentifier",
    "QueryRetrieveLevelValues",
    "RetrieveItem",
    "find",
    "parse_find",
    "parse_retrieve",
    "retrieve",
]


class InformationModel(StrEnum):
    """The Q/R information models served (PS3.4 C.6.1 patient root, C.6.2 study root)."""

    PATIENT_ROOT = "PATIENT_ROOT"
    STUDY_ROOT = "STUDY_ROOT"


_L = QueryRetrieveLevelValues
LEVELS: Mapping[InformationModel, tuple[QueryRetrieveLevelValues, ...]] = {
    InformationModel.PATIENT_ROOT: (_L.PATIENT, _L.STUDY, _L.SERIES, _L.IMAGE),
    InformationModel.STUDY_ROOT: (_L.STUDY, _L.SERIES, _L.IMAGE),
}
#: The unique key of each level (PS3.4 C.6.1.1, C.6.2.1).
UNIQUE_KEYS: Mapping[QueryRetrieveLevelValues, str] = {
    _L.PATIENT: "PatientID",
    _L.STUDY: "StudyInstanceUID",
    _L.SERIES: "SeriesInstanceUID",
    _L.IMAGE: "SOPInstanceUID",
}


# Counts are correlated subqueries on aliases, so they also work in queries that join the
# same tables (a study count in a SERIES-level query).
def _patient_count(what: str) -> Any:
    study, series = aliased(Study), aliased(Series)
    statement: Select[Any]
    if what == "studies":
        statement = select(func.count(study.id))
    else:
        value = func.count(series.id) if what == "series" else func.coalesce(func.sum(series.instance_count), 0)
        statement = select(value).join(study, study.id == series.study_fk)
    return statement.where(study.patient_fk == Patient.id).correlate(Patient).scalar_subquery()


def _study_count(what: str) -> Any:
    series, instance = aliased(Series), aliased(Instance)
    statement: Select[Any]
    if what == "series":
        statement = select(func.count(series.id))
    elif what == "instances":
        statement = select(func.coalesce(func.sum(series.instance_count), 0))
    else:  # SOP classes
        statement = select(func.array_agg(distinct(instance.sop_class_uid))).join(
            series, series.id == instance.series_fk
        )
    return statement.where(series.study_fk == Study.id).correlate(Study).scalar_subquery()


#: Return-only keys computed from the index; a value given for one is not matched (0xFF01).
_COMPUTED: Mapping[str, tuple[QueryRetrieveLevelValues, Callable[[], Any]]] = {
    "NumberOfPatientRelatedStudies": (_L.PATIENT, lambda: _patient_count("studies")),
    "NumberOfPatientRelatedSeries": (_L.PATIENT, lambda: _patient_count("series")),
    "NumberOfPatientRelatedInstances": (_L.PATIENT, lambda: _patient_count("instances")),
    "NumberOfStudyRelatedSeries": (_L.STUDY, lambda: _study_count("series")),
    "NumberOfStudyRelatedInstances": (_L.STUDY, lambda: _study_count("instances")),
    "SOPClassesInStudy": (_L.STUDY, lambda: _study_count("sop_classes")),
    "NumberOfSeriesRelatedInstances": (_L.SERIES, lambda: Series.instance_count),
    "AvailableTransferSyntaxUID": (_L.IMAGE, lambda: Instance.transfer_syntax_uid),
}
#: Return-only keys answered from the caller's context (see ``find``).
_CONTEXTUAL = frozenset({"RetrieveAETitle", "InstanceAvailability"})
_NOT_KEYS = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet"})


@dataclass(frozen=True, slots=True)
class FindQuery:
    """A checked identifier: what to match, what to return, what we cannot answer."""

    model: InformationModel
    level: QueryRetrieveLevelValues
    keys: tuple[matching.Condition, ...]
    #: (tag, VR) of every key to return, in the order asked, then the unique keys above.
    return_keys: tuple[tuple[BaseTag, str], ...] = ()
    #: Keywords (or tags) of keys that are neither matched nor returned with a value.
    unsupported: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RetrieveItem:
    """One instance a C-MOVE or C-GET sends."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: Path


def _at_or_above(entity: QueryRetrieveLevelValues, level: QueryRetrieveLevelValues, model: InformationModel) -> bool:
    """Whether an attribute of ``entity`` is matched at ``level`` (patient keys are study keys in study root)."""
    top = LEVELS[model][0]
    effective = entity if DEPTH[entity] >= DEPTH[top] else top
    return DEPTH[effective] <= DEPTH[level]


def _query_level(identifier: Dataset, model: InformationModel) -> QueryRetrieveLevelValues:
    element = _element(identifier, BaseTag(0x00080052)) if 0x00080052 in identifier else None
    value = str(element.value or "").strip().upper() if element is not None else ""
    if not value:
        raise InvalidIdentifier("QueryRetrieveLevel (0008,0052) is missing", keyword="QueryRetrieveLevel")
    allowed = [level.value for level in LEVELS[model]]
    if value not in allowed:
        message = f"QueryRetrieveLevel {value[:16]!r} is not one of {', '.join(allowed)}"
        raise InvalidIdentifier(message, keyword="QueryRetrieveLevel")
    return QueryRetrieveLevelValues(value)


def _element(identifier: Dataset, tag: BaseTag) -> DataElement:
    try:
        return identifier[tag]
    except Exception as exc:  # pydicom converts values lazily; a bad one fails here
        keyword = keyword_for_tag(tag) or str(tag)
        raise InvalidIdentifier(f"{keyword} cannot be decoded: {exc}", keyword=keyword) from exc


def parse_find(identifier: Dataset, *, model: InformationModel) -> FindQuery:
    """Check a C-FIND identifier and compile what it asks.

    Raises
    ------
    InvalidIdentifier
        No or an unknown QueryRetrieveLevel for ``model``, or a key value that cannot be
        matched (e.g. a StudyDate that is neither a date nor a range of dates).
    """
    level = _query_level(identifier, model)
    keys: list[matching.Condition] = []
    return_keys: list[tuple[BaseTag, str]] = []
    unsupported: list[str] = []
    for tag in list(identifier.keys()):
        if tag.group in (0x0000, 0x0002) or tag.element == 0:
            continue
        element = _element(identifier, tag)
        keyword = element.keyword
        if keyword in _NOT_KEYS:
            continue
        return_keys.append((tag, element.VR))
        attribute = matching.ATTRIBUTES.get(keyword)
        computed = _COMPUTED.get(keyword)
        if attribute is not None and _at_or_above(attribute.entity, level, model):
            values = matching.key_values(element)
            if values:
                keys.append(matching.Condition(attribute, values))
        elif computed is not None and _at_or_above(computed[0], level, model):
            if matching.key_values(element):
                unsupported.append(keyword)
        elif keyword not in _CONTEXTUAL:
            unsupported.append(keyword or str(tag))
    asked = {tag for tag, _vr in return_keys}
    for upper in LEVELS[model][: LEVELS[model].index(level) + 1]:
        tag = Tag(UNIQUE_KEYS[upper])
        if tag not in asked:
            return_keys.append((tag, "LO" if upper is _L.PATIENT else "UI"))
    return FindQuery(model, level, tuple(keys), tuple(return_keys), tuple(unsupported))


def parse_retrieve(identifier: Dataset, *, model: InformationModel) -> FindQuery:
    """Check a C-MOVE/C-GET identifier: the unique keys of its level and above (PS3.4 C.4.2.2.1).

    Other keys are ignored. The unique key of the retrieve level must have a value (a single
    value or, for UIDs, a list): a universal retrieve would send the whole archive.

    Raises
    ------
    InvalidIdentifier
        No or an unknown QueryRetrieveLevel, or the level's unique key is missing or empty.
    """
    level = _query_level(identifier, model)
    keys: list[matching.Condition] = []
    for upper in LEVELS[model][: LEVELS[model].index(level) + 1]:
        keyword = UNIQUE_KEYS[upper]
        tag = Tag(keyword)
        values = matching.key_values(_element(identifier, tag)) if tag in identifier else ()
        if upper is level and not values:
            raise InvalidIdentifier(f"{keyword} is required for a {level.value} level retrieve", keyword=keyword)
        if values:
            keys.append(matching.Condition(matching.ATTRIBUTES[keyword], values))
    return FindQuery(model, level, tuple(keys))


_S = TypeVar("_S", bound=Select)  # type: ignore[type-arg]


def _joined(statement: _S, level: QueryRetrieveLevelValues) -> _S:
    statement = statement.select_from(Patient)
    if DEPTH[level] >= 1:
        statement = statement.join(Study, Study.patient_fk == Patient.id)
    if DEPTH[level] >= 2:
        statement = statement.join(Series, Series.study_fk == Study.id)
    if DEPTH[level] >= 3:
        statement = statement.join(Instance, Instance.series_fk == Series.id)
    return statement


_SERIES_ORDER = (Study.id, Series.series_number.nulls_last(), Series.id)
_ORDER = {
    _L.PATIENT: (Patient.id,),
    _L.STUDY: (Study.id,),
    _L.SERIES: _SERIES_ORDER,
    _L.IMAGE: (*_SERIES_ORDER, Instance.instance_number.nulls_last(), Instance.id),
}


def find_statement(query: FindQuery) -> Select[Any]:
    """The SELECT answering ``query``: one row per match, columns labelled by keyword."""
    columns: dict[str, Any] = {}
    for tag, _vr in query.return_keys:
        keyword = keyword_for_tag(tag)
        attribute = matching.ATTRIBUTES.get(keyword)
        computed = _COMPUTED.get(keyword)
        if attribute is not None and _at_or_above(attribute.entity, query.level, query.model):
            columns[keyword] = attribute.column
        elif computed is not None and _at_or_above(computed[0], query.level, query.model):
            columns[keyword] = computed[1]()
    labelled = [expression.label(keyword) for keyword, expression in columns.items()] or [literal(1).label("_")]
    statement = _joined(select(*labelled), query.level)
    return statement.where(*matching.where(query.keys)).order_by(*_ORDER[query.level])


_BINARY_INTEGER_VRS = frozenset({"US", "UL", "SS", "SL", "UV", "SV"})


def _dicom_value(value: Any, vr: str) -> Any:
    if value is None:
        return None
    if hasattr(value, "strftime"):
        return value.strftime("%Y%m%d")
    if isinstance(value, int):
        return value if vr in _BINARY_INTEGER_VRS else str(value)
    if isinstance(value, list):
        return [str(v) for v in value if v] or None
    return str(value) or None


def _is_ascii(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_ascii(v) for v in value)
    return not isinstance(value, str) or value.isascii()


def _identifier(query: FindQuery, row: RowMapping, *, retrieve_ae_title: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = query.level.value
    utf8 = False
    for tag, vr in query.return_keys:
        keyword = keyword_for_tag(tag)
        if keyword in row:
            value = _dicom_value(row[keyword], vr)
        elif keyword == "RetrieveAETitle":
            value = retrieve_ae_title or None
        elif keyword == "InstanceAvailability":
            value = "ONLINE"
        else:
            value = [] if vr == "SQ" else None
        utf8 = utf8 or not _is_ascii(value)
        # Index values are returned as received, even where a scanner broke a VR's length.
        ds[tag] = DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE)
    if utf8:
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def find(*, session: Session, query: FindQuery, retrieve_ae_title: str = "", batch: int = 256) -> Iterator[Dataset]:
    """Matching identifiers for a C-FIND, streamed from the index ``batch`` rows at a time.

    Parameters
    ----------
    session
        An index session; it stays in use while the iterator is consumed.
    query
        From :func:`parse_find`.
    retrieve_ae_title
        Our AE title, returned in RetrieveAETitle (0008,0054) when asked.
    batch
        Rows fetched per round trip (a server-side cursor).

    Returns
    -------
    Iterator[Dataset]
        One response identifier per match: QueryRetrieveLevel, every key asked (zero-length
        where the index has no value or cannot answer; InstanceAvailability is ONLINE), and
        the unique keys of the levels above; SpecificCharacterSet is ISO_IR 192 when a value
        is not ASCII.
    """
    statement = find_statement(query).execution_options(yield_per=batch)
    for row in session.execute(statement):
        yield _identifier(query, row._mapping, retrieve_ae_title=retrieve_ae_title)


def retrieve(*, session: Session, query: FindQuery, store_root: Path) -> list[RetrieveItem]:
    """The instances a C-MOVE or C-GET of ``query`` (from :func:`parse_retrieve`) sends, in order.

    Paths are absolute: ``store_root`` joined with the index's relative ``file_path``.
    """
    columns = select(
        Instance.sop_instance_uid, Instance.sop_class_uid, Instance.transfer_syntax_uid, Instance.file_path
    )
    statement = _joined(columns, _L.IMAGE).where(*matching.where(query.keys)).order_by(*_ORDER[_L.IMAGE])
    root = Path(store_root)
    return [
        RetrieveItem(sop_instance_uid=uid, sop_class_uid=sop_class, transfer_syntax_uid=syntax, path=root / relative)
        for uid, sop_class, syntax, relative in session.execute(statement)
    ]
