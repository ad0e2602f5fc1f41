"""Node settings: one validated model loaded from conf/dicomnode.yaml and DICOMNODE_* variables.

Precedence, highest first: values passed by the CLI, environment (``DICOMNODE_NET__PORT``),
the YAML file, the defaults below. Nothing here reads settings at import time; ``dicomnode.cli``
calls :func:`load_settings` once and passes sections down.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
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
    #: Processes sharing the DIMSE port (each association to the least busy, see net.balance);
    #: 0 means one per CPU core.
    processes: int = Field(0, ge=0, le=64)
    #: Calling AE titles allowed to associate; empty means any.
    allowed_ae_titles: list[str] = Field(default_factory=list)
    #: Peer hosts or networks (CIDR) allowed to associate; empty means any.
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Seconds to wait for the next PDU before aborting an idle association.
    network_timeout: float = Field(60.0, gt=0)
    #: Seconds to wait for a DIMSE message inside an association.
    dimse_timeout: float = Field(60.0, gt=0)
    #: Seconds an association's network and reactor threads sleep when idle: lower is faster
    #: per instance and costs more CPU per open association (pynetdicom's default is 0.001).
    poll_interval: float = Field(0.0002, gt=0, le=0.01)
    #: Serve C-STORE/C-ECHO of storage-only associations in the network thread
    #: (``net.data_phase``); false: every message through pynetdicom's reactor.
    direct_store: bool = True

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


class WebAuth(StrEnum):
    """How HTTP clients of DICOMweb authenticate."""

    #: No authentication: only for a closed network.
    NONE = "none"
    #: ``Authorization: Bearer <token>`` with one of ``web.bearer_tokens``.
    BEARER = "bearer"
    #: HTTP basic with a user and password from ``web.basic_users``.
    BASIC = "basic"


class WebSettings(_Section):
    """The HTTP service (DICOMweb, admin API, health)."""

    host: str = "0.0.0.0"
    port: int = Field(8042, ge=1, le=65535)
    #: Path of the DICOMweb root; OHIF and most viewers expect /dicom-web.
    dicomweb_prefix: str = "/dicom-web"
    #: Path under which a reverse proxy publishes the app (ASGI root_path), e.g. /pacs; empty: none.
    root_path: str = ""
    #: Absolute URL of the app as clients reach it, e.g. https://pacs.example.org/pacs, for the
    #: URLs in answers (RetrieveURL, BulkDataURI); empty: from each request's Host and root_path.
    public_url: str = ""
    #: Browser origins allowed to call DICOMweb (CORS), e.g. http://viewer:3000; "*" for any.
    cors_origins: list[str] = Field(default_factory=list)
    auth: WebAuth = WebAuth.NONE
    #: Accepted bearer tokens (auth: bearer); set them from the environment, not the YAML file.
    bearer_tokens: list[SecretStr] = Field(default_factory=list)
    #: user -> password (auth: basic); set them from the environment, not the YAML file.
    basic_users: dict[str, SecretStr] = Field(default_factory=dict)
    #: Largest STOW-RS request body accepted, in MB (2**20 bytes); larger ones get 413.
    max_upload_mb: int = Field(2048, ge=1)
    #: Memory for cached instance metadata (DICOM JSON) per process, in MB; 0 turns it off.
    metadata_cache_mb: int = Field(64, ge=0)
    #: Processes that read headers in parallel for large metadata requests; 0: one per core
    #: (none on a single core), 1: read in the request's thread.
    metadata_workers: int = Field(0, ge=0, le=64)

    @field_validator("dicomweb_prefix", "root_path")
    @classmethod
    def _path(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and (not value.startswith("/") or any(c in value for c in "?#% ")):
            raise ValueError(f"{value!r} is not a URL path: start it with / (e.g. /dicom-web)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError(f"{value!r} is not an http(s) URL without query, e.g. https://pacs.example.org/pacs")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> WebSettings:
        if not self.dicomweb_prefix:
            raise ValueError("dicomweb_prefix must not be empty (use /dicom-web)")
        if self.auth is WebAuth.BEARER and not self.bearer_tokens:
            raise ValueError("auth is bearer but bearer_tokens is empty")
        if self.auth is WebAuth.BASIC and not self.basic_users:
            raise ValueError("auth is basic but basic_users is empty")
        return self


class LogSettings(_Section):
    """Logging."""

    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.CONSOLE
    #: Log pynetdicom's own DIMSE chatter (very verbose).
    debug_dimse: bool = False


class DimseDestination(_Section):
    """A DIMSE peer we may send to, e.g. the destination AE of a C-MOVE (PS3.4 C.4.2)."""

    #: Destinations are discriminated on ``kind``; a DIMSE peer may leave it out.
    kind: Literal["dimse"] = "dimse"
    #: Our name for the peer, used in logs and (later) routing rules.
    name: str = Field(min_length=1)
    ae_title: str
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return _check_ae_title(value)


class DicomwebDestination(_Section):
    """A DICOMweb server we send results to by STOW-RS (PS3.18 10.5)."""

    kind: Literal["dicomweb"]
    #: Our name for the server, used in logs and in routing rules (``send_to``).
    name: str = Field(min_length=1)
    #: The STOW-RS studies resource, e.g. http://pacs:8042/dicom-web/studies.
    stow_url: str
    #: Extra request headers (values are secrets: set them from the environment).
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    #: ``Authorization: Bearer <token>``; set it from the environment, not the YAML file.
    bearer_token: SecretStr | None = None
    #: HTTP basic user and password; set the password from the environment.
    basic_user: str | None = None
    basic_password: SecretStr | None = None
    #: Seconds to wait for the server (connect and each read).
    timeout: float = Field(60.0, gt=0)
    #: Check the server's TLS certificate (https).
    verify_tls: bool = True

    @field_validator("stow_url")
    @classmethod
    def _stow_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or any(c in value for c in " \t\n"):
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. http://pacs:8042/dicom-web/studies)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _auth(self) -> DicomwebDestination:
        if self.bearer_token is not None and self.basic_user is not None:
            raise ValueError("give bearer_token or basic_user/basic_password, not both")
        if (self.basic_user is None) != (self.basic_password is None):
            raise ValueError("basic_user and basic_password go together")
        return self


def _destination_kind(value: Any) -> str:
    kind = value.get("kind", "dimse") if isinstance(value, dict) else getattr(value, "kind", "dimse")
    return str(kind)


def _unique_names(destinations: list[Any]) -> list[Any]:
    names = [d.name for d in destinations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"destination names must be unique; repeated: {', '.join(duplicates)}")
    return destinations


#: A destination for results, discriminated on ``kind`` (``dimse`` when left out).
Destination = Annotated[
    Annotated[DimseDestination, Tag("dimse")] | Annotated[DicomwebDestination, Tag("dicomweb")],
    Discriminator(_destination_kind),
]


class JobQueue(StrEnum):
    """The procrastinate queues a worker can serve."""

    #: The series-completion sweep and stalled-job recovery (cheap, frequent).
    COMPLETION = "completion"
    #: Pipeline runs that want a GPU.
    GPU = "gpu"
    #: Pipeline runs on CPU.
    CPU = "cpu"
    #: Sending results to destinations.
    DISPATCH = "dispatch"


_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?|mps)$")


class JobsSettings(_Section):
    """Series completion, AI pipeline runs and result delivery: procrastinate jobs and workers."""

    #: Seconds without a new instance after which a series is complete (a rule may override).
    quiet_seconds: int = Field(10, ge=1, le=3600)
    #: Seconds between two completion sweeps (the periodic ``check_completion`` job).
    completion_interval: int = Field(1, ge=1, le=59)
    #: Most quiet series one sweep routes (the rest wait for the next sweep).
    completion_batch: int = Field(100, ge=1, le=10000)
    #: Jobs one worker runs at once (each in its own thread).
    concurrency: int = Field(1, ge=1, le=64)
    #: Queues served by the embedded worker and by ``dicomnode worker`` without ``--queue``.
    queues: list[JobQueue] = Field(default_factory=lambda: list(JobQueue), min_length=1)
    #: Seconds between polls for jobs due later (retries); new jobs arrive at once (LISTEN/NOTIFY).
    poll_interval: float = Field(1.0, gt=0, le=60)
    #: Attempts at a pipeline run before it fails for good.
    run_max_attempts: int = Field(3, ge=1, le=100)
    #: Attempts at sending one output series to one destination before that delivery fails.
    delivery_max_attempts: int = Field(20, ge=1, le=1000)
    #: Seconds before the first retry; each next retry waits twice as long ...
    retry_backoff_seconds: float = Field(2.0, gt=0, le=3600)
    #: ... but never longer than this.
    retry_max_backoff_seconds: float = Field(300.0, gt=0, le=86400)
    #: Seconds without a heartbeat after which a worker counts as dead and its jobs are retried.
    stalled_worker_seconds: float = Field(30.0, ge=5, le=3600)
    #: Delete procrastinate's row of a job that succeeded (runs and deliveries keep the record).
    delete_succeeded_jobs: bool = True
    #: Device for pipelines: auto (cuda for gpu-queue runs when torch sees one, else cpu), cpu,
    #: cuda, cuda:N or mps.
    device: str = "auto"
    #: Pipelines whose runs go to the gpu queue; the others go to the cpu queue.
    gpu_pipelines: list[str] = Field(default_factory=list)
    #: Where weights live: <weights_dir>/<pipeline>.pt, or a MONAI bundle <weights_dir>/<pipeline>/;
    #: unset: the reference weights shipped in ai_pipelines/weights.
    weights_dir: Path | None = None
    #: Refuse weights whose sha256 the manifest.json beside them does not list.
    verify_weights: bool = True
    #: Routing rules loaded into an empty rule table at the first start; the database owns them after.
    rules_file: Path = Path("conf/rules.yaml")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"{value!r} is not a device: auto, cpu, cuda, cuda:N or mps")
        return value

    @model_validator(mode="after")
    def _backoff(self) -> JobsSettings:
        if self.retry_max_backoff_seconds < self.retry_backoff_seconds:
            raise ValueError("retry_max_backoff_seconds must not be below retry_backoff_seconds")
        return self


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
    #: Peers we send to: DIMSE (kind dimse, the default; C-MOVE sends only to these, else
    #: 0xA801) and DICOMweb STOW-RS (kind dicomweb), named in routing rules' send_to.
    destinations: Annotated[list[Destination], AfterValidator(_unique_names)] = []
    jobs: JobsSettings = JobsSettings()

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


#: DICOMNODE_* variables that are not settings: the config file path, the run scripts' venv,
#: the test suite's PostgreSQL and shared data.
_NOT_SETTINGS = frozenset({"DICOMNODE_CONFIG", "DICOMNODE_VENV", "DICOMNODE_TEST_PG", "DICOMNODE_SHARED_DATA"})


def _unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """One problem per DICOMNODE_<X> variable whose <X> is no section of Settings.

    pydantic-settings refuses unknown keys inside a section (``DICOMNODE_NET__COLOUR``) but
    silently ignores an unknown top level (``DICOMNODE_NETT__PORT``): an admin's typo would
    leave the default in force without a word.
    """
    sections = {name.upper() for name in Settings.model_fields}
    problems = []
    for variable in sorted(environ):
        if not variable.startswith("DICOMNODE_") or variable in _NOT_SETTINGS:
            continue
        section = variable.removeprefix("DICOMNODE_").split("__", 1)[0]
        if section not in sections:
            known = ", ".join(f"DICOMNODE_{name}__..." for name in sorted(sections))
            problems.append(f"{variable}: {section.lower()!r} is not a section of the settings (known: {known})")
    return problems


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
    unknown = _unknown_environment(os.environ)
    if unknown:
        raise ConfigError("environment", unknown)
    _yaml_path_var["path"] = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(str(path or "defaults"), [_describe(e) for e in exc.errors()]) from exc
    except (OSError, ValueError, yaml.YAMLError) as exc:  # unreadable or malformed YAML
        raise ConfigError(str(path), [f"cannot read YAML: {exc}"]) from exc
    finally:
        _yaml_path_var["path"] = None
