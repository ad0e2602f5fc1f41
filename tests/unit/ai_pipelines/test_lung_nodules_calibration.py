"""lung_nodules calibration: Platt fit recovers known parameters, refuses what cannot be fitted, is applied."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ai_pipelines.lung_nodules.calibration import FALLBACK_THRESHOLD, Calibration, fit_platt, threshold_at_rate
from ai_pipelines.lung_nodules.detector import predict
from ai_pipelines.lung_nodules.model import build_network


def test_fit_platt_recovers_the_parameters_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(-2.0, 1.5, 20_000)
    hits = rng.random(logits.size) < 1 / (1 + np.exp(-(2.5 * logits + 3.0)))
    slope, intercept = fit_platt(logits, hits)
    assert slope == pytest.approx(2.5, rel=0.08) and intercept == pytest.approx(3.0, rel=0.08)


def test_fit_platt_stays_finite_on_separable_data() -> None:
    slope, intercept = fit_platt([-3.0, -2.0, -1.0, 1.0, 2.0], [False, False, False, True, True])
    assert 0 < slope < 50 and np.isfinite(intercept)


@pytest.mark.parametrize(("logits", "hits", "message"), [
    ([0.0, 1.0], [False, False], "0 hits"),
    ([0.0, 1.0], [True, True], "0 misses"),
    ([-2.0, -1.0, 1.0, 2.0], [True, True, False, False], "does not rank"),
])
def test_fit_platt_refuses_what_it_cannot_fit(logits: list[float], hits: list[bool], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_platt(logits, hits)


def test_calibration_from_meta_and_back() -> None:
    assert Calibration.from_meta({}) == Calibration()
    calibration = Calibration(2.0, 1.5, scans=16, candidates=800, hits=30, threshold=0.2, fp_per_scan=0.9375,
                              sensitivity=0.4)
    assert Calibration.from_meta({"calibration": calibration.as_meta()}) == calibration
    # a checkpoint calibrated before operating thresholds existed keeps the fallback
    older = Calibration.from_meta({"calibration": {"slope": 2.0, "intercept": 1.5}})
    assert older.threshold is None and older.operating_threshold == FALLBACK_THRESHOLD
    assert calibration.operating_threshold == 0.2
    with pytest.raises(ValueError, match="threshold"):
        Calibration(2.0, 1.5, threshold=0.01)
    with pytest.raises(ValueError, match="slope"):
        Calibration(-1.0, 0.0)


def test_predict_applies_the_calibration_to_the_heat_logits() -> None:
    torch.manual_seed(0)
    network = build_network({}).eval()
    image = np.random.default_rng(1).random((20, 40, 40), dtype=np.float32)  # thinner than a window
    raw_heat, raw_seg = predict(network, image, torch.device("cpu"), calibration=Calibration())
    heat, seg = predict(network, image, torch.device("cpu"), calibration=Calibration(2.0, 1.0))
    raw_logit = np.log(raw_heat / (1 - raw_heat))
    expected = 1 / (1 + np.exp(-(2.0 * raw_logit + 1.0)))
    assert heat.shape == image.shape and np.allclose(heat, expected, atol=1e-4)
    assert np.array_equal(seg, raw_seg)  # the segmentation is left alone


def test_threshold_at_rate_allows_that_many_false_positives_per_scan() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    # 2 scans at 1 FP/scan: two false positives allowed, the third (0.7) must fall below
    threshold = threshold_at_rate(scores, scans=2, rate=1.0)
    assert 0.7 < threshold < 0.8
    assert sum(s >= threshold for s in scores) == 2
    assert threshold_at_rate(scores, scans=2, rate=0.0) > 0.9
    assert threshold_at_rate(scores, scans=10, rate=1.0) == 0.0  # never more than allowed
