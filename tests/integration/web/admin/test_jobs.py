"""Jobs through the admin API: list jobs, runs and deliveries with their state; retry a failed run."""

from __future__ import annotations

from sqlalchemy import select

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.db.models import AuditEntry, Run, RunState
from tests.helpers import make_settings
from tests.integration.jobs.loop import MONTAGE_RULE, age_series, jobs_section
from tests.integration.web.admin.conftest import Admin


def test_a_failed_run_is_listed_and_retried(admin: Admin, jobs_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    rule = {**MONTAGE_RULE, "send_to": [], "run": "no_such_pipeline"}
    assert admin.call("POST", "/rules", json={"rule": rule, "reason": "try it"}).status_code == 201
    series = synthetic_ct(shape=(3, 16, 16), seed=41)
    admin.ingest(series)
    settings = make_settings(db_url, admin.settings.store.root, jobs=jobs_section())
    jobs = jobs_factory(settings)
    age_series(db_url)
    (run_id,) = jobs.route().runs_queued
    jobs.drain()

    failed = admin.call("GET", "/jobs", params={"status": "failed"}).json()
    assert [(j["task"], j["subject"], j["subject_state"]) for j in failed] == [
        ("process_series", f"run {run_id}", "failed")
    ]
    assert "no_such_pipeline" in failed[0]["error"]
    assert admin.call("GET", "/jobs", params={"status": "done"}).status_code == 400  # a run state, not a job status
    runs = admin.call("GET", "/runs", params={"state": "failed"}).json()
    assert [(r["run_id"], r["rule"], r["rule_version"], r["pipeline"], r["attempts"]) for r in runs] == [
        (run_id, "ct-montage", 1, "no_such_pipeline", 1)
    ]
    assert runs[0]["series_instance_uid"] == series[0].SeriesInstanceUID
    assert admin.call("GET", "/runs", params={"state": "done"}).json() == []
    assert admin.call("GET", "/runs", params={"state": "nonsense"}).status_code == 400
    assert admin.call("GET", "/deliveries").json() == []

    retried = admin.call("POST", f"/runs/{run_id}/retry", json={"reason": "pipeline installed"})
    assert retried.status_code == 200, retried.text
    assert retried.json()["retried_job_id"] == failed[0]["job_id"] and retried.json()["job_id"] != failed[0]["job_id"]
    with admin.sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None and (run.state, run.job_id) == (RunState.QUEUED, retried.json()["job_id"])
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "job.retry")).one()
    assert (entry.actor, entry.target, entry.reason) == ("alice", f"run:{run_id}", "pipeline installed")
    todo = admin.call("GET", "/jobs", params={"status": "todo"}).json()
    assert [(j["job_id"], j["subject_state"]) for j in todo] == [(retried.json()["job_id"], "queued")]

    again = admin.call("POST", f"/runs/{run_id}/retry")
    assert again.status_code == 409 and "queued" in again.json()["detail"]
    assert admin.call("POST", f"/jobs/{failed[0]['job_id']}/retry").status_code == 409
    assert admin.call("POST", "/runs/999999/retry").status_code == 404
    assert admin.call("POST", "/deliveries/999999/retry").status_code == 404
    assert admin.call("POST", "/jobs/999999/retry").status_code == 404

    jobs.drain()  # fails again, for good: the pipeline is still unknown
    assert admin.call("GET", "/runs", params={"state": "failed"}).json()[0]["attempts"] == 2
    chain = admin.call("GET", f"/trace/{series[0].SOPInstanceUID}").json()
    assert chain["made_by"] == [] and [s["run_id"] for s in chain["used_by"]] == [run_id]
    step = chain["used_by"][0]
    assert step["rule_name"] == "ct-montage" and "no_such_pipeline" in step["failure_reason"]
    assert admin.call("GET", "/trace/1.2.3.4").json()["error"] == "NotFound"
    # /provenance is the same chain under the name the issue gives it
    assert admin.call("GET", f"/provenance/{series[0].SOPInstanceUID}").json() == chain
