"""UID grammar (PS3.5 9.1) and the store layout <Study>/<Series>/<SOPInstance>.dcm."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from dicomnode.errors import InvalidUID

# PS3.5 9.1: numeric components separated by '.', no leading zeros (except a lone 0),
# at most 64 characters in all.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
UID_MAX_LENGTH = 64


def is_valid_uid(value: object) -> bool:
    """True when ``value`` is a string that follows the DICOM UID grammar."""
    return isinstance(value, str) and 0 < len(value) <= UID_MAX_LENGTH and _UID_RE.match(value) is not None


def check_uid(value: object, *, keyword: str) -> str:
    """Return ``value`` when it is a valid UID.

    Raises
    ------
    InvalidUID
        Naming the attribute and showing (a bounded excerpt of) the value.
    """
    if not is_valid_uid(value):
        shown = repr(value)[:80]
        raise InvalidUID(f"{keyword} is not a valid UID (PS3.5 9.1): {shown}", keyword=keyword)
    return value  # type: ignore[return-value]


def instance_path(*, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str) -> PurePosixPath:
    """Relative store path of an instance; every UID is checked before it becomes a path."""
    return PurePosixPath(
        check_uid(study_instance_uid, keyword="StudyInstanceUID"),
        check_uid(series_instance_uid, keyword="SeriesInstanceUID"),
        check_uid(sop_instance_uid, keyword="SOPInstanceUID") + ".dcm",
    )
