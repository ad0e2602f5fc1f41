"""Query/Retrieve SCP: C-FIND, C-MOVE and C-GET handlers over the index (PS3.4 Annex C).

Patient root and study root information models, PATIENT/STUDY/SERIES/IMAGE levels; the
matching rules are ``store.matching``'s, the hierarchy ``store.query``'s. Handlers are
generators in the shape pynetdicom expects, take their dependencies as arguments and never
raise: every failure is a named status from ``net.status`` with an ErrorComment.

Instances are sent as stored: each file is read with ``dcmread`` (values stay raw, so writing
them in the same transfer syntax copies their bytes) and pynetdicom sends it in a C-STORE
sub-operation. pynetdicom requires a Dataset here; a file path is not accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import evt
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dicomnode.config import DimseDestination
from dicomnode.net import status
from dicomnode.store import query

logger = logging.getLogger(__name__)

_PATIENT_ROOT = query.InformationModel.PATIENT_ROOT
_STUDY_ROOT = query.InformationModel.STUDY_ROOT
FIND_MODELS: Mapping[str, query.InformationModel] = {
    PatientRootQueryRetrieveInformationModelFind: _PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelFind: _STUDY_ROOT,
}
MOVE_MODELS: Mapping[str, query.InformationModel] = {
    PatientRootQueryRetrieveInformationModelMove: _PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelMove: _STUDY_ROOT,
}
GET_MODELS: Mapping[str, query.InformationModel] = {
    PatientRootQueryRetrieveInformationModelGet: _PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelGet: _STUDY_ROOT,
}
#: The Q/R SOP classes the SCP accepts.
SOP_CLASSES: Sequence[str] = [*FIND_MODELS, *MOVE_MODELS, *GET_MODELS]

# PS3.8 9.3.2: at most 128 presentation contexts in one association request.
_MAX_CONTEXTS = 128
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

Responses = Iterator[Any]


@dataclass(frozen=True, slots=True)
class Archive:
    """What the Q/R handlers serve from: the index, the store root, where C-MOVE may send."""

    sessions: sessionmaker[Session]
    store_root: Path
    destinations: Sequence[DimseDestination] = ()


def event_handlers(archive: Archive) -> list[tuple]:  # type: ignore[type-arg]
    """The (event, handler, args) bindings of the Q/R SCP."""
    return [
        (evt.EVT_C_FIND, handle_find, [archive.sessions]),
        (evt.EVT_C_MOVE, handle_move, [archive.sessions, archive.store_root, archive.destinations]),
        (evt.EVT_C_GET, handle_get, [archive.sessions, archive.store_root]),
    ]


def _failure(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]  # LO: 64 characters
    return ds


def _identifier(event: evt.Event) -> Dataset | None:
    try:
        identifier = event.identifier
        list(identifier.keys())  # decode the element headers now, not in the middle of matching
        return identifier
    except Exception:
        logger.warning("Q/R identifier cannot be decoded", exc_info=True)
        return None


def _model(event: evt.Event, models: Mapping[str, query.InformationModel]) -> query.InformationModel | None:
    return models.get(str(event.request.AffectedSOPClassUID))


def handle_find(event: evt.Event, sessions: sessionmaker[Session]) -> Responses:
    """C-FIND (PS3.4 C.4.1): yield (status, identifier) per match; pynetdicom ends with Success.

    Statuses
    --------
    0xFF00 Pending
        One per match, with its identifier.
    0xFF01 Pending, optional keys not supported
        As 0xFF00, when the identifier asks for keys the index cannot match or return
        (they come back zero-length).
    0xFE00 Cancel
        The requestor sent C-CANCEL.
    0xA700 Refused: Out of Resources
        The index database is unreachable.
    0xA900 Error: Identifier does not match SOP Class
        No or a wrong QueryRetrieveLevel for the model, or a key value that cannot be matched.
    0xC000 Error: Unable to process
        The identifier cannot be decoded, or an unexpected error.
    """
    model = _model(event, FIND_MODELS)
    identifier = _identifier(event)
    if model is None or identifier is None:
        yield _failure(status.UNABLE_TO_PROCESS, "the identifier cannot be decoded"), None
        return
    try:
        find_query = query.parse_find(identifier, model=model)
    except query.InvalidIdentifier as exc:
        logger.warning("C-FIND refused: invalid identifier", extra={"keyword": exc.keyword})
        yield _failure(status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc)), None
        return
    pending = status.PENDING_OPTIONAL_KEYS_NOT_SUPPORTED if find_query.unsupported else status.PENDING
    matches = 0
    try:
        with sessions() as session:
            answers = query.find(
                session=session, query=find_query, retrieve_ae_title=event.assoc.acceptor.ae_title.strip()
            )
            for answer in answers:
                if event.is_cancelled:
                    logger.info("C-FIND cancelled", extra={"matches": matches})
                    yield status.CANCEL, None
                    return
                matches += 1
                yield pending, answer
    except SQLAlchemyError:
        logger.error("C-FIND failed: index unavailable", exc_info=True)
        yield _failure(status.OUT_OF_RESOURCES, "index database unavailable"), None
        return
    except Exception as exc:  # the boundary: a status, never a raise
        logger.error("C-FIND failed: unexpected error", exc_info=True)
        yield _failure(status.UNABLE_TO_PROCESS, f"{type(exc).__name__}: {exc}"), None
        return
    logger.info(
        "C-FIND answered",
        extra={"model": model.value, "level": find_query.level.value, "matches": matches},
    )


def _retrieval(
    event: evt.Event, sessions: sessionmaker[Session], store_root: Path, models: Mapping[str, query.InformationModel]
) -> list[query.RetrieveItem] | Dataset:
    """The instances to send, or a failure status for the final response."""
    model = _model(event, models)
    identifier = _identifier(event)
    if model is None or identifier is None:
        return _failure(status.UNABLE_TO_PROCESS, "the identifier cannot be decoded")
    try:
        request = query.parse_retrieve(identifier, model=model)
        with sessions() as session:
            return query.retrieve(session=session, query=request, store_root=store_root)
    except query.InvalidIdentifier as exc:
        logger.warning("retrieve refused: invalid identifier", extra={"keyword": exc.keyword})
        return _failure(status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc))
    except SQLAlchemyError:
        logger.error("retrieve failed: index unavailable", exc_info=True)
        return _failure(status.OUT_OF_RESOURCES_MATCHES, "index database unavailable")
    except Exception as exc:  # the boundary: a status, never a raise
        logger.error("retrieve failed: unexpected error", exc_info=True)
        return _failure(status.UNABLE_TO_PROCESS, f"{type(exc).__name__}: {exc}")


def _unreadable(item: query.RetrieveItem) -> Dataset:
    """A stand-in for a file that cannot be read: pynetdicom fails its sub-operation (no
    Transfer Syntax to send it in) and lists its SOP Instance UID in FailedSOPInstanceUIDList."""
    ds = Dataset()
    ds.SOPClassUID = item.sop_class_uid
    ds.SOPInstanceUID = item.sop_instance_uid
    return ds


def _load(item: query.RetrieveItem, accepted: Sequence[PresentationContext] | None = None) -> Dataset:
    """The stored instance, in its stored transfer syntax unless the peer cannot take it.

    With ``accepted`` (C-GET: the contexts of the requestor's association), a compressed
    instance is decompressed when the peer accepts the SOP class only uncompressed.
    """
    try:
        ds = dcmread(item.path)
    except Exception:
        logger.error("stored instance unreadable", exc_info=True, extra={"sop_instance_uid": item.sop_instance_uid})
        return _unreadable(item)
    if accepted is None:
        return ds
    stored = UID(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))
    offered = {cx.transfer_syntax[0] for cx in accepted if cx.abstract_syntax == item.sop_class_uid and cx.as_scu}
    if not offered or stored in offered or not offered & set(_UNCOMPRESSED):
        return ds
    try:
        if stored == DeflatedExplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # inflated when read
        elif stored.is_compressed:
            ds.decompress(generate_instance_uid=False)  # same instance, another transfer syntax
    except Exception:
        logger.warning(
            "cannot decompress for the peer", exc_info=True, extra={"sop_instance_uid": item.sop_instance_uid}
        )
    return ds


def _sub_operations(
    event: evt.Event, items: Sequence[query.RetrieveItem], accepted: Sequence[PresentationContext] | None = None
) -> Responses:
    for item in items:
        if event.is_cancelled:
            logger.info("retrieve cancelled")
            yield status.CANCEL, None  # pynetdicom adds FailedSOPInstanceUIDList and the counts
            return
        yield status.PENDING, _load(item, accepted)


def _move_contexts(items: Sequence[query.RetrieveItem]) -> list[PresentationContext]:
    """Contexts to propose to a move destination: each SOP class in its stored syntaxes.

    Uncompressed instances are offered in both little endian syntaxes (pynetdicom converts
    between them); compressed ones only as stored (C-MOVE does not transcode).
    """
    syntaxes: dict[str, list[str]] = {}
    for item in items:
        stored = item.transfer_syntax_uid
        wanted = [stored, *_UNCOMPRESSED] if stored in (*_UNCOMPRESSED, ExplicitVRBigEndian) else [stored]
        known = syntaxes.setdefault(item.sop_class_uid, [])
        known.extend(ts for ts in wanted if ts not in known)
    contexts: list[PresentationContext] = []
    for sop_class, transfer_syntaxes in syntaxes.items():
        uncompressed = [ts for ts in transfer_syntaxes if ts in _UNCOMPRESSED or ts == ExplicitVRBigEndian]
        compressed = [ts for ts in transfer_syntaxes if ts not in uncompressed]
        # A context per compressed syntax, so the destination can accept each on its own.
        if uncompressed:
            contexts.append(build_context(sop_class, uncompressed))
        contexts.extend(build_context(sop_class, [ts]) for ts in compressed)
    if len(contexts) > _MAX_CONTEXTS:
        logger.warning("C-MOVE needs more presentation contexts than one association allows; some will fail")
    return contexts[:_MAX_CONTEXTS]


def handle_move(
    event: evt.Event, sessions: sessionmaker[Session], store_root: Path, destinations: Sequence[DimseDestination]
) -> Responses:
    """C-MOVE (PS3.4 C.4.2): send the matching instances to a configured destination AE.

    Yields, as pynetdicom expects: the destination ``(host, port, {"contexts": ...})`` or
    ``(None, None)``; the number of sub-operations; then ``(status, dataset)`` per instance.
    pynetdicom opens the association, sends each C-STORE and builds the final response.

    Statuses
    --------
    0xFF00 Pending
        After each C-STORE sub-operation.
    0x0000 Success / 0xB000 Warning / 0xA702 Refused
        All sub-operations succeeded / some failed / all failed (FailedSOPInstanceUIDList).
    0xFE00 Cancel
        The requestor sent C-CANCEL; the remaining sub-operations are not performed.
    0xA701 Refused: Out of Resources
        The index database is unreachable.
    0xA801 Refused: Move Destination unknown
        The Move Destination is not in ``destinations`` (or does not accept an association).
    0xA900 Error: Identifier does not match SOP Class
        No or a wrong QueryRetrieveLevel, or no unique key for the level.
    0xC000 Error: Unable to process
        The identifier cannot be decoded, or an unexpected error.

    A failure found before any sub-operation is reported after pynetdicom has associated
    with the destination (its generator protocol asks for the destination first), counted as
    one failed sub-operation.
    """
    move_destination = (event.move_destination or "").strip()
    destination = next((d for d in destinations if d.ae_title == move_destination), None)
    if destination is None:
        logger.warning("C-MOVE refused: unknown destination", extra={"move_destination": move_destination})
        yield None, None
        return
    found = _retrieval(event, sessions, store_root, MOVE_MODELS)
    if isinstance(found, Dataset):
        yield destination.host, destination.port, {"contexts": [build_context(Verification)]}
        yield 1
        yield found, None
        return
    logger.info(
        "C-MOVE started",
        extra={"move_destination": move_destination, "destination": destination.name, "instances": len(found)},
    )
    yield destination.host, destination.port, {"contexts": _move_contexts(found)}
    yield len(found)
    yield from _sub_operations(event, found)


def handle_get(event: evt.Event, sessions: sessionmaker[Session], store_root: Path) -> Responses:
    """C-GET (PS3.4 C.4.3): send the matching instances back over the requestor's association.

    Yields the number of sub-operations, then ``(status, dataset)`` per instance. The
    requestor must have proposed the storage SOP classes with the SCP role (role selection,
    PS3.7 D.3.3.4); an instance whose class it did not propose fails its sub-operation. One
    stored compressed is decompressed when the requestor accepted its class only uncompressed.

    Statuses
    --------
    0xFF00 Pending
        After each C-STORE sub-operation.
    0x0000 Success / 0xB000 Warning / 0xA702 Refused
        All sub-operations succeeded / some failed / all failed (FailedSOPInstanceUIDList).
    0xFE00 Cancel
        The requestor sent C-CANCEL.
    0xA701 Refused: Out of Resources
        The index database is unreachable.
    0xA900 Error: Identifier does not match SOP Class
        No or a wrong QueryRetrieveLevel, or no unique key for the level.
    0xC000 Error: Unable to process
        The identifier cannot be decoded, or an unexpected error.
    """
    found = _retrieval(event, sessions, store_root, GET_MODELS)
    if isinstance(found, Dataset):
        yield 1
        yield found, None
        return
    logger.info("C-GET started", extra={"instances": len(found)})
    yield len(found)
    yield from _sub_operations(event, found, accepted=event.assoc.accepted_contexts)
