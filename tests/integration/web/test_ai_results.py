"""Our AI results (SEG, TID 1500 SR) stored and retrieved with dicomweb-client, as written.

Issue 4 asks that a DICOMweb viewer get the SEG and SR exactly as the writers made them: STOW
them with the source CT, find them with QIDO, retrieve them with WADO-RS, and read them back
with highdicom.
"""

from __future__ import annotations

import io

import highdicom as hd
import numpy as np
import pydicom
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from ai_pipelines.base import Finding, SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.synthetic.series import synthetic_ct
from ai_pipelines.volume import load_volume
from ai_pipelines.writers import Segment, write_seg, write_tid1500_sr
from tests.helpers import split_part10
from tests.integration.web.conftest import WebServer, part10

ALGORITHM = AlgorithmInfo(name="nodule_test", version="0.1.0", weights_sha256="cd" * 32, parameters={"t": 0.5})


def _results() -> tuple[list[pydicom.Dataset], pydicom.Dataset, pydicom.Dataset]:
    source = synthetic_ct(seed=11)
    series = SeriesInput(source)
    volume = load_volume(series)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[4:8, 20:27, 18:24] = True
    finding = Finding(
        "nodule 1", hd.UID(), codes.SCT.Nodule, tuple(volume.index_to_patient((5.5, 23.0, 20.5))),
        volume_mm3=420.0, diameter_mm=9.0, probability=0.93, finding_site=codes.SCT.Lung, segment_number=1,
    )
    segment = Segment(
        "nodule 1", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule, mask,
        finding.tracking_uid, "nodule 1",
    )
    seg = write_seg(series, volume, [segment], algorithm=ALGORITHM)
    sr = write_tid1500_sr(series, volume, [finding], algorithm=ALGORITHM, segmentation=seg)
    return source, seg, sr


def test_seg_and_sr_round_trip_through_dicomweb(web: WebServer) -> None:
    source, seg, sr = _results()
    client = web.client()
    result = client.store_instances([*source, seg, sr])
    assert "FailedSOPSequence" not in result
    study = str(seg.StudyInstanceUID)

    found = {
        pydicom.Dataset.from_json(item).Modality: pydicom.Dataset.from_json(item)
        for item in client.search_for_series(study_instance_uid=study)
    }
    assert set(found) == {"CT", "SEG", "SR"}
    assert found["SEG"].SeriesInstanceUID == seg.SeriesInstanceUID

    for written in (seg, sr):
        retrieved = client.retrieve_instance(study, str(written.SeriesInstanceUID), str(written.SOPInstanceUID))
        buffer = io.BytesIO()
        retrieved.save_as(buffer, enforce_file_format=True)
        # the dataset as written, byte for byte after the file meta
        assert split_part10(buffer.getvalue())[1] == split_part10(part10(written))[1]

    retrieved_seg = client.retrieve_instance(study, str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID))
    segmentation = hd.seg.Segmentation.from_dataset(retrieved_seg)
    assert segmentation.number_of_segments == 1
    assert segmentation.get_segment_description(1).segment_label == "nodule 1"
    algorithm = segmentation.get_segment_description(1).algorithm_identification
    assert algorithm is not None and algorithm[0].AlgorithmName == "nodule_test"

    retrieved_sr = client.retrieve_instance(study, str(sr.SeriesInstanceUID), str(sr.SOPInstanceUID))
    report = hd.sr.Comprehensive3DSR.from_dataset(retrieved_sr)
    groups = report.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 1 and groups[0].tracking_identifier == "nodule 1"
    assert groups[0].finding_type == CodedConcept.from_code(codes.SCT.Nodule)

    metadata = client.retrieve_series_metadata(study, str(seg.SeriesInstanceUID))
    assert metadata and "BulkDataURI" in metadata[0]["7FE00010"]  # SEG frames are bulk data
