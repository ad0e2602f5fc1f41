"""Which MR contrast a series is (FLAIR or T1 post-contrast), from its header, and the pipeline's parameters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.dataset import Dataset

from ai_pipelines.provenance import ParameterValue, parameters_from_mapping

__all__ = ["CONTRAST_CHOICES", "BrainTumourParameters", "detect_contrast"]

#: Values of the ``contrast`` parameter.
CONTRAST_CHOICES = ("auto", "flair", "t1c")

_FLAIR = re.compile(r"flair|dark[ _-]?fluid|\btirm|\bspc[ _-]?ir|t2[ _-]?fl(?!ash)", re.IGNORECASE)
_T1 = re.compile(r"t1|mprage|mp[ _-]?rage|spgr|bravo|\btfl\b|vibe|\bfspgr|\bffe\b|\bse\b", re.IGNORECASE)
_POST = re.compile(
    r"\+\s*c\b|\bgd\b|gado|\bgad\b|post|contrast|\bce\b|t1c|t1ce|\bkm\b|\+\s*km|enh|dotarem|gadovist|multihance",
    re.IGNORECASE,
)
_PRE = re.compile(r"\bpre\b|native|nativ|\bw/?o\b|without", re.IGNORECASE)


def _header_text(ds: Dataset) -> str:
    parts = [ds.get(keyword) for keyword in ("SeriesDescription", "ProtocolName", "SequenceName")]
    return " ".join(str(part) for part in parts if part)


def detect_contrast(ds: Dataset) -> str | None:
    """Tell FLAIR from T1 post-contrast by the series' names and ContrastBolusAgent.

    Parameters
    ----------
    ds : Dataset
        An instance of the series.

    Returns
    -------
    str or None
        ``"flair"``, ``"t1c"``, or None when the header does not say (T2, DWI, a plain T1,
        or an unnamed series).
    """
    text = _header_text(ds)
    if _FLAIR.search(text):
        return "flair"
    contrast_given = bool(str(ds.get("ContrastBolusAgent") or "").strip())
    if _T1.search(text) and not _PRE.search(text) and (_POST.search(text) or contrast_given):
        return "t1c"
    if not _T1.search(text) and _POST.search(text) and re.search(r"t1c|t1ce", text, re.IGNORECASE):
        return "t1c"
    return None


@dataclass(frozen=True, slots=True)
class BrainTumourParameters:
    """The pipeline's parameters (``AlgorithmInfo.parameters``), checked when built.

    Parameters
    ----------
    contrast : str, optional
        ``"auto"`` (from the header, see :func:`detect_contrast`), ``"flair"`` or ``"t1c"``.
    threshold : float, optional
        Probability above which a voxel belongs to a region, 0.05-0.95.
    min_volume_mm3 : float, optional
        Connected components smaller than this are dropped (noise, vessels), 0-10000.

    Raises
    ------
    ValueError
        Naming the parameter, when a value is out of range or of the wrong type.
    """

    contrast: str = "auto"
    threshold: float = 0.5
    min_volume_mm3: float = 100.0

    def __post_init__(self) -> None:
        if self.contrast not in CONTRAST_CHOICES:
            raise ValueError(f"contrast={self.contrast!r}; expected one of {', '.join(CONTRAST_CHOICES)}")
        for name, low, high in (("threshold", 0.05, 0.95), ("min_volume_mm3", 0.0, 10000.0)):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise ValueError(f"{name}={value!r} must be a number")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name}={value!r} must be a number") from None
            if not low <= number <= high:
                raise ValueError(f"{name}={value!r}; expected {low:g}-{high:g}")
            object.__setattr__(self, name, number)

    @classmethod
    def from_mapping(cls, parameters: Mapping[str, ParameterValue]) -> BrainTumourParameters:
        """Build from a rule's parameters; unknown names are refused so that a typo is not ignored.

        Raises
        ------
        ValueError
            If a name is unknown or a value is invalid.
        """
        return parameters_from_mapping(cls, parameters)
