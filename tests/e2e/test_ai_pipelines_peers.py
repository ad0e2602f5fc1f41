"""The four AI pipelines end to end, through the rules we ship.

DCMTK storescu sends four series to `dicomnode serve` (embedded worker, CPU): a brain FLAIR
series with a tumour, a chest CT with nodules, and an MR series meant for radiotherapy
planning that was acquired accelerated (so it is both denoised and turned into a synthetic
CT). The routing rules are those of ``conf/rules.yaml`` (the montage rule dropped, every AI
rule sending to a DCMTK storescp). What storescp receives must be:

- for the brain series: a SEG, a TID 1500 SR and a Secondary Capture;
- for the chest CT: a TID 1500 SR with a nodule, its SEG, a key-image Secondary Capture and
  saliency Secondary Captures;
- for the MR: an "AI synthetic CT" CT series and an "AI denoised" MR series, slice for slice;

and every run in PostgreSQL must name the sha256 of the reference weights it loaded.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
import yaml
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select

from ai_pipelines.provenance import file_sha256
from ai_pipelines.synthetic import anatomy
from ai_pipelines.synthetic.brain_tumours import BrainTumourCase, case_series, make_case
from ai_pipelines.synthetic.chest_nodules import LidcStats, chest_series
from ai_pipelines.synthetic.mr_from_ct import derived_mr_series
from dicomnode.db.models import Delivery, DeliveryState, Run, RunOutput, RunState
from tests.helpers import ServeProcess, dcmtk, get_port, query, serve_env, wait_for
from tests.integration.jobs.loop import Storescp

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "ai_pipelines" / "weights"
AI_PIPELINES = ("brain_tumour_seg", "lung_nodules", "synth_ct", "denoise")
SEG, SR_3D, SC = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE, MR_IMAGE = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"


def _shipped_ai_rules(destination: str) -> str:
    """conf/rules.yaml without the montage, each AI rule sending to ``destination``."""
    rules = yaml.safe_load((ROOT / "conf" / "rules.yaml").read_text())
    chosen = []
    for rule in rules:
        pipelines = {step["pipeline"] if isinstance(step, dict) else step for step in rule["run"]}
        if pipelines & set(AI_PIPELINES):
            chosen.append({**rule, "send_to": [destination], "quiet_seconds": 1})
    assert {p for r in chosen for p in ({s["pipeline"] for s in r["run"]})} == set(AI_PIPELINES)
    return yaml.safe_dump(chosen)


def _brain_flair() -> list[Dataset]:
    """A held-out synthetic glioma case, a 128 mm cube around the tumour at 2 mm, as AX FLAIR."""
    full = make_case(4_000_002, spacing=(2.0, 2.0, 2.0))
    centre = np.argwhere(full.labels > 0).mean(axis=0).astype(int)
    window = tuple(slice(max(0, min(c - 32, n - 64)), max(0, min(c - 32, n - 64)) + 64)
                   for c, n in zip(centre, full.labels.shape, strict=True))
    case = BrainTumourCase(images={k: v[window] for k, v in full.images.items()}, labels=full.labels[window],
                           spacing=full.spacing, template=full.template, source=full.source)
    return case_series(case, "flair", seed=41)


def _planning_mr() -> list[Dataset]:
    """MR-like T1 slices derived from the real head CT, described as an accelerated RT planning scan."""
    case = derived_mr_series(first=4, count=6, seed=43, series_description="T1 RT planning accelerated")
    datasets = list(case.datasets)
    for ds in datasets:
        ds.BodyPartExamined = "HEAD"
    return datasets


class _SolidNodules(LidcStats):
    """Round 10 mm solid nodules: ones a radiologist would not miss (the LIDC mix is for evaluation)."""

    def sample(self, rng: np.random.Generator, *, subsolid_boost: float = 1.0) -> tuple[float, str, int, int, int]:
        return (10.0, "solid", 5, 1, 1)


def _referenced_uids(ds: Dataset) -> set[str]:
    """Series and instance UIDs an output points back to (SEG/SC/derived series and SR evidence)."""
    uids: set[str] = set()
    items = list(ds.get("ReferencedSeriesSequence", []))
    for evidence in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        items += list(evidence.get("ReferencedSeriesSequence", []))
    for item in items:
        uids.add(item.SeriesInstanceUID)
        uids |= {ref.ReferencedSOPInstanceUID for ref in item.get("ReferencedInstanceSequence", [])}
    uids |= {item.ReferencedSOPInstanceUID for item in ds.get("SourceImageSequence", [])}
    return uids


def _save(directory: Path, datasets: list[Dataset]) -> None:
    directory.mkdir(parents=True)
    for ds in datasets:
        ds.save_as(directory / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)


def test_brain_chest_and_planning_mr_come_back_as_seg_sr_sc_and_derived_series(db_url: str, tmp_path: Path) -> None:
    for name in AI_PIPELINES:
        assert (WEIGHTS / f"{name}.pt").is_file(), f"reference weights missing: python -m ai_pipelines.{name}.train"
    try:
        mr = _planning_mr()
    except anatomy.AnatomyUnavailable as exc:
        pytest.fail(f"the real head CT is needed (apt-get install invesalius-examples): {exc}")
    brain = _brain_flair()
    chest, chest_case = chest_series(23, nodules=2, shape=(32, 120, 168), spacing=(2.0, 2.0, 2.0), noise_hu=20.0,
                                     stats=_SolidNodules())
    sources = {"brain": brain, "chest": chest, "mr": mr}
    sent = tmp_path / "sent"
    for name, datasets in sources.items():
        _save(sent / name, datasets)

    receiver = Storescp(tmp_path / "received", get_port()).start()
    port = get_port()
    rules = tmp_path / "rules.yaml"
    rules.write_text(_shipped_ai_rules("results"))
    env = serve_env(
        DB__URL=db_url, NET__PORT=port, NET__PROCESSES=1, STORE__ROOT=tmp_path / "store", STORE__FSYNC="false",
        JOBS__QUIET_SECONDS=1, JOBS__RULES_FILE=rules, DESTINATIONS=json.dumps([receiver.destination("results")]),
    )
    try:
        with ServeProcess(env=env, log_path=tmp_path / "serve.log", cwd=tmp_path, args=["--no-web"]) as node:
            node.wait_ready(port=port)
            files = sorted(str(p) for p in sent.rglob("*.dcm"))
            subprocess.run([dcmtk("storescu"), "-aet", "MODALITY", "-aec", "DICOMNODE", "127.0.0.1", str(port),
                            *files], check=True, capture_output=True, timeout=120)

            def all_delivered() -> bool:
                runs = [r[0] for r in query(db_url, select(Run))]
                if any(r.state is RunState.FAILED for r in runs):
                    return True  # fail fast; the assertions below say which
                deliveries = [d[0] for d in query(db_url, select(Delivery))]
                return (len(runs) == 4 and all(r.state is RunState.DONE for r in runs)
                        and bool(deliveries) and all(d.state is DeliveryState.SENT for d in deliveries))

            assert wait_for(all_delivered, timeout=360, interval=1.0), f"not all delivered:\n{node.log_tail()}"
            assert node.terminate() == 0, node.log_tail()
    finally:
        receiver.stop()

    runs = {r.pipeline_name: r for r in (row[0] for row in query(db_url, select(Run)))}
    assert {name: run.state for name, run in runs.items()} == dict.fromkeys(AI_PIPELINES, RunState.DONE), {
        name: run.failure_reason for name, run in runs.items()}
    for name, run in runs.items():
        assert run.weights_sha256 == file_sha256(WEIGHTS / f"{name}.pt"), f"{name} names the weights it loaded"
        assert run.device == "cpu" and run.pipeline_version
    source_series = {name: datasets[0].SeriesInstanceUID for name, datasets in sources.items()}
    assert runs["brain_tumour_seg"].series_instance_uid == source_series["brain"]
    assert runs["lung_nodules"].series_instance_uid == source_series["chest"]
    assert runs["synth_ct"].series_instance_uid == runs["denoise"].series_instance_uid == source_series["mr"]

    # what storescp holds, by source series and SOP class
    received: dict[str, dict[str, list[Dataset]]] = defaultdict(lambda: defaultdict(list))
    source_of = {ds.SOPInstanceUID: name for name, datasets in sources.items() for ds in datasets}
    source_of |= {uid: name for name, uid in source_series.items()}
    for path in receiver.received():
        ds = dcmread(path)
        (source,) = {source_of[uid] for uid in _referenced_uids(ds) if uid in source_of}
        received[source][ds.SOPClassUID].append(ds)

    outputs = [row[0] for row in query(db_url, select(RunOutput))]
    assert len(outputs) == len(receiver.received()), "everything the runs made was delivered, once"

    brain_out = received["brain"]
    assert set(brain_out) == {SEG, SR_3D, SC} and [len(brain_out[c]) for c in (SEG, SR_3D)] == [1, 1]
    (seg,) = brain_out[SEG]
    assert seg.SegmentationType == "BINARY" and seg.SegmentSequence[0].SegmentAlgorithmName == "brain_tumour_seg"
    assert seg.StudyInstanceUID == brain[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == brain[0].FrameOfReferenceUID

    # At the weights' operating threshold the reference weights find one of the two solid
    # nodules here (p 0.33, 0.5 mm from truth): report, SEG, key image and a saliency image.
    chest_out = received["chest"]
    assert set(chest_out) == {SEG, SR_3D, SC}
    (report,) = chest_out[SR_3D]
    assert report.StudyInstanceUID == chest[0].StudyInstanceUID and len(chest_case.nodules) == 2
    evidence = {item.SeriesInstanceUID for study in report.CurrentRequestedProcedureEvidenceSequence
                for item in study.ReferencedSeriesSequence}
    assert chest[0].SeriesInstanceUID in evidence
    assert any(seg.SeriesInstanceUID in evidence for seg in chest_out[SEG])
    groups = hd.sr.Comprehensive3DSR.from_dataset(report).content.get_volumetric_roi_measurement_groups()
    assert len(groups) >= 1

    mr_out = received["mr"]
    assert set(mr_out) == {CT_IMAGE, MR_IMAGE}
    for sop_class, description in ((CT_IMAGE, "AI synthetic CT"), (MR_IMAGE, "AI denoised")):
        series = mr_out[sop_class]
        assert len(series) == len(mr), f"{description}: one output slice per source slice"
        assert {ds.SeriesDescription for ds in series} == {description}
        assert {ds.FrameOfReferenceUID for ds in series} == {mr[0].FrameOfReferenceUID}
        assert all("DERIVED" in ds.ImageType for ds in series)
        assert {ds.SeriesInstanceUID for ds in series}.isdisjoint({mr[0].SeriesInstanceUID})
