"""FastAPI dependencies: the services ``create_app`` built, as ``Annotated`` aliases.

Handlers declare what they need (``session: SessionDep``); nothing here reads settings
from the environment or holds module-level state. Dependencies that do no I/O are ``async``
so that FastAPI calls them on the event loop instead of a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dicomnode.config import Settings
from dicomnode.store import paths
from dicomnode.store.ingest import Ingestor
from dicomnode.web.cache import MetadataCache
from dicomnode.web.problem import bad_request

if TYPE_CHECKING:  # the pool imports the DICOMweb package, which imports this module
    from dicomnode.web.dicomweb.metadata_pool import MetadataPool


@dataclass(frozen=True, slots=True)
class Services:
    """What the app serves with, built once by ``create_app``."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    ingestor: Ingestor
    metadata_cache: MetadataCache
    metadata_pool: MetadataPool

    @property
    def store_root(self) -> Path:
        return self.ingestor.root


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


# scope="function": the session (and its pooled connection) is closed when the handler
# returns, before a streamed answer starts, so long downloads hold no database connection.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_ingestor(services: ServicesDep) -> Ingestor:
    return services.ingestor


IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]


async def get_dicomweb_url(request: Request, settings: SettingsDep) -> str:
    """Absolute URL of the DICOMweb root as the client sees it (reverse-proxy prefix included)."""
    root = settings.web.public_url or str(request.base_url).rstrip("/")
    return root + settings.web.dicomweb_prefix


DicomwebUrlDep = Annotated[str, Depends(get_dicomweb_url)]


def check_uid(value: str, keyword: str) -> str:
    """A UID from the path, or 400 when it breaks the UID grammar."""
    if not paths.is_valid_uid(value):
        raise bad_request(f"{keyword} {value[:80]!r} is not a valid DICOM UID (PS3.5 9.1)", error="InvalidUID")
    return value
