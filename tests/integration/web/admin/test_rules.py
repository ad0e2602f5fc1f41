"""Rules through the admin API: CRUD, versions and restore (author and reason kept), errors, dry-run."""

from __future__ import annotations

from sqlalchemy import select

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.db.models import AuditEntry, RuleVersion
from tests.integration.web.admin.conftest import Admin

CT_RULE = {
    "name": "ct-montage",
    "when": {"all": [{"attr": "Modality", "equals": "CT"}, {"fact": "instance_count", "range": {"min": 3}}]},
    "run": "key_image_montage",
    "send_to": ["pacs"],
}


def test_create_update_disable_restore_delete_round_trip(admin: Admin) -> None:
    created = admin.call("POST", "/rules", json={"rule": CT_RULE, "reason": "first try"})
    assert created.status_code == 201, created.text
    assert created.json() | {"changed_at": None} == {
        "name": "ct-montage", "version": 1, "enabled": True, "priority": 0, "action": "created", "author": "alice",
        "reason": "first try", "changed_at": None, "rule": created.json()["rule"],
    }
    assert created.json()["rule"]["send_to"] == ["pacs"]
    assert admin.call("POST", "/rules", json={"rule": CT_RULE}).status_code == 409

    changed = {"when": {"attr": "Modality", "equals": "MR"}, "run": "key_image_montage", "priority": 5}
    updated = admin.call("PUT", "/rules/ct-montage", json={"rule": changed, "reason": "MR too"})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["version"], updated.json()["priority"]) == (2, 5)
    assert admin.call("GET", "/rules/ct-montage").json()["rule"]["when"] == {"attr": "Modality", "equals": "MR"}

    disabled = admin.call("POST", "/rules/ct-montage/disable", json={"reason": "noisy"})
    assert (disabled.json()["version"], disabled.json()["enabled"]) == (3, False)
    assert admin.call("POST", "/rules/ct-montage/enable").json()["enabled"] is True

    restored = admin.call("POST", "/rules/ct-montage/versions/1/restore", json={"reason": "back to CT"})
    assert restored.status_code == 200, restored.text
    assert restored.json()["version"] == 5 and restored.json()["rule"]["when"] == CT_RULE["when"]
    history = admin.call("GET", "/rules/ct-montage/versions").json()
    assert [(v["version"], v["action"], v["author"], v["reason"], v["current"]) for v in history] == [
        (1, "created", "alice", "first try", False),
        (2, "updated", "alice", "MR too", False),
        (3, "disabled", "alice", "noisy", False),
        (4, "enabled", "alice", "", False),
        (5, "restored", "alice", "back to CT", True),
    ]
    assert admin.call("GET", "/rules/ct-montage/versions/2").json()["rule"]["priority"] == 5
    assert admin.call("GET", "/rules/ct-montage/versions/9").status_code == 404
    assert [r["name"] for r in admin.call("GET", "/rules").json()] == ["ct-montage"]

    deleted = admin.call("DELETE", "/rules/ct-montage", params={"reason": "retired"})
    assert (deleted.status_code, deleted.json()["action"], deleted.json()["version"]) == (200, "deleted", 6)
    assert admin.call("GET", "/rules").json() == []
    assert admin.call("GET", "/rules/ct-montage").status_code == 404
    assert len(admin.call("GET", "/rules/ct-montage/versions").json()) == 6, "versions outlive the rule"

    with admin.sessions() as session:
        audit = [(e.actor, e.action, e.target, e.reason) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.target == "rule:ct-montage").order_by(AuditEntry.id))]
        authors = set(session.scalars(select(RuleVersion.author)))
    assert audit == [
        ("alice", "rule.create", "rule:ct-montage", "first try"),
        ("alice", "rule.update", "rule:ct-montage", "MR too"),
        ("alice", "rule.disable", "rule:ct-montage", "noisy"),
        ("alice", "rule.enable", "rule:ct-montage", ""),
        ("alice", "rule.restore", "rule:ct-montage", "back to CT"),
        ("alice", "rule.delete", "rule:ct-montage", "retired"),
    ]
    assert authors == {"alice"}
    assert [e["action"] for e in admin.call("GET", "/audit", params={"target": "rule:ct-montage"}).json()][0] == (
        "rule.delete")


def test_unknown_names_are_404(admin: Admin) -> None:
    for method, path in [
        ("GET", "/rules/nope"), ("PUT", "/rules/nope"), ("DELETE", "/rules/nope"), ("POST", "/rules/nope/disable"),
        ("GET", "/rules/nope/versions"), ("POST", "/rules/nope/versions/1/restore"),
    ]:
        answer = admin.call(method, path, json={"rule": {**CT_RULE, "name": "nope"}} if method == "PUT" else None)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"] == "NotFound" and "nope" in answer.json()["detail"]


def test_an_invalid_rule_is_refused_with_every_error_path(admin: Admin) -> None:
    bad = {
        "name": "Bad Name",
        "when": {"all": [{"attr": "Modalty", "equals": "CT"}, {"attr": "SeriesDescription", "matches": "(unclosed"}]},
        "run": [],
        "colour": "blue",
    }
    answer = admin.call("POST", "/rules", json={"rule": bad, "reason": "x"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "RuleInvalid" and "invalid" in body["detail"]
    paths = {e["path"] for e in body["errors"]}
    assert {"name", "when.all[0].attr", "when.all[1].matches", "run", "colour"} <= paths, body["errors"]
    assert all(e["reason"] for e in body["errors"])
    assert admin.call("GET", "/rules").json() == []

    admin.call("POST", "/rules", json={"rule": CT_RULE})
    renamed = admin.call("PUT", "/rules/ct-montage", json={"rule": {**CT_RULE, "name": "other"}})
    assert renamed.status_code == 422 and renamed.json()["errors"][0]["path"] == "name"
    assert admin.call("POST", "/rules", json={"reason": "no rule"}).status_code == 400
    assert len(admin.call("GET", "/rules/ct-montage/versions").json()) == 1


def test_dry_run_of_a_saved_and_a_proposed_rule_explains_each_series(admin: Admin) -> None:
    ct = synthetic_ct(shape=(3, 16, 16), seed=31)
    small = synthetic_ct(shape=(2, 16, 16), seed=32)
    admin.ingest(ct + small)
    ct_uid, small_uid = str(ct[0].SeriesInstanceUID), str(small[0].SeriesInstanceUID)
    admin.call("POST", "/rules", json={"rule": CT_RULE})

    saved = admin.call("POST", "/rules/dry-run", json={"name": "ct-montage"})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["rule"], body["version"], body["proposed"], body["matched"]) == ("ct-montage", 1, False, 1)
    verdicts = {v["series_instance_uid"]: v for v in body["series"]}
    assert set(verdicts) == {ct_uid, small_uid}
    assert verdicts[ct_uid]["matched"] and verdicts[ct_uid]["would_route"]
    assert not verdicts[small_uid]["matched"]
    why_not = " ".join(verdicts[small_uid]["reasons"])
    assert "instance_count" in why_not and "2" in why_not, why_not
    assert any("Modality" in reason for reason in verdicts[ct_uid]["reasons"])

    proposed = {**CT_RULE, "name": "mr-only", "when": {"attr": "Modality", "equals": "MR"}, "enabled": False}
    tried = admin.call(
        "POST", "/rules/dry-run",
        json={"rule": proposed, "series_instance_uids": [ct_uid, "1.2.3.999"]},
    ).json()
    assert (tried["rule"], tried["version"], tried["proposed"], tried["matched"]) == ("mr-only", None, True, 0)
    first, missing = tried["series"]
    assert not first["matched"] and "CT" in " ".join(first["reasons"]) and "MR" in " ".join(first["reasons"])
    assert missing["error"] and "1.2.3.999" in missing["error"]
    assert admin.call("GET", "/rules/mr-only").status_code == 404, "a dry-run saves nothing"

    disabled = admin.call("POST", "/rules/dry-run", json={"rule": {**CT_RULE, "enabled": False}}).json()
    ct_verdict = next(v for v in disabled["series"] if v["series_instance_uid"] == ct_uid)
    assert ct_verdict["matched"] and not ct_verdict["would_route"] and "disabled" in ct_verdict["blocked"]

    assert admin.call("POST", "/rules/dry-run", json={"name": "nope"}).status_code == 404
    assert admin.call("POST", "/rules/dry-run", json={}).status_code == 400
    invalid = admin.call("POST", "/rules/dry-run", json={"rule": {"name": "x", "when": {}, "run": "a"}})
    assert invalid.status_code == 422 and invalid.json()["errors"]
