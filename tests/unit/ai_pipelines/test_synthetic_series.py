"""Synthetic series: deterministic, valid DICOM, geometry as asked."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pydicom.dataset import Dataset

from ai_pipelines.synthetic.series import (
    SAGITTAL,
    Grid,
    make_series,
    synthetic_ct,
    synthetic_mr,
)


def test_same_seed_same_series_other_seed_other_series() -> None:
    first, again, other = synthetic_ct(seed=1), synthetic_ct(seed=1), synthetic_ct(seed=2)
    assert [ds.SOPInstanceUID for ds in first] == [ds.SOPInstanceUID for ds in again]
    assert all(a.PixelData == b.PixelData for a, b in zip(first, again, strict=True))
    assert first[0].StudyInstanceUID != other[0].StudyInstanceUID
    assert first[0].PixelData != other[0].PixelData


def test_a_second_series_can_join_the_study_and_frame_of_reference() -> None:
    ct = synthetic_ct(shape=(2, 8, 8))
    grid = Grid((2, 8, 8), (2.0, 2.0, 2.0), SAGITTAL)
    mr = make_series(np.zeros(grid.shape), grid, modality="MR", series_number=2,
                     study_instance_uid=ct[0].StudyInstanceUID,
                     frame_of_reference_uid=ct[0].FrameOfReferenceUID)
    assert mr[0].StudyInstanceUID == ct[0].StudyInstanceUID
    assert mr[0].SeriesInstanceUID != ct[0].SeriesInstanceUID
    assert [float(v) for v in mr[0].ImageOrientationPatient] == list(SAGITTAL)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (0, 4, 4)}, "shape"),
        ({"spacing": (1.0, -1.0, 1.0)}, "spacing"),
        ({"orientation": (1, 0, 0, 1, 0, 0)}, "orientation"),
    ],
)
def test_grid_cannot_be_built_invalid(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"shape": (2, 4, 4), "spacing": (1.0, 1.0, 1.0)}
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Grid(**values)  # type: ignore[arg-type]


def test_make_series_checks_its_arguments() -> None:
    grid = Grid((2, 4, 4), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="CT or MR"):
        make_series(np.zeros(grid.shape), grid, modality="US")
    with pytest.raises(ValueError, match="shape"):
        make_series(np.zeros((3, 4, 4)), grid, modality="CT")


@pytest.mark.parametrize("make", [synthetic_ct, synthetic_mr], ids=["ct", "mr"])
def test_synthetic_instances_pass_dciodvfy(
    make: Callable[..., list[Dataset]], dciodvfy_errors: Callable[[Dataset], list[str]]
) -> None:
    assert dciodvfy_errors(make(shape=(2, 16, 16))[0]) == []
