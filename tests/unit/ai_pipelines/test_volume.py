"""load_volume on synthetic series: ordering, geometry, rescale, and every refusal."""

from __future__ import annotations

import copy
import random

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ai_pipelines.base import PipelineInputError, SeriesInput
from ai_pipelines.synthetic.series import (
    AXIAL,
    CORONAL,
    SAGITTAL,
    Grid,
    chest_ct_values,
    make_series,
    synthetic_ct,
)
from ai_pipelines.volume import Volume, load_volume


def _oblique() -> tuple[float, ...]:
    """Axial turned 15 degrees about z, then tilted 20 degrees about x."""
    a, b = np.radians(15), np.radians(20)
    turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rotation = turn @ tilt
    return tuple(float(v) for v in (*rotation[:, 0], *rotation[:, 1]))


OBLIQUE = _oblique()


def _exact_ct(orientation: tuple[float, ...], shape: tuple[int, int, int] = (10, 40, 48)) -> tuple[
    list[Dataset], Grid
]:
    grid = Grid(shape, (3.0, 7.0, 6.0), orientation, centre=(5.0, -3.0, 12.0))
    values = np.rint(chest_ct_values(grid.voxel_centres()))
    return make_series(values, grid, modality="CT"), grid


@pytest.mark.parametrize("orientation", [AXIAL, CORONAL, SAGITTAL, OBLIQUE],
                         ids=["axial", "coronal", "sagittal", "oblique"])
def test_voxels_hold_the_phantom_at_their_patient_position(orientation: tuple[float, ...]) -> None:
    datasets, grid = _exact_ct(orientation)
    random.Random(0).shuffle(datasets)
    volume = load_volume(datasets)
    assert volume.shape == grid.shape
    assert volume.spacing == pytest.approx((3.0, 7.0, 6.0))
    k, j, i = np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij")
    points = volume.index_to_patient(np.stack([k, j, i], -1).reshape(-1, 3))
    expected = np.rint(chest_ct_values(points)).reshape(volume.shape)
    # HU via RescaleIntercept -1024; the phantom is stored exactly (integers, no noise)
    assert np.array_equal(volume.array, expected)
    normal, column, row = (np.array(axis) for axis in volume.direction)
    assert normal == pytest.approx(np.cross(row, column))  # slices advance along row x column


def test_order_is_by_position_not_instance_number() -> None:
    datasets, grid = _exact_ct(AXIAL)
    ordered = load_volume(datasets)
    scrambled = [copy.deepcopy(ds) for ds in datasets]
    for ds, number in zip(scrambled, random.Random(1).sample(range(1, 11), 10), strict=True):
        ds.InstanceNumber = number
    random.Random(2).shuffle(scrambled)
    volume = load_volume(SeriesInput(scrambled))
    assert np.array_equal(volume.array, ordered.array)
    assert volume.sources == ordered.sources
    assert [s.sop_instance_uid for s in volume.sources] == [ds.SOPInstanceUID for ds in datasets]
    z = [volume.slice_position(k)[2] for k in range(volume.shape[0])]
    assert z == sorted(z)


def test_geometry_helpers_invert_and_match_the_headers() -> None:
    datasets, _ = _exact_ct(OBLIQUE)
    volume = load_volume(datasets)
    for k, ds in enumerate(datasets):
        position = [float(v) for v in ds.ImagePositionPatient]
        assert volume.slice_position(k) == pytest.approx(position, abs=1e-4)
    orientation = [float(v) for v in datasets[0].ImageOrientationPatient]
    assert volume.image_orientation == pytest.approx(orientation, abs=1e-6)
    assert volume.pixel_spacing == (7.0, 6.0)
    indices = np.array([[0, 0, 0], [9, 39, 47], [2.5, 3.25, 10.0]])
    assert volume.patient_to_index(volume.index_to_patient(indices)) == pytest.approx(indices)
    assert volume.affine[:3, 3] == pytest.approx(volume.origin)
    assert not volume.array.flags.writeable


def test_agrees_with_highdicom_through_patient_coordinates(ct_series: SeriesInput,
                                                           ct_volume: Volume) -> None:
    theirs = hd.get_volume_from_series(list(ct_series.datasets))  # slice order may be reversed
    indices = np.array([[0, 0, 0], [3, 20, 30], [11, 63, 63], [6, 40, 10]])
    mapped = np.rint(np.c_[ct_volume.index_to_patient(indices), np.ones(4)]
                     @ np.linalg.inv(theirs.affine).T)[:, :3].astype(int)
    assert np.array_equal(ct_volume.array[tuple(indices.T)], theirs.array[tuple(mapped.T)])


def test_ct_is_in_hounsfield_units_and_window_comes_from_the_header(ct_volume: Volume) -> None:
    assert ct_volume.modality == "CT"
    assert ct_volume.array.min() == -1024.0  # air with noise, clipped at stored 0
    assert -1100 < float(np.median(ct_volume.array[:, :3, :3])) < -900
    assert ct_volume.window == (40.0, 400.0)
    assert ct_volume.array.dtype == np.float32


def test_a_single_slice_takes_its_thickness_as_spacing() -> None:
    volume = load_volume(synthetic_ct(shape=(1, 16, 16), spacing=(1.25, 2.0, 2.0)))
    assert volume.spacing == (1.25, 2.0, 2.0)


def _series(**kwargs: object) -> list[Dataset]:
    return synthetic_ct(shape=(8, 16, 16), spacing=(2.5, 2.0, 2.0), **kwargs)  # type: ignore[arg-type]


def _shift(ds: Dataset, dx: float = 0.0, dz: float = 0.0) -> None:
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x + dx, y, z + dz]


def test_gantry_tilt_is_refused_with_the_angle() -> None:
    datasets = _series()
    for k, ds in enumerate(datasets):
        _shift(ds, dx=k * 2.5 * np.tan(np.radians(15)))
        ds.GantryDetectorTilt = 15
    with pytest.raises(PipelineInputError, match=r"15 degrees off normal; GantryDetectorTilt 15"):
        load_volume(datasets)


def test_a_missing_slice_is_refused() -> None:
    datasets = _series()
    del datasets[3]
    with pytest.raises(PipelineInputError,
                       match=r"missing slices: 1 slice\(s\) absent from a 2.5 mm grid"):
        load_volume(datasets)


def test_uneven_spacing_is_refused() -> None:
    datasets = _series()
    for ds in datasets[5:]:
        _shift(ds, dz=0.6)
    with pytest.raises(PipelineInputError, match="uneven slice spacing: gaps from 2.5 to 3.1 mm"):
        load_volume(datasets)


def test_small_jitter_within_tolerance_is_accepted() -> None:
    datasets = _series()
    _shift(datasets[4], dz=0.01)
    assert load_volume(datasets).spacing[0] == pytest.approx(2.5)


def test_repeated_positions_are_refused() -> None:
    datasets = _series()
    twin = copy.deepcopy(datasets[2])
    twin.SOPInstanceUID = generate_uid()
    with pytest.raises(PipelineInputError, match="9 slices at only 8 distinct positions"):
        load_volume([*datasets, twin])


def test_mixed_orientation_sizes_and_spacing_are_refused() -> None:
    datasets = _series()
    datasets[1].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    with pytest.raises(PipelineInputError, match=r"mixed orientation: 1 of 8 slices"):
        load_volume(datasets)
    datasets = _series()
    datasets[2].Rows, datasets[2].Columns = 8, 32
    with pytest.raises(PipelineInputError, match=r"mixed image sizes: 16x16 \(x7\), 8x32 \(x1\)"):
        load_volume(datasets)
    datasets = _series()
    datasets[2].PixelSpacing = [1.0, 1.0]
    with pytest.raises(PipelineInputError, match="mixed pixel spacing"):
        load_volume(datasets)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda ds: delattr(ds, "ImagePositionPatient"), "no usable ImagePositionPatient"),
        (lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
         "not two orthogonal unit vectors"),
        (lambda ds: setattr(ds, "PixelSpacing", [0, 1]), "PixelSpacing"),
        (lambda ds: delattr(ds, "PixelData"), "no pixel data"),
        (lambda ds: setattr(ds, "SamplesPerPixel", 3), "colour image"),
    ],
    ids=["no-position", "bad-orientation", "zero-spacing", "no-pixels", "colour"],
)
def test_unusable_headers_are_refused(damage: object, message: str) -> None:
    datasets = _series()
    for ds in datasets:
        damage(ds)  # type: ignore[operator]
    with pytest.raises(PipelineInputError, match=message):
        load_volume(datasets)


def test_frame_of_reference_is_required_and_shared() -> None:
    datasets = _series()
    del datasets[0].FrameOfReferenceUID
    with pytest.raises(PipelineInputError, match="lack FrameOfReferenceUID"):
        load_volume(datasets)
    datasets = _series()
    datasets[0].FrameOfReferenceUID = generate_uid()
    with pytest.raises(PipelineInputError, match="2 frames of reference"):
        load_volume(datasets)


def test_volume_refuses_inconsistent_values() -> None:
    volume = load_volume(_series())
    with pytest.raises(ValueError, match="orthonormal"):
        Volume(np.zeros((8, 16, 16), np.float32), volume.spacing, volume.origin,
               ((1, 0, 0), (1, 0, 0), (0, 0, 1)), "1.2", "CT", volume.sources)
    with pytest.raises(ValueError, match="sources"):
        Volume(np.zeros((2, 16, 16), np.float32), volume.spacing, volume.origin,
               volume.direction, "1.2", "CT", volume.sources)
