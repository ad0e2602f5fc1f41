"""HTTP errors as problem bodies: ``{"error": ..., "detail": ...}`` with the right status.

Handlers raise :class:`Problem`; :func:`install` maps it, FastAPI's validation errors and an
unreachable index to responses, so bad input never becomes a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from dicomnode.errors import IndexUnavailable

logger = logging.getLogger(__name__)


class Problem(Exception):
    """An HTTP error answer: status, a short error name and a sentence for people."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> JSONResponse:
        body = {"error": self.error, "detail": self.detail, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def not_found(what: str) -> Problem:
    """404 for a resource the index does not hold."""
    return Problem(404, "NotFound", f"{what} is not stored here")


def not_acceptable(detail: str) -> Problem:
    """406 when no representation the Accept header allows can be produced."""
    return Problem(406, "NotAcceptable", detail)


def bad_request(detail: str, *, error: str = "BadRequest") -> Problem:
    """400 for a request whose syntax or parameters are wrong."""
    return Problem(400, error, detail)


async def _problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.response()


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return Problem(400, "BadRequest", f"{where}: {first.get('msg', 'invalid request')}").response()


async def _index_down(_request: Request, exc: Exception) -> JSONResponse:
    logger.error("index unavailable", extra={"error": type(exc).__name__}, exc_info=exc)
    return Problem(503, "IndexUnavailable", "the index database cannot be reached; try again later").response()


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(RequestValidationError, _validation)
    for exc_class in (IndexUnavailable, DBAPIError, PoolTimeout):
        app.add_exception_handler(exc_class, _index_down)
