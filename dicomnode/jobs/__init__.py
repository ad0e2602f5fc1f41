"""Jobs: the procrastinate app and the steps of the path of one study that run as jobs.

Modules: ``app`` (the App, built from settings by a factory; the services tasks share),
``defer`` (defer a job by name inside the caller's SQLAlchemy transaction), ``tasks`` (thin
tasks: check_completion, process_series, deliver, retry_stalled_jobs), ``route`` (quiet series
-> queued runs), ``process`` (the one place that joins store, ai_pipelines, provenance and
dispatch), ``worker`` (run a worker in the foreground or in a background thread).

May import: ``dicomnode.routing``, ``dicomnode.dispatch``, ``dicomnode.provenance``, everything
below them, and ``ai_pipelines``. Never ``web``, ``serve`` or ``cli``. Importing this package
has no side effects.
"""

from __future__ import annotations
