"""The slices of a series in display order, without the grid checks of :func:`load_volume`.

A montage shows slices side by side; it never stacks or resamples them, so a
series that :func:`~ai_pipelines.volume.load_volume` refuses (gantry tilt,
uneven or missing slices, repeated positions, a localizer mixed in, colour,
no geometry at all) still makes one. Each instance is split into slices as
:func:`~ai_pipelines.frames.split_frames` does (classic single-frame, enhanced
multi-frame, Siemens mosaic tiles); where that finds no usable geometry (CR,
DX, US, legacy multi-frame such as NM or cine), the instance's frames are
taken in storage order without it.

Order: when every slice has a position and all share one orientation, along the
slice normal (as ``load_volume`` orders them, so tilted and uneven stacks come
out right); otherwise by InstanceNumber, then frame. Ties, and slices without an
InstanceNumber, fall back to frame and SOP Instance UID, so the order never
depends on the order in which instances arrived.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset

from ai_pipelines.base import PipelineInputError, SeriesInput
from ai_pipelines.frames import Frame, FrameRef, split_frames
from ai_pipelines.writers.sc import patient_orientation

__all__ = ["Slice", "choose_evenly", "order_slices"]

_ORIENTATION_TOLERANCE = 1e-2  # max difference of direction cosines for "one orientation"
_ORIENTATION_LETTERS = re.compile(r"^[LRAPHF]{1,3}$")
# Single-frame SOP classes: a reference into one may not name a frame (PS3.3 C.7.6.16.2.5),
# even where a non-conformant instance of the class holds several.
_SINGLE_FRAME_CLASSES = frozenset({
    uid.CTImageStorage, uid.MRImageStorage, uid.ComputedRadiographyImageStorage,
    uid.DigitalXRayImageStorageForPresentation, uid.DigitalXRayImageStorageForProcessing,
    uid.DigitalMammographyXRayImageStorageForPresentation,
    uid.DigitalMammographyXRayImageStorageForProcessing,
    uid.DigitalIntraOralXRayImageStorageForPresentation,
    uid.DigitalIntraOralXRayImageStorageForProcessing, uid.UltrasoundImageStorage,
    "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (retired)
    uid.PositronEmissionTomographyImageStorage, uid.VLEndoscopicImageStorage,
    uid.VLMicroscopicImageStorage, uid.VLPhotographicImageStorage,
    uid.VLSlideCoordinatesMicroscopicImageStorage,
})


@dataclass(frozen=True, slots=True, eq=False)
class Slice:
    """One 2D image of a series, with what a montage needs to show and label it.

    Parameters
    ----------
    dataset : Dataset
        The instance that holds the pixels.
    ref : FrameRef
        The instance (and frame) to reference.
    index : int
        0-based frame index into the instance's pixel data.
    tile : tuple[int, int, int, int] or None
        ``(row, column, rows, columns)`` of a mosaic tile, None otherwise.
    number : str
        Where a viewer finds it: ``"IM 5"``, ``"IM 1 FR 3"`` (frame 3), ``"IM 2 SL 4"``
        (mosaic tile 4).
    position : tuple[float, float, float] or None
        ImagePositionPatient, when known.
    orientation : tuple[float, ...] or None
        ImageOrientationPatient, when known.
    pixel_spacing : tuple[float, float] or None
        PixelSpacing (between rows, between columns), when known.
    slope, intercept : float
        Rescale to modality values.
    window : tuple[float, float] or None
        The header's first (centre, width), if any.
    header_location : float or None
        SliceLocation from the header (single-frame, non-mosaic instances).
    location : float or None
        Distance (mm) along the series' common slice normal; set by :func:`order_slices`.
    """

    dataset: Dataset
    ref: FrameRef
    index: int
    tile: tuple[int, int, int, int] | None
    number: str
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    slope: float = 1.0
    intercept: float = 0.0
    window: tuple[float, float] | None = None
    header_location: float | None = None
    location: float | None = None

    @property
    def is_colour(self) -> bool:
        """True for RGB, YBR and PALETTE COLOR pixels (shown as they are, never windowed)."""
        photometric = str(self.dataset.get("PhotometricInterpretation", "")).upper()
        return int(self.dataset.get("SamplesPerPixel") or 1) != 1 or photometric == "PALETTE COLOR"

    @property
    def patient_orientation(self) -> tuple[str, str] | None:
        """PatientOrientation of the rows and columns, from the orientation or the header."""
        if self.orientation is not None:
            return (patient_orientation(self.orientation[:3]),
                    patient_orientation(self.orientation[3:]))
        values = [str(v).upper() for v in (self.dataset.get("PatientOrientation") or [])]
        if len(values) == 2 and all(_ORIENTATION_LETTERS.match(v) for v in values):
            return (values[0], values[1])
        return None

    @property
    def caption(self) -> tuple[str, ...]:
        """Label lines: the number, then the slice location in mm when known."""
        location = self.header_location if self.header_location is not None else self.location
        if location is None:
            return (self.number,)
        return (self.number, f"{round(location, 1) + 0.0:.1f}")


def choose_evenly(count: int, tiles: int) -> list[int]:
    """Indices of ``tiles`` slices spread evenly over ``count``: the centres of equal parts.

    Centres rather than ends, so that with many slices the first and last (often
    outside the anatomy) are not shown; with ``tiles >= count`` every slice is.

    Parameters
    ----------
    count : int
        Number of slices (>= 1).
    tiles : int
        Number wanted (>= 1).

    Returns
    -------
    list[int]
        ``min(count, tiles)`` distinct indices in increasing order.

    Raises
    ------
    ValueError
        If ``count`` or ``tiles`` is below 1.
    """
    if count < 1 or tiles < 1:
        raise ValueError(f"count={count}, tiles={tiles}; both must be >= 1")
    shown = min(count, tiles)
    return [math.floor((i + 0.5) * count / shown) for i in range(shown)]


def order_slices(series: SeriesInput) -> tuple[list[Slice], bool]:
    """All slices of a series, in display order.

    Parameters
    ----------
    series : SeriesInput
        The instances, in any order.

    Returns
    -------
    tuple[list[Slice], bool]
        The slices, and True when they are ordered along a common slice normal
        (False: by InstanceNumber and frame).

    Raises
    ------
    PipelineInputError
        If an instance has no pixel data.
    """
    slices = [s for ds in series.datasets for s in _split(ds)]
    slices.sort(key=_number_key)
    normal = _common_normal(slices)
    if normal is None:
        return slices, False
    distances = [float(np.dot(s.position, normal)) for s in slices]  # type: ignore[arg-type]
    order = sorted(range(len(slices)), key=distances.__getitem__)  # ties keep InstanceNumber order
    return [replace(slices[k], location=distances[k]) for k in order], True


def _number_key(s: Slice) -> tuple[bool, int, int, str]:
    number = s.dataset.get("InstanceNumber")
    try:
        instance_number = int(number)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        instance_number = None
    tile = 0 if s.tile is None else s.tile[0] * 100_000 + s.tile[1]
    return (instance_number is None, instance_number or 0, s.index * 100_000_000 + tile,
            s.ref.sop_instance_uid)


def _common_normal(slices: Sequence[Slice]) -> np.ndarray | None:
    if any(s.position is None or s.orientation is None for s in slices):
        return None
    reference = np.array(slices[0].orientation)
    for s in slices[1:]:
        if np.max(np.abs(np.array(s.orientation) - reference)) > _ORIENTATION_TOLERANCE:
            return None
    normal = np.cross(reference[:3], reference[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 0.5 else None


def _split(ds: Dataset) -> list[Slice]:
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise PipelineInputError(
            f"instance {ds.SOPInstanceUID} has no pixel data (Modality {ds.get('Modality', '?')})"
        )
    instance = _instance_number(ds)
    try:
        frames = split_frames(ds)
    except PipelineInputError:
        return _plain_slices(ds, instance)  # no usable geometry, or colour: go without it
    multi = len(frames) > 1
    return [_from_frame(frame, instance, number if multi else None) for number, frame in
            enumerate(frames, start=1)]


def _instance_number(ds: Dataset) -> str:
    value = ds.get("InstanceNumber")
    return f"IM {value}" if value not in (None, "") else "IM ?"


def _from_frame(frame: Frame, instance: str, number: int | None) -> Slice:
    ds = frame.dataset
    if number is None:
        label = instance
    else:
        label = f"{instance} {'SL' if frame.tile is not None else 'FR'} {number}"
    header_location = None
    if frame.tile is None and frame.ref.frame_number is None and ds.get("SliceLocation") not in (
        None, ""
    ):
        header_location = float(ds.SliceLocation)
    return Slice(
        dataset=ds, ref=frame.ref, index=frame.index, tile=frame.tile, number=label,
        position=frame.position, orientation=frame.orientation,
        pixel_spacing=frame.pixel_spacing, slope=frame.slope, intercept=frame.intercept,
        window=frame.window, header_location=header_location,
    )


def _first_float(value: object) -> float | None:
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _pixel_spacing(value: object) -> tuple[float, float] | None:
    try:
        row, column = (float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return (row, column) if row > 0 and column > 0 and math.isfinite(row + column) else None


def _shared(ds: Dataset, sequence: str) -> Dataset:
    groups = ds.get("SharedFunctionalGroupsSequence") or [Dataset()]
    items = groups[0].get(sequence) or [Dataset()]
    return items[0]


def _plain_slices(ds: Dataset, instance: str) -> list[Slice]:
    count = int(ds.get("NumberOfFrames") or 1)
    rescale = ds if "RescaleSlope" in ds else _shared(ds, "PixelValueTransformationSequence")
    voi = ds if "WindowCenter" in ds else _shared(ds, "FrameVOILUTSequence")
    slope = _first_float(rescale.get("RescaleSlope"))
    intercept = _first_float(rescale.get("RescaleIntercept"))
    centre, width = _first_float(voi.get("WindowCenter")), _first_float(voi.get("WindowWidth"))
    spacing = _pixel_spacing(ds.get("PixelSpacing"))
    sop_class_uid, sop_instance_uid = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    frames = count > 1 and sop_class_uid not in _SINGLE_FRAME_CLASSES
    return [
        Slice(
            dataset=ds,
            ref=FrameRef(sop_class_uid, sop_instance_uid, index + 1 if frames else None),
            index=index, tile=None,
            number=f"{instance} FR {index + 1}" if count > 1 else instance,
            position=None, orientation=None,
            pixel_spacing=spacing,
            slope=1.0 if slope is None else slope,
            intercept=0.0 if intercept is None else intercept,
            window=(centre, width) if centre is not None and width is not None and width > 0
            else None,
        )
        for index in range(count)
    ]
