"""Commands that run the node: serve, worker, db upgrade, config show."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dicomnode.cli.common import (
    ConfigOption,
    VerboseOption,
    _fail,
    _settings,
    app,
    config_app,
    db_app,
    out,
)
from dicomnode.logs import setup_logging


@app.command()
def serve(
    config: ConfigOption = None,
    port: Annotated[int | None, typer.Option(help="DIMSE port (net.port).")] = None,
    ae_title: Annotated[str | None, typer.Option(help="Our AE title (net.ae_title).")] = None,
    processes: Annotated[int | None, typer.Option(help="SCP processes sharing the port; 0 = one per core.")] = None,
    store: Annotated[Path | None, typer.Option(help="Store root directory (store.root).")] = None,
    log_format: Annotated[str | None, typer.Option(help="console or json (log.format).")] = None,
    debug_dimse: Annotated[bool, typer.Option(help="Log pynetdicom's DIMSE messages.")] = False,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run a job worker in this process (embedded mode).")
    ] = True,
    web: Annotated[bool, typer.Option("--web/--no-web", help="Serve DICOMweb and /healthz on web.port.")] = True,
    http_port: Annotated[int | None, typer.Option(help="HTTP port (web.port).")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the node: DIMSE SCP (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET), DICOMweb, and a job worker.

    The worker runs the completion sweep, the pipelines and the deliveries; a distributed node
    runs front ends with --no-worker and `dicomnode worker` elsewhere.

    With no db.url configured, a PostgreSQL server is started by pgserver in db.embedded_dir
    and migrated automatically.
    """
    net = {k: v for k, v in {"port": port, "ae_title": ae_title, "processes": processes}.items() if v is not None}
    log = {k: v for k, v in {"format": log_format, "debug_dimse": debug_dimse or None}.items() if v is not None}
    settings = _settings(
        config,
        verbose,
        net=net,
        store={"root": store} if store else None,
        log=log,
        web={"port": http_port} if http_port else None,
    )
    setup_logging(level=settings.log.level, fmt=settings.log.format, debug_dimse=settings.log.debug_dimse)
    from dicomnode import serve as serving
    from dicomnode.routing.rules import RuleInvalid

    try:
        serving.serve(settings, worker=worker, web=web)
    except serving.DatabaseNotReady as exc:
        _fail(str(exc), verbose=verbose)
    except RuleInvalid as exc:
        _fail(f"{settings.jobs.rules_file} (jobs.rules_file): {exc}", verbose=verbose, code=2)
    except OSError as exc:
        _fail(
            f"cannot serve: {exc} (is port {settings.net.port} or {settings.web.port} in use? "
            "see net.port and web.port)",
            verbose=verbose,
        )


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None, revision: str = "head", verbose: VerboseOption = False) -> None:
    """Apply migrations up to REVISION (default: head)."""
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.db import migrate
    from dicomnode.serve import database_url

    try:
        with database_url(settings, migrate_embedded=False) as url:
            migrate.upgrade(url, revision)
            out.print(f"database at revision {migrate.current_revision(url)}")
    except Exception as exc:
        _fail(f"migration failed: {exc}", verbose=verbose)


@config_app.command("show")
def config_show(config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """Print the settings in effect (YAML file, DICOMNODE_* environment, defaults)."""
    settings = _settings(config, verbose)
    out.print_json(settings.model_dump_json())


# --- jobs, rules, trace (the AI loop) -------------------------------------------------------
# Imports are local to each command so that `dicomnode --help` stays fast and never loads torch.


@app.command()
def worker(
    config: ConfigOption = None,
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="Queue to serve (repeat); default: jobs.queues.")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs at once (jobs.concurrency).")] = None,
    name: Annotated[str, typer.Option(help="Worker name in logs.")] = "worker",
    log_format: Annotated[str | None, typer.Option(help="console or json (log.format).")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run a job worker: pipeline runs (gpu, cpu), deliveries (dispatch), the completion sweep.

    Any number of workers on any number of machines may share the node's PostgreSQL; each job
    runs once. Stop with Ctrl-C or SIGTERM: running jobs finish first.
    """
    from dicomnode.config import JobQueue

    known = {q.value for q in JobQueue}
    for name_ in queue or []:
        if name_ not in known:
            _fail(f"unknown queue {name_!r}; expected one of {', '.join(sorted(known))}", code=2)
    jobs = {"concurrency": concurrency} if concurrency else None
    log = {"format": log_format} if log_format else None
    settings = _settings(config, verbose, jobs=jobs, log=log)
    setup_logging(level=settings.log.level, fmt=settings.log.format, debug_dimse=settings.log.debug_dimse)
    from dicomnode.jobs import worker as workers
    from dicomnode.routing.rules import RuleInvalid
    from dicomnode.serve import DatabaseNotReady, check_schema, database_url, seed_rules

    try:
        with database_url(settings) as url:
            check_schema(url)
            seed_rules(settings, url)
            workers.run_foreground(settings, url, queues=queue or None, name=name)
    except DatabaseNotReady as exc:
        _fail(str(exc), verbose=verbose)
    except RuleInvalid as exc:
        _fail(f"{settings.jobs.rules_file} (jobs.rules_file): {exc}", verbose=verbose, code=2)
