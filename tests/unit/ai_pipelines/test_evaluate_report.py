"""The evaluation table and chart: references marked, every number names its data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from ai_pipelines.evaluate import MetricRow, render_chart, render_markdown, run_evaluation

ROWS = [
    MetricRow("Segmentation", "ours", "Dice WT", 0.812, "10 synthetic cases, seed 1000", spread=0.05),
    MetricRow("Segmentation", "threshold", "Dice WT", 0.61, "10 synthetic cases, seed 1000"),
    MetricRow("Segmentation", "MONAI zoo", "Dice WT", 0.90, "BraTS 2018 validation", reference=True),
    MetricRow("Segmentation", "ours", "HD95 (mm)", float("nan"), "10 synthetic cases", higher_is_better=False),
    MetricRow("Synthetic CT", "ours", "MAE body (HU)", 81.25, "head CT slab", higher_is_better=False),
]


def test_markdown_has_a_section_per_task_and_marks_references() -> None:
    text = render_markdown(ROWS, command="dicomnode evaluate --cases 10")
    assert "`dicomnode evaluate --cases 10`" in text
    assert text.index("## Segmentation") < text.index("## Synthetic CT")
    assert "| MONAI zoo *(reference, other data)* | Dice WT | 0.900 | BraTS 2018 validation |" in text
    assert "| ours | Dice WT | 0.812 ± 0.050 | 10 synthetic cases, seed 1000 |" in text
    assert "HD95 (mm) (lower is better) | n/a" in text
    assert "| 81.2 |" in text


def test_chart_is_a_png_with_content(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    render_chart(ROWS, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        extrema = image.convert("L").getextrema()
    assert extrema[0] < extrema[1]  # not a blank page


def test_run_evaluation_writes_both_files_and_refuses_unknown_names(tmp_path: Path) -> None:
    def fake(*, cases: int, seed: int, log: object) -> list[MetricRow]:
        return [MetricRow("T", "m", "x", cases * 0.1 + seed, f"{cases} cases, seed {seed}")]

    import sys
    import types

    module = types.ModuleType("_fake_evaluator")
    module.evaluate = fake  # type: ignore[attr-defined]
    sys.modules["_fake_evaluator"] = module
    try:
        rows = run_evaluation(["fake"], cases=3, seed=7, out_dir=tmp_path,
                              evaluators={"fake": "_fake_evaluator:evaluate"})
        with pytest.raises(KeyError, match="no evaluator for 'absent'"):
            run_evaluation(["absent"], cases=1, seed=1, evaluators={"fake": "_fake_evaluator:evaluate"})
    finally:
        del sys.modules["_fake_evaluator"]
    assert math.isclose(rows[0].value, 7.3)
    assert "3 cases, seed 7" in (tmp_path / "evaluation.md").read_text()
    assert (tmp_path / "evaluation.png").stat().st_size > 1000
