"""lettering: a 5x7 bitmap font burned into pixels, clipped at the edges, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from ai_pipelines.writers import lettering, overlay


def _glyph(char: str) -> np.ndarray:
    return np.array([[c == "1" for c in line] for line in lettering.GLYPHS[char]])


def test_every_glyph_is_seven_rows_of_five() -> None:
    assert all(len(rows) == 7 and all(len(r) == 5 and set(r) <= {"0", "1"} for r in rows)
               for rows in lettering.GLYPHS.values())
    assert set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ -.:/") <= set(lettering.GLYPHS)
    assert overlay._GLYPHS["A"] == lettering.GLYPHS["A"]  # the "AI" mark uses the same font


def test_text_is_drawn_letter_by_letter_with_a_shadow() -> None:
    image = np.full((12, 20), 7, dtype=np.uint8)
    lettering.burn_text(image, "i-1", (1, 1), 255, shadow=0)
    assert np.array_equal(image[1:8, 1:6] == 255, _glyph("I"))  # lower case drawn upper
    assert np.array_equal(image[1:8, 7:12] == 255, _glyph("-"))
    assert np.array_equal(image[1:8, 13:18] == 255, _glyph("1"))
    assert image[8, 2] == 0 and image[0, 0] == 7  # shadow below, background untouched
    assert lettering.text_size("i-1") == (7, 17)
    assert lettering.text_size("i-1", scale=2) == (14, 34) and lettering.text_size("") == (0, 0)


def test_scaled_rgb_text_is_clipped_and_unknown_characters_show_as_a_question_mark() -> None:
    rgb = np.zeros((10, 8, 3), dtype=np.uint8)
    lettering.burn_text(rgb, "~", (-4, -2), (255, 230, 0), scale=2)
    big = np.kron(_glyph("?"), np.ones((2, 2), dtype=bool))[4:14, 2:10]
    assert np.array_equal(np.all(rgb == (255, 230, 0), axis=-1), big)
    with pytest.raises(ValueError, match="scale=0"):
        lettering.burn_text(rgb, "A", (0, 0), 1, scale=0)
