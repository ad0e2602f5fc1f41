"""Named DIMSE status codes (PS3.4 B.2.3, PS3.7 C); bare hex codes appear nowhere else."""

from __future__ import annotations

SUCCESS = 0x0000
#: PS3.7 C.4: the SOP instance is already stored (duplicate policy refused it).
DUPLICATE_SOP_INSTANCE = 0x0111
#: PS3.7 C.4: the SOP Instance UID is invalid or does not match the command.
INVALID_OBJECT_INSTANCE = 0x0117
#: PS3.4 B.2.3 Refused: Out of Resources (store below its free-space floor, index unreachable).
OUT_OF_RESOURCES = 0xA700
#: PS3.4 B.2.3 Error: Cannot understand (C000-CFFF) -- the dataset cannot be decoded.
CANNOT_UNDERSTAND_DATASET = 0xC210
#: PS3.4 B.2.3 Error: Cannot understand -- Study/Series/SOP Class UID missing or invalid.
CANNOT_UNDERSTAND_UIDS = 0xC220

NAMES = {
    SUCCESS: "Success",
    DUPLICATE_SOP_INSTANCE: "Duplicate SOP Instance",
    INVALID_OBJECT_INSTANCE: "Invalid Object Instance",
    OUT_OF_RESOURCES: "Refused: Out of Resources",
    CANNOT_UNDERSTAND_DATASET: "Error: Cannot Understand (dataset)",
    CANNOT_UNDERSTAND_UIDS: "Error: Cannot Understand (UIDs)",
}


def describe(status: int) -> str:
    """Human name of a status, e.g. for the ``send`` summary."""
    if status in NAMES:
        return NAMES[status]
    if 0xA700 <= status <= 0xA7FF:
        return "Refused: Out of Resources"
    if 0xA900 <= status <= 0xA9FF:
        return "Error: Data Set does not match SOP Class"
    if 0xC000 <= status <= 0xCFFF:
        return "Error: Cannot Understand"
    if status in (0xB000, 0xB006, 0xB007):
        return "Warning"
    return "Failure"
