"""multipart/related bodies (RFC 2387, PS3.18 8.6.1.2): a streaming writer and an incremental parser.

The writer yields bytes as parts are produced, so a study is never assembled in memory. The
parser is fed the request body chunk by chunk and hands back each part as soon as its closing
delimiter arrives, so memory holds one part at a time.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

_CRLF = b"\r\n"
_MORE = object()  # _step's answer when the buffer holds too little to advance
#: A preamble or a header block longer than this is not a DICOMweb body.
MAX_HEADER_BYTES = 64 * 1024


class MalformedMultipart(ValueError):
    """The body is not a multipart/related body with the announced boundary."""


def new_boundary() -> str:
    """A boundary that cannot occur in a DICOM part by chance."""
    return f"dicomnode-{uuid.uuid4().hex}"


def content_type(*, part_type: str, boundary: str, transfer_syntax_uid: str | None = None) -> str:
    """The Content-Type of a multipart/related response whose parts are ``part_type``."""
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    if transfer_syntax_uid:
        value += f"; transfer-syntax={transfer_syntax_uid}"
    return value


class MultipartWriter:
    """Writes the framing of a multipart/related body around parts the caller streams."""

    def __init__(self, boundary: str | None = None) -> None:
        self.boundary = boundary or new_boundary()
        self._first = True

    def part_header(self, content_type: str, *, location: str | None = None) -> bytes:
        """The delimiter and headers that open the next part."""
        lead = b"" if self._first else _CRLF
        self._first = False
        headers = f"--{self.boundary}\r\nContent-Type: {content_type}\r\n"
        if location:
            headers += f"Content-Location: {location}\r\n"
        return lead + headers.encode("ascii") + _CRLF

    def close(self) -> bytes:
        """The close delimiter; an empty body is just the close delimiter."""
        return f"\r\n--{self.boundary}--\r\n".encode("ascii")

    def part(self, content_type: str, chunks: Iterable[bytes], *, location: str | None = None) -> Iterator[bytes]:
        """Yield one whole part: its header, then its body chunks."""
        yield self.part_header(content_type, location=location)
        yield from chunks


@dataclass(slots=True)
class Part:
    """One body part: its headers (names lower-cased) and its content."""

    headers: Mapping[str, str]
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


_TOKEN_PARAM = re.compile(r'\s*;\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into its lower-cased media type and its parameters.

    Raises
    ------
    MalformedMultipart
        When a parameter is not ``name=value``.
    """
    media_type, _, rest = value.partition(";")
    params: dict[str, str] = {}
    rest = ";" + rest if rest else ""
    position = 0
    while position < len(rest):
        match = _TOKEN_PARAM.match(rest, position)
        if match is None:
            if rest[position:].strip(" ;"):
                raise MalformedMultipart(f"cannot parse Content-Type parameters {rest[position:]!r}")
            break
        raw = match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
        position = match.end()
    return media_type.strip().lower(), params


class MultipartParser:
    """Incremental parser: ``feed`` chunks, collect finished parts, then ``close``."""

    def __init__(self, boundary: str) -> None:
        if not boundary or len(boundary) > 70:
            raise MalformedMultipart("the boundary parameter must have 1 to 70 characters (RFC 2046 5.1.1)")
        self.boundary = boundary
        self.parts_seen = 0
        # Every delimiter is CRLF "--" boundary; the buffer starts with a CRLF so that the
        # first one (which may open the body without a CRLF) looks like the others.
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        self._buffer = bytearray(_CRLF)
        self._state = "preamble"
        self._search_from = 0
        self._headers: dict[str, str] = {}

    @property
    def done(self) -> bool:
        """True once the close delimiter has been read."""
        return self._state == "done"

    def feed(self, chunk: bytes) -> list[Part]:
        """Add body bytes; return the parts they completed.

        Raises
        ------
        MalformedMultipart
            When the bytes break the multipart syntax.
        """
        if self._state == "done":
            return []  # the epilogue is ignored
        self._buffer += chunk
        parts: list[Part] = []
        while self._state != "done":
            step = self._step()
            if step is _MORE:
                break
            if isinstance(step, Part):
                parts.append(step)
        return parts

    def close(self) -> None:
        """Declare the end of the body.

        Raises
        ------
        MalformedMultipart
            When the body ended before the close delimiter.
        """
        if self._state == "done":
            return
        if self._state == "preamble":
            raise MalformedMultipart(f"no boundary delimiter --{self.boundary} in the body")
        raise MalformedMultipart(
            f"body ended inside part {self.parts_seen + 1}, before the close delimiter --{self.boundary}--"
        )

    def _step(self) -> Part | object | None:
        """Advance by one syntactic unit: a Part, None (advanced), or _MORE (needs bytes)."""
        buffer, delimiter = self._buffer, self._delimiter
        if self._state == "preamble":
            index = buffer.find(delimiter)
            if index < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    raise MalformedMultipart(f"no boundary delimiter --{self.boundary} in the first 64 KiB")
                return _MORE
            del buffer[: index + len(delimiter)]
            self._state = "after_delimiter"
            return None
        if self._state == "after_delimiter":
            if len(buffer) < 2:
                return _MORE
            if buffer[:2] == b"--":
                self._state = "done"
                buffer.clear()
                return None
            end = buffer.find(_CRLF)
            if end < 0:
                if len(buffer) > 1024:
                    raise MalformedMultipart("boundary delimiter line does not end with CRLF")
                return _MORE
            if buffer[:end].strip(b" \t"):
                raise MalformedMultipart("unexpected bytes after a boundary delimiter")
            del buffer[: end + 2]
            self._state = "headers"
            return None
        if self._state == "headers":
            if buffer[:2] == _CRLF:
                self._headers, consumed = {}, 2
            else:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEADER_BYTES:
                        raise MalformedMultipart(f"part {self.parts_seen + 1}: headers longer than 64 KiB")
                    return _MORE
                self._headers = self._parse_headers(bytes(buffer[:end]))
                consumed = end + 4
            del buffer[:consumed]
            self._state, self._search_from = "body", 0
            return None
        # body
        index = buffer.find(delimiter, self._search_from)
        if index < 0:
            self._search_from = max(0, len(buffer) - len(delimiter) + 1)
            return _MORE
        part = Part(headers=self._headers, content=bytes(buffer[:index]))
        del buffer[: index + len(delimiter)]
        self.parts_seen += 1
        self._state = "after_delimiter"
        return part

    def _parse_headers(self, block: bytes) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in block.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise MalformedMultipart(f"part {self.parts_seen + 1}: header line {line[:80]!r} has no name")
            headers[name.strip().lower()] = value.strip()
        return headers
