"""synth_ct evaluation metrics: SynthRAD-style MAE, PSNR and SSIM inside the body mask."""

from __future__ import annotations

import numpy as np

from ai_pipelines.synth_ct.evaluation import case_metrics


def _volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = np.full((2, 32, 32), -1024.0, dtype=np.float32)
    truth[:, 4:28, 4:28] = rng.normal(40.0, 20.0, (2, 24, 24))
    truth[:, 8:12, 8:24] = 1200.0  # bone
    return truth, truth > -500


def test_perfect_prediction() -> None:
    truth, body = _volume()
    metrics = case_metrics(truth, truth.copy(), body)
    assert metrics["mae_body"] == 0.0 and metrics["mae_bone"] == 0.0
    assert metrics["ssim"] > 0.999 and metrics["psnr"] > 100


def test_offset_and_outside_the_mask() -> None:
    truth, body = _volume()
    predicted = truth + 50.0
    predicted[~body] = 500.0  # errors outside the body do not count
    metrics = case_metrics(truth, predicted, body)
    assert abs(metrics["mae_body"] - 50.0) < 1e-3 and abs(metrics["mae_bone"] - 50.0) < 1e-3
    assert abs(metrics["psnr"] - 10 * np.log10(4024**2 / 50**2)) < 1e-3
    assert metrics["ssim"] < 1.0


def test_values_outside_the_synthrad_range_are_clipped() -> None:
    truth, body = _volume()
    predicted = truth.copy()
    predicted[:, 8:12, 8:24] = 9000.0  # clipped to 3000: error 1800 on bone
    metrics = case_metrics(truth, predicted, body)
    assert abs(metrics["mae_bone"] - 1800.0) < 1e-3
    no_bone = case_metrics(np.minimum(truth, 100.0), np.minimum(truth, 100.0), body)
    assert np.isnan(no_bone["mae_bone"])
