"""Provenance: runs and their inputs and outputs, lineage queries by UID, the audit log.

Modules: ``record`` (rows written as a run moves: queued, running, done or failed), ``lineage``
(which run, rule version, pipeline and inputs made an instance; what was made from an input),
``audit`` (who changed what, when and why).

May import: ``dicomnode.store``, ``dicomnode.net``, ``dicomnode.db``, ``dicomnode.config``,
``dicomnode.errors``, ``dicomnode.logs``. Never its siblings ``routing`` and ``dispatch``, nor
``jobs``, ``web`` or ``cli``: callers join them.
"""

from __future__ import annotations
