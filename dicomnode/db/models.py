"""Tables of the index: patient, study, series, instance, and the association log.

Columns hold what QIDO-RS and C-FIND match on and return, so neither opens a file. DICOM
values keep their DICOM spelling (dates as ``date``, times and names as the DICOM strings);
free text is ``text`` because scanners do not keep to the VR length limits.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
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
