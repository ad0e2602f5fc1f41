"""The file store and the index: UID-safe paths, durable writes, one ``ingest`` entry point.

May import ``dicomnode.db`` and the ground floor (config, errors, logs).
"""

from __future__ import annotations
