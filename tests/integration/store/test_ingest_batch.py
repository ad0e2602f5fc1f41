"""Ingestor.ingest_batch over a real PostgreSQL: one commit for several instances, per-item refusals,
duplicates inside a batch, and the fall back to one-by-one when the shared transaction is lost."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from sqlalchemy import text
from sqlalchemy.engine import Engine

from dicomnode.config import DuplicatePolicy, StoreSettings
from dicomnode.db.session import make_engine, make_sessionmaker
from dicomnode.errors import DuplicateRefused, InvalidDataset
from dicomnode.store.ingest import Ingestor, IngestOutcome, IngestResult, Origin

ROOT = "1.2.826.0.1.3680043.8.498.78"


def instance(series: int, number: int, *, study: int = 1, sop: str | None = None) -> bytes:
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID = f"{ROOT}.1.{study}"
    ds.SeriesInstanceUID = f"{ROOT}.2.{study}.{series}"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop or f"{ROOT}.3.{series}.{number}"
    ds.InstanceNumber = number
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    engine = make_engine(db_url, pool_size=2)
    yield engine, tmp_path / "store"
    engine.dispose()


def ingestor(store: tuple[Engine, Path]) -> Ingestor:
    engine, root = store
    settings = StoreSettings(root=root, min_free_mb=0, fsync=True, duplicate_policy=DuplicatePolicy.REPLACE_SAME_SERIES)
    return Ingestor(settings=settings, sessions=make_sessionmaker(engine))


def indexed(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sop_instance_uid, file_path FROM instance")).all()
    return {uid: path for uid, path in rows}


def test_a_batch_is_filed_byte_identical_and_indexed_in_order(store: tuple[Engine, Path]) -> None:
    items = [instance(1, n) for n in range(1, 6)] + [instance(2, 1)]
    answers = ingestor(store).ingest_batch(items, origin=Origin(peer_address="127.0.0.1"))
    assert [type(a) for a in answers] == [IngestResult] * 6
    assert [a.sop_instance_uid for a in answers] == [dcmread(BytesIO(i)).SOPInstanceUID for i in items]
    engine, root = store
    rows = indexed(engine)
    assert len(rows) == 6
    for answer, data in zip(answers, items, strict=True):
        assert answer.outcome is IngestOutcome.STORED
        assert (root / rows[answer.sop_instance_uid]).read_bytes() == data


def test_refused_items_do_not_hold_up_the_others(store: tuple[Engine, Path]) -> None:
    node = ingestor(store)
    (first,) = node.ingest_batch([instance(1, 1)], origin=Origin())
    assert isinstance(first, IngestResult)
    garbage = b"\0" * 128 + b"DICM" + b"\x02\x00" * 10
    elsewhere = instance(9, 1, sop=f"{ROOT}.3.1.1")  # the same SOP Instance UID in another series
    answers = node.ingest_batch([instance(1, 2), garbage, elsewhere, instance(1, 3)], origin=Origin())
    assert isinstance(answers[0], IngestResult) and isinstance(answers[3], IngestResult)
    assert isinstance(answers[1], InvalidDataset)
    assert isinstance(answers[2], DuplicateRefused)
    assert set(indexed(store[0])) == {f"{ROOT}.3.1.{n}" for n in (1, 2, 3)}


def test_a_duplicate_inside_one_batch_replaces_the_first_copy(store: tuple[Engine, Path]) -> None:
    copy = instance(1, 1)
    answers = ingestor(store).ingest_batch([copy, instance(1, 2), copy], origin=Origin())
    assert [a.outcome for a in answers] == [IngestOutcome.STORED, IngestOutcome.STORED, IngestOutcome.REPLACED]
    assert len(indexed(store[0])) == 2


def test_a_lost_transaction_falls_back_to_one_by_one(
    store: tuple[Engine, Path], caplog: pytest.LogCaptureFixture
) -> None:
    engine, root = store
    node = ingestor(store)
    node.ingest_batch([instance(1, 1)], origin=Origin())  # caches the series id
    with engine.begin() as conn:  # the series row goes away behind the cache's back
        conn.execute(text("DELETE FROM instance"))
        conn.execute(text("DELETE FROM series"))
    answers = node.ingest_batch([instance(1, 2), instance(1, 3)], origin=Origin())
    assert all(isinstance(a, IngestResult) for a in answers)
    assert any(r.message == "index batch lost, filing its instances one by one" for r in caplog.records)
    rows = indexed(engine)
    assert set(rows) == {f"{ROOT}.3.1.2", f"{ROOT}.3.1.3"}
    assert all((root / path).is_file() for path in rows.values())
