"""Our DICOM JSON of stored headers is pydicom's, value for value, with the element memo on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.web.dicomweb import json as dicom_json

FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "emri_small_RLE.dcm", "SC_rgb.dcm", "liver.dcm",
         "JPGExtended.dcm", "ExplVR_BigEnd.dcm", "empty_charset_LEI.dcm",
         "image_dfl.dcm", "OBXXXX1A.dcm"]


def _uri(bulk: str) -> str:
    return f"http://node/dicom-web/instances/x/bulkdata/{bulk}"


def _pydicom_json(path: Path) -> dict:
    """pydicom's whole-dataset conversion of the same file, with the same bulk stand-ins."""
    ds = dcmread(path, defer_size=dicom_json.BULK_DATA_THRESHOLD)
    dicom_json._stand_in_bulk(ds)
    paths: dict[int, str] = {}
    dicom_json._paths(ds, "", paths)
    return ds.to_json_dict(bulk_data_element_handler=lambda e: _uri(paths.get(id(e), f"{int(e.tag):08X}")),
                           bulk_data_threshold=dicom_json.BULK_DATA_THRESHOLD * 4 // 3)


@pytest.mark.parametrize("name", FILES)
def test_metadata_is_pydicoms_json_first_and_second_time(name: str) -> None:
    path = Path(get_testdata_file(name, download=False))
    expected = _pydicom_json(path)
    for _ in range(2):  # the second read takes the repeated values from the memo
        got = dicom_json.read_metadata(path, bulk_data_uri=_uri)
        assert list(got) == list(expected)
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_memo_keeps_each_instances_own_values_and_character_set(tmp_path: Path) -> None:
    # A series: shared patient/study values come from the memo, per-instance ones must not.
    datasets = synthetic_ct(shape=(4, 8, 8), seed=3)
    datasets[2].SpecificCharacterSet = "ISO_IR 100"
    datasets[2].PatientName = "Müller^Jörg"
    answers = []
    for number, ds in enumerate(datasets):
        path = tmp_path / f"{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        answers.append(dicom_json.read_metadata(path, bulk_data_uri=_uri))
        assert answers[-1] == _pydicom_json(path)
    assert len({a["00080018"]["Value"][0] for a in answers}) == 4  # SOPInstanceUID per instance
    assert answers[2]["00100010"]["Value"][0]["Alphabetic"] == "Müller^Jörg"
    assert answers[0]["00100010"] == answers[1]["00100010"]
