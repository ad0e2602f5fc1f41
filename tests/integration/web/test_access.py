"""Who may call DICOMweb and from where: bearer and basic auth, CORS for browser viewers, a
configurable prefix and a reverse-proxy path prefix; and C-STORE'd instances seen over QIDO.
"""

from __future__ import annotations

import httpx
import requests
from pydicom import dcmread
from pydicom.data import get_testdata_file
from requests.auth import HTTPBasicAuth

from tests.helpers import c_store_files
from tests.integration.web.conftest import WebServer

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def test_bearer_tokens(web_factory) -> None:  # type: ignore[no-untyped-def]
    server: WebServer = web_factory(web={"auth": "bearer", "bearer_tokens": ["first-token", "second-token"]})
    url = server.dicomweb + "/studies"
    refused = httpx.get(url)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer second-token"}).status_code == 200
    client = server.client(headers={"Authorization": "Bearer first-token"})
    assert client.search_for_studies() == []
    assert httpx.get(server.root + "/healthz").status_code == 200  # health is not behind auth


def test_basic_auth(web_factory) -> None:  # type: ignore[no-untyped-def]
    server: WebServer = web_factory(web={"auth": "basic", "basic_users": {"viewer": "s3cret"}})
    url = server.dicomweb + "/studies"
    refused = httpx.get(url)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(url, auth=("viewer", "wrong")).status_code == 401
    assert httpx.get(url, auth=("nobody", "s3cret")).status_code == 401
    assert httpx.get(url, auth=("viewer", "s3cret")).status_code == 200
    post = httpx.post(url, content=b"x", headers={"Content-Type": "application/dicom"})
    assert post.status_code == 401  # STOW is behind auth too
    session = requests.Session()
    session.auth = HTTPBasicAuth("viewer", "s3cret")
    assert server.client(session=session).search_for_studies() == []


def test_cors_for_a_browser_viewer(web_factory) -> None:  # type: ignore[no-untyped-def]
    origin = "http://viewer.example:3000"
    server: WebServer = web_factory(web={"cors_origins": [origin], "auth": "bearer", "bearer_tokens": ["t"]})
    url = server.dicomweb + "/studies"
    preflight = httpx.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, accept",
        },
    )
    assert preflight.status_code == 200  # preflight needs no credentials
    assert preflight.headers["access-control-allow-origin"] == origin
    answer = httpx.get(url, headers={"Origin": origin, "Authorization": "Bearer t"})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == origin
    other = httpx.get(url, headers={"Origin": "http://elsewhere", "Authorization": "Bearer t"})
    assert "access-control-allow-origin" not in other.headers


def test_prefix_and_reverse_proxy_root_path(web_factory) -> None:  # type: ignore[no-untyped-def]
    server: WebServer = web_factory(web={"dicomweb_prefix": "/wado", "root_path": "/pacs", "public_url": ""})
    server.client().store_instances([dcmread(get_testdata_file("CT_small.dcm"))])
    # a proxy that strips /pacs, and one that passes the full path: both work, URLs carry /pacs
    for path in ("/wado/studies", "/pacs/wado/studies"):
        response = httpx.get(server.root + path)
        assert response.status_code == 200, path
        retrieve_url = response.json()[0]["00081190"]["Value"][0]
        assert retrieve_url == f"{server.root}/pacs/wado/studies/{CT_STUDY}"
    assert httpx.get(server.root + "/dicom-web/studies").status_code == 404


def test_instances_received_over_c_store_are_found_over_qido(node_factory, web_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    (response,) = c_store_files(node, [get_testdata_file("CT_small.dcm")])  # type: ignore[list-item]
    assert response.status == 0x0000
    server: WebServer = web_factory(store_root=node.store_root)
    client = server.client()
    (study,) = client.search_for_studies(search_filters={"PatientID": "1CT1"})
    assert study["0020000D"]["Value"] == [CT_STUDY]
    (instance,) = client.search_for_instances(CT_STUDY)
    sop = instance["00080018"]["Value"][0]
    series = instance["0020000E"]["Value"][0]
    ds = client.retrieve_instance(CT_STUDY, series, sop)
    assert ds.PatientID == "1CT1"
