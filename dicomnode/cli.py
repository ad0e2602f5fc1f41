"""The ``dicomnode`` command: loads settings once and hands them to the parts it runs."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dicomnode import __version__
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
    verbose: VerboseOption = False,
) -> None:
    """Run the node: DIMSE SCP (C-ECHO, C-STORE) over the index database.

    With no db.url configured, a PostgreSQL server is started by pgserver in db.embedded_dir
    and migrated automatically.
    """
    net = {k: v for k, v in {"port": port, "ae_title": ae_title, "processes": processes}.items() if v is not None}
    log = {k: v for k, v in {"format": log_format, "debug_dimse": debug_dimse or None}.items() if v is not None}
    settings = _settings(config, verbose, net=net, store={"root": store} if store else None, log=log)
    setup_logging(level=settings.log.level, fmt=settings.log.format, debug_dimse=settings.log.debug_dimse)
    from dicomnode import serve as serving

    try:
        serving.serve(settings)
    except serving.DatabaseNotReady as exc:
        _fail(str(exc), verbose=verbose)
    except OSError as exc:
        _fail(f"cannot serve: {exc} (is port {settings.net.port} in use? see net.port)", verbose=verbose)


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
