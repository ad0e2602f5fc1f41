"""``dicomnode tokens``: create (printed once), list and revoke the admin API's tokens.

``cli/__init__.py`` builds this sub-app with its session opener and actor, so settings are loaded and the
database is reached exactly as for the other commands.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["build"]

#: (config file, verbose) -> a context manager giving a session on the node's database.
OpenSession = Callable[[Path | None, bool], AbstractContextManager[Any]]

_console = Console(stderr=True)
_out = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (default: $DICOMNODE_CONFIG or conf/dicomnode.yaml)."),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")]
ActorOption = Annotated[str | None, typer.Option("--author", help="Who makes the change (default: cli:<login>).")]


def _fail(message: str, code: int = 1) -> NoReturn:
    _console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def build(open_session: OpenSession, actor: Callable[[str | None], str]) -> typer.Typer:
    """The ``tokens`` sub-app; ``actor(author)`` names who acts (``cli:<login>`` by default)."""
    tokens_app = typer.Typer(help="Admin API tokens: create (shown once), list, revoke.", no_args_is_help=True)

    @tokens_app.command("create")
    def create(
        name: Annotated[str, typer.Option("--name", help="Who or what holds the token (e.g. ci, alice).")],
        config: ConfigOption = None,
        author: ActorOption = None,
        verbose: VerboseOption = False,
    ) -> None:
        """Make a token and print it once on stdout; only its sha256 is stored."""
        from dicomnode.web.admin import tokens

        with open_session(config, verbose) as session:
            try:
                _info, secret = tokens.create_token(session=session, name=name, actor=actor(author))
            except ValueError as exc:
                _fail(str(exc), code=2)
            session.commit()
        _console.print(f"token {name!r} created; it is shown this once (use: Authorization: Bearer <token>)")
        print(secret)

    @tokens_app.command("list")
    def list_(config: ConfigOption = None, verbose: VerboseOption = False) -> None:
        """List the tokens: name, created, last used, revoked (never a secret)."""
        from dicomnode.web.admin import tokens

        with open_session(config, verbose) as session:
            rows = tokens.list_tokens(session=session)
        table = Table(title=f"{len(rows)} tokens")
        for column in ("name", "active", "created", "last used", "revoked"):
            table.add_column(column)

        def when(value: Any) -> str:
            return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""

        for row in rows:
            table.add_row(
                row.name,
                "yes" if row.active else "no",
                when(row.created_at),
                when(row.last_used_at),
                when(row.revoked_at),
            )
        _out.print(table)

    @tokens_app.command("revoke")
    def revoke(
        name: Annotated[str, typer.Argument(help="The token's name.")],
        config: ConfigOption = None,
        author: ActorOption = None,
        reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log.")] = "",
        verbose: VerboseOption = False,
    ) -> None:
        """Revoke a token: it stops working at once."""
        from dicomnode.web.admin import tokens

        with open_session(config, verbose) as session:
            try:
                tokens.revoke_token(session=session, name=name, actor=actor(author), reason=reason)
            except tokens.TokenNotFound as exc:
                _fail(str(exc))
            session.commit()
        _out.print(f"token {name!r} revoked")

    return tokens_app
