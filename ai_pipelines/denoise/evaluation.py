"""Denoising evaluation: PSNR and SSIM of the network vs the noisy input and classical filters.

Held-out pairs (:func:`~ai_pipelines.synthetic.noise_pairs.make_pairs` on the ``"test"``
split, which training never sees: head CT slab, abdomen CT slices 14-19, colin27 slab) with a
seed of the caller's choosing, per modality. Compared:

- the noisy input itself;
- Gaussian smoothing (sigma 1 pixel);
- bilateral filter (scikit-image; sigma_color twice the estimated noise, sigma_spatial 1.5 px);
- non-local means (scikit-image, fast mode, 5 x 5 patches, h = 0.8 x estimated noise);
- the reference network (``ai_pipelines/weights/denoise.pt``).

The noise of each noisy slice is estimated (for the classical filters only) by the median
absolute response to Immerkaer's Laplacian mask, which edges barely move.

Metrics: CT in HU clipped to [-1024, 3000] with a data range of 4024 HU (SynthRAD's
convention, as the synthetic CT evaluation uses), plus the RMSE in HU inside the body
(clean > -500 HU); MR in units of the volume's 99.5th percentile with a data range of 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import convolve, gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.restoration import denoise_bilateral, denoise_nl_means

from ai_pipelines.denoise.model import build_denoiser, denoise_slices, from_network, to_network
from ai_pipelines.evaluate import MetricRow
from ai_pipelines.nn.weights import REFERENCE_DIR, load_network
from ai_pipelines.synthetic.noise_pairs import CT_DOSE_RANGE, MR_NOISE_RANGE, NoisePair, make_pairs

__all__ = ["METHODS", "estimate_noise", "evaluate", "score"]

_CT_RANGE = (-1024.0, 3000.0)
_TASKS = {"CT": "Low-dose CT denoising", "MR": "MR denoising"}
_LAPLACIAN = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def estimate_noise(image: np.ndarray) -> float:
    """Gaussian noise sigma of a slice: median |Laplacian mask response| / (0.6745 * 6)."""
    response = convolve(image.astype(np.float64), _LAPLACIAN, mode="reflect")[1:-1, 1:-1]
    return float(np.median(np.abs(response)) / (0.6745 * 6.0))


def _gaussian(scaled: np.ndarray, _sigma: float) -> np.ndarray:
    return gaussian_filter(scaled, 1.0)


def _bilateral(scaled: np.ndarray, sigma: float) -> np.ndarray:
    low = float(scaled.min())  # denoise_bilateral wants non-negative images
    out = denoise_bilateral(scaled - low, sigma_color=max(2 * sigma, 1e-4), sigma_spatial=1.5)
    return np.asarray(out, dtype=np.float32) + low


def _nl_means(scaled: np.ndarray, sigma: float) -> np.ndarray:
    out = denoise_nl_means(scaled, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6)
    return np.asarray(out, dtype=np.float32)


#: Classical methods on network-scaled slices (HU / 1000 or normalised MR): name -> (image, sigma) -> image.
METHODS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "Gaussian filter (sigma 1 px)": _gaussian,
    "bilateral filter (scikit-image)": _bilateral,
    "non-local means (scikit-image)": _nl_means,
}


def score(output: np.ndarray, clean: np.ndarray, modality: str) -> dict[str, float]:
    """PSNR, SSIM (and for CT the body RMSE in HU) of one output slice against its clean slice."""
    if modality == "CT":
        out, ref = np.clip(output, *_CT_RANGE), np.clip(clean, *_CT_RANGE)
        data_range = _CT_RANGE[1] - _CT_RANGE[0]
    else:
        out, ref, data_range = output, clean, 1.0
    scores = {
        "PSNR (dB)": float(peak_signal_noise_ratio(ref, out, data_range=data_range)),
        "SSIM": float(structural_similarity(ref, out, data_range=data_range)),
    }
    if modality == "CT":
        body = clean > -500
        scores["RMSE body (HU)"] = float(np.sqrt(np.mean((output[body] - clean[body]) ** 2)))
    return scores


def _network(weights: Path) -> torch.nn.Module:
    return load_network(weights, build_denoiser, pipeline="denoise", device=torch.device("cpu")).network


def evaluate(
    *, cases: int, seed: int, log: Callable[[str], None], weights: Path | None = None,
) -> list[MetricRow]:
    """Score the reference network and the classical filters on held-out pairs, per modality.

    Parameters
    ----------
    cases : int
        Held-out slices per modality (capped at the split's 22 CT and 20 MR slices).
    seed : int
        Seeds the noise levels and noise of the held-out pairs (training used seed 0).
    log : Callable[[str], None]
        Progress messages.
    weights : Path or None, optional
        Checkpoint to evaluate (the committed reference weights by default).

    Returns
    -------
    list[MetricRow]
        Mean ± standard deviation over slices of every (method, metric) per modality.
    """
    network = _network(weights or REFERENCE_DIR / "denoise.pt")
    rows: list[MetricRow] = []
    for modality in ("CT", "MR"):
        started = time.monotonic()
        pairs = make_pairs("test", seed=seed, limit=max(1, cases), modalities=(modality,))
        log(f"denoise: {len(pairs)} held-out {modality} pairs")
        results: dict[str, list[dict[str, float]]] = {}
        for pair in pairs:
            for method, output in _outputs(network, pair).items():
                results.setdefault(method, []).append(score(output, pair.clean, modality))
        rows += _rows(results, modality, pairs, seed)
        log(f"denoise: {modality} scored in {time.monotonic() - started:.0f} s")
    return rows


def _outputs(network: torch.nn.Module, pair: NoisePair) -> dict[str, np.ndarray]:
    scaled, scale = (to_network(pair.noisy, "CT") if pair.modality == "CT" else (pair.noisy, 1.0))
    sigma = estimate_noise(scaled)
    outputs = {"noisy input": pair.noisy}
    for method, function in METHODS.items():
        outputs[method] = from_network(function(scaled, sigma), pair.modality, scale)
    ours = denoise_slices(network, scaled[None], pair.modality, device=torch.device("cpu"))[0]
    outputs["residual UNet + PatchGAN (ours)"] = from_network(ours, pair.modality, scale)
    return outputs


def _rows(results: dict[str, list[dict[str, float]]], modality: str, pairs: list[NoisePair],
          seed: int) -> list[MetricRow]:
    sources = sorted({p.source.split("[")[0] for p in pairs})
    if modality == "CT":
        noise = f"Poisson noise in the projection domain, I0 {CT_DOSE_RANGE[0]:.0e}-{CT_DOSE_RANGE[1]:.0e} photons"
    else:
        noise = f"undersampled k-space + Rician noise, sigma {MR_NOISE_RANGE[0]}-{MR_NOISE_RANGE[1]}"
    data = (f"{len(pairs)} held-out real {modality} slices ({', '.join(sources)}) with simulated noise "
            f"({noise}), seed {seed}")
    rows = []
    for method, scores in results.items():
        for metric in scores[0]:
            values = np.array([s[metric] for s in scores])
            rows.append(MetricRow(task=_TASKS[modality], method=method, metric=metric, value=float(values.mean()),
                                  data=data, spread=float(values.std()),
                                  higher_is_better=not metric.startswith("RMSE")))
    return rows
