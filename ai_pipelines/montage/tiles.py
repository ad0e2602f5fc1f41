"""Decode, shrink, window and lay out the shown slices as one 8-bit image, each tile labelled.

Grey slices are rescaled to modality values, shrunk (an integer factor, by block
mean) so that no tile is larger than ``tile_size``, windowed with one window for
the whole montage (linear VOI function), and inverted where the source is
MONOCHROME1, so that every tile reads as MONOCHROME2. Colour slices (RGB, YBR,
PALETTE COLOR) are shown as they are; one colour tile makes the montage RGB.
Tiles are placed row by row, centred in equal cells separated by a thin grey
line; each gets its label (see :attr:`Slice.caption`) burned into its top-left
corner in white on a black shadow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.pixels import apply_color_lut, get_decoder

from ai_pipelines.base import PipelineInputError
from ai_pipelines.montage.slices import Slice
from ai_pipelines.writers import lettering, overlay

__all__ = ["GAP", "Montage", "decode", "percentile_window", "render_montage"]

#: Pixels between neighbouring cells.
GAP = 2
_GAP_VALUE = 96
_TEXT_VALUE = 255
_SHADOW_VALUE = 0
_LINE_SPACING = 2  # font pixels between label lines


@dataclass(frozen=True, slots=True, eq=False)
class Montage:
    """A rendered montage and what a Secondary Capture should say about it.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(rows, columns)`` uint8, or ``(rows, columns, 3)`` uint8 when a tile is in colour.
    grid : tuple[int, int]
        Rows and columns of tiles.
    boxes : tuple[tuple[int, int, int, int], ...]
        ``(row, column, rows, columns)`` of each tile in ``pixels``, in slice order.
    factors : tuple[int, ...]
        By how much each tile was shrunk (1: full resolution).
    window : tuple[float, float] or None
        The (centre, width) applied to the grey tiles; None when all are in colour.
    pixel_spacing : tuple[float, float] or None
        Spacing (mm) of the displayed pixels, when all tiles share one.
    patient_orientation : tuple[str, str] or None
        PatientOrientation of rows and columns, when all tiles share one.
    """

    pixels: np.ndarray
    grid: tuple[int, int]
    boxes: tuple[tuple[int, int, int, int], ...]
    factors: tuple[int, ...]
    window: tuple[float, float] | None
    pixel_spacing: tuple[float, float] | None
    patient_orientation: tuple[str, str] | None


def decode(s: Slice) -> np.ndarray:
    """Decode one slice: modality values for grey, RGB in [0, 255] for colour.

    Parameters
    ----------
    s : Slice
        The slice.

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` or ``(rows, columns, 3)`` float32.

    Raises
    ------
    PipelineInputError
        If the pixel data cannot be decoded.
    """
    ds = s.dataset
    multi = int(ds.get("NumberOfFrames") or 1) > 1
    syntax = getattr(ds.get("file_meta"), "TransferSyntaxUID", None)
    try:
        if multi and syntax is not None:
            pixels, _ = get_decoder(syntax).as_array(ds, index=s.index)  # this frame only
        else:
            pixels = ds.pixel_array
            pixels = pixels[s.index] if multi else pixels
        if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, ds)
    except Exception as exc:  # decoders raise many types; all mean "cannot read this"
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise PipelineInputError(
            f"cannot decode pixel data of instance {ds.SOPInstanceUID} ({name}): {exc}"
        ) from exc
    if s.tile is not None:
        row, column, rows, columns = s.tile
        pixels = pixels[row:row + rows, column:column + columns]
    values = pixels.astype(np.float32)
    if s.is_colour:
        top = 255.0 if pixels.dtype == np.uint8 else float(np.iinfo(pixels.dtype).max)
        return values * np.float32(255.0 / top) if top != 255.0 else values
    if s.slope != 1.0:
        values *= np.float32(s.slope)
    if s.intercept != 0.0:
        values += np.float32(s.intercept)
    return values


def percentile_window(images: Sequence[np.ndarray]) -> tuple[float, float]:
    """A window over the 1st to 99th percentile of some grey images.

    Parameters
    ----------
    images : Sequence[numpy.ndarray]
        Modality values (at least one image).

    Returns
    -------
    tuple[float, float]
        (centre, width), width at least 1.
    """
    values = np.concatenate([np.ravel(image) for image in images])
    low, high = np.percentile(values, [1, 99])
    return (round(float(low + high) / 2, 3), round(max(float(high - low), 1.0), 3))


def _shrink(values: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return values
    rows, columns = values.shape[:2]
    padding = ((0, -rows % factor), (0, -columns % factor)) + ((0, 0),) * (values.ndim - 2)
    padded = np.pad(values, padding, mode="edge")
    shape = (padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return padded.reshape(shape + values.shape[2:]).mean(axis=(1, 3))


def _display(s: Slice, values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if s.is_colour:
        return np.clip(values / 255.0, 0.0, 1.0)
    if window is None:
        raise ValueError("a grey tile needs a window")
    shown = overlay.apply_window(values, window)
    if str(s.dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        shown = 1.0 - shown  # MONOCHROME1: high values are dark
    return shown


def _common(values: Sequence[object]) -> object | None:
    first = values[0]
    return first if first is not None and all(v == first for v in values) else None


def render_montage(
    shown: Sequence[Slice],
    *,
    window: tuple[float, float] | None,
    columns: int | None,
    tile_size: int,
) -> Montage:
    """Lay out slices as a grid of labelled tiles.

    Parameters
    ----------
    shown : Sequence[Slice]
        The slices to show, in order (row by row).
    window : tuple[float, float] or None
        (centre, width) for every grey tile; None for the 1st-99th percentile of them.
    columns : int or None
        Tiles per row; ``ceil(sqrt(len(shown)))`` when None, at most ``len(shown)``.
    tile_size : int
        Largest rows or columns a tile may have; larger slices are shrunk by an integer factor.

    Returns
    -------
    Montage
        The image and its layout.

    Raises
    ------
    ValueError
        If ``shown`` is empty or ``tile_size`` or ``columns`` is below 1.
    PipelineInputError
        If a slice cannot be decoded.
    """
    if not shown:
        raise ValueError("a montage needs at least one slice")
    if tile_size < 1 or (columns is not None and columns < 1):
        raise ValueError(f"tile_size={tile_size}, columns={columns}; both must be >= 1")
    factors: list[int] = []
    images: list[np.ndarray] = []
    for s in shown:
        values = decode(s)
        factor = max(1, math.ceil(max(values.shape[:2]) / tile_size))
        factors.append(factor)
        images.append(_shrink(values, factor))
    grey = [image for s, image in zip(shown, images, strict=True) if not s.is_colour]
    if window is None and grey:
        window = percentile_window(grey)
    colour = any(s.is_colour for s in shown)
    count = len(shown)
    grid_columns = min(columns or math.ceil(math.sqrt(count)), count)
    grid = (math.ceil(count / grid_columns), grid_columns)
    cell = (max(image.shape[0] for image in images), max(image.shape[1] for image in images))
    size = (grid[0] * (cell[0] + GAP) - GAP, grid[1] * (cell[1] + GAP) - GAP)
    canvas = np.zeros(size + ((3,) if colour else ()), dtype=np.uint8)
    for line in range(1, grid[0]):
        canvas[line * (cell[0] + GAP) - GAP:line * (cell[0] + GAP)] = _GAP_VALUE
    for line in range(1, grid[1]):
        canvas[:, line * (cell[1] + GAP) - GAP:line * (cell[1] + GAP)] = _GAP_VALUE
    scale = max(1, min(cell) // 256)
    boxes = []
    for number, (s, image) in enumerate(zip(shown, images, strict=True)):
        tile = np.rint(_display(s, image, window) * 255).astype(np.uint8)
        if colour and tile.ndim == 2:
            tile = np.repeat(tile[..., None], 3, axis=-1)
        rows, cols = tile.shape[:2]
        top = (number // grid[1]) * (cell[0] + GAP) + (cell[0] - rows) // 2
        left = (number % grid[1]) * (cell[1] + GAP) + (cell[1] - cols) // 2
        view = canvas[top:top + rows, left:left + cols]
        view[...] = tile
        for line, text in enumerate(s.caption):
            origin = (2 * scale + line * (lettering.GLYPH_SHAPE[0] + _LINE_SPACING) * scale,
                      2 * scale)
            lettering.burn_text(view, text, origin, _TEXT_VALUE, scale=scale,
                                shadow=_SHADOW_VALUE)
        boxes.append((top, left, rows, cols))
    spacings = [
        None if s.pixel_spacing is None else
        (round(s.pixel_spacing[0] * f, 6), round(s.pixel_spacing[1] * f, 6))
        for s, f in zip(shown, factors, strict=True)
    ]
    return Montage(
        pixels=canvas, grid=grid, boxes=tuple(boxes), factors=tuple(factors),
        window=window if grey else None,
        pixel_spacing=_common(spacings),  # type: ignore[arg-type]
        patient_orientation=_common([s.patient_orientation for s in shown]),  # type: ignore[arg-type]
    )
