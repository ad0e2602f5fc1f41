"""The whole loop over real DIMSE and PostgreSQL: C-STORE -> quiet -> rule -> montage -> store -> storescp."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.db.models import (
    Delivery,
    DeliveryState,
    Instance,
    RuleVersion,
    Run,
    RunInput,
    RunOutput,
    RunState,
    Series,
)
from dicomnode.jobs.process import PRIVATE_CREATOR, PRIVATE_GROUP, RUN_ID_ELEMENT
from dicomnode.jobs.worker import BackgroundWorker
from dicomnode.provenance import lineage
from tests.helpers import wait_for
from tests.integration.jobs.loop import (
    MONTAGE_RULE,
    PIPELINES,
    age_series,
    jobs_section,
    seed_rules,
    send_series,
)

pytestmark = pytest.mark.dcmtk


def test_series_is_routed_processed_stored_provenanced_and_delivered(
    node_factory, storescp, sessions, jobs_factory, tmp_path: Path
) -> None:
    storescp.start()
    node = node_factory(jobs=jobs_section(), destinations=[storescp.destination()])
    seed_rules(sessions, MONTAGE_RULE)
    series = synthetic_ct(shape=(6, 32, 32), seed=3)
    send_series(node, series, tmp_path / "sent")
    jobs = jobs_factory(node.settings)

    assert jobs.route().runs_queued == (), "routed before its quiet period"
    age_series(node.db_url)
    summary = jobs.route()
    assert len(summary.runs_queued) == 1
    jobs.drain()

    with sessions() as session:
        run = session.scalars(select(Run)).one()
        assert run.state is RunState.DONE, run.failure_reason
        assert (run.pipeline_name, run.pipeline_version, run.generation, run.attempts) == (
            "key_image_montage", "1.0.0", 1, 1)
        assert run.host and run.device == "cpu" and run.started_at and run.finished_at
        version = session.get(RuleVersion, run.rule_version_fk)
        assert version.body["name"] == "ct-montage" and version.version == 1
        inputs = session.scalars(select(RunInput).where(RunInput.run_fk == run.id)).all()
        assert sorted(i.sop_instance_uid for i in inputs) == sorted(ds.SOPInstanceUID for ds in series)
        assert all(i.sha256 for i in inputs)
        output = session.scalars(select(RunOutput).where(RunOutput.run_fk == run.id)).one()
        stored = session.scalars(select(Instance).where(Instance.sop_instance_uid == output.sop_instance_uid)).one()
        assert output.instance_fk == stored.id and output.sha256 == stored.sha256
        out_series = session.get(Series, stored.series_fk)
        assert out_series.source_run_fk == run.id, "the output series is marked as ours"
        assert stored.calling_ae_title == node.ae_title and stored.peer_address == f"run:{run.id}"
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.destination, delivery.series_instance_uid) == ("storescp", output.series_instance_uid)

    assert wait_for(lambda: storescp.received(), timeout=10)
    received = pydicom.dcmread(storescp.received()[0])
    assert received.SOPInstanceUID == output.sop_instance_uid
    assert received.StudyInstanceUID == series[0].StudyInstanceUID
    # the output carries its run id: a private element for machines, the equipment text for people
    block = received.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    assert block[RUN_ID_ELEMENT].value == str(run.id)
    assert f"dicomnode run {run.id}" in received.ContributingEquipmentSequence[0].ContributionDescription
    with sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.state, delivery.attempts, delivery.last_error) == (DeliveryState.SENT, 1, "")
        chain = lineage.trace(session=session, sop_instance_uid=output.sop_instance_uid)
        assert [step.run_id for step in chain.made_by] == [run.id]
        assert chain.made_by[0].rule_name == "ct-montage" and chain.made_by[0].deliveries[0].state == "sent"
        used = lineage.trace(session=session, sop_instance_uid=series[0].SOPInstanceUID)
        assert [step.run_id for step in used.used_by] == [run.id]


def test_embedded_worker_runs_the_sweep_and_the_jobs_by_itself(
    node_factory, storescp, sessions, tmp_path: Path
) -> None:
    """What `dicomnode serve` runs: a worker thread whose periodic sweep finds the quiet series."""
    storescp.start()
    node = node_factory(jobs=jobs_section(completion_interval=1), destinations=[storescp.destination()])
    seed_rules(sessions, MONTAGE_RULE)
    worker = BackgroundWorker(node.settings, node.db_url)
    worker.services.pipelines = PIPELINES
    worker.start()
    try:
        send_series(node, synthetic_ct(shape=(4, 32, 32), seed=5), tmp_path / "sent")
        assert wait_for(lambda: storescp.received(), timeout=20), "no result reached the destination"
    finally:
        worker.stop()
    assert not worker.alive and worker.error is None


def test_results_go_back_to_the_calling_ae(node_factory, storescp, sessions, jobs_factory, tmp_path: Path) -> None:
    storescp.ae_title = "MODALITY"  # the AE that sends the series, and is configured as a destination
    storescp.start()
    node = node_factory(jobs=jobs_section(), destinations=[storescp.destination("ct-scanner")])
    seed_rules(sessions, {**MONTAGE_RULE, "send_to": [], "send_to_calling_ae": True})
    send_series(node, synthetic_ct(shape=(3, 16, 16), seed=6), tmp_path / "sent", calling_ae_title="MODALITY")
    jobs = jobs_factory(node.settings)
    age_series(node.db_url)
    jobs.route()
    jobs.drain()
    with sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
    assert (delivery.destination, delivery.state) == ("@MODALITY", DeliveryState.SENT), delivery.last_error
    assert len(storescp.received()) == 1
