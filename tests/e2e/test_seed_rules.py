"""Every node process seeds an empty rule table from jobs.rules_file; a bad file stops it clearly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.helpers import ServeProcess, dicomnode_command, get_port, serve_env

pytestmark = pytest.mark.slow

RULE = """
- name: seeded-ct
  when: {attr: Modality, equals: CT}
  run: key_image_montage
"""


def test_a_front_end_without_worker_seeds_the_rules(db_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    port = get_port()
    env = serve_env(DB__URL=db_url, NET__PORT=port, NET__HOST="127.0.0.1", NET__PROCESSES=1,
                    STORE__ROOT=tmp_path / "store", STORE__MIN_FREE_MB=0, JOBS__RULES_FILE=rules)
    node = ServeProcess(env=env, log_path=tmp_path / "serve.log", cwd=tmp_path, args=["--no-worker", "--no-web"])
    node.start()
    try:
        node.wait_ready(port=port)
        with psycopg.connect(db_url) as conn:
            names = [row[0] for row in conn.execute("SELECT name FROM rule").fetchall()]
        assert names == ["seeded-ct"], node.log_tail()
    finally:
        assert node.terminate() == 0


def test_an_invalid_rules_file_stops_serve_with_its_name(db_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "bad-rules.yaml"
    rules.write_text("- name: broken\n  when: {attr: NotAKeyword, equals: CT}\n  run: key_image_montage\n")
    env = serve_env(DB__URL=db_url, NET__PORT=get_port(), NET__HOST="127.0.0.1", NET__PROCESSES=1,
                    STORE__ROOT=tmp_path / "store", JOBS__RULES_FILE=rules)
    result = subprocess.run(
        dicomnode_command("serve", "--no-web"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "bad-rules.yaml" in result.stderr and "NotAKeyword" in result.stderr
