"""write_tid1500_sr: one measurement group per finding, centre as SCOORD3D, source references."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from highdicom.sr.utils import find_content_items
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ai_pipelines.base import Finding, SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.synthetic.series import synthetic_ct
from ai_pipelines.volume import Volume, load_volume
from ai_pipelines.writers import Segment, write_seg, write_tid1500_sr

Roundtrip = Callable[[Dataset], Dataset]


def _findings(volume: Volume) -> list[Finding]:
    return [
        Finding("nodule 1", hd.UID(), codes.SCT.Nodule,
                tuple(volume.index_to_patient((5.5, 23.0, 20.5))), volume_mm3=420.0,
                diameter_mm=9.0, probability=0.93, finding_site=codes.SCT.Lung, segment_number=1),
        Finding("nodule 2", hd.UID(), codes.SCT.Nodule,
                tuple(volume.index_to_patient((9.0, 40.0, 44.0))), diameter_mm=4.0,
                probability=0.41),
    ]


def test_report_round_trips_with_one_group_per_finding(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    findings = _findings(ct_volume)
    sr = roundtrip(write_tid1500_sr(ct_series, ct_volume, findings, algorithm=algorithm))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == (
        "COMPLETE", "UNVERIFIED", "PRELIMINARY")
    assert sr.StudyInstanceUID == ct_series.study_instance_uid
    assert sr.SeriesNumber == 1020
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    groups = report.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_uid for g in groups] == [f.tracking_uid for f in findings]
    first = groups[0]
    assert first.tracking_identifier == "nodule 1"
    assert first.finding_type == codes.SCT.Nodule
    assert first.finding_sites[0].value == codes.SCT.Lung
    values = {m.name.meaning: (m.value, m.unit.value) for m in first.get_measurements()}
    assert values == {"Volume": (420.0, "mm3"), "Diameter": (9.0, "mm"),
                      "Probability": (pytest.approx(0.93), "1")}
    surface = first.roi
    assert surface.graphic_type == hd.sr.GraphicTypeValues3D.POINT
    point = surface[0]
    assert point.ReferencedFrameOfReferenceUID == ct_volume.frame_of_reference_uid
    assert np.allclose(point.value[0], findings[0].centre, atol=1e-3)
    assert [m.name.meaning for m in groups[1].get_measurements()] == ["Diameter", "Probability"]


def test_groups_reference_the_slices_the_finding_lies_on(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    findings = _findings(ct_volume)  # nodule 1: centre between slices 5 and 6, 9 mm across
    sr = roundtrip(write_tid1500_sr(ct_series, ct_volume, findings, algorithm=algorithm))
    group = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_volumetric_roi_measurement_groups()[0]
    referenced = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                  for item in group.roi if item.ValueType == "IMAGE"}
    # 9 mm across at 2.5 mm spacing: slices whose centres lie within 4.5 mm of z = 5.5
    expected = {ct_volume.sources[k].sop_instance_uid for k in (4, 5, 6, 7)}
    assert referenced == expected


def test_evidence_lists_the_source_series_and_the_seg(
    ct_series: SeriesInput, ct_volume: Volume, nodule_mask: np.ndarray,
    algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    findings = _findings(ct_volume)
    segment = Segment("nodule 1", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule,
                      nodule_mask, findings[0].tracking_uid, "nodule 1")
    seg = write_seg(ct_series, ct_volume, [segment], algorithm=algorithm)
    sr = roundtrip(write_tid1500_sr(ct_series, ct_volume, findings, algorithm=algorithm,
                                    segmentation=seg))
    evidence = {
        instance.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    assert evidence == {ds.SOPInstanceUID for ds in ct_series.datasets} | {seg.SOPInstanceUID}
    assert seg.SegmentSequence[0].TrackingUID == findings[0].tracking_uid  # the link


def test_algorithm_is_named_as_observer_and_in_every_group(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo, tmp_path: Path,
) -> None:
    path = tmp_path / "sr.dcm"
    pydicom.dcmwrite(path, write_tid1500_sr(ct_series, ct_volume, _findings(ct_volume),
                                            algorithm=algorithm))
    report = hd.sr.srread(path)
    group = report.content.get_volumetric_roi_measurement_groups()[0]
    names = find_content_items(group[0], name=codes.DCM.AlgorithmName, recursive=True)
    versions = find_content_items(group[0], name=codes.DCM.AlgorithmVersion, recursive=True)
    assert {item.TextValue for item in names} == {"test_algorithm"}  # group and measurements
    assert {item.TextValue for item in versions} == {"1.2.3"}
    parameters = find_content_items(group[0], name=codes.DCM.AlgorithmParameters, recursive=True)
    assert "weights_sha256=" + "ab" * 32 in {item.TextValue for item in parameters}
    observer = find_content_items(report.content[0], name=codes.DCM.DeviceObserverName)
    assert [item.TextValue for item in observer] == ["test_algorithm"]
    ours = [e for e in report.ContributingEquipmentSequence if e.Manufacturer == "dicomnode"]
    assert ours and ours[0].SoftwareVersions == "1.2.3"


def test_no_findings_reports_the_target_absent(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    sr = roundtrip(write_tid1500_sr(ct_series, ct_volume, [], algorithm=algorithm,
                                    looked_for=codes.SCT.Nodule))
    groups = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_planar_roi_measurement_groups()
    assert groups == []
    text = str(sr)
    assert "Nodule" in text and "Absent" in text


def test_a_seg_from_another_study_is_refused(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    other = SeriesInput(synthetic_ct(seed=42))
    foreign = write_seg(
        other, load_volume(other),
        [Segment("x", codes.SCT.Tissue, codes.SCT.Lung, np.ones(ct_volume.shape, bool))],
        algorithm=algorithm,
    )
    with pytest.raises(ValueError, match="another study"):
        write_tid1500_sr(ct_series, ct_volume, [], algorithm=algorithm, segmentation=foreign)
