"""Send stored files to a DIMSE destination by C-STORE (through :mod:`dicomnode.net.scu`)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dicomnode.config import DimseDestination
from dicomnode.net import scu, status

__all__ = ["SendReport", "send"]


@dataclass(frozen=True, slots=True)
class SendReport:
    """How many files the peer kept, and why the others were not."""

    sent: int
    failed: int
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failed == 0


def send(
    destination: DimseDestination, paths: Sequence[Path], *, calling_ae_title: str, timeout: float = 60
) -> SendReport:
    """C-STORE each file as stored; Success and Warning statuses count as kept.

    Never raises for the peer's sake: a refused association or a lost connection is a failed
    file with its reason in ``errors``.
    """
    peer = scu.Peer(destination.ae_title, destination.host, destination.port)
    # Port first: a refused connect costs pynetdicom a leaked socket, which a worker retrying a
    # destination that is down for an hour must not accumulate.
    try:
        socket.create_connection((destination.host, destination.port), timeout=min(timeout, 10)).close()
    except OSError as exc:
        return SendReport(sent=0, failed=len(paths), errors=(f"cannot connect to {peer}: {exc}",))
    results = scu.send_files(peer, paths, calling_ae_title=calling_ae_title, timeout=timeout)
    errors = []
    for result in results:
        if not status.is_stored(result.status):
            code = f"0x{result.status:04X} {status.describe(result.status)}" if result.status is not None else ""
            errors.append(f"{result.path.name}: {' '.join(p for p in (code, result.comment) if p) or 'not sent'}")
    return SendReport(sent=len(results) - len(errors), failed=len(errors), errors=tuple(errors))
