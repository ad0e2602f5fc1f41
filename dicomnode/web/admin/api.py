"""The admin API on the node's app: its routes under ``/admin/api``, its own OpenAPI and docs.

:func:`install` adds the endpoints of :mod:`.rules_api` (rules, versions, dry-run) and
:mod:`.jobs_api` (jobs, runs, deliveries, retries, lineage, audit, tokens), all behind a bearer
token (:mod:`.auth`), plus ``/admin/api/openapi.json`` (the admin paths only) and
``/admin/api/docs``; the app's own ``/openapi.json`` lists them too. They are routes of the app,
not a mounted sub-app, so a reverse proxy's path (``web.root_path``) works whether or not the
proxy strips it, as for DICOMweb. Domain errors map to problem bodies here: ``RuleInvalid`` ->
422 with every error's path and reason, an unknown name -> 404, a taken name -> 409.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from dicomnode.routing import versions
from dicomnode.routing.rules import RuleInvalid
from dicomnode.web.admin import PREFIX, jobs_api, rules_api, tokens
from dicomnode.web.problem import Problem

__all__ = ["install"]

_TITLE = "dicomnode admin API"
_DESCRIPTION = (
    "Routing rules, dry-runs, jobs and lineage. Authenticate with `Authorization: Bearer <token>` "
    "(`dicomnode tokens create --name NAME`)."
)


# --- errors -----------------------------------------------------------------------------------


async def _rule_invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RuleInvalid)
    errors = [{"path": error.path, "reason": error.reason} for error in exc.errors]
    detail = f"the rule is invalid ({len(errors)} error{'s' if len(errors) != 1 else ''})"
    return Problem(422, "RuleInvalid", detail, extra={"errors": errors}).response()


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return Problem(404, "NotFound", str(exc)).response()


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return Problem(409, "Conflict", str(exc)).response()


def install(app: FastAPI, *, prefix: str = PREFIX) -> None:
    """Add the admin API to ``app`` under ``prefix``, with its error mapping, OpenAPI and docs."""
    app.add_exception_handler(RuleInvalid, _rule_invalid)
    for missing in (versions.RuleNotFound, tokens.TokenNotFound):
        app.add_exception_handler(missing, _not_found)
    for clash in (versions.RuleExists, tokens.TokenExists):
        app.add_exception_handler(clash, _conflict)
    app.include_router(rules_api.router, prefix=prefix)
    app.include_router(jobs_api.router, prefix=prefix)
    schema: dict[str, Any] = {}

    @app.get(prefix + "/openapi.json", include_in_schema=False)
    async def admin_openapi(request: Request) -> JSONResponse:
        if not schema:  # the app's document, cut to the admin paths
            whole = app.openapi()
            paths = {path: item for path, item in whole["paths"].items() if path.startswith(prefix + "/")}
            info = {**whole["info"], "title": _TITLE, "description": _DESCRIPTION}
            schema.update({**whole, "info": info, "paths": paths})
        root_path = request.scope.get("root_path", "").rstrip("/")
        return JSONResponse({**schema, "servers": [{"url": root_path or "/"}]})

    @app.get(prefix + "/docs", include_in_schema=False)
    async def admin_docs(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{root_path}{prefix}/openapi.json", title=_TITLE)
