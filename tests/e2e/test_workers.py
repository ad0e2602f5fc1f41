"""A distributed node: `dicomnode serve --no-worker` plus two `dicomnode worker` processes on one
PostgreSQL database. Every series is processed exactly once; a worker killed with SIGKILL in
the middle of a pipeline run has its job retried by the other worker, and the destination gets
the result once.

The retry policy under test (dicomnode/jobs/tasks.py, process.py, provenance/record.py):

- A job whose worker stops sending heartbeats for ``jobs.stalled_worker_seconds`` is put back
  in its queue by the periodic ``retry_stalled_jobs`` task (every 10 s) and runs again on any
  live worker; the run row counts one more attempt.
- Deliveries are planned, and their jobs deferred, only in the transaction that marks the run
  done. An attempt that dies before that delivers nothing; outputs it may already have stored
  stay in the index (in a series of their own, never routed) and are recorded on the run without
  a sha256. So a run killed mid-pipeline reaches each destination exactly once.
- Delivery itself is at least once: a worker killed during a C-STORE, after the peer stored the
  instance but before the delivery row was marked sent, sends the same SOP Instance again on the
  retry (not exercised here).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.db.models import Delivery, DeliveryState, Instance, Run, RunOutput, RunState, Series
from dicomnode.jobs.app import conninfo
from dicomnode.net import scu
from tests.helpers import ServeProcess, dcmtk, dicomnode_command, get_port, query, serve_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk, pytest.mark.timeout(150)]

RULES = """
- name: ct-montage
  when: {all: [{attr: Modality, equals: CT}, {not: {attr: ImageType, contains: DERIVED}}]}
  run: [{pipeline: key_image_montage, params: {tiles: 64, tile_size: 1024}}]
  send_to: [storescp]
"""


class UniqueStorescp:
    """DCMTK storescp writing every received instance to a file of its own (``+uf``): a second
    copy of the same SOP Instance shows up as a second file instead of overwriting the first."""

    ae_title = "STORESCP"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = get_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> UniqueStorescp:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [dcmtk("storescp"), "-aet", self.ae_title, "-od", str(self.directory), "+uf", "+xa", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        assert wait_for(lambda: _listening(self.port), timeout=10), "storescp did not start"
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def received(self) -> list[Dataset]:
        files = sorted(p for p in self.directory.iterdir() if p.is_file() and not p.name.startswith("."))
        return [dcmread(p, stop_before_pixels=True) for p in files]

    def destination(self) -> dict[str, object]:
        return {"name": "storescp", "ae_title": self.ae_title, "host": "127.0.0.1", "port": self.port}


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@dataclass
class Worker:
    """One `dicomnode worker` process (its own process group) and its procrastinate worker id."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    worker_id: int = 0

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    db_url: str
    env: dict[str, str]
    port: int
    storescp: UniqueStorescp
    node: ServeProcess
    workers: list[Worker] = field(default_factory=list)

    def logs(self) -> str:
        parts = [f"--- serve\n{self.node.log_tail()}"]
        parts += [f"--- worker {w.name} (id {w.worker_id})\n{w.log_tail()}" for w in self.workers]
        return "\n".join(parts)


def _sql(db_url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        return list(conn.execute(statement, params).fetchall())  # type: ignore[arg-type]


@pytest.fixture
def cluster(db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A front end (serve --no-worker), two workers and a storescp destination, all on ``db_url``."""
    storescp = UniqueStorescp(tmp_path / "storescp").start()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    port = get_port()
    env = serve_env(
        DB__URL=db_url, NET__PORT=port, NET__PROCESSES=1, STORE__ROOT=tmp_path / "store", STORE__FSYNC="false",
        JOBS__QUIET_SECONDS=1, JOBS__RULES_FILE=rules, JOBS__STALLED_WORKER_SECONDS=5, JOBS__POLL_INTERVAL=0.2,
        JOBS__DELETE_SUCCEEDED_JOBS="false", JOBS__RETRY_BACKOFF_SECONDS=0.2, JOBS__RETRY_MAX_BACKOFF_SECONDS=1,
        DESTINATIONS=json.dumps([storescp.destination()]),
    )
    # Every node process seeds an empty rule table from jobs.rules_file at start; importing first
    # makes the rules (and their author) explicit and leaves the seed nothing to do.
    imported = subprocess.run(
        dicomnode_command("rules", "import", str(rules), "--author", "test"), env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    node = ServeProcess(env=env, log_path=tmp_path / "serve.log", cwd=tmp_path, args=["--no-worker", "--no-web"])
    running = Cluster(db_url=db_url, env=env, port=port, storescp=storescp, node=node)
    try:
        node.start()
        for name in ("a", "b"):
            log_path = tmp_path / f"worker-{name}.log"
            with open(log_path, "ab") as log:
                process = subprocess.Popen(
                    dicomnode_command("worker", "--name", name), env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True,
                )
            worker = Worker(name, process, log_path)
            running.workers.append(worker)
            known = {w.worker_id for w in running.workers}

            def registered(worker: Worker = worker, known: set[int] = known) -> int | None:
                assert worker.process.poll() is None, f"worker exited:\n{worker.log_tail()}"
                ids = {int(r[0]) for r in _sql(db_url, "SELECT id FROM procrastinate_workers")} - known
                return ids.pop() if len(ids) == 1 else None

            worker_id = wait_for(registered, timeout=40, interval=0.2)
            assert worker_id, f"worker {name} did not register:\n{worker.log_tail()}"
            worker.worker_id = int(worker_id)  # type: ignore[call-overload]
        node.wait_ready(port=port, timeout=40)
        yield running
    finally:
        for worker in running.workers:
            if worker.process.poll() is None:
                worker.kill()
        if node.process is not None and node.process.poll() is None:
            node.kill()
        storescp.stop()


def _send(cluster: Cluster, datasets: list[Dataset], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    results = scu.send_files(scu.Peer("DICOMNODE", "127.0.0.1", cluster.port), paths, calling_ae_title="MODALITY")
    assert all(r.ok for r in results), [r for r in results if not r.ok]


def _sent_deliveries(db_url: str) -> int:
    return int(query(db_url, select(func.count()).select_from(Delivery).where(
        Delivery.state == DeliveryState.SENT))[0][0])


def test_twenty_series_on_two_workers_are_each_processed_once(cluster: Cluster, tmp_path: Path) -> None:
    series = [synthetic_ct(shape=(3, 64, 64), seed=200 + i) for i in range(20)]
    started = time.monotonic()
    for index, datasets in enumerate(series):
        _send(cluster, datasets, tmp_path / "sent" / str(index))
    assert wait_for(lambda: _sent_deliveries(cluster.db_url) >= 20, timeout=60, interval=0.5), cluster.logs()
    elapsed = time.monotonic() - started
    time.sleep(3)  # three more completion sweeps: nothing else may be queued

    sent_series = {datasets[0].SeriesInstanceUID for datasets in series}
    runs = [r[0] for r in query(cluster.db_url, select(Run))]
    assert len(runs) == 20 and {r.series_instance_uid for r in runs} == sent_series, "one run per series"
    assert all((r.state, r.attempts) == (RunState.DONE, 1) for r in runs), [(r.id, r.state, r.attempts) for r in runs]
    outputs = [r[0] for r in query(cluster.db_url, select(RunOutput))]
    assert sorted(o.run_fk for o in outputs) == sorted(r.id for r in runs), "one output per run"
    ours = query(cluster.db_url, select(Instance.sop_instance_uid).join(Series, Series.id == Instance.series_fk)
                 .where(Series.source_run_fk.is_not(None)))
    assert sorted(u for (u,) in ours) == sorted(o.sop_instance_uid for o in outputs), "one SC per series indexed"
    deliveries = [r[0] for r in query(cluster.db_url, select(Delivery))]
    assert len(deliveries) == 20 and all(d.attempts == 1 for d in deliveries)

    received = cluster.storescp.received()
    assert sorted(ds.SOPInstanceUID for ds in received) == sorted(o.sop_instance_uid for o in outputs), (
        "each SC once at the destination")
    assert {ds.StudyInstanceUID for ds in received} == {datasets[0].StudyInstanceUID for datasets in series}

    jobs = _sql(cluster.db_url, "SELECT task_name, status::text, attempts, worker_id FROM procrastinate_jobs "
                "WHERE task_name IN ('process_series', 'deliver')")
    assert sorted((t, s) for t, s, _, _ in jobs) == [("deliver", "succeeded")] * 20 + [
        ("process_series", "succeeded")] * 20
    print(f"20 series sent and delivered in {elapsed:.1f} s")


def _big_series(seed: int, slices: int = 64) -> list[Dataset]:
    """A CT series of ``slices`` 512x512 slices, cheaply: two generated slices, copied."""
    base = synthetic_ct(shape=(2, 512, 512), seed=seed)
    series_instance_uid = base[0].SeriesInstanceUID
    out = []
    for index in range(slices):
        ds = base[index % 2].copy()
        ds.file_meta = base[index % 2].file_meta.copy()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_instance_uid
        ds.InstanceNumber = index + 1
        x, y, _ = (float(v) for v in base[0].ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, -2.5 * index]
        ds.SliceLocation = -2.5 * index
        out.append(ds)
    return out


def test_a_worker_killed_mid_run_has_its_job_retried_by_the_other(cluster: Cluster, tmp_path: Path) -> None:
    series = _big_series(seed=300)
    _send(cluster, series, tmp_path / "sent")

    # catch the run while it runs: freeze (SIGSTOP) the worker that holds its job, check, SIGKILL it
    def running() -> tuple[int, int] | None:
        rows = _sql(cluster.db_url, "SELECT run.id, j.worker_id FROM run JOIN procrastinate_jobs j ON j.id = run.job_id"
                    " WHERE run.state = 'running' AND j.status = 'doing' AND j.worker_id IS NOT NULL")
        return (int(rows[0][0]), int(rows[0][1])) if rows else None  # type: ignore[call-overload]

    caught = wait_for(running, timeout=40, interval=0.02)
    assert caught, f"the run was never seen running:\n{cluster.logs()}"
    run_id, worker_id = caught  # type: ignore[misc]
    (victim,) = [w for w in cluster.workers if w.worker_id == worker_id]
    (survivor,) = [w for w in cluster.workers if w is not victim]
    os.killpg(victim.process.pid, signal.SIGSTOP)
    state = _sql(cluster.db_url, "SELECT state::text, attempts FROM run WHERE id = %s", run_id)
    assert state == [("running", 1)], f"the run was not caught mid-run: {state}"
    victim.kill()
    killed_at = time.monotonic()

    def done() -> bool:
        return _sql(cluster.db_url, "SELECT state::text FROM run WHERE id = %s", run_id) == [("done",)] and (
            _sent_deliveries(cluster.db_url) >= 1)

    assert wait_for(done, timeout=60, interval=0.3), cluster.logs()
    recovered = time.monotonic() - killed_at
    time.sleep(2)  # a late duplicate delivery would show up by now

    (run,) = [r[0] for r in query(cluster.db_url, select(Run))]
    assert (run.id, run.state, run.attempts) == (run_id, RunState.DONE, 2), "retried once, then done"
    assert "stalled job retried" in survivor.log_path.read_text(errors="replace"), survivor.log_tail()
    (job,) = _sql(cluster.db_url, "SELECT status::text, worker_id FROM procrastinate_jobs WHERE id = %s", run.job_id)
    assert job[0] == "succeeded"
    (delivery,) = [r[0] for r in query(cluster.db_url, select(Delivery))]
    assert (delivery.state, delivery.attempts) == (DeliveryState.SENT, 1)
    # the retry's SC, once, at the destination; none from the killed attempt
    (received,) = cluster.storescp.received()
    finished = [o for (o,) in query(cluster.db_url, select(RunOutput).where(RunOutput.sha256 != ""))]
    assert [o.sop_instance_uid for o in finished] == [received.SOPInstanceUID]
    assert received.SeriesInstanceUID == delivery.series_instance_uid
    print(f"killed worker {victim.name} (procrastinate id {worker_id}) mid-run; run {run_id} done by "
          f"{survivor.name} {recovered:.1f} s later")
