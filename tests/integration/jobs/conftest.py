"""Fixtures of the AI loop tests (defined in loop.py, shared with routing/ and dispatch/)."""

from __future__ import annotations

from tests.integration.jobs.loop import jobs_factory, sessions, storescp

__all__ = ["jobs_factory", "sessions", "storescp"]
