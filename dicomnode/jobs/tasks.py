"""The tasks, thin: each calls one function of ``route``, ``process`` or ``dispatch.deliver``.

Series completion is a **periodic sweep**, not one scheduled check per series. The issue prefers
"one pending check per series, re-armed when more instances come", but the only code that sees
an instance arrive is ``net``/``store``, which must never enqueue (STYLE 2.1), and re-arming
from there would cost a job write per instance on the ingest hot path. So ``check_completion``
runs every ``jobs.completion_interval`` seconds (procrastinate's periodic deferrer; its
``queueing_lock`` keeps at most one sweep waiting, however many workers run), and the query
over ``series.last_received_at`` (``routing.completion``) is the "pending check": a series is
picked up once, when it has been quiet for its rule's period, and again only after new instances
(a new generation). Latency is at most one interval after the quiet period.

Failures: ``PipelineInputError``, ``RuleInvalid``, an unknown pipeline or destination, and
bad parameters fail for good (stored on the run or delivery row); anything else is retried with
exponential backoff capped at ``jobs.retry_max_backoff_seconds``, up to the configured attempts.
A job whose worker died (no heartbeat for ``jobs.stalled_worker_seconds``) is put back in its
queue by ``retry_stalled_jobs``.
"""

from __future__ import annotations

import logging

import procrastinate
from procrastinate import JobContext, RetryDecision, RetryStrategy
from procrastinate.jobs import Job

from ai_pipelines.base import PipelineInputError
from ai_pipelines.registry import UnknownPipeline
from dicomnode.config import JobQueue
from dicomnode.dispatch import deliver as delivering
from dicomnode.errors import DestinationUnreachable, UnknownDestination
from dicomnode.jobs import defer, process, route
from dicomnode.jobs.app import Services
from dicomnode.routing.rules import RuleInvalid

__all__ = ["PERMANENT", "Backoff", "register"]

logger = logging.getLogger(__name__)

#: Exceptions that retrying cannot fix.
PERMANENT: tuple[type[BaseException], ...] = (
    PipelineInputError,
    RuleInvalid,
    UnknownPipeline,
    UnknownDestination,
    process.PermanentFailure,
)


class Backoff(RetryStrategy):
    """Exponential backoff, capped, that never retries a :data:`PERMANENT` failure.

    The n-th retry waits ``min(base * 2 ** (n - 1), cap)`` seconds; ``max_attempts`` counts
    retries (procrastinate's meaning), so a job runs at most ``max_attempts + 1`` times.
    """

    def __init__(self, *, retries: int, base: float, cap: float) -> None:
        super().__init__(max_attempts=retries)
        self.base = base
        self.cap = cap

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, PERMANENT) or job.attempts >= (self.max_attempts or 0):
            return None
        return RetryDecision(retry_in={"seconds": min(self.base * 2**job.attempts, self.cap)})


def register(app: procrastinate.App, services: Services) -> None:
    """Register the tasks on ``app``; they use ``services`` and ``services.settings.jobs``."""
    jobs = services.settings.jobs

    def backoff(attempts: int) -> Backoff | bool:
        # procrastinate reads max_attempts=0 as "retry for ever": one attempt means no retry
        if attempts <= 1:
            return False
        return Backoff(retries=attempts - 1, base=jobs.retry_backoff_seconds, cap=jobs.retry_max_backoff_seconds)

    @app.periodic(cron=f"* * * * * */{jobs.completion_interval}", periodic_id="sweep")
    @app.task(name=defer.CHECK_COMPLETION, queue=JobQueue.COMPLETION.value, queueing_lock=defer.CHECK_COMPLETION)
    def check_completion(timestamp: int) -> None:
        """Route the series that have gone quiet: queue a run per due rule and pipeline."""
        route.route_quiet_series(services=services)

    @app.task(
        name=defer.PROCESS_SERIES, queue=JobQueue.CPU.value, retry=backoff(jobs.run_max_attempts), pass_context=True
    )
    def process_series(context: JobContext, run_id: int) -> None:
        """Run a pipeline on a series, store and record its outputs, plan their deliveries."""
        final = context.job.attempts + 1 >= jobs.run_max_attempts
        process.process_series(services=services, run_id=run_id, final=final)

    @app.task(
        name=defer.DELIVER, queue=JobQueue.DISPATCH.value, retry=backoff(jobs.delivery_max_attempts), pass_context=True
    )
    def deliver(context: JobContext, delivery_id: int) -> None:
        """Send one output series to one destination; a failure raises so that it is retried."""
        final = context.job.attempts + 1 >= jobs.delivery_max_attempts
        outcome = delivering.deliver(
            sessions=services.sessions,
            delivery_id=delivery_id,
            destinations_config=services.settings.destinations,
            store_root=services.settings.store.root.resolve(),
            calling_ae_title=services.settings.net.ae_title,
            final=final,
        )
        if outcome.permanent:
            raise UnknownDestination(outcome.error)
        if not outcome.ok:
            raise DestinationUnreachable(outcome.error)

    @app.periodic(cron="* * * * * */10", periodic_id="stalled")
    @app.task(
        name=defer.RETRY_STALLED_JOBS, queue=JobQueue.COMPLETION.value, queueing_lock=defer.RETRY_STALLED_JOBS,
        pass_context=True,
    )
    async def retry_stalled_jobs(context: JobContext, timestamp: int) -> None:
        """Put back the jobs of workers that stopped sending heartbeats (killed, host lost)."""
        manager = context.app.job_manager
        for job in await manager.get_stalled_jobs(seconds_since_heartbeat=jobs.stalled_worker_seconds):
            logger.warning("stalled job retried", extra={"job_id": job.id, "task": job.task_name})
            await manager.retry_job(job)
