"""Settings: defaults, YAML, DICOMNODE_* overrides and their precedence, and errors that say what
is wrong and what is allowed (in ``load_settings`` and in the CLI)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from dicomnode.cli import app
from dicomnode.config import ConfigError, DuplicatePolicy, Settings, load_settings

REPO_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "dicomnode.yaml"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DICOMNODE_* variables and no conf/dicomnode.yaml in reach, unless a test adds them."""
    for name in list(os.environ):
        if name.startswith("DICOMNODE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return "\n".join(exc.value.problems)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.net.ae_title == "DICOMNODE"
    assert settings.net.port == 11112
    assert settings.net.allowed_ae_titles == [] and settings.net.allowed_hosts == []
    assert settings.net.max_associations >= 1
    assert settings.store.duplicate_policy is DuplicatePolicy.REPLACE_SAME_SERIES
    assert settings.store.min_free_mb == 1024
    assert settings.store.fsync is True
    assert settings.db.url is None  # embedded PostgreSQL
    assert settings.log.level == "INFO"


def test_repository_config_lists_the_defaults() -> None:
    """conf/dicomnode.yaml documents every key with its default: loading it changes nothing."""
    assert load_settings(REPO_CONFIG) == Settings()


def test_yaml_file(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "net:\n  port: 4242\n  ae_title: YAMLAE\n  allowed_hosts: [10.0.0.0/8]\n"
        "store:\n  duplicate_policy: keep\n  min_free_mb: 10\n"
        "db:\n  url: postgresql://user@db:5432/pacs\n",
    )
    settings = load_settings(path)
    assert (settings.net.port, settings.net.ae_title, settings.net.allowed_hosts) == (4242, "YAMLAE", ["10.0.0.0/8"])
    assert settings.store.duplicate_policy is DuplicatePolicy.KEEP
    assert settings.store.min_free_mb == 10
    assert settings.db.url == "postgresql://user@db:5432/pacs"
    assert settings.web.port == 8042  # untouched sections keep their defaults


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "net:\n  port: 4343\n")
    monkeypatch.setenv("DICOMNODE_CONFIG", str(path))
    assert load_settings().net.port == 4343


def test_environment_beats_yaml_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "net:\n  port: 4242\n  ae_title: YAMLAE\n")
    monkeypatch.setenv("DICOMNODE_NET__PORT", "5555")
    settings = load_settings(path)
    assert settings.net.port == 5555
    assert settings.net.ae_title == "YAMLAE"  # the rest of the YAML section still applies


def test_overrides_beat_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the CLI passes wins over the environment, which wins over YAML."""
    path = write_yaml(tmp_path, "net:\n  port: 4242\n")
    monkeypatch.setenv("DICOMNODE_NET__PORT", "5555")
    assert load_settings(path, net={"port": 6666}).net.port == 6666


def test_environment_list_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMNODE_NET__ALLOWED_AE_TITLES", json.dumps(["MODALITY1", "PACS"]))
    assert load_settings().net.allowed_ae_titles == ["MODALITY1", "PACS"]


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.net.port = 1  # type: ignore[misc]


# (environment variable, value, field in the message, what the message must say is allowed)
INVALID = [
    ("DICOMNODE_NET__AE_TITLE", "BAD\\AE", "net.ae_title", ["no backslash", "16"]),
    ("DICOMNODE_NET__AE_TITLE", "SEVENTEEN_CHARS_X", "net.ae_title", ["1 to 16"]),
    ("DICOMNODE_NET__AE_TITLE", "    ", "net.ae_title", ["not all spaces"]),
    ("DICOMNODE_NET__PORT", "70000", "net.port", ["65535"]),
    ("DICOMNODE_NET__PORT", "eleven", "net.port", ["integer"]),
    (
        "DICOMNODE_STORE__DUPLICATE_POLICY", "sometimes", "store.duplicate_policy",
        ["replace-same-series", "'replace'", "keep", "reject"],
    ),
    ("DICOMNODE_NET__COLOUR", "blue", "net.colour", ["not a known setting"]),
    ("DICOMNODE_NET__ALLOWED_HOSTS", '["10.0.0.0/33"]', "net.allowed_hosts", ["CIDR", "10.0.0.0/8"]),
    ("DICOMNODE_NET__ALLOWED_HOSTS", '["pacs.example.org"]', "net.allowed_hosts", ["CIDR"]),
    ("DICOMNODE_NET__ALLOWED_AE_TITLES", '["OK", "BAD\\\\AE"]', "net.allowed_ae_titles", ["no backslash"]),
    ("DICOMNODE_DB__URL", "mysql://user@db/pacs", "db.url", ["postgresql://"]),
    ("DICOMNODE_STORE__MIN_FREE_MB", "-1", "store.min_free_mb", ["greater than or equal to 0"]),
]


@pytest.mark.parametrize(("variable", "value", "field", "allowed"), INVALID, ids=[f"{v}={x}" for v, x, _, _ in INVALID])
def test_invalid_environment_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, allowed: list[str]
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    message = problems(exc)
    assert message.startswith(f"{field} "), message
    for words in allowed:
        assert words in message
    assert variable in message  # tells the admin where to fix it


def test_invalid_yaml_values_all_reported(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "net:\n  ae_title: TOO_LONG_AE_TITLE_X\n  port: 0\nstore:\n  duplicate_policy: never\nweb:\n  colour: 1\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    fields = sorted(p.split(" ")[0].rstrip(":") for p in exc.value.problems)
    assert fields == ["net.ae_title", "net.port", "store.duplicate_policy", "web.colour"]
    assert str(path) in str(exc.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nowhere.yaml")


@pytest.mark.parametrize(
    "text", ["net: [1, 2\n", "- just\n- a list\n", "net:\n\tport: 1\n"], ids=["unclosed", "list", "tab"]
)
def test_malformed_yaml_is_a_config_error(tmp_path: Path, text: str) -> None:
    """A broken file is a ConfigError naming the file, never a YAML or Python traceback."""
    path = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert str(path) in str(exc.value)


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_config_show_invalid_policy_exits_2() -> None:
    result = CliRunner().invoke(app, ["config", "show"], env={"DICOMNODE_STORE__DUPLICATE_POLICY": "sometimes"})
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "store.duplicate_policy" in flat
    assert "replace-same-series" in flat
    assert "Traceback" not in result.output


def test_cli_config_show_prints_effective_values(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "net:\n  port: 4242\n  ae_title: YAMLAE\n")
    result = CliRunner().invoke(app, ["config", "show", "--config", str(path)], env={"DICOMNODE_NET__PORT": "5555"})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["net"]["port"] == 5555
    assert shown["net"]["ae_title"] == "YAMLAE"
    assert shown["store"]["duplicate_policy"] == "replace-same-series"


def test_cli_malformed_yaml_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "net: [1, 2\n")
    result = CliRunner().invoke(app, ["config", "show", "--config", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "node.yaml" in result.output


def test_unknown_top_level_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMNODE_NETT__PORT", "104")  # a typo of DICOMNODE_NET__PORT
    with pytest.raises(ConfigError) as exc:
        load_settings()
    message = problems(exc)
    assert message.startswith("DICOMNODE_NETT__PORT: 'nett' is not a section"), message
    assert "DICOMNODE_NET__..." in message


def test_variables_that_are_not_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMNODE_VENV", "/opt/venv")
    monkeypatch.setenv("DICOMNODE_TEST_PG", "postgresql://postgres@127.0.0.1/postgres")
    assert load_settings().net.port > 0
