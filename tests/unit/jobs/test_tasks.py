"""Task registration and the retry policy (no database: the app is built, never opened)."""

from __future__ import annotations

import pytest
from procrastinate.jobs import Job

from ai_pipelines.base import PipelineInputError
from dicomnode.config import Settings
from dicomnode.errors import DestinationUnreachable
from dicomnode.jobs import app as jobs_app
from dicomnode.jobs import tasks
from dicomnode.routing.rules import RuleInvalid


def _job(attempts: int) -> Job:
    return Job(id=1, queue="cpu", lock=None, queueing_lock=None, task_name="process_series", attempts=attempts)


def test_backoff_doubles_up_to_the_cap_then_gives_up() -> None:
    backoff = tasks.Backoff(retries=5, base=2, cap=10)
    waits = []
    for attempts in range(6):
        decision = backoff.get_retry_decision(exception=DestinationUnreachable(), job=_job(attempts))
        waits.append(None if decision is None else decision.retry_at)
    assert waits[5] is None and all(w is not None for w in waits[:5])
    spans = [(w - waits[0]).total_seconds() for w in waits[:5]]  # type: ignore[operator]
    assert [round(s) for s in spans] == [0, 2, 6, 8, 8]  # waits of 2, 4, 8, 10, 10 s


@pytest.mark.parametrize("error", [PipelineInputError("12 slices; needs >= 32"), RuleInvalid()])
def test_permanent_failures_are_not_retried(error: Exception) -> None:
    assert tasks.Backoff(retries=5, base=1, cap=1).get_retry_decision(exception=error, job=_job(0)) is None


def test_the_app_registers_the_tasks_and_the_periodic_sweep() -> None:
    settings = Settings(jobs={"completion_interval": 2, "run_max_attempts": 1})
    app = jobs_app.build_app(settings, "postgresql://nobody@127.0.0.1:1/none")
    assert {"check_completion", "process_series", "deliver", "retry_stalled_jobs"} <= set(app.tasks)
    assert app.tasks["process_series"].retry_strategy is None, "one attempt: no retry"
    assert app.tasks["deliver"].queue == "dispatch"
    cron = {key: task.cron for key, task in app.periodic_registry.periodic_tasks.items()}
    assert cron[("check_completion", "sweep")] == "* * * * * */2"


def test_conninfo_accepts_every_spelling() -> None:
    assert jobs_app.conninfo("postgresql+psycopg://u@h/db") == "postgresql://u@h/db"
    assert jobs_app.conninfo("postgres://u@h/db") == "postgresql://u@h/db"
