"""Burn short labels into pixels with a 5x7 bitmap font (upper case, digits, a little punctuation).

Pure numpy, no fonts on disk and no Pillow: the same text gives the same pixels on
every machine, so outputs stay reproducible. Used for the "AI" mark
(:mod:`overlay`) and for tile labels in montages.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

__all__ = ["GLYPH_SHAPE", "GLYPHS", "burn_text", "text_size"]

#: Rows and columns of one glyph before scaling.
GLYPH_SHAPE = (7, 5)

_FONT = {
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "11111 00100 00100 00100 00100 00100 11111",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "#": "01010 01010 11111 01010 11111 01010 01010",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}

#: Character -> its 7 rows of 5 "0"/"1" columns.
GLYPHS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {char: tuple(rows.split()) for char, rows in _FONT.items()}
)


def _bitmap(char: str) -> np.ndarray:
    rows = GLYPHS.get(char.upper(), GLYPHS["?"])
    return np.array([[c == "1" for c in line] for line in rows], dtype=bool)


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """Pixels that :func:`burn_text` needs for one line of ``text``.

    Parameters
    ----------
    text : str
        One line.
    scale : int, optional
        Each font pixel becomes ``scale`` x ``scale`` pixels.

    Returns
    -------
    tuple[int, int]
        (rows, columns); one blank font column separates letters.
    """
    if not text:
        return (0, 0)
    rows, columns = GLYPH_SHAPE
    return (rows * scale, (len(text) * (columns + 1) - 1) * scale)


def burn_text(
    image: np.ndarray,
    text: str,
    origin: tuple[int, int],
    value: object,
    *,
    scale: int = 1,
    shadow: object | None = None,
) -> None:
    """Write one line of text into a 2D or RGB image (in place), clipped at its edges.

    Lower case is drawn as upper case; a character the font lacks is drawn as "?".

    Parameters
    ----------
    image : numpy.ndarray
        ``(rows, columns)`` or ``(rows, columns, 3)``.
    text : str
        One line.
    origin : tuple[int, int]
        (row, column) of the top-left corner of the first letter.
    value : object
        Pixel value (or RGB triple) for the letters.
    scale : int, optional
        Each font pixel becomes ``scale`` x ``scale`` pixels.
    shadow : object or None, optional
        Value drawn one font pixel down and right of each letter first, so that the
        text reads on any background.

    Raises
    ------
    ValueError
        If ``scale`` is below 1.
    """
    if scale < 1:
        raise ValueError(f"scale={scale}; expected >= 1")
    mask = np.zeros(image.shape[:2], dtype=bool)
    row, column = origin
    for char in text:
        big = np.kron(_bitmap(char), np.ones((scale, scale), dtype=bool))
        _paste(mask, big, row, column)
        column += (GLYPH_SHAPE[1] + 1) * scale
    if shadow is not None:
        shifted = np.zeros_like(mask)
        shifted[scale:, scale:] = mask[:-scale, :-scale]
        image[shifted & ~mask] = shadow
    image[mask] = value


def _paste(mask: np.ndarray, glyph: np.ndarray, row: int, column: int) -> None:
    rows, columns = mask.shape
    top, left = max(row, 0), max(column, 0)
    bottom, right = min(row + glyph.shape[0], rows), min(column + glyph.shape[1], columns)
    if top >= bottom or left >= right:
        return
    mask[top:bottom, left:right] |= glyph[top - row:bottom - row, left - column:right - column]
