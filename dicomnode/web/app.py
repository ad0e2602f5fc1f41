"""The FastAPI application factory: ``create_app(settings)`` builds the HTTP service.

It mounts DICOMweb under ``web.dicomweb_prefix`` (``/dicom-web``, where OHIF looks) with the
configured authentication, CORS for browser viewers, ``/healthz``, and the admin API under
``/admin/api`` (API tokens; its OpenAPI and docs there too). Behind a reverse proxy
that publishes the app under a path (``web.root_path``, e.g. ``/pacs``), URLs in answers
(RetrieveURL, BulkDataURI) carry that path, whether or not the proxy strips it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydicom import config as pydicom_config
from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomnode import __version__
from dicomnode.config import Settings
from dicomnode.db.session import make_engine, make_sessionmaker
from dicomnode.store.ingest import Ingestor
from dicomnode.web import admin, auth, dicomweb, health, problem
from dicomnode.web.admin import api as admin_api
from dicomnode.web.cache import MetadataCache
from dicomnode.web.deps import Services
from dicomnode.web.dicomweb.metadata_pool import MetadataPool, worker_count

logger = logging.getLogger(__name__)


class _RootPath:
    """Set the ASGI ``root_path`` (what uvicorn's ``--root-path`` does) when the server did not."""

    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not scope.get("root_path"):
            scope = {**scope, "root_path": self.root_path}
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """Build the HTTP application.

    Parameters
    ----------
    settings
        The node's settings; ``web`` configures prefix, auth, CORS and upload size.
    engine
        The index database engine; when None one is made from ``settings.db.url`` and
        disposed of when the app shuts down.

    Returns
    -------
    FastAPI
        Ready for uvicorn.

    Raises
    ------
    ValueError
        When no engine is given and ``settings.db.url`` is empty (the embedded database is
        started by ``dicomnode serve``, which then passes its URL or engine).
    """
    owns_engine = engine is None
    if engine is None:
        if not settings.db.url:
            raise ValueError("create_app needs settings.db.url or an engine (serve starts the embedded database)")
        engine = make_engine(settings.db.url, pool_size=settings.db.pool_size, application_name="dicomnode-web")
    # Index values and files are served as stored; value validation would only warn on scanner quirks.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    sessions = make_sessionmaker(engine)
    services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        ingestor=Ingestor(settings=settings.store, sessions=sessions),
        metadata_cache=MetadataCache(settings.web.metadata_cache_mb * 2**20),
        metadata_pool=MetadataPool(worker_count(settings.web.metadata_workers)),
    )
    dispose = engine.dispose

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.metadata_pool.start_in_background()
        try:
            yield
        finally:
            services.metadata_pool.close()
            if owns_engine:
                dispose()

    app = FastAPI(title="dicomnode", version=__version__, lifespan=lifespan)
    app.state.services = services
    problem.install(app)
    check = auth.build(settings.web)
    app.include_router(
        dicomweb.build_router(),
        prefix=settings.web.dicomweb_prefix,
        dependencies=[Depends(check)] if check is not None else [],
    )
    app.include_router(health.router)
    admin_api.install(app, prefix=admin.PREFIX)
    origins = settings.web.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["Content-Type", "Content-Location", "Warning"],
            allow_credentials="*" not in origins,
            max_age=600,
        )
    if settings.web.root_path:
        app.add_middleware(_RootPath, root_path=settings.web.root_path)
    logger.info(
        "web app built",
        extra={
            "dicomweb_prefix": settings.web.dicomweb_prefix,
            "auth": settings.web.auth.value,
            "root_path": settings.web.root_path,
        },
    )
    return app
