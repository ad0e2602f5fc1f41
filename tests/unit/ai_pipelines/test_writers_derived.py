"""write_derived_series: same grid, same study and frame of reference, HU round trip, AI labels."""

from __future__ import annotations

from collections.abc import Callable

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ai_pipelines.base import SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.volume import Volume, load_volume
from ai_pipelines.writers import write_derived_series
from ai_pipelines.writers.derived import choose_rescale

Roundtrip = Callable[[Dataset], Dataset]


def test_derived_ct_keeps_geometry_and_hounsfield_units(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    values = ct_volume.array * 0.5 + 0.3
    outputs = [roundtrip(ds) for ds in write_derived_series(
        ct_series, ct_volume, values, algorithm=algorithm, series_description="AI denoised",
        burn_in_mark=False)]
    again = load_volume(outputs)
    assert np.allclose(again.affine, ct_volume.affine, atol=1e-5)
    assert np.array_equal(again.array, np.rint(values))  # 1 HU steps
    assert again.frame_of_reference_uid == ct_volume.frame_of_reference_uid
    first = outputs[0]
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and first.Modality == "CT"
    assert (first.RescaleSlope, first.RescaleIntercept, first.RescaleType) == (1, 0, "HU")
    assert list(first.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert first.SeriesDescription == "AI denoised"
    assert first.SeriesNumber == 1040
    assert first.StudyInstanceUID == ct_series.study_instance_uid
    assert first.SeriesInstanceUID != ct_series.series_instance_uid
    assert len({ds.SeriesInstanceUID for ds in outputs}) == 1
    source_uids = {ds.SOPInstanceUID for ds in ct_series.datasets}
    assert not source_uids & {ds.SOPInstanceUID for ds in outputs}
    assert (float(first.WindowCenter), float(first.WindowWidth)) == (40.0, 400.0)


def test_every_slice_references_its_source_slice(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    outputs = [roundtrip(ds) for ds in write_derived_series(
        ct_series, ct_volume, ct_volume.array, algorithm=algorithm,
        series_description="AI denoised", derivation_code=codes.cid7203.Smoothing)]
    by_uid = {ds.SOPInstanceUID: ds for ds in ct_series.datasets}
    for ds in outputs:
        source = by_uid[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx(
            [float(v) for v in source.ImagePositionPatient], abs=1e-5)
        purpose = ds.SourceImageSequence[0].PurposeOfReferenceCodeSequence[0]
        assert purpose.CodeValue == "121322"
        series_item = ds.ReferencedSeriesSequence[0]
        assert series_item.SeriesInstanceUID == ct_series.series_instance_uid
        assert ds.DerivationCodeSequence[0].CodeMeaning == codes.cid7203.Smoothing.meaning
        assert "test_algorithm 1.2.3" in ds.DerivationDescription
        assert "AI-generated" in ds.ImageComments
        assert ds.BurnedInAnnotation == "NO"
        assert ds.Manufacturer == "dicomnode"
        assert ds.ContributingEquipmentSequence[0].ManufacturerModelName == "test_algorithm"


def test_the_ai_mark_is_burned_in_and_shows_at_the_top_of_the_window(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    outputs = write_derived_series(ct_series, ct_volume, ct_volume.array, algorithm=algorithm,
                                   series_description="AI denoised")
    again = load_volume(outputs)
    assert again.array[0, 2, 3] == 240.0  # centre 40 + width 400 / 2: white in the header window
    assert np.array_equal(again.array[:, 20:, :], ct_volume.array[:, 20:, :])


def test_highdicom_reads_the_derived_series_as_a_volume(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    outputs = write_derived_series(ct_series, ct_volume, ct_volume.array, algorithm=algorithm,
                                   series_description="AI denoised", burn_in_mark=False)
    theirs = hd.get_volume_from_series(outputs)
    source = hd.get_volume_from_series(list(ct_series.datasets))
    assert np.allclose(theirs.affine, source.affine, atol=1e-4)
    assert np.array_equal(theirs.array, source.array)


def test_small_valued_mr_keeps_its_detail_through_the_slope(
    mr_series: SeriesInput, mr_volume: Volume, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    values = mr_volume.array / 1000.0  # e.g. a network's [0, 1] output
    outputs = [roundtrip(ds) for ds in write_derived_series(
        mr_series, mr_volume, values, algorithm=algorithm, series_description="AI denoised",
        burn_in_mark=False)]
    slope = float(outputs[0].RescaleSlope)
    assert slope < 1e-4
    assert np.abs(load_volume(outputs).array - values).max() <= slope / 2 + 1e-7
    assert outputs[0].SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert outputs[0].ScanningSequence == mr_series.datasets[0].ScanningSequence


def test_mr_in_its_own_range_needs_no_modality_lut(
    mr_series: SeriesInput, mr_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    outputs = write_derived_series(mr_series, mr_volume, mr_volume.array * 0.9,
                                   algorithm=algorithm, series_description="AI denoised")
    assert "RescaleSlope" not in outputs[0]
    assert list(outputs[0].ImageType) == ["DERIVED", "SECONDARY", "OTHER"]


def test_synthetic_ct_from_mr_is_a_ct_series_on_the_mr_grid(
    mr_series: SeriesInput, mr_volume: Volume, algorithm: AlgorithmInfo, roundtrip: Roundtrip,
) -> None:
    hu = np.where(mr_volume.array > 100, 40.0, -1000.0)
    outputs = [roundtrip(ds) for ds in write_derived_series(
        mr_series, mr_volume, hu, algorithm=algorithm, series_description="AI synthetic CT",
        modality="CT", window=(40.0, 400.0), series_index=1, burn_in_mark=False)]
    first = outputs[0]
    assert (first.Modality, first.SOPClassUID) == ("CT", "1.2.840.10008.5.1.4.1.1.2")
    assert "KVP" in first and not first.KVP  # type 2: present, empty
    assert "ScanningSequence" not in first
    assert first.SeriesNumber == 1041
    again = load_volume(outputs)
    assert np.allclose(again.affine, mr_volume.affine, atol=1e-5)
    assert np.array_equal(again.array, hu)


@pytest.mark.parametrize(
    ("low", "high", "modality", "slope"),
    [(-1024, 3071, "CT", 1.0), (0.0, 0.5, "CT", 1.0), (0, 4095, "MR", 1.0),
     (0.0, 1.0, "MR", 3.125e-05), (-40000, 10, "CT", 1.25)],
)
def test_choose_rescale(low: float, high: float, modality: str, slope: float) -> None:
    assert choose_rescale(np.array([low, high]), modality) == (slope, 0.0)


def test_bad_arguments_are_refused(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    with pytest.raises(ValueError, match="shape"):
        write_derived_series(ct_series, ct_volume, ct_volume.array[1:], algorithm=algorithm,
                             series_description="x")
    with pytest.raises(ValueError, match="CT or MR"):
        write_derived_series(ct_series, ct_volume, ct_volume.array, algorithm=algorithm,
                             series_description="x", modality="PT")
    with pytest.raises(ValueError, match="finite"):
        write_derived_series(ct_series, ct_volume, ct_volume.array * np.nan, algorithm=algorithm,
                             series_description="x")


def test_outputs_share_no_elements_with_the_source(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    outputs = write_derived_series(ct_series, ct_volume, ct_volume.array, algorithm=algorithm,
                                   series_description="AI denoised")
    name = str(ct_series.datasets[0].PatientName)
    outputs[0].PatientName = "CHANGED^NAME"
    outputs[0].ContributingEquipmentSequence[0].Manufacturer = "changed"
    assert str(ct_series.datasets[0].PatientName) == name
    assert outputs[1].ContributingEquipmentSequence[0].Manufacturer == "dicomnode"
