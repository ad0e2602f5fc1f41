"""Request and response bodies of the admin API (pydantic, at the edge only).

A rule travels as the JSON form of its YAML (see :mod:`dicomnode.routing.rules`); it is
validated by ``routing.rules.parse_rule`` so that an invalid one is refused with the path and
reason of every error, as ``dicomnode rules import`` does.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Body, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

_RULE_DOC = (
    "The rule as in conf/rules.yaml: name, priority, enabled, when (all/any/not over attr with "
    "equals/in/matches/range/exists/contains), run, send_to, send_to_calling_ae, quiet_seconds, "
    "rerun_on_new_instances, route_own_outputs."
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reason(_Body):
    """Why a change is made, for the rule's version and the audit log."""

    reason: str = Field("", max_length=2000)


class RuleEdit(Reason):
    """A rule to create, or the new content of a rule."""

    rule: dict[str, Any] = Field(description=_RULE_DOC)


class DryRun(_Body):
    """Evaluate a saved rule (``name``) or a proposed one (``rule``) against stored series."""

    name: str | None = Field(None, description="A saved rule, in its current version.")
    rule: dict[str, Any] | None = Field(None, description="A proposed rule (not saved). " + _RULE_DOC)
    series_instance_uids: list[str] | None = Field(
        None, max_length=1000, description="Series to try; default: the most recently received ones."
    )
    limit: int = Field(50, ge=1, le=1000, description="How many recent series, when none are listed.")

    @model_validator(mode="after")
    def _one_rule(self) -> DryRun:
        if (self.name is None) == (self.rule is None):
            raise ValueError("give either name (a saved rule) or rule (a proposed one), not both or neither")
        return self


class RuleOut(BaseModel):
    """A rule in its current version."""

    name: str
    version: int
    enabled: bool
    priority: int
    action: str
    author: str
    reason: str
    changed_at: dt.datetime
    rule: dict[str, Any]


class VersionOut(BaseModel):
    """One version of a rule: what it said, who made it, when and why."""

    version: int
    current: bool
    action: str
    enabled: bool
    author: str
    reason: str
    created_at: dt.datetime
    rule: dict[str, Any]


class SeriesVerdict(BaseModel):
    """The rule on one stored series."""

    series_instance_uid: str
    #: The condition tree holds for the series.
    matched: bool
    #: It matches and nothing blocks it: completion would route it.
    would_route: bool
    #: Why a match would not route (rule disabled, the series is our own output).
    blocked: str = ""
    #: One sentence per condition, in tree order.
    reasons: list[str] = Field(default_factory=list)
    #: Why the series could not be tried (not stored, unreadable); then matched is false.
    error: str = ""


class DryRunOut(BaseModel):
    """What a rule would do to each series tried."""

    rule: str
    version: int | None
    proposed: bool
    matched: int
    series: list[SeriesVerdict]


class JobOut(BaseModel):
    """A procrastinate job and the run or delivery it works on."""

    job_id: int
    task: str
    queue: str
    status: str
    attempts: int
    scheduled_at: dt.datetime | None
    subject: str
    subject_state: str
    error: str


class RunOut(BaseModel):
    """A pipeline run."""

    run_id: int
    state: str
    series_instance_uid: str
    rule: str
    rule_version: int
    pipeline: str
    pipeline_version: str
    generation: int
    attempts: int
    failure_reason: str
    job_id: int | None
    queued_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class DeliveryOut(BaseModel):
    """Sending one output series of a run to one destination."""

    delivery_id: int
    run_id: int
    series_instance_uid: str
    destination: str
    state: str
    attempts: int
    last_error: str
    job_id: int | None
    last_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None


class JobsOut(BaseModel):
    """Jobs, runs and deliveries, newest first."""

    jobs: list[JobOut]
    runs: list[RunOut]
    deliveries: list[DeliveryOut]


class RetryOut(BaseModel):
    """A retry: the failed job and the job that will run."""

    retried_job_id: int
    job_id: int


class TokenCreate(_Body):
    """A token to make."""

    name: str = Field(min_length=1, max_length=64)


class TokenOut(BaseModel):
    """A token, never its secret."""

    name: str
    active: bool
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreated(TokenOut):
    """A new token with its secret, shown this once."""

    token: str


class AuditOut(BaseModel):
    """One audit entry."""

    at: dt.datetime
    actor: str
    action: str
    target: str
    reason: str
    detail: dict[str, Any]


#: An optional ``reason`` query parameter (DELETE has no body).
ReasonQuery = Annotated[str, Query(max_length=2000, description="Why, for the audit log.")]
#: An optional JSON body ``{"reason": "..."}``.
ReasonBody = Annotated[Reason | None, Body()]
