"""The Pipeline contract: a series of datasets in, result datasets and findings out.

A pipeline is a pure function. ``run()`` gets the instances of one series and an
:class:`~ai_pipelines.provenance.AlgorithmInfo`, and returns a
:class:`PipelineResult`; it never opens a socket, a database session or an
output folder. An input it cannot use is refused with :class:`PipelineInputError`
(a permanent failure the node does not retry); any other exception is treated
as transient.

What a pipeline needs and makes is declared as class data (``name``,
``version``, ``accepts``, ``produces``) and checked when the class is defined.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from ai_pipelines.provenance import AlgorithmInfo, ParameterValue, file_sha256

__all__ = [
    "Finding",
    "InputSpec",
    "OutputKind",
    "Pipeline",
    "PipelineInputError",
    "PipelineResult",
    "SeriesInput",
    "is_valid_uid",
]

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_CODE_STRING = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_PIPELINE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?|mps)$")


class PipelineInputError(Exception):
    """The series cannot be used by this pipeline; retrying will not help."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason: str = reason or str(self.__doc__)
        super().__init__(self.reason)


class OutputKind(StrEnum):
    """The kinds of DICOM object a pipeline may return."""

    SEG = "SEG"
    SR = "SR"
    SC = "SC"
    DERIVED = "DERIVED"


def is_valid_uid(value: object) -> bool:
    """Tell whether ``value`` follows the DICOM UID grammar (PS3.5 9.1).

    Parameters
    ----------
    value : object
        Candidate UID.

    Returns
    -------
    bool
        True for a string of dot-separated numbers without leading zeros, at most 64 characters.
    """
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.match(value))


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What a pipeline accepts: modalities, a slice count range and required attributes.

    Parameters
    ----------
    modalities : Iterable[str]
        Accepted values of Modality (0008,0060), e.g. ``{"MR"}``.
    min_slices : int, optional
        Fewest frames (slices) the series must have.
    max_slices : int or None, optional
        Most frames the series may have; None for no limit.
    required_tags : Iterable[str], optional
        DICOM keywords that every instance must carry with a value.

    Raises
    ------
    ValueError
        If a modality is not a DICOM code string, a keyword is unknown, or the range is empty.
    """

    modalities: frozenset[str]
    min_slices: int = 1
    max_slices: int | None = None
    required_tags: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        modalities = frozenset(_as_strings("modalities", self.modalities))
        if not modalities:
            raise ValueError("InputSpec.modalities must name at least one modality")
        for modality in modalities:
            if not _CODE_STRING.match(modality):
                raise ValueError(f"InputSpec.modalities: {modality!r} is not a DICOM code string")
        tags = frozenset(_as_strings("required_tags", self.required_tags))
        for keyword in tags:
            if tag_for_keyword(keyword) is None:
                raise ValueError(f"InputSpec.required_tags: {keyword!r} is not a DICOM keyword")
        if isinstance(self.min_slices, bool) or not isinstance(self.min_slices, int):
            raise TypeError(f"InputSpec.min_slices must be an int, got {self.min_slices!r}")
        if self.min_slices < 1:
            raise ValueError(f"InputSpec.min_slices must be >= 1, got {self.min_slices}")
        if self.max_slices is not None and self.max_slices < self.min_slices:
            raise ValueError(
                f"InputSpec.max_slices={self.max_slices} is below min_slices={self.min_slices}"
            )
        object.__setattr__(self, "modalities", modalities)
        object.__setattr__(self, "required_tags", tags)

    def check(self, series: SeriesInput) -> None:
        """Refuse a series this spec does not accept.

        Parameters
        ----------
        series : SeriesInput
            The series to check.

        Raises
        ------
        PipelineInputError
            Naming the first unmet requirement, e.g. ``"12 slices; needs >= 32"``.
        """
        if series.modality not in self.modalities:
            wanted = ", ".join(sorted(self.modalities))
            raise PipelineInputError(f"modality {series.modality!r}; needs one of {wanted}")
        count = series.number_of_frames
        if count < self.min_slices:
            raise PipelineInputError(f"{count} slices; needs >= {self.min_slices}")
        if self.max_slices is not None and count > self.max_slices:
            raise PipelineInputError(f"{count} slices; needs <= {self.max_slices}")
        for keyword in sorted(self.required_tags):
            for ds in series.datasets:
                if ds.get(keyword) in (None, "", []):
                    raise PipelineInputError(
                        f"instance {ds.SOPInstanceUID} lacks {keyword}, which this pipeline needs"
                    )


def _as_strings(field_name: str, values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        raise TypeError(f"InputSpec.{field_name} must be a collection of strings, not a string")
    return list(values)


@dataclass(frozen=True, slots=True)
class SeriesInput:
    """The instances of one series, as a pipeline receives them (any order).

    Parameters
    ----------
    datasets : Sequence[Dataset]
        The instances; each must carry non-empty, valid Study, Series and SOP Instance
        UIDs, one Series Instance UID for all and no SOP Instance UID twice.

    Raises
    ------
    TypeError
        If an item is not a pydicom Dataset.
    ValueError
        If ``datasets`` is empty.
    PipelineInputError
        If the instances lack UIDs, mix series or repeat an instance.
    """

    datasets: tuple[Dataset, ...]

    def __post_init__(self) -> None:
        datasets = tuple(self.datasets)
        if not datasets:
            raise ValueError("SeriesInput needs at least one dataset")
        for ds in datasets:
            if not isinstance(ds, Dataset):
                raise TypeError(f"SeriesInput items must be pydicom Datasets, got {type(ds)}")
        for position, ds in enumerate(datasets):
            for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                value = ds.get(keyword)
                if not is_valid_uid(value):
                    raise PipelineInputError(
                        f"instance {position} has an empty or invalid {keyword} ({value!r})"
                    )
        series_uids = {ds.SeriesInstanceUID for ds in datasets}
        if len(series_uids) > 1:
            raise PipelineInputError(f"instances of {len(series_uids)} series given as one")
        sop_uids = [ds.SOPInstanceUID for ds in datasets]
        if len(set(sop_uids)) != len(sop_uids):
            raise PipelineInputError("the same SOPInstanceUID occurs more than once")
        object.__setattr__(self, "datasets", datasets)

    @classmethod
    def from_paths(cls, paths: Iterable[Path | str]) -> SeriesInput:
        """Read the instances of one series from DICOM files (refusals as for the class)."""
        return cls(tuple(pydicom.dcmread(path) for path in paths))

    @property
    def study_instance_uid(self) -> str:
        """Study Instance UID shared by the instances."""
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        """Series Instance UID shared by the instances."""
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def modality(self) -> str:
        """Modality of the first instance (empty when absent)."""
        return str(self.datasets[0].get("Modality", ""))

    @property
    def number_of_frames(self) -> int:
        """Total frames over all instances (a single-frame instance counts as one)."""
        return sum(int(ds.get("NumberOfFrames") or 1) for ds in self.datasets)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a pipeline found, measured in patient coordinates (LPS, mm).

    Parameters
    ----------
    tracking_identifier : str
        Human-readable identifier, e.g. ``"nodule 1"``.
    tracking_uid : str
        UID that follows this finding through SEG, SR and later studies.
    finding_type : Code
        What was found, e.g. SCT 27925004 "Nodule".
    centre : tuple[float, float, float]
        Centre in patient coordinates (mm).
    volume_mm3 : float or None, optional
        Volume in cubic millimetres.
    diameter_mm : float or None, optional
        Long-axis diameter in millimetres.
    probability : float or None, optional
        Model probability in [0, 1].
    finding_site : Code or None, optional
        Anatomic location, e.g. SCT 39607008 "Lung".
    segment_number : int or None, optional
        Number of the SEG segment that outlines this finding, if any.

    Raises
    ------
    ValueError
        If a measurement is negative or not finite, the probability is outside [0, 1],
        or the tracking UID is not a DICOM UID.
    """

    tracking_identifier: str
    tracking_uid: str
    finding_type: Code
    centre: tuple[float, float, float]
    volume_mm3: float | None = None
    diameter_mm: float | None = None
    probability: float | None = None
    finding_site: Code | None = None
    segment_number: int | None = None

    def __post_init__(self) -> None:
        if not self.tracking_identifier or len(self.tracking_identifier) > 64:
            raise ValueError(
                f"Finding.tracking_identifier={self.tracking_identifier!r} must be 1-64 characters"
            )
        if not is_valid_uid(self.tracking_uid):
            raise ValueError(f"Finding.tracking_uid={self.tracking_uid!r} is not a DICOM UID")
        centre = tuple(float(v) for v in self.centre)
        if len(centre) != 3 or not all(np.isfinite(centre)):
            raise ValueError(f"Finding.centre={self.centre!r} must be three finite numbers")
        object.__setattr__(self, "centre", centre)
        for name in ("volume_mm3", "diameter_mm"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise ValueError(f"Finding.{name}={value!r} must be finite and >= 0")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"Finding.probability={self.probability!r} must lie in [0, 1]")
        if self.segment_number is not None and self.segment_number < 1:
            raise ValueError(f"Finding.segment_number={self.segment_number!r} must be >= 1")


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """What ``run()`` returns: the output instances and the findings they report.

    Parameters
    ----------
    datasets : Sequence[Dataset]
        Output instances (SEG, SR, SC, derived images), each with a unique SOP Instance UID.
    findings : Sequence[Finding], optional
        Findings, in the order the SR lists them.

    Raises
    ------
    TypeError
        If an item has the wrong type.
    ValueError
        If two outputs share a SOP Instance UID.
    """

    datasets: tuple[Dataset, ...]
    findings: tuple[Finding, ...] = ()

    def __post_init__(self) -> None:
        datasets = tuple(self.datasets)
        findings = tuple(self.findings)
        if not all(isinstance(ds, Dataset) for ds in datasets):
            raise TypeError("PipelineResult.datasets must hold pydicom Datasets")
        if not all(isinstance(f, Finding) for f in findings):
            raise TypeError("PipelineResult.findings must hold Finding objects")
        uids = [str(ds.SOPInstanceUID) for ds in datasets]
        if len(set(uids)) != len(uids):
            raise ValueError("PipelineResult.datasets repeat a SOPInstanceUID")
        object.__setattr__(self, "datasets", datasets)
        object.__setattr__(self, "findings", findings)


class Pipeline(ABC):
    """A series in, DICOM objects out; declared as data, pure in behaviour.

    Subclasses declare ``name``, ``version``, ``accepts`` and ``produces`` as class
    attributes (checked when the class is defined) and implement :meth:`run`. A
    method that loads no model (a montage, a threshold) sets
    ``weights_required = False`` and is built with ``weights=None``.

    Parameters
    ----------
    weights : Path or None
        Weights file or MONAI bundle directory the pipeline loads; None only for a
        pipeline that declares ``weights_required = False``.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    verify_weights : bool, optional
        Refuse weights whose sha256 the manifest beside them does not list (default True;
        see :mod:`ai_pipelines.nn.weights`). Ignored by pipelines without weights.

    Raises
    ------
    ValueError
        If ``device`` is not one of the forms above, or ``weights`` is None for a
        pipeline that needs weights.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    accepts: ClassVar[InputSpec]
    produces: ClassVar[frozenset[OutputKind]]
    #: False for a pipeline that loads no weights; it may then be built with ``weights=None``.
    weights_required: ClassVar[bool] = True

    _DECLARED: ClassVar[tuple[str, ...]] = ("name", "version", "accepts", "produces")

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        declared = [attr for attr in cls._DECLARED if hasattr(cls, attr)]
        if not declared:
            return  # an intermediate base class that declares nothing yet
        missing = [attr for attr in cls._DECLARED if attr not in declared]
        if missing:
            raise TypeError(f"pipeline {cls.__qualname__} does not declare {', '.join(missing)}")
        _check_declaration(cls)

    def __init__(self, weights: Path | None = None, device: str = "cpu", *, verify_weights: bool = True) -> None:
        if not _DEVICE.match(device):
            raise ValueError(f"device={device!r}; expected cpu, cuda, cuda:N or mps")
        if weights is None and self.weights_required:
            raise ValueError(f"pipeline {self.name!r} needs weights (a file or bundle path)")
        self.weights: Path | None = None if weights is None else Path(weights)
        self.device = device
        self.verify_weights = verify_weights

    @abstractmethod
    def run(self, series: SeriesInput, *, algorithm: AlgorithmInfo) -> PipelineResult:
        """Process one series.

        Parameters
        ----------
        series : SeriesInput
            The instances of the series.
        algorithm : AlgorithmInfo
            Provenance to write into every output.

        Returns
        -------
        PipelineResult
            Output datasets and findings; nothing is stored or sent.

        Raises
        ------
        PipelineInputError
            If the series cannot be used (permanent).
        """

    def algorithm_info(
        self, parameters: Mapping[str, ParameterValue] | None = None
    ) -> AlgorithmInfo:
        """Describe this pipeline, its weights (sha256 when a file, else None) and ``parameters``.

        Parameters
        ----------
        parameters : Mapping[str, str | int | float | bool] or None, optional
            Parameters that influence the output.

        Returns
        -------
        AlgorithmInfo
            For :meth:`run` and the provenance rows.
        """
        sha = (
            file_sha256(self.weights)
            if self.weights is not None and self.weights.is_file() else None
        )
        return AlgorithmInfo(name=self.name, version=self.version, weights_sha256=sha,
                             parameters=dict(parameters or {}))


def _check_declaration(cls: type[Pipeline]) -> None:
    if not isinstance(cls.name, str) or not _PIPELINE_NAME.match(cls.name):
        raise TypeError(
            f"{cls.__qualname__}.name={cls.name!r} must be lower_snake_case, 1-64 characters"
        )
    if not isinstance(cls.version, str) or not cls.version.strip():
        raise TypeError(f"{cls.__qualname__}.version must be a non-empty string")
    if not isinstance(cls.accepts, InputSpec):
        raise TypeError(f"{cls.__qualname__}.accepts must be an InputSpec")
    if not isinstance(cls.weights_required, bool):
        raise TypeError(f"{cls.__qualname__}.weights_required must be a bool")
    produces: Sequence[object] = list(cls.produces) if isinstance(cls.produces, frozenset) else []
    if not produces or not all(isinstance(kind, OutputKind) for kind in produces):
        raise TypeError(
            f"{cls.__qualname__}.produces must be a non-empty frozenset of OutputKind"
        )
