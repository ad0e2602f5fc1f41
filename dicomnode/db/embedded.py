"""Embedded PostgreSQL: a real server started by pgserver in the node's data directory."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL server in ``data_dir``; stop it on ``close``.

    The server outlives nothing: it stops when the last handle in this process closes,
    so a killed node leaves a data directory that the next start recovers (PostgreSQL's
    own WAL replay).
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir = data_dir.expanduser().resolve()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            import pgserver

            self._server: Any = pgserver.get_server(data_dir, cleanup_mode="stop")
        self.data_dir = data_dir
        self.url: str = self._server.get_uri()
        logger.info("embedded postgres ready", extra={"data_dir": str(data_dir)})

    def close(self) -> None:
        """Stop the server."""
        self._server.cleanup()

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
