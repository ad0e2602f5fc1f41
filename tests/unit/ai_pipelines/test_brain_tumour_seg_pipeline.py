"""brain_tumour_seg with its committed reference weights: outputs, accuracy sanity, refusals, train.py."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset

from ai_pipelines.base import PipelineInputError, SeriesInput
from ai_pipelines.brain_tumour_seg import baseline, train
from ai_pipelines.brain_tumour_seg.nifti import nifti_series, read_nifti
from ai_pipelines.brain_tumour_seg.pipeline import BrainTumourSegmentation
from ai_pipelines.nn.weights import REFERENCE_DIR, WeightsError
from ai_pipelines.synthetic.brain_tumours import BrainTumourCase, case_series, make_case, regions
from ai_pipelines.synthetic.series import synthetic_ct, synthetic_mr
from ai_pipelines.volume import load_volume

WEIGHTS = REFERENCE_DIR / "brain_tumour_seg.pt"
Roundtrip = Callable[[Dataset], Dataset]


@pytest.fixture(scope="module")
def pipeline() -> BrainTumourSegmentation:
    return BrainTumourSegmentation(WEIGHTS)


@pytest.fixture(scope="module")
def case() -> BrainTumourCase:
    """A held-out case (a seed training never used), cropped to a 128 mm cube around the tumour."""
    full = make_case(4_000_001, spacing=(2.0, 2.0, 2.0))
    centre = np.argwhere(full.labels > 0).mean(axis=0).astype(int)
    window = tuple(slice(max(0, min(c - 32, n - 64)), max(0, min(c - 32, n - 64)) + 64)
                   for c, n in zip(centre, full.labels.shape, strict=True))
    return BrainTumourCase(images={k: v[window] for k, v in full.images.items()}, labels=full.labels[window],
                           spacing=full.spacing, template=full.template, source=full.source)


def _series(case: BrainTumourCase, contrast: str) -> SeriesInput:
    datasets = case_series(case, contrast, seed=11)
    random.Random(3).shuffle(datasets)  # storage order never matters
    return SeriesInput(datasets)


def test_t1c_run_writes_seg_sr_sc_that_reference_the_source(
    pipeline: BrainTumourSegmentation, case: BrainTumourCase, roundtrip: Roundtrip
) -> None:
    series = _series(case, "t1c")
    result = pipeline.run(series, algorithm=pipeline.algorithm_info({}))
    seg, sr, sc = (roundtrip(ds) for ds in result.datasets)
    assert (seg.Modality, sr.Modality) == ("SEG", "SR") and sc.SOPClassUID.name == "Secondary Capture Image Storage"
    for ds in (seg, sr, sc):
        assert ds.StudyInstanceUID == series.study_instance_uid
    source_uids = {ds.SOPInstanceUID for ds in series.datasets}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_instance_uid
    assert seg.FrameOfReferenceUID == series.datasets[0].FrameOfReferenceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in source_uids
    segmentation = hd.seg.Segmentation.from_dataset(seg)
    labels = [segmentation.get_segment_description(n).SegmentLabel for n in (1, 2, 3)]
    assert labels == ["tumour core (TC)", "enhancing tumour (ET)", "necrotic core (TC without ET)"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"  # Neoplasm
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "brain_tumour_seg"
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    groups = report.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [f.tracking_identifier for f in result.findings]
    assert {f.tracking_uid for f in result.findings} <= {s.TrackingUID for s in seg.SegmentSequence}
    tc = next(f for f in result.findings if f.tracking_identifier.startswith("tumour core"))
    truth_mm3 = float(regions(case.labels)[1].sum()) * 8.0
    assert 0.5 * truth_mm3 < tc.volume_mm3 < 1.5 * truth_mm3  # volume in the SR is about right
    assert set(pipeline.timings) == {"decode", "preprocess", "model", "postprocess", "write"}
    assert pipeline.bare_forward().shape == (3, 64, 64, 64)


def test_flair_run_writes_the_whole_tumour(pipeline: BrainTumourSegmentation, case: BrainTumourCase) -> None:
    result = pipeline.run(_series(case, "flair"), algorithm=pipeline.algorithm_info({"threshold": 0.5}))
    seg = result.datasets[0]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["whole tumour (WT)"]
    (finding,) = result.findings
    truth_mm3 = float(regions(case.labels)[0].sum()) * 8.0
    assert 0.5 * truth_mm3 < finding.volume_mm3 < 1.5 * truth_mm3


def test_trained_model_finds_the_tumour(pipeline: BrainTumourSegmentation, case: BrainTumourCase) -> None:
    wt, tc, et = regions(case.labels)
    flair = pipeline.segment(case.images["flair"], case.spacing, "flair")
    t1c = pipeline.segment(case.images["t1c"], case.spacing, "t1c")
    brain = case.images["flair"] > 0.15 * np.percentile(case.images["flair"], 99)
    chance = baseline.dice(brain, wt)  # "everything in the head is tumour"
    assert baseline.dice(flair["WT"], wt) > max(0.7, 2 * chance)
    assert baseline.dice(t1c["TC"], tc) > 0.6
    assert baseline.dice(t1c["ET"], et) > 0.5


def test_refuses_other_modalities_contrasts_and_parameters(pipeline: BrainTumourSegmentation) -> None:
    algorithm = pipeline.algorithm_info({})
    with pytest.raises(PipelineInputError, match="modality 'CT'"):
        pipeline.run(SeriesInput(synthetic_ct(shape=(20, 32, 32))), algorithm=algorithm)
    t2 = synthetic_mr(shape=(24, 16, 16))
    for ds in t2:
        ds.SeriesDescription = "AX T2 TSE"
    with pytest.raises(PipelineInputError, match="FLAIR or T1 post-contrast"):
        pipeline.run(SeriesInput(t2), algorithm=algorithm)
    with pytest.raises(PipelineInputError, match="field of view"):
        pipeline.run(SeriesInput(t2), algorithm=pipeline.algorithm_info({"contrast": "flair"}))  # 16 x 3 mm columns
    with pytest.raises(PipelineInputError, match="unknown parameter"):
        pipeline.run(SeriesInput(t2), algorithm=pipeline.algorithm_info({"thresold": 0.3}))
    with pytest.raises(PipelineInputError, match="needs >= 16"):
        pipeline.run(SeriesInput(synthetic_mr()), algorithm=algorithm)  # 12 slices


def test_refuses_weights_the_manifest_does_not_vouch_for(tmp_path: Path, case: BrainTumourCase) -> None:
    copy = tmp_path / "brain_tumour_seg.pt"
    shutil.copyfile(WEIGHTS, copy)
    unlisted = BrainTumourSegmentation(copy)
    with pytest.raises(WeightsError, match="not listed"):
        unlisted.run(_series(case, "flair"), algorithm=unlisted.algorithm_info({}))
    (tmp_path / "manifest.json").write_text(json.dumps({"brain_tumour_seg.pt": {"sha256": "0" * 64}}))
    with pytest.raises(WeightsError, match="changed after it was vouched for"):
        BrainTumourSegmentation(copy).loaded()
    assert BrainTumourSegmentation(copy, verify_weights=False).loaded().meta["steps"] >= 100


def test_train_smoke(tmp_path: Path) -> None:
    out = tmp_path / "w.pt"
    assert train.main(["--steps", "2", "--cases", "1", "--patch", "32", "--threads", "1", "--quiet",
                       "--out", str(out)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["w.pt"]["steps"] == 2
    loaded = BrainTumourSegmentation(out).loaded()  # vouched for by the manifest train.py wrote
    assert loaded.meta["seed"] == 0 and np.isfinite(loaded.meta["final_loss"])
    assert "--steps 2" in loaded.meta["command"]


def _seg_mask(seg: Dataset, series: SeriesInput) -> np.ndarray:
    """Segment 1 of a BINARY SEG on the source grid, frames placed by their position (not their order)."""
    volume = load_volume(series)
    mask = np.zeros(volume.shape, dtype=bool)
    frames = seg.pixel_array.reshape(-1, *volume.shape[1:])
    shared = seg.SharedFunctionalGroupsSequence[0]
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        # with one segment, highdicom puts the segment identification in the shared groups
        identification = item.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        if identification[0].ReferencedSegmentNumber == 1:
            position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
            mask[int(round(float(volume.patient_to_index(position)[0])))] |= frame.astype(bool)
    return mask


@pytest.mark.slow
def test_real_patient_through_run(pipeline: BrainTumourSegmentation, shared_data: Path) -> None:
    folder = shared_data / "brain" / "TCGA-DU-7294"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    series = SeriesInput(nifti_series(folder / "TCGA-DU-7294_fla_bet.nii.gz", series_description="AX FLAIR"))
    result = pipeline.run(series, algorithm=pipeline.algorithm_info({}))
    predicted = _seg_mask(result.datasets[0], series)
    fused = np.rint(read_nifti(folder / "TCGA-DU-7294_seg_fusion.nii.gz").values) > 0  # same grid as the FLAIR
    # The synthetic-trained reference model finds this patient's tumour but over-segments it about
    # threefold (docs/evaluation: Dice WT 0.46 here, thresholding 0.67): the test holds that floor,
    # and that nearly all of the fused BraTS-2020 label lies inside the prediction.
    assert baseline.dice(predicted, fused) > 0.4
    assert (predicted & fused).sum() > 0.9 * fused.sum()
    (finding,) = result.findings
    assert finding.volume_mm3 == pytest.approx(float(predicted.sum()))  # 1 mm voxels
