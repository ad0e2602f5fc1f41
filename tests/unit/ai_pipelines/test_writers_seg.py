"""write_seg: round trip through pydicom and highdicom; references and geometry by position."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ai_pipelines.base import SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.volume import Volume, load_volume
from ai_pipelines.writers import Segment, write_seg

Roundtrip = Callable[[Dataset], Dataset]


def _nodule(mask: np.ndarray, uid: str | None = None) -> Segment:
    return Segment("nodule 1", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule, mask,
                   tracking_uid=uid or hd.UID(), tracking_identifier="nodule 1",
                   anatomic_region=codes.SCT.Lung)


def _mask_on_grid(seg: Dataset, volume: Volume, segment_number: int) -> np.ndarray:
    """Read a segment back and place it on ``volume``'s grid through patient coordinates."""
    theirs = hd.seg.Segmentation.from_dataset(seg).get_volume(segment_numbers=[segment_number],
                                            combine_segments=False)
    mask = np.zeros(volume.shape, dtype=np.float32)
    k, j, i = np.meshgrid(*(np.arange(n) for n in theirs.spatial_shape), indexing="ij")
    indices = np.stack([k, j, i], -1).reshape(-1, 3)
    points = np.c_[indices, np.ones(len(indices))] @ theirs.affine.T
    ours = np.rint(volume.patient_to_index(points[:, :3])).astype(int)
    mask[tuple(ours.T)] = theirs.array[..., 0].reshape(-1)
    return mask


def test_binary_seg_round_trips_and_lines_up(
    ct_series: SeriesInput, ct_volume: Volume, nodule_mask: np.ndarray,
    algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    uid = hd.UID()
    seg = roundtrip(write_seg(ct_series, ct_volume, [_nodule(nodule_mask, uid)],
                              algorithm=algorithm))
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == ct_series.study_instance_uid
    assert seg.FrameOfReferenceUID == ct_volume.frame_of_reference_uid
    assert seg.SeriesNumber == 1010  # source series 1, kind SEG
    assert seg.SeriesDescription == "AI test_algorithm segmentation"
    assert seg.NumberOfFrames == 4  # empty frames are left out
    segment = seg.SegmentSequence[0]
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "27925004"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.TrackingUID == uid
    assert segment.AnatomicRegionSequence[0].CodeMeaning == "Lung"
    algorithm_item = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm_item.AlgorithmName, algorithm_item.AlgorithmVersion) == ("test_algorithm",
                                                                              "1.2.3")
    assert algorithm_item.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert "weights_sha256=" + "ab" * 32 in algorithm_item.AlgorithmParameters
    ours = [e for e in seg.ContributingEquipmentSequence if e.Manufacturer == "dicomnode"]
    assert ours[0].ManufacturerModelName == "test_algorithm"
    assert ours[0].SoftwareVersions == "1.2.3"
    assert ours[0].PurposeOfReferenceCodeSequence[0].CodeMeaning == "Processing Equipment"
    assert np.array_equal(_mask_on_grid(seg, ct_volume, 1), nodule_mask)


def test_seg_reads_back_with_highdicom_segread(
    ct_series: SeriesInput, ct_volume: Volume, nodule_mask: np.ndarray,
    algorithm: AlgorithmInfo, tmp_path: Path,
) -> None:
    path = tmp_path / "seg.dcm"
    pydicom.dcmwrite(path, write_seg(ct_series, ct_volume, [_nodule(nodule_mask)],
                                     algorithm=algorithm))
    seg = hd.seg.segread(path)
    assert seg.get_segment_numbers() == [1]
    assert seg.get_source_image_uids()  # (study, series, instance) of the referenced slices


def test_each_frame_references_the_source_slice_at_its_position(
    ct_series: SeriesInput, ct_volume: Volume, nodule_mask: np.ndarray,
    algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    seg = roundtrip(write_seg(ct_series, ct_volume, [_nodule(nodule_mask)], algorithm=algorithm))
    by_uid = {ds.SOPInstanceUID: ds for ds in ct_series.datasets}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        referenced = by_uid[source.ReferencedSOPInstanceUID]
        assert [float(v) for v in referenced.ImagePositionPatient] == pytest.approx(position)
    listed = {item.ReferencedSOPInstanceUID
              for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert listed == set(by_uid)


def test_fractional_seg_with_two_segments(
    ct_series: SeriesInput, ct_volume: Volume, nodule_mask: np.ndarray,
    algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    probability = np.where(nodule_mask, 0.8, 0.0).astype(np.float32)
    lung = np.zeros(ct_volume.shape, dtype=np.float32)
    lung[:, 10:30, 10:30] = 0.25
    segments = [_nodule(probability),
                Segment("lung", codes.SCT.Organ, codes.SCT.Lung, lung)]
    seg = roundtrip(write_seg(ct_series, ct_volume, segments, algorithm=algorithm,
                              fractional=True))
    assert seg.SegmentationType == "FRACTIONAL"
    assert seg.SegmentationFractionalType == "PROBABILITY"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["nodule 1", "lung"]
    assert np.allclose(_mask_on_grid(seg, ct_volume, 1), probability, atol=1 / 255)
    assert np.allclose(_mask_on_grid(seg, ct_volume, 2), lung, atol=1 / 255)


def test_an_empty_result_still_makes_a_valid_seg(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    empty = np.zeros(ct_volume.shape, dtype=bool)
    seg = roundtrip(write_seg(ct_series, ct_volume, [_nodule(empty)], algorithm=algorithm))
    assert seg.NumberOfFrames == ct_volume.shape[0]
    assert not hd.seg.Segmentation.from_dataset(seg).get_volume().array.any()


def test_enhanced_source_frames_are_referenced_by_frame_number(
    algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    path = get_testdata_file("eCT_Supplemental.dcm", download=False)
    assert path is not None
    series = SeriesInput([pydicom.dcmread(path)])
    volume = load_volume(series)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[0, 100:200, 100:200] = True  # slice 0 is frame 2
    seg = roundtrip(write_seg(series, volume, [_nodule(mask)], algorithm=algorithm))
    source = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence
    assert int(source[0].ReferencedFrameNumber) == 2


def test_mosaic_tiles_are_referenced_through_geometry(
    shared_data: Path, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    path = next((shared_data / "dicom/dcm_qa_orientation/ax/axasc35").glob("MR*"))
    series = SeriesInput([pydicom.dcmread(path)])
    volume = load_volume(series)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[17, 20:40, 20:40] = True
    with warnings.catch_warnings():
        # highdicom warns that this scanner's PatientName "stc_test" has one component
        warnings.filterwarnings("ignore", message="The string .* person name",
                                category=UserWarning)
        seg = roundtrip(write_seg(series, volume, [_nodule(mask)], algorithm=algorithm))
    frame = seg.PerFrameFunctionalGroupsSequence[0]
    source = frame.DerivationImageSequence[0].SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == series.datasets[0].SOPInstanceUID
    assert source.SpatialLocationsPreserved == "NO"  # the tile is part of the mosaic image
    assert [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient] == \
        pytest.approx(volume.slice_position(17))


def test_bad_segments_are_refused(
    ct_series: SeriesInput, ct_volume: Volume, nodule_mask: np.ndarray, algorithm: AlgorithmInfo,
) -> None:
    with pytest.raises(ValueError, match="at least one segment"):
        write_seg(ct_series, ct_volume, [], algorithm=algorithm)
    with pytest.raises(ValueError, match="shape"):
        write_seg(ct_series, ct_volume, [_nodule(nodule_mask[1:])], algorithm=algorithm)
    with pytest.raises(ValueError, match="boolean"):
        write_seg(ct_series, ct_volume, [_nodule(nodule_mask.astype(float))], algorithm=algorithm)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_seg(ct_series, ct_volume, [_nodule(nodule_mask * 2.0)], algorithm=algorithm,
                  fractional=True)
    with pytest.raises(ValueError, match="go together"):
        Segment("x", codes.SCT.Tissue, codes.SCT.Lung, nodule_mask, tracking_uid="1.2")
