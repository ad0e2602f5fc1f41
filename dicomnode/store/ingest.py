"""The one entry point that files and indexes an instance, shared by C-STORE and STOW-RS.

Order matters and is the durability contract: check UIDs and free space, write the bytes to
a temp file beside the target, fsync, rename, fsync the directory, index in one transaction,
and only then return. A crash at any point leaves either nothing or a complete file (which
the sender, not having seen Success, sends again).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import struct
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from pathlib import Path
from typing import Any

import psycopg
from pydicom import dcmread
from pydicom.datadict import keyword_dict
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from dicomnode.config import DuplicatePolicy, StoreSettings
from dicomnode.errors import (
    DicomnodeError,
    DuplicateRefused,
    IndexUnavailable,
    InvalidDataset,
    InvalidUID,
    StoreFull,
)
from dicomnode.logs import bound
from dicomnode.store import files, index, paths

logger = logging.getLogger(__name__)


class IngestOutcome(StrEnum):
    """What ``ingest`` did with the instance."""

    STORED = "stored"  # new instance
    REPLACED = "replaced"  # a duplicate replaced the stored copy
    KEPT = "kept"  # a duplicate was discarded, the stored copy kept (policy "keep")


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent the instance."""

    calling_ae_title: str = ""
    peer_address: str = ""
    association_id: int | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The instance as filed."""

    outcome: IngestOutcome
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    file_path: str
    file_size: int
    sha256: str


def _text(ds: Dataset, keyword: str) -> str:
    raw = _plain_ascii(ds, keyword)
    if raw is not None:
        return raw
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip()


def _integer(ds: Dataset, keyword: str) -> int | None:
    elem = ds.get_item(keyword_dict[keyword])
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes) and elem.VR in (None, "US"):
        if keyword in _BINARY_US and len(elem.value) == 2:
            return int.from_bytes(elem.value, "little" if elem.is_little_endian else "big")
    raw = _plain_ascii(ds, keyword) if keyword not in _BINARY_US else None
    if raw is not None:
        try:
            return int(raw) if raw else None
        except ValueError:
            pass  # "5.0" and the like: pydicom's IS knows what they mean
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _date(ds: Dataset, keyword: str) -> dt.date | None:
    value = _text(ds, keyword)
    try:
        return dt.datetime.strptime(value[:8], "%Y%m%d").date() if len(value) >= 8 else None
    except ValueError:
        return None  # scanners write all sorts of dates; the file keeps the original


# Reading the ~24 values the index keeps through pydicom's element conversion cost ~0.3 ms an
# instance (a third of parsing a 512x512 CT). Most are plain ASCII with one value: those are
# read from the raw bytes here; anything else (non-ASCII, several values, binary VRs) still
# goes through pydicom. tests/unit/store/test_read_record.py holds both ways equal.
_BINARY_US = frozenset({"Rows", "Columns"})
_NOT_PLAIN = re.compile(rb"[\x00-\x1f\x7f\\]")


def _plain_ascii(ds: Dataset, keyword: str) -> str | None:
    """The value of a text element as pydicom would give it, when that is plain; else None."""
    elem = ds.get_item(keyword_dict[keyword])
    if elem is None:
        return ""
    if not isinstance(elem, RawDataElement):
        return None
    value = elem.value
    if value is None:
        return ""
    if not isinstance(value, bytes):
        return None
    value = value.rstrip(b"\x00")
    # Printable ASCII reads the same in every DICOM character set; escape sequences (ISO
    # 2022), other control bytes, bytes >= 0x80 and several values go to pydicom.
    if not value.isascii() or _NOT_PLAIN.search(value):
        return None
    return value.decode("ascii").strip()


_UNDEFINED_LENGTH = 0xFFFFFFFF
# Sequence Delimitation Item (FFFE,E0DD) with zero length, little endian.
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_DEFLATED = "1.2.840.10008.1.2.1.99"


_META_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"  # (0002,0000) UL, length 4, after the preamble
_TRANSFER_SYNTAX_TAG = (0x0002, 0x0010)


def _file_meta(data: bytes) -> tuple[int, str] | None:
    """Where a Part 10 header's file meta ends, and its transfer syntax, read from the bytes.

    None unless the header is the plain form (preamble, "DICM", group length first, explicit
    VR little endian as PS3.10 7.1 requires): pydicom's dcmread reads anything else.
    """
    if data[128:132] != b"DICM" or data[132:140] != _META_GROUP_LENGTH or len(data) < 144:
        return None
    (group_length,) = struct.unpack_from("<I", data, 140)
    end = 144 + group_length
    offset, syntax = 144, None
    while offset + 8 <= end <= len(data):
        group, element = struct.unpack_from("<HH", data, offset)
        if group != 0x0002:
            return None
        vr = data[offset + 4:offset + 6].decode("latin-1")
        if vr in EXPLICIT_VR_LENGTH_32:  # a 4-byte length (PS3.5 7.1.2)
            if offset + 12 > end:
                return None
            (length,) = struct.unpack_from("<I", data, offset + 8)
            start = offset + 12
        else:
            (length,) = struct.unpack_from("<H", data, offset + 6)
            start = offset + 8
        if (group, element) == _TRANSFER_SYNTAX_TAG:
            syntax = data[start:start + length].rstrip(b"\x00 ").decode("ascii", errors="replace").strip()
        offset = start + length
    if offset != end or not syntax:
        return None
    return end, syntax


def _parse(data: bytes) -> tuple[Dataset, str]:
    """The dataset (raw elements) and its transfer syntax UID.

    A plain Part 10 header in a transfer syntax pydicom knows, not deflated, is read with
    ``read_dataset`` after the meta: dcmread's own reading of the meta and its file object
    handling took half of its ~0.25 ms on a CT instance. Anything else goes to dcmread.
    """
    meta = _file_meta(data)
    if meta is not None:
        end, syntax = meta
        uid = UID(syntax)
        if uid.is_transfer_syntax and syntax != _DEFLATED:
            stream = BytesIO(data)
            stream.seek(end)
            return read_dataset(stream, uid.is_implicit_VR, uid.is_little_endian), syntax
    ds = dcmread(BytesIO(data), force=True)
    return ds, str(ds.file_meta.get("TransferSyntaxUID", "")).strip()


def _check_complete(ds: Dataset, data: bytes, transfer_syntax: str) -> None:
    """Refuse a dataset whose last values were cut short (pydicom parses those silently)."""
    last = None
    for elem in ds.elements():  # raw elements: no value conversion, cheap
        last = elem
        if isinstance(elem, RawDataElement) and elem.length != _UNDEFINED_LENGTH:
            if elem.value is not None and len(elem.value) != elem.length:
                raise InvalidDataset(
                    f"dataset is truncated: {elem.tag} declares {elem.length} bytes, {len(elem.value)} arrived"
                )
    if not isinstance(last, RawDataElement) or transfer_syntax == _DEFLATED:
        return  # deflated data is checked by zlib; converted elements were fully read
    if last.length == _UNDEFINED_LENGTH:
        if not data.endswith(_SEQUENCE_DELIMITER):
            raise InvalidDataset(f"dataset is truncated inside {last.tag} (no sequence delimiter)")
    elif last.value_tell + last.length < len(data):
        # Fewer than 8 bytes left over: pydicom drops an element header cut short.
        raise InvalidDataset(
            f"dataset is truncated: {len(data) - last.value_tell - last.length} bytes of an "
            f"element header after {last.tag}"
        )


def read_record(data: bytes) -> tuple[index.InstanceRecord, Dataset]:
    """Parse a Part 10 byte string and extract what the index keeps.

    Raises
    ------
    InvalidDataset
        When the bytes are not a decodable DICOM dataset, or a required UID is missing.
    InvalidUID
        When a UID that becomes part of a path breaks the UID grammar.
    """
    try:
        ds, transfer_syntax_uid = _parse(data)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InvalidDataset(f"dataset cannot be decoded: {exc}") from exc
    except Exception as exc:  # pydicom raises many things on garbage; all mean the same here
        raise InvalidDataset(f"dataset cannot be decoded: {type(exc).__name__}: {exc}") from exc
    _check_complete(ds, data, transfer_syntax_uid)
    for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not _text(ds, keyword):
            raise InvalidDataset(f"{keyword} is missing or empty", keyword=keyword)
    sop_instance_uid = paths.check_uid(_text(ds, "SOPInstanceUID"), keyword="SOPInstanceUID")
    record = index.InstanceRecord(
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=paths.check_uid(_text(ds, "SOPClassUID"), keyword="SOPClassUID"),
        study_instance_uid=paths.check_uid(_text(ds, "StudyInstanceUID"), keyword="StudyInstanceUID"),
        series_instance_uid=paths.check_uid(_text(ds, "SeriesInstanceUID"), keyword="SeriesInstanceUID"),
        transfer_syntax_uid=transfer_syntax_uid,
        patient_id=_text(ds, "PatientID"),
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_date(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_date=_date(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        accession_number=_text(ds, "AccessionNumber"),
        study_id=_text(ds, "StudyID"),
        study_description=_text(ds, "StudyDescription"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        modality=_text(ds, "Modality"),
        series_number=_integer(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        instance_number=_integer(ds, "InstanceNumber"),
        rows=_integer(ds, "Rows"),
        columns=_integer(ds, "Columns"),
        number_of_frames=_integer(ds, "NumberOfFrames"),
    )
    return record, ds


@dataclass(frozen=True, slots=True)
class _Staged:
    """An instance written and indexed in an open transaction, waiting for its commit."""

    outcome: IngestOutcome
    record: index.InstanceRecord
    facts: index.FileFacts
    previous: index.StoredLocation | None
    series_id: int | None


def _discard(pending: Future[tuple[Path, int]]) -> None:
    """Drop the partial file of a write the index refused (waiting for it to finish)."""
    try:
        temp, _size = pending.result()
    except Exception:
        return  # the writer removed its own partial file
    files.with_suppressed_unlink(temp)


class Ingestor:
    """Files and indexes instances for one store and one database; safe to share across threads."""

    def __init__(self, *, settings: StoreSettings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.root = Path(settings.root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._sessions = sessions
        # The hot path talks to psycopg directly through the engine's pool (see store.index).
        self._engine: Engine = sessions.kw["bind"]
        self._cache = index.IdCache()
        # File writes overlapped with index statements (``_stage``): one per
        # association at a time, so a few threads serve every association of a process.
        self._writer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store-write")

    def ingest(self, data: bytes, *, origin: Origin, expected_sop_instance_uid: str | None = None) -> IngestResult:
        """File and index one Part 10 encoded instance.

        Parameters
        ----------
        data
            The instance as a DICOM Part 10 byte string (preamble, file meta, dataset), stored
            exactly as given.
        origin
            Who sent it, for the index and the logs.
        expected_sop_instance_uid
            The UID the transport announced (C-STORE's AffectedSOPInstanceUID, STOW's
            path); a dataset that says otherwise is refused.

        Returns
        -------
        IngestResult
            Only once the file is durable and the index committed.

        Raises
        ------
        InvalidDataset, InvalidUID
            The bytes are not a usable dataset (nothing written).
        StoreFull
            Free space is below the floor, or the disk filled up (nothing kept).
        IndexUnavailable
            The database cannot be reached (the file may be on disk; it is not indexed and
            Success must not be sent).
        DuplicateRefused
            The SOP Instance UID is stored already and the duplicate policy refuses this copy.
        """
        record, _ds = read_record(data)
        if expected_sop_instance_uid is not None and record.sop_instance_uid != expected_sop_instance_uid:
            raise InvalidUID(
                f"SOPInstanceUID differs from the announced {expected_sop_instance_uid}: {record.sop_instance_uid}",
                keyword="SOPInstanceUID",
            )
        with bound(
            study_instance_uid=record.study_instance_uid,
            series_instance_uid=record.series_instance_uid,
            sop_instance_uid=record.sop_instance_uid,
        ):
            return self._ingest(data, record, origin)

    def ingest_batch(self, items: Sequence[bytes], *, origin: Origin) -> list[IngestResult | DicomnodeError]:
        """File and index several instances with one index commit (STOW-RS parts of one request).

        Each instance gets the checks, the durable write and the duplicate policy of
        :meth:`ingest`; the index rows of all of them are committed together, so every
        result is returned only after that commit. A refused instance does not hold up the
        others: its entry is the error :meth:`ingest` would have raised. When the shared
        transaction fails, the instances it held are ingested again one at a time.

        Parameters
        ----------
        items
            Part 10 encoded instances, each stored exactly as given.
        origin
            Who sent them.

        Returns
        -------
        list[IngestResult | DicomnodeError]
            One entry per item, in order.
        """
        answers: list[IngestResult | DicomnodeError | None] = [None] * len(items)
        parsed: list[tuple[int, index.InstanceRecord]] = []
        for n, data in enumerate(items):
            try:
                parsed.append((n, read_record(data)[0]))
            except (InvalidDataset, InvalidUID) as exc:
                answers[n] = exc
        if parsed:
            try:
                files.check_free_space(self.root, min_free_bytes=self.settings.min_free_mb * 2**20)
                self._batch_in_one_transaction(items, parsed, origin, answers)
            except DicomnodeError as exc:  # no space, or no database: the same answer for all
                for n, _ in parsed:
                    answers[n] = answers[n] or exc
        return [answer for answer in answers if answer is not None]

    def _batch_in_one_transaction(
        self,
        items: Sequence[bytes],
        parsed: list[tuple[int, index.InstanceRecord]],
        origin: Origin,
        answers: list[IngestResult | DicomnodeError | None],
    ) -> None:
        try:
            pooled = self._engine.raw_connection()
        except (DBAPIError, psycopg.Error) as exc:
            raise IndexUnavailable(f"index database unreachable: {getattr(exc, 'orig', None) or exc}") from exc
        conn = pooled.driver_connection
        staged: list[tuple[int, _Staged]] = []
        try:
            for n, record in parsed:
                with bound(study_instance_uid=record.study_instance_uid,
                           series_instance_uid=record.series_instance_uid, sop_instance_uid=record.sop_instance_uid):
                    try:
                        staged.append((n, self._stage(conn, items[n], record, self._facts(items[n], record, origin))))
                    except (DuplicateRefused, StoreFull) as exc:
                        answers[n] = exc
            conn.commit()
        except (psycopg.Error, index.StaleSeriesCache) as exc:
            logger.warning("index batch lost, filing its instances one by one",
                           extra={"instances": len(parsed), "error": str(exc)[:200]})
            # The shared transaction is lost (a stale series id, a dropped connection): redo its
            # instances one by one, each with ingest's own retries. Files already written are
            # written again (atomically), so nothing half-done stays visible.
            self._cache.clear()
            if conn.broken or conn.closed:
                pooled.invalidate()
            pooled.close()  # rolls back
            for n, _ in parsed:
                if not isinstance(answers[n], DicomnodeError):
                    try:
                        answers[n] = self.ingest(items[n], origin=origin)
                    except DicomnodeError as exc:
                        answers[n] = exc
            return
        except BaseException:
            pooled.close()
            raise
        pooled.close()
        for n, done in staged:
            answers[n] = self._finish(done)

    def _facts(self, data: bytes, record: index.InstanceRecord, origin: Origin) -> index.FileFacts:
        relative = str(
            paths.instance_path(
                study_instance_uid=record.study_instance_uid,
                series_instance_uid=record.series_instance_uid,
                sop_instance_uid=record.sop_instance_uid,
            )
        )
        return index.FileFacts(
            file_path=relative,
            file_size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            calling_ae_title=origin.calling_ae_title,
            peer_address=origin.peer_address,
            association_id=origin.association_id,
        )

    def _ingest(self, data: bytes, record: index.InstanceRecord, origin: Origin) -> IngestResult:
        files.check_free_space(self.root, min_free_bytes=self.settings.min_free_mb * 2**20)
        facts = self._facts(data, record, origin)
        series_id = self._cache.get(record.series_instance_uid)
        target = self.root / facts.file_path
        if series_id is not None and not target.exists():
            return self._ingest_new(data, record, facts, series_id, target)
        return self._ingest_any(data, record, facts)

    def _ingest_new(
        self, data: bytes, record: index.InstanceRecord, facts: index.FileFacts, series_id: int, target: Path
    ) -> IngestResult:
        """The steady state: a series indexed before, nothing at the instance's path yet.

        The file is written and fsynced, then one statement indexes and commits it (in this
        order: the durability contract). When the SOP Instance UID turns out to be indexed
        already (in another series), or the cached series is gone, the general path decides,
        and the file written here goes unless the index points at it.
        """
        try:
            pooled = self._engine.raw_connection()
        except (DBAPIError, psycopg.Error) as exc:
            raise IndexUnavailable(f"index database unreachable: {getattr(exc, 'orig', None) or exc}") from exc
        conn = pooled.driver_connection
        inserted = False
        try:
            # The series directory can be gone although the series id is cached (a study
            # deleted from disk and index): make it again, or the write fails.
            files.ensure_dir(target.parent, root=self.root, fsync=self.settings.fsync)
            files.write_atomic(target, (data,), fsync=self.settings.fsync)  # StoreFull: nothing kept
            inserted = index.insert_new_instance(conn=conn, record=record, facts=facts, series_id=series_id)
        except psycopg.errors.IntegrityError:
            self._cache.clear()  # the cached series was deleted behind our back
            inserted = False
        except psycopg.OperationalError:
            if conn.broken or conn.closed:
                pooled.invalidate()
            inserted = False
        finally:
            pooled.close()  # back to the pool, which rolls back anything uncommitted
        if inserted:
            return self._finish(_Staged(IngestOutcome.STORED, record, facts, None, series_id))
        try:
            result = self._ingest_any(data, record, facts)
        except DuplicateRefused:
            self._drop_unindexed(target, record)
            raise
        if result.outcome is IngestOutcome.KEPT:
            self._drop_unindexed(target, record)
        return result

    def _drop_unindexed(self, target: Path, record: index.InstanceRecord) -> None:
        """Remove a file ``_ingest_new`` wrote, unless the index points at it after all."""
        try:
            pooled = self._engine.raw_connection()
            try:
                stored = index.find_instance(conn=pooled.driver_connection, sop_instance_uid=record.sop_instance_uid)
            finally:
                pooled.close()
        except (DBAPIError, psycopg.Error):
            return  # unknown: keeping an unindexed file is harmless, deleting an indexed one is not
        if stored is None or self.root / stored.file_path != target:
            files.with_suppressed_unlink(target)

    def _ingest_any(self, data: bytes, record: index.InstanceRecord, facts: index.FileFacts) -> IngestResult:
        """Any instance: duplicate lookup, policy, file, index, commit (with one retry)."""
        for attempt in (1, 2):
            try:
                pooled = self._engine.raw_connection()
            except (DBAPIError, psycopg.Error) as exc:  # the pool may raise either
                raise IndexUnavailable(f"index database unreachable: {getattr(exc, 'orig', None) or exc}") from exc
            conn = pooled.driver_connection
            try:
                staged = self._stage(conn, data, record, facts)
                conn.commit()
                return self._finish(staged)
            except (psycopg.errors.IntegrityError, index.StaleSeriesCache) as exc:
                # A cached series id went stale (deleted behind our back): look it up again.
                self._cache.clear()
                if attempt == 2:
                    raise IndexUnavailable(f"index refused the instance: {exc}") from exc
            except psycopg.OperationalError as exc:
                # A pooled connection the server dropped fails once; retry on a fresh one.
                broken = conn.broken or conn.closed
                if broken:
                    pooled.invalidate()
                if not (broken and attempt == 1):
                    raise IndexUnavailable(f"index database unreachable: {exc}") from exc
            finally:
                pooled.close()  # back to the pool, which rolls back anything uncommitted
        raise AssertionError("unreachable")

    def _stage(
        self, conn: psycopg.Connection[Any], data: bytes, record: index.InstanceRecord, facts: index.FileFacts
    ) -> _Staged:
        """In the open transaction: look for a duplicate, write the file durably, index (no commit).

        The file's write and fsync run on a writer thread while the index statements run: both
        wait on the disk (the file's fsync, the server's) more than on the CPU, so they overlap
        (CT bench, one association: ~190 -> ~220 instances/s). The partial file is renamed into
        place only once the duplicate policy has allowed it, and before the caller commits: the
        order of the durability contract is kept.
        """
        target = self.root / facts.file_path
        # Written as a hidden partial file in the store root: the series directory is made only
        # once the duplicate policy lets the instance in (a refused copy leaves nothing behind).
        pending = self._writer.submit(
            files.write_partial, target, (data,), fsync=self.settings.fsync, directory=self.root
        )
        try:
            previous = index.find_instance(conn=conn, sop_instance_uid=record.sop_instance_uid)
            outcome = IngestOutcome.STORED
            if previous is not None:
                outcome = self._duplicate_outcome(record, previous)
            if outcome is IngestOutcome.KEPT:
                _discard(pending)
                return _Staged(outcome, record, facts, previous, series_id=None)
            indexed = index.index_instance(
                conn=conn, record=record, facts=facts, cache=self._cache, previous=previous
            )
        except BaseException:
            _discard(pending)
            raise
        temp, _size = pending.result()  # StoreFull from the writer surfaces here
        try:
            files.ensure_dir(target.parent, root=self.root, fsync=self.settings.fsync)
        except BaseException:
            files.with_suppressed_unlink(temp)
            raise
        files.publish(temp, target, fsync=self.settings.fsync)
        return _Staged(outcome, record, facts, previous, series_id=indexed.series_id)

    def _finish(self, staged: _Staged) -> IngestResult:
        """After the commit: cache the series id, drop a replaced copy, log, answer."""
        record, facts, previous = staged.record, staged.facts, staged.previous
        with bound(study_instance_uid=record.study_instance_uid, series_instance_uid=record.series_instance_uid,
                   sop_instance_uid=record.sop_instance_uid):
            if staged.outcome is IngestOutcome.KEPT:
                logger.info("duplicate kept, new copy discarded", extra={"policy": "keep"})
                return self._result(staged.outcome, record, facts, file_path=previous.file_path if previous else "")
            assert staged.series_id is not None
            self._cache.put(record.series_instance_uid, staged.series_id)
            if previous is not None and previous.file_path != facts.file_path:
                files.with_suppressed_unlink(self.root / previous.file_path)
            if staged.outcome is IngestOutcome.REPLACED:
                logger.info("duplicate replaced stored copy", extra={"policy": self.settings.duplicate_policy.value})
            else:
                logger.info("instance stored", extra={"size": facts.file_size})
            return self._result(staged.outcome, record, facts, file_path=facts.file_path)

    def _duplicate_outcome(self, record: index.InstanceRecord, previous: index.StoredLocation) -> IngestOutcome:
        policy = self.settings.duplicate_policy
        same_series = (previous.study_instance_uid, previous.series_instance_uid) == (
            record.study_instance_uid,
            record.series_instance_uid,
        )
        if policy is DuplicatePolicy.KEEP:
            return IngestOutcome.KEPT
        if policy is DuplicatePolicy.REPLACE or (policy is DuplicatePolicy.REPLACE_SAME_SERIES and same_series):
            return IngestOutcome.REPLACED
        where = "" if same_series else " in another series"
        logger.warning(
            "duplicate refused",
            extra={"policy": policy.value, "stored_series_instance_uid": previous.series_instance_uid},
        )
        # Reason first: DIMSE carries only 64 characters of it (ErrorComment).
        raise DuplicateRefused(
            f"duplicate: already stored{where} (store.duplicate_policy={policy.value}); series "
            f"{previous.series_instance_uid} of study {previous.study_instance_uid}"
        )

    @staticmethod
    def _result(
        outcome: IngestOutcome, record: index.InstanceRecord, facts: index.FileFacts, *, file_path: str
    ) -> IngestResult:
        return IngestResult(
            outcome=outcome,
            sop_instance_uid=record.sop_instance_uid,
            sop_class_uid=record.sop_class_uid,
            study_instance_uid=record.study_instance_uid,
            series_instance_uid=record.series_instance_uid,
            file_path=file_path,
            file_size=facts.file_size,
            sha256=facts.sha256,
        )


__all__ = ["Ingestor", "IngestOutcome", "IngestResult", "Origin", "InvalidUID", "read_record"]
