"""Logging setup: console or JSON lines, with association/study/series context on every record.

Context lives in contextvars so that it follows pynetdicom's handler threads
(``_config.PASS_CONTEXTVARS``). PHI (names, IDs, dates of birth) never goes into a record.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

#: Fields added to every record when set: calling AE, association id, study/series/instance UID.
CONTEXT_FIELDS = (
    "calling_ae_title",
    "association_id",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "run_id",
)
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("dicomnode_log_context", default=None)
# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_RECORD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def bind(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Add fields to the logging context of this thread/task; returns a token for ``unbind``."""
    return _context.set({**(_context.get() or {}), **fields})


def unbind(token: contextvars.Token[dict[str, Any] | None]) -> None:
    """Restore the context as it was before the matching ``bind``."""
    _context.reset(token)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Context manager form of ``bind``/``unbind``."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: its ``extra`` plus the bound context."""
    fields = {k: v for k, v in (_context.get() or {}).items() if v is not None}
    fields.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")})
    return fields


class ConsoleFormatter(logging.Formatter):
    """``time level logger: event key=value ...`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(record_fields(record))
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def setup_logging(*, level: str = "INFO", fmt: str = "console", debug_dimse: bool = False) -> None:
    """Configure the root logger once, for the CLI."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel("DEBUG" if debug_dimse else "WARNING")
    for noisy in ("alembic", "sqlalchemy.engine", "procrastinate", "pgserver"):
        logging.getLogger(noisy).setLevel("WARNING")
