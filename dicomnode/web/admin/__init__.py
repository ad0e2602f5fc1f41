"""The admin API: rules (versions, rollback, dry-run), jobs (list, retry), lineage, API tokens.

Modules: ``tokens`` (create, list, revoke and check hashed API tokens; used by the CLI too),
``auth`` (the bearer-token dependency), ``schemas`` (request and response bodies),
``rules_api`` and ``jobs_api`` (the endpoints) and ``api`` (adds them to the app under
``/admin/api``, with an OpenAPI document and docs of their own). Importing this package imports neither FastAPI
nor the endpoints.

May import ``dicomnode.jobs`` (retries defer jobs by name), ``dicomnode.routing``,
``dicomnode.provenance``, ``dicomnode.dispatch``, ``dicomnode.store``, ``dicomnode.db``.
"""

from __future__ import annotations

#: Where ``create_app`` puts the admin API.
PREFIX = "/admin/api"
