"""Every admin endpoint needs an active API token; the OpenAPI document and docs are served."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from dicomnode.db.models import ApiToken, AuditEntry
from dicomnode.web.admin import PREFIX, tokens
from tests.integration.web.admin.conftest import Admin


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/rules"), ("POST", "/rules/dry-run"), ("GET", "/jobs"), ("POST", "/runs/1/retry"), ("GET", "/tokens")],
)
def test_without_a_token_the_answer_is_401_with_a_problem_body(admin: Admin, method: str, path: str) -> None:
    answer = admin.client.request(method, PREFIX + path, json={})
    assert answer.status_code == 401
    assert answer.json()["error"] == "Unauthorized" and "dicomnode tokens create" in answer.json()["detail"]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_or_revoked_token_is_refused_and_use_is_noted(admin: Admin) -> None:
    for bad in ("dn_not-a-token", admin.token + "x", "Basic-looking"):
        answer = admin.client.get(PREFIX + "/rules", headers={"Authorization": f"Bearer {bad}"})
        assert answer.status_code == 401, bad
    assert admin.client.get(PREFIX + "/rules", auth=("alice", admin.token)).status_code == 401  # basic, not bearer

    assert admin.call("GET", "/rules").status_code == 200
    with admin.sessions() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.last_used_at is not None and row.token_sha256 != admin.token and admin.token not in row.token_sha256

    made = admin.call("POST", "/tokens", json={"name": "ci-bot"})
    assert made.status_code == 201 and made.json()["token"].startswith("dn_")
    bot = {"Authorization": f"Bearer {made.json()['token']}"}
    assert admin.client.get(PREFIX + "/jobs", headers=bot).status_code == 200
    assert admin.call("POST", "/tokens", json={"name": "ci-bot"}).status_code == 409
    revoked = admin.call("DELETE", "/tokens/ci-bot", params={"reason": "left"})
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert admin.client.get(PREFIX + "/jobs", headers=bot).status_code == 401
    assert admin.call("DELETE", "/tokens/nobody").status_code == 404
    listed = {t["name"]: t["active"] for t in admin.call("GET", "/tokens").json()}
    assert listed == {"alice": True, "ci-bot": False}
    assert "token" not in admin.call("GET", "/tokens").json()[0]
    with admin.sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        entries = [(e.actor, e.action, e.target, e.reason) for e in rows]
    assert entries == [
        ("test", "token.create", "token:alice", ""),
        ("alice", "token.create", "token:ci-bot", ""),
        ("alice", "token.revoke", "token:ci-bot", "left"),
    ]


def test_token_names_are_checked(admin: Admin) -> None:
    with admin.sessions() as session, pytest.raises(ValueError, match="token name"):
        tokens.create_token(session=session, name="no spaces please", actor="test")
    assert admin.call("POST", "/tokens", json={"name": "bad name"}).status_code == 400


def test_openapi_and_docs_are_served_under_the_admin_prefix(admin: Admin) -> None:
    schema = admin.client.get(PREFIX + "/openapi.json").json()
    for path in (
        "/rules", "/rules/{name}", "/rules/{name}/disable", "/rules/{name}/enable", "/rules/{name}/versions",
        "/rules/{name}/versions/{version}/restore", "/rules/dry-run", "/jobs", "/runs", "/deliveries",
        "/runs/{run_id}/retry", "/deliveries/{delivery_id}/retry", "/jobs/{job_id}/retry",
        "/trace/{sop_instance_uid}", "/audit", "/tokens",
    ):
        assert PREFIX + path in schema["paths"], path
    assert set(schema["paths"][PREFIX + "/rules/{name}"]) == {"get", "put", "delete"}
    assert all(path.startswith(PREFIX) for path in schema["paths"]), "DICOMweb is not in the admin document"
    assert PREFIX + "/rules/dry-run" in admin.client.get("/openapi.json").json()["paths"], "nor only there"
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    docs = admin.client.get(PREFIX + "/docs")
    assert docs.status_code == 200 and f"{PREFIX}/openapi.json" in docs.text
