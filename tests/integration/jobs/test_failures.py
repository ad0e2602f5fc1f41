"""Failures: retried with backoff when they may pass, failed for good when they cannot; manual retry."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.db.models import AuditEntry, Delivery, DeliveryState, Instance, Run, RunState
from dicomnode.jobs import admin, defer
from tests.integration.jobs.loop import MONTAGE_RULE, age_series, jobs_section, seed_rules, send_series


def _one(sessions, model):  # type: ignore[no-untyped-def]
    with sessions() as session:
        return session.scalars(select(model)).one()


def _process(node, sessions, jobs_factory, tmp_path: Path, rule: dict, seed: int):  # type: ignore[no-untyped-def]
    seed_rules(sessions, rule)
    send_series(node, synthetic_ct(shape=(3, 16, 16), seed=seed), tmp_path / "sent")
    jobs = jobs_factory(node.settings)
    age_series(node.db_url)
    assert len(jobs.route().runs_queued) == 1
    jobs.drain()
    return jobs


@pytest.mark.dcmtk
def test_a_destination_down_for_a_while_receives_everything_once_back(
    node_factory, storescp, sessions, jobs_factory, tmp_path: Path
) -> None:
    node = node_factory(jobs=jobs_section(), destinations=[storescp.destination()])  # storescp not started
    jobs = _process(node, sessions, jobs_factory, tmp_path, MONTAGE_RULE, seed=20)
    delivery = _one(sessions, Delivery)
    assert delivery.state is DeliveryState.PENDING and delivery.attempts >= 1
    assert "cannot connect" in delivery.last_error
    assert [j["status"] for j in jobs.job_rows() if j["task_name"] == "deliver"] == ["todo"], "a retry is scheduled"

    storescp.start()
    assert jobs.drain_until(lambda: _one(sessions, Delivery).state is DeliveryState.SENT, timeout=20)
    delivery = _one(sessions, Delivery)
    assert delivery.attempts >= 2 and delivery.last_error == "" and delivery.delivered_at is not None
    assert len(storescp.received()) == 1


@pytest.mark.dcmtk
def test_a_delivery_out_of_attempts_fails_and_a_manual_retry_sends_it(
    node_factory, storescp, sessions, jobs_factory, tmp_path: Path
) -> None:
    node = node_factory(jobs=jobs_section(delivery_max_attempts=1), destinations=[storescp.destination()])
    jobs = _process(node, sessions, jobs_factory, tmp_path, MONTAGE_RULE, seed=21)
    delivery = _one(sessions, Delivery)
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 1)
    (failed,) = [j for j in jobs.job_rows() if j["status"] == "failed"]

    storescp.start()
    with sessions() as session:
        listed = admin.list_jobs(session=session, statuses=["failed"])
        assert [(row.job_id, row.subject, row.subject_state) for row in listed] == [
            (failed["id"], f"delivery {delivery.id} -> storescp", "failed")
        ]
        admin.retry_job(session=session, job_id=failed["id"], actor="test", reason="PACS is back")
        session.commit()
    jobs.drain()
    assert _one(sessions, Delivery).state is DeliveryState.SENT
    assert len(storescp.received()) == 1
    entry = _one(sessions, AuditEntry)
    assert (entry.actor, entry.action, entry.target, entry.reason) == (
        "test", "job.retry", f"delivery:{delivery.id}", "PACS is back")


def test_bad_input_fails_for_good_without_retry(node_factory, sessions, jobs_factory, tmp_path: Path) -> None:
    node = node_factory(jobs=jobs_section())
    rule = {**MONTAGE_RULE, "send_to": [], "run": [{"pipeline": "key_image_montage", "params": {"tiles": 999}}]}
    jobs = _process(node, sessions, jobs_factory, tmp_path, rule, seed=22)
    run = _one(sessions, Run)
    assert (run.state, run.attempts) == (RunState.FAILED, 1)
    assert "PipelineInputError" in run.failure_reason and "tiles" in run.failure_reason
    assert [j["status"] for j in jobs.job_rows()] == ["failed"]


def test_an_unknown_pipeline_fails_for_good(node_factory, sessions, jobs_factory, tmp_path: Path) -> None:
    node = node_factory(jobs=jobs_section())
    _process(node, sessions, jobs_factory, tmp_path, {**MONTAGE_RULE, "send_to": [], "run": "no_such_pipeline"}, 23)
    run = _one(sessions, Run)
    assert (run.state, run.attempts) == (RunState.FAILED, 1)
    assert "no pipeline named 'no_such_pipeline'" in run.failure_reason


def test_a_transient_failure_is_retried_then_fails_when_out_of_attempts(
    node_factory, sessions, jobs_factory, tmp_path: Path
) -> None:
    node = node_factory(jobs=jobs_section(run_max_attempts=2))
    seed_rules(sessions, {**MONTAGE_RULE, "send_to": []})
    send_series(node, synthetic_ct(shape=(3, 16, 16), seed=24), tmp_path / "sent")
    jobs = jobs_factory(node.settings)
    age_series(node.db_url)
    jobs.route()
    with sessions() as session:  # a store file gone missing (a shared filesystem hiccup) is transient
        for instance in session.scalars(select(Instance)).all():
            (node.store_root / instance.file_path).unlink()
    jobs.drain()
    run = _one(sessions, Run)
    assert (run.state, run.attempts) == (RunState.QUEUED, 1), "queued again for the retry"
    assert "FileNotFoundError" in run.failure_reason
    jobs.drain_until(lambda: _one(sessions, Run).state is RunState.FAILED, timeout=10)
    run = _one(sessions, Run)
    assert (run.state, run.attempts) == (RunState.FAILED, 2)


def test_an_unknown_destination_fails_the_delivery_for_good(
    node_factory, sessions, jobs_factory, tmp_path: Path
) -> None:
    node = node_factory(jobs=jobs_section())
    _process(node, sessions, jobs_factory, tmp_path, {**MONTAGE_RULE, "send_to": ["nowhere"]}, seed=25)
    delivery = _one(sessions, Delivery)
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 1)
    assert "no destination named 'nowhere'" in delivery.last_error


def test_a_job_whose_worker_died_is_retried(node_factory, sessions, jobs_factory, tmp_path: Path) -> None:
    node = node_factory(jobs=jobs_section())
    seed_rules(sessions, {**MONTAGE_RULE, "send_to": []})
    send_series(node, synthetic_ct(shape=(3, 16, 16), seed=26), tmp_path / "sent")
    jobs = jobs_factory(node.settings)
    age_series(node.db_url)
    (run_id,) = jobs.route().runs_queued
    with sessions() as session:
        # a worker took the job, started the run and was killed; its row was pruned (worker_id NULL)
        session.execute(text("UPDATE procrastinate_jobs SET status = 'doing' WHERE task_name = 'process_series'"))
        session.execute(text("UPDATE run SET state = 'running', attempts = 1 WHERE id = :id"), {"id": run_id})
        defer.defer_in_transaction(
            session=session, task_name=defer.RETRY_STALLED_JOBS, queue="completion", timestamp=0
        )
        session.commit()
    jobs.drain()
    run = _one(sessions, Run)
    assert (run.state, run.attempts) == (RunState.DONE, 2), run.failure_reason
    assert {j["task_name"]: j["status"] for j in jobs.job_rows()}["process_series"] == "succeeded"
