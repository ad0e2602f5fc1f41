"""`dicomnode trace` and `dicomnode jobs` over a processed series."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.cli import app
from dicomnode.db.models import Run, RunOutput
from tests.integration.jobs.loop import MONTAGE_RULE, age_series, jobs_section, seed_rules, send_series


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DICOMNODE_DB__URL", db_url)
    monkeypatch.setenv("DICOMNODE_STORE__ROOT", str(tmp_path / "store0"))
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def test_trace_and_jobs_show_the_chain(cli, node_factory, sessions, jobs_factory, tmp_path: Path) -> None:
    node = node_factory(jobs=jobs_section())
    call = {"pipeline": "key_image_montage", "params": {"tiles": 4}}
    seed_rules(sessions, {**MONTAGE_RULE, "send_to": [], "run": [call]})
    series = synthetic_ct(shape=(3, 16, 16), seed=50)
    send_series(node, series, tmp_path / "sent")
    jobs = jobs_factory(node.settings)
    age_series(node.db_url)
    jobs.route()
    jobs.drain()
    with sessions() as session:
        run = session.scalars(select(Run)).one()
        output = session.scalars(select(RunOutput)).one()

    result = cli("trace", output.sop_instance_uid)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"made by run {run.id} (done, attempt 1)" in text
    assert "rule ct-montage version 1; generation 1" in text
    assert "pipeline key_image_montage 1.0.0; params {'tiles': 4}" in text
    assert all(f"in {ds.SOPInstanceUID} sha256" in text for ds in series)

    chain = json.loads(cli("trace", series[0].SOPInstanceUID, "--json").output)
    assert [step["run_id"] for step in chain["used_by"]] == [run.id] and chain["made_by"] == []
    assert cli("trace", "1.2.3").exit_code == 1

    listed = cli("jobs")
    assert listed.exit_code == 0, listed.output
    assert f"run {run.id}" in listed.output and "process_series" in listed.output and "succeeded" in listed.output
    assert "0 jobs" in cli("jobs", "--status", "failed").output
    assert cli("jobs", "--status", "bogus").exit_code == 2
    refused = cli("jobs", "retry", str(run.job_id))
    assert refused.exit_code == 1 and "only a failed job can be retried" in refused.output
