"""Parallel metadata reading: the pool's answers equal the request thread's, failures stay local."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.web.cache import MetadataCache
from dicomnode.web.dicomweb.json import read_metadata
from dicomnode.web.dicomweb.metadata_pool import PARALLEL_FROM, MetadataPool, worker_count


@pytest.fixture(scope="module")
def pool() -> Iterator[MetadataPool]:
    started = MetadataPool(2)
    started.start()
    yield started
    started.close()
    assert not started.running


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = []
    for ds in synthetic_ct(shape=(PARALLEL_FROM + 6, 16, 16), seed=5):
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _url(path: Path) -> str:
    return f"http://node/dicom-web/instances/{path.stem}"


def test_pool_answers_equal_the_request_threads(pool: MetadataPool, files: list[Path]) -> None:
    items = [(path, _url(path)) for path in files]
    parallel = MetadataCache(2**20).metadata_many(items, read=read_metadata_for_cache, parallel=pool,
                                                  parallel_from=PARALLEL_FROM)
    alone = MetadataCache(2**20).metadata_many(items, read=read_metadata_for_cache)
    assert parallel == alone
    first = json.loads(parallel[0])  # type: ignore[arg-type]
    assert first["00080018"]["Value"] == [files[0].stem]
    assert first["7FE00010"]["BulkDataURI"] == f"{_url(files[0])}/bulkdata/7FE00010"


def test_a_bad_file_fails_alone_and_a_missing_one_too(pool: MetadataPool, files: list[Path]) -> None:
    files[3].write_bytes(b"not DICOM at all")
    files[5].unlink()
    cache = MetadataCache(2**20)
    results = cache.metadata_many([(p, _url(p)) for p in files], read=read_metadata_for_cache, parallel=pool,
                                  parallel_from=PARALLEL_FROM)
    assert isinstance(results[3], Exception) and isinstance(results[5], FileNotFoundError)
    good = [r for i, r in enumerate(results) if i not in (3, 5)]
    assert all(isinstance(r, str) for r in good) and len(good) == len(files) - 2


def test_second_request_is_served_from_the_cache(pool: MetadataPool, files: list[Path]) -> None:
    cache = MetadataCache(2**20)
    items = [(p, _url(p)) for p in files]
    cache.metadata_many(items, read=read_metadata_for_cache, parallel=pool, parallel_from=PARALLEL_FROM)

    def refuse(path: Path, bulk: object) -> dict[str, object]:
        raise AssertionError(f"{path} read again")

    again = cache.metadata_many(items, read=refuse)
    assert all(isinstance(text, str) for text in again)


def test_worker_count() -> None:
    assert worker_count(3) == 3
    assert worker_count(0) >= 1


def read_metadata_for_cache(path: Path, bulk_data_uri):  # type: ignore[no-untyped-def]
    return read_metadata(path, bulk_data_uri=bulk_data_uri)


def test_a_killed_worker_costs_speed_not_answers(files: list[Path]) -> None:
    import os
    import signal

    pool = MetadataPool(2)
    pool.start()
    try:
        victim = next(iter(pool._executor._processes))  # type: ignore[union-attr]
        os.kill(victim, signal.SIGKILL)
        items = [(p, _url(p)) for p in files]
        results = MetadataCache(2**20).metadata_many(items, read=read_metadata_for_cache, parallel=pool,
                                                     parallel_from=PARALLEL_FROM)
        assert all(isinstance(text, str) for text in results)
        assert not pool.running  # the broken pool was closed; later requests read in-thread
    finally:
        pool.close()


def test_closed_pool_never_starts() -> None:
    pool = MetadataPool(2)
    pool.close()
    pool.start_in_background().join(timeout=30)
    assert not pool.running
