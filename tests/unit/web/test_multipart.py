"""multipart/related framing: what the writer frames, the parser reads back, in any chunking."""

from __future__ import annotations

import email.parser
import email.policy

import pytest

from dicomnode.web.dicomweb.multipart import (
    MalformedMultipart,
    MultipartParser,
    MultipartWriter,
    content_type,
    parse_content_type,
)

PARTS = [b"A" * 10, b"", b"\r\n--almost-a-boundary" + b"B" * 70_000, b"ends with CRLF\r\n"]


def written(parts: list[bytes]) -> tuple[str, bytes]:
    writer = MultipartWriter()
    body = b"".join(b"".join(writer.part("application/dicom", [p])) for p in parts) + writer.close()
    return writer.boundary, body


@pytest.mark.parametrize("chunk", [1, 3, 64, 4096, 10**9])
def test_parser_reads_back_what_the_writer_wrote(chunk: int) -> None:
    boundary, body = written(PARTS)
    parser = MultipartParser(boundary)
    parts = []
    for start in range(0, len(body), chunk):
        parts += parser.feed(body[start : start + chunk])
    parser.close()
    assert [p.content for p in parts] == PARTS
    assert {p.content_type for p in parts} == {"application/dicom"}


def test_writer_output_is_standard_mime() -> None:
    boundary, body = written(PARTS[:2])
    head = f"Content-Type: {content_type(part_type='application/dicom', boundary=boundary)}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    assert [p.get_payload(decode=True) for p in message.iter_parts()] == PARTS[:2]


def test_preamble_leading_crlf_epilogue_and_padding_are_accepted() -> None:
    body = b"preamble\r\n--b \t\r\nContent-Type: application/dicom\r\n\r\nX\r\n--b--\r\nepilogue"
    parser = MultipartParser("b")
    assert [p.content for p in parser.feed(body)] == [b"X"]
    parser.close()
    parser = MultipartParser("b")  # dicomweb-client opens with CRLF and ends without one
    assert [p.content for p in parser.feed(b"\r\n--b\r\n\r\nY\r\n--b--")] == [b"Y"]
    parser.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no boundary here", "no boundary delimiter"),
        (b"--b\r\nContent-Type: x\r\n\r\nunfinished", "before the close delimiter"),
        (b"--b\r\nbroken header\r\n\r\nX\r\n--b--", "has no name"),
        (b"--bXYZ\r\n\r\nX\r\n--b--", "unexpected bytes after a boundary"),
    ],
)
def test_malformed_bodies_say_why(body: bytes, message: str) -> None:
    parser = MultipartParser("b")
    with pytest.raises(MalformedMultipart, match=message):
        parser.feed(body)
        parser.close()


def test_content_type_parameters() -> None:
    assert parse_content_type('Multipart/Related; type="application/dicom"; boundary="a b;c"') == (
        "multipart/related",
        {"type": "application/dicom", "boundary": "a b;c"},
    )
    assert parse_content_type("application/dicom") == ("application/dicom", {})
    with pytest.raises(MalformedMultipart):
        parse_content_type("multipart/related; =x")
    with pytest.raises(MalformedMultipart):
        MultipartParser("")
