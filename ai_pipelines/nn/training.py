"""What every ``train.py`` shares: seeding, a thread budget and a rich progress bar."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["TrainingProgress", "seed_everything", "set_threads"]


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch, ask torch for deterministic kernels; return a NumPy generator.

    Parameters
    ----------
    seed : int
        The run's seed; the same seed on the same machine gives the same weights.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


def set_threads(threads: int | None) -> int:
    """Limit torch's intra-op threads (None: all cores this process may use); return the count."""
    count = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(count)
    return count


class TrainingProgress:
    """A progress bar for a training loop: steps, elapsed and remaining time, and a status (loss).

    Use as a context manager::

        with TrainingProgress("brain_tumour_seg", total=steps) as progress:
            for step in progress.steps():
                loss = ...
                progress.status(f"loss {loss:.3f}")
    """

    def __init__(self, description: str, total: int, *, disable: bool = False) -> None:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        self._progress = Progress(*columns, disable=disable)
        self._task = self._progress.add_task(description, total=total, status="")
        self.total = total

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def steps(self) -> Iterator[int]:
        """Step numbers 0..total-1, advancing the bar after each."""
        for step in range(self.total):
            yield step
            self._progress.update(self._task, advance=1)

    def advance_to(self, done: int) -> None:
        """Set the bar to ``done`` of ``total`` (for loops that report their own count)."""
        self._progress.update(self._task, completed=done)

    def status(self, text: str) -> None:
        """Show ``text`` (e.g. the running loss) at the end of the bar."""
        self._progress.update(self._task, status=text)
