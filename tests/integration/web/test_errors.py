"""Bad requests get the status PS3.18 names and a problem body, never a 500, and the server goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import get_port, make_settings
from tests.integration.web.conftest import Loaded, WebServer, start_server

UNKNOWN = "1.2.826.0.1.3680043.8.498.999999"


@pytest.fixture(scope="module")
def http(loaded: Loaded) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=loaded.server.dicomweb, timeout=30) as client:
        yield client


def ids(loaded: Loaded, name: str = "CT_small.dcm") -> tuple[str, str, str]:
    ds = loaded.by_file(name)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def assert_problem(response: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, (response.status_code, response.text[:300])
    problem = response.json()
    assert problem["error"] and problem["detail"]
    return problem  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "path",
    [
        "/studies/{u}",
        "/studies/{u}/metadata",
        "/studies/{u}/series",
        "/studies/{u}/instances",
        "/studies/{u}/thumbnail",
        "/studies/{s}/series/{u}",
        "/studies/{s}/series/{u}/metadata",
        "/studies/{s}/series/{u}/instances",
        "/studies/{s}/series/{se}/instances/{u}",
        "/studies/{s}/series/{se}/instances/{u}/metadata",
        "/studies/{s}/series/{se}/instances/{u}/frames/1",
        "/studies/{s}/series/{se}/instances/{u}/rendered",
        "/studies/{s}/series/{se}/instances/{u}/bulkdata/7FE00010",
        "/studies/{u}/series/{se}/instances/{i}",  # a real instance under the wrong study
    ],
)
def test_unknown_uids_are_404(http: httpx.Client, loaded: Loaded, path: str) -> None:
    study, series, sop = ids(loaded)
    assert_problem(http.get(path.format(u=UNKNOWN, s=study, se=series, i=sop)), 404)


@pytest.mark.parametrize("path", ["/studies/not-a-uid", "/studies/1.02.3/series", "/studies/1.2/series/x/metadata"])
def test_malformed_uids_are_400(http: httpx.Client, path: str) -> None:
    assert assert_problem(http.get(path), 400)["error"] == "InvalidUID"


@pytest.mark.parametrize(
    "params",
    [
        {"FooBar": "1"},
        {"includefield": "NotAnAttribute"},
        {"limit": "-1"},
        {"offset": "x"},
        {"fuzzymatching": "maybe"},
        {"StudyDate": "2020"},
        {"StudyDate": "20200101-20200202-2"},
        {"StudyInstanceUID": "1.2.x"},
        {"SeriesNumber": "abc"},
        {"StudyTime": "25h"},
        [("PatientID", "a"), ("PatientID", "b")],
    ],
)
def test_invalid_query_parameters_are_400(http: httpx.Client, params: object) -> None:
    path = "/series" if isinstance(params, dict) and "SeriesNumber" in params else "/studies"
    assert assert_problem(http.get(path, params=params), 400)["error"] == "InvalidQueryParameter"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("suffix", "accept"),
    [
        ("", "text/html"),
        ("", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'),
        ("/metadata", "application/dicom+xml"),
        ("/rendered", "image/gif"),
        ("/frames/1", 'multipart/related; type="image/jpeg"'),  # CT_small is not compressed
        ("/bulkdata/00431029", "image/png"),
    ],
)
def test_unsatisfiable_accept_is_406(http: httpx.Client, loaded: Loaded, suffix: str, accept: str) -> None:
    study, series, sop = ids(loaded)
    response = http.get(f"/studies/{study}/series/{series}/instances/{sop}{suffix}", headers={"Accept": accept})
    assert_problem(response, 406)


def test_search_in_xml_is_406(http: httpx.Client) -> None:
    assert_problem(http.get("/studies", headers={"Accept": 'multipart/related; type="application/dicom+xml"'}), 406)


@pytest.mark.parametrize(
    ("suffix", "status"),
    [
        ("/frames/1,x", 400),
        ("/frames/0", 400),
        ("/frames/2", 404),
        ("/frames/1,2/rendered", 400),
        ("/bulkdata/zz", 400),
        ("/bulkdata/00100010/x", 400),
        ("/bulkdata/00091001", 404),
        ("/bulkdata/00100010", 404),  # PatientName is not bulk data
        ("/rendered?window=1", 400),
        ("/rendered?window=a,b", 400),
        ("/rendered?viewport=0,10", 400),
        ("/rendered?quality=101", 400),
        ("/rendered?unknown=1", 400),
    ],
)
def test_bad_frame_bulk_and_render_requests(http: httpx.Client, loaded: Loaded, suffix: str, status: int) -> None:
    study, series, sop = ids(loaded)
    assert_problem(http.get(f"/studies/{study}/series/{series}/instances/{sop}{suffix}"), status)


def test_server_still_serves_after_bad_requests(http: httpx.Client, loaded: Loaded) -> None:
    for junk in ("/studies?%ff=%fe", "/studies/%00", "/studies/" + "1." * 200 + "1"):
        assert http.get(junk).status_code < 500
    garbage = http.post("/studies", content=b"\xff" * 1000, headers={"Content-Type": "multipart/related"})
    assert garbage.status_code < 500
    assert len(http.get("/studies").json()) == 5


def test_health_reports_the_index(loaded: Loaded, tmp_path: Path) -> None:
    response = httpx.get(loaded.server.root + "/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    port = get_port()
    dead = make_settings(f"postgresql://postgres@127.0.0.1:{get_port()}/nothing", tmp_path / "store")
    server: WebServer = start_server(dead, port)
    try:
        assert httpx.get(server.root + "/healthz", timeout=30).status_code == 503
        assert assert_problem(httpx.get(server.dicomweb + "/studies", timeout=30), 503)["error"] == "IndexUnavailable"
    finally:
        server.stop()
