"""Read-only index queries for people: the study list behind ``dicomnode studies``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from dicomnode.db.models import Patient, Series, Study
from dicomnode.db.session import make_engine, make_sessionmaker


@dataclass(frozen=True, slots=True)
class StudyRow:
    """One line of the study list."""

    study_instance_uid: str
    study_date: str
    patient_id: str
    modalities: list[str]
    study_description: str
    series_count: int
    instance_count: int
    last_received: str


def list_studies(*, url: str, limit: int = 50) -> list[StudyRow]:
    """The most recently received studies with their series and instance counts."""
    engine = make_engine(url, pool_size=1)
    try:
        with make_sessionmaker(engine)() as session:
            last = func.max(Series.last_received_at)
            rows = session.execute(
                select(
                    Study.study_instance_uid,
                    Study.study_date,
                    Patient.patient_id,
                    Study.modalities_in_study,
                    Study.study_description,
                    func.count(Series.id),
                    func.coalesce(func.sum(Series.instance_count), 0),
                    last,
                )
                .join(Patient, Patient.id == Study.patient_fk)
                .outerjoin(Series, Series.study_fk == Study.id)
                .group_by(Study.id, Patient.id)
                .order_by(last.desc().nulls_last())
                .limit(limit)
            ).all()
    finally:
        engine.dispose()
    return [
        StudyRow(
            study_instance_uid=r[0],
            study_date=r[1].strftime("%Y-%m-%d") if r[1] else "",
            patient_id=r[2],
            modalities=list(r[3] or []),
            study_description=r[4],
            series_count=int(r[5]),
            instance_count=int(r[6]),
            last_received=r[7].strftime("%Y-%m-%d %H:%M:%S") if r[7] else "",
        )
        for r in rows
    ]
