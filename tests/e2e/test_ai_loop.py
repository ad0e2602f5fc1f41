"""`dicomnode serve` with its embedded worker: DCMTK storescu sends a CT series, the seed rule
matches, the montage runs, and the Secondary Capture reaches a DCMTK storescp destination, with
the provenance chain in PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.db.models import Delivery, DeliveryState, Run, RunOutput, RunState
from tests.helpers import ServeProcess, dcmtk, get_port, query, serve_env
from tests.integration.jobs.loop import Storescp

pytestmark = [pytest.mark.dcmtk, pytest.mark.timeout(120)]

RULES = """
- name: ct-key-images
  when: {all: [{attr: Modality, equals: CT}, {not: {attr: ImageType, contains: DERIVED}}]}
  run: key_image_montage
  send_to: [results]
"""


def test_serve_routes_processes_and_delivers_a_series(db_url: str, tmp_path: Path) -> None:
    receiver = Storescp(tmp_path / "received", get_port()).start()
    port = get_port()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = serve_env(
        DB__URL=db_url, NET__PORT=port, NET__PROCESSES=1, WEB__PORT=get_port(), WEB__HOST="127.0.0.1",
        STORE__ROOT=tmp_path / "store", STORE__FSYNC="false",
        JOBS__QUIET_SECONDS=1, JOBS__RULES_FILE=rules,
        DESTINATIONS=json.dumps([receiver.destination("results")]),
    )
    sent = tmp_path / "sent"
    sent.mkdir()
    series = synthetic_ct(shape=(5, 32, 32), seed=60)
    for ds in series:
        ds.save_as(sent / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    try:
        with ServeProcess(env=env, log_path=tmp_path / "serve.log", cwd=tmp_path) as node:
            node.wait_ready(port=port)
            subprocess.run(
                [dcmtk("storescu"), "-aet", "MODALITY", "-aec", "DICOMNODE", "127.0.0.1", str(port),
                 *sorted(str(p) for p in sent.iterdir())],
                check=True, capture_output=True, timeout=60,
            )
            deadline = time.monotonic() + 30
            while not receiver.received() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert receiver.received(), f"no result arrived:\n{node.log_tail()}"
            assert node.terminate() == 0, node.log_tail()
    finally:
        receiver.stop()

    (received,) = receiver.received()
    sc = dcmread(received)
    assert sc.StudyInstanceUID == series[0].StudyInstanceUID and sc.Modality in ("CT", "OT")
    (run,) = [row[0] for row in query(db_url, select(Run))]
    assert run.state is RunState.DONE and run.pipeline_name == "key_image_montage"
    outputs = [row[0] for row in query(db_url, select(RunOutput))]
    assert [o.sop_instance_uid for o in outputs] == [sc.SOPInstanceUID]
    (delivery,) = [row[0] for row in query(db_url, select(Delivery))]
    assert delivery.state is DeliveryState.SENT and delivery.destination == "results"
    log = (tmp_path / "serve.log").read_text()
    assert "SYNTHETIC" not in log, "the patient's name reached the log"
