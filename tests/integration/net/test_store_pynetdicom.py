"""C-STORE with our own SCU (``net.scu.send_files``): every dataset byte-identical and indexed.

``send_files`` sends the bytes after the File Meta as they are in the file, and the node stores
what it received behind its own File Meta; so the bytes after the File Meta of the stored file
must equal those of the original, for every transfer syntax, and the index must say what the
header says. Real scanner series come from ../shared/data/dicom; the anonymised CT there (UIDs
blanked) must be refused with a status that names the attribute, without harm to the node.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from typer.testing import CliRunner

from dicomnode.cli import app
from dicomnode.db.models import Instance, Series
from dicomnode.net import scu, status
from tests.helpers import (
    SHARED_DATA,
    RunningNode,
    c_echo,
    c_store_bytes,
    c_store_files,
    count_rows,
    dataset_bytes,
    encode,
    indexed,
    requires_shared_data,
    store_contents,
)

CALLING = "PYNETSCU"

# pydicom's bundled files: every transfer syntax the node must accept, SR, RT, multi-frame
BUNDLED = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",  # implicit VR little endian
    "MR_small_bigendian.dcm",  # explicit VR big endian (retired, still sent by old modalities)
    "image_dfl.dcm",  # deflated explicit VR little endian
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline (process 1)
    "JPEG-lossy.dcm",  # JPEG extended (process 2 & 4), 12 bit
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "JPEG2000.dcm",  # JPEG 2000
    "MR_small_RLE.dcm",  # RLE lossless
    "reportsi.dcm",  # Basic Text SR
    "test-SR.dcm",  # Comprehensive SR
    "rtdose_rle.dcm",  # RT Dose, 15 frames, RLE
    "SC_rgb_rle_2frame.dcm",  # multi-frame RLE
    "examples_ybr_color.dcm",  # US multi-frame, JPEG baseline, 30 frames
    "waveform_ecg.dcm",  # 12-lead ECG waveform
]

# PyPI pydicom-data: enhanced multi-frame, a large CR, US multi-frame, SEG
PYDICOM_DATA = [
    "eCT_Supplemental.dcm",  # Enhanced CT, 2 frames
    "emri_small.dcm",  # Enhanced MR, 10 frames
    "emri_small_jpeg_2k_lossless.dcm",  # Enhanced MR in JPEG 2000
    "RG1_UNCI.dcm",  # CR, 1955 x 1841, 7 MB
    "OBXXXX1A_rle_2frame.dcm",  # US multi-frame, RLE
    "color3d_jpeg_baseline.dcm",  # US multi-frame, 120 JPEG frames, 6 MB
    "liver.dcm",  # Segmentation
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # US, JPEG lossless process 14
]

TOTALSEG = SHARED_DATA / "dicom" / "totalseg_example_ct"
UID_KEYWORDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")


def data_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return Path(path)


def dicom_files(folder: Path) -> list[Path]:
    """Part 10 files below ``folder`` (the shared data has a LICENSE and a .nii beside them)."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open("rb") as fp:
            fp.seek(128)
            if fp.read(4) == b"DICM":
                found.append(path)
    return found


def text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def integer(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    return None if value in (None, "") else int(value)


def assert_stored_and_indexed(
    node: RunningNode, original: Path, *, instances_in_series: int = 1, series_peers: list[Dataset] | None = None
) -> None:
    """The stored dataset bytes equal the original's, and the index matches its header.

    ``series_peers``: headers of every instance sent in the same series; series and study
    columns then only need to match one of them (real series are not always consistent:
    dcm_qa_ts has one SeriesInstanceUID with SeriesNumber 1 to 9).
    """
    ds = dcmread(original, stop_before_pixels=True)
    peers = series_peers or [ds]

    def one_of(keyword: str, convert=text):  # type: ignore[no-untyped-def]
        return {convert(peer, keyword) for peer in peers}

    row = indexed(node.db_url, ds.SOPInstanceUID)
    assert row is not None, f"{original.name} not indexed"
    instance, series, study, patient = row
    assert instance.file_path == f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    stored = node.store_root / instance.file_path
    assert dataset_bytes(stored) == dataset_bytes(original), f"{original.name}: dataset bytes changed"
    stored_meta = read_file_meta_info(stored)
    assert stored_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert stored_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert stored_meta.MediaStorageSOPClassUID == ds.SOPClassUID

    assert instance.sop_class_uid == ds.SOPClassUID
    assert instance.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    assert instance.rows == integer(ds, "Rows")
    assert instance.columns == integer(ds, "Columns")
    assert instance.number_of_frames == integer(ds, "NumberOfFrames")
    assert instance.instance_number == integer(ds, "InstanceNumber")
    assert instance.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert instance.file_size == stored.stat().st_size
    assert instance.calling_ae_title == CALLING
    assert instance.peer_address == "127.0.0.1"

    assert series.series_instance_uid == ds.SeriesInstanceUID
    assert series.modality in one_of("Modality")
    assert series.series_number in one_of("SeriesNumber", integer)
    assert series.series_description in one_of("SeriesDescription")
    assert series.body_part_examined in one_of("BodyPartExamined")
    assert series.instance_count == instances_in_series

    assert study.study_instance_uid == ds.StudyInstanceUID
    assert study.accession_number in one_of("AccessionNumber")
    assert study.study_description in one_of("StudyDescription")
    assert study.study_time in one_of("StudyTime")
    assert study.referring_physician_name in one_of("ReferringPhysicianName")
    study_date = study.study_date.strftime("%Y%m%d") if study.study_date else ""
    assert study_date in {value[:8] for value in one_of("StudyDate")}
    if text(ds, "Modality"):
        assert text(ds, "Modality") in study.modalities_in_study
    else:
        assert study.modalities_in_study == []

    assert patient.patient_id == text(ds, "PatientID")
    assert patient.patient_name == text(ds, "PatientName")
    assert patient.patient_sex == text(ds, "PatientSex")


def send(node: RunningNode, paths: list[Path]) -> list[scu.SendResult]:
    return scu.send_files(scu.Peer.parse(node.peer), paths, calling_ae_title=CALLING)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_file_stored_byte_identical_and_indexed(node: RunningNode, name: str) -> None:
    path = data_file(name)
    results = send(node, [path])
    assert [(r.status, r.comment) for r in results] == [(status.SUCCESS, "")]
    assert_stored_and_indexed(node, path)


@pytest.mark.parametrize("name", PYDICOM_DATA)
def test_pydicom_data_file_stored_byte_identical_and_indexed(node: RunningNode, name: str) -> None:
    path = data_file(name)
    results = send(node, [path])
    assert [(r.status, r.comment) for r in results] == [(status.SUCCESS, "")]
    assert_stored_and_indexed(node, path)


def test_file_whose_meta_disagrees_with_its_dataset_is_refused(node: RunningNode) -> None:
    """pydicom's rtplan.dcm announces (file meta) another SOP Instance UID than its dataset holds.

    The SCU sends what the file meta says; the node refuses the mismatch with 0x0117 rather
    than file an instance the sender knows under another UID (as DCMTK's dcmqrscp does).
    """
    path = data_file("rtplan.dcm")
    meta = dcmread(path, stop_before_pixels=True)
    assert meta.file_meta.MediaStorageSOPInstanceUID != meta.SOPInstanceUID
    results = send(node, [path])
    assert [r.status for r in results] == [status.INVALID_OBJECT_INSTANCE]
    assert "SOPInstanceUID differs" in results[0].comment
    assert not any(node.store_root.rglob("*.dcm"))


def test_deflated_dataset_stored_as_received(node: RunningNode) -> None:
    """The node keeps deflated bytes as they came (sent raw by pynetdicom's chunked send)."""
    path = data_file("image_dfl.dcm")
    assert [r.status for r in c_store_files(node, [path], calling_ae_title=CALLING)] == [status.SUCCESS]
    assert_stored_and_indexed(node, path)


@requires_shared_data
@pytest.mark.parametrize("folder", ["dcm_qa_ts", "dcm_qa_orientation"])
def test_scanner_series_stored_byte_identical_and_indexed(node: RunningNode, folder: str) -> None:
    paths = dicom_files(SHARED_DATA / "dicom" / folder)
    assert len(paths) >= 9
    results = send(node, paths)
    assert {r.path: r.status for r in results} == dict.fromkeys(paths, status.SUCCESS)
    headers = {p: dcmread(p, stop_before_pixels=True) for p in paths}
    per_series = Counter(ds.SeriesInstanceUID for ds in headers.values())
    for path, ds in headers.items():
        peers = [other for other in headers.values() if other.SeriesInstanceUID == ds.SeriesInstanceUID]
        assert_stored_and_indexed(
            node, path, instances_in_series=per_series[ds.SeriesInstanceUID], series_peers=peers
        )
    assert count_rows(node.db_url, Instance) == len(paths)
    assert count_rows(node.db_url, Series) == len(per_series)


def test_second_series_of_a_study_adds_its_modality(node: RunningNode, tmp_path: Path) -> None:
    ct = dcmread(data_file("CT_small.dcm"))
    sr = dcmread(data_file("CT_small.dcm"))
    sr.SeriesInstanceUID = ct.SeriesInstanceUID + ".1"
    sr.SOPInstanceUID = ct.SOPInstanceUID + ".1"
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    sr.Modality = "OT"
    second = tmp_path / "second.dcm"
    sr.save_as(second)
    results = send(node, [data_file("CT_small.dcm"), second])
    assert [r.status for r in results] == [status.SUCCESS, status.SUCCESS]
    row = indexed(node.db_url, sr.SOPInstanceUID)
    assert row is not None
    assert sorted(row[2].modalities_in_study) == ["CT", "OT"]


# -- the anonymised CT: UIDs blanked in the dataset, valid ones in the File Meta -------------


def assert_refused_for_uids(response_status: int | None, comment: str) -> None:
    assert response_status in (status.CANNOT_UNDERSTAND_UIDS, status.INVALID_OBJECT_INSTANCE), comment
    assert any(keyword in comment for keyword in UID_KEYWORDS), comment


@requires_shared_data
def test_blanked_uids_refused_with_a_clear_status(node: RunningNode) -> None:
    """The command carries the File Meta's UIDs; the dataset's own are empty: refused, named."""
    paths = sorted(TOTALSEG.iterdir())[:5]
    responses = c_store_files(node, paths)
    for response in responses:
        assert_refused_for_uids(response.status, response.comment)
    assert store_contents(node.store_root) == []
    assert count_rows(node.db_url, Instance) == 0
    # still serving: echo, then a good instance on a new association
    assert c_echo(node) == status.SUCCESS
    assert [r.status for r in send(node, [data_file("CT_small.dcm")])] == [status.SUCCESS]


@requires_shared_data
def test_blanked_uids_in_command_and_dataset_refused(node: RunningNode, tmp_path: Path) -> None:
    """A sender that copies the blank SOP Instance UID into the command gets 0x0117, not silence.

    (pynetdicom's SCU does exactly this for a dataset whose SOPInstanceUID is empty.) The
    short timeout turns a node that never answers into a failure rather than a 30 s wait.
    """
    path = sorted(TOTALSEG.iterdir())[0]
    response = c_store_bytes(
        node, tmp_path, dataset_bytes(path), sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="",
        transfer_syntax_uid=str(read_file_meta_info(path).TransferSyntaxUID), timeout=5,
    )
    assert response.status == status.INVALID_OBJECT_INSTANCE
    assert "SOPInstanceUID" in response.comment
    assert store_contents(node.store_root) == []
    assert c_echo(node) == status.SUCCESS


@requires_shared_data
def test_blanked_uids_through_a_dataset_with_pynetdicom(node: RunningNode, tmp_path: Path) -> None:
    """The anonymised header re-encoded by pynetdicom, SOP class known only to the context."""
    ds = dcmread(sorted(TOTALSEG.iterdir())[0], stop_before_pixels=True)
    assert ds.SOPInstanceUID == "" and ds.StudyInstanceUID == ""
    response = c_store_bytes(
        node, tmp_path, encode(ds), sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid="1.2.826.0.1.3680043.8.498.1",
    )
    assert_refused_for_uids(response.status, response.comment)
    assert count_rows(node.db_url, Instance) == 0
    assert c_echo(node) == status.SUCCESS


@requires_shared_data
def test_send_files_reports_refused_anonymised_instances(node: RunningNode) -> None:
    """Our SCU turns each refusal into a result; it must not raise on a file it can read."""
    paths = sorted(TOTALSEG.iterdir())[:2]
    results = send(node, paths)
    assert [r.path for r in results] == paths
    for result in results:
        assert not result.ok
        assert_refused_for_uids(result.status, result.comment)


# -- the `dicomnode send` command --------------------------------------------------------------


def test_cli_send_folder_prints_summary_and_exits_0(node: RunningNode, tmp_path: Path) -> None:
    folder = tmp_path / "in" / "nested"
    folder.mkdir(parents=True)
    names = ["CT_small.dcm", "MR_small_RLE.dcm", "rtdose_rle.dcm"]
    for name in names:
        (folder / name).write_bytes(data_file(name).read_bytes())
    result = CliRunner().invoke(app, ["send", str(tmp_path / "in"), "--to", node.peer, "--calling-ae", CALLING])
    assert result.exit_code == 0, result.output
    assert "3 files to" in result.output
    assert "0x0000 Success" in result.output
    assert count_rows(node.db_url, Instance) == 3
    for name in names:
        assert_stored_and_indexed(node, folder / name)


def _refused_copy(tmp_path: Path) -> Path:
    """CT_small with a new SOP Instance UID and a Study Instance UID with a leading zero."""
    from pydicom import config as pydicom_config

    with pydicom_config.disable_value_validation():
        ds = dcmread(data_file("CT_small.dcm"))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
        ds.StudyInstanceUID = "1.2.03.4"
        path = tmp_path / "bad-study-uid.dcm"
        ds.save_as(path)
    return path


def test_cli_send_exits_1_and_lists_a_refused_file(node: RunningNode, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(data_file("CT_small.dcm").read_bytes())
    refused = _refused_copy(folder)
    result = CliRunner().invoke(app, ["send", str(folder), "--to", node.peer])
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    flat = "".join(result.output.split())
    assert "0x0000Success" in flat
    assert "0xC220" in flat
    assert str(refused) in flat
    assert "StudyInstanceUID" in flat
    assert count_rows(node.db_url, Instance) == 1


@requires_shared_data
def test_cli_send_folder_with_anonymised_instance_exits_1(node: RunningNode, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(data_file("CT_small.dcm").read_bytes())
    anonymised = folder / "b.dcm"
    anonymised.write_bytes(sorted(TOTALSEG.iterdir())[0].read_bytes())
    result = CliRunner().invoke(app, ["send", str(folder), "--to", node.peer])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    flat = "".join(result.output.split())
    assert "0x0000Success" in flat
    assert str(anonymised) in flat
    assert count_rows(node.db_url, Instance) == 1
