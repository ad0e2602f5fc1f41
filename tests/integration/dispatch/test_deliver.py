"""deliver(): one attempt, recorded; STOW-RS to a second node's real DICOMweb service (uvicorn)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import psycopg
import pydicom
import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.config import DicomwebDestination, Settings
from dicomnode.db.models import Delivery, DeliveryState, Instance
from dicomnode.dispatch import deliver
from dicomnode.provenance import record
from dicomnode.routing import rules, versions
from dicomnode.store.ingest import Ingestor, Origin
from tests.helpers import count_rows, get_port, make_settings

TOKEN = "s3cret-token"


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def other_node_url(pg_server: str, template_db: str) -> Iterator[str]:
    """A second node's database (cloned from the migrated template)."""
    name = f"dicomnode_o_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _with_database(pg_server, name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def stow_url(other_node_url: str, tmp_path: Path) -> Iterator[str]:
    """The second node's DICOMweb service (bearer token auth), served by uvicorn on loopback."""
    from dicomnode.web.app import create_app

    port = get_port()
    settings = make_settings(
        other_node_url, tmp_path / "other-store", web={"auth": "bearer", "bearer_tokens": [TOKEN]}
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}{settings.web.dicomweb_prefix}/studies"
    server.should_exit = True
    thread.join(timeout=10)


def _planned(sessions: sessionmaker[Session], settings: Settings, destination: str) -> int:
    """Two instances stored as the outputs of a run, and a delivery of their series planned."""
    ingestor = Ingestor(settings=settings.store, sessions=sessions)
    datasets = synthetic_ct(shape=(2, 16, 16), seed=40)
    for ds in datasets:
        buffer = BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        ingestor.ingest(buffer.getvalue(), origin=Origin(calling_ae_title="TEST"))
    rule = rules.parse_rule({"name": "r", "when": {"attr": "Modality", "exists": True}, "run": "key_image_montage"})
    with sessions() as session:
        stored = versions.create_rule(session=session, rule=rule, author="test")
        series_id = session.query(Instance).first().series_fk  # type: ignore[union-attr]
        run_id = record.create_run(
            session=session, series_id=series_id, series_instance_uid=datasets[0].SeriesInstanceUID,
            rule_version_id=stored.version_id, generation=1, pipeline_name="key_image_montage", params={}, queue="cpu",
        )
        assert run_id is not None
        record.plan_outputs(
            session=session, run_id=run_id,
            outputs=[record.OutputRecord(ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.SOPClassUID) for ds in datasets],
        )
        (delivery_id,) = deliver.plan(
            session=session, run_id=run_id, series_instance_uids=[datasets[0].SeriesInstanceUID], names=[destination]
        )
        session.commit()
    return delivery_id


def _attempt(sessions, settings: Settings, delivery_id: int, *, final: bool = False) -> deliver.DeliveryOutcome:  # type: ignore[no-untyped-def]
    return deliver.deliver(
        sessions=sessions, delivery_id=delivery_id, destinations_config=settings.destinations,
        store_root=settings.store.root.resolve(), calling_ae_title="DICOMNODE", final=final,
    )


def test_stow_rs_delivers_a_series_to_another_node(
    db_url: str, sessions, stow_url: str, other_node_url: str, tmp_path: Path
) -> None:
    destination = {"kind": "dicomweb", "name": "other", "stow_url": stow_url, "bearer_token": TOKEN}
    settings = make_settings(db_url, tmp_path / "store", destinations=[destination])
    assert isinstance(settings.destinations[0], DicomwebDestination)
    delivery_id = _planned(sessions, settings, "other")

    outcome = _attempt(sessions, settings, delivery_id)
    assert outcome.ok and (outcome.sent, outcome.failed) == (2, 0), outcome.error
    assert count_rows(other_node_url, Instance) == 2
    with sessions() as session:
        row = session.get(Delivery, delivery_id)
        assert (row.state, row.attempts, row.last_error) == (DeliveryState.SENT, 1, "")
        assert row.delivered_at is not None and row.last_attempt_at is not None
    assert _attempt(sessions, settings, delivery_id).ok, "a sent delivery is not sent again"
    with sessions() as session:
        assert session.get(Delivery, delivery_id).attempts == 1


def test_a_refused_stow_rs_is_recorded_and_fails_on_the_last_attempt(
    db_url: str, sessions, stow_url: str, other_node_url: str, tmp_path: Path
) -> None:
    destination = {"kind": "dicomweb", "name": "other", "stow_url": stow_url, "bearer_token": "wrong"}
    settings = make_settings(db_url, tmp_path / "store", destinations=[destination])
    delivery_id = _planned(sessions, settings, "other")

    outcome = _attempt(sessions, settings, delivery_id)
    assert not outcome.ok and outcome.state is DeliveryState.PENDING and "HTTP 401" in outcome.error
    outcome = _attempt(sessions, settings, delivery_id, final=True)
    assert outcome.state is DeliveryState.FAILED
    with sessions() as session:
        row = session.get(Delivery, delivery_id)
        assert (row.state, row.attempts) == (DeliveryState.FAILED, 2) and "HTTP 401" in row.last_error
    assert count_rows(other_node_url, Instance) == 0


def test_a_server_that_is_down_is_a_failed_attempt(db_url: str, sessions, tmp_path: Path) -> None:
    destination = {"kind": "dicomweb", "name": "down", "stow_url": f"http://127.0.0.1:{get_port()}/studies"}
    settings = make_settings(db_url, tmp_path / "store", destinations=[destination])
    delivery_id = _planned(sessions, settings, "down")
    outcome = _attempt(sessions, settings, delivery_id)
    assert outcome.state is DeliveryState.PENDING and "ConnectError" in outcome.error
