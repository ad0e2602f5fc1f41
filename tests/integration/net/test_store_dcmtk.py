"""C-ECHO and C-STORE from real DCMTK peers: every file stored and indexed, content unchanged.

storescu decodes and re-encodes what it sends (it drops group lengths, may change padding),
so here the stored dataset is compared element by element with the original; byte identity
of what travels is tested with pynetdicom's SCU, which sends file bytes as they are.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from dicomnode.db.models import Instance, Series, Study
from dicomnode.db.session import sqlalchemy_url
from tests.helpers import dcmtk

pytestmark = [pytest.mark.dcmtk]

# pydicom's bundled files across the transfer syntaxes the node must accept, each with the
# storescu option that makes it propose the file's own syntax (so nothing is transcoded)
BUNDLED = [
    ("CT_small.dcm", []),  # explicit VR LE
    ("MR_small_implicit.dcm", ["-xi"]),  # implicit VR LE
    ("image_dfl.dcm", ["-xd"]),  # deflated explicit VR LE
    ("SC_rgb_jpeg_dcmtk.dcm", ["-xy"]),  # JPEG baseline
    ("JPEG-lossy.dcm", ["-xx"]),  # JPEG extended (12 bit)
    ("JPEG-LL.dcm", ["-xs"]),  # JPEG lossless SV1
    ("MR_small_jpeg_ls_lossless.dcm", ["-xt"]),  # JPEG-LS lossless
    ("MR_small_jp2klossless.dcm", ["-xv"]),  # JPEG 2000 lossless
    ("JPEG2000.dcm", ["-xw"]),  # JPEG 2000
    ("MR_small_RLE.dcm", ["-xr"]),  # RLE lossless
    ("rtplan.dcm", ["-xi"]),  # RT plan, implicit VR LE
    ("emri_small.dcm", []),  # multi-frame MR
]


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the file meta: what travels over DIMSE and must be stored unchanged."""
    ds = dcmread(path, stop_before_pixels=True)
    meta_length = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    return path.read_bytes()[meta_length:]


def assert_same_content(stored: Path, original: Path) -> None:
    """Every element of the original (but group lengths) is in the stored file with its value."""
    a, b = dcmread(stored), dcmread(original)
    assert a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID
    for elem in b:
        if elem.tag.element == 0 or elem.tag == 0xFFFCFFFC:  # group lengths, trailing padding
            continue
        assert elem.tag in a, f"{elem.tag} missing"
        assert a[elem.tag].value == elem.value, f"{elem.tag} differs"


def indexed(db_url: str, sop_instance_uid: str) -> tuple[Instance, Series, Study] | None:
    engine = create_engine(sqlalchemy_url(db_url))
    try:
        with Session(engine) as session:
            row = session.execute(
                select(Instance, Series, Study)
                .join(Series, Series.id == Instance.series_fk)
                .join(Study, Study.id == Series.study_fk)
                .where(Instance.sop_instance_uid == sop_instance_uid)
            ).first()
            return None if row is None else (row[0], row[1], row[2])
    finally:
        engine.dispose()


def test_echoscu(node) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [dcmtk("echoscu"), "-aec", node.ae_title, "127.0.0.1", str(node.port)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("name", "options"), BUNDLED, ids=[n for n, _ in BUNDLED])
def test_storescu_stored_and_indexed(node, name: str, options: list[str]) -> None:  # type: ignore[no-untyped-def]
    files = [Path(get_testdata_file(name))]
    result = subprocess.run(
        [dcmtk("storescu"), *options, "-aec", node.ae_title, "-aet", "DCMTKSCU", "127.0.0.1", str(node.port),
         *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for path in files:
        original = dcmread(path, stop_before_pixels=True)
        row = indexed(node.db_url, original.SOPInstanceUID)
        assert row is not None, f"{path.name} not indexed"
        instance, series, study = row
        stored = node.store_root / instance.file_path
        assert instance.file_path == (
            f"{original.StudyInstanceUID}/{original.SeriesInstanceUID}/{original.SOPInstanceUID}.dcm"
        )
        assert_same_content(stored, path)
        assert instance.transfer_syntax_uid == original.file_meta.TransferSyntaxUID
        assert instance.sop_class_uid == original.SOPClassUID
        assert instance.calling_ae_title == "DCMTKSCU"
        assert instance.peer_address == "127.0.0.1"
        assert instance.file_size == stored.stat().st_size
        assert series.modality == original.Modality
        assert study.study_instance_uid == original.StudyInstanceUID
        assert original.Modality in study.modalities_in_study
        reread = dcmread(stored)
        assert reread.file_meta.SourceApplicationEntityTitle == "DCMTKSCU"
