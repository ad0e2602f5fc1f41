"""Parallel header reading for large metadata requests: a small pool of worker processes.

Turning a stored header into DICOM JSON costs about a millisecond of pure-Python work per
instance (pydicom's element conversion), so the first ``/metadata`` request for a 300-slice
series is CPU-bound in one thread. Above :data:`PARALLEL_FROM` uncached instances the misses
are split across ``web.metadata_workers`` processes (started with the app, forkserver so that
no thread state is inherited) and come back as JSON text; the cache keeps them as before.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pydicom import config as pydicom_config

from dicomnode.web.dicomweb.json import read_metadata

__all__ = ["PARALLEL_FROM", "MetadataPool", "metadata_text", "worker_count"]

logger = logging.getLogger(__name__)

#: Fewest uncached instances worth the hop to the pool (below, the request thread reads them).
PARALLEL_FROM = 24


def worker_count(setting: int) -> int:
    """Processes for ``web.metadata_workers``: 0 means one per core when there is more than one."""
    if setting:
        return setting
    cores = len(os.sched_getaffinity(0))
    return cores if cores > 1 else 1


def metadata_text(path: str, placeholder: str) -> str:
    """One instance's DICOM JSON as text, BulkDataURIs below ``placeholder`` (see MetadataCache)."""
    return json.dumps(read_metadata(Path(path), bulk_data_uri=lambda bulk: f"{placeholder}/bulkdata/{bulk}"))


def _read_chunk(paths: list[str], placeholder: str) -> list[str | None]:
    texts: list[str | None] = []
    for path in paths:
        try:
            texts.append(metadata_text(path, placeholder))
        except Exception:  # the caller retries it in-thread, where the failure is logged
            texts.append(None)
    return texts


def _initialise() -> None:
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE


class MetadataPool:
    """Worker processes that read headers in parallel; a no-op stand-in when ``workers`` <= 1."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._starting = threading.Lock()
        self._closed = False

    @property
    def running(self) -> bool:
        return self._executor is not None

    def start_in_background(self) -> threading.Thread:
        """:meth:`start` in a thread, so that the app serves at once (in-thread until the pool runs)."""
        thread = threading.Thread(target=self.start, name="metadata-pool-start", daemon=True)
        thread.start()
        return thread

    def start(self) -> None:
        """Start the processes and have each import its modules now, not on the first request."""
        with self._starting:
            if self.workers <= 1 or self._executor is not None or self._closed:
                return
            self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["dicomnode.web.dicomweb.metadata_pool"])
        executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_initialise)
        try:
            for future in [executor.submit(_read_chunk, [], "") for _ in range(self.workers)]:
                future.result(timeout=60)
        except Exception:  # serving metadata from the request thread is slower, not wrong
            logger.exception("metadata workers did not start; reading headers in the request thread")
            executor.shutdown(wait=False, cancel_futures=True)
            return
        self._executor = executor
        logger.info("metadata workers started", extra={"workers": self.workers})

    def read(self, paths: list[Path], placeholder: str) -> list[str | None]:
        """JSON texts for ``paths`` in order (None where a worker could not read one)."""
        executor = self._executor
        if executor is None:  # not started yet, or closed: the caller reads them itself
            return [None] * len(paths)
        size = -(-len(paths) // self.workers)
        chunks = [[str(p) for p in paths[i:i + size]] for i in range(0, len(paths), size)]
        try:
            futures = [executor.submit(_read_chunk, chunk, placeholder) for chunk in chunks]
            return [text for future in futures for text in future.result()]
        except BrokenProcessPool:
            # A worker died (killed, out of memory): go on without the pool rather than fail requests.
            logger.exception("metadata workers broke; reading headers in the request thread from now on")
            self.close()
            return [None] * len(paths)
        except RuntimeError:  # closed by the app's shutdown meanwhile
            return [None] * len(paths)

    def close(self) -> None:
        """Stop the processes (the pool reads nothing more; callers fall back to their thread)."""
        with self._starting:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
