"""Ground floor: ORM models, engine and sessions, embedded PostgreSQL, migrations.

May import only ``dicomnode.config``, ``dicomnode.errors`` and ``dicomnode.logs``.
"""

from __future__ import annotations
