"""Admin API fixtures: ``create_app`` on the test database behind FastAPI's TestClient, with a token."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session, sessionmaker

from dicomnode.config import Settings
from dicomnode.db.session import make_engine, make_sessionmaker
from dicomnode.store.ingest import Origin
from dicomnode.web.admin import PREFIX, tokens
from dicomnode.web.app import create_app
from tests.helpers import make_settings
from tests.integration.jobs.loop import jobs_factory

with warnings.catch_warnings():
    # starlette asks for httpx2 at import; httpx (what the project installs) works the same here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["Admin", "admin", "jobs_factory"]


@dataclass
class Admin:
    """The app on this test's database, a TestClient, and a valid token named ``alice``."""

    settings: Settings
    client: TestClient
    sessions: sessionmaker[Session]
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """``method`` on ``/admin/api`` + ``path`` with alice's token."""
        return self.client.request(method, PREFIX + path, headers=self.auth, **kwargs)

    def ingest(self, datasets: list[Dataset]) -> None:
        """File and index datasets as a C-STORE would (the Ingestor both paths share)."""
        ingestor = self.client.app.state.services.ingestor  # type: ignore[attr-defined]
        for ds in datasets:
            with BytesIO() as buffer:
                ds.save_as(buffer, enforce_file_format=True)
                ingestor.ingest(buffer.getvalue(), origin=Origin(calling_ae_title="MODALITY", peer_address="127.0.0.1"))


@pytest.fixture
def admin(db_url: str, tmp_path: Path) -> Iterator[Admin]:
    settings = make_settings(db_url, tmp_path / "store", store={"fsync": False})
    engine = make_engine(db_url, pool_size=2, application_name="dicomnode-test-admin")
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        _info, secret = tokens.create_token(session=session, name="alice", actor="test")
        session.commit()
    with TestClient(create_app(settings, engine=engine)) as client:
        yield Admin(settings=settings, client=client, sessions=sessions, token=secret)
    engine.dispose()
