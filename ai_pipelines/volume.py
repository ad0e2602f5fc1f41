"""Series -> Volume: a (z, y, x) array of modality values with its patient-space geometry.

Slices are ordered by their position along the slice normal (row cosine x
column cosine), never by InstanceNumber, and RescaleSlope/Intercept is applied
(CT comes out in Hounsfield units). Classic single-frame, enhanced multi-frame
and Siemens mosaic storage all work, in any transfer syntax pydicom can decode
(pylibjpeg plugins cover JPEG, JPEG-LS, JPEG 2000 and RLE).

A stack that is not a regular grid is refused with :class:`PipelineInputError`
and a reason a person can act on: gantry tilt or a sheared stack, uneven
spacing, missing slices, repeated positions, mixed orientation, sizes or pixel
spacing. Nothing is resampled silently.

Axis convention: ``array[k, j, i]`` is slice ``k``, row ``j``, column ``i``.
``direction[0]`` is the slice normal, ``direction[1]`` the column cosine (down
the rows), ``direction[2]`` the row cosine (across the columns); ``spacing``
follows the same (z, y, x) order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ai_pipelines.base import PipelineInputError, SeriesInput
from ai_pipelines.frames import Frame, FrameRef, frame_pixels, split_frames

__all__ = ["Volume", "load_volume"]

_ORIENTATION_TOLERANCE = 1e-3  # max difference of direction cosines between slices


@dataclass(frozen=True, slots=True, eq=False)
class Volume:
    """A regular 3D grid of modality values in patient coordinates (LPS, mm).

    Parameters
    ----------
    array : numpy.ndarray
        ``(z, y, x)`` float32 values (HU for CT); stored read-only.
    spacing : tuple[float, float, float]
        Voxel size along z, y, x (mm).
    origin : tuple[float, float, float]
        Patient position of the centre of voxel ``(0, 0, 0)``.
    direction : tuple[tuple[float, float, float], ...]
        Unit vectors of the z, y and x axes in patient space (rows of a 3x3 matrix).
    frame_of_reference_uid : str
        Frame of Reference UID shared by all slices.
    modality : str
        Modality of the source series.
    sources : tuple[FrameRef, ...]
        Source instance (and frame) of each z slice.
    window : tuple[float, float] or None, optional
        (centre, width) from the source header, if any.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], ...]
    frame_of_reference_uid: str
    modality: str
    sources: tuple[FrameRef, ...]
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume.array must be 3D (z, y, x), got shape {self.array.shape}")
        if len(self.sources) != self.array.shape[0]:
            raise ValueError(
                f"Volume.sources has {len(self.sources)} items for {self.array.shape[0]} slices"
            )
        matrix = np.asarray(self.direction, dtype=float)
        if matrix.shape != (3, 3) or not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-3):
            raise ValueError(f"Volume.direction must be an orthonormal 3x3 matrix, got {matrix}")
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"Volume.spacing must be positive, got {self.spacing}")
        self.array.flags.writeable = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of slices, rows and columns."""
        z, y, x = self.array.shape
        return (z, y, x)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix taking ``(k, j, i, 1)`` voxel indices to ``(x, y, z, 1)`` in LPS mm."""
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(self.direction).T * np.asarray(self.spacing)
        affine[:3, 3] = self.origin
        return affine

    @property
    def image_orientation(self) -> tuple[float, ...]:
        """ImageOrientationPatient of every slice: row cosine, then column cosine."""
        row, column = self.direction[2], self.direction[1]
        return (*row, *column)

    @property
    def pixel_spacing(self) -> tuple[float, float]:
        """PixelSpacing of every slice: between rows, then between columns."""
        return (self.spacing[1], self.spacing[2])

    def index_to_patient(self, indices: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map voxel indices ``(k, j, i)`` to patient coordinates.

        Parameters
        ----------
        indices : array_like
            One ``(k, j, i)`` triple or an ``(N, 3)`` array; fractional indices are fine.

        Returns
        -------
        numpy.ndarray
            ``(3,)`` or ``(N, 3)`` LPS coordinates in mm.
        """
        points = np.asarray(indices, dtype=float)
        return points @ self.affine[:3, :3].T + self.affine[:3, 3]

    def patient_to_index(self, points: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map patient coordinates to (fractional) voxel indices ``(k, j, i)``.

        Parameters
        ----------
        points : array_like
            One ``(x, y, z)`` point or an ``(N, 3)`` array in LPS mm.

        Returns
        -------
        numpy.ndarray
            ``(3,)`` or ``(N, 3)`` indices; round them to address voxels.
        """
        inverse = np.linalg.inv(self.affine)
        return np.asarray(points, dtype=float) @ inverse[:3, :3].T + inverse[:3, 3]

    def slice_position(self, k: int) -> tuple[float, float, float]:
        """ImagePositionPatient of slice ``k`` (centre of its first pixel).

        Parameters
        ----------
        k : int
            Slice index.

        Returns
        -------
        tuple[float, float, float]
            Position in LPS mm.
        """
        x, y, z = (float(v) for v in self.index_to_patient((k, 0, 0)))
        return (x, y, z)


def load_volume(
    series: SeriesInput | Sequence[Dataset],
    *,
    spacing_tolerance: float = 0.01,
) -> Volume:
    """Stack the slices of one series into a :class:`Volume`.

    Parameters
    ----------
    series : SeriesInput or Sequence[Dataset]
        The instances of one series, in any order.
    spacing_tolerance : float, optional
        Relative tolerance for slice gaps (and the in-plane drift allowed, as a
        fraction of a pixel, is ten times this).

    Returns
    -------
    Volume
        Sorted along the slice normal, rescaled, float32.

    Raises
    ------
    PipelineInputError
        With the reason, when the slices do not form one regular grid.
    """
    datasets = series.datasets if isinstance(series, SeriesInput) else tuple(series)
    if not datasets:
        raise PipelineInputError("the series has no instances")
    frames = [frame for ds in datasets for frame in split_frames(ds)]
    frame_of_reference_uid = _common_frame_of_reference(datasets)
    _check_uniform(frames)
    row = np.array(frames[0].orientation[:3])
    column = np.array(frames[0].orientation[3:])
    normal = np.cross(row, column)
    distances = np.array([np.dot(frame.position, normal) for frame in frames])
    order = np.argsort(distances, kind="stable")
    frames = [frames[k] for k in order]
    distances = distances[order]
    row_spacing, column_spacing = frames[0].pixel_spacing
    z_spacing = _slice_spacing(frames, distances, spacing_tolerance)
    _check_stacking(frames, normal, z_spacing, min(row_spacing, column_spacing),
                    spacing_tolerance)
    array = np.empty((len(frames), *frames[0].shape), dtype=np.float32)
    for k, frame in enumerate(frames):
        array[k] = frame_pixels(frame)
    x, y, z = frames[0].position
    return Volume(
        array=array,
        spacing=(z_spacing, row_spacing, column_spacing),
        origin=(x, y, z),
        direction=(_xyz(normal), _xyz(column), _xyz(row)),
        frame_of_reference_uid=frame_of_reference_uid,
        modality=str(datasets[0].get("Modality", "")),
        sources=tuple(frame.ref for frame in frames),
        window=frames[len(frames) // 2].window,
    )


def _xyz(vector: np.ndarray) -> tuple[float, float, float]:
    return (float(vector[0]), float(vector[1]), float(vector[2]))


def _common_frame_of_reference(datasets: Sequence[Dataset]) -> str:
    uids = Counter(str(ds.get("FrameOfReferenceUID") or "") for ds in datasets)
    if "" in uids:
        raise PipelineInputError(
            f"{uids['']} instance(s) lack FrameOfReferenceUID, so their positions "
            "cannot be related to results"
        )
    if len(uids) > 1:
        raise PipelineInputError(f"instances span {len(uids)} frames of reference")
    return next(iter(uids))


def _cosines(orientation: Sequence[float]) -> str:
    return "\\".join(f"{value:.3f}" for value in orientation)


def _describe(counter: Counter[Any]) -> str:
    return ", ".join(f"{value} (x{count})" for value, count in counter.most_common(4))


def _check_uniform(frames: Sequence[Frame]) -> None:
    sizes = Counter(f"{frame.shape[0]}x{frame.shape[1]}" for frame in frames)
    if len(sizes) > 1:
        raise PipelineInputError(f"mixed image sizes: {_describe(sizes)}")
    reference = np.array(frames[0].orientation)
    row, column = reference[:3], reference[3:]
    if not (
        abs(np.linalg.norm(row) - 1) < 1e-2 and abs(np.linalg.norm(column) - 1) < 1e-2
        and abs(np.dot(row, column)) < 1e-2
    ):
        raise PipelineInputError(
            f"ImageOrientationPatient {tuple(reference)} is not two orthogonal unit vectors"
        )
    orientations = Counter(
        _cosines(frame.orientation) for frame in frames
        if np.max(np.abs(np.array(frame.orientation) - reference)) > _ORIENTATION_TOLERANCE
    )
    if orientations:
        raise PipelineInputError(
            f"mixed orientation: {sum(orientations.values())} of {len(frames)} slices differ "
            f"from ImageOrientationPatient {_cosines(frames[0].orientation)}: "
            f"{_describe(orientations)} (a localizer or a radial stack?)"
        )
    spacings = Counter(tuple(round(v, 4) for v in frame.pixel_spacing) for frame in frames)
    if len(spacings) > 1:
        raise PipelineInputError(f"mixed pixel spacing: {_describe(spacings)}")


def _slice_spacing(frames: Sequence[Frame], distances: np.ndarray, tolerance: float) -> float:
    if len(frames) == 1:
        ds = frames[0].dataset
        value = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
        return float(value) if float(value) > 0 else 1.0
    gaps = np.diff(distances)
    distinct = gaps[gaps > 1e-3]
    typical = float(np.median(distinct)) if distinct.size else 0.0
    allowed = max(typical * tolerance, 1e-3)
    repeated = gaps <= allowed
    if repeated.any():
        positions = len(frames) - int(repeated.sum())
        raise PipelineInputError(
            f"{len(frames)} slices at only {positions} distinct positions along the slice "
            "normal: repeated acquisitions or time points in one series; a volume needs one "
            "slice per position"
        )
    bad = np.flatnonzero(np.abs(gaps - typical) > allowed)
    if bad.size:
        ratios = gaps[bad] / typical
        if np.all(np.abs(ratios - np.round(ratios)) * typical <= allowed) and np.all(ratios > 1.5):
            missing = int(np.sum(np.round(ratios) - 1))
            where = ", ".join(f"after slice {k + 1}" for k in bad[:3])
            raise PipelineInputError(
                f"missing slices: {missing} slice(s) absent from a {typical:.3g} mm grid "
                f"({where} of {len(frames)})"
            )
        raise PipelineInputError(
            f"uneven slice spacing: gaps from {gaps.min():.4g} to {gaps.max():.4g} mm "
            f"(median {typical:.4g} mm, tolerance {allowed:.2g} mm)"
        )
    return float((distances[-1] - distances[0]) / (len(frames) - 1))


def _check_stacking(
    frames: Sequence[Frame],
    normal: np.ndarray,
    z_spacing: float,
    pixel: float,
    tolerance: float,
) -> None:
    if len(frames) < 2:
        return
    positions = np.array([frame.position for frame in frames])
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = float(np.max(np.linalg.norm(in_plane, axis=1)))
    if drift > max(10 * tolerance * pixel, 1e-3):
        span = float(offsets[-1] @ normal)
        angle = np.degrees(np.arctan2(float(np.linalg.norm(in_plane[-1])), span))
        tilt = frames[0].dataset.get("GantryDetectorTilt")
        recorded = f"; GantryDetectorTilt {float(tilt):g}" if tilt not in (None, "") else ""
        raise PipelineInputError(
            f"slices are not stacked along their normal: positions drift {drift:.3g} mm "
            f"in plane over {len(frames)} slices ({angle:.3g} degrees off normal{recorded}); "
            "gantry tilt or a sheared stack needs resampling first"
        )
