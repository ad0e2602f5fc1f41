"""Train the lung nodule heat-map UNet on synthetic chest CT and save verified reference weights.

``python -m ai_pipelines.lung_nodules.train [--steps N] [--seed S] [--threads T] [--out PATH]``

Data: a pool of :func:`~ai_pipelines.synthetic.chest_nodules.chest_case` volumes (1.5 mm,
nodules drawn from LIDC-IDRI statistics, part-solid and ground-glass nodules three times as
often as in LIDC, 30% nodule-free scans); one pool case is replaced by a fresh one every
few steps, so a run sees about ``steps / refresh`` different scans. Each step trains on
patches, two thirds of them around a nodule. Case seeds are ``1_000_000 + 100_000 * seed + n``;
evaluation draws from another range. Loss: CenterNet focal loss on the heat map plus
binary cross-entropy and Dice on the segmentation. After training, the heat map is
calibrated (Platt scaling) on ``--calibration-scans`` separate scans, which also choose the
operating threshold (``--fp-per-scan`` false positives per scan, default 1); see
:mod:`~ai_pipelines.lung_nodules.calibration`. ``--calibrate-only`` fits that calibration
for the checkpoint at ``--out`` (yours, or the reference one) without training.

Tried and dropped (CPM on the 20 held-out evaluation scans, reference recipe 0.373): 4500
steps with a texture variation (smoother kernel / more noise) on a quarter of the patches
gave 0.345 and a segmentation head that no longer reached 0.5 inside 12 mm solid nodules;
the same variation on half of them, 2600 steps, gave 0.222.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ai_pipelines.lung_nodules.calibration import OPERATING_FP_PER_SCAN, fit_calibration
from ai_pipelines.lung_nodules.model import (
    NETWORK_KWARGS,
    ROI,
    SPACING,
    blob_sigma,
    build_network,
    heat_target,
    normalise,
)
from ai_pipelines.nn.training import TrainingProgress, seed_everything, set_threads
from ai_pipelines.nn.weights import REFERENCE_DIR, load_network, record_in_manifest, save_checkpoint
from ai_pipelines.synthetic.chest_nodules import ChestCase, chest_case

__all__ = ["PATCH", "calibrate", "focal_loss", "main", "sample_patch", "train"]

PIPELINE = "lung_nodules"
PATCH = ROI  # train on the windows inference uses
POOL, REFRESH, BATCH = 12, 4, 2
DEFAULT_STEPS = 1800
DEFAULT_CALIBRATION_SCANS = 48


def training_case(seed: int, number: int) -> ChestCase:
    """Case ``number`` of the training run with ``seed`` (seeds 1_000_000 + 100_000 * seed + n)."""
    return chest_case(1_000_000 + 100_000 * seed + number, spacing=SPACING, subsolid_boost=3.0)


def sample_patch(case: ChestCase, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input, heat target, segmentation target) of one :data:`PATCH` from ``case``."""
    shape = np.array(case.values.shape)
    size = np.array(PATCH)
    centres = case.centre_indices()
    if len(centres) and rng.random() < 2 / 3:
        middle = centres[int(rng.integers(len(centres)))] + rng.uniform(-0.35, 0.35, 3) * size
    else:
        lung = np.argwhere(case.lung[:, ::4, ::4]) * [1, 4, 4]
        middle = lung[int(rng.integers(len(lung)))].astype(float)
    low = np.clip(np.round(middle - size / 2).astype(int), 0, np.maximum(shape - size, 0))
    box = tuple(slice(lo, lo + s) for lo, s in zip(low, size, strict=True))
    image = normalise(case.values[box])
    sigmas = [blob_sigma(n.diameter_mm) for n in case.nodules]
    heat = heat_target(image.shape, centres - low, sigmas) if len(centres) else np.zeros(image.shape, np.float32)
    seg = (case.labels[box] > 0).astype(np.float32)
    if rng.random() < 0.5:  # left-right mirror: the lungs are near-symmetric
        image, heat, seg = image[..., ::-1], heat[..., ::-1], seg[..., ::-1]
    return (np.ascontiguousarray(image), np.ascontiguousarray(heat), np.ascontiguousarray(seg))


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on Gaussian heat-map targets (alpha 2, beta 4)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.ge(0.999).float()
    pos = -torch.log(p) * (1 - p) ** 2 * positive
    neg = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - positive)
    return (pos.sum() + neg.sum()) / positive.sum().clamp(min=1.0)


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice over the batch."""
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + dice


def train(*, steps: int, seed: int, threads: int | None, out: Path, quiet: bool = False,
          calibration_scans: int = DEFAULT_CALIBRATION_SCANS,
          fp_per_scan: float = OPERATING_FP_PER_SCAN) -> dict[str, object]:
    """Train and save the checkpoint (see the module docstring); return its metadata.

    Parameters
    ----------
    steps : int
        Optimiser steps (batches of two patches).
    seed : int
        Seeds the data, the initial weights and the patch draws.
    threads : int or None
        torch threads (None: all cores).
    out : Path
        Checkpoint path; listed in the ``manifest.json`` beside it.
    quiet : bool, optional
        Hide the progress bar.
    calibration_scans : int, optional
        Scans for the Platt calibration of the heat map (0: none; a smoke run that finds no
        nodule cannot be calibrated and is saved without).
    fp_per_scan : float, optional
        False positives per calibration scan the operating threshold allows.
    """
    rng = seed_everything(seed)
    threads = set_threads(threads)
    network = build_network({})  # its heat channel starts at p = 0.01 (model.HEAT_PRIOR_LOGIT)
    optimiser = torch.optim.AdamW(network.parameters(), lr=2e-3, weight_decay=1e-4)
    # total_steps >= 20 keeps both one-cycle phases non-empty (a smoke run of 10 steps divided by zero)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=max(steps, 20), pct_start=0.1)
    started = time.monotonic()
    pool = [training_case(seed, n) for n in range(min(POOL, max(steps // REFRESH, 1)))]
    made = len(pool)
    recent: list[float] = []
    network.train()
    with TrainingProgress(PIPELINE, total=steps, disable=quiet) as progress:
        for step in progress.steps():
            if step and step % REFRESH == 0:
                pool[made % len(pool)] = training_case(seed, made)
                made += 1
            patches = [sample_patch(pool[int(rng.integers(len(pool)))], rng) for _ in range(BATCH)]
            image, heat, seg = (torch.from_numpy(np.stack([p[i] for p in patches]))[:, None] for i in range(3))
            output = network(image)
            loss = focal_loss(output[:, :1], heat) + seg_loss(output[:, 1:], seg)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            recent = (recent + [loss.item()])[-50:]
            progress.status(f"loss {np.mean(recent):.3f}")
    seconds = time.monotonic() - started
    meta: dict[str, object] = {
        "seed": seed, "steps": steps, "threads": threads, "batch": BATCH, "patch": list(PATCH),
        "scans_seen": made, "final_loss": round(float(np.mean(recent)), 4), "train_seconds": round(seconds, 1),
        "data": ("synthetic chest CT (ai_pipelines.synthetic.chest_nodules, 1.5 mm, LIDC-IDRI size/texture/shape "
                 f"statistics, subsolid x3, 30% nodule-free), case seeds 1000000+100000*{seed}+n"),
        "command": "python -m ai_pipelines.lung_nodules.train " + shlex.join(sys.argv[1:]),
    }
    save_checkpoint(out, network, pipeline=PIPELINE, network_kwargs=NETWORK_KWARGS, meta=meta)
    record_in_manifest(out, pipeline=PIPELINE, **meta)
    if calibration_scans > 0:
        meta = calibrate(out, scans=calibration_scans, seed=seed, fp_per_scan=fp_per_scan, quiet=quiet) or meta
    return meta


def calibrate(out: Path, *, scans: int, seed: int, fp_per_scan: float = OPERATING_FP_PER_SCAN,
              quiet: bool = False) -> dict[str, object] | None:
    """Fit the heat-map calibration and operating threshold for the checkpoint at ``out`` and save it there.

    Returns the checkpoint's new metadata, or None (and a message on stderr) when the
    network found no nodule to fit on (a smoke run); the checkpoint is then left as it was.
    """
    loaded = load_network(out, build_network, pipeline=PIPELINE, device=torch.device("cpu"), verify=False)
    with TrainingProgress(f"{PIPELINE} calibration", total=scans, disable=quiet) as progress:
        try:
            calibration = fit_calibration(loaded.network, scans=scans, seed=seed, device=torch.device("cpu"),
                                          fp_per_scan=fp_per_scan, progress=progress.advance_to)
        except ValueError as exc:
            print(f"{out}: saved without calibration: {exc}", file=sys.stderr)
            return None
    command = "python -m ai_pipelines.lung_nodules.train " + shlex.join(sys.argv[1:])
    meta = {**loaded.meta, "calibration": {**calibration.as_meta(), "seed": seed, "command": command}}
    save_checkpoint(out, loaded.network, pipeline=PIPELINE, network_kwargs=NETWORK_KWARGS, meta=meta)
    record_in_manifest(out, pipeline=PIPELINE, **meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m ai_pipelines.lung_nodules.train", description=__doc__)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR / f"{PIPELINE}.pt")
    parser.add_argument("--calibration-scans", type=int, default=DEFAULT_CALIBRATION_SCANS,
                        help="synthetic scans for the heat-map calibration after training (0: none)")
    parser.add_argument("--fp-per-scan", type=float, default=OPERATING_FP_PER_SCAN,
                        help="false positives per calibration scan the operating threshold allows")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="fit the calibration for the checkpoint at --out without training")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.calibrate_only:
        set_threads(args.threads)
        meta = calibrate(args.out, scans=args.calibration_scans, seed=args.seed, fp_per_scan=args.fp_per_scan,
                         quiet=args.quiet)
        if meta is None:
            return 1
        print(f"calibrated {args.out}: {meta['calibration']}")
        return 0
    meta = train(steps=args.steps, seed=args.seed, threads=args.threads, out=args.out, quiet=args.quiet,
                 calibration_scans=args.calibration_scans, fp_per_scan=args.fp_per_scan)
    print(f"saved {args.out}: final loss {meta['final_loss']}, {meta['train_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
