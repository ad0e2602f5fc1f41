"""lung_nodules pipeline: SR/SEG/SC outputs on a synthetic chest CT with the committed weights, refusals."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ai_pipelines.base import OutputKind, PipelineInputError, SeriesInput
from ai_pipelines.lung_nodules.calibration import Calibration
from ai_pipelines.lung_nodules.pipeline import LungNodules, NoduleParameters
from ai_pipelines.nn.weights import REFERENCE_DIR, WeightsError
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.synthetic.chest_nodules import LidcStats, chest_series
from ai_pipelines.synthetic.series import synthetic_ct, synthetic_mr

Roundtrip = Callable[[Dataset], Dataset]
WEIGHTS = REFERENCE_DIR / "lung_nodules.pt"


class _Solid(LidcStats):
    """Always a round 12 mm solid nodule: the easy case."""

    def sample(self, rng: np.random.Generator, *, subsolid_boost: float = 1.0) -> tuple[float, str, int, int, int]:
        return (12.0, "solid", 5, 1, 1)


@pytest.fixture(scope="module")
def easy_case() -> tuple[list[Dataset], object]:
    # the whole chest at 2 mm: 40 x 240 x 336 mm
    return chest_series(21, nodules=2, shape=(20, 120, 168), spacing=(2.0, 2.0, 2.0), stats=_Solid(), noise_hu=20.0)


@pytest.fixture(scope="module")
def result(easy_case: tuple) -> tuple[LungNodules, object]:
    if not WEIGHTS.is_file():
        pytest.fail(f"{WEIGHTS} is missing: train it with python -m ai_pipelines.lung_nodules.train")
    pipeline = LungNodules(WEIGHTS)
    datasets, _ = easy_case
    out = pipeline.run(SeriesInput(datasets), algorithm=pipeline.algorithm_info({"saliency_images": 1}))
    return pipeline, out


@pytest.fixture(scope="module")
def low_threshold_result(easy_case: tuple) -> tuple[LungNodules, object]:
    """A run at threshold 0.05, so that the reference weights report candidates to write."""
    pipeline = LungNodules(WEIGHTS)
    datasets, _ = easy_case
    params = {"saliency_images": 1, "threshold": 0.05}
    return pipeline, pipeline.run(SeriesInput(datasets), algorithm=pipeline.algorithm_info(params))


@pytest.mark.slow
def test_finds_the_easy_nodules_and_reports_them(easy_case: tuple, result: tuple) -> None:
    _, case = easy_case
    pipeline, out = result
    assert len(case.nodules) == 2
    assert set(pipeline.timings) == {"decode", "preprocess", "model", "postprocess", "write"}
    truth = np.array([n.centre for n in case.nodules])
    hits = {int(np.argmin(np.linalg.norm(truth - f.centre, axis=1))) for f in out.findings
            if np.linalg.norm(truth - f.centre, axis=1).min() <= 6.0}
    assert hits == {0, 1}  # both 12 mm nodules found within their radius
    assert len(out.findings) <= 4  # and not buried in false positives
    # with no threshold in the rule, the weights' operating threshold decides what is reported
    operating = Calibration.from_meta(pipeline.loaded().meta).operating_threshold
    for finding in out.findings:
        assert finding.finding_type == codes.SCT.Nodule and finding.finding_site == codes.SCT.Lung
        assert operating <= finding.probability <= 1.0
    best = max(out.findings, key=lambda f: f.probability)
    assert 6.0 <= best.diameter_mm <= 20.0 and 100 <= best.volume_mm3 <= 4000


def test_committed_weights_carry_their_calibration() -> None:
    calibration = Calibration.from_meta(LungNodules(WEIGHTS).loaded().meta)
    assert calibration != Calibration()  # not the identity a bare checkpoint gets
    assert calibration.scans >= 8 and 0 < calibration.hits < calibration.candidates
    # an operating threshold chosen on the same scans, and what it did there
    assert calibration.threshold is not None and 0.05 <= calibration.threshold <= 0.99
    assert calibration.fp_per_scan is not None and calibration.fp_per_scan <= 1.0
    assert calibration.sensitivity is not None and 0 < calibration.sensitivity <= 1


@pytest.mark.slow
def test_outputs_reread_and_reference_the_source(
    easy_case: tuple, low_threshold_result: tuple, roundtrip: Roundtrip
) -> None:
    datasets, _ = easy_case
    _, out = low_threshold_result
    assert out.findings, "candidates at threshold 0.05"
    source_uids = {ds.SOPInstanceUID for ds in datasets}
    by_modality: dict[str, list[Dataset]] = {}
    for ds in out.datasets:
        again = roundtrip(ds)
        assert again.StudyInstanceUID == datasets[0].StudyInstanceUID
        by_modality.setdefault(again.Modality, []).append(again)
    (sr,), (seg,) = by_modality["SR"], by_modality["SEG"]
    assert len(by_modality["OT"]) == 2  # key image + one saliency image
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    groups = report.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(out.findings)
    assert {str(g.tracking_uid) for g in groups} == {f.tracking_uid for f in out.findings}
    evidence = {item.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert source_uids <= evidence and seg.SOPInstanceUID in evidence
    segmentation = hd.seg.Segmentation.from_dataset(seg)
    assert segmentation.SegmentationType == "BINARY" and seg.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    assert len(seg.SegmentSequence) == len(out.findings)
    referenced = {ref.ReferencedSOPInstanceUID for frame in seg.PerFrameFunctionalGroupsSequence
                  for d in frame.DerivationImageSequence for ref in d.SourceImageSequence}
    assert referenced <= source_uids and referenced
    saliency = [ds for ds in by_modality["OT"] if ds.SeriesDescription == "AI lung nodules saliency"]
    key = [ds for ds in by_modality["OT"] if ds.SeriesDescription == "AI lung nodules key image"]
    assert len(saliency) == 1 and len(key) == 1 and saliency[0].SeriesNumber == key[0].SeriesNumber + 1
    pixels = saliency[0].pixel_array
    assert pixels.ndim == 3 and (pixels[..., 0].astype(int) - pixels[..., 2]).max() > 100  # hot colours blended in


def test_refuses_wrong_modality_and_results() -> None:
    pipeline = LungNodules(WEIGHTS)
    with pytest.raises(PipelineInputError, match="modality 'MR'"):
        pipeline.run(SeriesInput(synthetic_mr(seed=1)), algorithm=pipeline.algorithm_info())


def test_refuses_thick_slices_and_unknown_parameters() -> None:
    pipeline = LungNodules(WEIGHTS)
    thick = SeriesInput(synthetic_ct(shape=(12, 64, 64), spacing=(5.0, 1.5, 1.5), seed=2))
    with pytest.raises(PipelineInputError, match="5 mm apart"):
        pipeline.run(thick, algorithm=pipeline.algorithm_info())
    with pytest.raises(PipelineInputError, match="unknown parameter"):
        pipeline.run(thick, algorithm=pipeline.algorithm_info({"treshold": 0.4}))
    with pytest.raises(ValueError, match="threshold"):
        NoduleParameters.from_mapping({"threshold": 1.5})


def test_refuses_weights_not_in_the_manifest(tmp_path: Path) -> None:
    copy = tmp_path / "lung_nodules.pt"
    shutil.copyfile(WEIGHTS, copy)
    pipeline = LungNodules(copy)
    series = SeriesInput(synthetic_ct(shape=(24, 32, 32), spacing=(2.0, 1.5, 1.5), seed=3))
    with pytest.raises(WeightsError, match="not listed"):
        pipeline.run(series, algorithm=AlgorithmInfo(name=pipeline.name, version=pipeline.version))
    with pytest.raises(WeightsError, match="not listed"):
        pipeline.algorithm_info()


def test_declaration() -> None:
    assert LungNodules.produces == frozenset({OutputKind.SR, OutputKind.SEG, OutputKind.SC})
    assert LungNodules.accepts.modalities == frozenset({"CT"})
