"""write_sc: an RGB key slice with results drawn on it, referencing its source slice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ai_pipelines.base import Finding, SeriesInput
from ai_pipelines.frames import FrameRef
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.synthetic.series import synthetic_ct
from ai_pipelines.volume import Volume, load_volume
from ai_pipelines.writers import Segment, overlay, write_image_sc, write_sc
from ai_pipelines.writers.sc import choose_key_slice, patient_orientation

Roundtrip = Callable[[Dataset], Dataset]


def _segment(mask: np.ndarray) -> Segment:
    return Segment("nodule 1", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule, mask)


def test_key_image_round_trips_and_references_its_slice(
    ct_series: SeriesInput, ct_volume: Volume, nodule_mask: np.ndarray,
    algorithm: AlgorithmInfo, roundtrip: Roundtrip, tmp_path: Path,
) -> None:
    mask = nodule_mask.copy()
    mask[6, 18:29, 16:26] = True  # slice 6 has the most area
    sc = roundtrip(write_sc(ct_series, ct_volume, algorithm=algorithm, segments=[_segment(mask)]))
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel, sc.BitsAllocated) == ("RGB", 3, 8)
    assert (sc.Rows, sc.Columns) == (64, 64)
    assert sc.StudyInstanceUID == ct_series.study_instance_uid
    assert sc.PatientName == ct_series.datasets[0].PatientName
    assert sc.SeriesNumber == 1030
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"]
    assert sc.ConversionType == "WSD" and sc.BurnedInAnnotation == "NO"
    assert list(sc.PatientOrientation) == ["L", "P"]
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == ct_volume.sources[6].sop_instance_uid
    assert "test_algorithm 1.2.3" in sc.DerivationDescription
    assert any(e.ManufacturerModelName == "test_algorithm"
               for e in sc.ContributingEquipmentSequence)
    rgb = sc.pixel_array
    boundary = overlay.outline(mask[6])
    assert np.all(rgb[boundary] == overlay.PALETTE[0])
    inside = mask[6] & ~boundary
    assert np.all(rgb[inside][:, 0] == rgb[inside][:, 1])  # still grey inside the outline
    glyph = np.array([[c == "1" for c in line] for line in overlay._GLYPHS["A"]])
    assert np.all(rgb[2:9, 2:7][glyph] == (255, 230, 0))  # "A" of the "AI" mark, 2 px in
    path = tmp_path / "sc.dcm"
    pydicom.dcmwrite(path, sc)
    assert isinstance(hd.imread(path), hd.Image)


def test_window_from_the_header_sets_the_grey_levels(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    sc = write_sc(ct_series, ct_volume, algorithm=algorithm, slice_index=3)
    rgb = sc.pixel_array
    values = ct_volume.array[3]
    expected = overlay.to_rgb(values, (40.0, 400.0))[..., 0]  # the synthetic header's window
    assert np.array_equal(rgb[20:, :, 0], expected[20:, :])  # below the "AI" mark


def test_findings_are_circled_and_heat_is_blended(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    centre = tuple(ct_volume.index_to_patient((5.0, 32.0, 20.0)))
    finding = Finding("nodule 1", hd.UID(), codes.SCT.Nodule, centre, diameter_mm=10.0)
    plain = write_sc(ct_series, ct_volume, algorithm=algorithm, slice_index=5).pixel_array
    circled = write_sc(ct_series, ct_volume, algorithm=algorithm, findings=[finding]).pixel_array
    changed = np.any(circled != plain, axis=-1)
    rows, columns = np.nonzero(changed)
    assert abs(rows.mean() - 32.0) < 1 and abs(columns.mean() - 20.0) < 1  # ring centred
    heat = np.zeros(ct_volume.shape)
    heat[5, 30:35, 30:35] = 1.0
    hot = write_sc(ct_series, ct_volume, algorithm=algorithm, heatmap=heat).pixel_array
    assert np.any(hot[30:35, 30:35] != plain[30:35, 30:35])
    assert np.array_equal(hot[40:, :], plain[40:, :])


def test_key_slice_choice() -> None:
    class Fake:
        shape = (5, 4, 4)

        @staticmethod
        def patient_to_index(point: object) -> np.ndarray:
            return np.array([3.4, 0.0, 0.0])

    volume = Fake()
    masks = np.zeros((5, 4, 4), bool)
    assert choose_key_slice(volume) == 2  # type: ignore[arg-type]
    finding = Finding("n", "1.2", codes.SCT.Nodule, (0, 0, 0))
    assert choose_key_slice(volume, [_segment(masks)], [finding]) == 3  # type: ignore[arg-type]
    masks[1, :2, :2] = True
    assert choose_key_slice(volume, [_segment(masks)], [finding]) == 1  # type: ignore[arg-type]
    heat = np.zeros((5, 4, 4))
    heat[4, 0, 0] = 0.5
    assert choose_key_slice(volume, heatmap=heat) == 4  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cosine", "letters"),
    [((1, 0, 0), "L"), ((0, -1, 0), "A"), ((0, 0, -1), "F"), ((0.8, 0.6, 0), "LP"),
     ((-0.1, 0.2, 0.97), "H")],
)
def test_patient_orientation_letters(cosine: tuple[float, float, float], letters: str) -> None:
    assert patient_orientation(cosine) == letters


def test_bad_arguments_are_refused(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    with pytest.raises(ValueError, match="slice_index=12"):
        write_sc(ct_series, ct_volume, algorithm=algorithm, slice_index=12)
    with pytest.raises(ValueError, match="shape"):
        write_sc(ct_series, ct_volume, algorithm=algorithm, heatmap=np.zeros((2, 2, 2)))


def test_an_oblique_key_image_keeps_two_letter_orientations(algorithm: AlgorithmInfo) -> None:
    series = SeriesInput(synthetic_ct(shape=(4, 16, 16), orientation=(0.8, 0.6, 0, -0.6, 0.8, 0)))
    sc = write_sc(series, load_volume(series), algorithm=algorithm)
    assert list(sc.PatientOrientation) == ["LP", "PR"]  # highdicom alone takes one letter


def test_a_rendered_image_becomes_a_grey_sc_referencing_every_slice_shown(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    pixels = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    sources = [ct_volume.sources[2], ct_volume.sources[7]]
    sc = roundtrip(write_image_sc(
        ct_series, pixels, algorithm=algorithm, sources=sources, series_description="x" * 80,
        derivation_description="made", image_comments="not acquired", series_index=5,
    ))
    assert (sc.PhotometricInterpretation, sc.Rows, sc.Columns) == ("MONOCHROME2", 20, 30)
    assert np.array_equal(sc.pixel_array, pixels)
    assert sc.SeriesNumber == 1035 and sc.SeriesDescription == "x" * 64
    assert sc.PatientOrientation == "" and "PixelSpacing" not in sc
    assert sc.BurnedInAnnotation == "NO" and "LossyImageCompression" not in sc
    assert [i.ReferencedSOPInstanceUID for i in sc.SourceImageSequence] == [
        s.sop_instance_uid for s in sources]
    assert (sc.DerivationDescription, sc.ImageComments) == ("made", "not acquired")


def test_a_rendered_image_inherits_burned_in_text_and_lossy_compression(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    ref = ct_volume.sources[0]
    source = next(ds for ds in ct_series.datasets if ds.SOPInstanceUID == ref.sop_instance_uid)
    source.BurnedInAnnotation, source.LossyImageCompression = "YES", "01"
    sc = write_image_sc(ct_series, np.zeros((4, 4, 3), np.uint8), algorithm=algorithm,
                        sources=[ref], series_description="s", derivation_description="d",
                        image_comments="c", patient_orientation=("LP", "F"))
    assert (sc.PhotometricInterpretation, sc.BurnedInAnnotation) == ("RGB", "YES")
    assert sc.LossyImageCompression == "01" and list(sc.PatientOrientation) == ["LP", "F"]


def test_a_rendered_image_is_checked(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    ok = {"series_description": "s", "derivation_description": "d", "image_comments": "c"}
    ref = ct_volume.sources[0]
    for pixels in (np.zeros((4, 4), np.uint16), np.zeros((4, 4, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8"):
            write_image_sc(ct_series, pixels, algorithm=algorithm, sources=[ref], **ok)
    grey = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="at least one source"):
        write_image_sc(ct_series, grey, algorithm=algorithm, sources=[], **ok)
    with pytest.raises(ValueError, match="outside the series: 1.2.3"):
        write_image_sc(ct_series, grey, algorithm=algorithm,
                       sources=[FrameRef(ref.sop_class_uid, "1.2.3")], **ok)
    with pytest.raises(ValueError, match="patient_orientation"):
        write_image_sc(ct_series, grey, algorithm=algorithm, sources=[ref],
                       patient_orientation=("X", "P"), **ok)
