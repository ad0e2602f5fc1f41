"""WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data of stored studies.

Instances go out as ``multipart/related; type="application/dicom"`` streamed from the files,
a chunk at a time, in the syntax the Accept header allows (see ``media``). Metadata is DICOM
JSON with BulkDataURIs, streamed one instance at a time. Frames and bulk data are read from
one file. A UID the index does not hold is a 404; an Accept nothing can satisfy is a 406.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydicom import dcmread
from sqlalchemy.orm import Session

from dicomnode.store import search
from dicomnode.store.search import StoredInstance
from dicomnode.web.deps import DicomwebUrlDep, ServicesDep, SessionDep, check_uid
from dicomnode.web.dicomweb import json as dicom_json
from dicomnode.web.dicomweb import media, transcode
from dicomnode.web.dicomweb.metadata_pool import PARALLEL_FROM
from dicomnode.web.dicomweb.multipart import MultipartWriter, content_type
from dicomnode.web.problem import Problem, bad_request, not_acceptable, not_found

logger = logging.getLogger(__name__)

router = APIRouter()


def instance_url(base: str, instance: StoredInstance) -> str:
    """The WADO-RS URL of a stored instance."""
    return (
        f"{base}/studies/{instance.study_instance_uid}/series/{instance.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )


def find(session: Session, study: str, series: str | None = None, instance: str | None = None) -> list[StoredInstance]:
    """The stored instances a resource path names, or 400/404."""
    check_uid(study, "StudyInstanceUID")
    if series is not None:
        check_uid(series, "SeriesInstanceUID")
    if instance is not None:
        check_uid(instance, "SOPInstanceUID")
    found = search.locate(
        session=session, study_instance_uid=study, series_instance_uid=series, sop_instance_uid=instance
    )
    if not found:
        what = f"instance {instance}" if instance else f"series {series}" if series else f"study {study}"
        raise not_found(what)
    return found


def _plan(request: Request, instances: list[StoredInstance], *, single: bool) -> list[media.Choice]:
    ranges = media.parse_accept(request.headers.get("accept"), default="*/*")
    choices = []
    for instance in instances:
        choice = media.choose_dicom(ranges, instance.transfer_syntax_uid, multipart_only=not single)
        if choice is None:
            raise not_acceptable(
                f"instance {instance.sop_instance_uid} is stored in {instance.transfer_syntax_uid} and "
                "can be sent as stored (transfer-syntax=* or that UID) or, when decodable, as "
                f"{media.EXPLICIT_VR_LITTLE_ENDIAN}; the Accept header allows neither"
            )
        choices.append(choice)
    return choices


def _stream_instances(
    root: Path, base: str, instances: list[StoredInstance], choices: list[media.Choice], writer: MultipartWriter
) -> Iterator[bytes]:
    """The multipart body, in pieces of about CHUNK_SIZE.

    Starlette moves a sync iterator to a worker thread once per item: small pieces (a part
    header, then a 0.5 MB CT file) cost more in thread hops than in copying, so the parts are
    gathered into pieces of a few MB before they are yielded.
    """
    pending: list[bytes] = []
    size = 0
    for piece in _parts(root, base, instances, choices, writer):
        pending.append(piece)
        size += len(piece)
        if size >= transcode.CHUNK_SIZE:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _parts(
    root: Path, base: str, instances: list[StoredInstance], choices: list[media.Choice], writer: MultipartWriter
) -> Iterator[bytes]:
    for instance, choice in zip(instances, choices, strict=True):
        path = root / instance.file_path
        part_type = f"{media.DICOM}; transfer-syntax={choice.transfer_syntax_uid}"
        try:
            if choice.transcode(instance.transfer_syntax_uid):
                chunks: Iterator[bytes] = iter([transcode.to_explicit_little(path)])
            else:
                file = open(path, "rb")  # opened before the part header: a missing file is skipped whole
                chunks = _file_chunks(file)
        except Exception:  # a damaged file must not end the response for the others
            logger.exception("instance skipped in retrieve", extra={"sop_instance_uid": instance.sop_instance_uid})
            continue
        yield writer.part_header(part_type, location=instance_url(base, instance))
        yield from chunks
    yield writer.close()


def _file_chunks(file: BinaryIO) -> Iterator[bytes]:
    with file:
        while chunk := file.read(transcode.CHUNK_SIZE):
            yield chunk


def _retrieve(request: Request, services: ServicesDep, base: str, instances: list[StoredInstance]) -> Response:
    single = len(instances) == 1
    choices = _plan(request, instances, single=single)
    root = services.store_root
    writer = MultipartWriter()
    multipart_type = content_type(part_type=media.DICOM, boundary=writer.boundary)
    if single:
        instance, choice = instances[0], choices[0]
        bare = not choice.media_range.multipart and choice.media_range.media_type != "*/*"
        if choice.transcode(instance.transfer_syntax_uid):
            # Transcode before answering, so that a failure is a 406 and not a cut stream.
            data = _transcoded(root / instance.file_path, choice)
            if bare:
                return Response(data, media_type=media.DICOM)
            part_type = f"{media.DICOM}; transfer-syntax={choice.transfer_syntax_uid}"
            header = writer.part_header(part_type, location=instance_url(base, instance))
            return Response(header + data + writer.close(), media_type=multipart_type)
        if bare:
            return StreamingResponse(transcode.read_chunks(root / instance.file_path), media_type=media.DICOM)
    return StreamingResponse(_stream_instances(root, base, instances, choices, writer), media_type=multipart_type)


def _transcoded(path: Path, choice: media.Choice) -> bytes:
    try:
        return transcode.to_explicit_little(path)
    except Exception as exc:  # pydicom raises many kinds on undecodable pixel data
        raise not_acceptable(f"the stored pixel data cannot be decoded to {choice.transfer_syntax_uid}: {exc}") from exc


@router.get("/studies/{study}", summary="RetrieveStudy")
def retrieve_study(
    request: Request, study: str, session: SessionDep, services: ServicesDep, base: DicomwebUrlDep
) -> Response:
    return _retrieve(request, services, base, find(session, study))


@router.get("/studies/{study}/series/{series}", summary="RetrieveSeries")
def retrieve_series(
    request: Request, study: str, series: str, session: SessionDep, services: ServicesDep, base: DicomwebUrlDep
) -> Response:
    return _retrieve(request, services, base, find(session, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}", summary="RetrieveInstance")
def retrieve_instance(
    request: Request,
    study: str,
    series: str,
    instance: str,
    session: SessionDep,
    services: ServicesDep,
    base: DicomwebUrlDep,
) -> Response:
    return _retrieve(request, services, base, find(session, study, series, instance))


#: Instances looked up in the cache (and read in parallel on a miss) at a time.
_METADATA_BATCH = 512


def _read_metadata(path: Path, bulk_data_uri: Callable[[str], str]) -> dict[str, Any]:
    return dicom_json.read_metadata(path, bulk_data_uri=bulk_data_uri)


def _metadata(request: Request, services: ServicesDep, base: str, instances: list[StoredInstance]) -> Response:
    ranges = media.parse_accept(request.headers.get("accept"), default=media.DICOM_JSON)
    if media.choose(ranges, [media.DICOM_JSON, "application/json"]) is None:
        raise not_acceptable("metadata is sent as application/dicom+json only")
    root, cache = services.store_root, services.metadata_cache

    def items() -> Iterator[bytes]:
        # Yield about 256 KiB at a time: each yield costs a hop to a worker thread and back.
        # Batches of instances go through the cache together so that misses are read in parallel.
        pending: list[str] = []
        size, opened = 0, False
        for start in range(0, len(instances), _METADATA_BATCH):
            batch = instances[start:start + _METADATA_BATCH]
            texts = cache.metadata_many(
                [(root / instance.file_path, instance_url(base, instance)) for instance in batch],
                read=_read_metadata, parallel=services.metadata_pool, parallel_from=PARALLEL_FROM,
            )
            for instance, item in zip(batch, texts, strict=True):
                if isinstance(item, Exception):  # one unreadable file must not end the response for the others
                    logger.error("instance skipped in metadata", exc_info=item,
                                 extra={"sop_instance_uid": instance.sop_instance_uid})
                    continue
                pending.append(item)
                size += len(item)
                if size > 256 * 1024:
                    yield (b"," if opened else b"[") + ",".join(pending).encode("utf-8")
                    opened, pending, size = True, [], 0
        tail = ",".join(pending).encode("utf-8")
        yield (b"," if opened and tail else b"" if opened else b"[") + tail + b"]"

    return StreamingResponse(items(), media_type=media.DICOM_JSON)


@router.get("/studies/{study}/metadata", summary="RetrieveStudyMetadata")
def study_metadata(
    request: Request, study: str, session: SessionDep, services: ServicesDep, base: DicomwebUrlDep
) -> Response:
    return _metadata(request, services, base, find(session, study))


@router.get("/studies/{study}/series/{series}/metadata", summary="RetrieveSeriesMetadata")
def series_metadata(
    request: Request, study: str, series: str, session: SessionDep, services: ServicesDep, base: DicomwebUrlDep
) -> Response:
    return _metadata(request, services, base, find(session, study, series))


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata", summary="RetrieveInstanceMetadata")
def instance_metadata(
    request: Request,
    study: str,
    series: str,
    instance: str,
    session: SessionDep,
    services: ServicesDep,
    base: DicomwebUrlDep,
) -> Response:
    return _metadata(request, services, base, find(session, study, series, instance))


def _pixels(request: Request, path: Path, stored: str, numbers: list[int] | None, *, whole: bool) -> Response:
    """Frames ``numbers`` (None: all) as the Accept header allows; ``whole`` joins native frames."""
    ranges = media.parse_accept(request.headers.get("accept"), default="*/*")
    choice = media.choose_pixels(ranges, stored)
    if choice is None:
        raise not_acceptable(
            f"pixel data is stored in {stored}; it can be sent as application/octet-stream "
            f"({media.EXPLICIT_VR_LITTLE_ENDIAN}, when decodable) or as stored (transfer-syntax=*"
            + (f" or {media.FRAME_MEDIA_TYPES[stored]}" if stored in media.FRAME_MEDIA_TYPES else "")
            + ")"
        )
    ds = transcode.read_header(path)
    wanted = numbers or transcode.all_frames(ds)
    try:
        if choice.transfer_syntax_uid == stored and stored not in media.NATIVE_LITTLE_ENDIAN:
            frames = list(transcode.stored_frames(ds, wanted))
        else:
            frames = list(transcode.native_frames(ds, wanted))
    except (transcode.NoPixelData, transcode.FrameOutOfRange) as exc:
        raise not_found(str(exc)) from None
    except Exception as exc:  # pydicom raises many kinds on undecodable pixel data
        raise not_acceptable(f"the stored pixel data cannot be decoded: {exc}") from exc
    native = choice.media_type == media.OCTET_STREAM and choice.transfer_syntax_uid == media.EXPLICIT_VR_LITTLE_ENDIAN
    if whole and native:
        frames = [b"".join(frames)]
    part_type = f"{choice.media_type}; transfer-syntax={choice.transfer_syntax_uid}"
    if not choice.media_range.multipart and choice.media_range.media_type != "*/*" and len(frames) == 1:
        return Response(frames[0], media_type=part_type)
    writer = MultipartWriter()
    body = b"".join(b"".join(writer.part(part_type, [frame])) for frame in frames) + writer.close()
    return Response(
        body,
        media_type=content_type(
            part_type=choice.media_type, boundary=writer.boundary, transfer_syntax_uid=choice.transfer_syntax_uid
        ),
    )


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", summary="RetrieveFrames")
def retrieve_frames(
    request: Request, study: str, series: str, instance: str, frames: str, session: SessionDep, services: ServicesDep
) -> Response:
    try:
        numbers = transcode.parse_frame_list(frames)
    except ValueError as exc:
        raise bad_request(f"frame list {frames[:80]!r}: {exc}") from None
    stored = find(session, study, series, instance)[0]
    return _pixels(request, services.store_root / stored.file_path, stored.transfer_syntax_uid, numbers, whole=False)


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{path:path}", summary="RetrieveBulkdata")
def retrieve_bulkdata(
    request: Request, study: str, series: str, instance: str, path: str, session: SessionDep, services: ServicesDep
) -> Response:
    try:
        steps = dicom_json.parse_path(path)
    except ValueError as exc:
        raise bad_request(f"bulk data path {path[:80]!r}: {exc}") from None
    stored = find(session, study, series, instance)[0]
    file_path = services.store_root / stored.file_path
    if dicom_json.is_pixel_data(steps):
        return _pixels(request, file_path, stored.transfer_syntax_uid, None, whole=True)
    ranges = media.parse_accept(request.headers.get("accept"), default="*/*")
    chosen = media.choose(ranges, [media.OCTET_STREAM])
    if chosen is None:
        raise not_acceptable("bulk data is sent as application/octet-stream")
    try:
        element = dicom_json.bulk_value(dcmread(file_path), steps)
    except KeyError:
        raise not_found(f"bulk data {path} of instance {instance}") from None
    if element.VR not in ("OB", "OD", "OF", "OL", "OV", "OW", "UN") or element.value is None:
        raise Problem(404, "NotFound", f"{path} is not a bulk data element ({element.VR})")
    writer = MultipartWriter()
    body = b"".join(writer.part(media.OCTET_STREAM, [bytes(element.value)])) + writer.close()
    return Response(body, media_type=content_type(part_type=media.OCTET_STREAM, boundary=writer.boundary))
