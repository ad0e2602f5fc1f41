"""The ``dicomnode`` command: loads settings once and hands them to the parts it runs."""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dicomnode import __version__, cli_tokens
from dicomnode.config import ConfigError, Settings, load_settings
from dicomnode.logs import setup_logging

app = typer.Typer(
    help="dicomnode: a DICOM node that receives, files and indexes studies and routes them to AI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema: apply migrations, show the current revision.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration: show the values in effect.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

console = Console(stderr=True)
out = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (default: $DICOMNODE_CONFIG or conf/dicomnode.yaml)."),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")]


def _fail(message: str, *, verbose: bool = False, code: int = 1) -> NoReturn:
    if verbose:
        console.print_exception()
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _settings(config: Path | None, verbose: bool = False, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v})
    except ConfigError as exc:
        _fail(str(exc), verbose=verbose, code=2)


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()


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


@app.command()
def echo(
    peer: Annotated[str, typer.Argument(help="AE@host:port of the peer, e.g. ORTHANC@127.0.0.1:4242")],
    calling_ae: Annotated[str, typer.Option(help="Our calling AE title.")] = "DICOMNODE",
    verbose: VerboseOption = False,
) -> None:
    """Send a C-ECHO (verification) to PEER."""
    from dicomnode.net import scu, status

    try:
        target = scu.Peer.parse(peer)
        code = scu.echo(target, calling_ae_title=calling_ae)
    except (ValueError, ConnectionError, OSError) as exc:
        _fail(str(exc), verbose=verbose)
    out.print(f"C-ECHO {target}: 0x{code:04X} {status.describe(code)}")
    raise typer.Exit(0 if code == status.SUCCESS else 1)


@app.command()
def send(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).", exists=True)],
    to: Annotated[str, typer.Option("--to", help="AE@host:port of the receiver.")],
    calling_ae: Annotated[str, typer.Option(help="Our calling AE title.")] = "DICOMNODE",
    verbose: VerboseOption = False,
) -> None:
    """C-STORE files to a peer, as stored, and print a summary of the statuses."""
    from dicomnode.net import scu, status

    try:
        target = scu.Peer.parse(to)
    except ValueError as exc:
        _fail(str(exc))
    found = scu.find_files(paths)
    if not found:
        _fail("no files found under the given paths")
    failures: list[scu.SendResult] = []
    with Progress(
        TextColumn("[bold]C-STORE[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(str(target), total=len(found))

        def on_result(result: scu.SendResult) -> None:
            progress.advance(task)
            if not result.ok:
                failures.append(result)

        results = scu.send_files(target, found, calling_ae_title=calling_ae, on_result=on_result)
    counts = Counter(
        (f"0x{r.status:04X} {status.describe(r.status)}" if r.status is not None else "not sent") for r in results
    )
    table = Table(title=f"{len(results)} files to {target}")
    table.add_column("status")
    table.add_column("files", justify="right")
    for name, count in counts.most_common():
        table.add_row(name, str(count))
    out.print(table)
    for failure in failures[:20]:
        out.print(f"[yellow]{failure.path}[/yellow]: {failure.comment or status.describe(failure.status or 0)}")
    if len(failures) > 20:
        out.print(f"... and {len(failures) - 20} more")
    raise typer.Exit(0 if not failures else 1)


@app.command()
def studies(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(help="Most recent studies to show.")] = 50,
    verbose: VerboseOption = False,
) -> None:
    """List studies in the index, most recently received first."""
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.serve import database_url
    from dicomnode.store import queries

    try:
        with database_url(settings) as url:
            rows = queries.list_studies(url=url, limit=limit)
    except Exception as exc:
        _fail(f"cannot read the index: {exc}", verbose=verbose)
    columns = ("Study Instance UID", "Date", "Patient ID", "Modalities", "Description", "Series", "Instances")
    values = [
        (
            row.study_instance_uid,
            row.study_date,
            row.patient_id,
            "\\".join(row.modalities),
            row.study_description,
            str(row.series_count),
            str(row.instance_count),
            row.last_received,
        )
        for row in rows
    ]
    if not out.is_terminal:
        # Piped (grep, cut, cron): tab-separated lines with whole UIDs, no table art.
        print("\t".join((*columns, "Last received")))
        for line in values:
            print("\t".join(line))
        return
    table = Table(title=f"{len(rows)} studies")
    table.add_column(columns[0], no_wrap=True, overflow="fold", min_width=20)
    for column in (*columns[1:], "Last received"):
        table.add_column(column)
    for line in values:
        table.add_row(*line)
    out.print(table)


@config_app.command("show")
def config_show(config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """Print the settings in effect (YAML file, DICOMNODE_* environment, defaults)."""
    settings = _settings(config, verbose)
    out.print_json(settings.model_dump_json())


# --- jobs, rules, trace (the AI loop) -------------------------------------------------------
# Imports are local to each command so that `dicomnode --help` stays fast and never loads torch.

jobs_app = typer.Typer(help="Jobs: list them with their run or delivery; retry a failed one.")
rules_app = typer.Typer(help="Routing rules: import, export, list, dry-run, history, restore.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(rules_app, name="rules")

ActorOption = Annotated[str | None, typer.Option("--author", help="Who makes the change (default: cli:<login>).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why, for the audit log.")]


def _actor(author: str | None) -> str:
    import getpass

    if author:
        return author
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@contextlib.contextmanager
def _session(settings: Settings, verbose: bool) -> Iterator[Any]:
    """A session on the node's database (embedded or configured), closed afterwards."""
    from dicomnode.db.session import make_engine, make_sessionmaker
    from dicomnode.serve import DatabaseNotReady, check_schema, database_url

    with database_url(settings) as url:
        try:
            check_schema(url)
        except DatabaseNotReady as exc:
            _fail(str(exc), verbose=verbose)
        engine = make_engine(url, pool_size=1, application_name="dicomnode-cli")
        try:
            with make_sessionmaker(engine)() as session:
                yield session
        finally:
            engine.dispose()


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


@jobs_app.callback(invoke_without_command=True)
def jobs_list(
    ctx: typer.Context,
    config: ConfigOption = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="todo, doing, succeeded, failed, ... (repeat).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Most recent jobs to show.")] = 50,
    verbose: VerboseOption = False,
) -> None:
    """List jobs, newest first, with the run or delivery each works on and its last error."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.jobs import admin

    try:
        with _session(settings, verbose) as session:
            rows = admin.list_jobs(session=session, statuses=status or (), limit=limit)
    except ValueError as exc:
        _fail(str(exc), code=2)
    table = Table(title=f"{len(rows)} jobs")
    for column in ("id", "task", "queue", "status", "attempts", "scheduled", "for", "state", "error"):
        table.add_column(column)
    for row in rows:
        scheduled = row.scheduled_at.strftime("%Y-%m-%d %H:%M:%S") if row.scheduled_at else ""
        table.add_row(
            str(row.job_id),
            row.task_name,
            row.queue,
            row.status,
            str(row.attempts),
            scheduled,
            row.subject,
            row.subject_state,
            row.error[:80],
        )
    out.print(table)


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[int, typer.Argument(help="Id of a failed job (see `dicomnode jobs --status failed`).")],
    config: ConfigOption = None,
    author: ActorOption = None,
    reason: ReasonOption = "",
    verbose: VerboseOption = False,
) -> None:
    """Retry a failed job; a pipeline run or delivery gets a fresh set of attempts."""
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.jobs import admin

    with _session(settings, verbose) as session:
        try:
            new_id = admin.retry_job(session=session, job_id=job_id, actor=_actor(author), reason=reason)
        except (LookupError, ValueError) as exc:
            _fail(str(exc), verbose=verbose)
        session.commit()
    out.print(f"job {job_id} retried as job {new_id}")


def _load_rules_file(path: Path) -> list[Any]:
    from dicomnode.routing.rules import RuleInvalid, load_rules

    try:
        return load_rules(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}", code=2)
    except RuleInvalid as exc:
        console.print(f"[red]error:[/red] {path}: {len(exc.errors)} invalid rule field(s), nothing imported")
        for error in exc.errors:
            console.print(f"  {error.path}: {error.reason}")
        raise typer.Exit(2) from None


@rules_app.command("import")
def rules_import(
    path: Annotated[Path, typer.Argument(help="YAML rules file (a list of rules).")],
    config: ConfigOption = None,
    replace: Annotated[bool, typer.Option(help="Also delete the rules the file does not list.")] = False,
    author: ActorOption = None,
    reason: ReasonOption = "",
    verbose: VerboseOption = False,
) -> None:
    """Create or version the file's rules (all or nothing; invalid rules are refused with path and reason)."""
    rules = _load_rules_file(path)
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.provenance import audit
    from dicomnode.routing import versions

    actor = _actor(author)
    with _session(settings, verbose) as session:
        summary = versions.import_rules(
            session=session, rules=rules, author=actor, reason=reason or f"imported from {path.name}", replace=replace
        )
        for action, names in (
            ("rule.create", summary.created),
            ("rule.update", summary.updated),
            ("rule.delete", summary.deleted),
        ):
            for name in names:
                audit.record(
                    session=session,
                    actor=actor,
                    action=action,
                    target=f"rule:{name}",
                    reason=reason,
                    detail={"source": str(path)},
                )
        session.commit()
    out.print(
        f"{len(summary.created)} created, {len(summary.updated)} updated, {len(summary.unchanged)} unchanged, "
        f"{len(summary.deleted)} deleted"
    )


@rules_app.command("export")
def rules_export(
    config: ConfigOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Write the current rules as YAML (what `rules import` reads)."""
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.routing import versions

    with _session(settings, verbose) as session:
        document = versions.export_rules(session=session)
    if output is None:
        sys.stdout.write(document)
    else:
        output.write_text(document, encoding="utf-8")


@rules_app.command("list")
def rules_list(config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """List the rules: current version, enabled, what they run and where results go."""
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.routing import versions

    with _session(settings, verbose) as session:
        rules = versions.current_rules(session=session)
    table = Table(title=f"{len(rules)} rules")
    for column in ("name", "version", "enabled", "priority", "run", "send to", "quiet s", "changed", "by"):
        table.add_column(column)
    for stored in rules:
        rule = stored.rule
        send_to = [*rule.send_to, *(["<calling AE>"] if rule.send_to_calling_ae else [])]
        table.add_row(
            rule.name,
            str(stored.version),
            "yes" if rule.enabled else "no",
            str(rule.priority),
            ", ".join(call.pipeline for call in rule.run),
            ", ".join(send_to),
            str(rule.quiet_seconds or settings.jobs.quiet_seconds),
            stored.created_at.strftime("%Y-%m-%d %H:%M"),
            stored.author,
        )
    out.print(table)


@rules_app.command("history")
def rules_history(name: str, config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """Every version of a rule: who changed it, when and why."""
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.routing import versions

    with _session(settings, verbose) as session:
        try:
            history = versions.history(session=session, name=name)
        except versions.RuleNotFound as exc:
            _fail(str(exc))
    table = Table(title=f"rule {name}")
    for column in ("version", "action", "enabled", "when", "by", "why"):
        table.add_column(column)
    for stored in history:
        marker = " (current)" if stored.is_current else ""
        table.add_row(
            f"{stored.version}{marker}",
            stored.action,
            "yes" if stored.rule.enabled else "no",
            stored.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            stored.author,
            stored.reason,
        )
    out.print(table)


@rules_app.command("restore")
def rules_restore(
    name: str,
    version: int,
    config: ConfigOption = None,
    author: ActorOption = None,
    reason: ReasonOption = "",
    verbose: VerboseOption = False,
) -> None:
    """Make an earlier version of a rule current again (recorded as a new version)."""
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.provenance import audit
    from dicomnode.routing import versions

    actor = _actor(author)
    with _session(settings, verbose) as session:
        try:
            stored = versions.restore_version(session=session, name=name, version=version, author=actor, reason=reason)
        except versions.RuleNotFound as exc:
            _fail(str(exc))
        audit.record(
            session=session,
            actor=actor,
            action="rule.restore",
            target=f"rule:{name}",
            reason=reason,
            detail={"restored": version, "version": stored.version},
        )
        session.commit()
    out.print(f"rule {name}: version {version} restored as version {stored.version}")


@rules_app.command("dry-run")
def rules_dry_run(
    series: Annotated[str, typer.Option("--series", help="Series Instance UID of a stored series.")],
    config: ConfigOption = None,
    rule_file: Annotated[
        Path | None, typer.Option("--rules", help="Try these rules (YAML) instead of the stored ones.")
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Say which rules match a stored series, and why or why not, fact by fact."""
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.routing import completion, versions

    with _session(settings, verbose) as session:
        if rule_file is not None:
            candidates = [
                versions.StoredRule(0, 0, 0, 0, rule, "proposed", "", "", datetime.datetime.now(datetime.UTC))
                for rule in _load_rules_file(rule_file)
            ]
        else:
            candidates = versions.current_rules(session=session)
        try:
            verdicts = completion.explain_series(
                session=session,
                store_root=settings.store.root.resolve(),
                series_instance_uid=series,
                rules=candidates,
            )
        except LookupError as exc:
            _fail(str(exc))
    if not verdicts:
        out.print("no rules to try")
    for verdict in verdicts:
        routes = verdict.ok and not verdict.blocked
        head = "[green]would route[/green]" if routes else "[yellow]matches, but[/yellow]" if verdict.ok else "no match"
        version = f" v{verdict.rule.version}" if verdict.rule.version else " (proposed)"
        blocked = f" {verdict.blocked}" if verdict.ok and verdict.blocked else ""
        out.print(f"[bold]{verdict.rule.name}[/bold]{version}: {head}{blocked}")
        for reason in verdict.reasons:
            out.print(f"  - {reason}")


@app.command("provenance", help="Same as trace: the full provenance chain of an instance.")
@app.command()
def trace(
    sop_instance_uid: Annotated[str, typer.Argument(help="SOP Instance UID of an output or an input.")],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the chain as JSON.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Lineage of an instance: the run, rule version, pipeline and inputs that made it; what it fed."""
    settings = _settings(config, verbose)
    setup_logging(level="WARNING")
    from dicomnode.provenance import lineage

    with _session(settings, verbose) as session:
        chain = lineage.trace(session=session, sop_instance_uid=sop_instance_uid)
    if as_json:
        import dataclasses
        import json

        out.print_json(json.dumps(dataclasses.asdict(chain), default=str))
        return
    if not chain.found:
        _fail(f"no run made or read {sop_instance_uid}")
    for title, steps in (("made by", chain.made_by), ("read by", chain.used_by)):
        for step in steps:
            out.print(f"[bold]{title} run {step.run_id}[/bold] ({step.state}, attempt {step.attempts})")
            out.print(f"  rule {step.rule_name} version {step.rule_version}; generation {step.generation}")
            out.print(f"  pipeline {step.pipeline_name} {step.pipeline_version}; params {step.params}")
            out.print(
                f"  weights sha256 {step.weights_sha256 or '-'}; device {step.device}; host {step.host}; "
                f"dicomnode {step.software_version}"
            )
            out.print(f"  queued {step.queued_at}; started {step.started_at}; finished {step.finished_at}")
            if step.failure_reason:
                out.print(f"  failure: {step.failure_reason}")
            if step.superseded_by_run_id:
                out.print(f"  superseded by run {step.superseded_by_run_id}")
            out.print(f"  series {step.series_instance_uid}: {len(step.inputs)} inputs")
            for uid, sha in step.inputs:
                out.print(f"    in  {uid} sha256 {sha}")
            for uid, series_uid, sha in step.outputs:
                out.print(f"    out {uid} (series {series_uid}) sha256 {sha or '-'}")
            for d in step.deliveries:
                error = f" ({d.last_error})" if d.last_error else ""
                out.print(f"    -> {d.destination}: {d.state} after {d.attempts} attempt(s){error}")


# --- tokens (admin API) ------------------------------------------------------------------------


def _open_session(config: Path | None, verbose: bool) -> contextlib.AbstractContextManager[Any]:
    return _session(_settings(config, verbose), verbose)


app.add_typer(cli_tokens.build(_open_session, _actor), name="tokens")


def main() -> None:
    """Entry point for ``python -m dicomnode``: unexpected errors print one line (-v: traceback)."""
    logging.captureWarnings(True)
    try:
        app(prog_name="dicomnode")
    except Exception as exc:
        if {"-v", "--verbose"} & set(sys.argv):
            raise
        console.print(f"[red]error:[/red] {type(exc).__name__}: {exc} (run with -v for the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
