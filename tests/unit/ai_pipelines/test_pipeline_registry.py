"""registry: built-ins by "module:Class", third-party pipelines by entry point."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from ai_pipelines import registry

_MODULE = '''
from __future__ import annotations
from ai_pipelines.base import InputSpec, OutputKind, Pipeline, PipelineResult

class Toy(Pipeline):
    name = "toy"
    version = "1"
    accepts = InputSpec(modalities={"CT"})
    produces = frozenset({OutputKind.SR})

    def run(self, series, *, algorithm):
        return PipelineResult(())

class Misnamed(Toy):
    name = "other"

NOT_A_PIPELINE = object()
'''


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution on sys.path that declares pipelines in the "dicomnode.pipelines" group."""
    (tmp_path / "toy_pipelines_pkg.py").write_text(_MODULE)
    info = tmp_path / "toy_pipelines-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-pipelines\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [dicomnode.pipelines]
        toy = toy_pipelines_pkg:Toy
        misnamed = toy_pipelines_pkg:Misnamed
        broken = toy_pipelines_pkg:NOT_A_PIPELINE
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_pipelines_pkg", raising=False)
    return tmp_path


def test_entry_point_pipelines_are_listed_and_loaded(installed: Path) -> None:
    found = registry.available()
    assert found["toy"] == "toy_pipelines_pkg:Toy"
    cls = registry.load("toy")
    assert cls.name == "toy" and cls.__module__ == "toy_pipelines_pkg"


def test_built_ins_win_over_entry_points(installed: Path) -> None:
    built_ins = {"toy": "toy_pipelines_pkg:Misnamed"}
    assert registry.available(built_ins=built_ins)["toy"] == "toy_pipelines_pkg:Misnamed"


def test_bad_targets_are_refused(installed: Path) -> None:
    with pytest.raises(TypeError, match="declares name 'other'"):
        registry.load("misnamed")
    with pytest.raises(TypeError, match="not a Pipeline class"):
        registry.load("broken")
    with pytest.raises(registry.UnknownPipeline, match="no pipeline named 'nope'"):
        registry.load("nope")
    with pytest.raises(TypeError, match="expected 'module:Class'"):
        registry.load("x", built_ins={"x": "no_colon"})
