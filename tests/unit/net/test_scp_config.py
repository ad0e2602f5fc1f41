"""Process-wide pynetdicom/pydicom switches of ``scp.configure_pynetdicom`` that change results."""

from __future__ import annotations

import re

import pytest
from pydicom.uid import RE_VALID_UID, UID

from dicomnode.net import scp

CASES = [
    "1.2.840.10008.1.2.1",
    "1.2.3",
    "0",
    "2.25.329800735698586629295641978511506172918",
    "1." + "1" * 62,  # 64 characters
    "1." + "1" * 63,  # 65: too long
    "1.02.3",  # leading zero in a component
    "1..2",
    "1.2.",
    ".1.2",
    "1.2.a",
    "",
    "1.2.3 ",
    "1.2.3\n",
]


@pytest.mark.parametrize("value", CASES)
def test_uid_validity_is_pydicoms(value: str) -> None:
    scp.configure_pynetdicom()
    uid = UID(value)  # strips trailing padding
    # pydicom's own definition (pydicom.uid.UID.is_valid), which the faster check replaces
    expected = len(uid) <= 64 and re.match(RE_VALID_UID, str(uid)) is not None
    assert uid.is_valid is expected
