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

# --- Query/Retrieve (PS3.4 C.4.1.1.4 C-FIND, C.4.2.1.5 C-MOVE, C.4.3.1.4 C-GET) ---------------
#: Pending: matches (C-FIND) or sub-operations (C-MOVE, C-GET) are continuing.
PENDING = 0xFF00
#: Pending (C-FIND): matches are continuing, but one or more optional keys were not supported.
PENDING_OPTIONAL_KEYS_NOT_SUPPORTED = 0xFF01
#: Cancel: matching or sub-operations terminated due to a C-CANCEL.
CANCEL = 0xFE00
#: Refused (C-MOVE, C-GET): out of resources, unable to calculate the number of matches.
OUT_OF_RESOURCES_MATCHES = 0xA701
#: Refused (C-MOVE, C-GET): out of resources, unable to perform sub-operations.
OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
#: Refused (C-MOVE): the Move Destination AE title is not a known destination.
MOVE_DESTINATION_UNKNOWN = 0xA801
#: Error: the identifier does not match the SOP class (bad level, missing or invalid key).
IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
#: Error: unable to process (C000-CFFF), e.g. an identifier that cannot be decoded.
UNABLE_TO_PROCESS = 0xC000
#: Warning (C-MOVE, C-GET): sub-operations complete, one or more failures or warnings.
SUBOPERATIONS_COMPLETE_WITH_FAILURES = 0xB000

NAMES.update(
    {
        PENDING: "Pending",
        PENDING_OPTIONAL_KEYS_NOT_SUPPORTED: "Pending (optional keys not supported)",
        CANCEL: "Cancel",
        OUT_OF_RESOURCES_MATCHES: "Refused: Out of Resources (number of matches)",
        OUT_OF_RESOURCES_SUBOPERATIONS: "Refused: Out of Resources (sub-operations)",
        MOVE_DESTINATION_UNKNOWN: "Refused: Move Destination unknown",
        IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: "Error: Identifier does not match SOP Class",
        UNABLE_TO_PROCESS: "Error: Unable to process",
        SUBOPERATIONS_COMPLETE_WITH_FAILURES: "Warning: Sub-operations complete with failures",
    }
)

# --- Storage (PS3.4 B.2.3) ---------------------------------------------------------------------
#: Warning statuses of C-STORE: the instance was stored, with coercion or elements discarded.
STORE_WARNINGS = frozenset({0xB000, 0xB006, 0xB007})


def is_stored(code: int | None) -> bool:
    """Whether a C-STORE response status means the peer kept the instance (Success or Warning)."""
    return code is not None and (code == SUCCESS or code in STORE_WARNINGS)
