"""STOW-RS: statuses and the Store Instances Response (PS3.18 10.5.3, Annex I), durability as C-STORE.

dicomweb-client for the ordinary uploads; hand-built multipart bodies (httpx) for the bad ones.
Each test runs on a fresh database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomnode.db.models import Instance, Series
from tests.helpers import count_rows, indexed, split_part10, store_contents
from tests.integration.web.conftest import WebServer, bundled, part10

DICOM_TYPE = 'multipart/related; type="application/dicom"; boundary=XyZ'


def body(*parts: bytes, boundary: str = "XyZ", part_type: str = "application/dicom") -> bytes:
    out = b""
    for content in parts:
        out += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def post(
    server: WebServer,
    data: bytes | Iterator[bytes],
    *,
    path: str = "/studies",
    content_type: str = DICOM_TYPE,
    **headers: str,
) -> httpx.Response:
    return httpx.post(
        server.dicomweb + path, content=data, headers={"Content-Type": content_type, **headers}, timeout=30
    )


def answer(response: httpx.Response) -> Dataset:
    assert response.headers["content-type"].startswith("application/dicom+json"), response.text
    return Dataset.from_json(response.json())


def ct(sop_suffix: str = "") -> Dataset:
    ds = dcmread(bundled("CT_small.dcm"))
    if sop_suffix:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + sop_suffix
    return ds


def test_store_with_dicomweb_client_is_durable_and_indexed(web: WebServer, db_url: str) -> None:
    client = web.client()
    datasets = [ct(), dcmread(bundled("MR_small.dcm"))]
    result = client.store_instances(datasets)
    assert [str(i.ReferencedSOPInstanceUID) for i in result.ReferencedSOPSequence] == [
        str(ds.SOPInstanceUID) for ds in datasets
    ]
    assert "FailedSOPSequence" not in result
    item = result.ReferencedSOPSequence[0]
    assert item.RetrieveURL.endswith(f"/instances/{datasets[0].SOPInstanceUID}")
    for ds in datasets:
        instance, series, study, _ = indexed(db_url, str(ds.SOPInstanceUID))
        stored = (web.settings.store.root.resolve() / instance.file_path).read_bytes()
        assert split_part10(stored)[1] == split_part10(part10(ds))[1]
        assert series.last_received_at is not None  # completion (routing) sees STOW'd series too
    assert len([p for p in store_contents(web.settings.store.root) if p.suffix == ".part"]) == 0


def test_original_file_bytes_are_stored_and_served_byte_identical(web: WebServer) -> None:
    original = bundled("JPEG2000.dcm").read_bytes()
    stored = post(web, body(original))
    assert stored.status_code == 200, stored.text
    ds = dcmread(bundled("JPEG2000.dcm"))
    url = f"{web.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    response = httpx.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom"
    assert split_part10(response.content)[1] == split_part10(original)[1]


def test_study_scoped_store_refuses_other_studies_with_a900(web: WebServer) -> None:
    client = web.client()
    mr = dcmread(bundled("MR_small.dcm"))
    response = post(web, body(part10(ct()), part10(mr)), path=f"/studies/{ct().StudyInstanceUID}")
    assert response.status_code == 202
    result = answer(response)
    assert [str(i.ReferencedSOPInstanceUID) for i in result.ReferencedSOPSequence] == [str(ct().SOPInstanceUID)]
    (failed,) = result.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == mr.SOPInstanceUID and failed.FailureReason == 0xA900
    assert result.RetrieveURL.endswith(f"/studies/{ct().StudyInstanceUID}")
    assert client.search_for_studies(search_filters={"StudyInstanceUID": str(mr.StudyInstanceUID)}) == []


def test_all_refused_is_409_with_failure_reasons(web: WebServer, db_url: str) -> None:
    garbage = b"\0" * 128 + b"DICM" + b"not a dataset at all"
    response = post(web, body(garbage, part10(ct()), part_type="application/dicom"), path="/studies/1.2.3.4")
    assert response.status_code == 409
    reasons = sorted(int(i.FailureReason) for i in answer(response).FailedSOPSequence)
    assert reasons == [0xA900, 0xA900]
    response = post(web, body(garbage))
    assert response.status_code == 409
    assert answer(response).FailedSOPSequence[0].FailureReason == 0xC000
    assert count_rows(db_url, Instance) == 0


def test_some_refused_is_202(web: WebServer) -> None:
    response = post(web, body(part10(ct()), b"garbage"))
    assert response.status_code == 202
    result = answer(response)
    assert len(result.ReferencedSOPSequence) == 1 and len(result.FailedSOPSequence) == 1
    assert result.FailedSOPSequence[0].FailureReason == 0xC000


def test_duplicate_refused_by_policy_is_0111(web_factory) -> None:  # type: ignore[no-untyped-def]
    server = web_factory(store={"duplicate_policy": "reject"})
    assert post(server, body(part10(ct()))).status_code == 200
    response = post(server, body(part10(ct())))
    assert response.status_code == 409
    assert answer(response).FailedSOPSequence[0].FailureReason == 0x0111


def test_store_full_is_a700_and_503(web_factory) -> None:  # type: ignore[no-untyped-def]
    server = web_factory(store={"min_free_mb": 10**9})
    response = post(server, body(part10(ct())))
    assert response.status_code == 503  # every failure is the node's own: try again later
    assert answer(response).FailedSOPSequence[0].FailureReason == 0xA700


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"just some bytes", "no boundary delimiter"),
        (b"--XyZ\r\nContent-Type: application/dicom\r\n\r\nabc", "before the close delimiter"),
        (b"--XyZ\r\nno colon here\r\n\r\nabc\r\n--XyZ--", "has no name"),
        (b"--XyZ--\r\n", "no parts"),
    ],
)
def test_malformed_multipart_is_400_with_a_reason(web: WebServer, data: bytes, reason: str) -> None:
    response = post(web, data)
    assert response.status_code == 400
    assert response.json()["error"] == "MalformedMultipart"
    assert reason in response.json()["detail"]
    assert web.client().search_for_studies() == []  # and the server still answers


def test_missing_boundary_is_400(web: WebServer) -> None:
    response = post(web, b"x", content_type='multipart/related; type="application/dicom"')
    assert response.status_code == 400
    assert "boundary" in response.json()["detail"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/dicom",
        "application/json",
        'multipart/related; type="application/dicom+json"; boundary=XyZ',
        "multipart/form-data; boundary=XyZ",
        "",
    ],
)
def test_other_media_types_are_415(web: WebServer, content_type: str) -> None:
    response = post(web, body(part10(ct())), content_type=content_type)
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "UnsupportedMediaType"


def test_oversized_upload_is_413_by_length_and_while_streaming(web_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    server = web_factory(web={"max_upload_mb": 1})
    big = body(part10(ct()), b"\0" * (2 * 2**20))
    response = post(server, big)  # Content-Length announces it: refused before reading
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"

    def chunks() -> Iterator[bytes]:  # chunked: no length, refused once 1 MB has arrived
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    try:
        streamed = requests.post(
            server.dicomweb + "/studies", data=chunks(), headers={"Content-Type": DICOM_TYPE}, timeout=30
        )
        assert streamed.status_code == 413
    except requests.ConnectionError:
        pass  # the server may close the connection before the client has sent everything
    assert count_rows(db_url, Series) <= 1
    assert httpx.get(server.dicomweb + "/studies").status_code == 200  # still serving


def test_response_json_is_dicom_json(web: WebServer) -> None:
    response = post(web, body(part10(ct())))
    payload = json.loads(response.content)
    assert payload["00081199"]["vr"] == "SQ"  # ReferencedSOPSequence
    assert payload["00081190"]["vr"] == "UR"  # RetrieveURL
    web_client: DICOMwebClient = web.client()
    assert len(web_client.search_for_instances()) == 1
