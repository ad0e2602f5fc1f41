"""Train the synth_ct reference weights: pix2pix (UNet + PatchGAN) on MR-like slices derived from real CT.

``python -m ai_pipelines.synth_ct.train [--steps N] [--seed S] [--threads T] [--out PATH]``

Data (:mod:`ai_pipelines.synthetic.mr_from_ct`): the training slices of the real head CT and
abdomen CT (held-out slabs excluded), resampled in-plane to 1.5 mm. Each step draws a fresh
MR-like image per slice (T1- or T2-like, tissue signals jittered, bias field, Rician noise,
random scale), normalises it exactly as the pipeline does at run time, and crops 96 x 96
pixels around the body (random left-right flips). The MR side is derived from the CT; the
CT (clipped to [-1024, 3000] HU, air outside the body) is the target.

Loss: :func:`ai_pipelines.nn.gan.gan_step` (L1 x 100 weighted to the body + LSGAN adversarial x 1,
the adversarial term off for the first quarter of the steps), Adam (beta1 0.5) at 5e-4 for the
generator and 2e-4 for the critic, linearly decayed to 0 over the last 30% of the steps.
The same seed on the same machine gives the same weights. The checkpoint goes to ``--out``
(the reference weights by default) and is listed in the ``manifest.json`` beside it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ai_pipelines.nn.gan import GanWeights, gan_step
from ai_pipelines.nn.training import TrainingProgress, seed_everything, set_threads
from ai_pipelines.nn.weights import REFERENCE_DIR, record_in_manifest, save_checkpoint
from ai_pipelines.synth_ct.model import (
    DEFAULT_GENERATOR,
    PIXEL_SPACING_MM,
    build_discriminator,
    build_generator,
    hu_to_unit,
)
from ai_pipelines.synth_ct.preprocess import CLIP, normalise_mr
from ai_pipelines.synthetic.mr_from_ct import CONTRASTS, HU_RANGE, body_mask_ct, ct_target, mr_from_ct, training_ct

__all__ = ["DEFAULT_STEPS", "SlicePool", "main"]

PIPELINE = "synth_ct"
DEFAULT_STEPS = 4000
LR_GENERATOR = 5e-4  # 2e-4 (pix2pix's) left the generator behind bulk density after 2000 steps
WARM_UP_SHARE = 0.25
BATCH = 8
CROP = 96
_HEAD_SHARE = 0.7  # the abdomen has 12 training slices, the head 80: draw it more often than its share
_T1_SHARE = 0.5


@dataclass(frozen=True, slots=True, eq=False)
class SlicePool:
    """Training CT slices at the network's pixel spacing, with body masks and their source."""

    slices: tuple[np.ndarray, ...]
    bodies: tuple[np.ndarray, ...]
    groups: tuple[int, ...]  # 0 head, 1 abdomen
    description: str

    @classmethod
    def build(cls) -> SlicePool:
        """Resample the training CT (:func:`~ai_pipelines.synthetic.mr_from_ct.training_ct`) to 1.5 mm."""
        slices, bodies, groups, sources = [], [], [], []
        for piece in training_ct():
            zoom = (1.0, piece.spacing[1] / PIXEL_SPACING_MM, piece.spacing[2] / PIXEL_SPACING_MM)
            hu = ndimage.zoom(piece.values, zoom, order=1, grid_mode=True, mode="nearest")
            body = body_mask_ct(hu)
            keep = [k for k in range(len(hu)) if body[k].mean() > 0.02]  # not the empty top of the head
            slices += [hu[k] for k in keep]
            bodies += [body[k] for k in keep]
            groups += [0 if "head" in piece.source else 1] * len(keep)
            sources.append(piece.source)
        return cls(tuple(slices), tuple(bodies), tuple(groups), "; ".join(sources))

    def pair(self, rng: np.random.Generator, crop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One (normalised MR, CT in [-1, 1], body) crop, MR drawn afresh from a random slice."""
        group = 0 if rng.random() < _HEAD_SHARE else 1
        choices = [k for k, g in enumerate(self.groups) if g == group]
        k = int(rng.choice(choices))
        hu, body = self.slices[k], self.bodies[k]
        contrast = CONTRASTS["T1" if rng.random() < _T1_SHARE else "T2"]
        mr = mr_from_ct(hu, (PIXEL_SPACING_MM, PIXEL_SPACING_MM), rng=rng, contrast=contrast, body=body)
        # run time normalises a whole volume, here one slice: jitter the scale to cover the difference
        normalised, _ = normalise_mr(mr)
        normalised = np.clip(normalised * rng.uniform(0.9, 1.1), 0.0, CLIP)
        target = hu_to_unit(ct_target(hu, body))
        rows, columns = np.nonzero(body)
        centre = (rng.integers(rows.min(), rows.max() + 1), rng.integers(columns.min(), columns.max() + 1))
        images = [_crop(a, centre, crop, fill) for a, fill in
                  ((normalised, 0.0), (target, -1.0), (body.astype(np.float32), 0.0))]  # pad with air
        if rng.random() < 0.5:
            images = [a[:, ::-1] for a in images]
        return images[0], images[1], images[2]


def _crop(image: np.ndarray, centre: tuple[int, int], size: int, fill: float) -> np.ndarray:
    padded = np.pad(image, size // 2, constant_values=fill)
    top, left = centre[0], centre[1]  # padding shifts the centre by size // 2: crop starts at centre
    return np.ascontiguousarray(padded[top:top + size, left:left + size])


def _batch(pool: SlicePool, rng: np.random.Generator, size: int, crop: int) -> tuple[torch.Tensor, ...]:
    pairs = [pool.pair(rng, crop) for _ in range(size)]
    mr, ct, body = (torch.from_numpy(np.stack([p[i] for p in pairs])[:, None].copy()) for i in range(3))
    # L1 weighted to the body (outside it the pipeline writes air anyway), a little outside too
    return mr, ct, 0.1 + 0.9 * body


def train(*, steps: int, seed: int, threads: int | None, out: Path, batch: int = BATCH, crop: int = CROP,
          progress: bool = True) -> dict[str, object]:
    """Train and save; return the checkpoint's meta (see the module docstring)."""
    rng = seed_everything(seed)
    used_threads = set_threads(threads)
    pool = SlicePool.build()
    generator, discriminator = build_generator({}), build_discriminator()
    g_opt = torch.optim.Adam(generator.parameters(), lr=LR_GENERATOR, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    decay_from = int(0.7 * steps)

    def factor(step: int) -> float:
        return 1.0 if step < decay_from else max(0.0, (steps - step) / max(steps - decay_from, 1))

    schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in (g_opt, d_opt)]
    # the critic first meets a generator that already maps tissue classes: L1 alone until warm_up
    warm_up = int(WARM_UP_SHARE * steps)
    l1_only, weights = GanWeights(l1=100.0, adversarial=0.0), GanWeights(l1=100.0, adversarial=1.0)
    recent: list[float] = []
    started = time.perf_counter()
    with TrainingProgress(PIPELINE, total=steps, disable=not progress) as bar:
        for step in bar.steps():
            mr, ct, mask = _batch(pool, rng, batch, crop)
            losses = gan_step(generator, discriminator, g_opt, d_opt, mr, ct, mask=mask,
                              weights=weights if step >= warm_up else l1_only)
            for scheduler in schedulers:
                scheduler.step()
            recent = [*recent[-99:], losses["l1"]]
            hu = np.mean(recent) * (HU_RANGE[1] - HU_RANGE[0]) / 2
            bar.status(f"L1 {hu:.0f} HU  adv {losses['adversarial']:.3f}  D {losses['discriminator']:.3f}")
    seconds = time.perf_counter() - started
    final_l1 = float(np.mean(recent)) if recent else float("nan")
    meta: dict[str, object] = {
        "seed": seed, "steps": steps, "batch": batch, "crop": crop, "threads": used_threads,
        "pixel_spacing_mm": PIXEL_SPACING_MM, "seconds": round(seconds, 1),
        "final_l1": round(final_l1, 5),
        "final_l1_hu": round(final_l1 * (HU_RANGE[1] - HU_RANGE[0]) / 2, 1),
        "loss": ("L1 x 100 (body-weighted) + LSGAN x 1, pix2pix, L1 alone for the first "
                 f"{WARM_UP_SHARE:.0%} of the steps; final_l1 = mean of the last 100 steps"),
        "data": ("MR-like T1/T2 slices derived from real CT by a tissue lookup with bias field and "
                 f"Rician noise (not real MR); CT from {pool.description}"),
        "command": "python -m ai_pipelines.synth_ct.train " + shlex.join(sys.argv[1:]),
        "torch": str(torch.__version__),
    }
    sha = save_checkpoint(out, generator, pipeline=PIPELINE,
                          network_kwargs={k: list(v) if isinstance(v, tuple) else v
                                          for k, v in DEFAULT_GENERATOR.items()}, meta=meta)
    record_in_manifest(out, pipeline=PIPELINE, seed=seed, steps=steps, final_l1=meta["final_l1"],
                       data=meta["data"], command=meta["command"])
    meta["sha256"] = sha
    return meta


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m ai_pipelines.synth_ct.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and data (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR / f"{PIPELINE}.pt", help="checkpoint to write")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"slices per step (default {BATCH})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1:
        parser.error("--steps and --batch must be >= 1")
    meta = train(steps=args.steps, seed=args.seed, threads=args.threads, out=args.out, batch=args.batch,
                 progress=not args.no_progress)
    print(f"wrote {args.out} (sha256 {meta['sha256']}) in {meta['seconds']} s; final L1 {meta['final_l1_hu']} HU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
