"""QIDO-RS with dicomweb-client against a live server: every supported key, includefield, paging.

The content (conftest ``loaded``): CT_small in two series (CT and an OT copy, accession
ACC-CT-1), MR_small (ACC-MR-1), JPEG2000 (NM), SC_rgb (OT) and emri_small (10 frames).
"""

from __future__ import annotations

import httpx
import pytest
from dicomweb_client import DICOMwebClient

from tests.integration.web.conftest import STUDY_ROOT, Loaded

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"
CT_SERIES = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
CT_SOP = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def value(item: dict, tag: str) -> object:  # type: ignore[type-arg]
    values = item.get(tag, {}).get("Value")
    return values[0] if values else None


def uids(items: list[dict], tag: str) -> set[str]:  # type: ignore[type-arg]
    return {str(value(i, tag)) for i in items}


@pytest.fixture(scope="module")
def client(loaded: Loaded) -> DICOMwebClient:
    return loaded.server.client()


def test_all_studies_have_the_default_attributes(client: DICOMwebClient) -> None:
    studies = client.search_for_studies()
    assert len(studies) == 5
    ct = next(s for s in studies if value(s, "0020000D") == CT_STUDY)
    assert value(ct, "00100010") == {"Alphabetic": "CompressedSamples^CT1"}
    assert value(ct, "00100020") == "1CT1"
    assert value(ct, "00080020") == "20040119"
    assert value(ct, "00080050") == "ACC-CT-1"
    assert sorted(ct["00080061"]["Value"]) == ["CT", "OT"]
    assert value(ct, "00201206") == 2  # NumberOfStudyRelatedSeries
    assert value(ct, "00201208") == 2  # NumberOfStudyRelatedInstances
    assert value(ct, "00080056") == "ONLINE"
    assert str(value(ct, "00081190")).endswith(f"/dicom-web/studies/{CT_STUDY}")


STUDY_OF = {
    "CT": "CT_small.dcm",
    "MR": "MR_small.dcm",
    "NM": "JPEG2000.dcm",
    "SC": "SC_rgb.dcm",
    "EMR": "emri_small.dcm",
}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"PatientName": "CompressedSamples^CT1"}, {"CT"}),
        ({"PatientName": "compressedsamples^ct1"}, {"CT"}),  # PN matching is case-insensitive
        ({"PatientName": "Compressed*^?R1"}, {"MR"}),
        ({"PatientName": "CT1", "fuzzymatching": "true"}, {"CT"}),  # any name component, as a prefix
        ({"PatientName": "compr", "fuzzymatching": "true"}, {"CT", "MR", "NM"}),
        ({"PatientName": "compr"}, set()),  # without fuzzy matching, the whole name
        ({"00100020": "1CT1"}, {"CT"}),
        ({"PatientID": "?MR*"}, {"MR"}),
        ({"AccessionNumber": "ACC-MR-1"}, {"MR"}),
        ({"StudyDate": "20040119"}, {"CT"}),
        ({"StudyDate": "20040101-20040131"}, {"CT"}),
        ({"StudyDate": "-20040120"}, {"CT", "EMR"}),
        ({"StudyDate": "20170101-"}, {"SC"}),
        ({"ModalitiesInStudy": "OT"}, {"CT", "SC"}),
        ({"ModalitiesInStudy": "MR"}, {"MR", "EMR"}),
        ({"ModalitiesInStudy": "NM\\SR"}, {"NM"}),
        ({"StudyInstanceUID": f"{CT_STUDY},{MR_STUDY}"}, {"CT", "MR"}),
        ({"StudyInstanceUID": f"{CT_STUDY}\\{MR_STUDY}"}, {"CT", "MR"}),
        ({"StudyTime": "0727-0728"}, {"CT"}),
        ({"ReferringPhysicianName": "Moriarty*"}, {"SC"}),
        ({"StudyID": "1CT1"}, {"CT"}),
        ({"PatientName": "Nobody"}, set()),
        ({"PatientName": ""}, {"CT", "MR", "NM", "SC", "EMR"}),  # empty value: universal matching
    ],
)
def test_study_matching(client: DICOMwebClient, loaded: Loaded, params: dict[str, str], expected: set[str]) -> None:
    params = dict(params)
    fuzzy = params.pop("fuzzymatching", None) == "true"
    found = uids(client.search_for_studies(search_filters=params, fuzzymatching=fuzzy or None), "0020000D")
    assert found == {str(loaded.by_file(STUDY_OF[name]).StudyInstanceUID) for name in expected}


def test_repeated_study_uid_keys_are_a_list(loaded: Loaded) -> None:
    response = httpx.get(
        f"{loaded.server.dicomweb}/studies", params=[("StudyInstanceUID", CT_STUDY), ("StudyInstanceUID", MR_STUDY)]
    )
    assert response.status_code == 200
    assert uids(response.json(), "0020000D") == {CT_STUDY, MR_STUDY}


def test_no_match_is_200_with_an_empty_array(loaded: Loaded) -> None:
    response = httpx.get(f"{loaded.server.dicomweb}/studies", params={"PatientID": "nobody"})
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["content-type"].startswith("application/dicom+json")


def test_series_of_a_study_and_all_series(client: DICOMwebClient) -> None:
    series = client.search_for_series(CT_STUDY)
    assert uids(series, "0020000E") == {CT_SERIES, f"{STUDY_ROOT}.2.1"}
    first = next(s for s in series if value(s, "0020000E") == CT_SERIES)
    assert value(first, "00080060") == "CT"
    assert value(first, "00200011") == 1
    assert value(first, "00201209") == 1  # NumberOfSeriesRelatedInstances
    assert value(first, "0020000D") == CT_STUDY
    assert str(value(first, "00081190")).endswith(f"/studies/{CT_STUDY}/series/{CT_SERIES}")
    assert uids(client.search_for_series(search_filters={"Modality": "OT"}), "0020000D") >= {CT_STUDY}
    assert uids(client.search_for_series(search_filters={"SeriesInstanceUID": CT_SERIES}), "0020000E") == {CT_SERIES}
    # the all-series resource matches study attributes too and returns them
    found = client.search_for_series(search_filters={"PatientID": "1CT1", "SeriesNumber": "2"})
    assert uids(found, "0020000E") == {f"{STUDY_ROOT}.2.1"}
    assert value(found[0], "00100020") == "1CT1"


def test_instances_by_each_key(client: DICOMwebClient) -> None:
    instances = client.search_for_instances(CT_STUDY, CT_SERIES)
    assert uids(instances, "00080018") == {CT_SOP}
    item = instances[0]
    assert value(item, "00080016") == "1.2.840.10008.5.1.4.1.1.2"
    assert value(item, "00200013") == 1
    assert value(item, "00280010") == 128 and value(item, "00280011") == 128
    assert str(value(item, "00081190")).endswith(f"/series/{CT_SERIES}/instances/{CT_SOP}")
    assert uids(client.search_for_instances(search_filters={"SOPInstanceUID": CT_SOP}), "00080018") == {CT_SOP}
    by_class = client.search_for_instances(search_filters={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"})
    assert len(by_class) == 2  # JPEG2000 (NM as SC) and SC_rgb
    assert uids(client.search_for_instances(CT_STUDY, search_filters={"InstanceNumber": "2"}), "00080018") == {
        f"{STUDY_ROOT}.3.1"
    }
    assert len(client.search_for_instances(search_filters={"NumberOfFrames": "10"})) == 1


def test_includefield_and_all(client: DICOMwebClient) -> None:
    plain = client.search_for_studies(search_filters={"PatientID": "1CT1"})[0]
    assert "00081030" not in plain  # StudyDescription is not a default attribute
    included = client.search_for_studies(search_filters={"PatientID": "1CT1"}, fields=["StudyDescription"])[0]
    assert "00081030" in included
    everything = client.search_for_studies(search_filters={"PatientID": "1CT1"}, fields=["all"])[0]
    assert {"00081030", "00100021", "00201206", "00201208"} <= set(everything)
    by_tag = client.search_for_series(CT_STUDY, fields=["0008103E", "00100020"])[0]
    assert "0008103E" in by_tag and "00100020" in by_tag  # series and study attributes may be included


def test_limit_and_offset_page_through_results(client: DICOMwebClient) -> None:
    every = [value(s, "0020000D") for s in client.search_for_studies()]
    pages = [
        value(s, "0020000D") for offset in range(0, 5, 2) for s in client.search_for_studies(limit=2, offset=offset)
    ]
    assert pages == every
    assert client.search_for_studies(limit=0, offset=0) == []


def test_unsupported_attribute_is_ignored_with_a_warning(loaded: Loaded) -> None:
    response = httpx.get(f"{loaded.server.dicomweb}/studies", params={"PatientID": "1CT1", "StationName": "X"})
    assert response.status_code == 200
    assert len(response.json()) == 1
    assert "StationName" in response.headers["warning"]
