"""AlgorithmInfo: which algorithm, version, weights and parameters made an output.

Every writer in :mod:`ai_pipelines.writers` copies this into the DICOM it makes
(SEG's AlgorithmIdentificationSequence, the SR's algorithm identification,
ContributingEquipment), and the node records the same values in Postgres, so a
result can be traced to the exact weights file by its sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

__all__ = ["AlgorithmInfo", "ParameterValue", "file_sha256", "parameters_from_mapping"]

ParameterValue = str | int | float | bool
T = TypeVar("T", bound=Any)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# LO (Long String): 64 characters, no backslash, no control characters.
_MAX_LO = 64


def file_sha256(path: Path, *, chunk_size: int = 1 << 20) -> str:
    """Hash a file with SHA-256.

    Parameters
    ----------
    path : Path
        The file to hash (typically a weights file).
    chunk_size : int, optional
        Bytes read at a time.

    Returns
    -------
    str
        64 lowercase hex digits.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def parameters_from_mapping(cls: type[T], parameters: Mapping[str, ParameterValue]) -> T:
    """Build a pipeline's parameters dataclass from a rule's parameters, refusing unknown names.

    A typo in a rule must not be ignored: a name that is not a field of ``cls`` raises
    ValueError naming it and the known names (sorted); the dataclass checks the values.
    """
    known = sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; expected {', '.join(known)}")
    return cls(**dict(parameters))


def _check_lo(field_name: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"AlgorithmInfo.{field_name} must be a non-empty string, got {value!r}")
    if len(value) > _MAX_LO or "\\" in value or any(ord(c) < 32 for c in value):
        raise ValueError(
            f"AlgorithmInfo.{field_name}={value!r} is not a valid DICOM LO value "
            f"(at most {_MAX_LO} characters, no backslash or control characters)"
        )


@dataclass(frozen=True, slots=True)
class AlgorithmInfo:
    """Identity of the algorithm that produced a result.

    Parameters
    ----------
    name : str
        Algorithm name, e.g. ``"lung_nodules"`` (a DICOM LO value).
    version : str
        Algorithm version; bump it whenever outputs can change.
    family : Code, optional
        Algorithm family from CID 7162; defaults to ``(123110, DCM, "Artificial Intelligence")``.
    weights_sha256 : str or None, optional
        SHA-256 of the weights file (64 lowercase hex digits), None for weight-free methods.
    parameters : Mapping[str, str | int | float | bool], optional
        Parameters that influence the output (thresholds, patch size, ...).

    Raises
    ------
    ValueError
        If a field is empty, too long for its DICOM VR, or the hash is malformed.
    """

    name: str
    version: str
    family: Code = codes.cid7162.ArtificialIntelligence
    weights_sha256: str | None = None
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_lo("name", self.name)
        _check_lo("version", self.version)
        if not isinstance(self.family, Code):
            raise TypeError(f"AlgorithmInfo.family must be a pydicom Code, got {self.family!r}")
        if self.weights_sha256 is not None and not _SHA256.match(self.weights_sha256):
            raise ValueError(
                f"AlgorithmInfo.weights_sha256={self.weights_sha256!r} is not 64 lowercase hex digits"
            )
        params: dict[str, ParameterValue] = {}
        for key, value in dict(self.parameters).items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"AlgorithmInfo.parameters key {key!r} must be a non-empty string")
            if not isinstance(value, str | int | float | bool):
                raise TypeError(
                    f"AlgorithmInfo.parameters[{key!r}]={value!r} must be str, int, float or bool"
                )
            params[key] = value
        object.__setattr__(self, "parameters", MappingProxyType(dict(sorted(params.items()))))

    def __hash__(self) -> int:
        return hash(
            (self.name, self.version, self.family, self.weights_sha256,
             tuple(self.parameters.items()))
        )

    @property
    def parameter_strings(self) -> dict[str, str]:
        """Parameters as ``{name: str(value)}``, sorted by name (as DICOM stores them)."""
        return {key: str(value) for key, value in self.parameters.items()}
