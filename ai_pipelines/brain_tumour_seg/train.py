"""Train the brain tumour UNet on synthetic FLAIR/T1c cases built on real anatomy; save the reference weights.

    python -m ai_pipelines.brain_tumour_seg.train [--steps N] [--seed S] [--threads T] [--out PATH]

A pool of ``--cases`` cases (:func:`~ai_pipelines.synthetic.brain_tumours.make_case`, seeds
``seed * 10000 + i``, 2 mm grid) is made first; each step then draws ``--batch`` random
patches (most centred on a tumour), one contrast per patch, flips left-right at random and
jitters the intensity. The loss is soft Dice + binary cross-entropy on the output channels the
patch's contrast shows (FLAIR: WT; T1c: TC and ET). Adam with a cosine learning-rate decay.
Same seed, same threads, same machine: same weights.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ai_pipelines.brain_tumour_seg import model
from ai_pipelines.nn.training import TrainingProgress, seed_everything, set_threads
from ai_pipelines.nn.weights import REFERENCE_DIR, record_in_manifest, save_checkpoint
from ai_pipelines.synthetic.brain_tumours import CONTRASTS, make_case, regions

__all__ = ["DEFAULT_OUT", "build_pool", "channel_weights", "loss_fn", "main"]

PIPELINE = "brain_tumour_seg"
DEFAULT_OUT = REFERENCE_DIR / f"{PIPELINE}.pt"
#: Training case seeds are ``seed * CASE_SEED_STRIDE + i``; evaluation keeps clear of them.
CASE_SEED_STRIDE = 10_000


def channel_weights(contrast: str) -> np.ndarray:
    """1 for the output channels ``contrast`` shows (trained), 0 for the others."""
    shown = model.REGIONS_SHOWN[contrast]
    return np.array([1.0 if name in shown else 0.0 for name in model.REGION_NAMES], dtype=np.float32)


def build_pool(count: int, seed: int) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Make ``count`` cases: per case the normalised images by contrast and the (3, z, y, x) regions."""
    pool = []
    for i in range(count):
        case = make_case(seed * CASE_SEED_STRIDE + i, spacing=(model.WORK_SPACING,) * 3)
        images = {name: model.normalise(case.images[name]) for name in CONTRASTS}
        pool.append((images, regions(case.labels)))
    return pool


def _crop(rng: np.random.Generator, shape: Sequence[int], target: np.ndarray, patch: int) -> tuple[slice, ...]:
    tumour = np.argwhere(target[0])
    if len(tumour) and rng.random() < 0.7:
        centre = tumour[rng.integers(len(tumour))] + rng.integers(-patch // 4, patch // 4 + 1, 3)
    else:
        centre = np.array([rng.integers(n) for n in shape])
    starts = [int(np.clip(c - patch // 2, 0, max(n - patch, 0))) for c, n in zip(centre, shape, strict=True)]
    return tuple(slice(s, s + patch) for s in starts)


def _pad(array: np.ndarray, patch: int, value: float) -> np.ndarray:
    widths = [(0, 0)] * (array.ndim - 3) + [(0, max(patch - n, 0)) for n in array.shape[-3:]]
    return np.pad(array, widths, constant_values=value)


def sample_batch(
    rng: np.random.Generator, pool: Sequence[tuple[dict[str, np.ndarray], np.ndarray]], batch: int, patch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random patches: images ``(B, 1, p, p, p)``, targets ``(B, 3, ...)``, channel weights ``(B, 3)``."""
    images, targets, weights = [], [], []
    for _ in range(batch):
        by_contrast, target = pool[int(rng.integers(len(pool)))]
        contrast = CONTRASTS[int(rng.integers(len(CONTRASTS)))]
        image = by_contrast[contrast]
        window = _crop(rng, image.shape, target, patch)
        x = _pad(image[window], patch, float(image.min()))
        y = _pad(target[(slice(None), *window)], patch, 0)
        if rng.random() < 0.5:  # left-right: tumours occur on either side
            x, y = x[..., ::-1], y[..., ::-1]
        x = x * rng.uniform(0.85, 1.15) + rng.uniform(-0.15, 0.15)
        images.append(x[None])
        targets.append(y)
        weights.append(channel_weights(contrast))
    return (torch.from_numpy(np.ascontiguousarray(np.stack(images), dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(np.stack(targets), dtype=np.float32)),
            torch.from_numpy(np.stack(weights)))


def loss_fn(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Soft Dice (per channel over the batch) + BCE, counting only the channels each sample shows.

    Parameters
    ----------
    logits, target : torch.Tensor
        ``(B, 3, *spatial)``.
    weights : torch.Tensor
        ``(B, 3)``, 1 where a channel is trained for that sample.
    """
    w = weights[:, :, None, None, None]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce * w).sum() / (w.sum() * bce[0, 0].numel()).clamp(min=1)
    p = torch.sigmoid(logits)
    dims = (2, 3, 4)
    intersection = ((p * target).sum(dims) * weights).sum(0)
    denominator = ((p.sum(dims) + target.sum(dims)) * weights).sum(0)
    dice = 1 - (2 * intersection + 1.0) / (denominator + 1.0)
    trained = weights.sum(0) > 0
    return bce + dice[trained].mean()


def main(argv: list[str] | None = None) -> int:
    """Train and save; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m ai_pipelines.brain_tumour_seg.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=700, help="optimiser steps (default 700)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data pool and the run (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"checkpoint (default {DEFAULT_OUT})")
    parser.add_argument("--cases", type=int, default=24, help="synthetic cases in the pool (default 24)")
    parser.add_argument("--batch", type=int, default=2, help="patches per step (default 2)")
    parser.add_argument("--patch", type=int, default=64, help="patch edge in 2 mm voxels (default 64)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.cases < 1 or args.batch < 1 or args.patch < 16 or args.patch % 8:
        parser.error("--steps, --cases, --batch must be >= 1 and --patch a multiple of 8, >= 16")
    began = time.perf_counter()
    rng = seed_everything(args.seed)
    threads = set_threads(args.threads)
    pool = build_pool(args.cases, args.seed)
    made = time.perf_counter() - began
    network = model.build_network()
    optimiser = torch.optim.Adam(network.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=args.steps, eta_min=args.lr / 20)
    network.train()
    running: float | None = None
    with TrainingProgress(PIPELINE, total=args.steps, disable=args.quiet) as progress:
        for _ in progress.steps():
            images, targets, weights = sample_batch(rng, pool, args.batch, args.patch)
            loss = loss_fn(network(images), targets, weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            value = float(loss.detach())
            running = value if running is None else 0.98 * running + 0.02 * value
            progress.status(f"loss {running:.3f}")
    seconds = time.perf_counter() - began
    command = "python -m ai_pipelines.brain_tumour_seg.train " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {
        "seed": args.seed, "steps": args.steps, "batch": args.batch, "patch": args.patch, "lr": args.lr,
        "threads": threads, "final_loss": round(float(running or 0.0), 4),
        "data": (f"{args.cases} synthetic brain MR cases (FLAIR- and T1c-like, BraTS labels) on warped real "
                 f"anatomy (MNI ICBM152 2009 / colin27), seeds {args.seed * CASE_SEED_STRIDE}+i, "
                 f"{model.WORK_SPACING:g} mm grid"),
        "train_seconds": round(seconds, 1), "data_seconds": round(made, 1), "command": command.strip(),
        "torch": str(torch.__version__),
    }
    kwargs = {key: list(value) if isinstance(value, tuple) else value for key, value in model.NETWORK_KWARGS.items()}
    save_checkpoint(args.out, network, pipeline=PIPELINE, network_kwargs=kwargs, meta=meta)
    sha = record_in_manifest(args.out, pipeline=PIPELINE, seed=args.seed, steps=args.steps,
                             final_loss=meta["final_loss"], command=meta["command"])
    print(f"saved {args.out} (sha256 {sha}) after {seconds:.0f} s ({made:.0f} s making data); "
          f"final loss {meta['final_loss']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
