"""Draw results onto a slice: window/level to RGB, outlines, circles, heat maps, an "AI" mark.

Pure numpy, no DICOM: :mod:`sc` and :mod:`derived` decide what to draw and
where the pixels go.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ai_pipelines.writers.lettering import GLYPHS

__all__ = [
    "PALETTE",
    "apply_window",
    "blend_heatmap",
    "burn_ai_mark",
    "draw_circle",
    "draw_outline",
    "outline",
    "to_rgb",
]

#: Outline colours, one per segment in turn (red, yellow, cyan, green, magenta, orange).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 40, 40), (255, 230, 0), (0, 220, 255), (40, 255, 40), (255, 0, 255), (255, 140, 0),
)

# 5x7 glyphs; a mark burned into pixels so that no viewer can show the image without it.
_GLYPHS = GLYPHS


def apply_window(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Window modality values with the linear VOI function (PS3.3 C.11.2.1.2) onto [0, 1].

    Parameters
    ----------
    values : numpy.ndarray
        Modality values (HU for CT).
    window : tuple[float, float]
        (centre, width).

    Returns
    -------
    numpy.ndarray
        Same shape, floats in [0, 1] (0 at or below the window, 1 above it).
    """
    centre, width = window
    low = centre - 0.5 - (width - 1) / 2
    return np.clip((values - low) / max(width - 1, 1e-6), 0.0, 1.0)


def to_rgb(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Window a 2D slice (linear VOI, PS3.3 C.11.2.1.2) and return it as grey RGB.

    Parameters
    ----------
    values : numpy.ndarray
        ``(rows, columns)`` modality values.
    window : tuple[float, float]
        (centre, width).

    Returns
    -------
    numpy.ndarray
        ``(rows, columns, 3)`` uint8.
    """
    grey = np.rint(apply_window(values, window) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of a 2D mask that touch the outside (4-neighbourhood).

    Parameters
    ----------
    mask : numpy.ndarray
        ``(rows, columns)`` boolean.

    Returns
    -------
    numpy.ndarray
        Boolean boundary of ``mask``.
    """
    padded = np.pad(mask, 1, constant_values=False)
    interior = (
        padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    )
    return mask & ~interior


def draw_outline(rgb: np.ndarray, mask: np.ndarray, colour: Sequence[int]) -> None:
    """Colour the boundary of ``mask`` on ``rgb`` (in place).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(rows, columns, 3)`` uint8 image.
    mask : numpy.ndarray
        ``(rows, columns)`` boolean.
    colour : Sequence[int]
        RGB triple.
    """
    rgb[outline(mask)] = colour


def draw_circle(
    rgb: np.ndarray,
    centre: tuple[float, float],
    radius_mm: float,
    pixel_spacing: tuple[float, float],
    colour: Sequence[int],
) -> None:
    """Draw a ring around ``centre`` (row, column in pixels) on ``rgb`` (in place).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(rows, columns, 3)`` uint8 image.
    centre : tuple[float, float]
        Ring centre as fractional (row, column).
    radius_mm : float
        Ring radius in mm.
    pixel_spacing : tuple[float, float]
        Row and column spacing in mm.
    colour : Sequence[int]
        RGB triple.
    """
    rows, columns = rgb.shape[:2]
    j, i = np.ogrid[:rows, :columns]
    distance = np.hypot((j - centre[0]) * pixel_spacing[0], (i - centre[1]) * pixel_spacing[1])
    width = 0.75 * max(pixel_spacing)
    rgb[np.abs(distance - radius_mm) <= width] = colour


def blend_heatmap(rgb: np.ndarray, heat: np.ndarray, opacity: float = 0.5) -> None:
    """Blend a [0, 1] heat map (saliency, probability) onto ``rgb`` with a "hot" colour map.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(rows, columns, 3)`` uint8 image (modified in place).
    heat : numpy.ndarray
        ``(rows, columns)`` values in [0, 1]; values below 0.05 are left transparent.
    opacity : float, optional
        Weight of the colour map at heat 1.
    """
    h = np.clip(heat, 0.0, 1.0)
    colours = np.stack([np.clip(3 * h, 0, 1), np.clip(3 * h - 1, 0, 1), np.clip(3 * h - 2, 0, 1)],
                       axis=-1) * 255
    alpha = (opacity * h * (h >= 0.05))[..., None]
    rgb[...] = np.rint((1 - alpha) * rgb + alpha * colours).astype(np.uint8)


def burn_ai_mark(image: np.ndarray, value: object) -> None:
    """Burn the letters "AI" into the top-left corner of a 2D or RGB image (in place).

    Parameters
    ----------
    image : numpy.ndarray
        ``(rows, columns)`` or ``(rows, columns, 3)``.
    value : object
        Pixel value (or RGB triple) for the letters.
    """
    rows, columns = image.shape[:2]
    scale = max(1, min(rows, columns) // 128)
    margin = 2 * scale
    x = margin
    for letter in "AI":
        glyph = np.array([[c == "1" for c in line] for line in _GLYPHS[letter]])
        big = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        h, w = big.shape
        if margin + h > rows or x + w > columns:
            return
        image[margin:margin + h, x:x + w][big] = value
        x += w + scale
