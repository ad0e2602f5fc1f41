"""Run a procrastinate worker: in the foreground (``dicomnode worker``) or in a background thread
(``dicomnode serve`` in embedded mode, the completion sweep included)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

import procrastinate
from procrastinate.worker import Worker

from dicomnode.config import Settings
from dicomnode.jobs.app import Services, build_app

__all__ = ["BackgroundWorker", "quiet_procrastinate", "run_foreground", "worker_options"]

logger = logging.getLogger(__name__)


def worker_options(settings: Settings, *, queues: Sequence[str] | None, name: str) -> dict[str, Any]:
    """Worker arguments from ``settings.jobs`` (queues, concurrency, polling, heartbeats)."""
    jobs = settings.jobs
    return {
        "queues": list(queues) if queues else [q.value for q in jobs.queues],
        "concurrency": jobs.concurrency,
        "name": name,
        "fetch_job_polling_interval": jobs.poll_interval,
        "abort_job_polling_interval": max(jobs.poll_interval, 5.0),
        "delete_jobs": "successful" if jobs.delete_succeeded_jobs else "never",
        "stalled_worker_timeout": jobs.stalled_worker_seconds,
        "update_heartbeat_interval": max(1.0, jobs.stalled_worker_seconds / 3),
    }


def quiet_procrastinate() -> None:
    """Keep procrastinate's INFO lines (three a second with a 1 s sweep) out of the log, unless DEBUG.

    Our own records say what matters: run queued, run done, delivery sent or failed.
    """
    procrastinate_logger = logging.getLogger("procrastinate")
    if procrastinate_logger.level == logging.NOTSET and logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        procrastinate_logger.setLevel(logging.WARNING)


def run_foreground(settings: Settings, url: str, *, queues: Sequence[str] | None = None, name: str = "worker") -> None:
    """Run a worker until SIGINT/SIGTERM (procrastinate's handlers stop it after the running jobs)."""
    quiet_procrastinate()
    services = Services(settings=settings, url=url)
    app = build_app(settings, url, services=services)
    try:
        app.run_worker(**worker_options(settings, queues=queues, name=name))
    finally:
        services.close()


class BackgroundWorker:
    """A worker on its own event loop in a daemon thread; ``stop()`` lets running jobs finish."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        *,
        queues: Sequence[str] | None = None,
        name: str = "embedded",
        app: procrastinate.App | None = None,
    ) -> None:
        self.services = Services(settings=settings, url=url)
        self.app = app or build_app(settings, url, services=self.services)
        self._options = worker_options(settings, queues=queues, name=name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: Worker | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dicomnode-{name}-worker", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> BackgroundWorker:
        """Start the thread and wait until the worker is set up (or failed)."""
        quiet_procrastinate()
        self._thread.start()
        self._ready.wait(timeout=30)
        if self.error is not None:
            raise RuntimeError(f"job worker failed to start: {self.error}") from self.error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            async with self.app.open_async():
                self.app.perform_import_paths()
                self._worker = Worker(app=self.app, install_signal_handlers=False, **self._options)
                self._ready.set()
                await self._worker.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start(), or logged
            self.error = exc
            logger.error("job worker stopped on an error", exc_info=exc)
        finally:
            self._ready.set()
            self.services.close()

    def stop(self, timeout: float = 30) -> None:
        """Ask the worker to stop after its running jobs, and wait for the thread."""
        if self._loop is not None and self._worker is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._worker.stop)
        self._thread.join(timeout=timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
