"""Tables of the index: patient, study, series, instance, and the association log.

Columns hold what QIDO-RS and C-FIND match on and return, so neither opens a file. DICOM
values keep their DICOM spelling (dates as ``date``, times and names as the DICOM strings);
free text is ``text`` because scanners do not keep to the VR length limits.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dicomnode.db.base import Base

UID = String(64)  # PS3.5 9.1: at most 64 characters
AE_TITLE = String(16)


class Patient(Base):
    """A patient as identified by PatientID and its issuer; name, birth date and sex are the latest seen."""

    __tablename__ = "patient"
    __table_args__ = (UniqueConstraint("patient_id", "issuer_of_patient_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    patient_id: Mapped[str] = mapped_column(Text, default="", index=True)
    issuer_of_patient_id: Mapped[str] = mapped_column(Text, default="")
    patient_name: Mapped[str] = mapped_column(Text, default="", index=True)
    patient_birth_date: Mapped[dt.date | None] = mapped_column(Date)
    patient_sex: Mapped[str] = mapped_column(Text, default="")

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    """A study, keyed by StudyInstanceUID."""

    __tablename__ = "study"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    study_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    study_time: Mapped[str] = mapped_column(Text, default="")
    accession_number: Mapped[str] = mapped_column(Text, default="", index=True)
    study_id: Mapped[str] = mapped_column(Text, default="")
    study_description: Mapped[str] = mapped_column(Text, default="")
    referring_physician_name: Mapped[str] = mapped_column(Text, default="")
    modalities_in_study: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    """A series, keyed by SeriesInstanceUID, with arrival bookkeeping for completion checks."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    modality: Mapped[str] = mapped_column(Text, default="", index=True)
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str] = mapped_column(Text, default="")
    body_part_examined: Mapped[str] = mapped_column(Text, default="")
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    first_received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_received_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    #: The run that produced this series (our own output), so completion never re-routes it.
    source_run_fk: Mapped[int | None] = mapped_column(
        ForeignKey("run.id", ondelete="SET NULL", use_alter=True), index=True
    )

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Association(Base):
    """One DIMSE association (accepted or rejected), for the admin's audit trail."""

    __tablename__ = "association"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    calling_ae_title: Mapped[str] = mapped_column(AE_TITLE, default="")
    called_ae_title: Mapped[str] = mapped_column(AE_TITLE, default="")
    peer_host: Mapped[str] = mapped_column(Text, default="")
    peer_port: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: accepted, rejected, released, aborted
    outcome: Mapped[str] = mapped_column(Text, default="accepted")
    reason: Mapped[str] = mapped_column(Text, default="")
    instances_received: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class Instance(Base):
    """One stored SOP instance: where its bytes are and what it is."""

    __tablename__ = "instance"
    __table_args__ = (Index("ix_instance_series_fk_instance_number", "series_fk", "instance_number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"))
    sop_class_uid: Mapped[str] = mapped_column(UID, index=True)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    #: Relative to the store root: <StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm
    file_path: Mapped[str] = mapped_column(Text)
    file_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    calling_ae_title: Mapped[str] = mapped_column(AE_TITLE, default="")
    peer_address: Mapped[str] = mapped_column(Text, default="")
    association_fk: Mapped[int | None] = mapped_column(ForeignKey("association.id", ondelete="SET NULL"), index=True)

    series: Mapped[Series] = relationship(back_populates="instances")


# --- routing rules, runs, provenance, delivery, audit ------------------------------------------


class RunState(StrEnum):
    """Where a pipeline run is."""

    QUEUED = "queued"  # waiting for a worker (first time or for a retry)
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # for good: bad input, or out of attempts


class DeliveryState(StrEnum):
    """Where sending one output series to one destination is."""

    PENDING = "pending"  # not sent yet, or waiting for a retry
    SENT = "sent"
    FAILED = "failed"  # out of attempts


def _state(enum: type[StrEnum], name: str) -> Enum:
    # VARCHAR plus a CHECK constraint: adding a state later is a plain migration
    return Enum(
        enum,
        name=name,
        native_enum=False,
        length=16,
        create_constraint=True,
        values_callable=lambda members: [member.value for member in members],
    )


class RoutingRule(Base):
    """A routing rule by name; its content lives in versions, the newest being current."""

    __tablename__ = "rule"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    #: The ``version`` of the rule_version row in effect.
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    #: Set when the rule was deleted; its versions stay for the runs that name them.
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    versions: Mapped[list[RuleVersion]] = relationship(back_populates="rule", order_by="RuleVersion.version")


class RuleVersion(Base):
    """One version of a rule: its body as YAML/JSON data, who made it, when and why."""

    __tablename__ = "rule_version"
    __table_args__ = (UniqueConstraint("rule_fk", "version"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rule_fk: Mapped[int] = mapped_column(ForeignKey("rule.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    #: The rule as ``routing.rules.parse_rule`` reads it.
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    enabled: Mapped[bool] = mapped_column(Boolean)
    #: imported, created, updated, disabled, enabled, restored, deleted
    action: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    rule: Mapped[RoutingRule] = relationship(back_populates="versions")


class SeriesCompletion(Base):
    """Routing bookkeeping of a series: which generation (arrival burst) was routed, and when.

    A generation covers the instances received up to ``last_received_at``; an instance arriving
    later opens the next one. ``routed_at`` is set once every matching rule had its quiet period.
    """

    __tablename__ = "series_completion"

    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)
    last_received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    routed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Run(Base):
    """One pipeline run on one series for one rule version: what ran, where, how it ended."""

    __tablename__ = "run"
    # idempotency: one run per series x rule version x pipeline x arrival generation
    __table_args__ = (UniqueConstraint("series_fk", "rule_version_fk", "pipeline_name", "generation"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    series_fk: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="SET NULL"))
    #: Kept when the series row goes.
    series_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    rule_version_fk: Mapped[int] = mapped_column(ForeignKey("rule_version.id"), index=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    pipeline_name: Mapped[str] = mapped_column(Text)
    #: Filled when the run starts (the worker loads the pipeline; routing never imports it).
    pipeline_version: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    queue: Mapped[str] = mapped_column(Text)
    state: Mapped[RunState] = mapped_column(_state(RunState, "run_state"), default=RunState.QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failure_reason: Mapped[str] = mapped_column(Text, default="")
    weights_sha256: Mapped[str] = mapped_column(Text, default="")
    device: Mapped[str] = mapped_column(Text, default="")
    host: Mapped[str] = mapped_column(Text, default="")
    software_version: Mapped[str] = mapped_column(Text, default="")
    #: The procrastinate job that runs it (latest, after a manual retry).
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    #: A later run of the same rule and pipeline on the same series, whose outputs replace these.
    superseded_by_fk: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"))
    queued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    rule_version: Mapped[RuleVersion] = relationship()
    inputs: Mapped[list[RunInput]] = relationship(back_populates="run")
    outputs: Mapped[list[RunOutput]] = relationship(back_populates="run")


class RunInput(Base):
    """An instance a run read, with its file's sha256 as the index holds it."""

    __tablename__ = "run_input"
    __table_args__ = (UniqueConstraint("run_fk", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_fk: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    instance_fk: Mapped[int | None] = mapped_column(ForeignKey("instance.id", ondelete="SET NULL"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    sha256: Mapped[str] = mapped_column(Text, default="")

    run: Mapped[Run] = relationship(back_populates="inputs")


class RunOutput(Base):
    """An instance a run made; written before it is stored, so completion never routes it."""

    __tablename__ = "run_output"
    __table_args__ = (UniqueConstraint("run_fk", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_fk: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    sop_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    #: Set once the instance is stored and indexed.
    instance_fk: Mapped[int | None] = mapped_column(ForeignKey("instance.id", ondelete="SET NULL"), index=True)
    sha256: Mapped[str] = mapped_column(Text, default="")

    run: Mapped[Run] = relationship(back_populates="outputs")


class Delivery(Base):
    """Sending one output series of a run to one destination: state, attempts, last error."""

    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("run_fk", "series_instance_uid", "destination"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_fk: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    series_instance_uid: Mapped[str] = mapped_column(UID)
    #: A destination name from the settings (``destinations``).
    destination: Mapped[str] = mapped_column(Text)
    state: Mapped[DeliveryState] = mapped_column(
        _state(DeliveryState, "delivery_state"), default=DeliveryState.PENDING, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Who did what, when and why: rule edits, token changes, manual retries."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    actor: Mapped[str] = mapped_column(Text)
    #: e.g. rule.update, rule.restore, job.retry
    action: Mapped[str] = mapped_column(Text, index=True)
    #: e.g. rule:brain-mr-to-tumour-seg, run:42
    target: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class ApiToken(Base):
    """An admin API token: its name and the sha256 of its secret (the secret itself is never stored)."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    #: Who holds it (``ci``, ``alice``); recorded as the author of every change made with it.
    name: Mapped[str] = mapped_column(Text, unique=True)
    #: Hex sha256 of the whole token string.
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: Set when revoked; the row stays, so the audit log's names keep meaning something.
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
