"""The denoise pipeline with the committed reference weights: derived series out, refusals."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset
from skimage.metrics import structural_similarity

from ai_pipelines.base import PipelineInputError, PipelineResult, SeriesInput
from ai_pipelines.denoise.evaluation import METHODS, estimate_noise
from ai_pipelines.denoise.model import from_network, to_network
from ai_pipelines.denoise.pipeline import TIMING_KEYS, DenoisePipeline
from ai_pipelines.nn.weights import REFERENCE_DIR, WeightsError
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.synthetic.noise_pairs import held_out_series
from ai_pipelines.volume import load_volume

WEIGHTS = REFERENCE_DIR / "denoise.pt"
MARK_ROWS = 40  # the burned-in "AI" lies above this row on 185-256 pixel slices
Roundtrip = Callable[[Dataset], Dataset]


def _body_rmse(values: np.ndarray, clean: np.ndarray, floor: float) -> float:
    body = clean[:, MARK_ROWS:] > floor
    return float(np.sqrt(np.mean((values[:, MARK_ROWS:][body] - clean[:, MARK_ROWS:][body]) ** 2)))


@pytest.fixture(scope="module")
def pipeline() -> DenoisePipeline:
    return DenoisePipeline(WEIGHTS)


@pytest.fixture(scope="module")
def ct_case(pipeline: DenoisePipeline) -> tuple[SeriesInput, np.ndarray, np.ndarray, PipelineResult]:
    datasets, clean, noisy = held_out_series("CT", count=4, seed=11)
    series = SeriesInput(datasets)
    result = pipeline.run(series, algorithm=pipeline.algorithm_info())
    return series, clean, noisy, result


def test_ct_output_is_a_derived_ct_series_on_the_source_grid(
    ct_case: tuple[SeriesInput, np.ndarray, np.ndarray, PipelineResult], roundtrip: Roundtrip,
) -> None:
    series, _, _, result = ct_case
    outputs = [roundtrip(ds) for ds in result.datasets]
    assert len(outputs) == 4 and result.findings == ()
    source = {ds.SOPInstanceUID: ds for ds in series.datasets}
    assert len({ds.SeriesInstanceUID for ds in outputs}) == 1
    assert outputs[0].SeriesInstanceUID != series.series_instance_uid
    assert not set(source) & {ds.SOPInstanceUID for ds in outputs}
    for ds in outputs:
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Modality == "CT"
        assert ds.SeriesDescription == "AI denoised"
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "denoise 1.0.0" in ds.DerivationDescription and "PatchGAN" in ds.DerivationDescription
        assert ds.StudyInstanceUID == series.study_instance_uid
        origin = source[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert ds.FrameOfReferenceUID == origin.FrameOfReferenceUID
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            assert [float(v) for v in ds[keyword].value] == pytest.approx([float(v) for v in origin[keyword].value])
        assert (ds.Rows, ds.Columns) == (origin.Rows, origin.Columns)
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_instance_uid
    again = load_volume(outputs)
    assert np.allclose(again.affine, load_volume(series).affine, atol=1e-5)
    theirs, source_volume = hd.get_volume_from_series(outputs), hd.get_volume_from_series(list(series.datasets))
    assert theirs.spatial_shape == (4, 256, 256)
    assert np.allclose(theirs.affine, source_volume.affine, atol=1e-4)


def test_ct_hounsfield_units_round_trip_and_the_ai_mark(
    pipeline: DenoisePipeline, ct_case: tuple[SeriesInput, np.ndarray, np.ndarray, PipelineResult],
) -> None:
    series, _, _, result = ct_case
    volume = load_volume(series)
    scaled, scale = to_network(volume.array, "CT")
    expected = from_network(pipeline.forward_only(scaled, "CT"), "CT", scale)
    again = load_volume(result.datasets)
    first = result.datasets[0]
    assert (float(first.RescaleSlope), first.RescaleType) == (1.0, "HU")
    # stored integers * slope + intercept give the network's HU, rounded to 1 HU
    np.testing.assert_allclose(again.array[:, MARK_ROWS:], np.rint(expected[:, MARK_ROWS:]), atol=1.0)
    assert not np.array_equal(again.array[:, :MARK_ROWS, :MARK_ROWS], np.rint(expected[:, :MARK_ROWS, :MARK_ROWS]))


def test_ct_denoising_beats_the_noisy_input(
    ct_case: tuple[SeriesInput, np.ndarray, np.ndarray, PipelineResult], pipeline: DenoisePipeline,
) -> None:
    _, clean, noisy, result = ct_case
    denoised = load_volume(result.datasets).array
    before, after = _body_rmse(np.clip(noisy, -1024, 3071), clean, -500), _body_rmse(denoised, clean, -500)
    assert after < 0.8 * before, (before, after)
    assert set(pipeline.timings) == set(TIMING_KEYS) and all(v >= 0 for v in pipeline.timings.values())
    scaled, _ = to_network(load_volume(ct_case[0]).array, "CT")
    np.testing.assert_allclose(pipeline.bare_forward(), pipeline.forward_only(scaled, "CT"), atol=1e-5)


def test_mr_is_denoised_into_an_mr_series_and_blend_zero_keeps_the_input(pipeline: DenoisePipeline) -> None:
    datasets, clean, noisy = held_out_series("MR", count=3, seed=12)
    series = SeriesInput(datasets)
    result = pipeline.run(series, algorithm=pipeline.algorithm_info())
    assert {ds.SOPClassUID for ds in result.datasets} == {"1.2.840.10008.5.1.4.1.1.4"}
    denoised = load_volume(result.datasets).array
    # Undersampling streaks are not noise a filter can average away: less RMSE gain than on CT
    # (on these slices about that of non-local means, the best classical filter of
    # docs/evaluation), but a clearly better structural similarity than that filter.
    scaled, scale = to_network(noisy, "MR")
    nl_means = from_network(np.stack([METHODS["non-local means (scikit-image)"](s, estimate_noise(s)) for s in scaled]),
                            "MR", scale)
    assert _body_rmse(denoised, clean, 100.0) < 0.9 * _body_rmse(np.rint(noisy), clean, 100.0)
    data_range = float(clean.max() - clean.min())

    def ssim(image: np.ndarray) -> float:
        pairs = zip(image, clean, strict=True)
        return float(np.mean([structural_similarity(i, c, data_range=data_range) for i, c in pairs]))

    assert ssim(denoised) > ssim(nl_means) + 0.02
    kept = pipeline.run(series, algorithm=pipeline.algorithm_info({"blend": 0}))
    np.testing.assert_allclose(load_volume(kept.datasets).array[:, MARK_ROWS:],
                               load_volume(series).array[:, MARK_ROWS:], atol=0.5)


def test_refuses_other_modalities_results_and_bad_parameters(
    pipeline: DenoisePipeline, ct_case: tuple[SeriesInput, np.ndarray, np.ndarray, PipelineResult],
) -> None:
    series, _, _, result = ct_case
    pet = []
    for ds in series.datasets:
        other = copy.deepcopy(ds)
        other.Modality = "PT"
        pet.append(other)
    with pytest.raises(PipelineInputError, match="modality 'PT'"):
        pipeline.run(SeriesInput(pet), algorithm=pipeline.algorithm_info())
    with pytest.raises(PipelineInputError, match="made by dicomnode"):
        pipeline.run(SeriesInput(result.datasets), algorithm=pipeline.algorithm_info())
    with pytest.raises(PipelineInputError, match="unknown parameter"):
        pipeline.run(series, algorithm=pipeline.algorithm_info({"strength": 2}))
    with pytest.raises(PipelineInputError, match="blend"):
        pipeline.run(series, algorithm=pipeline.algorithm_info({"blend": 1.5}))


def test_refuses_weights_the_manifest_does_not_vouch_for(
    tmp_path: Path, ct_case: tuple[SeriesInput, np.ndarray, np.ndarray, PipelineResult],
) -> None:
    series = ct_case[0]
    stray = tmp_path / "denoise.pt"
    shutil.copyfile(WEIGHTS, stray)
    unlisted = DenoisePipeline(stray)
    with pytest.raises(WeightsError, match="not listed"):
        unlisted.run(series, algorithm=AlgorithmInfo(name="denoise", version="1.0.0"))
    (tmp_path / "manifest.json").write_text(json.dumps({"denoise.pt": {"sha256": "0" * 64}}))
    with pytest.raises(WeightsError, match="changed after it was vouched for"):
        DenoisePipeline(stray).run(series, algorithm=AlgorithmInfo(name="denoise", version="1.0.0"))
