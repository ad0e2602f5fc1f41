"""Split image instances into 2D frames, each with its plane geometry and rescale.

One frame is one slice, whatever the storage: a classic single-frame instance,
one frame of an enhanced multi-frame instance (geometry from the Per-frame and
Shared Functional Groups), or one tile of a Siemens mosaic. :mod:`volume`
stacks frames; this module only reads headers and decodes pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ai_pipelines.base import PipelineInputError
from ai_pipelines.mosaic import is_mosaic, mosaic_tiles

__all__ = ["Frame", "FrameRef", "frame_pixels", "split_frames"]


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Where a slice came from: an instance and, in a multi-frame instance, its frame.

    Parameters
    ----------
    sop_class_uid : str
        SOP Class UID of the source instance.
    sop_instance_uid : str
        SOP Instance UID of the source instance.
    frame_number : int or None
        1-based frame number for multi-frame instances, None for single-frame ones
        (a mosaic tile refers to its whole instance).
    """

    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One 2D slice with the geometry and rescale that apply to it.

    Parameters
    ----------
    dataset : Dataset
        The instance that holds the pixels.
    ref : FrameRef
        Reference to use for this slice in derived objects.
    index : int
        0-based frame index into the instance's pixel data.
    tile : tuple[int, int, int, int] or None
        ``(row, column, rows, columns)`` of a mosaic tile, None otherwise.
    position : tuple[float, float, float]
        ImagePositionPatient: centre of the first pixel (mm).
    orientation : tuple[float, ...]
        ImageOrientationPatient: row cosine then column cosine.
    pixel_spacing : tuple[float, float]
        PixelSpacing: between rows, then between columns (mm).
    shape : tuple[int, int]
        Rows and columns.
    slope : float
        RescaleSlope.
    intercept : float
        RescaleIntercept.
    window : tuple[float, float] or None
        First WindowCenter and WindowWidth, if any.
    """

    dataset: Dataset
    ref: FrameRef
    index: int
    tile: tuple[int, int, int, int] | None
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int]
    slope: float
    intercept: float
    window: tuple[float, float] | None


def _floats(value: object, count: int, what: str, ds: Dataset) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        values = ()
    if len(values) != count or not all(np.isfinite(values)):
        raise PipelineInputError(
            f"instance {ds.get('SOPInstanceUID', '?')} has no usable {what} ({value!r})"
        )
    return values


def _xyz(value: object, ds: Dataset) -> tuple[float, float, float]:
    x, y, z = _floats(value, 3, "ImagePositionPatient", ds)
    return (x, y, z)


def _pair(value: object, ds: Dataset) -> tuple[float, float]:
    row, column = _floats(value, 2, "PixelSpacing", ds)
    if row <= 0 or column <= 0:
        raise PipelineInputError(f"instance {ds.SOPInstanceUID} has PixelSpacing {value!r}")
    return (row, column)


def _first(value: object) -> float | None:
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    return float(value)  # type: ignore[arg-type]


def _rescale(item: Dataset | None) -> tuple[float, float]:
    if item is None:
        return 1.0, 0.0
    slope, intercept = _first(item.get("RescaleSlope")), _first(item.get("RescaleIntercept"))
    return (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)


def _window(item: Dataset) -> tuple[float, float] | None:
    centre, width = _first(item.get("WindowCenter")), _first(item.get("WindowWidth"))
    if centre is None or width is None or width <= 0:
        return None
    return (centre, width)


def _check_pixels(ds: Dataset) -> None:
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise PipelineInputError(f"instance {ds.get('SOPInstanceUID', '?')} has no pixel data")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise PipelineInputError(
            f"instance {ds.SOPInstanceUID} is a colour image "
            f"({ds.get('PhotometricInterpretation')}); a volume needs greyscale slices"
        )


def _group_item(ds: Dataset, frame: Dataset | None, sequence: str) -> Dataset | None:
    for groups in (frame, ds.get("SharedFunctionalGroupsSequence", [None])[0]):
        if groups is not None and sequence in groups and len(groups[sequence].value):
            return groups[sequence].value[0]
    return None


def _enhanced_frames(ds: Dataset) -> list[Frame]:
    count = int(ds.get("NumberOfFrames") or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) not in (0, count):
        raise PipelineInputError(
            f"instance {ds.SOPInstanceUID} has {count} frames but {len(per_frame)} "
            "per-frame functional group items"
        )
    frames = []
    for index in range(count):
        item = per_frame[index] if per_frame else None
        position = _group_item(ds, item, "PlanePositionSequence")
        orientation = _group_item(ds, item, "PlaneOrientationSequence")
        measures = _group_item(ds, item, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None:
            raise PipelineInputError(
                f"frame {index + 1} of instance {ds.SOPInstanceUID} lacks plane position, "
                "plane orientation or pixel measures in its functional groups"
            )
        slope, intercept = _rescale(_group_item(ds, item, "PixelValueTransformationSequence"))
        voi = _group_item(ds, item, "FrameVOILUTSequence")
        frames.append(
            Frame(
                dataset=ds,
                ref=FrameRef(str(ds.SOPClassUID), str(ds.SOPInstanceUID), index + 1),
                index=index,
                tile=None,
                position=_xyz(position.get("ImagePositionPatient"), ds),
                orientation=_floats(orientation.get("ImageOrientationPatient"), 6, "orientation", ds),
                pixel_spacing=_pair(measures.get("PixelSpacing"), ds),
                shape=(int(ds.Rows), int(ds.Columns)),
                slope=slope,
                intercept=intercept,
                window=_window(voi) if voi is not None else None,
            )
        )
    return frames


def split_frames(ds: Dataset) -> list[Frame]:
    """Split one image instance into frames with geometry.

    Parameters
    ----------
    ds : Dataset
        A single-frame, enhanced multi-frame or Siemens mosaic image instance.

    Returns
    -------
    list[Frame]
        One frame per slice, in storage order.

    Raises
    ------
    PipelineInputError
        If the instance has no pixel data, is in colour, or lacks plane position,
        orientation or pixel spacing.
    """
    _check_pixels(ds)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds)
    if int(ds.get("NumberOfFrames") or 1) > 1:
        raise PipelineInputError(
            f"instance {ds.SOPInstanceUID} has {ds.NumberOfFrames} frames but no "
            "functional groups to place them in space"
        )
    position = _xyz(ds.get("ImagePositionPatient"), ds)
    orientation = _floats(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", ds)
    spacing = _pair(ds.get("PixelSpacing"), ds)
    slope, intercept = _rescale(ds)
    ref = FrameRef(str(ds.SOPClassUID), str(ds.SOPInstanceUID))
    if not is_mosaic(ds):
        return [
            Frame(dataset=ds, ref=ref, index=0, tile=None, position=position,
                  orientation=orientation, pixel_spacing=spacing,
                  shape=(int(ds.Rows), int(ds.Columns)), slope=slope, intercept=intercept,
                  window=_window(ds))
        ]
    tiles = mosaic_tiles(ds)
    if tiles is None:
        raise PipelineInputError(
            f"mosaic instance {ds.SOPInstanceUID} does not record NumberOfImagesInMosaic"
        )
    return [
        Frame(dataset=ds, ref=ref, index=0, tile=(t.row, t.column, t.rows, t.columns),
              position=t.position, orientation=orientation, pixel_spacing=spacing,
              shape=(t.rows, t.columns), slope=slope, intercept=intercept, window=_window(ds))
        for t in tiles
    ]


def frame_pixels(frame: Frame) -> np.ndarray:
    """Decode one frame and apply its rescale.

    Parameters
    ----------
    frame : Frame
        The frame to decode.

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` float32 modality values (Hounsfield units for CT).

    Raises
    ------
    PipelineInputError
        If the pixel data cannot be decoded (unsupported or corrupt transfer syntax).
    """
    ds = frame.dataset
    try:
        pixels = ds.pixel_array  # pydicom caches the decoded array on the dataset
    except Exception as exc:  # decoders raise many types; all mean "cannot read this"
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise PipelineInputError(
            f"cannot decode pixel data of instance {ds.SOPInstanceUID} ({name}): {exc}"
        ) from exc
    if pixels.ndim == 3:
        pixels = pixels[frame.index]
    if frame.tile is not None:
        row, column, rows, columns = frame.tile
        pixels = pixels[row:row + rows, column:column + columns]
    values = pixels.astype(np.float32)
    if frame.slope != 1.0:
        values *= np.float32(frame.slope)
    if frame.intercept != 0.0:
        values += np.float32(frame.intercept)
    return values
