"""The hand-written encodings of the storage fast path against pydicom's and pynetdicom's own."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

from dicomnode.net import wire


def pydicom_meta(sop_class: str, sop_instance: str, ts: str, icu: str, ivn: str, ae: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = icu
    meta.ImplementationVersionName = ivn
    if ae:
        meta.SourceApplicationEntityTitle = ae
    buffer = BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("sop_instance", "ts", "ivn", "ae"),
    [
        ("1.2.3.4", "1.2.840.10008.1.2.1", "DICOMNODE_01", "STORESCU"),  # even lengths
        ("1.2.3.45", "1.2.840.10008.1.2", "DICOMNODE_1", "SCU"),  # odd: padded
        ("1.2.826.0.1.3680043.8.498.123456789", "1.2.840.10008.1.2.4.50", "X", ""),  # no source AE
    ],
)
def test_file_meta_prefix_is_what_pydicom_writes(sop_instance: str, ts: str, ivn: str, ae: str) -> None:
    sop_class, icu = "1.2.840.10008.5.1.4.1.1.2", "2.25.78746056978619758667284754598992560301"
    ours = wire.file_meta_prefix(
        sop_class_uid=sop_class, sop_instance_uid=sop_instance, transfer_syntax_uid=ts,
        implementation_class_uid=icu, implementation_version_name=ivn, source_ae_title=ae,
    )
    assert ours == pydicom_meta(sop_class, sop_instance, ts, icu, ivn, ae)


def decode_response(pdu_bytes: bytes) -> tuple[int, C_STORE]:
    pdu = P_DATA_TF()
    pdu.decode(pdu_bytes)
    message = DIMSEMessage()
    complete = message.decode_msg(pdu.to_primitive())
    assert complete
    return int(message.context_id), message.message_to_primitive()  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(("status", "comment"), [(0x0000, ""), (0xC220, "StudyInstanceUID is missing or empty"),
                                                 (0x0117, "x" * 80)])
def test_store_response_decodes_in_pynetdicom(status: int, comment: str) -> None:
    raw = wire.store_response(
        context_id=7, sop_class_uid="1.2.840.10008.5.1.4.1.1.4", sop_instance_uid="1.2.3.45",
        message_id=513, status=status, error_comment=comment,
    )
    context_id, rsp = decode_response(raw)
    assert context_id == 7
    assert rsp.__class__ is C_STORE and rsp.is_valid_response
    assert rsp.MessageIDBeingRespondedTo == 513
    assert rsp.AffectedSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert rsp.AffectedSOPInstanceUID == "1.2.3.45"
    assert rsp.Status == status
    assert (rsp.ErrorComment or "") == comment[:64]


def test_echo_response_decodes_in_pynetdicom() -> None:
    from pynetdicom.dimse_primitives import C_ECHO

    context_id, rsp = decode_response(
        wire.echo_response(context_id=1, sop_class_uid="1.2.840.10008.1.1", message_id=9)
    )
    assert context_id == 1 and isinstance(rsp, C_ECHO)
    assert rsp.Status == 0 and rsp.MessageIDBeingRespondedTo == 9


def test_decode_command_reads_pynetdicoms_c_store_rq() -> None:
    request = C_STORE()
    request.MessageID = 77
    request.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    request.AffectedSOPInstanceUID = "1.2.3.4.5"
    request.Priority = 2
    request.DataSet = BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    [pdata] = list(message.encode_msg(context_id=3, max_pdu_length=0))[:1]
    command = pdata.presentation_data_value_list[0][1][1:]  # drop the message control header
    elements = wire.decode_command(command)
    assert wire.command_uint(elements, wire.COMMAND_FIELD) == wire.C_STORE_RQ
    assert wire.command_uint(elements, wire.MESSAGE_ID) == 77
    assert wire.command_uint(elements, wire.COMMAND_DATA_SET_TYPE) != wire.NO_DATASET
    assert wire.command_text(elements, wire.AFFECTED_SOP_INSTANCE_UID) == "1.2.3.4.5"
    assert wire.command_text(elements, wire.AFFECTED_SOP_CLASS_UID) == "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x00\x00\x00\x04\x00",  # header cut short
        b"\x00\x00\x00\x01\x10\x00\x00\x00ab",  # value runs past the end
        b"\x08\x00\x16\x00\x02\x00\x00\x00ab",  # not group 0000
    ],
)
def test_decode_command_refuses_malformed_sets(raw: bytes) -> None:
    with pytest.raises(wire.MalformedCommand):
        wire.decode_command(raw)
