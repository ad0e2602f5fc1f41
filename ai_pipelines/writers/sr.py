"""write_tid1500_sr: findings -> a Comprehensive 3D SR holding a TID 1500 Measurement Report.

Each finding becomes one Volumetric ROI measurement group (TID 1411) with its
tracking identifier and UID, the finding type and site, its centre as a
SCOORD3D POINT in the source's Frame of Reference (geometric purpose
"Center"), references to the source images it lies on, and the measurements it
has: volume (mm3), diameter (mm) and probability. A SEG of the same findings
is linked by the tracking UID its segments share and is listed in the
evidence. The report is marked COMPLETE, UNVERIFIED and PRELIMINARY: a machine
made it and nobody has signed it.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ai_pipelines.base import Finding, OutputKind, SeriesInput
from ai_pipelines.frames import FrameRef
from ai_pipelines.provenance import AlgorithmInfo
from ai_pipelines.volume import Volume
from ai_pipelines.writers import identity

__all__ = ["write_tid1500_sr"]


def _slices_of(finding: Finding, volume: Volume) -> list[FrameRef]:
    """Source slices a finding lies on: within half a diameter of its centre (at least one)."""
    k = float(volume.patient_to_index(finding.centre)[0])
    half = (finding.diameter_mm or 0.0) / 2 / volume.spacing[0]
    first = max(0, int(np.floor(k - half + 0.5)))
    last = min(volume.shape[0] - 1, int(np.ceil(k + half - 0.5)))
    if first > last:  # centre outside the stack: take the nearest slice
        first = last = int(np.clip(round(k), 0, volume.shape[0] - 1))
    return list(dict.fromkeys(volume.sources[first:last + 1]))


def _measurements(finding: Finding, algorithm_id: hd.sr.AlgorithmIdentification) -> list[
    hd.sr.Measurement
]:
    values: list[tuple[Code, float | None, Code]] = [
        (codes.SCT.Volume, finding.volume_mm3, codes.UCUM.CubicMillimeter),
        (codes.SCT.Diameter, finding.diameter_mm, codes.UCUM.Millimeter),
        (codes.DCM.Probability, finding.probability, codes.UCUM.NoUnits),
    ]
    return [
        hd.sr.Measurement(name=name, value=float(value), unit=unit, algorithm_id=algorithm_id)
        for name, value, unit in values
        if value is not None
    ]


def _group(
    finding: Finding, volume: Volume, algorithm_id: hd.sr.AlgorithmIdentification
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    sources = [
        hd.sr.SourceImageForSegmentation(
            referenced_sop_class_uid=ref.sop_class_uid,
            referenced_sop_instance_uid=ref.sop_instance_uid,
            referenced_frame_numbers=[ref.frame_number] if ref.frame_number else None,
        )
        for ref in _slices_of(finding, volume)
    ]
    centre = hd.sr.VolumeSurface(
        graphic_type=hd.sr.GraphicTypeValues3D.POINT,
        graphic_data=np.array([finding.centre]),
        frame_of_reference_uid=volume.frame_of_reference_uid,
        source_images=sources,
    )
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=finding.tracking_uid, identifier=finding.tracking_identifier
        ),
        referenced_volume_surface=centre,
        finding_type=finding.finding_type,
        algorithm_id=algorithm_id,
        finding_sites=[hd.sr.FindingSite(finding.finding_site)] if finding.finding_site else None,
        measurements=_measurements(finding, algorithm_id),
        geometric_purpose=codes.DCM.Center,
    )


def _nothing_found(
    looked_for: Code, algorithm_id: hd.sr.AlgorithmIdentification
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="no findings"),
        algorithm_id=algorithm_id,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=looked_for, value=codes.SCT.Absent),
        ],
    )


def write_tid1500_sr(
    series: SeriesInput,
    volume: Volume,
    findings: Sequence[Finding],
    *,
    algorithm: AlgorithmInfo,
    segmentation: Dataset | None = None,
    looked_for: Code = codes.DCM.Finding,
    procedure_reported: Code = codes.SCT.ImagingProcedure,
    series_number: int | None = None,
    series_description: str | None = None,
    series_instance_uid: str | None = None,
) -> Dataset:
    """Write findings as a TID 1500 Measurement Report in a Comprehensive 3D SR.

    Parameters
    ----------
    series : SeriesInput
        The source instances (all listed as evidence).
    volume : Volume
        The source volume; places each finding on its source slices.
    findings : Sequence[Finding]
        Findings in report order; may be empty (see ``looked_for``).
    algorithm : AlgorithmInfo
        Written as the observer device, into each group and measurement, and to
        ContributingEquipment.
    segmentation : Dataset or None, optional
        A SEG of the same findings, added to the evidence (its segments share the
        findings' tracking UIDs).
    looked_for : Code, optional
        What the algorithm searches for (e.g. SCT "Nodule"); with no findings the
        report says it is absent (a TID 1501 group, qualitative evaluation
        ``<looked_for> = SCT 272519000 "Absent"``).
    procedure_reported : Code, optional
        The imaging procedure (CID 100), e.g. a CT chest code; SCT "Imaging procedure" by default.
    series_number : int or None, optional
        Defaults to :func:`~ai_pipelines.writers.identity.output_series_number`.
    series_description : str or None, optional
        Defaults to ``"AI <algorithm name> report"``.
    series_instance_uid : str or None, optional
        A new UID by default.

    Returns
    -------
    Dataset
        A highdicom Comprehensive3DSR in the source's study.

    Raises
    ------
    ValueError
        If ``segmentation`` belongs to another study or frame of reference.
    """
    if segmentation is not None and (
        segmentation.StudyInstanceUID != series.study_instance_uid
        or segmentation.get("FrameOfReferenceUID") != volume.frame_of_reference_uid
    ):
        raise ValueError("the segmentation belongs to another study or frame of reference")
    algorithm_id = identity.sr_algorithm(algorithm)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=identity.device_uid(algorithm),
            name=algorithm.name,
            manufacturer_name=identity.MANUFACTURER,
            model_name=algorithm.version,
            serial_number=identity.device_serial_number(algorithm),
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=procedure_reported,
        imaging_measurements=[_group(f, volume, algorithm_id) for f in findings]
        or [_nothing_found(looked_for, algorithm_id)],
    )
    evidence = list(series.datasets) + ([segmentation] if segmentation is not None else [])
    source = series.datasets[0]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number or identity.output_series_number(
            source.get("SeriesNumber"), OutputKind.SR),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=identity.MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        contributing_equipment=[identity.contributing_equipment(algorithm)],
    )
    sr.SeriesDescription = series_description or f"AI {algorithm.name} report"[:64]
    return sr
