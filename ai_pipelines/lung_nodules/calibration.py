"""Platt scaling of the heat map: raw peak values -> probabilities a threshold of 0.5 can mean.

The focal loss trains the heat map to rank nodule centres above everything else, not to be
a probability: the reference weights peak at 0.2-0.4 on nodules they find. After training,
:func:`fit_calibration` runs the network over calibration scans (seeds
``70_000_000 + 1000 * seed + n``, apart from training and evaluation), judges every peak as
the evaluation does (a hit lies within max(radius, 3 mm) of a nodule centre) and fits a
logistic regression ``P(hit) = sigmoid(slope * logit + intercept)`` on the heat logits
(Platt 1999, "Probabilistic outputs for support vector machines"). The pair lives in the
checkpoint's metadata; :func:`~ai_pipelines.lung_nodules.detector.predict` applies it to the
logits, so peaks, the threshold and the reported probability all use calibrated values. A
checkpoint without it (one a user brings) is used as it is (slope 1, intercept 0).

The same scans choose the operating threshold: the lowest calibrated probability at which
they show at most ``fp_per_scan`` false positives per scan (1 by default, the LUNA16
headline operating point; the LoG baseline's threshold is chosen the same way). A Platt
fit on a detector that finds a nodule in only a few of its 50 candidates per scan rarely
gives 0.5, so a fixed 0.5 reported almost nothing (sensitivity 0.056 on the held-out set).
The pipeline uses this threshold unless a rule sets ``threshold``; it is 0.5 for a
checkpoint that has none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit

__all__ = [
    "CALIBRATION_SEEDS", "FALLBACK_THRESHOLD", "OPERATING_FP_PER_SCAN", "THRESHOLD_RANGE", "Calibration",
    "fit_calibration", "fit_platt", "threshold_at_rate",
]

CALIBRATION_SEEDS = 70_000_000
#: Peaks below this raw heat value are left out of the fit (the background floor).
CANDIDATE_FLOOR = 0.01
#: False positives per calibration scan the operating threshold allows.
OPERATING_FP_PER_SCAN = 1.0
#: The operating threshold of a checkpoint calibrated without one (or not at all).
FALLBACK_THRESHOLD = 0.5
#: The range a rule's ``threshold`` may take; an operating threshold is kept inside it.
THRESHOLD_RANGE = (0.05, 0.99)


@dataclass(frozen=True, slots=True)
class Calibration:
    """``probability = sigmoid(slope * logit + intercept)``; the identity by default.

    Parameters
    ----------
    slope, intercept : float
        The Platt parameters (slope > 0 keeps the ranking).
    scans, candidates, hits : int
        What the fit saw (for the record).
    threshold : float or None
        Operating threshold (a calibrated probability) chosen on the same scans; None: none chosen.
    fp_per_scan, sensitivity : float or None
        False positives per scan and nodule sensitivity at ``threshold`` on those scans (for the record).
    """

    slope: float = 1.0
    intercept: float = 0.0
    scans: int = 0
    candidates: int = 0
    hits: int = 0
    threshold: float | None = None
    fp_per_scan: float | None = None
    sensitivity: float | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.slope) and self.slope > 0 and np.isfinite(self.intercept)):
            raise ValueError(f"calibration slope={self.slope!r}, intercept={self.intercept!r}: "
                             "expected a finite slope > 0 and a finite intercept")
        low, high = THRESHOLD_RANGE
        if self.threshold is not None and not low <= self.threshold <= high:
            raise ValueError(f"calibration threshold={self.threshold!r}: expected {low:g}-{high:g}")

    @property
    def operating_threshold(self) -> float:
        """The threshold the pipeline uses when a rule sets none."""
        return FALLBACK_THRESHOLD if self.threshold is None else self.threshold

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Calibration:
        """From a checkpoint's metadata (``meta["calibration"]``); the identity when absent."""
        record = meta.get("calibration")
        if not record:
            return cls()
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    def logits(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated logits of raw heat-map logits."""
        return self.slope * raw + self.intercept

    def as_meta(self) -> dict[str, float | int | None]:
        """The record kept in the checkpoint's metadata."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def fit_platt(logits: Sequence[float], hits: Sequence[bool]) -> tuple[float, float]:
    """Maximum-likelihood (slope, intercept) of ``P(hit) = sigmoid(slope * logit + intercept)``.

    Uses Platt's smoothed targets ((N+ + 1) / (N+ + 2) and 1 / (N- + 2)) so that a perfectly
    separable set still gives a finite fit.

    Raises
    ------
    ValueError
        Without at least one hit and one miss, or when the fit does not keep the ranking.
    """
    x = np.asarray(logits, dtype=float)
    y = np.asarray(hits, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"calibration needs hits and misses; got {positives} hits, {negatives} misses")
    target = np.where(y, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = params[0] * x + params[1]
        # log(1 + e^z) - t z, written so that large |z| stays finite
        value = np.logaddexp(0.0, z) - target * z
        residual = 1.0 / (1.0 + np.exp(-z)) - target
        return float(value.sum()), np.array([(residual * x).sum(), residual.sum()])

    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    slope, intercept = (float(v) for v in result.x)
    if not slope > 0:
        raise ValueError(f"calibration fit gave slope {slope:.3g}: the heat map does not rank hits above misses")
    return slope, intercept


def threshold_at_rate(false_positive_scores: Sequence[float], scans: int, rate: float) -> float:
    """Lowest score threshold that keeps the false positives of ``scans`` scans within ``rate`` per scan.

    ``false_positive_scores`` are the scores of every candidate that hit no nodule. The
    threshold lies just above the first score that would exceed the allowance (0 when the
    allowance is never exceeded).
    """
    ordered = np.sort(np.asarray(false_positive_scores, dtype=float))[::-1]
    allowed = int(np.floor(rate * scans))
    return float(ordered[allowed] + 1e-9) if allowed < len(ordered) else 0.0


def fit_calibration(network: torch.nn.Module, *, scans: int, seed: int, device: torch.device,
                    fp_per_scan: float = OPERATING_FP_PER_SCAN,
                    progress: Callable[[int], None] | None = None) -> Calibration:
    """Fit :class:`Calibration` for ``network`` on ``scans`` synthetic calibration scans (see module docstring).

    The operating threshold allows ``fp_per_scan`` false positives per scan on those scans.
    """
    # imported here: the detector and the evaluation import this module for Calibration
    from ai_pipelines.lung_nodules.detector import detect
    from ai_pipelines.lung_nodules.evaluation import match
    from ai_pipelines.synthetic.chest_nodules import chest_case

    logits: list[float] = []
    hits: list[bool] = []
    nodules: list[int] = []  # per candidate: the nodule it hits (scan-unique), -1 for none
    total = 0
    for n in range(scans):
        case = chest_case(CALIBRATION_SEEDS + 1000 * seed + n)
        found = detect(network, case.values, case.grid.spacing, device=device, threshold=CANDIDATE_FLOOR,
                       calibration=Calibration())
        raw = np.clip([d.probability for d in found.detections], 1e-6, 1 - 1e-6)
        judged = match(case, found.centres, raw)
        logits += list(np.log(raw / (1 - raw)))
        hits += [bool(h >= 0) for h in judged.hits]
        nodules += [total + int(h) if h >= 0 else -1 for h in judged.hits]
        total += judged.nodules
        if progress is not None:
            progress(n + 1)
    fitted = Calibration(*fit_platt(logits, hits), scans=scans, candidates=len(hits), hits=int(sum(hits)))
    probability = expit(fitted.logits(np.asarray(logits)))
    hit = np.asarray(hits, dtype=bool)
    low, high = THRESHOLD_RANGE
    threshold = float(np.clip(threshold_at_rate(probability[~hit], scans, fp_per_scan), low, high))
    kept = probability >= threshold
    found_nodules = {k for k, keep in zip(nodules, kept, strict=True) if keep and k >= 0}
    return replace(fitted, threshold=round(threshold, 6), fp_per_scan=round(float((kept & ~hit).sum()) / scans, 4),
                   sensitivity=round(len(found_nodules) / max(total, 1), 4))
