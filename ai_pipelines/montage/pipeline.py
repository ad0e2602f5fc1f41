"""KeyImageMontage: evenly spaced slices of a series as one labelled Secondary Capture.

The one pipeline that needs no model: it proves the routing -> job -> result ->
dispatch loop end to end and is useful on its own as a one-glance overview of a
series in any viewer. It accepts any image series with pixel data (CT, MR, PT,
NM, CR, DX, MG, US, XA, ...; single-frame, enhanced or legacy multi-frame,
mosaic, any transfer syntax pydicom decodes) and refuses results (SEG, SR,
Secondary Captures) and the node's own outputs, so that they never feed back.

Parameters (``AlgorithmInfo.parameters``, as a routing rule gives them; unknown
names are refused so that a typo is not silently ignored):

``tiles`` (int, 1-64, default 9)
    Slices to show; every slice when the series has fewer.
``columns`` (int, 1-64, optional)
    Tiles per row; ``ceil(sqrt(shown))`` by default (9 -> 3x3, 16 -> 4x4).
``window_center``, ``window_width`` (numbers, optional, both or neither)
    The window for grey tiles; by default the header's window of the middle slice of
    the series, else the 1st-99th percentile of the shown tiles.
``tile_size`` (int, 32-1024, default 640)
    Largest rows or columns of one tile; larger slices are shrunk by an integer factor.

Which slices: the series is put in display order by
:func:`~ai_pipelines.montage.slices.order_slices` (along the slice normal when
the slices share an orientation, else by InstanceNumber) with no check that
they form a regular grid, because a montage never stacks them: series that
:func:`~ai_pipelines.volume.load_volume` refuses (gantry tilt, uneven or missing
slices) still get a montage. Of ``n`` slices, tile ``i`` of ``t`` shows slice
``floor((i + 0.5) * n / t)``, the centre of the i-th of t equal parts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydicom.dataset import Dataset
from pydicom.uid import (
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameSingleBitSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)

from ai_pipelines import writers
from ai_pipelines.base import InputSpec, OutputKind, Pipeline, PipelineInputError, PipelineResult, SeriesInput
from ai_pipelines.montage.slices import Slice, choose_evenly, order_slices
from ai_pipelines.montage.tiles import Montage, render_montage
from ai_pipelines.provenance import AlgorithmInfo, ParameterValue, parameters_from_mapping

__all__ = [
    "IMAGE_MODALITIES",
    "SERIES_INDEX",
    "KeyImageMontage",
    "MontageParameters",
    "header_window",
    "refuse_results",
]

#: Modalities whose instances carry images (PS3.3 C.7.3.1.1.1 defined terms).
IMAGE_MODALITIES = frozenset({
    "BDUS", "BI", "BMD", "CR", "CT", "DG", "DMS", "DX", "ES", "GM", "IO", "IVOCT", "IVUS",
    "MG", "MR", "NM", "OCT", "OP", "OPT", "OPTBSV", "OPTENF", "OT", "PA", "PT", "PX", "RF",
    "RG", "RTDOSE", "RTIMAGE", "SM", "TG", "US", "XA", "XC",
})

#: Index passed to output_series_number: montages of source series 5 are series 5039,
#: clear of the key images AI pipelines write from index 0 (5030, 5031, ...).
SERIES_INDEX = 9

MAX_TILES = 64
TILE_SIZES = (32, 1024)

_SECONDARY_CAPTURE = frozenset({
    SecondaryCaptureImageStorage, MultiFrameSingleBitSecondaryCaptureImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
})
_SR_CLASS_ROOT = "1.2.840.10008.5.1.4.1.1.88."
_PIXEL_DATA = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be a whole number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a whole number") from None
    if not number.is_integer():
        raise ValueError(f"{name}={value!r} must be a whole number")
    return int(number)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name}={value!r} must be finite")
    return number


@dataclass(frozen=True, slots=True)
class MontageParameters:
    """The montage's parameters, checked when built.

    Parameters
    ----------
    tiles : int, optional
        Slices to show, 1-64.
    columns : int or None, optional
        Tiles per row, 1-64; about the square root of the tiles shown when None.
    window_center, window_width : float or None, optional
        The grey window; both or neither, width at least 1.
    tile_size : int, optional
        Largest rows or columns of a tile, 32-1024.

    Raises
    ------
    ValueError
        Naming the parameter and its value, when one is out of range or the window is half given.
    """

    tiles: int = 9
    columns: int | None = None
    window_center: float | None = None
    window_width: float | None = None
    tile_size: int = 640

    def __post_init__(self) -> None:
        tiles = _integer("tiles", self.tiles)
        if not 1 <= tiles <= MAX_TILES:
            raise ValueError(f"tiles={self.tiles!r}; expected 1-{MAX_TILES}")
        object.__setattr__(self, "tiles", tiles)
        if self.columns is not None:
            columns = _integer("columns", self.columns)
            if not 1 <= columns <= MAX_TILES:
                raise ValueError(f"columns={self.columns!r}; expected 1-{MAX_TILES}")
            object.__setattr__(self, "columns", columns)
        tile_size = _integer("tile_size", self.tile_size)
        if not TILE_SIZES[0] <= tile_size <= TILE_SIZES[1]:
            raise ValueError(f"tile_size={self.tile_size!r}; expected {TILE_SIZES[0]}-{TILE_SIZES[1]}")
        object.__setattr__(self, "tile_size", tile_size)
        if (self.window_center is None) != (self.window_width is None):
            raise ValueError("window_center and window_width must be given together")
        if self.window_center is not None:
            object.__setattr__(self, "window_center", _number("window_center", self.window_center))
            width = _number("window_width", self.window_width)
            if width < 1:
                raise ValueError(f"window_width={self.window_width!r}; expected >= 1")
            object.__setattr__(self, "window_width", width)

    @classmethod
    def from_mapping(cls, parameters: Mapping[str, ParameterValue]) -> MontageParameters:
        """Build from a rule's (or an AlgorithmInfo's) parameters.

        Parameters
        ----------
        parameters : Mapping[str, str | int | float | bool]
            Names as in the module docstring; numbers may be given as strings.

        Returns
        -------
        MontageParameters
            Checked values, defaults for those not given.

        Raises
        ------
        ValueError
            If a name is unknown or a value is invalid.
        """
        return parameters_from_mapping(cls, parameters)

    @property
    def window(self) -> tuple[float, float] | None:
        """(centre, width) when given."""
        if self.window_center is None or self.window_width is None:
            return None
        return (self.window_center, self.window_width)


def _made_here(ds: Dataset) -> bool:
    if ds.get("Manufacturer") == writers.MANUFACTURER:
        return True
    return any(item.get("Manufacturer") == writers.MANUFACTURER
               for item in ds.get("ContributingEquipmentSequence") or [])


def refuse_results(series: SeriesInput) -> None:
    """Refuse instances that are results rather than images to summarise.

    Parameters
    ----------
    series : SeriesInput
        The series to check.

    Raises
    ------
    PipelineInputError
        For a SEG, an SR, a Secondary Capture, an instance without pixel data, or
        anything the node made itself (Manufacturer or ContributingEquipment "dicomnode").
    """
    for ds in series.datasets:
        uid, sop_class_uid = ds.SOPInstanceUID, str(ds.get("SOPClassUID", ""))
        modality = str(ds.get("Modality", ""))
        if modality == "SEG" or sop_class_uid == SegmentationStorage:
            raise PipelineInputError(
                f"instance {uid} is a segmentation (SEG), a result; montage the images it segments"
            )
        if modality == "SR" or sop_class_uid.startswith(_SR_CLASS_ROOT):
            raise PipelineInputError(f"instance {uid} is a structured report (SR); it has no images")
        if sop_class_uid in _SECONDARY_CAPTURE:
            raise PipelineInputError(
                f"instance {uid} is a Secondary Capture; montage the images it was captured from"
            )
        if _made_here(ds):
            raise PipelineInputError(
                f"instance {uid} was made by {writers.MANUFACTURER} "
                f"({ds.get('ManufacturerModelName', 'unknown algorithm')}); the node's own "
                "outputs are not montaged, so that results never feed back"
            )
        if not any(keyword in ds for keyword in _PIXEL_DATA):
            raise PipelineInputError(f"instance {uid} has no pixel data (Modality {modality or '?'})")


def header_window(slices: Sequence[Slice]) -> tuple[float, float] | None:
    """The header's window of the middle slice, else of the first slice that has one.

    Parameters
    ----------
    slices : Sequence[Slice]
        All slices of the series, in display order.

    Returns
    -------
    tuple[float, float] or None
        (centre, width), None when no grey slice has a window.
    """
    middle = slices[len(slices) // 2]
    if middle.window is not None and not middle.is_colour:
        return middle.window
    return next((s.window for s in slices if s.window is not None and not s.is_colour), None)


def _derivation(
    series: SeriesInput, montage: Montage, shown: int, total: int, by_position: bool,
    window_from: str, algorithm: AlgorithmInfo,
) -> str:
    order = "along the slice normal" if by_position else "by InstanceNumber"
    text = (
        f"Montage ({montage.grid[0]}x{montage.grid[1]}) of {shown} of {total} slices, evenly "
        f"spaced, ordered {order}, of series {series.series_instance_uid}"
    )
    if montage.window is not None:
        centre, width = montage.window
        text += f"; window {centre:g}/{width:g} from {window_from}"
    if max(montage.factors) > 1:
        text += f"; tiles shrunk by up to {max(montage.factors)}x"
    return f"{text}; made by {algorithm.name} {algorithm.version}"


class KeyImageMontage(Pipeline):
    """Evenly spaced slices of one series, labelled and tiled into one Secondary Capture.

    Parameters
    ----------
    weights : Path or None, optional
        Ignored; the montage loads no model.
    device : str, optional
        Ignored beyond validation; it runs on the CPU.
    """

    name: ClassVar[str] = "key_image_montage"
    version: ClassVar[str] = "1.0.0"
    accepts: ClassVar[InputSpec] = InputSpec(modalities=IMAGE_MODALITIES, min_slices=1)
    produces: ClassVar[frozenset[OutputKind]] = frozenset({OutputKind.SC})
    weights_required: ClassVar[bool] = False

    def run(self, series: SeriesInput, *, algorithm: AlgorithmInfo) -> PipelineResult:
        """Make the montage.

        Parameters
        ----------
        series : SeriesInput
            The instances of one image series, in any order.
        algorithm : AlgorithmInfo
            Provenance for the SC; its ``parameters`` are the montage's (see the module).

        Returns
        -------
        PipelineResult
            One Secondary Capture (MONOCHROME2, or RGB when a shown slice is in colour)
            and no findings.

        Raises
        ------
        PipelineInputError
            If a parameter is invalid (a rule error: retrying will not help), the series
            is a result, the node's own output or not an image, or its pixels cannot be
            decoded.
        """
        try:
            parameters = MontageParameters.from_mapping(algorithm.parameters)
        except (TypeError, ValueError) as exc:
            raise PipelineInputError(f"invalid montage parameters: {exc}") from exc
        refuse_results(series)
        self.accepts.check(series)
        slices, by_position = order_slices(series)
        shown = [slices[k] for k in choose_evenly(len(slices), parameters.tiles)]
        window, window_from = parameters.window, "the parameters"
        if window is None:
            window, window_from = header_window(slices), "the header"
        if window is None:
            window_from = "the 1st-99th percentile of the tiles"
        montage = render_montage(shown, window=window, columns=parameters.columns,
                                 tile_size=parameters.tile_size)
        source_description = str(series.datasets[0].get("SeriesDescription") or "").strip()
        grid = f"{montage.grid[0]}x{montage.grid[1]}"
        sc = writers.write_image_sc(
            series, montage.pixels, algorithm=algorithm, sources=[s.ref for s in shown],
            series_description=f"Montage {grid} {source_description}".strip(),
            derivation_description=_derivation(
                series, montage, len(shown), len(slices), by_position, window_from, algorithm),
            image_comments=(
                f"Key-image montage ({algorithm.name} {algorithm.version}) of {len(shown)} "
                "source slices, each labelled with its instance (and frame) number and slice "
                "location in mm; not an acquired image"
            ),
            patient_orientation=montage.patient_orientation,
            pixel_spacing=montage.pixel_spacing,
            series_index=SERIES_INDEX,
        )
        return PipelineResult(datasets=(sc,))
