"""Evaluation: each pipeline against a classical baseline, with published reference rows.

Every pipeline with a model has an ``evaluation`` module with a function::

    def evaluate(*, cases: int, seed: int, log: Callable[[str], None]) -> list[MetricRow]

that generates (or reads) held-out data with a seed different from training, runs the
pipeline's network and its classical baseline, and returns one :class:`MetricRow` per
(method, metric). Published figures measured elsewhere come back as rows with
``reference=True``, so the table never mixes them up with ours. :func:`run_evaluation`
collects the rows of the pipelines asked for and writes a markdown table and a PNG bar
chart (``dicomnode evaluate`` is the command).
"""

from __future__ import annotations

import importlib
import math
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "EVALUATORS",
    "MetricRow",
    "render_chart",
    "render_markdown",
    "run_evaluation",
]

#: Pipeline name -> "module:function" of its evaluator (imported only when asked for).
EVALUATORS: Mapping[str, str] = MappingProxyType({
    "brain_tumour_seg": "ai_pipelines.brain_tumour_seg.evaluation:evaluate",
    "lung_nodules": "ai_pipelines.lung_nodules.evaluation:evaluate",
    "denoise": "ai_pipelines.denoise.evaluation:evaluate",
    "synth_ct": "ai_pipelines.synth_ct.evaluation:evaluate",
})


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One number in the evaluation table.

    Parameters
    ----------
    task : str
        What is measured, e.g. ``"Brain tumour segmentation"``.
    method : str
        Who made the number, e.g. ``"SegResNet (ours)"`` or ``"threshold + morphology"``.
    metric : str
        e.g. ``"Dice WT"``, ``"sensitivity @1 FP/scan"``, ``"MAE body (HU)"``.
    value : float
        The figure (NaN when it cannot be computed, e.g. HD95 with an empty prediction).
    data : str
        The data it was measured on, plainly: ``"20 synthetic brain MR phantoms, seed 1000"``.
    reference : bool, optional
        True for a published figure measured on other data.
    spread : float or None, optional
        Standard deviation over cases, when meaningful.
    higher_is_better : bool, optional
        False for errors and distances (MAE, HD95).
    """

    task: str
    method: str
    metric: str
    value: float
    data: str
    reference: bool = False
    spread: float | None = None
    higher_is_better: bool = True

    def formatted(self) -> str:
        """The value (± spread) with digits that suit its size."""
        if not math.isfinite(self.value):
            return "n/a"
        digits = 3 if abs(self.value) < 10 else 1
        text = f"{self.value:.{digits}f}"
        if self.spread is not None and math.isfinite(self.spread):
            text += f" ± {self.spread:.{digits}f}"
        return text


def _load(target: str) -> Callable[..., list[MetricRow]]:
    module_name, _, attr = target.partition(":")
    function: Callable[..., list[MetricRow]] = getattr(importlib.import_module(module_name), attr)
    return function


def run_evaluation(
    names: Iterable[str],
    *,
    cases: int,
    seed: int,
    out_dir: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
    evaluators: Mapping[str, str] = EVALUATORS,
) -> list[MetricRow]:
    """Evaluate the named pipelines; write ``evaluation.md`` and ``evaluation.png`` to ``out_dir``.

    Parameters
    ----------
    names : Iterable[str]
        Pipeline names (keys of ``evaluators``).
    cases : int
        Held-out cases per pipeline (each evaluator may cap or floor it and says so in ``data``).
    seed : int
        Seed of the held-out data (choose one training never used).
    out_dir : Path or None, optional
        Where to write the table and chart; nothing is written when None.
    log : Callable[[str], None], optional
        Progress messages.
    evaluators : Mapping[str, str], optional
        Pipeline name -> ``"module:function"``.

    Returns
    -------
    list[MetricRow]
        All rows, in the order the pipelines were named.

    Raises
    ------
    KeyError
        If a name has no evaluator.
    """
    rows: list[MetricRow] = []
    for name in names:
        if name not in evaluators:
            raise KeyError(f"no evaluator for {name!r} (known: {', '.join(evaluators)})")
        log(f"evaluating {name}")
        rows.extend(_load(evaluators[name])(cases=cases, seed=seed, log=log))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "evaluation.md").write_text(render_markdown(rows))
        render_chart(rows, out_dir / "evaluation.png")
    return rows


def render_markdown(rows: Sequence[MetricRow], *, command: str | None = None) -> str:
    """A markdown table per task: method, metric, value, data; references marked as such."""
    lines = ["# Evaluation", ""]
    if command:
        lines += [f"Made by `{command}`.", ""]
    for task in dict.fromkeys(row.task for row in rows):
        lines += [f"## {task}", "", "| method | metric | value | measured on |", "|---|---|---:|---|"]
        for row in (r for r in rows if r.task == task):
            method = f"{row.method} *(reference, other data)*" if row.reference else row.method
            arrow = "" if row.higher_is_better else " (lower is better)"
            lines.append(f"| {method} | {row.metric}{arrow} | {row.formatted()} | {row.data} |")
        lines.append("")
    return "\n".join(lines)


def render_chart(rows: Sequence[MetricRow], path: Path) -> None:
    """Grouped bars, one panel per task and scale (fractions such as Dice apart from mm, HU, dB).

    One group per metric, one bar per method; published reference rows are hatched.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [r for r in rows if math.isfinite(r.value)]
    panels: list[tuple[str, list[str]]] = []
    for task in dict.fromkeys(row.task for row in finite):
        metrics = list(dict.fromkeys(r.metric for r in finite if r.task == task))
        fractions = [m for m in metrics if all(r.value <= 1.0 for r in finite if r.task == task and r.metric == m)]
        others = [m for m in metrics if m not in fractions]
        panels += [(task, group) for group in (fractions, others) if group]
    figure, axes = plt.subplots(len(panels), 1, figsize=(11, 3.4 * max(len(panels), 1)), squeeze=False)
    for axis, (task, metrics) in zip(axes[:, 0], panels, strict=True):
        task_rows = [r for r in finite if r.task == task and r.metric in metrics]
        methods = list(dict.fromkeys(r.method for r in task_rows))
        width = 0.8 / max(len(methods), 1)
        for m, method in enumerate(methods):
            xs, ys, hatch = [], [], ""
            for i, metric in enumerate(metrics):
                found = [r for r in task_rows if r.method == method and r.metric == metric]
                if found:
                    xs.append(i + (m - (len(methods) - 1) / 2) * width)
                    ys.append(found[0].value)
                    hatch = "//" if found[0].reference else ""
            axis.bar(xs, ys, width, label=method + (" (ref.)" if hatch else ""), hatch=hatch)
        labels = [textwrap.fill(metric, 22) for metric in metrics]
        axis.set_xticks(range(len(metrics)), labels, fontsize=7)
        axis.set_title(task, fontsize=10)
        axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
