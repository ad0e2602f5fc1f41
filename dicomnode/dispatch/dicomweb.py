"""Send stored files to a DICOMweb destination by STOW-RS (PS3.18 10.5), with httpx.

One request per series: ``multipart/related; type="application/dicom"``, each part a file as
stored. The answer's FailedSOPSequence (0008,1198) names the instances the server refused;
200 means all stored, 202 some, 409 none; any other status refuses them all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from dicomnode.config import DicomwebDestination
from dicomnode.dispatch.dimse import SendReport

__all__ = ["send"]

_FAILED_SOP_SEQUENCE = "00081198"
_FAILURE_REASON = "00081197"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_CHUNK = 1 << 20


def _body(paths: Sequence[Path], boundary: bytes) -> Iterator[bytes]:
    for path in paths:
        yield b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n"
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk
        yield b"\r\n"
    yield b"--" + boundary + b"--\r\n"


def _length(paths: Sequence[Path], boundary: bytes) -> int:
    # sent as Content-Length, not chunked: not every STOW-RS server takes chunked uploads
    part_head = len(b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n") + 2
    return sum(part_head + path.stat().st_size for path in paths) + len(b"--" + boundary + b"--\r\n")


def _headers(destination: DicomwebDestination, boundary: bytes) -> dict[str, str]:
    headers = {name: value.get_secret_value() for name, value in destination.headers.items()}
    headers["Content-Type"] = f'multipart/related; type="application/dicom"; boundary={boundary.decode()}'
    headers["Accept"] = "application/dicom+json"
    if destination.bearer_token is not None:
        headers["Authorization"] = f"Bearer {destination.bearer_token.get_secret_value()}"
    return headers


def _failures(document: Any) -> list[str]:
    """``uid: reason`` for each item of the response's FailedSOPSequence."""
    if isinstance(document, list):
        document = document[0] if document else {}
    if not isinstance(document, dict):
        return []
    items = (document.get(_FAILED_SOP_SEQUENCE) or {}).get("Value") or []
    failures = []
    for item in items:
        uid = ((item.get(_REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") or ["?"])[0]
        reason = ((item.get(_FAILURE_REASON) or {}).get("Value") or ["?"])[0]
        failures.append(f"{uid}: failure reason {reason}")
    return failures


def send(
    destination: DicomwebDestination, paths: Sequence[Path], *, transport: httpx.BaseTransport | None = None
) -> SendReport:
    """POST the files to the destination's STOW-RS URL in one multipart request.

    Parameters
    ----------
    destination
        The server: URL, headers, bearer token or basic credentials, timeout, TLS check.
    paths
        Part 10 files, sent as stored.
    transport
        An httpx transport (tests, proxies); httpx's default otherwise.

    Returns
    -------
    SendReport
        Never raises for the server's sake: connection errors and refusals are in ``errors``.
    """
    if not paths:
        return SendReport(sent=0, failed=0)
    boundary = uuid.uuid4().hex.encode()
    auth: httpx.Auth | None = None
    if destination.basic_user is not None and destination.basic_password is not None:
        auth = httpx.BasicAuth(destination.basic_user, destination.basic_password.get_secret_value())
    try:
        headers = _headers(destination, boundary)
        headers["Content-Length"] = str(_length(paths, boundary))
        with httpx.Client(
            timeout=destination.timeout, verify=destination.verify_tls, transport=transport, auth=auth
        ) as client:
            response = client.post(destination.stow_url, content=_body(paths, boundary), headers=headers)
    except (httpx.HTTPError, OSError) as exc:
        return SendReport(sent=0, failed=len(paths), errors=(f"{type(exc).__name__}: {exc}",))
    if response.status_code not in (200, 202, 409):
        detail = f"HTTP {response.status_code} {response.reason_phrase} {response.text[:200].strip()}".strip()
        return SendReport(sent=0, failed=len(paths), errors=(detail,))
    try:
        failures = _failures(response.json()) if response.content else []
    except ValueError:
        failures = []
    if response.status_code == 409 and not failures:
        failures = [f"HTTP 409: the server stored none of {len(paths)} instances"]
    failed = min(len(paths), len(failures))
    return SendReport(sent=len(paths) - failed, failed=failed, errors=tuple(failures))
