"""Results of the ingest bench: runs, per-cell medians, the Markdown table and the ratio line."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class RunResult:
    """One timed send of one dataset to one freshly started receiver."""

    wall_s: float
    ok: bool
    stored: int | None
    receiver_cpu_s: float | None
    database_cpu_s: float | None = None
    problem: str = ""


@dataclass(slots=True)
class Cell:
    """All runs of one (dataset, associations, receiver) combination."""

    dataset: str
    associations: int
    receiver: str
    instances: int
    megabytes: float
    runs: list[RunResult] = field(default_factory=list)

    @property
    def good(self) -> list[RunResult]:
        return [r for r in self.runs if r.ok]

    @property
    def median_s(self) -> float:
        return statistics.median(r.wall_s for r in self.good) if self.good else math.nan

    @property
    def instances_per_s(self) -> float:
        return self.instances / self.median_s if self.good else math.nan

    @property
    def megabytes_per_s(self) -> float:
        return self.megabytes / self.median_s if self.good else math.nan

    @property
    def receiver_cpu_s(self) -> float:
        values = [r.receiver_cpu_s for r in self.good if r.receiver_cpu_s is not None]
        return statistics.median(values) if values else math.nan

    @property
    def database_cpu_s(self) -> float:
        values = [r.database_cpu_s for r in self.good if r.database_cpu_s is not None]
        return statistics.median(values) if values else math.nan


def fmt(value: float, digits: int = 0) -> str:
    return "nan" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(ours: float, theirs: float) -> float:
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return math.nan
    return ours / theirs


def print_table(cells: dict[tuple[str, int, str], Cell], ours_label: str | None) -> None:
    """A Markdown table of the medians; "ours / this" is instances/s of our node over this row's."""
    header = ["dataset", "assoc", "receiver", "instances", "MB", "median s", "instances/s", "MB/s", "ours / this",
              "recv CPU s", "db CPU s", "runs (s)", "ok"]
    print("| " + " | ".join(header) + " |")
    print("|---|---:|---|" + "---:|" * 8 + "---|---|")
    for (dataset, associations, label), cell in cells.items():
        ours = cells.get((dataset, associations, ours_label)) if ours_label else None
        versus = "-" if ours is None or label == ours_label else fmt(ratio(ours.instances_per_s,
                                                                           cell.instances_per_s), 2)
        row = [
            dataset, str(associations), label, str(cell.instances), f"{cell.megabytes:.1f}", fmt(cell.median_s, 2),
            fmt(cell.instances_per_s), fmt(cell.megabytes_per_s, 1), versus, fmt(cell.receiver_cpu_s, 2),
            "-" if math.isnan(cell.database_cpu_s) else fmt(cell.database_cpu_s, 2),
            " / ".join(f"{r.wall_s:.2f}" + ("" if r.ok else "!") for r in cell.runs),
            f"{len(cell.good)}/{len(cell.runs)}",
        ]
        print("| " + " | ".join(row) + " |")


def ratio_line(cells: dict[tuple[str, int, str], Cell], *, dataset: str, ours_label: str | None,
               peers: Sequence[str], associations_counts: Sequence[int]) -> str:
    """``ratio_vs_<peer>_<n>assoc=R ...``: instances/s of ``dataset``, ours over each peer's; nan if unmeasured."""
    parts = []
    for associations in associations_counts:
        ours = cells.get((dataset, associations, ours_label)) if ours_label else None
        for peer in peers:
            theirs = cells.get((dataset, associations, peer))
            value = ratio(ours.instances_per_s, theirs.instances_per_s) if ours and theirs else math.nan
            parts.append(f"ratio_vs_{peer}_{associations}assoc={'nan' if math.isnan(value) else f'{value:.2f}'}")
    return " ".join(parts)
