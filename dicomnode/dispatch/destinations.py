"""Destinations for results: the DIMSE and DICOMweb peers of the settings, found by name.

The models themselves (``DimseDestination``, ``DicomwebDestination``, discriminated on ``kind``)
live in :mod:`dicomnode.config`, because ``Settings.destinations`` holds them. A delivery names
its destination; ``@<AE title>`` names "the DIMSE destination configured for that calling AE",
which is how a rule with ``send_to_calling_ae`` sends results back to the modality or PACS that
sent the series.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dicomnode.config import Destination, DicomwebDestination, DimseDestination
from dicomnode.errors import UnknownDestination

__all__ = [
    "CALLING_AE_PREFIX",
    "Destination",
    "DicomwebDestination",
    "DimseDestination",
    "calling_ae_name",
    "find",
    "names_for",
]

#: A delivery to ``@ORTHANC`` goes to the DIMSE destination whose AE title is ORTHANC.
CALLING_AE_PREFIX = "@"


def calling_ae_name(calling_ae_title: str) -> str:
    """The delivery destination name that means "back to this calling AE"."""
    return CALLING_AE_PREFIX + calling_ae_title.strip()


def find(destinations: Sequence[Destination], name: str) -> Destination:
    """The destination called ``name``, or for ``@AE``, the DIMSE destination with AE title AE.

    Raises
    ------
    UnknownDestination
        Naming what was looked for and what is configured.
    """
    if name.startswith(CALLING_AE_PREFIX):
        ae_title = name[len(CALLING_AE_PREFIX) :]
        for destination in destinations:
            if isinstance(destination, DimseDestination) and destination.ae_title == ae_title:
                return destination
        raise UnknownDestination(
            f"no DIMSE destination has AE title {ae_title!r}, so results cannot go back to that calling AE "
            "(add it to destinations in conf/dicomnode.yaml)"
        )
    for destination in destinations:
        if destination.name == name:
            return destination
    known = ", ".join(d.name for d in destinations) or "none"
    raise UnknownDestination(f"no destination named {name!r} (configured: {known})")


def names_for(*, send_to: Iterable[str], send_to_calling_ae: bool, calling_ae_titles: Iterable[str]) -> list[str]:
    """The delivery destination names for a rule: its ``send_to``, then ``@AE`` per calling AE."""
    names = list(dict.fromkeys(send_to))
    if send_to_calling_ae:
        for ae_title in sorted({ae.strip() for ae in calling_ae_titles if ae and ae.strip()}):
            name = calling_ae_name(ae_title)
            if name not in names:
                names.append(name)
    return names
