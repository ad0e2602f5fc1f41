"""C-FIND, C-MOVE and C-GET against real peers: DCMTK findscu/movescu/getscu and storescp,
plus pynetdicom's SCU where a test needs the exact status of each response.

The node is loaded by C-STORE (``net.scu.send_files``) with pydicom's bundled files, four
studies of four patients:

    CT_small.dcm    CompressedSamples^CT1  1CT1     20040119  CT   explicit VR LE
    MR_small.dcm    CompressedSamples^MR1  4MR1     20040826  MR   explicit VR LE
    JPEG2000.dcm    CompressedSamples^NM1  8NM1     20040826  NM   JPEG 2000 (compressed)
    SC_rgb.dcm      Lestrade^G             ID1      20170101  OT   explicit VR LE
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from dicomnode.config import NetSettings
from dicomnode.db.models import Instance
from dicomnode.db.session import make_engine, make_sessionmaker, sqlalchemy_url
from dicomnode.net import qr, scp, scu, status
from tests.helpers import RunningNode, dcmtk, get_port

pytestmark = [pytest.mark.dcmtk]

BUNDLED = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb.dcm"]
DESTINATION = "STORESCP"


def original(name: str) -> Dataset:
    return dcmread(get_testdata_file(name))


def assert_same_content(received: Dataset, sent: Dataset) -> None:
    """Every element of the sent instance (but group lengths) arrived with its value."""
    assert received.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    for elem in sent:
        if elem.tag.element == 0 or elem.tag == 0xFFFCFFFC:
            continue
        assert elem.tag in received, f"{elem.tag} missing"
        assert received[elem.tag].value == elem.value, f"{elem.tag} differs"


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A DCMTK storescp (the C-MOVE destination), accepting every transfer syntax it knows."""
    port, folder = get_port(), tmp_path / "storescp"
    folder.mkdir()
    process = subprocess.Popen(
        [dcmtk("storescp"), "-aet", DESTINATION, "+xa", "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port)
        yield port, folder
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


@pytest.fixture
def node(node_factory, storescp: tuple[int, Path]) -> RunningNode:  # type: ignore[no-untyped-def]
    """A node that knows STORESCP as a destination, loaded with the bundled files."""
    port, _folder = storescp
    running = node_factory(
        destinations=[{"name": "test-storescp", "ae_title": DESTINATION, "host": "127.0.0.1", "port": port}]
    )
    results = scu.send_files(
        scu.Peer(running.ae_title, "127.0.0.1", running.port), [Path(get_testdata_file(n)) for n in BUNDLED]
    )
    assert all(r.ok for r in results), results
    return running


def run(tool: str, node: RunningNode, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk(tool), "-aec", node.ae_title, *args, "127.0.0.1", str(node.port)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def findscu(node: RunningNode, tmp_path: Path, *args: str) -> list[Dataset]:
    """Run findscu with ``-X`` and read back the response identifiers it extracted."""
    out = tmp_path / f"find-{time.monotonic_ns()}"
    out.mkdir()
    result = run("findscu", node, "-X", "-od", str(out), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def keys(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("-k", pair)]


# --- C-FIND ---------------------------------------------------------------------------------


def test_findscu_study_root_study_level(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    responses = findscu(
        node,
        tmp_path,
        "-S",
        *keys(
            "QueryRetrieveLevel=STUDY",
            "PatientName=compressed*",
            "StudyInstanceUID",
            "StudyDate",
            "ModalitiesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
            "RetrieveAETitle",
        ),
    )
    expected = {original(n).StudyInstanceUID: original(n) for n in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")}
    assert {r.StudyInstanceUID for r in responses} == set(expected)
    for response in responses:
        sent = expected[response.StudyInstanceUID]
        assert response.QueryRetrieveLevel == "STUDY"
        assert str(response.PatientName) == str(sent.PatientName)
        assert response.StudyDate == sent.StudyDate
        assert response.ModalitiesInStudy == sent.Modality
        assert (response.NumberOfStudyRelatedSeries, response.NumberOfStudyRelatedInstances) == (1, 1)
        assert response.RetrieveAETitle == node.ae_title


@pytest.mark.parametrize(
    ("model", "level_keys", "row", "expect"),
    [
        (
            "-P",
            ["QueryRetrieveLevel=PATIENT", "PatientID", "NumberOfPatientRelatedStudies"],
            lambda r: (r.PatientID, r.NumberOfPatientRelatedStudies),
            {("1CT1", 1), ("4MR1", 1), ("8NM1", 1), ("ID1", 1)},
        ),
        (
            "-P",
            ["QueryRetrieveLevel=STUDY", "PatientID=4MR1", "StudyInstanceUID", "StudyDate"],
            lambda r: (r.PatientID, r.StudyDate),
            {("4MR1", "20040826")},
        ),
        (
            "-S",
            ["QueryRetrieveLevel=STUDY", "StudyDate=20040101-20041231", "PatientID"],
            lambda r: r.PatientID,
            {"1CT1", "4MR1", "8NM1"},
        ),
        ("-S", ["QueryRetrieveLevel=STUDY", "StudyDate=20100101-", "PatientID"], lambda r: r.PatientID, {"ID1"}),
        (
            "-S",
            ["QueryRetrieveLevel=SERIES", "Modality=MR", "SeriesNumber", "NumberOfSeriesRelatedInstances"],
            lambda r: (r.Modality, r.SeriesNumber, r.NumberOfSeriesRelatedInstances),
            {("MR", 1, 1)},
        ),
    ],
    ids=["patient-root-patient", "patient-root-study", "date-range", "open-date-range", "series"],
)
def test_findscu_levels_and_matching(  # type: ignore[no-untyped-def]
    node,
    tmp_path: Path,
    model: str,
    level_keys: list[str],
    row,
    expect: set,  # type: ignore[type-arg]
) -> None:
    assert {row(response) for response in findscu(node, tmp_path, model, *keys(*level_keys))} == expect


def test_findscu_image_level_in_patient_root(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ct = original("CT_small.dcm")
    [image] = findscu(
        node,
        tmp_path,
        "-P",
        *keys(
            "QueryRetrieveLevel=IMAGE",
            f"PatientID={ct.PatientID}",
            f"StudyInstanceUID={ct.StudyInstanceUID}",
            f"SeriesInstanceUID={ct.SeriesInstanceUID}",
            "SOPInstanceUID",
            "SOPClassUID",
            "InstanceNumber",
        ),
    )
    assert (image.SOPInstanceUID, image.SOPClassUID, image.InstanceNumber) == (
        ct.SOPInstanceUID,
        ct.SOPClassUID,
        ct.InstanceNumber,
    )


def test_findscu_bad_level_is_refused(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("findscu", node, "-v", "-S", *keys("QueryRetrieveLevel=PATIENT", "PatientID"))
    output = (result.stdout + result.stderr).lower()
    assert "error: datasetdoesnotmatchsopclass" in output, output  # DCMTK's name for 0xA900


# --- C-MOVE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm", "SC_rgb.dcm"])
def test_movescu_study_lands_in_storescp(node, storescp, name: str) -> None:  # type: ignore[no-untyped-def]
    _port, folder = storescp
    sent = original(name)
    result = run(
        "movescu",
        node,
        "-S",
        "-aem",
        DESTINATION,
        *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={sent.StudyInstanceUID}"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [received] = [dcmread(p) for p in folder.iterdir()]
    assert received.SOPInstanceUID == sent.SOPInstanceUID
    assert_same_content(received, sent)  # as stored: same transfer syntax, same values


def test_movescu_unknown_destination_is_refused(node) -> None:  # type: ignore[no-untyped-def]
    ct = original("CT_small.dcm")
    result = run(
        "movescu",
        node,
        "-v",
        "-S",
        "-aem",
        "NOWHERE",
        *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={ct.StudyInstanceUID}"),
    )
    output = (result.stdout + result.stderr).lower()
    assert "refused: movedestinationunknown" in output, output  # DCMTK's name for 0xA801


def move(node: RunningNode, destination: str, identifier: Dataset) -> list[Dataset]:
    """C-MOVE with pynetdicom's SCU; every response status dataset (with its identifier)."""
    ae = AE(ae_title="PYNETMOVE")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        responses = []
        for rsp, found in assoc.send_c_move(identifier, destination, StudyRootQueryRetrieveInformationModelMove):
            if found is not None:
                rsp.FailedSOPInstanceUIDList = found.get("FailedSOPInstanceUIDList", "")
            responses.append(rsp)
        return responses
    finally:
        assoc.release()


def study_identifier(level: str = "STUDY", **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_move_statuses(node, storescp) -> None:  # type: ignore[no-untyped-def]
    ct, mr = original("CT_small.dcm"), original("MR_small.dcm")
    [final] = move(node, "NOWHERE", study_identifier(StudyInstanceUID=ct.StudyInstanceUID))
    assert final.Status == status.MOVE_DESTINATION_UNKNOWN
    *_, final = move(node, DESTINATION, study_identifier())  # no StudyInstanceUID
    assert final.Status == status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    assert "StudyInstanceUID" in final.ErrorComment
    [final] = move(node, DESTINATION, study_identifier(StudyInstanceUID="1.2.3.4"))  # no match
    assert (final.Status, final.NumberOfCompletedSuboperations) == (status.SUCCESS, 0)
    # two studies in one move (UID list); one stored file went missing: B000 names it
    row = _instance(node, mr.SOPInstanceUID)
    (node.store_root / row.file_path).unlink()
    responses = move(node, DESTINATION, study_identifier(StudyInstanceUID=[ct.StudyInstanceUID, mr.StudyInstanceUID]))
    assert [r.Status for r in responses[:-1]] == [status.PENDING, status.PENDING]
    final = responses[-1]
    assert final.Status == status.SUBOPERATIONS_COMPLETE_WITH_FAILURES
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (1, 1)
    assert final.FailedSOPInstanceUIDList == mr.SOPInstanceUID
    _port, folder = storescp
    assert [dcmread(p).SOPInstanceUID for p in folder.iterdir()] == [ct.SOPInstanceUID]


def _instance(node: RunningNode, sop_instance_uid: str) -> Instance:
    engine = create_engine(sqlalchemy_url(node.db_url))
    try:
        with Session(engine) as session:
            return session.execute(select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)).scalar_one()
    finally:
        engine.dispose()


# --- C-GET ----------------------------------------------------------------------------------


def test_getscu_series_lands_in_folder(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sent = original("MR_small.dcm")
    out = tmp_path / "get"
    out.mkdir()
    result = run(
        "getscu",
        node,
        "-S",
        "-od",
        str(out),
        *keys(
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={sent.StudyInstanceUID}",
            f"SeriesInstanceUID={sent.SeriesInstanceUID}",
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [received] = [dcmread(p) for p in out.iterdir()]
    assert_same_content(received, sent)


def test_getscu_compressed_instance_decompressed_for_uncompressed_peer(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sent = original("JPEG2000.dcm")
    out = tmp_path / "get"
    out.mkdir()
    # getscu proposes the storage classes uncompressed only: the node decodes the JPEG 2000
    result = run(
        "getscu",
        node,
        "-S",
        "-od",
        str(out),
        *keys("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={sent.StudyInstanceUID}"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [received] = [dcmread(p) for p in out.iterdir()]
    assert received.SOPInstanceUID == sent.SOPInstanceUID
    assert not received.file_meta.TransferSyntaxUID.is_compressed
    assert np.array_equal(received.pixel_array, sent.pixel_array)


def test_get_needs_the_storage_role(node) -> None:  # type: ignore[no-untyped-def]
    """A C-GET whose requestor did not take the SCP role for CT: the sub-operation fails (A702)."""
    ct = original("CT_small.dcm")
    ae = AE(ae_title="PYNETGET")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate(
        "127.0.0.1", node.port, ae_title=node.ae_title, ext_neg=[build_role(MRImageStorage, scp_role=True)]
    )
    assert assoc.is_established
    try:
        responses = [
            rsp
            for rsp, _ in assoc.send_c_get(
                study_identifier(StudyInstanceUID=ct.StudyInstanceUID), StudyRootQueryRetrieveInformationModelGet
            )
        ]
    finally:
        assoc.release()
    assert responses[-1].Status == status.OUT_OF_RESOURCES_SUBOPERATIONS
    assert responses[-1].NumberOfFailedSuboperations == 1


# --- C-FIND statuses with pynetdicom's SCU --------------------------------------------------


def find_statuses(
    port: int, ae_title: str, identifier: Dataset, model: str = StudyRootQueryRetrieveInformationModelFind
) -> list[int]:
    ae = AE(ae_title="PYNETFIND")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    assert assoc.is_established
    try:
        return [int(rsp.Status) for rsp, _ in assoc.send_c_find(identifier, model)]
    finally:
        assoc.release()


def test_find_statuses(node) -> None:  # type: ignore[no-untyped-def]
    ct = original("CT_small.dcm")
    assert find_statuses(node.port, node.ae_title, study_identifier(StudyInstanceUID=ct.StudyInstanceUID)) == [
        status.PENDING,
        status.SUCCESS,
    ]
    # PatientWeight is not indexed: returned empty, and the pending status says so
    assert find_statuses(
        node.port, node.ae_title, study_identifier(StudyInstanceUID=ct.StudyInstanceUID, PatientWeight="")
    ) == [status.PENDING_OPTIONAL_KEYS_NOT_SUPPORTED, status.SUCCESS]
    assert find_statuses(node.port, node.ae_title, study_identifier("PATIENT")) == [
        status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    ]
    assert find_statuses(node.port, node.ae_title, study_identifier(StudyDate="2004")) == [
        status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    ]
    assert find_statuses(
        node.port,
        node.ae_title,
        study_identifier("PATIENT", PatientID="1CT1"),
        PatientRootQueryRetrieveInformationModelFind,
    ) == [status.PENDING, status.SUCCESS]


def test_index_unreachable_is_out_of_resources(tmp_path: Path) -> None:
    """Q/R with the index database down: C-FIND 0xA700, C-MOVE/C-GET 0xA701, never an abort."""
    engine = make_engine("postgresql://nobody@127.0.0.1:1/none", pool_size=1)
    archive = qr.Archive(sessions=make_sessionmaker(engine), store_root=tmp_path, destinations=())
    settings = NetSettings(ae_title="QRONLY", host="127.0.0.1", port=get_port())
    ae = scp.build_ae(settings)
    server = ae.start_server(("127.0.0.1", settings.port), block=False, evt_handlers=qr.event_handlers(archive))
    try:
        assert find_statuses(settings.port, "QRONLY", study_identifier(StudyInstanceUID="")) == [
            status.OUT_OF_RESOURCES
        ]
        ae_get = AE(ae_title="PYNETGET")
        ae_get.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        assoc = ae_get.associate("127.0.0.1", settings.port, ae_title="QRONLY")
        try:
            responses = [
                rsp
                for rsp, _ in assoc.send_c_get(
                    study_identifier(StudyInstanceUID="1.2.3"), StudyRootQueryRetrieveInformationModelGet
                )
            ]
        finally:
            assoc.release()
        assert responses[-1].Status == status.OUT_OF_RESOURCES_MATCHES
    finally:
        server.shutdown()
        engine.dispose()
