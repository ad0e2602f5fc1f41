"""The ``dicomnode`` command: loads settings once and hands them to the parts it runs.

One module per group of commands (``node``, ``dimse``, ``loop``, ``evaluate``, ``tokens``), all registered on
``common.app``. Sits at the top of the layers: may import everything in dicomnode.
"""

from __future__ import annotations

# Their decorators register the commands; the import order is the order of `dicomnode --help`.
# isort: off
from dicomnode.cli import node  # noqa: F401
from dicomnode.cli import dimse, loop  # noqa: F401
from dicomnode.cli import evaluate  # noqa: F401
# isort: on
from dicomnode.cli import tokens as _tokens
from dicomnode.cli.common import _actor, _open_session, app, main

app.add_typer(_tokens.build(_open_session, _actor), name="tokens")

__all__ = ["app", "main"]
