"""A bounded in-memory cache of instance metadata (DICOM JSON text), keyed by file identity.

Reading a header and converting it to DICOM JSON costs about a millisecond per instance; a
viewer asks for the same series' metadata again and again. Entries are keyed by the file's
path, size and modification time, so a replaced file is never served stale. BulkDataURIs are
cached with a per-process placeholder for the instance URL, which each answer fills in.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

BulkDataUri = Callable[[str], str]


class ParallelReader(Protocol):
    """Reads many headers at once (see :class:`~dicomnode.web.dicomweb.metadata_pool.MetadataPool`)."""

    @property
    def running(self) -> bool: ...

    def read(self, paths: list[Path], placeholder: str) -> list[str | None]: ...


class MetadataCache:
    """LRU of metadata JSON texts, at most ``max_bytes`` in all; safe to share across threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.placeholder = f"urn:dicomnode-instance:{secrets.token_hex(8)}"
        self._entries: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def metadata(self, path: Path, *, instance_url: str, read: Callable[[Path, BulkDataUri], dict[str, Any]]) -> str:
        """The instance's metadata as JSON text, its BulkDataURIs below ``instance_url``.

        ``read(path, bulk_data_uri)`` builds the DICOM JSON object on a miss.
        """
        stat = os.stat(path)
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            text = self._entries.get(key)
            if text is not None:
                self._entries.move_to_end(key)
        if text is None:
            placeholder = self.placeholder
            text = json.dumps(read(path, lambda bulk: f"{placeholder}/bulkdata/{bulk}"))
            self._put(key, text)
        return text.replace(self.placeholder, instance_url)

    def metadata_many(
        self,
        items: Sequence[tuple[Path, str]],
        *,
        read: Callable[[Path, BulkDataUri], dict[str, Any]],
        parallel: ParallelReader | None = None,
        parallel_from: int = 1,
    ) -> list[str | Exception]:
        """:meth:`metadata` for many ``(path, instance_url)`` pairs, misses read in parallel.

        When ``parallel`` runs and at least ``parallel_from`` entries miss, they are read by
        it; whatever it could not read is read here with ``read``. A failure comes back as the
        exception, in its place, so that one bad file does not end the others' answer.
        """
        keys: list[tuple[str, int, int] | Exception] = []
        for path, _ in items:
            try:
                stat = os.stat(path)
                keys.append((str(path), stat.st_mtime_ns, stat.st_size))
            except OSError as exc:
                keys.append(exc)
        found: dict[int, str] = {}
        with self._lock:
            for index, key in enumerate(keys):
                if not isinstance(key, Exception) and (text := self._entries.get(key)) is not None:
                    self._entries.move_to_end(key)
                    found[index] = text
        misses = [i for i, key in enumerate(keys) if i not in found and not isinstance(key, Exception)]
        if parallel is not None and parallel.running and len(misses) >= parallel_from:
            texts = parallel.read([items[i][0] for i in misses], self.placeholder)
            for index, text in zip(misses, texts, strict=True):
                if text is not None:
                    found[index] = text
                    self._put(keys[index], text)  # type: ignore[arg-type]
        results: list[str | Exception] = []
        for index, ((path, url), key) in enumerate(zip(items, keys, strict=True)):
            if isinstance(key, Exception):
                results.append(key)
            elif index in found:
                results.append(found[index].replace(self.placeholder, url))
            else:
                try:
                    results.append(self.metadata(path, instance_url=url, read=read))
                except Exception as exc:  # noqa: BLE001 - reported per instance by the caller
                    results.append(exc)
        return results

    def _put(self, key: tuple[str, int, int], text: str) -> None:
        if len(text) > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= len(previous)
            self._entries[key] = text
            self._bytes += len(text)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted)
