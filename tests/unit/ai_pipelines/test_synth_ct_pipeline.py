"""synth_ct pipeline: MR series in, synthetic CT series out (geometry, HU, references, refusals)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from skimage.metrics import structural_similarity

from ai_pipelines.base import PipelineInputError, SeriesInput
from ai_pipelines.nn.device import torch_device
from ai_pipelines.nn.weights import REFERENCE_DIR, WeightsError
from ai_pipelines.synth_ct.baseline import bulk_density
from ai_pipelines.synth_ct.inference import prepare_slices, synthesise
from ai_pipelines.synth_ct.pipeline import SynthCT
from ai_pipelines.synth_ct.preprocess import normalise_mr
from ai_pipelines.synthetic import anatomy
from ai_pipelines.synthetic.mr_from_ct import T2, MrCtCase, derived_mr_series
from ai_pipelines.synthetic.series import SAGITTAL, synthetic_mr
from ai_pipelines.volume import load_volume

WEIGHTS = REFERENCE_DIR / "synth_ct.pt"
Roundtrip = Callable[[Dataset], Dataset]


@pytest.fixture(scope="module")
def case() -> MrCtCase:
    try:
        return derived_mr_series(first=4, count=6, seed=11)
    except anatomy.AnatomyUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def pipeline() -> SynthCT:
    return SynthCT(WEIGHTS)


@pytest.fixture(scope="module")
def outputs(pipeline: SynthCT, case: MrCtCase) -> list[Dataset]:
    series = SeriesInput(case.datasets)
    result = pipeline.run(series, algorithm=pipeline.algorithm_info())
    assert result.findings == ()
    return list(result.datasets)


def _hu(ds: Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_outputs_are_ct_on_the_mr_grid(outputs: list[Dataset], case: MrCtCase, roundtrip: Roundtrip) -> None:
    assert len(outputs) == len(case.datasets)
    source_uids = {ds.SOPInstanceUID for ds in case.datasets}
    series_uids = set()
    for out, source in zip(outputs, case.datasets, strict=True):
        ds = roundtrip(out)
        assert ds.Modality == "CT" and ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert ds.SeriesDescription == "AI synthetic CT"
        assert "derived from CT" in ds.DerivationDescription and "MR series" in ds.DerivationDescription
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient],
                                   [float(v) for v in source.ImagePositionPatient], atol=1e-4)
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient],
                                   [float(v) for v in source.ImageOrientationPatient], atol=1e-6)
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [float(v) for v in source.PixelSpacing])
        assert (ds.Rows, ds.Columns) == (source.Rows, source.Columns)
        (item,) = ds.SourceImageSequence
        assert item.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
        assert ds.SOPInstanceUID not in source_uids and ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.RescaleType == "HU" and (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 400.0)
        series_uids.add(ds.SeriesInstanceUID)
    assert len(series_uids) == 1
    assert len({ds.SOPInstanceUID for ds in outputs}) == len(outputs)


def test_hu_round_trip_through_rescale(pipeline: SynthCT, case: MrCtCase, roundtrip: Roundtrip) -> None:
    series = SeriesInput(case.datasets)
    result = pipeline.run(series, algorithm=pipeline.algorithm_info({"burn_in_mark": False}))
    volume = load_volume(series)
    expected, body = synthesise(pipeline.loaded().network, np.asarray(volume.array), volume.pixel_spacing,
                                torch_device("cpu"))
    written = np.stack([_hu(roundtrip(ds)) for ds in result.datasets])
    np.testing.assert_allclose(written, np.rint(expected), atol=0.51)
    assert written.min() >= -1024 and written.max() <= 3000
    assert np.all(written[~body] == -1024)  # air outside the body


def test_ai_mark_is_burned_in_by_default(pipeline: SynthCT, case: MrCtCase, outputs: list[Dataset]) -> None:
    plain = pipeline.run(SeriesInput(case.datasets), algorithm=pipeline.algorithm_info({"burn_in_mark": "false"}))
    marked, unmarked = _hu(outputs[0]), _hu(plain.datasets[0])
    differs = marked != unmarked
    assert differs.any()
    rows, columns = np.nonzero(differs)
    assert rows.max() < 32 and columns.max() < 48  # only the top-left corner


def test_model_beats_bulk_density_on_bone_and_structure(outputs: list[Dataset], case: MrCtCase) -> None:
    # What the synthetic-trained reference weights achieve on held-out head slices (docs/evaluation):
    # better bone HU and SSIM than bulk density and than a constant, about bulk density's MAE
    # overall (worse in soft tissue, where one fixed value is hard to beat; on these slices even
    # a constant median has a lower whole-body MAE than either, so MAE alone says little).
    predicted = np.stack([_hu(ds) for ds in outputs])
    values = np.stack([ds.pixel_array for ds in case.datasets]).astype(np.float32)
    baseline, _ = bulk_density(values)
    constant = np.full_like(case.ct, np.median(case.ct[case.body]))
    inner = case.body.copy()
    inner[:, :12, :24] = False  # the burned-in mark

    def mae(image: np.ndarray, where: np.ndarray) -> float:
        return float(np.abs(image - case.ct)[where].mean())

    def mean_ssim(image: np.ndarray) -> float:
        return float(np.mean([structural_similarity(np.clip(image[k], -1024, 3000), np.clip(case.ct[k], -1024, 3000),
                                                    data_range=4024) for k in range(len(image))]))

    assert mae(predicted, inner) < 1.05 * mae(baseline, inner)
    bone = inner & (case.ct >= 250)
    assert mae(predicted, bone) < 0.95 * min(mae(baseline, bone), mae(constant, bone))
    assert mean_ssim(predicted) > mean_ssim(baseline) > mean_ssim(constant)


def test_t2_like_input_also_works(pipeline: SynthCT) -> None:
    case = derived_mr_series(first=10, count=2, seed=12, contrast=T2, series_description="T2 TSE AX")
    result = pipeline.run(SeriesInput(case.datasets), algorithm=pipeline.algorithm_info({"burn_in_mark": False}))
    predicted = np.stack([_hu(ds) for ds in result.datasets])
    baseline, _ = bulk_density(np.stack([ds.pixel_array for ds in case.datasets]).astype(np.float32))
    error = np.abs(predicted - case.ct)[case.body].mean()
    assert error < 1.05 * np.abs(baseline - case.ct)[case.body].mean()
    bone = case.body & (case.ct >= 250)
    assert np.abs(predicted - case.ct)[bone].mean() < np.abs(baseline - case.ct)[bone].mean()


def test_timings_and_forward_only(pipeline: SynthCT, case: MrCtCase, outputs: list[Dataset]) -> None:
    assert set(pipeline.timings) == {"decode", "preprocess", "model", "postprocess", "write"}
    assert all(v >= 0 for v in pipeline.timings.values())
    volume = load_volume(SeriesInput(case.datasets))
    normalised, _ = normalise_mr(np.asarray(volume.array))
    slices, geometry = prepare_slices(normalised, volume.pixel_spacing)
    out = pipeline.forward_only(slices[:, 0].numpy())
    assert out.shape == tuple(slices[:, 0].shape) and np.abs(out).max() <= 1.0
    assert geometry.original == (128, 128) and geometry.resampled == (163, 163)
    pipeline.run(SeriesInput(case.datasets), algorithm=pipeline.algorithm_info())
    np.testing.assert_allclose(pipeline.bare_forward(), out, atol=1e-5)  # the bench re-runs the run's input


def test_refuses_ct_and_bad_parameters(pipeline: SynthCT, ct_series: SeriesInput, case: MrCtCase) -> None:
    with pytest.raises(PipelineInputError, match="modality 'CT'"):
        pipeline.run(ct_series, algorithm=pipeline.algorithm_info())
    with pytest.raises(PipelineInputError, match="unknown parameter"):
        pipeline.run(SeriesInput(case.datasets), algorithm=pipeline.algorithm_info({"threshold": 1}))
    with pytest.raises(PipelineInputError, match="window_width"):
        pipeline.run(SeriesInput(case.datasets), algorithm=pipeline.algorithm_info({"window_width": 0}))


def test_refuses_non_axial_and_coarse_series(pipeline: SynthCT) -> None:
    with pytest.raises(PipelineInputError, match="not axial"):
        pipeline.run(SeriesInput(synthetic_mr(orientation=SAGITTAL)), algorithm=pipeline.algorithm_info())
    with pytest.raises(PipelineInputError, match="coarser"):
        pipeline.run(SeriesInput(synthetic_mr(spacing=(4.0, 5.0, 5.0))), algorithm=pipeline.algorithm_info())


def test_refuses_weights_the_manifest_does_not_list(tmp_path: Path, pipeline: SynthCT, case: MrCtCase) -> None:
    copy = tmp_path / "synth_ct.pt"
    shutil.copyfile(WEIGHTS, copy)
    with pytest.raises(WeightsError, match="not listed"):
        SynthCT(copy).run(SeriesInput(case.datasets), algorithm=pipeline.algorithm_info())
    (tmp_path / "manifest.json").write_text(json.dumps({"synth_ct.pt": {"sha256": "0" * 64}}))
    with pytest.raises(WeightsError, match="changed after"):
        SynthCT(copy).loaded()
    assert SynthCT(copy, verify_weights=False).loaded().sha256 == pipeline.loaded().sha256
