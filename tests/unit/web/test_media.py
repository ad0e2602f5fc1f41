"""Accept negotiation (PS3.18 8.7): which representation of a stored instance goes out."""

from __future__ import annotations

import pytest

from dicomnode.web.dicomweb.media import choose, choose_dicom, choose_pixels, parse_accept

EVRLE = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
J2K = "1.2.840.10008.1.2.4.90"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
MPEG2 = "1.2.840.10008.1.2.4.100"
DICOM = 'multipart/related; type="application/dicom"'


@pytest.mark.parametrize(
    ("accept", "stored", "expected"),
    [
        (None, J2K, J2K),  # no Accept: as stored
        ("*/*", J2K, J2K),
        (DICOM, EVRLE, EVRLE),
        (DICOM, J2K, EVRLE),  # no transfer-syntax: Explicit VR Little Endian, transcoded
        (DICOM, IMPLICIT, EVRLE),
        (f"{DICOM}; transfer-syntax=*", J2K, J2K),
        (f"{DICOM}; transfer-syntax={J2K}", J2K, J2K),
        (f"{DICOM}; transfer-syntax={JPEG_BASELINE}", J2K, None),  # no encoder here
        (DICOM, BIG_ENDIAN, None),  # pydicom does not swap every value
        (DICOM, MPEG2, None),  # no decoder
        (f"{DICOM}; transfer-syntax={JPEG_BASELINE}, {DICOM}; transfer-syntax=*; q=0.5", J2K, J2K),
        (f"{DICOM}; transfer-syntax=*; q=0.2, {DICOM}", J2K, EVRLE),  # the better q wins
        ("text/html", EVRLE, None),
        ("multipart/related; type=application/dicom", EVRLE, EVRLE),  # unquoted type
    ],
)
def test_choose_dicom(accept: str | None, stored: str, expected: str | None) -> None:
    choice = choose_dicom(parse_accept(accept, default="*/*"), stored, multipart_only=False)
    assert (choice.transfer_syntax_uid if choice else None) == expected


def test_bare_application_dicom_is_single_part_only() -> None:
    ranges = parse_accept("application/dicom; transfer-syntax=*", default="*/*")
    assert choose_dicom(ranges, EVRLE, multipart_only=False) is not None
    assert choose_dicom(ranges, EVRLE, multipart_only=True) is None


@pytest.mark.parametrize(
    ("accept", "stored", "expected"),
    [
        ('multipart/related; type="application/octet-stream"', EVRLE, ("application/octet-stream", EVRLE)),
        ('multipart/related; type="application/octet-stream"', J2K, ("application/octet-stream", EVRLE)),
        (
            'multipart/related; type="application/octet-stream"; transfer-syntax=*',
            J2K,
            ("application/octet-stream", J2K),
        ),
        ('multipart/related; type="image/jp2"', J2K, ("image/jp2", J2K)),
        ('multipart/related; type="image/jpeg"', J2K, None),
        ('multipart/related; type="image/jpeg"', EVRLE, None),
        ('multipart/related; type="image/*"', J2K, ("image/jp2", J2K)),
        ("*/*", J2K, ("image/jp2", J2K)),
        ("*/*", EVRLE, ("application/octet-stream", EVRLE)),
        ('multipart/related; type="application/octet-stream"', MPEG2, None),
    ],
)
def test_choose_pixels(accept: str, stored: str, expected: tuple[str, str] | None) -> None:
    choice = choose_pixels(parse_accept(accept, default="*/*"), stored)
    assert ((choice.media_type, choice.transfer_syntax_uid) if choice else None) == expected


def test_choose_single_part_types_and_broken_entries() -> None:
    assert choose(parse_accept("image/png;q=0.9, image/jpeg", default="image/jpeg"), ["image/jpeg", "image/png"]) == (
        "image/jpeg"
    )
    assert choose(parse_accept("garbage, image/png", default="x/y"), ["image/jpeg", "image/png"]) == "image/png"
    assert choose(parse_accept("image/*;q=0", default="x/y"), ["image/jpeg"]) is None
