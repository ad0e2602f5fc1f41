"""Index writes and lookups: upsert patient/study/series/instance rows for one stored file.

This is the ingest hot path, so it speaks SQL to psycopg directly (prepared statements, no
ORM): SQLAlchemy's per-statement overhead was a fifth of the CPU per instance. Series ids are
cached per process after their first instance, so the steady state is one statement that
inserts the instance and bumps its series, sent with the BEGIN (``insert_new_instance``), and
the commit; a duplicate takes the lookup-then-upsert path. The SQL names
the tables and columns of ``dicomnode.db.models``; the migration test keeps them in step.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

import psycopg


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


_FIND_INSTANCE = """
    SELECT study.study_instance_uid, series.series_instance_uid, series.id, instance.file_path
    FROM instance
    JOIN series ON series.id = instance.series_fk
    JOIN study ON study.id = series.study_fk
    WHERE instance.sop_instance_uid = %(sop_instance_uid)s
"""

_UPSERT_PATIENT = """
    INSERT INTO patient (patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex)
    VALUES (%(patient_id)s, %(issuer_of_patient_id)s, %(patient_name)s, %(patient_birth_date)s,
            %(patient_sex)s)
    ON CONFLICT (patient_id, issuer_of_patient_id) DO UPDATE SET
        patient_name = EXCLUDED.patient_name, patient_birth_date = EXCLUDED.patient_birth_date,
        patient_sex = EXCLUDED.patient_sex
    RETURNING id
"""

# DO UPDATE (a no-op) rather than DO NOTHING so that RETURNING yields the existing row's id.
_UPSERT_STUDY = """
    INSERT INTO study (study_instance_uid, patient_fk, study_date, study_time, accession_number,
                       study_id, study_description, referring_physician_name, modalities_in_study)
    VALUES (%(study_instance_uid)s, %(patient_fk)s, %(study_date)s, %(study_time)s,
            %(accession_number)s, %(study_id)s, %(study_description)s,
            %(referring_physician_name)s, %(modalities)s)
    ON CONFLICT (study_instance_uid) DO UPDATE SET study_instance_uid = EXCLUDED.study_instance_uid
    RETURNING id
"""

_UPSERT_SERIES = """
    INSERT INTO series (series_instance_uid, study_fk, modality, series_number, series_description,
                        body_part_examined, instance_count)
    VALUES (%(series_instance_uid)s, %(study_fk)s, %(modality)s, %(series_number)s,
            %(series_description)s, %(body_part_examined)s, 0)
    ON CONFLICT (series_instance_uid) DO UPDATE SET series_instance_uid = EXCLUDED.series_instance_uid
    RETURNING id, (xmax = 0) AS created
"""

_ADD_MODALITY = """
    UPDATE study SET modalities_in_study = array_append(modalities_in_study, %(modality)s)
    WHERE id = %(study_id)s AND NOT modalities_in_study @> ARRAY[%(modality)s]
"""

_COUNT_OUT = """
    UPDATE series SET instance_count = greatest(instance_count - 1, 0) WHERE id = %(series_id)s
"""

# The instance row both instance statements insert (same columns, same parameters).
_INSTANCE_ROW = """
        INSERT INTO instance (
            sop_instance_uid, series_fk, sop_class_uid, instance_number, transfer_syntax_uid,
            rows, columns, number_of_frames, file_path, file_size, sha256,
            calling_ae_title, peer_address, association_fk
        ) VALUES (
            %(sop_instance_uid)s, %(series_fk)s, %(sop_class_uid)s, %(instance_number)s,
            %(transfer_syntax_uid)s, %(rows)s, %(columns)s, %(number_of_frames)s, %(file_path)s,
            %(file_size)s, %(sha256)s, %(calling_ae_title)s, %(peer_address)s, %(association_fk)s
        )
"""

# One round trip upserts the instance and bumps its series' counters.
_UPSERT_INSTANCE = """
    WITH upsert AS (
""" + _INSTANCE_ROW + """        ON CONFLICT (sop_instance_uid) DO UPDATE SET
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
            + (SELECT CASE WHEN created OR %(moved)s THEN 1 ELSE 0 END FROM upsert),
        last_received_at = now()
    WHERE id = %(series_fk)s
    RETURNING (SELECT created FROM upsert)
"""


# A new instance of a series already indexed: insert it and count it in; nothing when its SOP
# Instance UID is indexed already (the caller then takes the duplicate path).
_INSERT_NEW_INSTANCE = """
    WITH inserted AS (
""" + _INSTANCE_ROW + """        ON CONFLICT (sop_instance_uid) DO NOTHING
        RETURNING 1
    )
    UPDATE series SET instance_count = instance_count + 1, last_received_at = now()
    WHERE id = %(series_fk)s AND EXISTS (SELECT FROM inserted)
    RETURNING id
"""


def _one(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    return conn.execute(sql, params, prepare=True).fetchone()  # type: ignore[arg-type]


def find_instance(*, conn: psycopg.Connection[Any], sop_instance_uid: str) -> StoredLocation | None:
    """Where ``sop_instance_uid`` is stored, or None."""
    row = _one(conn, _FIND_INSTANCE, {"sop_instance_uid": sop_instance_uid})
    return None if row is None else StoredLocation(row[0], row[1], row[2], row[3])


def _upsert_series(*, conn: psycopg.Connection[Any], record: InstanceRecord) -> int:
    """Patient, study and series rows for the first instance of a series (in this process)."""
    patient = _one(
        conn,
        _UPSERT_PATIENT,
        {
            "patient_id": record.patient_id,
            "issuer_of_patient_id": record.issuer_of_patient_id,
            "patient_name": record.patient_name,
            "patient_birth_date": record.patient_birth_date,
            "patient_sex": record.patient_sex,
        },
    )
    assert patient is not None
    study = _one(
        conn,
        _UPSERT_STUDY,
        {
            "study_instance_uid": record.study_instance_uid,
            "patient_fk": patient[0],
            "study_date": record.study_date,
            "study_time": record.study_time,
            "accession_number": record.accession_number,
            "study_id": record.study_id,
            "study_description": record.study_description,
            "referring_physician_name": record.referring_physician_name,
            "modalities": [record.modality] if record.modality else [],
        },
    )
    assert study is not None
    series = _one(
        conn,
        _UPSERT_SERIES,
        {
            "series_instance_uid": record.series_instance_uid,
            "study_fk": study[0],
            "modality": record.modality,
            "series_number": record.series_number,
            "series_description": record.series_description,
            "body_part_examined": record.body_part_examined,
        },
    )
    assert series is not None
    series_id, created = series
    if created and record.modality:
        conn.execute(_ADD_MODALITY, {"modality": record.modality, "study_id": study[0]})
    return int(series_id)


def _instance_params(record: InstanceRecord, facts: FileFacts, series_id: int) -> dict[str, Any]:
    return {
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
    }


def insert_new_instance(
    *, conn: psycopg.Connection[Any], record: InstanceRecord, facts: FileFacts, series_id: int
) -> bool:
    """Index a new instance of a known series, committed; False if already indexed.

    The steady state of ingest: one statement in autocommit, so it and its commit take one
    round trip, where the general path needs BEGIN, the duplicate lookup, the upsert and
    COMMIT (about 0.1 ms of client CPU each, and as much again on the server). When the SOP
    Instance UID is indexed already nothing is written. (Sent with its BEGIN in libpq
    pipeline mode and committed after, it cost ~0.3 ms more client CPU: psycopg polls the
    always-writable socket while it waits for a pipeline's results.)

    Raises
    ------
    psycopg.errors.ForeignKeyViolation
        When ``series_id`` names no row any more (a stale cache entry).
    """
    conn.autocommit = True
    try:
        cursor = conn.execute(_INSERT_NEW_INSTANCE, _instance_params(record, facts, series_id), prepare=True)
        return cursor.fetchone() is not None
    finally:
        if not conn.broken:
            conn.autocommit = False  # as the pool's other users expect


def index_instance(
    *,
    conn: psycopg.Connection[Any],
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
        series_id = _upsert_series(conn=conn, record=record)
    moved = previous is not None and previous.series_fk != series_id
    if moved:
        assert previous is not None
        conn.execute(_COUNT_OUT, {"series_id": previous.series_fk}, prepare=True)
    row = _one(conn, _UPSERT_INSTANCE, {**_instance_params(record, facts, series_id), "moved": moved})
    if row is None or row[0] is None:
        # The series row is gone (deleted since it was cached): the caller retries afresh.
        raise StaleSeriesCache(record.series_instance_uid)
    return IndexedInstance(series_id=series_id, created=bool(row[0]))
