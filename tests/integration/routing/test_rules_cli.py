"""`dicomnode rules ...` against a real database: import (refusing invalid files), list, export, dry-run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.cli import app
from dicomnode.db.models import AuditEntry
from tests.helpers import count_rows
from tests.integration.jobs.loop import send_series

RULES = """
- name: ct-montage
  when: {all: [{attr: Modality, equals: CT}, {attr: SeriesDescription, matches: "(?i)chest"}]}
  run: key_image_montage
- name: mr-montage
  when: {attr: Modality, equals: MR}
  run: key_image_montage
"""

BAD_RULES = """
- name: Bad Name
  when: {attr: Modalty, equals: CT}
  run: key_image_montage
- name: ok-but-bad-regex
  when: {attr: SeriesDescription, matches: "(unclosed"}
  run: key_image_montage
"""


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DICOMNODE_DB__URL", db_url)
    monkeypatch.setenv("DICOMNODE_STORE__ROOT", str(tmp_path / "store0"))  # node_factory's first store
    monkeypatch.setenv("COLUMNS", "250")  # rich tables unwrapped
    runner = CliRunner()

    def invoke(*args: str) -> object:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def test_an_invalid_rules_file_is_refused_with_path_and_reason(cli, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_RULES)
    result = cli("rules", "import", str(path))
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "nothing imported" in text
    assert "rules[0].name:" in text and "slug" in text
    assert "rules[0].when.attr:" in text and "Modality" in text  # the keyword it probably meant
    assert "rules[1].when.matches:" in text
    assert count_rows(db_url, AuditEntry) == 0


def test_import_list_export_and_history(cli, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    result = cli("rules", "import", str(path), "--author", "alice", "--reason", "go live")
    assert result.exit_code == 0, result.output
    assert "2 created" in result.output
    assert count_rows(db_url, AuditEntry) == 2

    listed = cli("rules", "list")
    assert "ct-montage" in listed.output and "mr-montage" in listed.output and "alice" in listed.output

    exported = cli("rules", "export")
    assert exported.exit_code == 0 and "name: ct-montage" in exported.output
    again = tmp_path / "again.yaml"
    again.write_text(exported.output.replace("equals: MR", "equals: PT"))
    result = cli("rules", "import", str(again), "--author", "bob")
    assert "1 updated, 1 unchanged" in result.output

    history = cli("rules", "history", "mr-montage")
    assert "bob" in history.output and "(current)" in history.output
    restored = cli("rules", "restore", "mr-montage", "1", "--author", "carol", "--reason", "PT was a mistake")
    assert restored.exit_code == 0 and "restored as version 3" in restored.output


def test_dry_run_explains_each_rule_fact_by_fact(cli, node_factory, tmp_path: Path) -> None:
    node = node_factory()
    series = synthetic_ct(shape=(2, 16, 16), seed=30)
    send_series(node, series, tmp_path / "sent")
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    cli("rules", "import", str(path))
    result = cli("rules", "dry-run", "--series", series[0].SeriesInstanceUID)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "ct-montage v1: would route" in text
    assert "SeriesDescription is 'Chest CT', which matches '(?i)chest'" in text
    assert "mr-montage v1: no match" in text and "Modality is 'CT', not 'MR'" in text

    proposed = tmp_path / "proposed.yaml"
    proposed.write_text("- name: head-only\n  when: {attr: BodyPartExamined, equals: HEAD}\n  run: key_image_montage\n")
    result = cli("rules", "dry-run", "--series", series[0].SeriesInstanceUID, "--rules", str(proposed))
    assert "head-only (proposed): no match" in " ".join(result.output.split())

    missing = cli("rules", "dry-run", "--series", "1.2.3.4")
    assert missing.exit_code == 1 and "no series 1.2.3.4" in missing.output


def test_a_file_that_is_not_yaml_is_refused_with_line_and_column(cli, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("- name: ct\n  when: {attr: Modality, equals: CT\n  run: key_image_montage\n")
    result = cli("rules", "import", str(path))
    assert result.exit_code == 2
    assert "rules: not valid YAML" in result.output and "line 3" in result.output
