"""The UID grammar (PS3.5 9.1) and the store layout built from it."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from dicomnode.errors import InvalidUID
from dicomnode.store.paths import UID_MAX_LENGTH, check_uid, instance_path, is_valid_uid

VALID = {
    "dicom root": "1.2.840.10008.1.2.1",
    "zero component": "1.2.0.3",
    "single zero": "0",
    "single component": "2",
    "uuid derived": "2.25.329800735698586629295641978511506172918",
    "64 characters": "1." + "2" * 62,
}
INVALID = {
    "empty": "",
    "65 characters": "1." + "2" * 63,
    "leading zero": "1.02.3",
    "leading zero first": "01.2",
    "double zero": "1.00",
    "empty component": "1..2",
    "leading dot": ".1.2",
    "trailing dot": "1.2.",
    "parent directory": "../1",
    "parent inside": "1/../2",
    "slash": "1.2/3",
    "absolute path": "/1.2",
    "letters": "1.2.abc",
    "hex": "1.2.0x10",
    "space": "1.2 .3",
    "trailing space": "1.2.3 ",
    "trailing NUL padding": "1.2.3\x00",
    "newline": "1.2\n3",
    "negative": "1.-2",
    "unicode digit": "1.\u0662",  # ARABIC-INDIC DIGIT TWO: a digit to str.isdigit, not to DICOM
    "backslash (multi-value)": "1.2\\1.3",
}


@pytest.mark.parametrize("uid", VALID.values(), ids=VALID.keys())
def test_valid_uid(uid: str) -> None:
    assert is_valid_uid(uid)
    assert check_uid(uid, keyword="StudyInstanceUID") == uid


@pytest.mark.parametrize("uid", INVALID.values(), ids=INVALID.keys())
def test_invalid_uid(uid: str) -> None:
    assert not is_valid_uid(uid)
    with pytest.raises(InvalidUID) as exc:
        check_uid(uid, keyword="SeriesInstanceUID")
    assert str(exc.value).startswith("SeriesInstanceUID ")


@pytest.mark.parametrize("value", [None, 1, 1.2, b"1.2.3", ["1.2"]], ids=repr)
def test_non_strings_are_not_uids(value: object) -> None:
    assert not is_valid_uid(value)
    with pytest.raises(InvalidUID):
        check_uid(value, keyword="SOPInstanceUID")


def test_max_length_is_64() -> None:
    assert UID_MAX_LENGTH == 64


def test_error_shows_a_bounded_excerpt() -> None:
    with pytest.raises(InvalidUID) as exc:
        check_uid("9" * 10_000 + "x", keyword="StudyInstanceUID")
    assert len(str(exc.value)) < 200
    assert "PS3.5" in str(exc.value)


def test_invalid_uid_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_uid("../1", keyword="StudyInstanceUID")


def test_instance_path_layout() -> None:
    path = instance_path(study_instance_uid="1.2.3", series_instance_uid="1.2.3.4", sop_instance_uid="1.2.3.4.5")
    assert path == PurePosixPath("1.2.3/1.2.3.4/1.2.3.4.5.dcm")
    assert not path.is_absolute()


@pytest.mark.parametrize(
    ("keyword", "uids"),
    [
        ("StudyInstanceUID", ("../..", "1.2", "1.2.3")),
        ("SeriesInstanceUID", ("1.2", "/etc", "1.2.3")),
        ("SOPInstanceUID", ("1.2", "1.3", "../../passwd")),
    ],
)
def test_instance_path_checks_every_uid(keyword: str, uids: tuple[str, str, str]) -> None:
    with pytest.raises(InvalidUID, match=f"^{keyword} "):
        instance_path(study_instance_uid=uids[0], series_instance_uid=uids[1], sop_instance_uid=uids[2])
