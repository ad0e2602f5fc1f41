"""Q/R matching over a real index (PS3.4 C.2.2.2): universal, single value, wild card, UID list,
ranges, counts, hierarchy, and the files a retrieve sends.

The index is filled through ``store.ingest`` with copies of pydicom's CT_small.dcm given
other patients, studies, series and dates:

    P1 Doe^John     A 20200115 103000  ACC1 "CT CHEST"   A1 CT #1 (2 images), A2 MR #2 (1 image)
                    B 20210601 080000  ACC2 "CT HEAD"    B1 CT #1 (1 image)
    P2 Smith^Jane   C 20201231 235959.5 ACC3 "ct chest"  C1 CT #1 (1 image)
    P3 Müller^Jörg  D (no date)         ACC%1            D1 SR #1 (1 image)
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from sqlalchemy.orm import Session, sessionmaker

from dicomnode.config import StoreSettings
from dicomnode.db.session import make_engine, make_sessionmaker
from dicomnode.store import query
from dicomnode.store.ingest import Ingestor, Origin

ROOT = "1.2.826.0.1.3680043.8.498.77"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
PATIENTS = {
    "P1": ("Doe^John", "19700101", "M"),
    "P2": ("Smith^Jane", "19800202", "F"),
    "P3": ("Müller^Jörg", "", "M"),
}
STUDIES = {  # study: (patient, date, time, accession, description)
    "A": ("P1", "20200115", "103000", "ACC1", "CT CHEST"),
    "B": ("P1", "20210601", "080000", "ACC2", "CT HEAD"),
    "C": ("P2", "20201231", "235959.5", "ACC3", "ct chest"),
    "D": ("P3", "", "", "ACC%1", ""),
}
SERIES = {  # series: (study, modality, number, images)
    "A1": ("A", "CT", 1, 2),
    "A2": ("A", "MR", 2, 1),
    "B1": ("B", "CT", 1, 1),
    "C1": ("C", "CT", 1, 1),
    "D1": ("D", "SR", 1, 1),
}


def uid(name: str) -> str:
    """A valid UID per fixture name: study A -> ROOT.1.65, series A1 -> ROOT.2.65.49, ..."""
    kind = {1: "1", 2: "2", 3: "3"}[len(name)]
    return f"{ROOT}.{kind}." + ".".join(str(ord(c)) for c in name)


def instance_name(series: str, number: int) -> str:
    return f"{series}{number}"


def make_instance(series: str, number: int) -> bytes:
    study, modality, series_number, _images = SERIES[series]
    patient, date, time, accession, description = STUDIES[study]
    name, birth_date, sex = PATIENTS[patient]
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient, name, birth_date, sex
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = uid(study), date, time
    ds.AccessionNumber, ds.StudyDescription, ds.StudyID = accession, description, study
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber = uid(series), modality, series_number
    ds.SOPInstanceUID, ds.InstanceNumber = uid(instance_name(series, number)), number
    if modality == "MR":
        ds.SOPClassUID = MR_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def index(db_url: str, tmp_path: Path) -> Iterator[tuple[sessionmaker[Session], Path]]:
    engine = make_engine(db_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    ingestor = Ingestor(settings=StoreSettings(root=tmp_path / "store", min_free_mb=0, fsync=False), sessions=sessions)
    for series, (*_rest, images) in SERIES.items():
        for number in range(1, images + 1):
            ingestor.ingest(make_instance(series, number), origin=Origin(calling_ae_title="TEST"))
    yield sessions, ingestor.root
    engine.dispose()


def identifier(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    with pydicom_config.disable_value_validation():
        ds.QueryRetrieveLevel = level
        for keyword, value in keys.items():
            setattr(ds, keyword, value)
    return ds


def find(
    index: tuple[sessionmaker[Session], Path],
    level: str,
    model: query.InformationModel = query.InformationModel.STUDY_ROOT,
    **keys: object,
) -> list[Dataset]:
    sessions, _root = index
    parsed = query.parse_find(identifier(level, **keys), model=model)
    with sessions() as session:
        return list(query.find(session=session, query=parsed, retrieve_ae_title="DICOMNODE"))


def studies(index: tuple[sessionmaker[Session], Path], **keys: object) -> set[str]:
    """The fixture names of the studies a STUDY-level study-root query matches."""
    names = {uid(name): name for name in STUDIES}
    return {names[ds.StudyInstanceUID] for ds in find(index, "STUDY", StudyInstanceUID="", **keys)}


def test_universal_and_single_value_matching(index) -> None:  # type: ignore[no-untyped-def]
    assert studies(index) == {"A", "B", "C", "D"}
    assert studies(index, PatientID="") == {"A", "B", "C", "D"}
    assert studies(index, PatientID="*") == {"A", "B", "C", "D"}  # C.2.2.2.4: "*" is universal
    assert studies(index, PatientID="P1") == {"A", "B"}
    assert studies(index, PatientID="p1") == set()  # case-sensitive
    assert studies(index, AccessionNumber="ACC1") == {"A"}
    assert studies(index, PatientName="doe^john") == {"A", "B"}  # PN: case-insensitive
    assert studies(index, PatientName="Müller^Jörg") == {"D"}
    assert studies(index, StudyDescription="CT CHEST", PatientID="P1") == {"A"}  # keys AND together


def test_wild_card_matching(index) -> None:  # type: ignore[no-untyped-def]
    assert studies(index, PatientName="Doe*") == {"A", "B"}
    assert studies(index, PatientName="?MITH^*") == {"C"}
    assert studies(index, StudyDescription="CT*") == {"A", "B"}  # case-sensitive outside PN
    assert studies(index, StudyDescription="*chest") == {"C"}
    assert studies(index, PatientID="P?") == {"A", "B", "C", "D"}
    # SQL's own wild cards are literal characters in DICOM
    assert studies(index, AccessionNumber="ACC%1") == {"D"}
    assert studies(index, AccessionNumber="ACC_") == set()
    assert studies(index, AccessionNumber="ACC%*") == {"D"}


def test_list_of_uid_matching(index) -> None:  # type: ignore[no-untyped-def]
    assert {ds.StudyInstanceUID for ds in find(index, "STUDY", StudyInstanceUID=[uid("A"), uid("C")])} == {
        uid("A"),
        uid("C"),
    }
    series = find(index, "SERIES", StudyInstanceUID=uid("A"), SeriesInstanceUID=[uid("A2"), uid("B1")])
    assert [ds.SeriesInstanceUID for ds in series] == [uid("A2")]  # B1 is in another study


def test_multiple_values_match_any(index) -> None:  # type: ignore[no-untyped-def]
    assert studies(index, ModalitiesInStudy="MR") == {"A"}
    assert studies(index, ModalitiesInStudy=["SR", "MR"]) == {"A", "D"}
    assert studies(index, ModalitiesInStudy="S?") == {"D"}
    assert studies(index, PatientID=["P2", "P3"]) == {"C", "D"}


def test_date_and_time_range_matching(index) -> None:  # type: ignore[no-untyped-def]
    assert studies(index, StudyDate="20200115") == {"A"}
    assert studies(index, StudyDate="20200101-20201231") == {"A", "C"}
    assert studies(index, StudyDate="-20200115") == {"A"}
    assert studies(index, StudyDate="20210101-") == {"B"}
    assert studies(index, PatientBirthDate="19750101-") == {"C"}
    assert studies(index, StudyTime="0800-1100") == {"A", "B"}
    assert studies(index, StudyTime="23") == {"C"}  # 23:00:00 to 23:59:59, fractions included
    assert studies(index, StudyTime="-0800") == {"B"}
    assert studies(index, StudyTime="1030") == {"A"}


def test_values_that_cannot_be_matched_are_refused(index) -> None:  # type: ignore[no-untyped-def]
    model = query.InformationModel.STUDY_ROOT
    # as off the wire: pydicom converts the value only when the element is read
    bad_number = identifier("SERIES")
    bad_number[0x00200011] = RawDataElement(Tag(0x00200011), "IS", 4, b"one ", 0, False, True)
    for bad in (
        identifier("STUDY", StudyDate="2020"),
        identifier("STUDY", StudyDate="20201301-"),
        identifier("STUDY", StudyTime="25:00"),
        bad_number,
        identifier("PATIENT", PatientID="P1"),  # no PATIENT level in study root
        Dataset(),  # no level
    ):
        with pytest.raises(query.InvalidIdentifier):
            query.parse_find(bad, model=model)


def test_return_keys_counts_and_unsupported_keys(index) -> None:  # type: ignore[no-untyped-def]
    [study] = find(
        index,
        "STUDY",
        StudyInstanceUID=uid("A"),
        PatientName="",
        StudyDate="",
        ModalitiesInStudy="",
        NumberOfStudyRelatedSeries="",
        NumberOfStudyRelatedInstances="",
        NumberOfPatientRelatedStudies="",
        SOPClassesInStudy="",
        RetrieveAETitle="",
        InstanceAvailability="",
        PatientWeight="",  # not indexed
        Modality="",  # a SERIES key: not matched at STUDY level
    )
    assert study.QueryRetrieveLevel == "STUDY"
    assert str(study.PatientName) == "Doe^John"
    assert study.StudyDate == "20200115"
    assert sorted(study.ModalitiesInStudy) == ["CT", "MR"]
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (2, 3)
    assert study.NumberOfPatientRelatedStudies == 2
    assert sorted(study.SOPClassesInStudy) == sorted(["1.2.840.10008.5.1.4.1.1.2", MR_IMAGE])
    assert (study.RetrieveAETitle, study.InstanceAvailability) == ("DICOMNODE", "ONLINE")
    assert study.PatientWeight in (None, "")
    assert study.Modality in (None, "")
    assert "SpecificCharacterSet" not in study  # all ASCII
    parsed = query.parse_find(
        identifier("STUDY", PatientWeight="", Modality=""), model=query.InformationModel.STUDY_ROOT
    )
    assert set(parsed.unsupported) == {"PatientWeight", "Modality"}
    [d] = find(index, "STUDY", AccessionNumber="ACC%1", PatientName="")
    assert d.SpecificCharacterSet == "ISO_IR 192" and str(d.PatientName) == "Müller^Jörg"


def test_hierarchy_and_levels(index) -> None:  # type: ignore[no-untyped-def]
    patient_root = query.InformationModel.PATIENT_ROOT
    patients = find(index, "PATIENT", patient_root, PatientID="", NumberOfPatientRelatedStudies="")
    assert {(p.PatientID, p.NumberOfPatientRelatedStudies) for p in patients} == {("P1", 2), ("P2", 1), ("P3", 1)}
    # SERIES level in patient root: the unique keys of the levels above come back too
    series = find(index, "SERIES", patient_root, PatientID="P1", StudyInstanceUID=uid("A"), Modality="")
    assert [(s.SeriesInstanceUID, s.Modality) for s in series] == [(uid("A1"), "CT"), (uid("A2"), "MR")]
    assert all(s.PatientID == "P1" and s.StudyInstanceUID == uid("A") for s in series)
    series = find(index, "SERIES", Modality="CT", NumberOfSeriesRelatedInstances="", SeriesNumber="1")
    assert {(s.SeriesInstanceUID, s.NumberOfSeriesRelatedInstances) for s in series} == {
        (uid("A1"), 2),
        (uid("B1"), 1),
        (uid("C1"), 1),
    }
    images = find(index, "IMAGE", SeriesInstanceUID=uid("A1"), InstanceNumber="", SOPClassUID="")
    assert [(i.SOPInstanceUID, i.InstanceNumber) for i in images] == [(uid("A11"), 1), (uid("A12"), 2)]
    assert all(i.StudyInstanceUID == uid("A") and i.SeriesInstanceUID == uid("A1") for i in images)
    assert [i.SOPInstanceUID for i in find(index, "IMAGE", InstanceNumber="2")] == [uid("A12")]
    # counts of the levels above are computed in deeper queries too
    [series] = find(
        index,
        "SERIES",
        query.InformationModel.PATIENT_ROOT,
        PatientID="P1",
        StudyInstanceUID=uid("B"),
        NumberOfStudyRelatedInstances="",
        NumberOfPatientRelatedInstances="",
        NumberOfPatientRelatedSeries="",
    )
    assert (series.NumberOfStudyRelatedInstances, series.NumberOfPatientRelatedInstances) == (1, 4)
    assert series.NumberOfPatientRelatedSeries == 3
    [image] = find(index, "IMAGE", SOPInstanceUID=uid("C11"), AvailableTransferSyntaxUID="", Rows="")
    assert (image.AvailableTransferSyntaxUID, image.Rows) == ("1.2.840.10008.1.2.1", 128)


def test_retrieve_lists_files_of_the_unique_keys(index) -> None:  # type: ignore[no-untyped-def]
    sessions, root = index
    patient_root, study_root = query.InformationModel.PATIENT_ROOT, query.InformationModel.STUDY_ROOT

    def retrieve(model: query.InformationModel, level: str, **keys: object) -> list[query.RetrieveItem]:
        parsed = query.parse_retrieve(identifier(level, **keys), model=model)
        with sessions() as session:
            return query.retrieve(session=session, query=parsed, store_root=root)

    items = retrieve(study_root, "STUDY", StudyInstanceUID=uid("A"), PatientName="nobody")  # other keys ignored
    assert [i.sop_instance_uid for i in items] == [uid("A11"), uid("A12"), uid("A21")]
    assert all(i.path.is_absolute() and i.path.is_file() and i.path.is_relative_to(root) for i in items)
    assert items[0].transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert {i.sop_class_uid for i in items} == {"1.2.840.10008.5.1.4.1.1.2", MR_IMAGE}
    assert len(retrieve(patient_root, "PATIENT", PatientID="P1")) == 4
    assert len(retrieve(study_root, "SERIES", StudyInstanceUID=uid("A"), SeriesInstanceUID=[uid("A2"), uid("A1")])) == 3
    assert [
        i.sop_instance_uid for i in retrieve(study_root, "IMAGE", StudyInstanceUID=uid("C"), SOPInstanceUID=uid("C11"))
    ] == [uid("C11")]
    assert retrieve(study_root, "STUDY", StudyInstanceUID="1.2.3.4") == []
    for level, keys in (("STUDY", {}), ("STUDY", {"StudyInstanceUID": ""}), ("SERIES", {"StudyInstanceUID": uid("A")})):
        with pytest.raises(query.InvalidIdentifier, match="required"):
            query.parse_retrieve(identifier(level, **keys), model=study_root)
