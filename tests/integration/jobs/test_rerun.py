"""Generations: new instances after processing re-run the rule (or not), and outputs never feed back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import func, select, update

from ai_pipelines.synthetic.series import synthetic_ct, synthetic_mr
from dicomnode.db.models import RuleVersion, Run, RunInput, RunState, Series, SeriesCompletion
from tests.integration.jobs.loop import MONTAGE_RULE, age_series, jobs_section, seed_rules, send_series


def _runs(sessions) -> list[Run]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return list(session.scalars(select(Run).order_by(Run.id)).all())


def test_new_instances_after_processing_run_again_and_supersede(
    node_factory, sessions, jobs_factory, tmp_path: Path
) -> None:
    node = node_factory(jobs=jobs_section())
    seed_rules(sessions, MONTAGE_RULE)
    first, later = synthetic_ct(shape=(4, 16, 16), seed=8)[:3], synthetic_ct(shape=(4, 16, 16), seed=8)[3:]
    send_series(node, first, tmp_path / "a")
    jobs = jobs_factory(node.settings)
    age_series(node.db_url)
    jobs.route()
    jobs.drain()
    age_series(node.db_url)
    assert jobs.route().runs_queued == (), "nothing new arrived: no second run"

    send_series(node, later, tmp_path / "b")
    age_series(node.db_url)
    assert len(jobs.route().runs_queued) == 1
    jobs.drain()

    old, new = _runs(sessions)
    assert (old.generation, new.generation) == (1, 2)
    assert old.state is new.state is RunState.DONE
    assert old.superseded_by_fk == new.id and new.superseded_by_fk is None
    with sessions() as session:
        assert session.query(RunInput).filter_by(run_fk=old.id).count() == 3
        assert session.query(RunInput).filter_by(run_fk=new.id).count() == 4


def test_a_rule_without_rerun_leaves_new_instances_alone(node_factory, sessions, jobs_factory, tmp_path: Path) -> None:
    node = node_factory(jobs=jobs_section())
    seed_rules(sessions, {**MONTAGE_RULE, "rerun_on_new_instances": False})
    datasets = synthetic_ct(shape=(3, 16, 16), seed=9)
    send_series(node, datasets[:2], tmp_path / "a")
    jobs = jobs_factory(node.settings)
    age_series(node.db_url)
    assert len(jobs.route().runs_queued) == 1
    send_series(node, datasets[2:], tmp_path / "b")
    age_series(node.db_url)
    assert jobs.route().runs_queued == ()
    assert len(_runs(sessions)) == 1


def test_outputs_are_never_routed_again_unless_another_rule_opts_in(
    node_factory, sessions, jobs_factory, tmp_path: Path
) -> None:
    node = node_factory(jobs=jobs_section())
    everything = {"name": "everything", "when": {"attr": "Modality", "exists": True}, "run": "key_image_montage",
                  "quiet_seconds": 1}
    seed_rules(sessions, everything)
    send_series(node, synthetic_ct(shape=(3, 16, 16), seed=10), tmp_path / "a")
    jobs = jobs_factory(node.settings)
    age_series(node.db_url)
    jobs.route()
    jobs.drain()
    (run,) = _runs(sessions)
    assert run.state is RunState.DONE, run.failure_reason
    with sessions() as session:
        output_series = session.scalars(select(Series).where(Series.source_run_fk == run.id)).one()

    age_series(node.db_url)
    assert jobs.route().runs_queued == (), "an output matched a rule and was routed"
    with sessions() as session:
        done = session.get(SeriesCompletion, output_series.id)
        assert done is not None and done.routed_at is not None

    # a rule that opts in routes outputs, but the rule that made them still does not
    seed_rules(sessions, everything, {**everything, "name": "outputs-too", "route_own_outputs": True})
    send_series(node, synthetic_ct(shape=(3, 16, 16), seed=11), tmp_path / "b")  # a new series, to route both
    age_series(node.db_url)
    with sessions() as session:  # an instance arriving late on the output series opens a new generation
        session.execute(
            update(Series)
            .where(Series.id == output_series.id)
            .values(last_received_at=func.now() - dt.timedelta(seconds=30))
        )
        session.commit()
    jobs.route()
    with sessions() as session:
        by_rule = session.execute(
            select(Run.series_instance_uid, RuleVersion.body["name"].astext)
            .join(RuleVersion, RuleVersion.id == Run.rule_version_fk)
        ).all()
    on_output = sorted(name for uid, name in by_rule if uid == output_series.series_instance_uid)
    assert on_output == ["outputs-too"]
    assert len({uid for uid, _ in by_rule}) == 3  # the first series, the new one, and the output series


def test_a_series_waiting_for_a_longer_quiet_period_blocks_no_other(
    node_factory, sessions, jobs_factory, tmp_path: Path
) -> None:
    node = node_factory(jobs=jobs_section(completion_batch=1))
    slow = {"name": "mr-slow", "when": {"attr": "Modality", "equals": "MR"}, "run": "key_image_montage",
            "quiet_seconds": 3600}
    seed_rules(sessions, slow, MONTAGE_RULE)
    send_series(node, synthetic_mr(shape=(2, 16, 16), seed=12), tmp_path / "mr")
    jobs = jobs_factory(node.settings)
    age_series(node.db_url)
    assert jobs.route().runs_queued == (), "the MR series waits for its hour"
    send_series(node, synthetic_ct(shape=(2, 16, 16), seed=13), tmp_path / "ct")
    age_series(node.db_url)
    assert len(jobs.route().runs_queued) == 1, "the CT series was starved by the waiting MR series"
    with sessions() as session:
        waiting = session.scalars(select(SeriesCompletion).where(SeriesCompletion.routed_at.is_(None))).all()
    assert len(waiting) == 1
