"""SCU helpers: C-ECHO and C-STORE of Part 10 files to a peer, bytes sent as stored."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomnode.net import status

logger = logging.getLogger(__name__)

# PS3.8 9.3.2: at most 128 presentation contexts per association (odd IDs 1..255).
_MAX_CONTEXTS = 128
_PEER_RE = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote application entity."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """Parse ``AE@host:port``.

        Raises
        ------
        ValueError
            With the expected form, when ``text`` is not ``AE@host:port``.
        """
        match = _PEER_RE.match(text.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"{text!r} is not AE@host:port (e.g. ORTHANC@127.0.0.1:4242)")
        return cls(match["ae"], match["host"].strip("[]"), int(match["port"]))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SendResult:
    """Outcome of one file."""

    path: Path
    status: int | None  # None: not sent (unreadable file, no association)
    comment: str = ""

    @property
    def ok(self) -> bool:
        return self.status == status.SUCCESS


def echo(peer: Peer, *, calling_ae_title: str = "DICOMNODE", timeout: float = 10) -> int:
    """Send C-ECHO; returns the status, or raises ConnectionError when no association."""
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    ae.add_requested_context(Verification)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise ConnectionError(f"association with {peer} was rejected or failed")
    try:
        response = assoc.send_c_echo()
    finally:
        assoc.release()
    if "Status" not in response:
        raise ConnectionError(f"no C-ECHO response from {peer} (timeout or abort)")
    return int(response.Status)


def find_files(paths: Iterable[Path]) -> list[Path]:
    """Expand folders recursively, sorted, hidden files skipped."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for directory, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(Path(directory, n) for n in sorted(names) if not n.startswith("."))
        else:
            found.append(path)
    return found


def _syntaxes(paths: Sequence[Path]) -> tuple[dict[Path, tuple[str, str]], list[SendResult]]:
    pairs: dict[Path, tuple[str, str]] = {}
    unreadable: list[SendResult] = []
    for path in paths:
        try:
            meta = read_file_meta_info(path)
            pairs[path] = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        except (InvalidDicomError, OSError, AttributeError, ValueError) as exc:
            unreadable.append(SendResult(path, None, f"not a DICOM Part 10 file: {exc}"))
    return pairs, unreadable


def send_files(
    peer: Peer,
    paths: Sequence[Path],
    *,
    calling_ae_title: str = "DICOMNODE",
    on_result: Callable[[SendResult], None] | None = None,
    timeout: float = 60,
) -> list[SendResult]:
    """C-STORE each file, one association per batch of at most 128 presentation contexts.

    Files are sent as stored (no decoding, no transcoding); each (SOP class, transfer
    syntax) pair gets its own presentation context.
    """
    from dicomnode.net.scp import configure_pynetdicom

    configure_pynetdicom()
    pairs, results = _syntaxes(paths)
    for result in results:
        if on_result:
            on_result(result)
    for batch in _batches(pairs):
        results.extend(_send_batch(peer, batch, calling_ae_title, on_result, timeout))
    return results


def _batches(pairs: dict[Path, tuple[str, str]]) -> Iterator[dict[Path, tuple[str, str]]]:
    batch: dict[Path, tuple[str, str]] = {}
    contexts: set[tuple[str, str]] = set()
    for path, pair in pairs.items():
        if pair not in contexts and len(contexts) == _MAX_CONTEXTS:
            yield batch
            batch, contexts = {}, set()
        contexts.add(pair)
        batch[path] = pair
    if batch:
        yield batch


def _send_batch(
    peer: Peer,
    batch: dict[Path, tuple[str, str]],
    calling_ae_title: str,
    on_result: Callable[[SendResult], None] | None,
    timeout: float,
) -> list[SendResult]:
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    ae.maximum_pdu_size = 0
    contexts = sorted(set(batch.values()))
    ae.requested_contexts = [build_context(sop, [ts]) for sop, ts in contexts]
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    results: list[SendResult] = []

    def emit(result: SendResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    if not assoc.is_established:
        for path in batch:
            emit(SendResult(path, None, f"association with {peer} rejected or failed"))
        return results
    try:
        for path, (sop_class, ts) in batch.items():
            if not assoc.is_established:
                emit(SendResult(path, None, "association lost"))
                continue
            accepted = any(
                cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == ts for cx in assoc.accepted_contexts
            )
            if not accepted:
                emit(SendResult(path, None, f"peer accepts no context for {sop_class} in {ts}"))
                continue
            try:
                response = assoc.send_c_store(path)
            except (AttributeError, ValueError, OSError) as exc:  # e.g. blank UIDs in the file meta
                emit(SendResult(path, None, f"not sent: {exc}"))
                continue
            if "Status" in response:
                emit(SendResult(path, int(response.Status), str(response.get("ErrorComment", ""))))
            else:
                emit(SendResult(path, None, "no response (timeout or abort)"))
    finally:
        if assoc.is_established:
            assoc.release()
    return results
