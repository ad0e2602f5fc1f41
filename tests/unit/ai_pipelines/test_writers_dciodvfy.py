"""Every writer's output passes dicom3tools' dciodvfy with no "Error" line (skipped without it)."""

from __future__ import annotations

from collections.abc import Callable

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ai_pipelines.base import Finding, SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.volume import Volume
from ai_pipelines.writers import (
    Segment,
    write_derived_series,
    write_sc,
    write_seg,
    write_tid1500_sr,
)

Check = Callable[[Dataset], list[str]]


@pytest.fixture
def nodule(ct_volume: Volume, nodule_mask: np.ndarray) -> tuple[Segment, Finding]:
    uid = hd.UID()
    segment = Segment("nodule 1", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Nodule,
                      nodule_mask, uid, "nodule 1", codes.SCT.Lung)
    finding = Finding("nodule 1", uid, codes.SCT.Nodule,
                      tuple(ct_volume.index_to_patient((5.5, 23.0, 20.5))), volume_mm3=1000.0,
                      diameter_mm=12.0, probability=0.9, finding_site=codes.SCT.Lung)
    return segment, finding


def test_binary_and_fractional_seg(ct_series: SeriesInput, ct_volume: Volume,
                                   nodule: tuple[Segment, Finding], algorithm: AlgorithmInfo,
                                   dciodvfy_errors: Check) -> None:
    segment, _ = nodule
    assert dciodvfy_errors(write_seg(ct_series, ct_volume, [segment], algorithm=algorithm)) == []
    fractional = Segment(segment.label, segment.category, segment.property_type,
                         segment.mask * 0.7)
    seg = write_seg(ct_series, ct_volume, [fractional], algorithm=algorithm, fractional=True)
    assert dciodvfy_errors(seg) == []


def test_sr_with_and_without_findings(ct_series: SeriesInput, ct_volume: Volume,
                                      nodule: tuple[Segment, Finding], algorithm: AlgorithmInfo,
                                      dciodvfy_errors: Check) -> None:
    segment, finding = nodule
    seg = write_seg(ct_series, ct_volume, [segment], algorithm=algorithm)
    sr = write_tid1500_sr(ct_series, ct_volume, [finding], algorithm=algorithm, segmentation=seg)
    assert dciodvfy_errors(sr) == []
    empty = write_tid1500_sr(ct_series, ct_volume, [], algorithm=algorithm)
    assert dciodvfy_errors(empty) == []


def test_sc_key_image(ct_series: SeriesInput, ct_volume: Volume,
                      nodule: tuple[Segment, Finding], algorithm: AlgorithmInfo,
                      dciodvfy_errors: Check) -> None:
    segment, finding = nodule
    sc = write_sc(ct_series, ct_volume, algorithm=algorithm, segments=[segment],
                  findings=[finding])
    assert dciodvfy_errors(sc) == []


def test_derived_ct_mr_and_synthetic_ct(ct_series: SeriesInput, ct_volume: Volume,
                                        mr_series: SeriesInput, mr_volume: Volume,
                                        algorithm: AlgorithmInfo, dciodvfy_errors: Check) -> None:
    outputs = [
        write_derived_series(ct_series, ct_volume, ct_volume.array, algorithm=algorithm,
                             series_description="AI denoised")[0],
        write_derived_series(mr_series, mr_volume, mr_volume.array, algorithm=algorithm,
                             series_description="AI denoised")[0],
        write_derived_series(mr_series, mr_volume, mr_volume.array - 1000, algorithm=algorithm,
                             series_description="AI synthetic CT", modality="CT")[0],
    ]
    for ds in outputs:
        assert dciodvfy_errors(ds) == []


def test_the_check_does_catch_errors(ct_series: SeriesInput, dciodvfy_errors: Check) -> None:
    broken = ct_series.datasets[0].copy()
    broken.ImageType = ["DERIVED", "SECONDARY"]  # CT needs a third value
    assert any("ImageType" in line for line in dciodvfy_errors(broken))
