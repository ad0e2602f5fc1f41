"""Build synthetic CT and MR series as pydicom Datasets, with real-world geometry.

Anatomy is a function of patient coordinates (LPS, mm), sampled at the voxel
centres of the requested grid, so the same phantom seen axially, coronally,
sagittally or obliquely shows the same tissue at the same patient point. Every
instance carries the Patient, General Study, General Series, Frame of
Reference, General Equipment, General Image, Image Plane, Image Pixel, CT or
MR Image, VOI LUT and SOP Common modules, and file meta, so it can be saved,
sent and validated like a scanner's output. Everything is deterministic for a
given seed, UIDs included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

__all__ = [
    "AXIAL",
    "CORONAL",
    "SAGITTAL",
    "Grid",
    "chest_ct_values",
    "ellipsoid",
    "head_mr_values",
    "make_series",
    "synthetic_ct",
    "synthetic_mr",
]

#: ImageOrientationPatient of the standard planes (row cosine, column cosine).
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)

_SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
PhantomFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Grid:
    """A slice stack in patient space, centred on ``centre``.

    Parameters
    ----------
    shape : tuple[int, int, int]
        Slices, rows, columns.
    spacing : tuple[float, float, float]
        Slice gap, row spacing, column spacing (mm).
    orientation : tuple[float, ...], optional
        ImageOrientationPatient (row cosine, column cosine); slices advance along their cross product.
    centre : tuple[float, float, float], optional
        Patient point at the middle of the stack.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    orientation: tuple[float, ...] = AXIAL
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"Grid.shape must be three positive ints, got {self.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"Grid.spacing must be three positive numbers, got {self.spacing}")
        row, column = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        if len(self.orientation) != 6 or not (
            abs(np.linalg.norm(row) - 1) < 1e-5 and abs(np.linalg.norm(column) - 1) < 1e-5
            and abs(row @ column) < 1e-5
        ):
            raise ValueError(f"Grid.orientation must be two orthogonal unit vectors, "
                             f"got {self.orientation}")

    @property
    def axes(self) -> np.ndarray:
        """Unit vectors of the slice, row and column axes (rows of a 3x3 matrix)."""
        row, column = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        return np.stack([np.cross(row, column), column, row])

    @property
    def origin(self) -> np.ndarray:
        """Patient position of the centre of voxel (0, 0, 0)."""
        half = (np.array(self.shape) - 1) * np.array(self.spacing) / 2
        return np.array(self.centre) - half @ self.axes

    def voxel_centres(self) -> np.ndarray:
        """Patient coordinates of every voxel centre, shape ``(z, y, x, 3)``."""
        k, j, i = np.meshgrid(*(np.arange(n) for n in self.shape), indexing="ij")
        steps = np.stack([k, j, i], axis=-1) * np.array(self.spacing)
        return self.origin + steps @ self.axes


def ellipsoid(
    points: np.ndarray, centre: Sequence[float] | np.ndarray, radii: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Which patient points lie inside an axis-aligned ellipsoid.

    Parameters
    ----------
    points : numpy.ndarray
        ``(..., 3)`` patient coordinates (mm).
    centre : Sequence[float]
        Centre (mm).
    radii : Sequence[float]
        Semi-axes along x, y, z (mm).

    Returns
    -------
    numpy.ndarray
        Boolean array of shape ``points.shape[:-1]``.
    """
    scaled = (points - np.array(centre)) / np.array(radii)
    return np.sum(scaled * scaled, axis=-1) <= 1.0


def chest_ct_values(points: np.ndarray) -> np.ndarray:
    """Hounsfield units of a simple chest at patient points (LPS mm).

    Parameters
    ----------
    points : numpy.ndarray
        ``(..., 3)`` patient coordinates.

    Returns
    -------
    numpy.ndarray
        HU: air -1000, fat -100 rim, soft tissue 40, lungs -850, spine 700, aorta 45.
    """
    values = np.full(points.shape[:-1], -1000.0)
    values[ellipsoid(points, (0, 0, 0), (160, 110, 400))] = -100.0
    values[ellipsoid(points, (0, 0, 0), (150, 100, 400))] = 40.0
    for side in (-1, 1):
        values[ellipsoid(points, (side * 70, -5, 0), (55, 70, 180))] = -850.0
    values[ellipsoid(points, (0, 70, 0), (18, 18, 400))] = 700.0
    values[ellipsoid(points, (15, 30, 0), (12, 12, 400))] = 45.0
    return values


def head_mr_values(points: np.ndarray) -> np.ndarray:
    """T1-like signal of a simple head at patient points (LPS mm).

    Parameters
    ----------
    points : numpy.ndarray
        ``(..., 3)`` patient coordinates.

    Returns
    -------
    numpy.ndarray
        Arbitrary units: background 0, scalp 900, skull 150, CSF 250, grey 600, white 800.
    """
    values = np.zeros(points.shape[:-1])
    values[ellipsoid(points, (0, 0, 0), (75, 95, 80))] = 900.0
    values[ellipsoid(points, (0, 0, 0), (70, 90, 75))] = 150.0
    values[ellipsoid(points, (0, 0, 0), (65, 85, 70))] = 250.0
    values[ellipsoid(points, (0, 0, 0), (62, 82, 67))] = 600.0
    values[ellipsoid(points, (0, 0, 0), (50, 68, 55))] = 800.0
    for side in (-1, 1):
        values[ellipsoid(points, (side * 12, 0, 5), (6, 25, 12))] = 250.0
    return values


def make_series(
    values: np.ndarray,
    grid: Grid,
    *,
    modality: str,
    seed: int = 0,
    series_number: int = 1,
    series_description: str = "",
    study_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    patient_name: str = "SYNTHETIC^PHANTOM",
    patient_id: str = "SYN-0001",
    body_part: str = "",
) -> list[Dataset]:
    """Write a ``(z, y, x)`` array of modality values as a single-frame image series.

    Parameters
    ----------
    values : numpy.ndarray
        HU for CT, arbitrary units for MR, with ``grid.shape``.
    grid : Grid
        Where the slices lie.
    modality : str
        ``"CT"`` (stored with RescaleIntercept -1024) or ``"MR"``.
    seed : int, optional
        Seeds the UIDs (same seed, same UIDs).
    series_number, series_description, body_part : optional
        General Series attributes.
    study_instance_uid, frame_of_reference_uid : str or None, optional
        Reuse a study or frame of reference (e.g. for a second series of the same study).
    patient_name, patient_id : str, optional
        Patient module values.

    Returns
    -------
    list[Dataset]
        One instance per slice, in slice order (InstanceNumber 1..n).

    Raises
    ------
    ValueError
        If ``modality`` is not CT or MR, or the array shape does not match the grid.
    """
    if modality not in _SOP_CLASSES:
        raise ValueError(f"modality={modality!r}; expected CT or MR")
    if values.shape != grid.shape:
        raise ValueError(f"values have shape {values.shape}, grid {grid.shape}")

    def uid(*parts: object) -> str:
        return generate_uid(entropy_srcs=["dicomnode-synthetic", str(seed), *map(str, parts)])

    study_uid = study_instance_uid or uid("study")
    series_uid = uid("series", study_uid, series_number, modality)
    for_uid = frame_of_reference_uid or uid("frame-of-reference", study_uid)
    intercept = -1024.0 if modality == "CT" else 0.0
    stored = np.clip(np.rint(values - intercept), 0, 4095).astype(np.uint16)
    low, high = np.percentile(values, [1, 99]) if modality == "MR" else (-160.0, 240.0)
    axes, origin = grid.axes, grid.origin
    datasets = []
    for k in range(grid.shape[0]):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = _SOP_CLASSES[modality]
        ds.SOPInstanceUID = uid("instance", series_uid, k)
        ds.PatientName, ds.PatientID = patient_name, patient_id
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid, "20240102", "090000"
        ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", f"SYN{seed:05d}"
        ds.StudyDescription = "Synthetic study"
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = modality, series_uid, series_number
        ds.SeriesDescription, ds.PatientPosition = series_description, "HFS"
        if body_part:
            ds.BodyPartExamined = body_part
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = for_uid, ""
        ds.Manufacturer, ds.ManufacturerModelName = "dicomnode synthetic", "phantom"
        ds.InstanceNumber, ds.AcquisitionNumber = k + 1, 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"]
        ds.ContentDate, ds.ContentTime = "20240102", "090000"
        position = origin + k * grid.spacing[0] * axes[0]
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in grid.orientation]
        ds.PixelSpacing = [grid.spacing[1], grid.spacing[2]]
        ds.SliceThickness = grid.spacing[0]
        ds.SliceLocation = round(float(position @ axes[0]), 6)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = grid.shape[1], grid.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = round((low + high) / 2, 1), round(high - low, 1)
        ds.RescaleIntercept, ds.RescaleSlope = intercept, 1.0
        if modality == "CT":
            ds.RescaleType, ds.KVP = "HU", 120
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
            ds.MRAcquisitionType, ds.RepetitionTime, ds.EchoTime = "2D", 500.0, 15.0
            ds.EchoTrainLength, ds.MagneticFieldStrength = 1, 1.5
            ds.ImagingFrequency, ds.ImagedNucleus = 63.87, "1H"
            del ds.RescaleIntercept, ds.RescaleSlope
        ds.PixelData = stored[k].tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        datasets.append(ds)
    return datasets


def _sample(phantom: PhantomFn, grid: Grid, noise: float, seed: int) -> np.ndarray:
    values = phantom(grid.voxel_centres())
    rng = np.random.default_rng(seed)
    return values + rng.normal(0.0, noise, size=values.shape)


def synthetic_ct(
    *,
    shape: tuple[int, int, int] = (12, 64, 64),
    spacing: tuple[float, float, float] = (2.5, 5.0, 5.0),
    orientation: tuple[float, ...] = AXIAL,
    seed: int = 0,
    noise_hu: float = 10.0,
) -> list[Dataset]:
    """A small chest CT series (HU via RescaleIntercept -1024).

    Parameters
    ----------
    shape, spacing, orientation : optional
        The acquisition grid (see :class:`Grid`).
    seed : int, optional
        Seeds noise and UIDs.
    noise_hu : float, optional
        Standard deviation of Gaussian noise in HU.

    Returns
    -------
    list[Dataset]
        One CT Image Storage instance per slice.
    """
    grid = Grid(shape, spacing, orientation)
    values = _sample(chest_ct_values, grid, noise_hu, seed)
    return make_series(values, grid, modality="CT", seed=seed, series_description="Chest CT",
                       body_part="CHEST")


def synthetic_mr(
    *,
    shape: tuple[int, int, int] = (12, 64, 64),
    spacing: tuple[float, float, float] = (4.0, 3.0, 3.0),
    orientation: tuple[float, ...] = AXIAL,
    seed: int = 0,
    noise: float = 20.0,
) -> list[Dataset]:
    """A small T1-like head MR series.

    Parameters
    ----------
    shape, spacing, orientation : optional
        The acquisition grid (see :class:`Grid`).
    seed : int, optional
        Seeds noise and UIDs.
    noise : float, optional
        Standard deviation of Gaussian noise (signal units).

    Returns
    -------
    list[Dataset]
        One MR Image Storage instance per slice.
    """
    grid = Grid(shape, spacing, orientation)
    values = np.abs(_sample(head_mr_values, grid, noise, seed))
    return make_series(values, grid, modality="MR", seed=seed, series_description="T1 SE",
                       body_part="HEAD")
