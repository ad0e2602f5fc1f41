"""Evaluate synth_ct against bulk density on MR-like volumes derived from held-out real CT.

Each case is one held-out real CT slab (head slices 44-63 or abdomen slices 14-19, alternating;
:func:`~ai_pipelines.synthetic.mr_from_ct.heldout_ct`) with a fresh MR-like image derived from
it (T1-like and T2-like alternating, seeded by ``seed + case``). Both methods get the MR only.
Metrics follow SynthRAD's conventions: CT and prediction clipped to [-1024, 3000] HU, computed
inside the body mask of the real CT; MAE (HU) in the body and in bone (real CT >= 250 HU);
PSNR with a data range of 4024 HU from the masked MSE; SSIM (data range 4024, images shifted by
+1024 and set to 0 outside the mask) averaged over the mask, per axial slice (the abdomen slab
is thinner than SSIM's 7-voxel window). The MR side is derived from CT: these figures measure
how well the model inverts our tissue lookup, not accuracy on real MR.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from skimage.metrics import structural_similarity

from ai_pipelines.evaluate import MetricRow
from ai_pipelines.nn.device import torch_device
from ai_pipelines.nn.weights import REFERENCE_DIR, load_network
from ai_pipelines.synth_ct.baseline import bulk_density
from ai_pipelines.synth_ct.inference import synthesise
from ai_pipelines.synth_ct.model import build_generator
from ai_pipelines.synthetic.mr_from_ct import CONTRASTS, HU_RANGE, body_mask_ct, ct_target, heldout_ct, mr_from_ct

__all__ = ["BONE_HU_MIN", "TASK", "case_metrics", "evaluate"]

TASK = "MR to synthetic CT"
BONE_HU_MIN = 250.0
_RANGE = HU_RANGE[1] - HU_RANGE[0]


def case_metrics(truth: np.ndarray, predicted: np.ndarray, body: np.ndarray) -> dict[str, float]:
    """MAE body and bone (HU), PSNR (dB) and SSIM of one volume, SynthRAD-style (module docstring).

    Parameters
    ----------
    truth, predicted : numpy.ndarray
        ``(z, y, x)`` HU on the same grid.
    body : numpy.ndarray
        Boolean body mask of the real CT.

    Returns
    -------
    dict[str, float]
        ``mae_body``, ``mae_bone`` (NaN without bone), ``psnr``, ``ssim``.
    """
    truth = np.clip(truth, *HU_RANGE)
    predicted = np.clip(predicted, *HU_RANGE)
    error = np.abs(truth - predicted)
    bone = body & (truth >= BONE_HU_MIN)
    mse = float(np.mean(error[body] ** 2))
    shifted = [np.where(body, image - HU_RANGE[0], 0.0) for image in (truth, predicted)]
    ssim_values = []
    for k in range(truth.shape[0]):
        if body[k].any():
            _, ssim_map = structural_similarity(shifted[0][k], shifted[1][k], data_range=_RANGE, full=True)
            ssim_values.append(ssim_map[body[k]])
    return {
        "mae_body": float(error[body].mean()),
        "mae_bone": float(error[bone].mean()) if bone.any() else float("nan"),
        "psnr": float(10 * np.log10(_RANGE**2 / max(mse, 1e-12))),
        "ssim": float(np.concatenate(ssim_values).mean()),
    }


_METRICS = (("mae_body", "MAE body (HU)", False), ("mae_bone", "MAE bone (HU)", False),
            ("psnr", "PSNR (dB)", True), ("ssim", "SSIM", True))


def evaluate(*, cases: int, seed: int, log: Callable[[str], None]) -> list[MetricRow]:
    """Our generator (reference weights) vs bulk density on held-out derived-MR cases, plus reference rows.

    Parameters
    ----------
    cases : int
        Number of MR-like volumes (at least 4, so that both regions and both contrasts appear).
    seed : int
        Seed of the first case (training draws its MR from seed 0's stream; use another).
    log : Callable[[str], None]
        Progress messages.

    Returns
    -------
    list[MetricRow]
        Mean ± standard deviation over cases for both methods, then the published rows.
    """
    cases = max(cases, 4)
    device = torch_device("cpu")
    network = load_network(REFERENCE_DIR / "synth_ct.pt", build_generator, pipeline="synth_ct", device=device).network
    pieces = heldout_ct()
    bodies = [body_mask_ct(piece.values) for piece in pieces]
    scores: dict[str, list[dict[str, float]]] = {"ours": [], "baseline": []}
    for case in range(cases):
        piece, body = pieces[case % 2], bodies[case % 2]
        contrast = CONTRASTS["T1" if (case // 2) % 2 == 0 else "T2"]
        mr = mr_from_ct(piece.values, piece.spacing, rng=np.random.default_rng(seed + case), contrast=contrast,
                        body=body)
        truth = ct_target(piece.values, body)
        ours, _ = synthesise(network, mr, piece.spacing[1:], device)
        baseline, _ = bulk_density(mr)
        scores["ours"].append(case_metrics(truth, ours, body))
        scores["baseline"].append(case_metrics(truth, baseline, body))
        mae = [scores[key][-1]["mae_body"] for key in ("ours", "baseline")]
        log(f"synth_ct case {case + 1}/{cases} ({contrast.name}, {piece.source}): "
            f"MAE ours {mae[0]:.1f} HU, bulk density {mae[1]:.1f} HU")
    data = (f"{cases} MR-like volumes (T1/T2-like) derived from held-out real CT: head slices 44-63 and abdomen "
            f"slices 14-19, seeds {seed}-{seed + cases - 1}; the MR side is derived from CT, not acquired")
    methods = {"ours": "pix2pix UNet + PatchGAN (ours)", "baseline": "bulk density (air/soft tissue/bone)"}
    rows = []
    for key, method in methods.items():
        for metric, label, higher in _METRICS:
            values = np.array([s[metric] for s in scores[key]])
            values = values[np.isfinite(values)]
            rows.append(MetricRow(TASK, method, label, float(values.mean()) if values.size else float("nan"),
                                  data, spread=float(values.std()) if values.size > 1 else None,
                                  higher_is_better=higher))
    rows += [
        MetricRow(TASK, "seed paper cGAN", "SSIM", 0.94, "the seed's own data (other data)", reference=True),
        MetricRow(TASK, "SynthRAD2025 best MR-to-CT entry", "MAE body (HU)", 64.8,
                  "SynthRAD2025 test set (real paired MR/CT; other data)", reference=True, spread=21.3,
                  higher_is_better=False),
        MetricRow(TASK, "SynthRAD2025 best MR-to-CT entry", "MS-SSIM", 0.936,
                  "SynthRAD2025 test set (real paired MR/CT; other data); MS-SSIM, not SSIM", reference=True),
    ]
    return rows
