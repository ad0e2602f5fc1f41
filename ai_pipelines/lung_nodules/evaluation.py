"""Evaluate the nodule UNet against the LoG blob detector on held-out synthetic chest CT.

Held-out scans: :func:`~ai_pipelines.synthetic.chest_nodules.chest_case` with seeds
``50_000_000 + 1000 * seed + n`` (training uses 1_000_000 + 100_000 * seed + n), LIDC-IDRI
texture proportions (no subsolid boost), 30% nodule-free. Both methods see the same HU
arrays (1.5 mm grid; the pipeline's DICOM decoding and writing are left out).

A candidate hits a nodule when its centre lies within max(radius, 3 mm) of the nodule's
centre; several hits on one nodule count once, a candidate that hits none is a false
positive. FROC: sensitivity at 1/8 ... 8 false positives per scan, and CPM, their mean
(the LUNA16 convention). Specificity: the share of nodule-free scans with no candidate at
or above the operating threshold. Both operating thresholds give 1 false positive per scan
on calibration scans apart from these: the UNet's is the one its weights carry (chosen with
their Platt calibration, see :mod:`~ai_pipelines.lung_nodules.calibration`), LoG's is
chosen here on seeds ``60_000_000 + 1000 * seed + n``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ai_pipelines.evaluate import MetricRow
from ai_pipelines.lung_nodules.baseline import log_blobs
from ai_pipelines.lung_nodules.calibration import Calibration, threshold_at_rate
from ai_pipelines.lung_nodules.detector import detect
from ai_pipelines.lung_nodules.pipeline import LungNodules
from ai_pipelines.nn.weights import REFERENCE_DIR, load_network
from ai_pipelines.synthetic.chest_nodules import ChestCase, chest_case

__all__ = ["FROC_RATES", "ScanResult", "evaluate", "froc", "match"]

TASK = "Lung nodule detection"
FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
CANDIDATE_THRESHOLD = 0.05


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One scan's candidates, judged: scores, which nodule each hits (-1: none), nodule count."""

    scores: np.ndarray
    hits: np.ndarray
    nodules: int


def match(case: ChestCase, centres: np.ndarray, scores: Sequence[float]) -> ScanResult:
    """Judge candidates (``(N, 3)`` voxel indices on the case's grid) against the case's nodules."""
    truth = case.centre_indices() * np.array(case.grid.spacing)
    radii = np.array([max(n.diameter_mm / 2, 3.0) for n in case.nodules])
    hits = np.full(len(scores), -1)
    for c, centre in enumerate(np.asarray(centres).reshape(-1, 3) * np.array(case.grid.spacing)):
        if len(truth):
            distance = np.linalg.norm(truth - centre, axis=1)
            inside = np.flatnonzero(distance <= radii)
            if inside.size:
                hits[c] = int(inside[np.argmin(distance[inside])])
    return ScanResult(np.asarray(scores, dtype=float), hits, len(case.nodules))


def froc(results: Sequence[ScanResult], rates: Sequence[float] = FROC_RATES) -> list[float]:
    """Best sensitivity reached with at most each rate of false positives per scan."""
    total = sum(r.nodules for r in results)
    events = []  # (score, scan, nodule or -1)
    for s, r in enumerate(results):
        events += [(float(score), s, int(hit)) for score, hit in zip(r.scores, r.hits, strict=True)]
    events.sort(key=lambda e: -e[0])
    found: set[tuple[int, int]] = set()
    false_positives, best = 0, {rate: 0.0 for rate in rates}
    for index, (score, scan, hit) in enumerate(events):
        if hit >= 0:
            found.add((scan, hit))
        else:
            false_positives += 1
        if index + 1 < len(events) and events[index + 1][0] == score:
            continue  # a threshold takes all candidates of equal score
        for rate in rates:
            if false_positives / len(results) <= rate:
                best[rate] = max(best[rate], len(found) / max(total, 1))
    return [best[rate] for rate in rates]


def _operating(results: Sequence[ScanResult], threshold: float) -> tuple[float, float, float]:
    """(sensitivity, FP per scan, specificity) at a score threshold."""
    total = sum(r.nodules for r in results)
    found = sum(len({int(h) for h, s in zip(r.hits, r.scores, strict=True) if h >= 0 and s >= threshold})
                for r in results)
    false_positives = sum(int(np.sum((r.hits < 0) & (r.scores >= threshold))) for r in results)
    free = [r for r in results if r.nodules == 0]
    clean = sum(1 for r in free if not np.any(r.scores >= threshold))
    return found / max(total, 1), false_positives / len(results), clean / len(free) if free else float("nan")


def _threshold_at_rate(results: Sequence[ScanResult], rate: float) -> float:
    """Lowest score threshold whose false positives per scan stay within ``rate``."""
    return threshold_at_rate(np.concatenate([r.scores[r.hits < 0] for r in results] + [np.zeros(0)]),
                             len(results), rate)


def _rows(method: str, results: Sequence[ScanResult], threshold: float, data: str, note: str) -> list[MetricRow]:
    sensitivities = froc(results)
    sensitivity, fp_rate, specificity = _operating(results, threshold)
    rows = [MetricRow(TASK, method, f"sensitivity @{rate:g} FP/scan", sensitivities[FROC_RATES.index(rate)], data)
            for rate in (1.0, 2.0, 4.0)]
    rows.append(MetricRow(TASK, method, "CPM (mean sens. @1/8-8 FP/scan)", float(np.mean(sensitivities)), data))
    rows.append(MetricRow(TASK, method, f"sensitivity @ operating threshold ({note})", sensitivity, data))
    rows.append(MetricRow(TASK, method, f"FP/scan @ operating threshold ({note})", fp_rate, data,
                          higher_is_better=False))
    rows.append(MetricRow(TASK, method, "specificity (nodule-free scans without detection)", specificity, data))
    return rows


def evaluate(*, cases: int, seed: int, log: Callable[[str], None]) -> list[MetricRow]:
    """UNet vs LoG on ``cases`` held-out synthetic scans (at least 8), plus published reference rows."""
    cases = max(int(cases), 8)
    weights = REFERENCE_DIR / f"{LungNodules.name}.pt"
    device = torch.device("cpu")
    loaded = load_network(weights, LungNodules.build_network, pipeline=LungNodules.name, device=device)
    network, heat_calibration = loaded.network, Calibration.from_meta(loaded.meta)
    ours: list[ScanResult] = []
    classical: list[ScanResult] = []
    calibration: list[ScanResult] = []
    started = time.monotonic()
    for n in range(cases):
        case = chest_case(50_000_000 + 1000 * seed + n)
        found = detect(network, case.values, case.grid.spacing, device=device, threshold=CANDIDATE_THRESHOLD,
                       calibration=heat_calibration)
        ours.append(match(case, found.centres, [d.probability for d in found.detections]))
        blobs = log_blobs(case.values, case.grid.spacing)
        classical.append(match(case, np.array([b.index for b in blobs]).reshape(-1, 3), [b.score for b in blobs]))
        log(f"lung_nodules: scan {n + 1}/{cases}, {len(case.nodules)} nodules, "
            f"{len(found.detections)} UNet / {len(blobs)} LoG candidates ({time.monotonic() - started:.0f} s)")
    for n in range(max(cases // 3, 4)):
        case = chest_case(60_000_000 + 1000 * seed + n)
        blobs = log_blobs(case.values, case.grid.spacing)
        calibration.append(match(case, np.array([b.index for b in blobs]).reshape(-1, 3), [b.score for b in blobs]))
    log_threshold = _threshold_at_rate(calibration, 1.0)
    free = sum(1 for r in ours if r.nodules == 0)
    nodules = sum(r.nodules for r in ours)
    data = (f"{cases} synthetic chest CT (1.5 mm; {nodules} nodules, LIDC-IDRI statistics; {free} nodule-free), "
            f"seed {seed}")
    operating = heat_calibration.operating_threshold
    chosen = (f"1 FP/scan on the weights' {heat_calibration.scans} calibration scans"
              if heat_calibration.threshold is not None else "no operating threshold in the weights: the fallback")
    rows = _rows("3D heat-map UNet (ours)", ours, operating, data, f"p >= {operating:.3f}, {chosen}")
    rows += _rows("LoG blobs in lung mask (classical)", classical, log_threshold, data,
                  f"score >= {log_threshold:.3f}, 1 FP/scan on {len(calibration)} calibration scans")
    seed_paper = "claimed by the seed paper; data not stated"
    luna = "LUNA16 (888 LIDC-IDRI CTs), MONAI model zoo lung_nodule_ct_detection RetinaNet"
    rows += [
        MetricRow(TASK, "seed paper AI", "sensitivity", 0.94, seed_paper, reference=True),
        MetricRow(TASK, "seed paper AI", "specificity", 0.90, seed_paper, reference=True),
        MetricRow(TASK, "seed paper traditional", "sensitivity", 0.85, seed_paper, reference=True),
        MetricRow(TASK, "seed paper traditional", "specificity", 0.78, seed_paper, reference=True),
        MetricRow(TASK, "MONAI RetinaNet", "sensitivity @1 FP/scan", 0.957, luna, reference=True),
        MetricRow(TASK, "MONAI RetinaNet", "CPM (mean sens. @1/8-8 FP/scan)", 0.936, luna, reference=True),
    ]
    log(f"lung_nodules: done in {time.monotonic() - started:.0f} s")
    return rows
