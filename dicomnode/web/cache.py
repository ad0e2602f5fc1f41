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
from collections.abc import Callable
from pathlib import Path
from typing import Any

BulkDataUri = Callable[[str], str]


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
