"""Process one run: the one place that joins store, ai_pipelines, provenance and dispatch.

Steps, each committing what it did so that a crash anywhere is redone, never lost:

1. Lock the run, mark it running (one more attempt, host, device), record its inputs.
2. Read the series' instances from the store, run the pipeline (outside any transaction).
3. Record the outputs before storing them (their series are ours from that moment, so the
   completion sweep never routes them), then store each through the store's single entry point
   (``Ingestor.ingest``) with an origin that names the run.
4. One transaction: mark the outputs' series as made by the run, the run done (superseding older
   runs of the same rule and pipeline on the series), plan a delivery per output series and
   destination and defer ``deliver(delivery_id)`` for each.

A failure is recorded on the run (``failure_reason``); it is final for bad input or an
exhausted retry budget, otherwise the run goes back to queued and the job raises for a retry.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import select

import ai_pipelines
from ai_pipelines import registry
from ai_pipelines.base import PipelineInputError, SeriesInput
from ai_pipelines.provenance import AlgorithmInfo
from dicomnode import __version__
from dicomnode.config import JobQueue, Settings
from dicomnode.db.models import Instance, RuleVersion, Run
from dicomnode.dispatch import deliver, destinations
from dicomnode.jobs import defer
from dicomnode.jobs.app import Services
from dicomnode.logs import bound
from dicomnode.provenance import record
from dicomnode.routing.rules import Rule, RuleInvalid, parse_rule
from dicomnode.store.ingest import Origin

__all__ = ["PermanentFailure", "RunOutcome", "origin_for", "process_series", "resolve_device", "weights_path"]

logger = logging.getLogger(__name__)


class PermanentFailure(Exception):
    """The run cannot succeed by retrying (bad parameters, nothing to read)."""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one attempt did."""

    run_id: int
    skipped: bool = False
    outputs: tuple[str, ...] = ()
    deliveries: tuple[int, ...] = ()
    superseded: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Started:
    series_instance_uid: str
    pipeline_name: str
    params: dict[str, Any]
    queue: str
    rule: Rule
    files: tuple[Path, ...]
    calling_ae_titles: tuple[str, ...]


def origin_for(settings: Settings, run_id: int) -> Origin:
    """The origin of a run's outputs: our AE title, and ``run:<id>`` where a peer's address goes."""
    return Origin(calling_ae_title=settings.net.ae_title, peer_address=f"run:{run_id}")


def resolve_device(setting: str, queue: str) -> str:
    """The device a run uses: the configured one, or for ``auto`` cuda on the gpu queue when torch sees a GPU."""
    if setting != "auto":
        return setting
    if queue != JobQueue.GPU.value or importlib.util.find_spec("torch") is None:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def weights_path(weights_dir: Path | None, pipeline_name: str) -> Path:
    """``<dir>/<name>.pt`` when it exists, else ``<dir>/<name>`` (a bundle directory, or nothing).

    ``None`` is the folder of reference weights shipped in the ai_pipelines package.
    """
    if weights_dir is None:
        weights_dir = Path(ai_pipelines.__file__).resolve().parent / "weights"
    checkpoint = weights_dir / f"{pipeline_name}.pt"
    return checkpoint if checkpoint.is_file() else weights_dir / pipeline_name


def _algorithm(pipeline: Any, params: Mapping[str, Any]) -> AlgorithmInfo:
    try:
        return pipeline.algorithm_info(params)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise PermanentFailure(f"parameters refused by {pipeline.name}: {exc}") from exc


#: Private block (PS3.5 7.8) in which every output carries the id of the run that made it.
PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "DICOMNODE PROVENANCE"
RUN_ID_ELEMENT = 0x01  # (0071,xx01) LO: run id, the key of `dicomnode provenance`


def stamp_run(ds: Dataset, run_id: int) -> None:
    """Write the run id into an output: a private element for machines, and the
    ContributingEquipment description the writers made for people."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(RUN_ID_ELEMENT, "LO", str(run_id))
    for item in ds.get("ContributingEquipmentSequence", []):
        if str(item.get("Manufacturer", "")) == "dicomnode":
            description = str(item.get("ContributionDescription", "")).strip()
            item.ContributionDescription = f"{description}; dicomnode run {run_id}".lstrip("; ")[:1024]


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _start(services: Services, run_id: int, device_setting: str) -> _Started | None:
    settings = services.settings
    with services.sessions() as session:
        queue = session.scalar(select(Run.queue).where(Run.id == run_id)) or JobQueue.CPU.value
        device = resolve_device(device_setting, queue)
        run = record.start_run(
            session=session, run_id=run_id, host=socket.gethostname(), device=device, software_version=__version__
        )
        if run is None:
            session.commit()
            return None
        body = session.scalar(select(RuleVersion.body).where(RuleVersion.id == run.rule_version_fk))
        rows = session.execute(
            select(
                Instance.id, Instance.sop_instance_uid, Instance.file_path, Instance.sha256, Instance.calling_ae_title
            )
            .where(Instance.series_fk == run.series_fk)
            .order_by(Instance.instance_number.nulls_last(), Instance.id)
        ).all()
        record.record_inputs(
            session=session, run_id=run_id, inputs=[record.InputRecord(r[0], r[1], r[3]) for r in rows]
        )
        started = (run.series_instance_uid, run.pipeline_name, dict(run.params or {}), run.queue)
        session.commit()
    if not rows:
        raise PermanentFailure("the series has no stored instances")
    root = settings.store.root.resolve()
    return _Started(
        series_instance_uid=started[0],
        pipeline_name=started[1],
        params=started[2],
        queue=started[3],
        rule=parse_rule(body or {}, path=f"run {run_id} rule version"),
        files=tuple(root / r[2] for r in rows),
        calling_ae_titles=tuple(sorted({r[4] for r in rows if r[4]})),
    )


def process_series(*, services: Services, run_id: int, final: bool = True) -> RunOutcome:
    """Run the run's pipeline on its series, store and record the outputs, plan their deliveries.

    Parameters
    ----------
    services
        Settings, sessions and the ingestor of this worker.
    run_id
        A queued run (a done or failed run is skipped).
    final
        This is the last attempt the job allows: a transient failure is recorded as final.

    Raises
    ------
    PipelineInputError, RuleInvalid, UnknownPipeline, PermanentFailure
        Recorded as a final failure; the job does not retry them.
    Exception
        Anything else, recorded on the run; the job retries it.
    """
    settings = services.settings
    with bound(run_id=run_id):
        try:
            started = _start(services, run_id, settings.jobs.device)
            if started is None:
                logger.info("run skipped: done or failed already")
                return RunOutcome(run_id, skipped=True)
            with bound(series_instance_uid=started.series_instance_uid):
                return _process(services, run_id, started)
        except (PipelineInputError, PermanentFailure, registry.UnknownPipeline, RuleInvalid) as exc:
            _fail(services, run_id, f"{type(exc).__name__}: {exc}", final=True)
            raise
        except Exception as exc:
            _fail(services, run_id, f"{type(exc).__name__}: {exc}", final=final)
            raise


def _fail(services: Services, run_id: int, reason: str, *, final: bool) -> None:
    logger.warning("run failed", extra={"final": final, "reason": reason[:200]})
    with services.sessions() as session:
        record.fail_run(session=session, run_id=run_id, reason=reason, final=final)
        session.commit()


def _process(services: Services, run_id: int, started: _Started) -> RunOutcome:
    settings = services.settings
    began = time.monotonic()
    pipeline_cls = registry.load(started.pipeline_name, built_ins=services.pipelines)
    device = resolve_device(settings.jobs.device, started.queue)
    pipeline = pipeline_cls(weights_path(settings.jobs.weights_dir, started.pipeline_name), device,
                            verify_weights=settings.jobs.verify_weights)
    algorithm = _algorithm(pipeline, started.params)
    series = SeriesInput(tuple(pydicom.dcmread(path) for path in started.files))
    result = pipeline.run(series, algorithm=algorithm)
    outputs = [
        record.OutputRecord(str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPClassUID))
        for ds in result.datasets
    ]
    with services.sessions() as session:
        record.plan_outputs(session=session, run_id=run_id, outputs=outputs)
        session.commit()
    origin = origin_for(settings, run_id)
    stored = []
    for ds in result.datasets:
        stamp_run(ds, run_id)
        filed = services.ingestor.ingest(_encode(ds), origin=origin)
        stored.append(record.StoredOutput(filed.sop_instance_uid, filed.series_instance_uid, filed.sha256))
    with services.sessions() as session:
        superseded = record.finish_run(
            session=session,
            run_id=run_id,
            pipeline_version=pipeline_cls.version,
            weights_sha256=algorithm.weights_sha256 or "",
            outputs=stored,
        )
        names = destinations.names_for(
            send_to=started.rule.send_to,
            send_to_calling_ae=started.rule.send_to_calling_ae,
            calling_ae_titles=started.calling_ae_titles,
        )
        delivery_ids = deliver.plan(
            session=session, run_id=run_id, series_instance_uids=[s.series_instance_uid for s in stored], names=names
        )
        for delivery_id in delivery_ids:
            job_id = defer.defer_in_transaction(
                session=session, task_name=defer.DELIVER, queue=JobQueue.DISPATCH.value,
                lock=f"delivery:{delivery_id}", queueing_lock=f"delivery:{delivery_id}", delivery_id=delivery_id,
            )
            deliver.set_job(session=session, delivery_id=delivery_id, job_id=job_id)
        session.commit()
    logger.info(
        "run done",
        extra={"pipeline": started.pipeline_name, "outputs": len(stored), "deliveries": len(delivery_ids),
               "seconds": round(time.monotonic() - began, 3)},
    )
    return RunOutcome(
        run_id,
        outputs=tuple(s.sop_instance_uid for s in stored),
        deliveries=tuple(delivery_ids),
        superseded=tuple(superseded),
    )
