"""Index writes and lookups: upsert patient/study/series/instance rows for one stored file.

The hot path issues few statements: patient, study and series ids are cached per process
after their first instance, so the steady state is one instance upsert and one series update.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from sqlalchemy import func, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dicomnode.db.models import Patient, Series, Study


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """What the index keeps of one instance, read from its header."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: dt.date | None = None
    patient_sex: str = ""
    study_date: dt.date | None = None
    study_time: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_description: str = ""
    referring_physician_name: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    body_part_examined: str = ""
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None


@dataclass(frozen=True, slots=True)
class StoredLocation:
    """Where an already indexed instance lives."""

    study_instance_uid: str
    series_instance_uid: str
    series_fk: int
    file_path: str


@dataclass(frozen=True, slots=True)
class FileFacts:
    """Facts about the stored file and how it arrived."""

    file_path: str
    file_size: int
    sha256: str
    calling_ae_title: str = ""
    peer_address: str = ""
    association_id: int | None = None


class StaleSeriesCache(Exception):
    """A cached series id no longer names a row; clear the cache and index again."""


@dataclass(frozen=True, slots=True)
class IndexedInstance:
    """What ``index_instance`` did: the series row used and whether the instance was new."""

    series_id: int
    created: bool


class IdCache:
    """Per-process cache of series UID -> series id; bounded, thread-safe.

    Only ids of committed rows go in (``put`` after commit): another thread must never see
    the id of a series row its transaction cannot see yet. A stale entry (a series deleted
    behind our back) shows up as a foreign-key error or ``StaleSeriesCache``; the caller
    clears the cache and retries once.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._series: dict[str, int] = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, series_instance_uid: str) -> int | None:
        return self._series.get(series_instance_uid)

    def put(self, series_instance_uid: str, series_id: int) -> None:
        with self._lock:
            if len(self._series) >= self._max_entries:
                self._series.clear()
            self._series[series_instance_uid] = series_id

    def clear(self) -> None:
        with self._lock:
            self._series.clear()


_FIND_INSTANCE = text(
    """
    SELECT study.study_instance_uid, series.series_instance_uid, series.id, instance.file_path
    FROM instance
    JOIN series ON series.id = instance.series_fk
    JOIN study ON study.id = series.study_fk
    WHERE instance.sop_instance_uid = :sop_instance_uid
    """
)


def find_instance(*, session: Session, sop_instance_uid: str) -> StoredLocation | None:
    """Where ``sop_instance_uid`` is stored, or None (plain SQL: this runs for every instance)."""
    row = session.execute(_FIND_INSTANCE, {"sop_instance_uid": sop_instance_uid}).first()
    if row is None:
        return None
    return StoredLocation(row[0], row[1], row[2], row[3])


def _upsert_series(*, session: Session, record: InstanceRecord) -> int:
    patient_id = session.execute(
        insert(Patient)
        .values(
            patient_id=record.patient_id,
            issuer_of_patient_id=record.issuer_of_patient_id,
            patient_name=record.patient_name,
            patient_birth_date=record.patient_birth_date,
            patient_sex=record.patient_sex,
        )
        .on_conflict_do_update(
            index_elements=[Patient.patient_id, Patient.issuer_of_patient_id],
            set_={
                "patient_name": record.patient_name,
                "patient_birth_date": record.patient_birth_date,
                "patient_sex": record.patient_sex,
            },
        )
        .returning(Patient.id)
    ).scalar_one()
    study_id = session.execute(
        insert(Study)
        .values(
            study_instance_uid=record.study_instance_uid,
            patient_fk=patient_id,
            study_date=record.study_date,
            study_time=record.study_time,
            accession_number=record.accession_number,
            study_id=record.study_id,
            study_description=record.study_description,
            referring_physician_name=record.referring_physician_name,
            modalities_in_study=[record.modality] if record.modality else [],
        )
        # A no-op update so RETURNING yields the existing row's id.
        .on_conflict_do_update(
            index_elements=[Study.study_instance_uid],
            set_={"study_instance_uid": record.study_instance_uid},
        )
        .returning(Study.id)
    ).scalar_one()
    series_row = session.execute(
        insert(Series)
        .values(
            series_instance_uid=record.series_instance_uid,
            study_fk=study_id,
            modality=record.modality,
            series_number=record.series_number,
            series_description=record.series_description,
            body_part_examined=record.body_part_examined,
            instance_count=0,
        )
        .on_conflict_do_update(
            index_elements=[Series.series_instance_uid],
            set_={"series_instance_uid": record.series_instance_uid},
        )
        .returning(Series.id, text("xmax = 0"))
    ).one()
    series_id, created = series_row[0], series_row[1]
    if created and record.modality:
        session.execute(
            update(Study)
            .where(Study.id == study_id, ~Study.modalities_in_study.contains([record.modality]))
            .values(modalities_in_study=func.array_append(Study.modalities_in_study, record.modality))
        )
    return int(series_id)


# The hot path: one round trip upserts the instance and bumps its series' counters.
_UPSERT_INSTANCE = text(
    """
    WITH upsert AS (
        INSERT INTO instance (
            sop_instance_uid, series_fk, sop_class_uid, instance_number, transfer_syntax_uid,
            rows, columns, number_of_frames, file_path, file_size, sha256,
            calling_ae_title, peer_address, association_fk
        ) VALUES (
            :sop_instance_uid, :series_fk, :sop_class_uid, :instance_number, :transfer_syntax_uid,
            :rows, :columns, :number_of_frames, :file_path, :file_size, :sha256,
            :calling_ae_title, :peer_address, :association_fk
        )
        ON CONFLICT (sop_instance_uid) DO UPDATE SET
            series_fk = EXCLUDED.series_fk, sop_class_uid = EXCLUDED.sop_class_uid,
            instance_number = EXCLUDED.instance_number,
            transfer_syntax_uid = EXCLUDED.transfer_syntax_uid, rows = EXCLUDED.rows,
            columns = EXCLUDED.columns, number_of_frames = EXCLUDED.number_of_frames,
            file_path = EXCLUDED.file_path, file_size = EXCLUDED.file_size,
            sha256 = EXCLUDED.sha256, calling_ae_title = EXCLUDED.calling_ae_title,
            peer_address = EXCLUDED.peer_address, association_fk = EXCLUDED.association_fk,
            received_at = now()
        RETURNING (xmax = 0) AS created
    )
    UPDATE series SET
        instance_count = instance_count
            + (SELECT CASE WHEN created OR :moved THEN 1 ELSE 0 END FROM upsert),
        last_received_at = now()
    WHERE id = :series_fk
    RETURNING (SELECT created FROM upsert)
    """
)


def index_instance(
    *,
    session: Session,
    record: InstanceRecord,
    facts: FileFacts,
    cache: IdCache,
    previous: StoredLocation | None = None,
) -> IndexedInstance:
    """Upsert the rows for one stored instance (the caller commits, then caches the series id).

    ``previous`` is where the instance was indexed before, when this replaces it; an
    instance that moves to another series is counted out of the old one.

    Returns
    -------
    IndexedInstance
        The series row used and whether the instance is new to the index.

    Raises
    ------
    StaleSeriesCache
        When the cached series id names no row any more.
    """
    series_id = cache.get(record.series_instance_uid)
    if series_id is None:
        series_id = _upsert_series(session=session, record=record)
    moved = previous is not None and previous.series_fk != series_id
    if moved:
        assert previous is not None
        session.execute(
            update(Series)
            .where(Series.id == previous.series_fk)
            .values(instance_count=func.greatest(Series.instance_count - 1, 0))
        )
    created = session.execute(
        _UPSERT_INSTANCE,
        {
            "sop_instance_uid": record.sop_instance_uid,
            "series_fk": series_id,
            "sop_class_uid": record.sop_class_uid,
            "instance_number": record.instance_number,
            "transfer_syntax_uid": record.transfer_syntax_uid,
            "rows": record.rows,
            "columns": record.columns,
            "number_of_frames": record.number_of_frames,
            "file_path": facts.file_path,
            "file_size": facts.file_size,
            "sha256": facts.sha256,
            "calling_ae_title": facts.calling_ae_title,
            "peer_address": facts.peer_address,
            "association_fk": facts.association_id,
            "moved": moved,
        },
    ).scalar_one_or_none()
    if created is None:
        # The series row is gone (deleted since it was cached): the caller retries afresh.
        raise StaleSeriesCache(record.series_instance_uid)
    return IndexedInstance(series_id=series_id, created=bool(created))
