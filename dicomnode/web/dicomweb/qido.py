"""QIDO-RS (PS3.18 10.6): search for studies, series and instances, answered from the index.

Query keys are attribute keywords or 8-digit tags; ``includefield`` (``all`` included),
``fuzzymatching``, ``limit`` and ``offset`` are the common parameters. A key that is not a
DICOM attribute is a 400. A DICOM attribute the index cannot match at that level is
ignored for matching and named in a ``Warning: 299`` header, as PS3.18 8.3.4.1 asks; it is
returned when the index holds it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from fastapi import APIRouter, Request, Response
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from dicomnode.store import search
from dicomnode.store.search import Level
from dicomnode.web.deps import DicomwebUrlDep, SessionDep, check_uid
from dicomnode.web.dicomweb import media
from dicomnode.web.dicomweb.json import dataset
from dicomnode.web.problem import bad_request, not_acceptable, not_found

router = APIRouter()

_COMMON = {"includefield", "fuzzymatching", "limit", "offset"}
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")

# Default return attributes per level (PS3.18 Tables 10.6.3-3, -4 and -5), as far as the
# index holds them; RetrieveURL and InstanceAvailability are added to every result.
_STUDY = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
_SERIES = ("Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber", "NumberOfSeriesRelatedInstances")
_INSTANCE = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "NumberOfFrames")


def _keyword(key: str) -> str | None:
    """The keyword a query key names (keyword or tag), or None when it is no DICOM attribute."""
    if _TAG.match(key):
        return keyword_for_tag(int(key, 16)) or None
    return key if tag_for_keyword(key) is not None else None


def _is_attribute_path(key: str) -> bool:
    """True for a sequence path such as ``RequestAttributesSequence.ScheduledProcedureStepID``."""
    return "." in key and all(_keyword(part) or _TAG.match(part) for part in key.split("."))


class _Parsed:
    def __init__(self) -> None:
        self.match: dict[str, list[str]] = defaultdict(list)
        self.include: set[str] = set()
        self.include_all = False
        self.fuzzy = False
        self.limit: int | None = None
        self.offset = 0
        self.unsupported: list[str] = []


def _integer(name: str, value: str) -> int:
    if not value.strip().isdigit():
        raise bad_request(f"{name}={value!r}: a non-negative integer is expected", error="InvalidQueryParameter")
    return int(value)


def _parse(items: Iterable[tuple[str, str]], level: Level) -> _Parsed:
    parsed = _Parsed()
    for key, value in items:
        if key == "includefield":
            for field in (f.strip() for f in value.split(",")):
                if field == "all":
                    parsed.include_all = True
                elif (keyword := _keyword(field)) is not None:
                    parsed.include.add(keyword)
                elif not _is_attribute_path(field):
                    raise bad_request(f"includefield {field!r} is not a DICOM attribute", error="InvalidQueryParameter")
        elif key == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise bad_request(f"fuzzymatching={value!r}: use true or false", error="InvalidQueryParameter")
            parsed.fuzzy = value.lower() == "true"
        elif key == "limit":
            parsed.limit = _integer(key, value)
        elif key == "offset":
            parsed.offset = _integer(key, value)
        elif (keyword := _keyword(key)) is not None:
            if search.matchable(keyword, level):
                parsed.match[keyword].append(value)
            else:
                parsed.unsupported.append(keyword)
                parsed.include.add(keyword)
        elif _is_attribute_path(key):
            parsed.unsupported.append(key)
        else:
            raise bad_request(
                f"{key!r} is neither a DICOM attribute (keyword or tag) nor one of {sorted(_COMMON)}",
                error="InvalidQueryParameter",
            )
    for keyword, values in parsed.match.items():
        if len(values) > 1 and search.ATTRIBUTES[keyword].matching is not search.Matching.UID:
            raise bad_request(
                f"{keyword} is given {len(values)} times; only UID keys take a list", error="InvalidQueryParameter"
            )
    return parsed


def _returned(parsed: _Parsed, level: Level, defaults: tuple[str, ...]) -> list[str]:
    available = [a.keyword for a in search.attributes_at(level)]
    if parsed.include_all:
        return available
    wanted = set(defaults) | parsed.include | set(parsed.match)
    return [k for k in available if k in wanted]


def _value(value: Any) -> Any:
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    if value == "":
        return None
    return value


def _retrieve_url(base: str, row: dict[str, Any], level: Level) -> str:
    url = f"{base}/studies/{row['StudyInstanceUID']}"
    if level >= Level.SERIES:
        url += f"/series/{row['SeriesInstanceUID']}"
    if level is Level.IMAGE:
        url += f"/instances/{row['SOPInstanceUID']}"
    return url


def _results(rows: list[dict[str, Any]], keywords: list[str], level: Level, base: str) -> list[dict[str, Any]]:
    results = []
    for row in rows:
        pairs = [(k, _value(row[k])) for k in keywords]
        if any(isinstance(v, str) and not v.isascii() for _, v in pairs):
            pairs.insert(0, ("SpecificCharacterSet", "ISO_IR 192"))  # the JSON is UTF-8 (PS3.18 F.2)
        pairs.append(("InstanceAvailability", "ONLINE"))
        pairs.append(("RetrieveURL", _retrieve_url(base, row, level)))
        results.append(dataset(pairs).to_json_dict())
    return results


def _search(
    request: Request,
    session: SessionDep,
    base: str,
    *,
    level: Level,
    defaults: tuple[str, ...],
    study: str | None = None,
    series: str | None = None,
) -> Response:
    ranges = media.parse_accept(request.headers.get("accept"), default=media.DICOM_JSON)
    if media.choose(ranges, [media.DICOM_JSON, "application/json"]) is None:
        raise not_acceptable("search results are sent as application/dicom+json only")
    if study is not None:
        check_uid(study, "StudyInstanceUID")
    if series is not None:
        check_uid(series, "SeriesInstanceUID")
    parsed = _parse(request.query_params.multi_items(), level)
    query = search.Query(
        level=level,
        match={k: "\\".join(v) for k, v in parsed.match.items()},
        fuzzy=parsed.fuzzy,
        study_instance_uid=study,
        series_instance_uid=series,
        limit=parsed.limit,
        offset=parsed.offset,
    )
    try:
        rows = search.search(session=session, query=query)
    except search.InvalidQuery as exc:
        raise bad_request(str(exc), error="InvalidQueryParameter") from None
    if (
        not rows
        and study is not None
        and not search.exists(session=session, study_instance_uid=study, series_instance_uid=series)
    ):
        raise not_found(f"series {series} of study {study}" if series else f"study {study}")
    keywords = _returned(parsed, level, defaults)
    if level >= Level.SERIES and "StudyInstanceUID" not in keywords:
        keywords.insert(0, "StudyInstanceUID")  # viewers need it to build the next URL
    headers = {}
    if parsed.unsupported:
        names = ", ".join(sorted(set(parsed.unsupported)))
        headers["Warning"] = f'299 dicomnode "The following attributes are not supported for matching: {names}"'
    # No match is 200 with an empty array. Current PS3.18 search responses (10.6.3; the
    # 2026a Table 11.9.3-1 says it outright: 200 "is also used to indicate a successful
    # search that yields zero results") dropped the 204 No Content of 2019-era editions.
    body = json.dumps(_results(rows, keywords, level, base)).encode("utf-8")
    return Response(body, media_type=media.DICOM_JSON, headers=headers)


@router.get("/studies", summary="SearchForStudies")
def search_studies(request: Request, session: SessionDep, base: DicomwebUrlDep) -> Response:
    return _search(request, session, base, level=Level.STUDY, defaults=_STUDY)


@router.get("/series", summary="SearchForSeries (all studies)")
def search_all_series(request: Request, session: SessionDep, base: DicomwebUrlDep) -> Response:
    return _search(request, session, base, level=Level.SERIES, defaults=_STUDY + _SERIES)


@router.get("/studies/{study}/series", summary="SearchForSeries (one study)")
def search_series(request: Request, study: str, session: SessionDep, base: DicomwebUrlDep) -> Response:
    return _search(request, session, base, level=Level.SERIES, defaults=_SERIES, study=study)


@router.get("/instances", summary="SearchForInstances (all studies)")
def search_all_instances(request: Request, session: SessionDep, base: DicomwebUrlDep) -> Response:
    return _search(request, session, base, level=Level.IMAGE, defaults=_STUDY + _SERIES + _INSTANCE)


@router.get("/studies/{study}/instances", summary="SearchForInstances (one study)")
def search_study_instances(request: Request, study: str, session: SessionDep, base: DicomwebUrlDep) -> Response:
    return _search(request, session, base, level=Level.IMAGE, defaults=_SERIES + _INSTANCE, study=study)


@router.get("/studies/{study}/series/{series}/instances", summary="SearchForInstances (one series)")
def search_instances(request: Request, study: str, series: str, session: SessionDep, base: DicomwebUrlDep) -> Response:
    return _search(
        request,
        session,
        base,
        level=Level.IMAGE,
        defaults=_INSTANCE + ("SeriesInstanceUID",),
        study=study,
        series=series,
    )
