"""Routing: decide which pipelines run on a complete series, and where their results go.

Modules, bottom up: ``patterns`` (bounded regular expressions for ``matches``), ``conditions``
(the all/any/not tree and its leaves), ``rules`` (the rule model, YAML load/dump,
``RuleInvalid``), ``match`` (pure: rule x series attributes -> ``Match(ok, reasons)``), and above
those the series-completion query and rule versions.

May import: ``dicomnode.store`` (to read the index), ``dicomnode.db``, ``dicomnode.config``,
``dicomnode.errors``, and pydicom, pydantic, PyYAML, SQLAlchemy. Never ``net``, ``jobs``,
``dispatch``, ``provenance``, ``web``, ``cli`` or ``ai_pipelines``: jobs and web call routing,
not the other way round. ``patterns``, ``conditions``, ``rules`` and ``match`` stay pure (no
database, no I/O) so that a dry-run and the unit tests need nothing running.

Importing this package has no side effects and re-exports nothing: import the modules
(``from dicomnode.routing import match``).
"""

from __future__ import annotations
