"""read_record reads plain ASCII values from the raw bytes: it must give what pydicom's own
conversion gives, for every file at hand (pydicom's test files, every transfer syntax and
character set among them, and the real scanner series in ../shared/data)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pydicom.data
import pytest
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from dicomnode.errors import InvalidDataset, InvalidUID
from dicomnode.store.ingest import _file_meta, _parse, read_record
from tests.helpers import SHARED_DATA

TEXT = ["SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID",
        "IssuerOfPatientID", "PatientName", "PatientSex", "StudyTime", "AccessionNumber", "StudyID",
        "StudyDescription", "ReferringPhysicianName", "Modality", "SeriesDescription", "BodyPartExamined"]
INTEGER = ["SeriesNumber", "InstanceNumber", "Rows", "Columns", "NumberOfFrames"]
DATE = ["PatientBirthDate", "StudyDate"]


def through_pydicom(ds: Dataset) -> dict[str, object]:
    """What the index keeps, read the slow way: every value converted by pydicom."""
    out: dict[str, object] = {}
    for keyword in TEXT:
        value = ds.get(keyword)
        out[keyword] = "" if value is None else str(value).strip()
    for keyword in INTEGER:
        value = ds.get(keyword)
        try:
            out[keyword] = int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            out[keyword] = None
    for keyword in DATE:
        text = "" if ds.get(keyword) is None else str(ds.get(keyword)).strip()
        try:
            out[keyword] = dt.datetime.strptime(text[:8], "%Y%m%d").date() if len(text) >= 8 else None
        except ValueError:
            out[keyword] = None
    return out


def sample_files() -> list[Path]:
    # pydicom's own files on disk (get_testdata_files would also try to download its extras)
    data_dir = Path(pydicom.data.__file__).parent
    files = sorted([*(data_dir / "test_files").rglob("*.dcm"), *(data_dir / "charset_files").rglob("*.dcm")])
    if SHARED_DATA.is_dir():
        for series in sorted({p.parent for p in (SHARED_DATA / "dicom").rglob("*") if p.is_file()}):
            files.extend(sorted(p for p in series.iterdir() if p.is_file())[:3])
    return files


def record_fields(record: object) -> dict[str, object]:
    names = {
        "SOPInstanceUID": "sop_instance_uid", "SOPClassUID": "sop_class_uid",
        "StudyInstanceUID": "study_instance_uid", "SeriesInstanceUID": "series_instance_uid",
        "PatientID": "patient_id", "IssuerOfPatientID": "issuer_of_patient_id", "PatientName": "patient_name",
        "PatientSex": "patient_sex", "StudyTime": "study_time", "AccessionNumber": "accession_number",
        "StudyID": "study_id", "StudyDescription": "study_description",
        "ReferringPhysicianName": "referring_physician_name", "Modality": "modality",
        "SeriesDescription": "series_description", "BodyPartExamined": "body_part_examined",
        "SeriesNumber": "series_number", "InstanceNumber": "instance_number", "Rows": "rows",
        "Columns": "columns", "NumberOfFrames": "number_of_frames", "PatientBirthDate": "patient_birth_date",
        "StudyDate": "study_date",
    }
    return {keyword: getattr(record, attribute) for keyword, attribute in names.items()}


@pytest.fixture(autouse=True)
def values_as_the_node_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node reads without value validation (net.scp.configure_pynetdicom)."""
    monkeypatch.setattr(pydicom_config.settings, "reading_validation_mode", pydicom_config.IGNORE)


def test_raw_reads_equal_pydicoms_conversion_on_every_file() -> None:
    compared = 0
    for path in sample_files():
        data = path.read_bytes()
        try:
            ds = dcmread(BytesIO(data), force=True)
            expected = through_pydicom(ds)
            record, _ = read_record(data)
        except (InvalidDataset, InvalidUID, Exception):  # noqa: B014 - files the node refuses anyway
            continue
        assert record_fields(record) == expected, path.name
        compared += 1
    assert compared >= 100  # the sample really covers pydicom's files (and the shared series)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"12 ", 12), (b" 7", 7), (b"5.0", 5), (b"", None), (b"abc", None)],
)
def test_instance_number_forms(value: bytes, expected: int | None) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()  # type: ignore[arg-type]
    at = data.index(b"\x20\x00\x13\x00IS")  # InstanceNumber, explicit VR little endian
    length = int.from_bytes(data[at + 6:at + 8], "little")
    padded = value + b" " * (len(value) % 2)
    data = data[:at] + b"\x20\x00\x13\x00IS" + len(padded).to_bytes(2, "little") + padded + data[at + 8 + length:]
    assert read_record(data)[0].instance_number == expected


def assert_same_elements(ds: Dataset, expected: Dataset, name: str) -> None:
    """Same tags in the same order; where both are raw (most), the same bytes at the same place.

    A few elements are converted while reading (dcmread converts Specific Character Set, and
    some files hold elements pydicom had to fix up); those are compared through pydicom's
    values by the test above.
    """
    ours = {e.tag: e for e in ds.elements()}
    theirs = {e.tag: e for e in expected.elements()}
    assert list(ours) == list(theirs), name
    for tag, e in ours.items():
        x = theirs[tag]
        if isinstance(e, RawDataElement) and isinstance(x, RawDataElement):
            assert (e.VR, e.length, e.value, e.value_tell, e.is_implicit_VR, e.is_little_endian) == (
                x.VR, x.length, x.value, x.value_tell, x.is_implicit_VR, x.is_little_endian
            ), (name, tag)


def test_the_plain_header_path_reads_what_dcmread_reads_on_every_file() -> None:
    fast = 0
    for path in sample_files():
        data = path.read_bytes()
        if _file_meta(data) is None:
            continue
        try:
            expected = dcmread(BytesIO(data), force=True)
        except Exception:  # noqa: BLE001 - files pydicom cannot read are dcmread's to refuse
            continue
        ds, transfer_syntax = _parse(data)
        assert transfer_syntax == str(expected.file_meta.TransferSyntaxUID), path.name
        assert_same_elements(ds, expected, path.name)
        fast += 1
    assert fast >= 100  # most files have the plain header


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:128] + b"DICX" + d[132:],  # no magic
        lambda d: d[:136] + b"UN" + d[138:],  # group length with another VR
        lambda d: d[:140] + (10**6).to_bytes(4, "little") + d[144:],  # group length past the meta
        lambda d: d[:140] + (1).to_bytes(4, "little") + d[144:],  # group length inside an element
    ],
    ids=["magic", "group-length-vr", "group-length-long", "group-length-short"],
)
def test_an_unusual_header_goes_to_dcmread(damage: Callable[[bytes], bytes]) -> None:
    data = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
    assert _file_meta(data) is not None
    assert _file_meta(damage(data)) is None
