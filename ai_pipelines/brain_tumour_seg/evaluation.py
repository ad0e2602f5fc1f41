"""Evaluation of brain_tumour_seg: our UNet vs thresholding + morphology, synthetic and one real patient.

- Held-out synthetic cases: :func:`~ai_pipelines.synthetic.brain_tumours.make_case` with seeds
  ``EVAL_SEED_BASE + seed * 1000 + i`` (training uses ``train_seed * 10000 + i`` with i < 10000,
  so the two never meet for training seeds below 100). WT is measured on the FLAIR image,
  TC and ET on the T1c image of the same case, each against the generator's labels.
- The real patient TCGA-DU-7294 (``../shared/data/brain``, TCGA-LGG, skull-stripped, 1 mm):
  WT on its FLAIR against labels {1, 2} of ``*_seg_fusion.nii.gz``, TC on its T1c against
  label 1. That label is a fusion of five BraTS-2020 algorithms, not a radiologist's ground
  truth, and it has no enhancing label: the numbers are agreement with those algorithms.
- Published figures (other data) as reference rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ai_pipelines.brain_tumour_seg import baseline, model
from ai_pipelines.brain_tumour_seg.nifti import read_nifti
from ai_pipelines.brain_tumour_seg.pipeline import BrainTumourSegmentation
from ai_pipelines.brain_tumour_seg.train import DEFAULT_OUT
from ai_pipelines.evaluate import MetricRow
from ai_pipelines.synthetic.anatomy import AnatomyUnavailable, shared_data_dir
from ai_pipelines.synthetic.brain_tumours import CONTRASTS, make_case, regions

__all__ = ["EVAL_SEED_BASE", "REAL_PATIENT", "evaluate"]

TASK = "Brain tumour segmentation"
EVAL_SEED_BASE = 5_000_000
REAL_PATIENT = "TCGA-DU-7294"
OURS = "UNet 3D (ours, synthetic-trained)"
BASELINE = "threshold + morphology"

_REFERENCES = (
    ("seed paper's AI model", "Dice", 0.89), ("seed paper's traditional method", "Dice", 0.75),
    ("MONAI zoo BraTS SegResNet", "Dice WT", 0.90), ("MONAI zoo BraTS SegResNet", "Dice TC", 0.86),
    ("MONAI zoo BraTS SegResNet", "Dice ET", 0.79),
)
_REFERENCE_DATA = {
    "seed paper's AI model": "the seed paper's own data (as claimed there)",
    "seed paper's traditional method": "the seed paper's own data (as claimed there)",
    "MONAI zoo BraTS SegResNet": "BraTS 2018 validation, 4 MR contrasts (MONAI model zoo card)",
}

Masks = dict[str, np.ndarray]
Method = Callable[[np.ndarray, tuple[float, float, float], str], Masks]


def _score(scores: dict[tuple[str, str], list[float]], method: str, predicted: Masks, truth: Masks,
           spacing: tuple[float, float, float]) -> None:
    for name, mask in truth.items():
        scores.setdefault((method, f"Dice {name}"), []).append(baseline.dice(predicted[name], mask))
        scores.setdefault((method, f"HD95 {name} (mm)"), []).append(baseline.hd95(predicted[name], mask, spacing))


def _rows(scores: dict[tuple[str, str], list[float]], data: str) -> list[MetricRow]:
    rows = []
    for (method, metric), values in scores.items():
        finite = [v for v in values if math.isfinite(v)]
        value = float(np.mean(finite)) if finite else float("nan")
        spread = float(np.std(finite)) if len(finite) > 1 else None
        note = data if len(finite) == len(values) else f"{data}; {len(values) - len(finite)} empty case(s) left out"
        rows.append(MetricRow(task=TASK, method=method, metric=metric, value=value, data=note, spread=spread,
                              higher_is_better=metric.startswith("Dice")))
    return rows


def _methods(pipeline: BrainTumourSegmentation) -> dict[str, Method]:
    return {OURS: lambda a, s, c: pipeline.segment(a, s, c), BASELINE: baseline.segment}


def evaluate_synthetic(pipeline: BrainTumourSegmentation, *, cases: int, seed: int,
                       log: Callable[[str], None]) -> list[MetricRow]:
    """Model and baseline on ``cases`` held-out synthetic cases (both contrasts of each)."""
    scores: dict[tuple[str, str], list[float]] = {}
    empty = 0
    for i in range(cases):
        case = make_case(EVAL_SEED_BASE + seed * 1000 + i, spacing=(model.WORK_SPACING,) * 3)
        empty += int(not case.labels.any())
        truth = dict(zip(model.REGION_NAMES, regions(case.labels), strict=True))
        for contrast in CONTRASTS:
            shown = {name: truth[name] for name in model.REGIONS_SHOWN[contrast]}
            for method, run in _methods(pipeline).items():
                _score(scores, method, run(case.images[contrast], case.spacing, contrast), shown, case.spacing)
        log(f"  synthetic case {i + 1}/{cases} ({case.template})")
    data = (f"{cases} held-out synthetic brain MR cases ({empty} without tumour), seeds "
            f"{EVAL_SEED_BASE + seed * 1000}+i; WT on FLAIR-like, TC/ET on T1c-like images")
    return _rows(scores, data)


def evaluate_real(pipeline: BrainTumourSegmentation, folder: Path, log: Callable[[str], None]) -> list[MetricRow]:
    """Model and baseline on the real patient (agreement with the fused BraTS-2020 label)."""
    label = read_nifti(folder / f"{REAL_PATIENT}_seg_fusion.nii.gz")
    fused = np.rint(label.values).astype(np.uint8)
    truth = {"flair": {"WT": fused > 0}, "t1c": {"TC": fused == 1}}
    scores: dict[tuple[str, str], list[float]] = {}
    for contrast, suffix in (("flair", "fla"), ("t1c", "t1c")):
        image = read_nifti(folder / f"{REAL_PATIENT}_{suffix}_bet.nii.gz")
        for method, run in _methods(pipeline).items():
            predicted = run(image.values, image.spacing, contrast)
            _score(scores, method, predicted, truth[contrast], image.spacing)
        log(f"  real patient {REAL_PATIENT}: {contrast} done")
    data = (f"real patient {REAL_PATIENT} (TCGA-LGG; WT from FLAIR, TC from T1c): agreement with the fusion "
            "of five BraTS-2020 algorithms, not ground truth")
    return [MetricRow(task=f"{TASK}, real patient", method=r.method, metric=r.metric, value=r.value, data=r.data,
                      higher_is_better=r.higher_is_better) for r in _rows(scores, data)]


def evaluate(*, cases: int, seed: int, log: Callable[[str], None]) -> list[MetricRow]:
    """Rows for the evaluation table (see the module docstring).

    Parameters
    ----------
    cases : int
        Held-out synthetic cases (at least 1).
    seed : int
        Seed of the held-out set.
    log : Callable[[str], None]
        Progress messages.

    Returns
    -------
    list[MetricRow]
        Synthetic rows, real-patient rows (when ``../shared/data`` has the patient) and references.
    """
    pipeline = BrainTumourSegmentation(DEFAULT_OUT)
    rows = evaluate_synthetic(pipeline, cases=max(int(cases), 1), seed=seed, log=log)
    try:
        folder = shared_data_dir() / "brain" / REAL_PATIENT
    except AnatomyUnavailable:
        folder = None
    if folder is not None and folder.is_dir():
        rows += evaluate_real(pipeline, folder, log)
    else:
        log(f"  real patient {REAL_PATIENT} not found under ../shared/data/brain; its rows are left out")
    rows += [MetricRow(task=TASK, method=method, metric=metric, value=value, data=_REFERENCE_DATA[method],
                       reference=True) for method, metric, value in _REFERENCES]
    return rows
