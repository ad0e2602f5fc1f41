"""``dicomnode evaluate``: each AI pipeline against its classical baseline, as a table and a chart.

Needs no node, database or configuration: the evaluators generate held-out data (a seed
training never used) or read ``../shared/data``, run the committed reference weights and
the baseline, and write ``evaluation.md`` and ``evaluation.png``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dicomnode.cli.common import _fail, app, console, out


@app.command("evaluate")
def evaluate(
    pipelines: Annotated[
        list[str] | None,
        typer.Argument(help="Pipelines to evaluate (default: all with an evaluator: "
                            "brain_tumour_seg, lung_nodules, denoise, synth_ct)."),
    ] = None,
    cases: Annotated[int, typer.Option(min=1, max=10000, help="Held-out cases per pipeline.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the held-out data (training uses others).")] = 1000,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for evaluation.md and evaluation.png.")] = Path(
        "docs/evaluation"),
) -> None:
    """Measure every AI pipeline against a classical baseline and list published reference figures.

    Prints the table and writes it as markdown plus a bar chart. Each of our numbers names the
    data it was measured on; reference rows were measured by others on other data.
    """
    try:
        from ai_pipelines.evaluate import EVALUATORS, render_chart, render_markdown, run_evaluation
    except ImportError as exc:
        _fail(f"the AI extras are not installed ({exc}); pip install 'dicomnode[ai]'")
    names = pipelines or list(EVALUATORS)
    unknown = [name for name in names if name not in EVALUATORS]
    if unknown:
        _fail(f"no evaluator for {', '.join(unknown)}; known: {', '.join(EVALUATORS)}", code=2)
    with console.status("evaluating") as status:
        rows = run_evaluation(names, cases=cases, seed=seed, log=lambda message: status.update(message))
    command = "dicomnode evaluate " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["evaluate"] else None
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.md").write_text(render_markdown(rows, command=command))
    render_chart(rows, out_dir / "evaluation.png")
    table = Table(title="Evaluation")
    for column in ("task", "method", "metric", "value", "measured on"):
        table.add_column(column)
    for row in rows:
        method = f"{row.method} [dim](reference)[/dim]" if row.reference else row.method
        table.add_row(row.task, method, row.metric, row.formatted(), row.data)
    out.print(table)
    console.print(f"wrote {out_dir / 'evaluation.md'} and {out_dir / 'evaluation.png'}")
