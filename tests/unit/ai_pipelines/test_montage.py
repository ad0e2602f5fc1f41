"""key_image_montage: evenly spaced, labelled slices of a series as one Secondary Capture."""

from __future__ import annotations

import random
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from ai_pipelines import registry, writers
from ai_pipelines.base import OutputKind, PipelineInputError, SeriesInput
from ai_pipelines.montage import KeyImageMontage, MontageParameters
from ai_pipelines.montage.slices import choose_evenly, order_slices
from ai_pipelines.montage.tiles import GAP
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.synthetic.series import synthetic_ct, synthetic_mr
from ai_pipelines.volume import Volume, load_volume
from ai_pipelines.writers import lettering, overlay

Roundtrip = Callable[[Dataset], Dataset]
Check = Callable[[Dataset], list[str]]

_REPO = Path(__file__).resolve().parents[3]
_LABEL_ROWS = 20  # two 7-pixel label lines, their gap and shadow, from 2 pixels down


def _testdata(name: str) -> Dataset:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed (pydicom-data)")
    return pydicom.dcmread(path)


def _montage(datasets: Sequence[Dataset] | SeriesInput, **parameters: object) -> Dataset:
    pipeline = KeyImageMontage()
    series = datasets if isinstance(datasets, SeriesInput) else SeriesInput(datasets)
    result = pipeline.run(series, algorithm=pipeline.algorithm_info(parameters))  # type: ignore[arg-type]
    assert result.findings == ()
    (sc,) = result.datasets
    return sc


def _tile(pixels: np.ndarray, index: int, grid_columns: int, shape: tuple[int, int]) -> np.ndarray:
    row, column = divmod(index, grid_columns)
    top, left = row * (shape[0] + GAP), column * (shape[1] + GAP)
    return pixels[top:top + shape[0], left:left + shape[1]]


def _grey(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    return np.rint(overlay.apply_window(values, window) * 255).astype(np.uint8)


def _shown(sc: Dataset) -> list[tuple[str, int | None]]:
    return [(item.ReferencedSOPInstanceUID, item.get("ReferencedFrameNumber"))
            for item in sc.SourceImageSequence]


def test_ct_montage_round_trips_with_provenance(
    ct_series: SeriesInput, ct_volume: Volume, roundtrip: Roundtrip, tmp_path: Path,
) -> None:
    sc = roundtrip(_montage(ct_series))
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel, sc.BitsAllocated) == (
        "MONOCHROME2", 1, 8)
    assert (sc.Rows, sc.Columns) == (3 * 64 + 2 * GAP, 3 * 64 + 2 * GAP)  # 3x3 of 64x64
    source = ct_series.datasets[0]
    assert sc.StudyInstanceUID == ct_series.study_instance_uid
    assert sc.SeriesInstanceUID != ct_series.series_instance_uid
    assert (sc.PatientName, sc.PatientID) == (source.PatientName, source.PatientID)
    assert sc.SeriesNumber == writers.output_series_number(1, OutputKind.SC, 9) == 1039
    assert sc.SeriesDescription == "Montage 3x3 Chest CT"
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"]
    assert sc.ConversionType == "WSD" and sc.BurnedInAnnotation == "NO"
    assert list(sc.PatientOrientation) == ["L", "P"]
    assert [float(v) for v in sc.PixelSpacing] == [5.0, 5.0]
    assert "window 40/400 from the header" in sc.DerivationDescription
    assert "ordered along the slice normal" in sc.DerivationDescription
    assert "9 of 12 slices" in sc.DerivationDescription
    assert any(
        (e.Manufacturer, e.ManufacturerModelName, e.SoftwareVersions, e.DeviceSerialNumber)
        == ("dicomnode", "key_image_montage", "1.0.0", "no-weights")
        for e in sc.ContributingEquipmentSequence
    )
    expected = [ct_volume.sources[k].sop_instance_uid for k in choose_evenly(12, 9)]
    assert _shown(sc) == [(uid, None) for uid in expected]
    (referenced,) = sc.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == ct_series.series_instance_uid
    assert [i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence] == expected
    path = tmp_path / "montage.dcm"
    pydicom.dcmwrite(path, sc, enforce_file_format=True)
    image = hd.imread(path)
    assert isinstance(image, hd.Image)
    assert image.get_frame(1).shape == (sc.Rows, sc.Columns)


def test_every_tile_shows_its_slice_windowed_and_labelled(
    ct_series: SeriesInput, ct_volume: Volume,
) -> None:
    pixels = _montage(ct_series).pixel_array
    by_uid = {ds.SOPInstanceUID: ds for ds in ct_series.datasets}
    for tile_number, k in enumerate(choose_evenly(12, 9)):
        source = by_uid[ct_volume.sources[k].sop_instance_uid]
        expected = _grey(ct_volume.array[k], (40.0, 400.0))  # the header's window
        for line, text in enumerate((f"IM {source.InstanceNumber}", f"{source.SliceLocation:.1f}")):
            lettering.burn_text(expected, text, (2 + 9 * line, 2), 255, shadow=0)
        tile = _tile(pixels, tile_number, 3, (64, 64))
        assert np.array_equal(tile, expected), f"tile {tile_number} (slice {k})"
    tile, other = _tile(pixels, 4, 3, (64, 64)), _grey(ct_volume.array[5], (40.0, 400.0))
    assert not np.array_equal(tile[_LABEL_ROWS:], other[_LABEL_ROWS:])  # slice 6, not its neighbour


def test_a_4x4_mr_montage_uses_the_middle_slice_window() -> None:
    datasets = synthetic_mr(shape=(20, 64, 64), seed=5)
    volume = load_volume(datasets)
    sc = _montage(datasets, tiles=16)
    assert (sc.Rows, sc.Columns) == (4 * 64 + 3 * GAP, 4 * 64 + 3 * GAP)
    middle = datasets[10]
    window = (float(middle.WindowCenter), float(middle.WindowWidth))
    assert f"window {window[0]:g}/{window[1]:g} from the header" in sc.DerivationDescription
    shown = choose_evenly(20, 16)
    assert _shown(sc) == [(volume.sources[k].sop_instance_uid, None) for k in shown]
    for tile_number in (0, 7, 15):
        tile = _tile(sc.pixel_array, tile_number, 4, (64, 64))[_LABEL_ROWS:]
        expected = _grey(volume.array[shown[tile_number]], window)[_LABEL_ROWS:]
        assert np.array_equal(tile, expected)
        assert abs(float(tile.mean()) - float(expected.mean())) < 1e-9


def test_the_series_number_is_deterministic_and_input_order_does_not_matter() -> None:
    datasets = synthetic_ct(seed=3)
    first = _montage(datasets)
    shuffled = list(datasets)
    random.Random(1).shuffle(shuffled)
    second = _montage(shuffled)
    assert first.SeriesNumber == second.SeriesNumber == 1039
    assert _shown(first) == _shown(second)
    assert np.array_equal(first.pixel_array, second.pixel_array)
    assert first.SOPInstanceUID != second.SOPInstanceUID


def test_window_columns_and_tile_size_come_from_the_parameters(
    ct_series: SeriesInput, ct_volume: Volume,
) -> None:
    sc = _montage(ct_series, tiles=6, columns=2, window_center=-600, window_width=1500)
    assert (sc.Rows, sc.Columns) == (3 * 64 + 2 * GAP, 2 * 64 + GAP)  # 3 rows of 2
    assert "window -600/1500 from the parameters" in sc.DerivationDescription
    shown = choose_evenly(12, 6)
    tile = _tile(sc.pixel_array, 5, 2, (64, 64))[_LABEL_ROWS:]
    assert np.array_equal(tile, _grey(ct_volume.array[shown[5]], (-600.0, 1500.0))[_LABEL_ROWS:])
    small = _montage(ct_series, tile_size=32)
    assert (small.Rows, small.Columns) == (3 * 32 + 2 * GAP, 3 * 32 + 2 * GAP)
    assert [float(v) for v in small.PixelSpacing] == [10.0, 10.0]
    assert "shrunk by up to 2x" in small.DerivationDescription
    k = choose_evenly(12, 9)[8]
    block_mean = ct_volume.array[k].reshape(32, 2, 32, 2).mean(axis=(1, 3))
    tile = _tile(small.pixel_array, 8, 3, (32, 32))[_LABEL_ROWS:]
    assert np.array_equal(tile, _grey(block_mean, (40.0, 400.0))[_LABEL_ROWS:])


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"tiles": 0}, r"tiles=0; expected 1-64"),
        ({"tiles": 65}, r"tiles=65"),
        ({"tiles": 2.5}, r"tiles=2.5 must be a whole number"),
        ({"tiles": True}, r"tiles=True must be a whole number"),
        ({"columns": "x"}, r"columns='x' must be a whole number"),
        ({"tile_size": 16}, r"tile_size=16; expected 32-1024"),
        ({"window_center": 40}, r"window_center and window_width must be given together"),
        ({"window_center": 40, "window_width": 0}, r"window_width=0; expected >= 1"),
        ({"window_center": "nan", "window_width": 400}, r"window_center='nan' must be finite"),
        ({"tile": 9}, r"unknown parameter\(s\) tile; expected columns, tile_size, tiles"),
    ],
)
def test_invalid_parameters_fail_for_good(
    ct_series: SeriesInput, parameters: dict[str, object], message: str,
) -> None:
    with pytest.raises(PipelineInputError, match=r"^invalid montage parameters: " + message):
        _montage(ct_series, **parameters)


def test_parameters_may_come_as_strings() -> None:
    parameters = MontageParameters.from_mapping(
        {"tiles": "16", "window_center": "40", "window_width": 400.0})
    assert (parameters.tiles, parameters.window, parameters.tile_size) == (16, (40.0, 400.0), 640)
    assert MontageParameters().window is None


def test_evenly_spaced_slices_are_the_centres_of_equal_parts() -> None:
    assert choose_evenly(12, 9) == [0, 2, 3, 4, 6, 7, 8, 10, 11]
    assert choose_evenly(100, 4) == [12, 37, 62, 87]
    assert choose_evenly(3, 9) == [0, 1, 2]
    assert choose_evenly(1, 1) == [0]
    with pytest.raises(ValueError, match="count=0"):
        choose_evenly(0, 9)


def test_tilted_and_uneven_series_that_load_volume_refuses_still_get_a_montage() -> None:
    tilted = synthetic_ct(seed=6)
    for k, ds in enumerate(tilted):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.8 * k, z]  # 18 degrees of gantry tilt
    uneven = [ds for k, ds in enumerate(synthetic_ct(seed=7)) if k not in (3, 4, 8)]
    for datasets, reason in ((tilted, "not stacked along their normal"), (uneven, "missing slices")):
        with pytest.raises(PipelineInputError, match=reason):
            load_volume(datasets)
        shuffled = list(datasets)
        random.Random(2).shuffle(shuffled)
        sc = _montage(shuffled, tiles=4)
        assert "ordered along the slice normal" in sc.DerivationDescription
        by_z = sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))
        expected = [by_z[k].SOPInstanceUID for k in choose_evenly(len(by_z), 4)]
        assert _shown(sc) == [(uid, None) for uid in expected]


def test_mixed_orientations_are_ordered_by_instance_number() -> None:
    datasets = synthetic_ct(seed=8, shape=(6, 32, 32))
    datasets[2].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # a sagittal localizer among axials
    for ds, number in zip(datasets, (6, 5, 4, 3, 2, 1), strict=True):
        ds.InstanceNumber = number
    sc = _montage(list(reversed(datasets)), tiles=6)
    assert "ordered by InstanceNumber" in sc.DerivationDescription
    assert [uid for uid, _ in _shown(sc)] == [ds.SOPInstanceUID for ds in reversed(datasets)]
    assert sc.PatientOrientation == ""  # the tiles do not share one
    slices, by_position = order_slices(SeriesInput(datasets))
    assert not by_position and [s.caption[0] for s in slices[:2]] == ["IM 1", "IM 2"]


def test_a_legacy_multi_frame_mr_and_its_compressed_copy() -> None:
    plain, compressed = _testdata("emri_small.dcm"), _testdata("emri_small_jpeg_2k_lossless.dcm")
    sc = _montage([plain], window_center=500, window_width=1000)
    assert (sc.Rows, sc.Columns) == (3 * 64 + 2 * GAP, 3 * 64 + 2 * GAP)
    frames = choose_evenly(10, 9)
    assert _shown(sc) == [(plain.SOPInstanceUID, k + 1) for k in frames]
    (referenced,) = sc.ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence] == [
        plain.SOPInstanceUID]
    assert "ordered by InstanceNumber" in sc.DerivationDescription
    for tile_number in (0, 4, 8):
        tile = _tile(sc.pixel_array, tile_number, 3, (64, 64))
        expected = _grey(plain.pixel_array[frames[tile_number]].astype(np.float32), (500.0, 1000.0))
        assert np.array_equal(tile[_LABEL_ROWS:], expected[_LABEL_ROWS:])
    assert np.array_equal(_montage([compressed], window_center=500, window_width=1000).pixel_array,
                          sc.pixel_array)


def test_an_enhanced_ct_takes_window_and_order_from_its_functional_groups() -> None:
    ds = _testdata("eCT_Supplemental.dcm")
    sc = _montage([ds])
    assert (sc.Rows, sc.Columns) == (512, 2 * 512 + GAP)  # two frames: one row of two
    # the normal (row x column cosines) points to the feet here, so frame 2 comes first
    assert _shown(sc) == [(ds.SOPInstanceUID, 2), (ds.SOPInstanceUID, 1)]
    assert [ref.frame_number for ref in load_volume([ds]).sources] == [2, 1]
    assert "window 49/102 from the header" in sc.DerivationDescription
    assert "ordered along the slice normal" in sc.DerivationDescription


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm"])
def test_compressed_single_frames_montage_like_the_uncompressed_file(name: str) -> None:
    reference = _montage([_testdata("MR_small.dcm")])
    sc = _montage([_testdata(name)])
    assert np.array_equal(sc.pixel_array, reference.pixel_array)
    assert "window 600/1600 from the header" in sc.DerivationDescription


def test_a_lossy_colour_ultrasound_cine_becomes_an_rgb_montage() -> None:
    ds = _testdata("color3d_jpeg_baseline.dcm")
    sc = _montage([ds], tiles=4)
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel) == ("RGB", 3)
    assert (sc.Rows, sc.Columns) == (2 * 480 + GAP, 2 * 640 + GAP)
    assert sc.LossyImageCompression == "01"
    assert "BurnedInAnnotation" not in sc  # a colour screen that does not say: unknown
    frames = choose_evenly(int(ds.NumberOfFrames), 4)
    assert _shown(sc) == [(ds.SOPInstanceUID, k + 1) for k in frames]
    tile = _tile(sc.pixel_array, 3, 2, (480, 640))
    frame = pixel_array(get_testdata_file("color3d_jpeg_baseline.dcm"), index=frames[3])
    assert np.array_equal(tile[40:], frame[40:])


def test_monochrome1_radiographs_are_inverted_and_shrunk() -> None:
    ds = _testdata("RG1_UNCR.dcm")
    sc = _montage([ds])
    assert sc.PhotometricInterpretation == "MONOCHROME2"
    assert (sc.Rows, sc.Columns) == (489, 461)  # 1955 x 1841 shrunk 4x
    assert list(sc.PatientOrientation) == [str(v) for v in ds.PatientOrientation]
    assert "RescaleSlope" not in ds  # stored values are the modality values
    values = ds.pixel_array.astype(np.float32)
    window = (float(ds.WindowCenter), float(ds.WindowWidth))
    expected = 255 - _grey(values, window).astype(float)
    assert abs(sc.pixel_array[_LABEL_ROWS * 4:].mean() - expected[_LABEL_ROWS * 16:].mean()) < 2


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("liver.dcm", "is a segmentation \\(SEG\\)"),
        ("reportsi.dcm", "is a structured report \\(SR\\)"),
        ("SC_rgb.dcm", "is a Secondary Capture"),
        ("rtplan.dcm", "has no pixel data \\(Modality RTPLAN\\)"),
    ],
)
def test_results_and_non_images_are_refused(name: str, message: str) -> None:
    with pytest.raises(PipelineInputError, match=message):
        _montage([_testdata(name)])


def test_our_own_outputs_are_refused(
    ct_series: SeriesInput, ct_volume: Volume, algorithm: AlgorithmInfo,
) -> None:
    derived = writers.write_derived_series(ct_series, ct_volume, ct_volume.array,
                                           algorithm=algorithm, series_description="AI denoised")
    with pytest.raises(PipelineInputError, match="made by dicomnode \\(test_algorithm\\)"):
        _montage(derived)
    with pytest.raises(PipelineInputError, match="Secondary Capture"):
        _montage([_montage(ct_series)])


def test_modalities_without_images_are_not_accepted() -> None:
    ds = synthetic_ct(shape=(1, 8, 8))[0]
    ds.Modality = "KO"
    with pytest.raises(PipelineInputError, match="modality 'KO'; needs one of"):
        _montage([ds])


def test_outputs_pass_dciodvfy(ct_series: SeriesInput, dciodvfy_errors: Check) -> None:
    outputs = [
        _montage(ct_series),
        _montage(synthetic_mr(seed=4), tiles=16),
        _montage([_testdata("emri_small.dcm")]),
        _montage([_testdata("color3d_jpeg_baseline.dcm")], tiles=4),
        _montage([_testdata("OBXXXX1A_2frame.dcm")]),  # 2 frames in a single-frame class
        _montage([_testdata("RG1_UNCR.dcm")]),
    ]
    for sc in outputs:
        assert dciodvfy_errors(sc) == [], sc.DerivationDescription


def test_needs_no_weights_and_is_registered() -> None:
    pipeline = KeyImageMontage()
    assert pipeline.weights is None and pipeline.device == "cpu"
    assert pipeline.algorithm_info({"tiles": 4}).weights_sha256 is None
    assert registry.load("key_image_montage") is KeyImageMontage
    assert KeyImageMontage.produces == frozenset({OutputKind.SC})
    {"CT", "MR", "PT", "CR", "DX", "US"} <= KeyImageMontage.accepts.modalities  # noqa: B015
    pyproject = tomllib.loads((_REPO / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["dicomnode.pipelines"]
    assert entry_points["key_image_montage"] == registry.BUILT_INS["key_image_montage"]


def test_a_siemens_mosaic_with_two_time_points(shared_data: Path, dciodvfy_errors: Check) -> None:
    """load_volume refuses two time points in one series; a montage shows both, by position."""
    folder = shared_data / "dicom" / "dcm_qa_orientation" / "ax" / "axasc35"
    datasets = [pydicom.dcmread(path) for path in sorted(folder.glob("MR*"))]
    with pytest.raises(PipelineInputError, match="repeated acquisitions"):
        load_volume(datasets)
    slices, by_position = order_slices(SeriesInput(datasets))
    assert by_position and len(slices) == 70  # 2 instances x 35 tiles
    assert [s.caption[0] for s in slices[:3]] == ["IM 1 SL 1", "IM 2 SL 1", "IM 1 SL 2"]
    assert np.all(np.diff([s.location for s in slices]) >= 0)
    sc = _montage(datasets, tiles=16)
    assert (sc.Rows, sc.Columns) == (4 * 64 + 3 * GAP, 4 * 64 + 3 * GAP)  # 384 / 6 per tile
    assert {uid for uid, frame in _shown(sc)} == {ds.SOPInstanceUID for ds in datasets}
    assert dciodvfy_errors(sc) == []
