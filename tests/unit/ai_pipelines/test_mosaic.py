"""Siemens mosaic helpers: CSA header parsing and tile layout."""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest

from ai_pipelines.mosaic import is_mosaic, mosaic_tiles, read_csa_header
from ai_pipelines.synthetic.series import synthetic_mr


def _csa(tags: dict[str, list[str]]) -> bytes:
    """Build a CSA2 header the way Siemens lays it out."""
    out = bytearray(b"SV10\x04\x03\x02\x01" + struct.pack("<2I", len(tags), 77))
    for name, items in tags.items():
        out += struct.pack("<64si4s3i", name.encode(), len(items), b"FD\0\0", 3, 6, 77)
        for item_no in range(6):
            text = (items[item_no] + "\0").encode() if item_no < len(items) else b""
            out += struct.pack("<4i", len(text), len(text), 77, len(text))
            out += text + b"\0" * (-len(text) % 4)
    return bytes(out)


def test_csa_header_round_trip() -> None:
    header = _csa({"SliceNormalVector": ["0.0", "0.1", "0.99"], "Empty": []})
    assert read_csa_header(header) == {"SliceNormalVector": ["0.0", "0.1", "0.99"], "Empty": []}


@pytest.mark.parametrize("data", [b"", b"garbage", b"SV10\x04\x03\x02\x01\xff\xff\xff\x7f"])
def test_unreadable_csa_headers_give_nothing(data: bytes) -> None:
    assert read_csa_header(data) == {}


def test_real_csa_header_has_the_slice_normal(shared_data: Path) -> None:
    path = next((shared_data / "dicom/dcm_qa_orientation/sag/sagasc35").glob("MR*"))
    ds = pydicom.dcmread(path)
    tags = read_csa_header(ds.private_block(0x0029, "SIEMENS CSA HEADER")[0x10].value)
    # sagittal: the tiles advance to the patient's left, against row x column
    assert [float(v) for v in tags["SliceNormalVector"]] == [1.0, 0.0, 0.0]
    assert is_mosaic(ds)
    tiles = mosaic_tiles(ds)
    assert tiles is not None and len(tiles) == 35
    assert tiles[1].position[0] - tiles[0].position[0] == pytest.approx(3.6, abs=1e-6)
    assert (tiles[6].row, tiles[6].column, tiles[6].rows) == (64, 0, 64)


def test_ordinary_images_are_not_mosaics() -> None:
    ds = synthetic_mr(shape=(1, 8, 8))[0]
    assert not is_mosaic(ds)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]
    assert is_mosaic(ds) and mosaic_tiles(ds) is None  # no NumberOfImagesInMosaic
