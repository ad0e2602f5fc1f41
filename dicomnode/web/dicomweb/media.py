"""Accept header negotiation for DICOMweb: media types and transfer syntaxes (PS3.18 8.7).

A client names what it accepts as media ranges such as
``multipart/related; type="application/dicom"; transfer-syntax=*``. For each stored instance
the origin server picks the first range (by quality, then order) it can honour: as stored
when the range allows it (``transfer-syntax=*``, the stored UID, or a wildcard type), or
transcoded to Explicit VR Little Endian, the default for application/dicom and
application/octet-stream (PS3.18 Table 8.7.3-2), when pydicom can decode the stored syntax.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.pixels import get_decoder

from dicomnode.web.dicomweb.multipart import MalformedMultipart, parse_content_type

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
#: Syntaxes whose pixel data is native little endian, readable without a decoder.
NATIVE_LITTLE_ENDIAN = frozenset(
    {EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN}
)

#: Media type of one compressed frame per transfer syntax (PS3.18 Table 8.7.3-5).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
_ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One entry of an Accept header."""

    media_type: str  # lower-cased, e.g. "multipart/related", "application/dicom", "*/*"
    part_type: str  # the type parameter of multipart/related, else the media type itself
    transfer_syntax: str | None
    q: float

    @property
    def multipart(self) -> bool:
        return self.media_type == "multipart/related"

    def accepts(self, media_type: str) -> bool:
        """True when this range covers the part media type ``media_type``."""
        part = self.part_type
        if part == "*/*" or part == media_type:
            return True
        return part.endswith("/*") and media_type.startswith(part[:-1])


def _split(header: str) -> list[str]:
    """Split an Accept value on the commas that are not inside quotes."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_accept(header: str | None, *, default: str) -> list[MediaRange]:
    """The media ranges of an Accept header, best first; ``default`` when there is none.

    Entries that cannot be parsed, or with ``q=0``, are dropped (RFC 9110 12.5.1).
    """
    ranges: list[MediaRange] = []
    for item in _split(header or "") or [default]:
        try:
            media_type, params = parse_content_type(item)
            q = float(params.get("q", "1"))
        except (MalformedMultipart, ValueError):
            continue
        if q <= 0 or "/" not in media_type:
            continue
        part_type = params.get("type", "").lower() if media_type == "multipart/related" else media_type
        part_type = _ALIASES.get(part_type, part_type)
        ranges.append(MediaRange(media_type, part_type, params.get("transfer-syntax"), q))
    return sorted(ranges, key=lambda r: -r.q)  # stable: equal q keeps the client's order


def decodable(transfer_syntax_uid: str) -> bool:
    """True when pydicom (with the installed plugins) can decode pixel data in this syntax."""
    if transfer_syntax_uid in NATIVE_LITTLE_ENDIAN or transfer_syntax_uid == EXPLICIT_VR_BIG_ENDIAN:
        return True
    try:
        return bool(get_decoder(transfer_syntax_uid).is_available)
    except (NotImplementedError, ValueError):
        return False


def convertible_to_explicit_little(transfer_syntax_uid: str) -> bool:
    """True when a stored instance can be re-encoded as Explicit VR Little Endian here.

    Big endian is refused: pydicom does not swap the bytes of every binary value.
    """
    if transfer_syntax_uid == EXPLICIT_VR_BIG_ENDIAN:
        return False
    return transfer_syntax_uid in NATIVE_LITTLE_ENDIAN or decodable(transfer_syntax_uid)


@dataclass(frozen=True, slots=True)
class Choice:
    """What to send: the media range that matched and the transfer syntax to send in."""

    media_range: MediaRange
    media_type: str
    transfer_syntax_uid: str

    def transcode(self, stored_transfer_syntax_uid: str) -> bool:
        return self.transfer_syntax_uid != stored_transfer_syntax_uid


def choose_dicom(ranges: list[MediaRange], stored: str, *, multipart_only: bool) -> Choice | None:
    """Pick how to send a stored instance as application/dicom, or None (406)."""
    for media_range in ranges:
        if multipart_only and not media_range.multipart and media_range.media_type != "*/*":
            continue
        if media_range.multipart and not media_range.part_type:
            media_range = MediaRange(media_range.media_type, DICOM, media_range.transfer_syntax, media_range.q)
        if not media_range.accepts(DICOM):
            continue
        wanted = media_range.transfer_syntax
        if wanted == "*" or wanted == stored or (wanted is None and media_range.part_type != DICOM):
            return Choice(media_range, DICOM, stored)  # a wildcard type names no default syntax
        if (wanted or EXPLICIT_VR_LITTLE_ENDIAN) == EXPLICIT_VR_LITTLE_ENDIAN and convertible_to_explicit_little(
            stored
        ):
            return Choice(media_range, DICOM, EXPLICIT_VR_LITTLE_ENDIAN)
    return None


def choose_pixels(ranges: list[MediaRange], stored: str) -> Choice | None:
    """Pick how to send frames (or pixel bulk data) of an instance stored in ``stored``, or None.

    Native frames go as application/octet-stream in Explicit VR Little Endian; compressed
    frames go as stored, as application/octet-stream with ``transfer-syntax=*`` or the
    stored UID, or as their own image media type (image/jp2, image/jpeg, ...).
    """
    compressed_type = FRAME_MEDIA_TYPES.get(stored)
    native = stored in NATIVE_LITTLE_ENDIAN
    for media_range in ranges:
        wanted = media_range.transfer_syntax
        part = media_range.part_type or OCTET_STREAM
        if part == "*/*" and wanted in (None, "*"):
            if native:
                return Choice(media_range, OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)
            return Choice(media_range, compressed_type or OCTET_STREAM, stored)
        if media_range.accepts(OCTET_STREAM):
            if wanted == "*" or wanted == stored or (native and wanted in (None, EXPLICIT_VR_LITTLE_ENDIAN)):
                return Choice(media_range, OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN if native else stored)
            if wanted in (None, EXPLICIT_VR_LITTLE_ENDIAN) and decodable(stored):
                return Choice(media_range, OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)
        if compressed_type and media_range.accepts(compressed_type) and wanted in (None, "*", stored):
            return Choice(media_range, compressed_type, stored)
    return None


def choose(ranges: list[MediaRange], offered: list[str]) -> str | None:
    """The first of ``offered`` single-part media types that the ranges accept, best range first."""
    for media_range in ranges:
        for media_type in offered:
            if media_range.accepts(media_type):
                return media_type
    return None
