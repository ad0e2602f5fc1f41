"""Dispatch: send a run's output series to destinations (C-STORE SCU, STOW-RS) and record each attempt.

Modules: ``destinations`` (the configured peers, by name or by calling AE), ``dimse`` (C-STORE
through :mod:`dicomnode.net.scu`), ``dicomweb`` (STOW-RS with httpx), ``deliver`` (the delivery
rows: plan them, make one attempt, return a ``DeliveryOutcome``). Retrying is the job's business.

May import: ``dicomnode.net``, ``dicomnode.store``, ``dicomnode.db``, ``dicomnode.config``,
``dicomnode.errors``, ``dicomnode.logs``. Never its siblings ``routing`` and ``provenance``, nor
``jobs``, ``web`` or ``cli``.
"""

from __future__ import annotations
