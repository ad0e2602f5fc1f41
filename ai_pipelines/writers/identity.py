"""What every output says about its origin: series numbers, equipment, algorithm, references.

Shared by the SEG, SR, SC and derived-series writers so that all of them name
the algorithm, its version and weights the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from ai_pipelines.base import OutputKind, SeriesInput
from ai_pipelines.frames import FrameRef
from ai_pipelines.provenance import AlgorithmInfo

__all__ = [
    "MANUFACTURER",
    "contributing_equipment",
    "copy_anatomy",
    "copy_patient_and_study",
    "device_serial_number",
    "device_uid",
    "output_series_number",
    "referenced_series_item",
    "segment_algorithm",
    "source_image_item",
    "sr_algorithm",
]

#: Manufacturer (0008,0070) of every object the node makes.
MANUFACTURER = "dicomnode"

_KIND_CODES = {OutputKind.SEG: 1, OutputKind.SR: 2, OutputKind.SC: 3, OutputKind.DERIVED: 4}
_MAX_IS = 2**31 - 1

_PATIENT_AND_STUDY = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "PatientIdentityRemoved",
    "DeidentificationMethod", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
)


def output_series_number(source_series_number: object, kind: OutputKind, index: int = 0) -> int:
    """Choose the SeriesNumber of an output from its source's, deterministically.

    The rule is ``1000 * source + 10 * kind + index`` with kind SEG 1, SR 2, SC 3,
    DERIVED 4: the outputs of source series 5 are 5010 (SEG), 5020 (SR), 5030 (SC)
    and 5040, 5041, ... (derived series), listed right after their source in a viewer.

    Parameters
    ----------
    source_series_number : object
        SeriesNumber of the source (IS, int or None; None and "" count as 0).
    kind : OutputKind
        Kind of output.
    index : int, optional
        0-9, to tell apart several outputs of one kind.

    Returns
    -------
    int
        A positive SeriesNumber that fits the IS value representation.

    Raises
    ------
    ValueError
        If ``index`` is outside 0-9.
    """
    if not 0 <= index <= 9:
        raise ValueError(f"index={index}; expected 0-9")
    source = int(source_series_number) if source_series_number not in (None, "") else 0  # type: ignore[call-overload]
    number = 1000 * abs(source) + 10 * _KIND_CODES[OutputKind(kind)] + index
    return number if number <= _MAX_IS else number % 1_000_000_000


def device_serial_number(algorithm: AlgorithmInfo) -> str:
    """DeviceSerialNumber for an output: the first 16 hex digits of the weights sha256.

    Parameters
    ----------
    algorithm : AlgorithmInfo
        The producing algorithm.

    Returns
    -------
    str
        ``"sha256:<16 hex>"`` or ``"no-weights"``.
    """
    if algorithm.weights_sha256 is None:
        return "no-weights"
    return f"sha256:{algorithm.weights_sha256[:16]}"


def device_uid(algorithm: AlgorithmInfo) -> str:
    """A UID for the algorithm as an SR observer device, stable per name and version.

    Parameters
    ----------
    algorithm : AlgorithmInfo
        The producing algorithm.

    Returns
    -------
    str
        The same UID for the same name, version and weights.
    """
    return generate_uid(entropy_srcs=[
        MANUFACTURER, algorithm.name, algorithm.version, algorithm.weights_sha256 or "",
    ])


def _description(algorithm: AlgorithmInfo) -> str:
    weights = algorithm.weights_sha256 or "none"
    return f"AI algorithm {algorithm.name} {algorithm.version}; weights sha256 {weights}"


def contributing_equipment(algorithm: AlgorithmInfo) -> hd.ContributingEquipment:
    """ContributingEquipmentSequence item naming the node and the algorithm.

    Parameters
    ----------
    algorithm : AlgorithmInfo
        The producing algorithm.

    Returns
    -------
    highdicom.ContributingEquipment
        Purpose "Processing Equipment", model = algorithm name, software = version.
    """
    return hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        device_serial_number=device_serial_number(algorithm),
        contribution_description=_description(algorithm),
    )


def _parameters(algorithm: AlgorithmInfo) -> dict[str, str]:
    parameters = algorithm.parameter_strings
    if algorithm.weights_sha256 is not None:
        parameters["weights_sha256"] = algorithm.weights_sha256
    return parameters


def segment_algorithm(algorithm: AlgorithmInfo) -> hd.AlgorithmIdentificationSequence:
    """SEG's SegmentAlgorithmIdentification: name, family, version and parameters.

    Parameters
    ----------
    algorithm : AlgorithmInfo
        The producing algorithm.

    Returns
    -------
    highdicom.AlgorithmIdentificationSequence
        With the weights sha256 among the parameters.
    """
    return hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=algorithm.family, version=algorithm.version,
        source=MANUFACTURER, parameters=_parameters(algorithm) or None,
    )


def sr_algorithm(algorithm: AlgorithmInfo) -> hd.sr.AlgorithmIdentification:
    """The SR's Algorithm Identification (TID 4019) for measurements and groups.

    Parameters
    ----------
    algorithm : AlgorithmInfo
        The producing algorithm.

    Returns
    -------
    highdicom.sr.AlgorithmIdentification
        Parameters as ``"name=value"`` strings, weights sha256 included.
    """
    return hd.sr.AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version, family=algorithm.family,
        manufacturer=MANUFACTURER,
        parameters=[f"{k}={v}" for k, v in _parameters(algorithm).items()] or None,
    )


def copy_patient_and_study(source: Dataset, target: Dataset) -> None:
    """Copy the Patient and General Study attributes present in ``source``.

    Parameters
    ----------
    source : Dataset
        A source instance.
    target : Dataset
        The output being built (modified in place).
    """
    for keyword in _PATIENT_AND_STUDY:
        if keyword in source:
            target[keyword] = copy.deepcopy(source[keyword])  # never share elements
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                    "AccessionNumber"):
        if keyword not in target:
            setattr(target, keyword, "")  # type 2: present, possibly empty


def copy_anatomy(source: Dataset, target: Dataset) -> None:
    """Copy BodyPartExamined and Laterality; with neither known, Laterality is empty (unknown).

    Parameters
    ----------
    source : Dataset
        A source instance.
    target : Dataset
        The output being built (modified in place).
    """
    for keyword in ("BodyPartExamined", "Laterality"):
        if source.get(keyword):
            target[keyword] = copy.deepcopy(source[keyword])
    if "BodyPartExamined" not in target and "Laterality" not in target:
        target.Laterality = ""  # type 2C: the body part, and so whether it is paired, is unknown


def source_image_item(ref: FrameRef, purpose: bool = True) -> Dataset:
    """An item of SourceImageSequence (or ReferencedImageSequence) for one slice.

    Parameters
    ----------
    ref : FrameRef
        The source instance (and frame).
    purpose : bool, optional
        Add PurposeOfReferenceCodeSequence "Source image for image processing operation".

    Returns
    -------
    Dataset
        ReferencedSOPClassUID, ReferencedSOPInstanceUID and, for a multi-frame source,
        ReferencedFrameNumber.
    """
    item = Dataset()
    item.ReferencedSOPClassUID = ref.sop_class_uid
    item.ReferencedSOPInstanceUID = ref.sop_instance_uid
    if ref.frame_number is not None:
        item.ReferencedFrameNumber = ref.frame_number
    if purpose:
        code = Dataset()
        concept = codes.DCM.SourceImageForImageProcessingOperation
        code.CodeValue, code.CodingSchemeDesignator = concept.value, concept.scheme_designator
        code.CodeMeaning = concept.meaning
        item.PurposeOfReferenceCodeSequence = DicomSequence([code])
    return item


def referenced_series_item(series: SeriesInput, refs: Iterable[FrameRef] | None = None) -> Dataset:
    """An item of ReferencedSeriesSequence listing source instances.

    Parameters
    ----------
    series : SeriesInput
        The source series.
    refs : Iterable[FrameRef] or None, optional
        Instances to list; all of the series when None.

    Returns
    -------
    Dataset
        SeriesInstanceUID and ReferencedInstanceSequence (each instance once).
    """
    pairs: Sequence[tuple[str, str]]
    if refs is None:
        pairs = [(str(ds.SOPClassUID), str(ds.SOPInstanceUID)) for ds in series.datasets]
    else:
        pairs = list(dict.fromkeys((r.sop_class_uid, r.sop_instance_uid) for r in refs))
    item = Dataset()
    item.SeriesInstanceUID = series.series_instance_uid
    instances = []
    for sop_class_uid, sop_instance_uid in pairs:
        instance = Dataset()
        instance.ReferencedSOPClassUID = sop_class_uid
        instance.ReferencedSOPInstanceUID = sop_instance_uid
        instances.append(instance)
    item.ReferencedInstanceSequence = DicomSequence(instances)
    return item
