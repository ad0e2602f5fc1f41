"""Quiet series -> queued runs: the step between series completion and processing.

One transaction per sweep: lock the quiet series (``routing.completion``), match the current
rules, insert ``Run(state=queued)`` rows (idempotent per series x rule version x pipeline x
generation) and defer ``process_series(run_id)`` on the same connection, so a rollback leaves
neither a run nor a job behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from dicomnode.config import JobQueue, Settings
from dicomnode.jobs import defer
from dicomnode.jobs.app import Services
from dicomnode.logs import bound
from dicomnode.provenance import record
from dicomnode.routing import completion, versions

__all__ = ["RouteSummary", "queue_for", "route_quiet_series", "route_session"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RouteSummary:
    """What one sweep did."""

    series_seen: int
    runs_queued: tuple[int, ...]


def queue_for(settings: Settings, pipeline_name: str) -> str:
    """The queue a pipeline's runs go to: gpu for ``jobs.gpu_pipelines``, cpu otherwise."""
    return (JobQueue.GPU if pipeline_name in settings.jobs.gpu_pipelines else JobQueue.CPU).value


def route_session(*, session: Session, settings: Settings) -> RouteSummary:
    """Route the quiet series in the caller's transaction (the caller commits or rolls back)."""
    default_quiet = settings.jobs.quiet_seconds
    rules = [stored for stored in versions.current_rules(session=session) if stored.rule.enabled]
    min_quiet = min([default_quiet, *(s.rule.quiet_seconds for s in rules if s.rule.quiet_seconds)])
    quiet = completion.find_quiet_series(
        session=session,
        store_root=settings.store.root.resolve(),
        min_quiet_seconds=min_quiet,
        limit=settings.jobs.completion_batch,
    )
    queued: list[int] = []
    for series in quiet:
        due = completion.due_rules(series, rules, default_quiet_seconds=default_quiet)
        with bound(series_instance_uid=series.series_instance_uid, study_instance_uid=series.study_instance_uid):
            for stored in due.ready:
                for call in stored.rule.run:
                    if not stored.rule.rerun_on_new_instances and record.has_run(
                        session=session, series_id=series.series_id, rule_id=stored.rule_id, pipeline_name=call.pipeline
                    ):
                        continue
                    queue = queue_for(settings, call.pipeline)
                    run_id = record.create_run(
                        session=session,
                        series_id=series.series_id,
                        series_instance_uid=series.series_instance_uid,
                        rule_version_id=stored.version_id,
                        generation=series.generation,
                        pipeline_name=call.pipeline,
                        params=call.params,
                        queue=queue,
                    )
                    if run_id is None:
                        continue  # queued by an earlier sweep of this generation
                    job_id = defer.defer_in_transaction(
                        session=session, task_name=defer.PROCESS_SERIES, queue=queue, queueing_lock=f"run:{run_id}",
                        run_id=run_id,
                    )
                    record.set_job(session=session, run_id=run_id, job_id=job_id)
                    queued.append(run_id)
                    logger.info(
                        "run queued",
                        extra={"run_id": run_id, "rule": stored.name, "rule_version": stored.version,
                               "pipeline": call.pipeline, "generation": series.generation, "queue": queue},
                    )
            if not due.waiting and not series.unreadable:
                completion.mark_routed(session=session, series_id=series.series_id)
    return RouteSummary(series_seen=len(quiet), runs_queued=tuple(queued))


def route_quiet_series(*, services: Services) -> RouteSummary:
    """One completion sweep in its own transaction (the ``check_completion`` task)."""
    with services.sessions() as session:
        summary = route_session(session=session, settings=services.settings)
        session.commit()
    return summary
