"""Siemens MOSAIC: where each tile of a mosaic instance lies in patient space.

Siemens EPI and DWI series store a whole volume in one single-frame instance,
its slices tiled into a grid (ImageType contains ``MOSAIC``). The number of
tiles is in the private element (0019,xx0A) of the "SIEMENS MR HEADER" block,
and the direction in which tiles advance is the ``SliceNormalVector`` of the
CSA image header (0029,xx10), because it may point against
``row x column``. ImagePositionPatient is the corner of the whole mosaic; the
first tile's corner follows from it as nibabel's ``MosaicWrapper`` computes it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

__all__ = ["MosaicTile", "is_mosaic", "mosaic_tiles", "read_csa_header"]

_MR_HEADER = "SIEMENS MR HEADER"
_CSA_HEADER = "SIEMENS CSA HEADER"
_MAX_CSA_ITEMS = 1000


@dataclass(frozen=True, slots=True)
class MosaicTile:
    """One slice of a mosaic: its box in the mosaic image and its corner in patient space.

    Parameters
    ----------
    row : int
        First mosaic row of the tile.
    column : int
        First mosaic column of the tile.
    rows : int
        Tile height in pixels.
    columns : int
        Tile width in pixels.
    position : tuple[float, float, float]
        Patient position (mm) of the centre of the tile's first pixel.
    """

    row: int
    column: int
    rows: int
    columns: int
    position: tuple[float, float, float]


def is_mosaic(ds: Dataset) -> bool:
    """Tell whether ``ds`` is a Siemens mosaic (ImageType contains MOSAIC).

    Parameters
    ----------
    ds : Dataset
        A single-frame image instance.

    Returns
    -------
    bool
        True when the instance holds tiled slices.
    """
    image_type = ds.get("ImageType") or []
    return "MOSAIC" in [str(value).upper() for value in image_type]


def _private_value(ds: Dataset, group: int, creator: str, offset: int) -> object | None:
    try:
        return ds.private_block(group, creator)[offset].value
    except KeyError:
        return None


def read_csa_header(data: bytes) -> dict[str, list[str]]:
    """Parse a Siemens CSA2 ("SV10") header into ``{tag name: item strings}``.

    Parameters
    ----------
    data : bytes
        The value of (0029,xx10) or (0029,xx20).

    Returns
    -------
    dict[str, list[str]]
        Tag name -> its non-empty item strings; empty for CSA1 or unreadable headers.
    """
    if data[:4] != b"SV10":
        return {}
    try:
        n_tags, _check = struct.unpack_from("<2I", data, 8)
        pointer = 16
        tags: dict[str, list[str]] = {}
        for _ in range(n_tags):
            name, vm, _vr, _syngodt, n_items, _last = struct.unpack_from("<64si4s3i", data, pointer)
            pointer += 84
            if not 0 <= n_items < _MAX_CSA_ITEMS:
                return {}
            items: list[str] = []
            for item_no in range(n_items):
                _x0, length, _x2, _x3 = struct.unpack_from("<4i", data, pointer)
                pointer += 16
                if length < 0 or pointer + length > len(data):
                    return {}
                text = data[pointer:pointer + length].split(b"\0", 1)[0].decode("latin-1").strip()
                if text and (vm == 0 or item_no < vm):
                    items.append(text)
                pointer += length + (-length % 4)
            tags[name.split(b"\0", 1)[0].decode("latin-1")] = items
        return tags
    except struct.error:
        return {}


def _slice_normal(ds: Dataset, row_cosine: np.ndarray, column_cosine: np.ndarray) -> np.ndarray:
    csa = _private_value(ds, 0x0029, _CSA_HEADER, 0x10)
    if isinstance(csa, bytes):
        values = read_csa_header(csa).get("SliceNormalVector", [])
        if len(values) == 3:
            normal = np.array([float(v) for v in values])
            length = np.linalg.norm(normal)
            if length > 0.5:
                return normal / length
    return np.cross(row_cosine, column_cosine)


def mosaic_tiles(ds: Dataset) -> list[MosaicTile] | None:
    """Lay out the tiles of a mosaic in patient space.

    Parameters
    ----------
    ds : Dataset
        A mosaic instance (see :func:`is_mosaic`) with ImagePositionPatient,
        ImageOrientationPatient and PixelSpacing.

    Returns
    -------
    list[MosaicTile] or None
        One tile per slice in storage order, or None if the number of tiles is not recorded.
    """
    count = _private_value(ds, 0x0019, _MR_HEADER, 0x0A)
    if count is None:
        return None
    count = int(count)  # type: ignore[call-overload]
    grid = math.ceil(math.sqrt(count))
    rows, columns = int(ds.Rows) // grid, int(ds.Columns) // grid
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_cosine, column_cosine = orientation[:3], orientation[3:]
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    corner = np.array([float(v) for v in ds.ImagePositionPatient])
    first = (
        corner
        + column_cosine * row_spacing * (int(ds.Rows) - rows) / 2
        + row_cosine * column_spacing * (int(ds.Columns) - columns) / 2
    )
    normal = _slice_normal(ds, row_cosine, column_cosine)
    gap = float(ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0)
    tiles = []
    for k in range(count):
        position = first + k * gap * normal
        tiles.append(
            MosaicTile(
                row=(k // grid) * rows, column=(k % grid) * columns, rows=rows, columns=columns,
                position=(float(position[0]), float(position[1]), float(position[2])),
            )
        )
    return tiles
