"""The few DICOM byte layouts the storage hot path writes and reads itself.

pydicom and pynetdicom encode these through general Dataset machinery, about 0.3-0.6 ms per
instance on this project's machine; these fixed layouts take microseconds. Each function
follows one table of the standard, cited beside it, and the unit tests compare the bytes with
what pydicom/pynetdicom produce for the same values.
"""

from __future__ import annotations

import struct

#: Part 10 preamble (128 zero bytes) and prefix, PS3.10 7.1.
PREAMBLE = b"\x00" * 128 + b"DICM"

# Command Field values, PS3.7 E.1-1 / 9.3.1.1 / 9.3.5.
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
#: Command Data Set Type meaning "no data set follows", PS3.7 E.1-1.
NO_DATASET = 0x0101

# Command set tags (group 0000), PS3.7 E.1-1.
AFFECTED_SOP_CLASS_UID = 0x00000002
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
MESSAGE_ID_BEING_RESPONDED_TO = 0x00000120
COMMAND_DATA_SET_TYPE = 0x00000800
STATUS = 0x00000900
ERROR_COMMENT = 0x00000902
AFFECTED_SOP_INSTANCE_UID = 0x00001000

_P_DATA_TF = 0x04
_LAST_COMMAND_FRAGMENT = 0x03  # message control header: command, last fragment (PS3.8 E.2)


class MalformedCommand(ValueError):
    """A DIMSE command set that cannot be decoded."""


def _padded(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def _explicit_short(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """An explicit VR little endian element with a 2-byte length (PS3.5 7.1.2)."""
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def file_meta_prefix(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str,
    source_ae_title: str = "",
) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (PS3.10 7.1, table 7.1-1).

    The same bytes as pydicom's ``write_file_meta_info(enforce_standard=True)`` for these
    values: UIDs padded with NUL, SH/AE with a space, elements in tag order.
    """
    elements = [
        struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
        _explicit_short(0x0002, 0x0002, b"UI", _padded(sop_class_uid, b"\x00")),
        _explicit_short(0x0002, 0x0003, b"UI", _padded(sop_instance_uid, b"\x00")),
        _explicit_short(0x0002, 0x0010, b"UI", _padded(transfer_syntax_uid, b"\x00")),
        _explicit_short(0x0002, 0x0012, b"UI", _padded(implementation_class_uid, b"\x00")),
        _explicit_short(0x0002, 0x0013, b"SH", _padded(implementation_version_name, b" ")),
    ]
    if source_ae_title:
        elements.append(_explicit_short(0x0002, 0x0016, b"AE", _padded(source_ae_title, b" ")))
    body = b"".join(elements)
    return PREAMBLE + _explicit_short(0x0002, 0x0000, b"UL", struct.pack("<I", len(body))) + body


def decode_command(data: bytes | bytearray | memoryview) -> dict[int, bytes]:
    """Split an implicit VR little endian command set (PS3.7 6.3.1) into tag -> raw value.

    Raises
    ------
    MalformedCommand
        When an element runs past the end or an element is outside group 0000.
    """
    view = memoryview(data)
    elements: dict[int, bytes] = {}
    offset, end = 0, len(view)
    while offset < end:
        if end - offset < 8:
            raise MalformedCommand(f"command set ends inside an element header at byte {offset}")
        group, element, length = struct.unpack_from("<HHI", view, offset)
        offset += 8
        if group != 0x0000 or offset + length > end:
            raise MalformedCommand(f"bad command element ({group:04X},{element:04X}) of {length} bytes")
        elements[element] = bytes(view[offset:offset + length])
        offset += length
    return elements


def command_uint(elements: dict[int, bytes], tag: int) -> int | None:
    """A US/UL command value, or None when absent or not 2/4 bytes."""
    raw = elements.get(tag & 0xFFFF)
    if raw is None or len(raw) not in (2, 4):
        return None
    return int.from_bytes(raw, "little")


def command_text(elements: dict[int, bytes], tag: int) -> str:
    """A UI/LO command value without its padding ('' when absent or not ASCII)."""
    raw = elements.get(tag & 0xFFFF, b"")
    try:
        return raw.decode("ascii").rstrip("\x00 ")
    except UnicodeDecodeError:
        return ""


def _implicit(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _response_command(
    *, command_field: int, sop_class_uid: str, message_id: int, status: int, sop_instance_uid: str = "",
    error_comment: str = "",
) -> bytes:
    """A response command set without a data set (PS3.7 9.3.1.2 C-STORE-RSP, 9.3.5.2 C-ECHO-RSP)."""
    elements = [
        _implicit(AFFECTED_SOP_CLASS_UID, _padded(sop_class_uid, b"\x00")),
        _implicit(COMMAND_FIELD, struct.pack("<H", command_field)),
        _implicit(MESSAGE_ID_BEING_RESPONDED_TO, struct.pack("<H", message_id)),
        _implicit(COMMAND_DATA_SET_TYPE, struct.pack("<H", NO_DATASET)),
        _implicit(STATUS, struct.pack("<H", status)),
    ]
    if error_comment:
        comment = error_comment[:64].encode("ascii", "replace")  # LO: 64 characters
        elements.append(_implicit(ERROR_COMMENT, comment + b" " if len(comment) % 2 else comment))
    if sop_instance_uid:
        elements.append(_implicit(AFFECTED_SOP_INSTANCE_UID, _padded(sop_instance_uid, b"\x00")))
    body = b"".join(elements)
    return _implicit(0x00000000, struct.pack("<I", len(body))) + body


def p_data_command(context_id: int, command: bytes) -> bytes:
    """A P-DATA-TF PDU carrying ``command`` as one last command fragment (PS3.8 9.3.5, E.2)."""
    item = struct.pack(">IBB", len(command) + 2, context_id, _LAST_COMMAND_FRAGMENT) + command
    return struct.pack(">BBI", _P_DATA_TF, 0, len(item)) + item


def store_response(
    *, context_id: int, sop_class_uid: str, sop_instance_uid: str, message_id: int, status: int,
    error_comment: str = "",
) -> bytes:
    """The C-STORE-RSP for one request, as a P-DATA-TF PDU ready for the socket."""
    return p_data_command(
        context_id,
        _response_command(
            command_field=C_STORE_RSP, sop_class_uid=sop_class_uid, message_id=message_id, status=status,
            sop_instance_uid=sop_instance_uid, error_comment=error_comment,
        ),
    )


def echo_response(*, context_id: int, sop_class_uid: str, message_id: int) -> bytes:
    """A C-ECHO-RSP with Success, as a P-DATA-TF PDU."""
    return p_data_command(
        context_id,
        _response_command(command_field=C_ECHO_RSP, sop_class_uid=sop_class_uid, message_id=message_id, status=0),
    )
