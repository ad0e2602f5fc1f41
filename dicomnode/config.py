"""Node settings: one validated model loaded from conf/dicomnode.yaml and DICOMNODE_* variables.

Precedence, highest first: values passed by the CLI, environment (``DICOMNODE_NET__PORT``),
the YAML file, the defaults below. Nothing here reads settings at import time; ``cli.py``
calls :func:`load_settings` once and passes sections down.
"""

from __future__ import annotations

import ipaddress
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

#: Where ``load_settings`` looks when no path is given (and no DICOMNODE_CONFIG is set).
DEFAULT_CONFIG_PATH = Path("conf/dicomnode.yaml")

# PS3.5 6.2: AE titles are up to 16 characters of the default repertoire, no backslash or
# control characters, and not all spaces.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


class DuplicatePolicy(StrEnum):
    """What to do when a SOP Instance UID that is already stored arrives again."""

    #: Replace when study and series match, refuse when they differ (the default).
    REPLACE_SAME_SERIES = "replace-same-series"
    #: Always replace the stored copy.
    REPLACE = "replace"
    #: Keep the stored copy, answer Success, discard the new bytes (like many PACS).
    KEEP = "keep"
    #: Refuse every duplicate with a failure status.
    REJECT = "reject"


class LogLevel(StrEnum):
    """Log levels accepted in ``log.level``."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    """Console lines for people, JSON lines for log shippers."""

    CONSOLE = "console"
    JSON = "json"


def _check_ae_title(value: str) -> str:
    stripped = value.strip()
    if not stripped or not _AE_TITLE.match(value):
        raise ValueError(
            f"{value!r} is not a valid AE title: 1 to 16 printable ASCII characters, "
            "no backslash, not all spaces"
        )
    return stripped


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetSettings(_Section):
    """The DIMSE service: who we are, where we listen, whom we accept."""

    ae_title: str = "DICOMNODE"
    host: str = "0.0.0.0"
    port: int = Field(11112, ge=1, le=65535)
    #: Maximum PDU we accept, in bytes; 0 means no limit (PS3.8 9.3.3.2).
    max_pdu: int = Field(262144, ge=0)
    #: Associations served at once by each process; more are rejected (transient, 0x02).
    max_associations: int = Field(16, ge=1, le=1000)
    #: Processes sharing the DIMSE port (SO_REUSEPORT); 0 means one per CPU core.
    processes: int = Field(0, ge=0, le=64)
    #: Calling AE titles allowed to associate; empty means any.
    allowed_ae_titles: list[str] = Field(default_factory=list)
    #: Peer hosts or networks (CIDR) allowed to associate; empty means any.
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Seconds to wait for the next PDU before aborting an idle association.
    network_timeout: float = Field(60.0, gt=0)
    #: Seconds to wait for a DIMSE message inside an association.
    dimse_timeout: float = Field(60.0, gt=0)
    #: Seconds an association's network thread sleeps when idle: lower is faster per
    #: instance and costs more CPU per open association (pynetdicom's default is 0.001).
    poll_interval: float = Field(0.0002, gt=0, le=0.01)

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return _check_ae_title(value)

    @field_validator("allowed_ae_titles")
    @classmethod
    def _allowed_ae_titles(cls, values: list[str]) -> list[str]:
        return [_check_ae_title(v) for v in values]

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"{value!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8)"
                ) from exc
        return values


class StoreSettings(_Section):
    """The file store."""

    root: Path = Path("var/store")
    #: Refuse new instances (0xA700) while free space on the store is below this many MB.
    min_free_mb: int = Field(1024, ge=0)
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.REPLACE_SAME_SERIES
    #: fsync each file and its directory before answering Success. Off only for throwaway tests.
    fsync: bool = True


class DbSettings(_Section):
    """The PostgreSQL database; no URL means an embedded server started by pgserver."""

    url: str | None = None
    #: Data directory of the embedded server (used only when ``url`` is empty).
    embedded_dir: Path = Path("var/pgdata")
    pool_size: int = Field(8, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError(
                f"{value!r} is not a PostgreSQL URL: use postgresql://user@host:port/dbname "
                "or leave it empty for the embedded server"
            )
        return value


class WebSettings(_Section):
    """The HTTP service (DICOMweb, admin API, health)."""

    host: str = "0.0.0.0"
    port: int = Field(8042, ge=1, le=65535)


class LogSettings(_Section):
    """Logging."""

    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.CONSOLE
    #: Log pynetdicom's own DIMSE chatter (very verbose).
    debug_dimse: bool = False


class Settings(BaseSettings):
    """Everything the node needs to run, validated before anything starts."""

    model_config = SettingsConfigDict(
        env_prefix="DICOMNODE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    net: NetSettings = NetSettings()
    store: StoreSettings = StoreSettings()
    db: DbSettings = DbSettings()
    web: WebSettings = WebSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = _yaml_path_var.get("path")
        if yaml_path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)


# load_settings passes the YAML path to settings_customise_sources through this dict;
# pydantic-settings gives that hook no other way in.
_yaml_path_var: dict[str, Path | None] = {"path": None}


class ConfigError(Exception):
    """The configuration is invalid."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration ({source}):\n  " + "\n  ".join(problems))


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in error["loc"])
    env = "DICOMNODE_" + "__".join(str(p) for p in error["loc"]).upper()
    message = error["msg"]
    if error["type"] == "enum":
        message = f"must be one of {error['ctx']['expected']}"
    elif error["type"] == "extra_forbidden":
        message = "is not a known setting (check the spelling against conf/dicomnode.yaml)"
    value = error.get("input")
    shown = "" if error["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
    return f"{field}{shown}: {message} [env {env}]"


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate the node's settings.

    Parameters
    ----------
    path
        YAML file; defaults to ``$DICOMNODE_CONFIG`` or ``conf/dicomnode.yaml`` when it exists.
    **overrides
        Section dicts that win over everything else (what CLI flags set).

    Returns
    -------
    Settings
        The validated settings.

    Raises
    ------
    ConfigError
        With one line per invalid field, naming the field, the value and what is allowed.
    """
    if path is None:
        env_path = os.environ.get("DICOMNODE_CONFIG")
        if env_path:
            path = Path(env_path)
        elif DEFAULT_CONFIG_PATH.exists():
            path = DEFAULT_CONFIG_PATH
    if path is not None and not path.is_file():
        raise ConfigError(str(path), [f"config file {path} does not exist"])
    _yaml_path_var["path"] = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(str(path or "defaults"), [_describe(e) for e in exc.errors()]) from exc
    except (OSError, ValueError) as exc:  # unreadable or malformed YAML
        raise ConfigError(str(path), [str(exc)]) from exc
    finally:
        _yaml_path_var["path"] = None
