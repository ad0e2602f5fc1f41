"""Embedded PostgreSQL: a real server started by pgserver in the node's data directory."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL server in ``data_dir``; stop it on ``close``.

    The server stops when the last process holding it closes. A node killed with SIGKILL
    leaves the server running; the next start reuses it, forgets the dead holder, and
    stops it when that node closes.
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir = data_dir.expanduser().resolve()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_holders(data_dir)
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_holders(data_dir: Path) -> None:
    """Drop PIDs of killed processes from pgserver's holder list.

    pgserver stops the server when its last holder closes, counting holders in
    ``.handle_pids.json``; a node killed with SIGKILL never removes itself, and the server
    would then outlive every later node.
    """
    holders = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(holders.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        holders.write_text(json.dumps(alive))
        logger.info("forgot dead embedded postgres holders", extra={"removed": len(pids) - len(alive)})
