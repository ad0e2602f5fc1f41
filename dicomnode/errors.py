"""Domain errors: each class's docstring is its default message."""

from __future__ import annotations


class DicomnodeError(Exception):
    """Something went wrong in dicomnode."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidUID(DicomnodeError, ValueError):
    """A UID does not follow the DICOM UID grammar (PS3.5 9.1)."""

    def __init__(self, message: str | None = None, *, keyword: str = "") -> None:
        super().__init__(message)
        #: The attribute holding the bad UID (e.g. "SOPInstanceUID").
        self.keyword = keyword


class InvalidDataset(DicomnodeError, ValueError):
    """The dataset cannot be parsed or lacks a required attribute."""

    def __init__(self, message: str | None = None, *, keyword: str = "") -> None:
        super().__init__(message)
        #: The missing attribute, or "" when the dataset itself cannot be decoded.
        self.keyword = keyword


class StoreFull(DicomnodeError):
    """Free space on the store is below the configured floor."""


class IndexUnavailable(DicomnodeError):
    """The database cannot be reached."""


class DuplicateRefused(DicomnodeError):
    """This SOP Instance UID is already stored and the duplicate policy refuses it."""


class DestinationUnreachable(DicomnodeError):
    """The destination did not accept the results (no association, refused, or HTTP error)."""


class UnknownDestination(DicomnodeError, ValueError):
    """No destination of that name is configured (see ``destinations`` in conf/dicomnode.yaml)."""
