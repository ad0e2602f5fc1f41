"""Fixtures for ai_pipelines unit tests: synthetic series, volumes, an algorithm, DICOM checks.

Helpers are fixtures (not importable functions) so that they work under any pytest import mode.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from ai_pipelines.base import SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.synthetic.series import synthetic_ct, synthetic_mr
from ai_pipelines.volume import Volume, load_volume

_REPO = Path(__file__).resolve().parents[3]
_SHARED_DATA = next(
    (p for p in (_REPO.parent / "shared" / "data", _REPO / "shared" / "data") if p.is_dir()),
    None,
)


def _roundtrip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


@pytest.fixture
def roundtrip() -> Callable[[Dataset], Dataset]:
    """Save to memory and read back with pydicom (the highdicom-style round trip)."""
    return _roundtrip


@pytest.fixture
def dciodvfy_errors(tmp_path: Path) -> Callable[[Dataset], list[str]]:
    """Run dicom3tools' dciodvfy on a dataset and return its "Error" lines."""
    binary = shutil.which("dciodvfy")
    if binary is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")

    def run(ds: Dataset) -> list[str]:
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        result = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        return [line for line in output.splitlines() if line.startswith("Error")]

    return run


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the repository (see its README)."""
    if _SHARED_DATA is None:
        pytest.skip("../shared/data is not present on this machine")
    return _SHARED_DATA


@pytest.fixture
def algorithm() -> AlgorithmInfo:
    return AlgorithmInfo(
        name="test_algorithm", version="1.2.3", weights_sha256="ab" * 32,
        parameters={"threshold": 0.5, "patch": 64},
    )


@pytest.fixture
def ct_series() -> SeriesInput:
    datasets = synthetic_ct(seed=3)
    random.Random(7).shuffle(datasets)  # storage order never matters
    return SeriesInput(datasets)


@pytest.fixture
def ct_volume(ct_series: SeriesInput) -> Volume:
    return load_volume(ct_series)


@pytest.fixture
def mr_series() -> SeriesInput:
    return SeriesInput(synthetic_mr(seed=4))


@pytest.fixture
def mr_volume(mr_series: SeriesInput) -> Volume:
    return load_volume(mr_series)


@pytest.fixture
def nodule_mask(ct_volume: Volume) -> np.ndarray:
    """A 4-slice box in the right lung of the synthetic CT."""
    mask = np.zeros(ct_volume.shape, dtype=bool)
    mask[4:8, 20:27, 18:24] = True
    return mask
