"""The AI loop from the command line: jobs, routing rules, provenance.

Imports are local to each command so that `dicomnode --help` stays fast and never loads torch.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dicomnode.cli.common import (
    ActorOption,
    ConfigOption,
    ReasonOption,
    VerboseOption,
    _actor,
    _fail,
    _session,
    _settings,
    app,
    console,
    jobs_app,
    out,
    rules_app,
)
from dicomnode.logs import setup_logging


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
