"""The storage data phase (``net.data_phase``): which associations take it, and its edge cases.

Every other C-STORE test goes through it as well (their associations are storage-only); these
check what only it does: fragments of small PDUs, C-ECHO on a storage association, a broken
P-DATA-TF, the hand-off to pynetdicom when query/retrieve contexts are present, and the switch.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from dicomnode.db.models import Instance
from dicomnode.net import status
from tests.helpers import (
    RunningNode,
    associate,
    c_echo,
    c_store_files,
    c_store_on,
    count_rows,
    dataset_bytes,
    store_contents,
    wait_for,
)

MULTIFRAME = Path(get_testdata_file("emri_small.dcm"))  # type: ignore[arg-type]  # 10 frames, 20 kB
CT = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]


def stored_dataset(root: Path) -> bytes:
    [path] = [p for p in store_contents(root) if p.suffix == ".dcm"]
    return dataset_bytes(path)


def served_by(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.served_by for r in caplog.records if r.getMessage() == "association data phase"]  # type: ignore[attr-defined]


def test_storage_association_takes_the_data_phase(node: RunningNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dicomnode.net.data_phase")
    [response] = c_store_files(node, [MULTIFRAME])
    assert response.status == status.SUCCESS
    assert stored_dataset(node.store_root) == dataset_bytes(MULTIFRAME)
    assert served_by(caplog) == ["data_phase"]


def test_query_retrieve_association_stays_with_pynetdicom(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    """A C-STORE on an association that also negotiated C-FIND is stored by pynetdicom's path."""
    caplog.set_level(logging.DEBUG, logger="dicomnode.net.data_phase")
    meta = read_file_meta_info(CT)
    ae = AE(ae_title="MIXEDSCU")
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    ae.requested_contexts = [
        build_context(Verification),
        build_context(StudyRootQueryRetrieveInformationModelFind),
        build_context(str(meta.MediaStorageSOPClassUID), [str(meta.TransferSyntaxUID)]),
    ]
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        assert c_store_on(assoc, CT).status == status.SUCCESS
    finally:
        assoc.release()
    assert stored_dataset(node.store_root) == dataset_bytes(CT)
    assert served_by(caplog) == ["pynetdicom"]


def test_small_pdus_reassemble_byte_identical(node_factory) -> None:  # type: ignore[no-untyped-def]
    """net.max_pdu 4096: the sender cuts the dataset into many fragments, one per PDU."""
    node = node_factory(net={"max_pdu": 4096})
    assert [r.status for r in c_store_files(node, [MULTIFRAME])] == [status.SUCCESS]
    assert stored_dataset(node.store_root) == dataset_bytes(MULTIFRAME)


def test_echo_on_a_storage_association(node: RunningNode) -> None:
    assoc = associate(node, files=[CT])
    assert assoc.is_established  # type: ignore[attr-defined]
    try:
        first = assoc.send_c_echo()  # type: ignore[attr-defined]
        stored = c_store_on(assoc, CT)
        second = assoc.send_c_echo()  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    assert (int(first.Status), stored.status, int(second.Status)) == (0, status.SUCCESS, 0)


@pytest.mark.parametrize(
    ("what", "pdu"),
    [
        # a PDV whose length runs past its PDU
        ("pdv overruns", struct.pack(">BBI", 4, 0, 10) + struct.pack(">IBB", 100, 1, 3) + b"xxxx"),
        # a context the association never accepted
        ("unknown context", struct.pack(">BBI", 4, 0, 8) + struct.pack(">IBB", 4, 99, 3) + b"ab"),
        # a data fragment before any command
        ("data first", struct.pack(">BBI", 4, 0, 8) + struct.pack(">IBB", 4, 1, 0) + b"ab"),
        # a command set that is not one
        ("bad command", struct.pack(">BBI", 4, 0, 10) + struct.pack(">IBB", 6, 1, 3) + b"\x00\x00\x00\x01"),
        # larger than net.max_pdu
        ("too large", struct.pack(">BBI", 4, 0, 2**30)),
    ],
)
def test_broken_p_data_aborts_and_node_keeps_serving(node: RunningNode, what: str, pdu: bytes) -> None:
    assoc = associate(node, files=[CT])
    assert assoc.is_established  # type: ignore[attr-defined]
    assoc.dul.socket.send(pdu)  # type: ignore[attr-defined]
    assert wait_for(lambda: assoc.is_aborted, timeout=10), f"{what}: the node did not abort"  # type: ignore[attr-defined]
    assert store_contents(node.store_root) == []
    assert count_rows(node.db_url, Instance) == 0
    assert c_echo(node) == status.SUCCESS


def test_direct_store_off_uses_pynetdicom(node_factory, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG, logger="dicomnode.net.data_phase")
    node = node_factory(net={"direct_store": False})
    assert [r.status for r in c_store_files(node, [MULTIFRAME])] == [status.SUCCESS]
    assert stored_dataset(node.store_root) == dataset_bytes(MULTIFRAME)
    assert served_by(caplog) == []
