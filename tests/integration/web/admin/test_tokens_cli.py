"""`dicomnode tokens create/list/revoke`: the printed token works against the API until revoked."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dicomnode.cli import app
from dicomnode.web.admin import PREFIX
from tests.integration.web.admin.conftest import Admin


def test_a_created_token_works_until_revoked(
    admin: Admin, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOMNODE_DB__URL", db_url)
    monkeypatch.setenv("DICOMNODE_STORE__ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, list(args), catch_exceptions=False)

    created = cli("tokens", "create", "--name", "ci-bot", "--author", "ops")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("dn_") and len(token) > 40
    headers = {"Authorization": f"Bearer {token}"}
    assert admin.client.get(PREFIX + "/rules", headers=headers).status_code == 200

    duplicate = cli("tokens", "create", "--name", "ci-bot")
    assert duplicate.exit_code == 2 and "exists already" in duplicate.output
    assert cli("tokens", "create", "--name", "has space").exit_code == 2

    listed = cli("tokens", "list")
    assert listed.exit_code == 0 and "ci-bot" in listed.stdout and "alice" in listed.stdout
    assert token not in listed.stdout

    assert cli("tokens", "revoke", "ci-bot", "--reason", "rotated").exit_code == 0
    assert admin.client.get(PREFIX + "/rules", headers=headers).status_code == 401
    assert cli("tokens", "revoke", "nobody").exit_code == 1
    audit = admin.call("GET", "/audit", params={"target": "token:ci-bot"}).json()
    assert [(e["actor"], e["action"], e["reason"]) for e in audit][0][1:] == ("token.revoke", "rotated")
    assert audit[-1]["actor"] == "ops"
