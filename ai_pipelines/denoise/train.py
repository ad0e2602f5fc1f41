"""Train the reference denoiser weights (L1 + PatchGAN) on simulated noise over real anatomy.

Usage: ``python -m ai_pipelines.denoise.train [--steps N] [--seed S] [--threads T] [--out PATH]``.

Data: the training split of :mod:`ai_pipelines.synthetic.noise_pairs` (simulated low-dose
CT from the real head CT and 12 abdomen CT slices; undersampled, Rician-noisy MR from the MNI
template and colin27 outside its held-out slab), a few noise realisations per slice, random
64 x 64 crops with flips and 90-degree turns. Loss: pix2pix (:func:`ai_pipelines.nn.gan.gan_step`)
with a conditional PatchGAN discriminator, L1 weighted 100 and the adversarial term switched on
after a warm-up (so that the critic first meets a generator that already denoises).

Seeded and reproducible on one machine (same seed, same threads -> same weights). The
checkpoint is written with :func:`~ai_pipelines.nn.weights.save_checkpoint` and listed in the
``manifest.json`` beside it.
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

from ai_pipelines.denoise.model import DEFAULT_KWARGS, build_denoiser, network_input, to_network
from ai_pipelines.nn.gan import GanWeights, gan_step, make_patch_discriminator
from ai_pipelines.nn.training import TrainingProgress, seed_everything, set_threads
from ai_pipelines.nn.weights import REFERENCE_DIR, record_in_manifest, save_checkpoint
from ai_pipelines.synthetic.noise_pairs import NoisePair, make_pairs, random_crops

__all__ = ["DEFAULTS", "main", "train"]

PIPELINE = "denoise"
DEFAULTS = {"steps": 10000, "seed": 0, "batch_size": 16, "crop": 64, "per_slice": 3, "warmup": 500,
            "l1": 100.0, "adversarial": 0.1, "lr_g": 5e-4, "lr_d": 2e-4}
DATA = ("simulated low-dose CT (Poisson noise in the projection domain, FBP) on the real head CT "
        "(invesalius-examples) and abdomen CT slices 0-11 (TotalSegmentator test data); undersampled "
        "k-space + Rician noise on the MNI ICBM152 T1 template and colin27 T1 outside slices 78-101 "
        "(1 mm); held-out slabs excluded (ai_pipelines.synthetic.noise_pairs.HELD_OUT)")


def _scaled(pair: NoisePair) -> tuple[np.ndarray, np.ndarray]:
    if pair.modality == "CT":
        return to_network(pair.noisy, "CT")[0], to_network(pair.clean, "CT")[0]
    return pair.noisy, pair.clean  # MR pairs are already in units of the volume's 99.5th percentile


def _batch(pairs: Sequence[NoisePair], scaled: dict[int, tuple[np.ndarray, np.ndarray]], *, size: int,
           count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = [], []
    for pair, (y, x) in random_crops(pairs, size=size, count=count, rng=rng):
        noisy, clean = scaled[id(pair)]
        noisy, clean = noisy[y:y + size, x:x + size], clean[y:y + size, x:x + size]
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        noisy, clean = np.rot90(noisy, turns), np.rot90(clean, turns)
        if flip:
            noisy, clean = noisy[:, ::-1], clean[:, ::-1]
        inputs.append(network_input(np.ascontiguousarray(noisy)[None], pair.modality)[0])
        targets.append(np.ascontiguousarray(clean)[None])
    return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets).astype(np.float32))


def train(
    *, steps: int, seed: int, out: Path, threads: int | None = None, progress: bool = True,
    per_slice: int = DEFAULTS["per_slice"], limit: int | None = None, command: str | None = None,
) -> dict[str, float]:
    """Train the generator (and its critic), save the generator; return the final losses.

    Parameters
    ----------
    steps : int
        Optimiser steps (one generator and one discriminator update each).
    seed : int
        Seeds the data, the crops and the initial weights.
    out : Path
        Checkpoint file; listed in the ``manifest.json`` beside it.
    threads : int or None, optional
        torch threads (None: all cores this process may use).
    progress : bool, optional
        Show the progress bar.
    per_slice : int, optional
        Noise realisations per clean slice.
    limit : int or None, optional
        Clean slices per modality (None: all; the smoke test uses a few).
    command : str or None, optional
        The command line, recorded in the checkpoint's metadata.

    Returns
    -------
    dict[str, float]
        Mean losses over the last 10 % of steps, and ``seconds`` (wall time of the whole run).
    """
    started = time.monotonic()
    used_threads = set_threads(threads)
    rng = seed_everything(seed)
    pairs = make_pairs("train", seed=seed, per_slice=per_slice, limit=limit)
    scaled = {id(pair): _scaled(pair) for pair in pairs}
    generator = build_denoiser({})
    discriminator = make_patch_discriminator(in_channels=3, channels=16)
    g_opt = torch.optim.Adam(generator.parameters(), DEFAULTS["lr_g"], betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), DEFAULTS["lr_d"], betas=(0.5, 0.999))
    # halve the generator's rate for the last third: the L1 term settles instead of wandering
    schedule = torch.optim.lr_scheduler.MultiStepLR(g_opt, milestones=[int(steps * 2 / 3)], gamma=0.5)
    warmup = min(DEFAULTS["warmup"], steps // 5)
    history: list[dict[str, float]] = []
    with TrainingProgress(PIPELINE, total=steps, disable=not progress) as bar:
        for step in bar.steps():
            inputs, targets = _batch(pairs, scaled, size=DEFAULTS["crop"], count=DEFAULTS["batch_size"], rng=rng)
            adversarial = DEFAULTS["adversarial"] if step >= warmup else 0.0
            losses = gan_step(generator, discriminator, g_opt, d_opt, inputs, targets,
                              weights=GanWeights(l1=DEFAULTS["l1"], adversarial=adversarial))
            schedule.step()
            history.append(losses)
            if step % 10 == 0:
                bar.status(f"L1 {losses['l1']:.4f} adv {losses['adversarial']:.3f} D {losses['discriminator']:.3f}")
    tail = history[-max(1, steps // 10):]
    final = {key: float(np.mean([h[key] for h in tail])) for key in tail[0]}
    final["seconds"] = round(time.monotonic() - started, 1)
    meta = {
        "seed": seed, "steps": steps, "threads": used_threads, "data": DATA, "pairs": len(pairs),
        "final_l1": round(final["l1"], 5), "final_adversarial": round(final["adversarial"], 4),
        "final_discriminator": round(final["discriminator"], 4), "train_seconds": final["seconds"],
        "settings": {k: v for k, v in DEFAULTS.items() if k != "steps"},
        "command": command or f"python -m ai_pipelines.denoise.train --steps {steps} --seed {seed}",
        "torch": str(torch.__version__),
    }
    sha = save_checkpoint(out, generator, pipeline=PIPELINE, network_kwargs=DEFAULT_KWARGS, meta=meta)
    record_in_manifest(out, pipeline=PIPELINE, seed=seed, steps=steps, final_l1=meta["final_l1"],
                       command=meta["command"], data=DATA)
    final["sha256"] = sha  # type: ignore[assignment]
    return final


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, train, and print the losses and the checkpoint's sha256."""
    parser = argparse.ArgumentParser(prog="python -m ai_pipelines.denoise.train", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="optimiser steps (default %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR / f"{PIPELINE}.pt", help="checkpoint file")
    parser.add_argument("--limit", type=int, default=None, help="clean slices per modality (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    command = "python -m ai_pipelines.denoise.train " + shlex.join(list(argv if argv is not None else sys.argv[1:]))
    final = train(steps=args.steps, seed=args.seed, out=args.out, threads=args.threads,
                  progress=not args.no_progress, limit=args.limit, command=command.strip())
    print(f"{args.out}: sha256 {final['sha256']}; L1 {final['l1']:.5f}, adversarial {final['adversarial']:.4f}, "
          f"discriminator {final['discriminator']:.4f}; {final['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
