"""A job is deferred in the SQLAlchemy transaction that causes it: rolled back together, committed together."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.db.models import Run
from dicomnode.jobs import defer, route
from tests.integration.jobs.loop import MONTAGE_RULE, age_series, jobs_section, seed_rules, send_series


def _jobs(session) -> int:  # type: ignore[no-untyped-def]
    return int(session.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar_one())


def test_a_rolled_back_transaction_leaves_no_job(sessions) -> None:
    with sessions() as session:
        job_id = defer.defer_in_transaction(
            session=session, task_name=defer.DELIVER, queue="dispatch", queueing_lock="delivery:1", delivery_id=1
        )
        assert job_id > 0
        assert _jobs(session) == 1, "the job is visible inside its transaction"
        session.rollback()
    with sessions() as session:
        assert _jobs(session) == 0


def test_a_committed_transaction_keeps_its_job(sessions) -> None:
    with sessions() as session:
        job_id = defer.defer_in_transaction(session=session, task_name=defer.DELIVER, queue="dispatch", delivery_id=7)
        session.commit()
    with sessions() as session:
        row = session.execute(
            text("SELECT task_name, queue_name, status, args FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
        ).one()
        assert tuple(row) == ("deliver", "dispatch", "todo", {"delivery_id": 7})


def test_a_sweep_rolled_back_queues_neither_runs_nor_jobs(node_factory, sessions, tmp_path: Path) -> None:
    node = node_factory(jobs=jobs_section())
    seed_rules(sessions, MONTAGE_RULE)
    send_series(node, synthetic_ct(shape=(3, 16, 16), seed=1), tmp_path / "sent")
    age_series(node.db_url)
    with sessions() as session:
        summary = route.route_session(session=session, settings=node.settings)
        assert len(summary.runs_queued) == 1 and _jobs(session) == 1
        session.rollback()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0
        assert _jobs(session) == 0
        # and the series is still waiting to be routed
        summary = route.route_session(session=session, settings=node.settings)
        session.commit()
    assert len(summary.runs_queued) == 1


@pytest.mark.parametrize("sweeps", [2, 3])
def test_sweeping_again_queues_no_second_run(node_factory, sessions, tmp_path: Path, sweeps: int) -> None:
    node = node_factory(jobs=jobs_section())
    seed_rules(sessions, MONTAGE_RULE)
    send_series(node, synthetic_ct(shape=(3, 16, 16), seed=2), tmp_path / "sent")
    age_series(node.db_url)
    queued = []
    for _ in range(sweeps):
        with sessions() as session:
            queued.extend(route.route_session(session=session, settings=node.settings).runs_queued)
            session.commit()
    assert len(queued) == 1
    with sessions() as session:
        assert _jobs(session) == 1


def test_migration_0002_installed_procrastinates_schema(sessions) -> None:
    from importlib.metadata import version

    with sessions() as session:
        comment = session.execute(text("SELECT obj_description('procrastinate_jobs'::regclass)")).scalar_one()
        functions = session.execute(
            text("SELECT count(*) FROM pg_proc WHERE proname = 'procrastinate_fetch_job_v2'")
        ).scalar_one()
    assert comment == f"procrastinate {version('procrastinate')}"
    assert functions == 1
