"""The CLI's shared parts: the typer apps, consoles, option types, settings and session helpers."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from dicomnode import __version__
from dicomnode.config import ConfigError, Settings, load_settings

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


def _open_session(config: Path | None, verbose: bool) -> contextlib.AbstractContextManager[Any]:
    return _session(_settings(config, verbose), verbose)


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
