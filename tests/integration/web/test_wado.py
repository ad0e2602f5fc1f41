"""WADO-RS with dicomweb-client and plain HTTP: instances byte-identical, metadata with working
BulkDataURIs, frames native and as stored, transfer syntax negotiation, rendered and thumbnails.
"""

from __future__ import annotations

import email.parser
import email.policy
from io import BytesIO

import httpx
import numpy as np
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import get_frame

from tests.helpers import split_part10
from tests.integration.web.conftest import Loaded

EXPLICIT_LE = "1.2.840.10008.1.2.1"
J2K = "1.2.840.10008.1.2.4.91"


def parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, content) of each part, parsed by the standard library's MIME parser."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + response.content)
    assert message.is_multipart(), response.headers["content-type"]
    return [(p.get("Content-Type", "").replace('"', ""), p.get_payload(decode=True)) for p in message.iter_parts()]


def urls(loaded: Loaded, name: str) -> tuple[str, str, str]:
    ds = loaded.by_file(name)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def instance_url(loaded: Loaded, name: str) -> str:
    study, series, sop = urls(loaded, name)
    return f"{loaded.server.dicomweb}/studies/{study}/series/{series}/instances/{sop}"


@pytest.fixture(scope="module")
def client(loaded: Loaded) -> DICOMwebClient:
    return loaded.server.client()


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb.dcm", "emri_small.dcm"])
def test_instance_comes_back_byte_identical(loaded: Loaded, name: str) -> None:
    sop = urls(loaded, name)[2]
    response = httpx.get(
        instance_url(loaded, name), headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    )
    assert response.status_code == 200
    ((part_type, content),) = parts(response)
    assert part_type.startswith("application/dicom")
    assert split_part10(content)[1] == split_part10(loaded.sent[sop])[1]


def test_study_and_series_retrieval_with_dicomweb_client(client: DICOMwebClient, loaded: Loaded) -> None:
    study, series, _ = urls(loaded, "CT_small.dcm")
    instances = client.retrieve_study(study, media_types=(("application/dicom", "*"),))
    assert sorted(str(ds.SOPInstanceUID) for ds in instances) == sorted(
        str(loaded.by_file(n).SOPInstanceUID) for n in ("CT_small.dcm", "CT_other")
    )
    (only,) = client.retrieve_series(study, series)
    assert np.array_equal(only.pixel_array, loaded.by_file("CT_small.dcm").pixel_array)


def test_compressed_instance_is_transcoded_when_asked_and_refused_when_impossible(
    client: DICOMwebClient, loaded: Loaded
) -> None:
    study, series, sop = urls(loaded, "JPEG2000.dcm")
    # Accept without transfer-syntax means Explicit VR Little Endian (PS3.18 Table 8.7.3-2)
    ds = client.retrieve_instance(study, series, sop, media_types=(("application/dicom", EXPLICIT_LE),))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert np.array_equal(ds.pixel_array, loaded.by_file("JPEG2000.dcm").pixel_array)
    as_stored = client.retrieve_instance(study, series, sop, media_types=(("application/dicom", "*"),))
    assert as_stored.file_meta.TransferSyntaxUID == J2K
    jpeg_ls = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80'
    response = httpx.get(instance_url(loaded, "JPEG2000.dcm"), headers={"Accept": jpeg_ls})
    assert response.status_code == 406
    assert response.json()["error"] == "NotAcceptable"


def test_metadata_has_bulk_data_uris_that_work(client: DICOMwebClient, loaded: Loaded) -> None:
    study, series, sop = urls(loaded, "CT_small.dcm")
    metadata = client.retrieve_instance_metadata(study, series, sop)
    assert metadata["00100010"]["Value"][0] == {"Alphabetic": "CompressedSamples^CT1"}
    uri = metadata["7FE00010"]["BulkDataURI"]
    assert uri.startswith(loaded.server.dicomweb) and "InlineBinary" not in metadata["7FE00010"]
    (pixels,) = client.retrieve_bulkdata(uri, media_types=("application/octet-stream",))
    assert pixels == loaded.by_file("CT_small.dcm").PixelData
    # a private OB value of CT_small is bulk data too
    private = next(v for v in metadata.values() if "BulkDataURI" in v and not v["BulkDataURI"].endswith("7FE00010"))
    (value,) = client.retrieve_bulkdata(private["BulkDataURI"])
    assert len(value) > 1024
    series_metadata = client.retrieve_series_metadata(study, series)
    study_metadata = client.retrieve_study_metadata(study)
    assert len(series_metadata) == 1 and len(study_metadata) == 2


def test_frames_native_and_as_stored(client: DICOMwebClient, loaded: Loaded) -> None:
    study, series, sop = urls(loaded, "CT_small.dcm")
    ct = loaded.by_file("CT_small.dcm")
    (frame,) = client.retrieve_instance_frames(study, series, sop, [1], media_types=("application/octet-stream",))
    assert np.array_equal(np.frombuffer(frame, dtype="<i2").reshape(128, 128), ct.pixel_array)

    emri = loaded.by_file("emri_small.dcm")
    study, series, sop = urls(loaded, "emri_small.dcm")
    frames = client.retrieve_instance_frames(study, series, sop, [2, 5], media_types=("application/octet-stream",))
    for got, index in zip(frames, (1, 4), strict=True):
        assert np.array_equal(np.frombuffer(got, dtype="<u2").reshape(64, 64), emri.pixel_array[index])

    nm = loaded.by_file("JPEG2000.dcm")
    study, series, sop = urls(loaded, "JPEG2000.dcm")
    (native,) = client.retrieve_instance_frames(study, series, sop, [1], media_types=("application/octet-stream",))
    assert np.array_equal(np.frombuffer(native, dtype="<i2").reshape(1024, 256), nm.pixel_array)  # signed
    stored = get_frame(nm.PixelData, 0, number_of_frames=1)
    (jp2,) = client.retrieve_instance_frames(study, series, sop, [1], media_types=(("image/jp2", J2K),))
    (any_syntax,) = client.retrieve_instance_frames(
        study, series, sop, [1], media_types=(("application/octet-stream", "*"),)
    )
    assert jp2.rstrip(b"\0") == stored.rstrip(b"\0") and any_syntax == jp2


def test_frame_response_names_the_transfer_syntax(loaded: Loaded) -> None:
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    response = httpx.get(instance_url(loaded, "JPEG2000.dcm") + "/frames/1", headers={"Accept": accept})
    assert response.status_code == 200
    assert f"transfer-syntax={J2K}" in response.headers["content-type"]
    ((part_type, _),) = parts(response)
    assert part_type == f"application/octet-stream; transfer-syntax={J2K}"


@pytest.mark.parametrize(("media_type", "pil_format"), [("image/jpeg", "JPEG"), ("image/png", "PNG")])
@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm", "SC_rgb.dcm", "MR_small.dcm"])
def test_rendered_is_an_image_of_the_instance_size(
    client: DICOMwebClient, loaded: Loaded, name: str, media_type: str, pil_format: str
) -> None:
    study, series, sop = urls(loaded, name)
    body = client.retrieve_instance_rendered(study, series, sop, media_types=(media_type,))
    image = Image.open(BytesIO(body))
    ds = loaded.by_file(name)
    assert image.format == pil_format
    assert image.size == (ds.Columns, ds.Rows)
    assert image.mode == ("RGB" if ds.SamplesPerPixel == 3 else "L")
    assert np.asarray(image).std() > 5  # not blank


def test_rendered_window_from_query_changes_the_image(loaded: Loaded) -> None:
    url = instance_url(loaded, "CT_small.dcm") + "/rendered"
    narrow = httpx.get(url, params={"window": "40,80"}, headers={"Accept": "image/png"})
    wide = httpx.get(url, params={"window": "500,4000,linear"}, headers={"Accept": "image/png"})
    assert narrow.status_code == wide.status_code == 200
    a = np.asarray(Image.open(BytesIO(narrow.content)), dtype=float)
    b = np.asarray(Image.open(BytesIO(wide.content)), dtype=float)
    assert a.std() > b.std()  # a narrow window gives more contrast
    sized = httpx.get(url, params={"viewport": "64,32", "quality": "50"})
    assert sized.headers["content-type"] == "image/jpeg"
    assert Image.open(BytesIO(sized.content)).size == (32, 32)


def test_multiframe_rendered_frame(loaded: Loaded) -> None:
    response = httpx.get(instance_url(loaded, "emri_small.dcm") + "/frames/7/rendered", headers={"Accept": "image/png"})
    assert response.status_code == 200
    assert Image.open(BytesIO(response.content)).size == (64, 64)


def test_thumbnails_at_every_level(loaded: Loaded) -> None:
    study, series, _ = urls(loaded, "CT_small.dcm")
    base = loaded.server.dicomweb
    for url in (
        f"{base}/studies/{study}/thumbnail",
        f"{base}/studies/{study}/series/{series}/thumbnail",
        instance_url(loaded, "SC_rgb.dcm") + "/thumbnail",
    ):
        response = httpx.get(url)
        assert response.status_code == 200, response.text
        image = Image.open(BytesIO(response.content))
        assert image.format == "JPEG" and max(image.size) == 128
    sized = httpx.get(instance_url(loaded, "JPEG2000.dcm") + "/thumbnail", params={"viewport": "100,100"})
    assert Image.open(BytesIO(sized.content)).size == (25, 100)  # 256 x 1024 fitted into 100 x 100


def test_retrieved_instance_decodes(client: DICOMwebClient, loaded: Loaded) -> None:
    study, series, sop = urls(loaded, "SC_rgb.dcm")
    ds = client.retrieve_instance(study, series, sop)
    assert np.array_equal(ds.pixel_array, dcmread(BytesIO(loaded.sent[sop])).pixel_array)
