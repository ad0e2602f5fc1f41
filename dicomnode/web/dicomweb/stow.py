"""STOW-RS (PS3.18 10.5): store instances sent as multipart/related; type="application/dicom".

Parts are filed in batches as they arrive (``Ingestor.ingest_batch``: one index commit per
batch), with the durability and checks of C-STORE: each is on disk and indexed before it is
counted as stored. The answer is a Store
Instances Response Module (PS3.18 Annex I) in DICOM JSON, with FailureReason codes from
Table I.2-2, and the status of Table 10.5.3-1: 200 all stored, 202 some failed, 409 none
stored (503 when every failure was the node's own: disk full or index down), 400 for a body
that is not a multipart body, 413 over ``web.max_upload_mb``, 415 for other media types.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from io import BytesIO

from fastapi import APIRouter, Request, Response
from pydicom import dcmread
from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from dicomnode.errors import DuplicateRefused, IndexUnavailable, InvalidDataset, InvalidUID, StoreFull
from dicomnode.store.ingest import Ingestor, IngestResult, Origin
from dicomnode.web.deps import DicomwebUrlDep, ServicesDep, check_uid
from dicomnode.web.dicomweb import media
from dicomnode.web.dicomweb.json import dataset
from dicomnode.web.dicomweb.multipart import MalformedMultipart, MultipartParser, Part, parse_content_type
from dicomnode.web.problem import Problem, bad_request

logger = logging.getLogger(__name__)

router = APIRouter()

# FailureReason (0008,1197) values, PS3.18 Table I.2-2 (and PS3.7 C for 0111).
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH = 0xA900  # also used for a Study Instance UID that is not the target's
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
_NODE_FAULTS = {OUT_OF_RESOURCES, PROCESSING_FAILURE}
#: Parts of one request filed together, with one index commit.
INGEST_BATCH = 8
#: Batches of one request being filed at the same time (their fsyncs overlap).
INGEST_WINDOW = 2


@dataclass(frozen=True, slots=True)
class PartOutcome:
    """What became of one part: stored (failure_reason None) or refused with a reason."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    failure_reason: int | None = None
    detail: str = ""


def _peek(content: bytes) -> tuple[str, str, str, str]:
    """SOP Class, SOP Instance, Study and Series UIDs from a part's header, "" where unreadable."""
    try:
        ds = dcmread(
            BytesIO(content),
            force=True,
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"],
        )
        values = (ds.get(k, "") for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"))
        return tuple(str(v).strip() for v in values)  # type: ignore[return-value]
    except Exception:  # garbage parts are reported by ingest; here only the UIDs matter
        return "", "", "", ""


def _refusal(part: Part, peeked: tuple[str, str, str, str] | None, reason: int, detail: str) -> PartOutcome:
    sop_class, sop_instance, study_uid, series_uid = peeked or _peek(part.content)
    logger.warning(
        "stow part refused",
        extra={"failure_reason": f"{reason:04X}", "detail": detail[:200], "sop_instance_uid": sop_instance},
    )
    return PartOutcome(sop_class, sop_instance, study_uid, series_uid, reason, detail)


def _precheck(part: Part, study: str | None) -> tuple[PartOutcome | None, tuple[str, str, str, str] | None]:
    """A refusal the part earns before ingest (wrong part type, another study), and its peeked UIDs."""
    # The part's UIDs are read here only when needed (a study-scoped request, or a refusal to
    # report): a stored part's come from ingest, which parses the header anyway.
    peeked = _peek(part.content) if study is not None else None
    if part.content_type:
        try:
            part_type, _ = parse_content_type(part.content_type)
        except MalformedMultipart:
            part_type = part.content_type
        if part_type != media.DICOM:
            detail = f"part type {part.content_type!r} is not {media.DICOM}"
            return _refusal(part, peeked, CANNOT_UNDERSTAND, detail), peeked
    if peeked is not None and peeked[2] != study:
        return _refusal(part, peeked, DATA_SET_DOES_NOT_MATCH,
                        f"StudyInstanceUID {peeked[2]!r} is not the target study {study}"), peeked
    return None, peeked


def _outcome(part: Part, peeked: tuple[str, str, str, str] | None, answer: IngestResult | Exception) -> PartOutcome:
    """The part's outcome from what ingest answered; every refusal becomes a FailureReason."""
    if isinstance(answer, IngestResult):
        return PartOutcome(answer.sop_class_uid, answer.sop_instance_uid, answer.study_instance_uid,
                           answer.series_instance_uid)
    reason = {InvalidDataset: CANNOT_UNDERSTAND, InvalidUID: CANNOT_UNDERSTAND, StoreFull: OUT_OF_RESOURCES,
              DuplicateRefused: DUPLICATE_SOP_INSTANCE, IndexUnavailable: PROCESSING_FAILURE}.get(type(answer))
    if reason is None:
        return _refusal(part, peeked, PROCESSING_FAILURE, f"{type(answer).__name__}: {answer}")
    return _refusal(part, peeked, reason, str(answer))


def store_parts(parts: list[Part], *, ingestor: Ingestor, study: str | None, origin: Origin) -> list[PartOutcome]:
    """Ingest parts of one request with one index commit (``Ingestor.ingest_batch``); one outcome each, in order."""
    checked = [_precheck(part, study) for part in parts]
    wanted = [n for n, (refused, _) in enumerate(checked) if refused is None]
    try:
        answers: list[IngestResult | Exception] = list(
            ingestor.ingest_batch([parts[n].content for n in wanted], origin=origin))
    except Exception as exc:  # the HTTP boundary: one bad batch must not lose the request's other answers
        logger.exception("stow batch failed")
        answers = [exc] * len(wanted)
    outcomes = [refused for refused, _ in checked]
    for n, answer in zip(wanted, answers, strict=True):
        outcomes[n] = _outcome(parts[n], checked[n][1], answer)
    return [outcome for outcome in outcomes if outcome is not None]


def _instance_url(base: str, outcome: PartOutcome) -> str:
    return (
        f"{base}/studies/{outcome.study_instance_uid}/series/{outcome.series_instance_uid}"
        f"/instances/{outcome.sop_instance_uid}"
    )


def response_dataset(outcomes: list[PartOutcome], *, base: str, study: str | None) -> Dataset:
    """The Store Instances Response Module (PS3.18 Table I.1-1) for these outcomes."""
    stored = [o for o in outcomes if o.failure_reason is None]
    failed = [o for o in outcomes if o.failure_reason is not None]
    studies = {o.study_instance_uid for o in stored}
    target = study or (next(iter(studies)) if len(studies) == 1 else None)
    pairs: list[tuple[str, object]] = [("RetrieveURL", f"{base}/studies/{target}" if target else None)]
    if failed:
        pairs.append(
            (
                "FailedSOPSequence",
                [
                    dataset(
                        [
                            ("ReferencedSOPClassUID", o.sop_class_uid or None),
                            ("ReferencedSOPInstanceUID", o.sop_instance_uid or None),
                            ("FailureReason", o.failure_reason),
                        ]
                    )
                    for o in failed
                ],
            )
        )
    if stored:
        pairs.append(
            (
                "ReferencedSOPSequence",
                [
                    dataset(
                        [
                            ("ReferencedSOPClassUID", o.sop_class_uid),
                            ("ReferencedSOPInstanceUID", o.sop_instance_uid),
                            ("RetrieveURL", _instance_url(base, o)),
                        ]
                    )
                    for o in stored
                ],
            )
        )
    return dataset(pairs)


def status_for(outcomes: list[PartOutcome]) -> int:
    """HTTP status of a store answer (PS3.18 Table 10.5.3-1)."""
    failures = [o.failure_reason for o in outcomes if o.failure_reason is not None]
    if not failures:
        return 200
    if len(failures) < len(outcomes):
        return 202
    return 503 if all(f in _NODE_FAULTS for f in failures) else 409


def _check_request(request: Request, max_bytes: int) -> str:
    """The boundary of an acceptable STOW-RS request, or the 4xx that refuses it."""
    try:
        media_type, params = parse_content_type(request.headers.get("content-type", ""))
    except MalformedMultipart as exc:
        raise bad_request(f"Content-Type: {exc}", error="MalformedMultipart") from None
    part_type = params.get("type", "").lower()
    if media_type != "multipart/related" or part_type not in ("", media.DICOM):
        raise Problem(
            415,
            "UnsupportedMediaType",
            'STOW-RS takes multipart/related; type="application/dicom" (DICOM JSON or XML metadata '
            f"with bulk data is not supported); got {request.headers.get('content-type', '')!r}",
        )
    if not params.get("boundary"):
        raise bad_request("Content-Type multipart/related has no boundary parameter", error="MalformedMultipart")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise _too_large(max_bytes)
    return params["boundary"]


def _too_large(max_bytes: int) -> Problem:
    return Problem(413, "PayloadTooLarge", f"the request body exceeds web.max_upload_mb ({max_bytes // 2**20} MB)")


async def _store(request: Request, services: ServicesDep, base: str, study: str | None) -> Response:
    if study is not None:
        check_uid(study, "StudyInstanceUID")
    max_bytes = services.settings.web.max_upload_mb * 2**20
    boundary = _check_request(request, max_bytes)
    try:
        parser = MultipartParser(boundary)
    except MalformedMultipart as exc:
        raise bad_request(str(exc), error="MalformedMultipart") from None
    origin = Origin(peer_address=request.client.host if request.client else "")
    outcomes: list[PartOutcome] = []
    # Parts are filed in batches of INGEST_BATCH, up to INGEST_WINDOW batches in worker threads
    # at once; answers keep the order of the parts.
    pending: deque[asyncio.Future[list[PartOutcome]]] = deque()
    batch: list[Part] = []

    def submit() -> None:
        pending.append(asyncio.ensure_future(
            run_in_threadpool(store_parts, list(batch), ingestor=services.ingestor, study=study, origin=origin)))
        batch.clear()

    received = 0
    try:
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes:
                    raise _too_large(max_bytes)
                for part in parser.feed(chunk):
                    batch.append(part)
                    if len(batch) >= INGEST_BATCH:
                        submit()
                    while len(pending) >= INGEST_WINDOW:
                        outcomes += await pending.popleft()
            parser.close()
        finally:  # parts already parsed are filed and answered for, whatever happens to the rest
            if batch:
                submit()
            while pending:
                outcomes += await pending.popleft()
    except ClientDisconnect:
        logger.info("stow client went away", extra={"parts": len(outcomes)})
        raise bad_request("the client closed the connection before the body ended", error="ClientDisconnect") from None
    except MalformedMultipart as exc:
        stored = [o.sop_instance_uid for o in outcomes if o.failure_reason is None]
        detail = str(exc) + (f"; the {len(stored)} instance(s) before it were stored" if stored else "")
        raise Problem(400, "MalformedMultipart", detail, extra={"stored": stored}) from None
    if not outcomes:
        raise bad_request("the multipart body has no parts", error="MalformedMultipart")
    status = status_for(outcomes)
    logger.info(
        "stow request answered",
        extra={"status": status, "parts": len(outcomes), "failed": sum(o.failure_reason is not None for o in outcomes)},
    )
    body = response_dataset(outcomes, base=base, study=study).to_json()
    return Response(body, status_code=status, media_type=media.DICOM_JSON)


@router.post("/studies", summary="StoreInstances")
async def store_instances(request: Request, services: ServicesDep, base: DicomwebUrlDep) -> Response:
    return await _store(request, services, base, None)


@router.post("/studies/{study}", summary="StoreInstances (one study)")
async def store_study_instances(request: Request, study: str, services: ServicesDep, base: DicomwebUrlDep) -> Response:
    return await _store(request, services, base, study)
