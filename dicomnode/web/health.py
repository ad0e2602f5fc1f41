"""Health endpoint for load balancers and service managers: 200 when the index answers, else 503."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from dicomnode.web.deps import ServicesDep

logger = logging.getLogger(__name__)

router = APIRouter()


@router.get("/healthz", summary="Is the node able to serve?")
def healthz(services: ServicesDep) -> JSONResponse:
    """200 ``{"status": "ok"}`` when the index database answers, 503 otherwise."""
    try:
        with services.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (DBAPIError, PoolTimeout) as exc:
        logger.warning("health check failed: index unreachable", extra={"error": type(exc).__name__})
        return JSONResponse({"status": "unavailable", "detail": "index database unreachable"}, status_code=503)
    return JSONResponse({"status": "ok"})
