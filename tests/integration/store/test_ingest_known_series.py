"""Ingestor.ingest once a series is known to the process (its id cached): new instances counted
in, the same SOP Instance UID arriving for another series under every duplicate policy, and a
cached series deleted behind the ingestor's back. Real PostgreSQL, real files."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dicomnode.config import DuplicatePolicy, StoreSettings
from dicomnode.db.session import make_engine, make_sessionmaker
from dicomnode.errors import DuplicateRefused, StoreFull
from dicomnode.store import files as store_files
from dicomnode.store.ingest import Ingestor, IngestOutcome, Origin
from tests.integration.store.test_ingest_batch import ROOT, instance

ORIGIN = Origin(calling_ae_title="TESTSCU", peer_address="127.0.0.1")
SHARED_SOP = f"{ROOT}.3.99.1"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url, pool_size=2)
    yield engine
    engine.dispose()


def make_ingestor(engine: Engine, root: Path, policy: DuplicatePolicy) -> Ingestor:
    settings = StoreSettings(root=root, min_free_mb=0, fsync=True, duplicate_policy=policy)
    return Ingestor(settings=settings, sessions=make_sessionmaker(engine))


def rows(engine: Engine) -> dict[str, tuple[str, int]]:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT i.sop_instance_uid, i.file_path, s.instance_count FROM instance i "
                 "JOIN series s ON s.id = i.series_fk")
        ).all()
    return {uid: (path, count) for uid, path, count in found}


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_series_after_its_first_instance_counts_and_files_each(engine: Engine, tmp_path: Path) -> None:
    ingestor = make_ingestor(engine, tmp_path, DuplicatePolicy.REPLACE_SAME_SERIES)
    results = [ingestor.ingest(instance(1, n), origin=ORIGIN) for n in range(1, 6)]
    assert [r.outcome for r in results] == [IngestOutcome.STORED] * 5
    indexed = rows(engine)
    assert sorted(indexed) == sorted(r.sop_instance_uid for r in results)
    assert {count for _path, count in indexed.values()} == {5}
    for result in results:
        assert (tmp_path / result.file_path).read_bytes() == instance(1, int(result.sop_instance_uid.rsplit(".")[-1]))


def cross_series_duplicate(engine: Engine, root: Path, policy: DuplicatePolicy) -> tuple[Ingestor, object]:
    """SHARED_SOP stored in series 1; series 2 known to the ingestor; then SHARED_SOP for series 2."""
    ingestor = make_ingestor(engine, root, policy)
    ingestor.ingest(instance(1, 1, sop=SHARED_SOP), origin=ORIGIN)
    ingestor.ingest(instance(2, 1), origin=ORIGIN)  # series 2's id is now cached
    try:
        return ingestor, ingestor.ingest(instance(2, 2, sop=SHARED_SOP), origin=ORIGIN)
    except DuplicateRefused as exc:
        return ingestor, exc


@pytest.mark.parametrize("policy", [DuplicatePolicy.REPLACE_SAME_SERIES, DuplicatePolicy.REJECT])
def test_cross_series_duplicate_refused_leaves_no_file(engine: Engine, tmp_path: Path, policy: DuplicatePolicy) -> None:
    _ingestor, answer = cross_series_duplicate(engine, tmp_path, policy)
    assert isinstance(answer, DuplicateRefused)
    first_path, count = rows(engine)[SHARED_SOP]
    assert f".2.1.1/{SHARED_SOP}.dcm" in first_path and count == 1
    assert len(files(tmp_path)) == 2  # the first copy and series 2's own instance, nothing else


def test_cross_series_duplicate_kept_leaves_no_file(engine: Engine, tmp_path: Path) -> None:
    _ingestor, answer = cross_series_duplicate(engine, tmp_path, DuplicatePolicy.KEEP)
    assert answer.outcome is IngestOutcome.KEPT  # type: ignore[union-attr]
    assert f".2.1.1/{SHARED_SOP}.dcm" in rows(engine)[SHARED_SOP][0]
    assert len(files(tmp_path)) == 2


def test_cross_series_duplicate_replaced_moves_the_instance(engine: Engine, tmp_path: Path) -> None:
    _ingestor, answer = cross_series_duplicate(engine, tmp_path, DuplicatePolicy.REPLACE)
    assert answer.outcome is IngestOutcome.REPLACED  # type: ignore[union-attr]
    path, count = rows(engine)[SHARED_SOP]
    assert f".2.1.2/{SHARED_SOP}.dcm" in path and count == 2
    assert (tmp_path / path).read_bytes() == instance(2, 2, sop=SHARED_SOP)
    assert len(files(tmp_path)) == 2  # the old copy in series 1 is gone
    with engine.connect() as conn:
        counts = dict(conn.execute(text("SELECT series_instance_uid, instance_count FROM series")).all())
    assert counts == {f"{ROOT}.2.1.1": 0, f"{ROOT}.2.1.2": 2}


def test_cached_series_deleted_behind_our_back(engine: Engine, tmp_path: Path) -> None:
    ingestor = make_ingestor(engine, tmp_path, DuplicatePolicy.REPLACE_SAME_SERIES)
    ingestor.ingest(instance(1, 1), origin=ORIGIN)
    with engine.begin() as conn:  # what deleting a study through the admin API does to the rows
        conn.execute(text("DELETE FROM instance"))
        conn.execute(text("DELETE FROM series"))
    result = ingestor.ingest(instance(1, 2), origin=ORIGIN)
    assert result.outcome is IngestOutcome.STORED
    assert rows(engine) == {result.sop_instance_uid: (result.file_path, 1)}


def test_cached_series_deleted_with_its_files(engine: Engine, tmp_path: Path) -> None:
    """A study removed from index and disk while its series id is cached: the next instance is filed."""
    import shutil

    ingestor = make_ingestor(engine, tmp_path, DuplicatePolicy.REPLACE_SAME_SERIES)
    first = ingestor.ingest(instance(1, 1), origin=ORIGIN)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM instance"))
        conn.execute(text("DELETE FROM series"))
    shutil.rmtree(tmp_path / first.study_instance_uid)
    result = ingestor.ingest(instance(1, 2), origin=ORIGIN)
    assert result.outcome is IngestOutcome.STORED
    assert (tmp_path / result.file_path).read_bytes() == instance(1, 2)
    assert rows(engine) == {result.sop_instance_uid: (result.file_path, 1)}


def test_disk_full_on_a_known_series_indexes_nothing_and_leaves_no_file(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = make_ingestor(engine, tmp_path, DuplicatePolicy.REPLACE_SAME_SERIES)
    first = ingestor.ingest(instance(1, 1), origin=ORIGIN)  # series 1 known: the next takes the steady path

    def disk_full(_fd: int, _data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(store_files.os, "write", disk_full)
        with pytest.raises(StoreFull):
            ingestor.ingest(instance(1, 2), origin=ORIGIN)
    assert sorted(rows(engine)) == [first.sop_instance_uid]
    assert files(tmp_path) == [first.file_path]
    # and the next one is filed as if nothing happened
    third = ingestor.ingest(instance(1, 3), origin=ORIGIN)
    assert rows(engine)[third.sop_instance_uid] == (third.file_path, 2)


def test_the_steady_path_hands_its_connection_back_in_transaction_mode(engine: Engine, tmp_path: Path) -> None:
    # The steady path's single statement runs in autocommit; the general path's several
    # statements must not, or a failure between them would leave half an instance indexed.
    ingestor = make_ingestor(engine, tmp_path, DuplicatePolicy.REPLACE_SAME_SERIES)
    for n in range(1, 5):
        ingestor.ingest(instance(1, n), origin=ORIGIN)
    pooled = [engine.raw_connection() for _ in range(2)]  # pool_size=2: every connection it holds
    try:
        assert [p.driver_connection.autocommit for p in pooled] == [False, False]
    finally:
        for p in pooled:
            p.close()
