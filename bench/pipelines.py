"""AI pipeline bench: wall time per stage on a standard volume, and our overhead over the model.

For each pipeline a standard series is generated (``--size standard``: brain MR 160x192x192,
chest CT 300x512x512, as the issue names them; ``--size small`` for a quick look), encoded as
DICOM files in memory, and then timed:

  read         pydicom reads the encoded instances (what the worker does with stored files)
  decode .. write   the stages the pipeline reports in ``pipeline.timings`` after ``run()``:
               decode (series -> volume), preprocess, model, postprocess, write (DICOM outputs)
  bare forward the network alone on the same pre-processed input (``pipeline.bare_forward()``),
               what a notebook that skips DICOM would pay

  overhead = (read + all stages) / bare forward

The first run of each pipeline (weights loading, allocator warm-up) is reported apart and
left out of the medians. There is no outside peer for this hot path: the reference is the
bare model forward measured in the same run, on the same machine and device.

  .venv/bin/python bench/pipelines.py                       # all pipelines, standard sizes, CPU
  .venv/bin/python bench/pipelines.py --size small --runs 2 brain_tumour_seg
  .venv/bin/python bench/pipelines.py --device cuda          # on a GPU machine

The last line printed is ``max_overhead=X`` (the worst pipeline's overhead ratio).
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ai_pipelines import registry  # noqa: E402
from ai_pipelines.base import SeriesInput  # noqa: E402
from ai_pipelines.nn.weights import REFERENCE_DIR  # noqa: E402
from ai_pipelines.synthetic.phantoms import brain_mr_with_tumour, chest_ct_with_nodules  # noqa: E402

STAGES = ("decode", "preprocess", "model", "postprocess", "write")

#: (shape, spacing) of the standard volumes, and of the small ones.
SIZES = {
    "standard": {"MR": ((160, 192, 192), (1.0, 1.2, 1.2)), "CT": ((300, 512, 512), (1.0, 0.7, 0.7))},
    "small": {"MR": ((48, 96, 96), (3.0, 2.4, 2.4)), "CT": ((64, 160, 160), (2.5, 2.2, 2.2))},
}


def _brain(size: str) -> list[Dataset]:
    shape, spacing = SIZES[size]["MR"]
    return list(brain_mr_with_tumour(seed=7, shape=shape, spacing=spacing).datasets)


def _chest(size: str) -> list[Dataset]:
    shape, spacing = SIZES[size]["CT"]
    return list(chest_ct_with_nodules(seed=7, count=4, shape=shape, spacing=spacing).datasets)


#: Pipeline -> the standard series it is timed on.
CASES: dict[str, tuple[str, Callable[[str], list[Dataset]]]] = {
    "brain_tumour_seg": ("brain MR", _brain),
    "lung_nodules": ("chest CT", _chest),
    "denoise": ("chest CT", _chest),
    "synth_ct": ("brain MR", _brain),
}


def _encode(datasets: list[Dataset]) -> list[bytes]:
    encoded = []
    for ds in datasets:
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        encoded.append(buffer.getvalue())
    return encoded


def _weights(name: str) -> Path:
    checkpoint = REFERENCE_DIR / f"{name}.pt"
    return checkpoint if checkpoint.is_file() else REFERENCE_DIR / name


def bench_one(name: str, *, size: str, runs: int, device: str) -> dict[str, float]:
    """Time ``runs`` runs of one pipeline (after a warm-up run); medians per stage, in seconds."""
    what, make = CASES[name]
    encoded = _encode(make(size))
    pipeline = registry.load(name)(_weights(name), device)
    algorithm = pipeline.algorithm_info({})
    samples: list[dict[str, float]] = []
    for attempt in range(runs + 1):
        began = time.perf_counter()
        series = SeriesInput(tuple(pydicom.dcmread(io.BytesIO(blob)) for blob in encoded))
        read = time.perf_counter() - began
        pipeline.run(series, algorithm=algorithm)
        total = time.perf_counter() - began
        forward_began = time.perf_counter()
        pipeline.bare_forward()
        bare = time.perf_counter() - forward_began
        sample = {"read": read, **{stage: float(pipeline.timings.get(stage, 0.0)) for stage in STAGES},
                  "total": total, "bare forward": bare}
        if attempt == 0:
            print(f"  {name}: first run {total:.2f} s (weights loading, warm-up; left out)", file=sys.stderr)
            continue
        samples.append(sample)
    medians = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    medians["slices"] = float(len(encoded))
    print(f"  {name}: {what} {len(encoded)} slices, median of {runs}", file=sys.stderr)
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipelines", nargs="*", default=list(CASES), help="pipelines to time (default: all)")
    parser.add_argument("--size", choices=sorted(SIZES), default="standard")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per pipeline after one warm-up")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    args = parser.parse_args(argv)
    import torch

    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}, size {args.size}")
    results = {name: bench_one(name, size=args.size, runs=args.runs, device=args.device) for name in args.pipelines}
    header = ["pipeline", "slices", "read", *STAGES, "total", "bare forward", "overhead"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    overheads = []
    for name, r in results.items():
        overhead = r["total"] / r["bare forward"] if r["bare forward"] > 0 else float("nan")
        overheads.append(overhead)
        cells = [name, f"{r['slices']:.0f}", *(f"{r[k]:.2f}" for k in ("read", *STAGES, "total", "bare forward")),
                 f"{overhead:.2f}x"]
        print("| " + " | ".join(cells) + " |")
    print(f"max_overhead={np.nanmax(overheads):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
