"""The AI loop against real peers: DCMTK storescu sends a CT series to `dicomnode serve`, a rule
routes it to the key-image montage, and the Secondary Capture is sent to two destinations, a
DCMTK storescp and Orthanc (Debian's /usr/sbin/Orthanc, started here on loopback ports with its
own temp config); `dicomnode trace` then returns the chain, with the SC's sha256 as stored.

A destination that is down for a while and then started is covered by
tests/integration/jobs/test_failures.py (``test_a_destination_down_for_a_while_...``); it is
not repeated here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from sqlalchemy import select

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.db.models import Delivery, DeliveryState, Instance, Run, RunState
from tests.helpers import ServeProcess, dcmtk, dicomnode_command, get_port, query, serve_env, wait_for
from tests.integration.jobs.loop import Storescp

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk, pytest.mark.timeout(120)]

ORTHANC = Path("/usr/sbin/Orthanc")

RULES = """
- name: ct-to-peers
  when: {all: [{attr: Modality, equals: CT}, {not: {attr: ImageType, contains: DERIVED}}]}
  run: [{pipeline: key_image_montage, params: {tiles: 4}}]
  send_to: [storescp, orthanc]
"""


class Orthanc:
    """Orthanc on loopback ports with its own storage, SQLite index and config; no auth, no plugins."""

    ae_title = "ORTHANC"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.dicom_port = get_port()
        self.http_port = get_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Orthanc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "dicomnode-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "SaveJobs": False,
        }
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(config, indent=1))
        with open(self.workdir / "orthanc.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(ORTHANC), str(path)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, start_new_session=True,  # its own process group
            )

        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, (
                f"Orthanc exited:\n{(self.workdir / 'orthanc.log').read_text(errors='replace')[-2000:]}"
            )
            try:
                return httpx.get(f"{self.url}/system", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(ready, timeout=30, interval=0.2), "Orthanc did not answer on its HTTP port"
        return self

    def stop(self) -> None:
        """SIGTERM Orthanc by its PID (SIGKILL after 15 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def find_instance(self, sop_instance_uid: str) -> list[str]:
        response = httpx.post(
            f"{self.url}/tools/find",
            json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}},
            timeout=10,
        )
        response.raise_for_status()
        return list(response.json())

    def tags(self, orthanc_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/instances/{orthanc_id}/simplified-tags", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def destination(self, name: str = "orthanc") -> dict[str, Any]:
        return {"name": name, "ae_title": self.ae_title, "host": "127.0.0.1", "port": self.dicom_port}


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    if not os.access(ORTHANC, os.X_OK):
        pytest.skip(f"Orthanc not installed at {ORTHANC} (apt-get install orthanc)")
    server = Orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()


def _trace(env: dict[str, str], cwd: Path, sop_instance_uid: str) -> dict[str, Any]:
    result = subprocess.run(
        dicomnode_command("trace", "--json", sop_instance_uid), env=env, cwd=cwd, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_a_montage_reaches_storescp_and_orthanc_and_trace_returns_its_chain(
    db_url: str, tmp_path: Path, orthanc: Orthanc
) -> None:
    storescp = Storescp(tmp_path / "storescp", get_port()).start()
    port = get_port()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    store_root = tmp_path / "store"
    env = serve_env(
        DB__URL=db_url, NET__PORT=port, NET__PROCESSES=1, STORE__ROOT=store_root, STORE__FSYNC="false",
        JOBS__QUIET_SECONDS=1, JOBS__RULES_FILE=rules,
        DESTINATIONS=json.dumps([storescp.destination("storescp"), orthanc.destination("orthanc")]),
    )
    sent = tmp_path / "sent"
    sent.mkdir()
    series = synthetic_ct(shape=(6, 32, 32), seed=71)
    for ds in series:
        ds.save_as(sent / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    try:
        with ServeProcess(env=env, log_path=tmp_path / "serve.log", cwd=tmp_path, args=["--no-web"]) as node:
            node.wait_ready(port=port)
            subprocess.run(
                [dcmtk("storescu"), "-aet", "MODALITY", "-aec", "DICOMNODE", "127.0.0.1", str(port),
                 *sorted(str(p) for p in sent.iterdir())],
                check=True, capture_output=True, timeout=60,
            )

            def delivered() -> bool:
                rows = [r[0] for r in query(db_url, select(Delivery))]
                return len(rows) == 2 and all(d.state is DeliveryState.SENT for d in rows)

            assert wait_for(delivered, timeout=45, interval=0.3), f"not delivered to both:\n{node.log_tail()}"
            assert node.terminate() == 0, node.log_tail()
    finally:
        storescp.stop()

    # storescp holds exactly the SC
    (received,) = storescp.received()
    sc = dcmread(received)
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7", "a Secondary Capture"
    assert sc.StudyInstanceUID == series[0].StudyInstanceUID
    referenced = {item.SeriesInstanceUID for item in sc.get("ReferencedSeriesSequence", [])}
    assert referenced == {series[0].SeriesInstanceUID}, "the SC references its source series"

    # Orthanc holds the same SC (by SOP Instance UID), over C-STORE
    (orthanc_id,) = orthanc.find_instance(sc.SOPInstanceUID)
    tags = orthanc.tags(orthanc_id)
    assert (tags["SOPInstanceUID"], tags["StudyInstanceUID"]) == (sc.SOPInstanceUID, series[0].StudyInstanceUID)
    assert len(httpx.get(f"{orthanc.url}/instances", timeout=10).json()) == 1, "only the SC, once"

    # the chain: input series, rule name/version, pipeline name/version, the SC's sha256 as stored
    (run,) = [r[0] for r in query(db_url, select(Run))]
    assert run.state is RunState.DONE
    chain = _trace(env, tmp_path, sc.SOPInstanceUID)
    assert chain["sop_instance_uid"] == sc.SOPInstanceUID and chain["used_by"] == []
    (step,) = chain["made_by"]
    assert step["run_id"] == run.id and step["state"] == "done"
    assert step["series_instance_uid"] == series[0].SeriesInstanceUID
    assert sorted(uid for uid, _ in step["inputs"]) == sorted(ds.SOPInstanceUID for ds in series)
    assert (step["rule_name"], step["rule_version"]) == ("ct-to-peers", 1)
    assert (step["pipeline_name"], step["pipeline_version"]) == ("key_image_montage", "1.0.0")
    assert step["params"] == {"tiles": 4}
    ((out_uid, out_series_uid, out_sha256),) = step["outputs"]
    assert (out_uid, out_series_uid) == (sc.SOPInstanceUID, sc.SeriesInstanceUID)
    (indexed,) = [r[0] for r in query(db_url, select(Instance).where(Instance.sop_instance_uid == out_uid))]
    stored_file = store_root / indexed.file_path
    assert out_sha256 == indexed.sha256 == hashlib.sha256(stored_file.read_bytes()).hexdigest()
    assert sorted((d["destination"], d["state"]) for d in step["deliveries"]) == [
        ("orthanc", "sent"), ("storescp", "sent")]
    assert all(d["attempts"] == 1 and d["last_error"] == "" for d in step["deliveries"])

    # the inputs' lineage points at the same run
    used = _trace(env, tmp_path, series[0].SOPInstanceUID)
    assert [s["run_id"] for s in used["used_by"]] == [run.id] and used["made_by"] == []
