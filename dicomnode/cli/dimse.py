"""DICOM network commands: echo, send, and the study list."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dicomnode.cli.common import (
    ConfigOption,
    VerboseOption,
    _fail,
    _settings,
    app,
    console,
    out,
)
from dicomnode.logs import setup_logging


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
