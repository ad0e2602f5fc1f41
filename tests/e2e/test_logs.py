"""The node's log names associations and UIDs, never the patient (STYLE 7, issue 2 item 6).

A synthetic patient with a recognisable name, ID, birth date and accession number is sent
through the stored, replaced, refused-duplicate and refused-dataset paths of a real
`dicomnode serve`; its stderr is then searched for any of them.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from ai_pipelines.synthetic.series import synthetic_ct
from tests.helpers import ServeProcess, dicomnode_command, get_port, serve_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CALLING_AE = "LOGCHECK"
PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PHI-12345"
BIRTH_DATE = "19610417"
ACCESSION = "ACC-PHI-987"
#: Each of these in the log, in any spelling, is a leak.
PHI_PATTERNS = [
    re.escape(PATIENT_NAME), r"\bDoe\b", r"\bJane\b", re.escape(PATIENT_ID), BIRTH_DATE, r"1961-04-17",
    re.escape(ACCESSION),
]


@dataclass(frozen=True, slots=True)
class Sent:
    """What was sent and what the node wrote to stderr meanwhile."""

    log: str
    send_output: str
    sop_instance_uids: list[str]  # stored ones
    study_instance_uid: str
    series_instance_uid: str


def _write_phi_instances(directory: Path) -> tuple[list[Path], list[str], str, str]:
    """Two good instances, one of them again, one duplicate from another series, one without a study."""
    directory.mkdir()
    first, second, third = synthetic_ct(shape=(3, 32, 32), seed=4242)
    for ds in (first, second, third):
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = BIRTH_DATE
        ds.AccessionNumber = ACCESSION
    paths = []

    def save(ds: Any, name: str) -> None:
        path = directory / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)

    save(first, "1-stored.dcm")
    save(second, "2-stored.dcm")
    save(first, "3-same-again.dcm")  # replaced (same study and series)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    first.SeriesInstanceUID = generate_uid()
    save(first, "4-other-series.dcm")  # refused: duplicate SOP Instance UID in another series
    del third.StudyInstanceUID
    save(third, "5-no-study.dcm")  # refused: no Study Instance UID
    return paths, [str(first.SOPInstanceUID), str(second.SOPInstanceUID)], study, series


def _serve_and_send(db_url: str, tmp_path: Path, *, args: list[str], level: str | None) -> Sent:
    paths, stored, study, series = _write_phi_instances(tmp_path / "phi")
    port = get_port()
    settings: dict[str, Any] = {
        "DB__URL": db_url, "STORE__ROOT": tmp_path / "store", "STORE__MIN_FREE_MB": 0,
        "NET__HOST": "127.0.0.1", "NET__PORT": port, "NET__PROCESSES": 1,
    }
    if level is not None:
        settings["LOG__LEVEL"] = level
    env = serve_env(**settings)
    with ServeProcess(env=env, log_path=tmp_path / "serve.log", cwd=tmp_path, args=args) as node:
        node.wait_ready(port=port)
        result = subprocess.run(
            dicomnode_command("send", *map(str, paths), "--to", f"DICOMNODE@127.0.0.1:{port}", "--calling-ae",
                              CALLING_AE),
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 1, result.stdout + result.stderr  # two of five refused
        assert "0x0111" in result.stdout, result.stdout  # the duplicate from another series
        assert node.terminate() == 0, node.log_tail()
    return Sent(node.log(), result.stdout, stored, study, series)


def _assert_no_phi(log: str) -> None:
    assert log.strip(), "the node logged nothing"
    for pattern in PHI_PATTERNS:
        match = re.search(pattern, log)
        assert match is None, f"PHI {pattern!r} in the log: ...{log[max(0, match.start() - 200):match.end() + 50]}"


def _records(log: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(log.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"log line {number} is not JSON: {line[:300]}")
        assert isinstance(record, dict), line
        assert isinstance(record.get("event"), str) and record["event"], line
        assert {"time", "level", "logger"} <= record.keys(), line
        yield record


def test_json_log_names_association_and_uids_never_the_patient(db_url: str, tmp_path: Path) -> None:
    sent = _serve_and_send(db_url, tmp_path, args=["--log-format", "json"], level="DEBUG")
    _assert_no_phi(sent.log)
    records = list(_records(sent.log))

    # (the readiness C-ECHO has an association of its own, calling AE DICOMNODE)
    accepted = [
        r for r in records if r["event"] == "association accepted" and r.get("calling_ae_title") == CALLING_AE
    ]
    assert len(accepted) == 1, [r["event"] for r in records]
    association_id = accepted[0]["association_id"]
    assert isinstance(association_id, int)
    assert accepted[0]["peer"].startswith("127.0.0.1:")

    # Every record about an instance carries the association and the instance's UIDs.
    for uid in sent.sop_instance_uids:
        about = [r for r in records if r.get("sop_instance_uid") == uid]
        assert about, f"no log record names SOP Instance {uid}"
        for record in about:
            assert record.get("association_id") == association_id, record
            assert record.get("calling_ae_title") == CALLING_AE, record
            if record["event"] in ("instance stored", "duplicate replaced stored copy"):
                assert record.get("study_instance_uid") == sent.study_instance_uid, record
                assert record.get("series_instance_uid") == sent.series_instance_uid, record
    events = {r["event"] for r in records}
    assert "instance stored" in events, sorted(events)
    assert "duplicate refused" in events, sorted(events)
    released = [
        r for r in records if r["event"] == "association released" and r["association_id"] == association_id
    ]
    assert len(released) == 1, released
    assert (released[0]["instances"], released[0]["failures"]) == (3, 2), released[0]


def test_console_log_at_default_level_has_no_patient(db_url: str, tmp_path: Path) -> None:
    sent = _serve_and_send(db_url, tmp_path, args=[], level=None)  # conf/dicomnode.yaml: INFO, console
    _assert_no_phi(sent.log)
    lines = sent.log.splitlines()
    accepted = [line for line in lines if "association accepted" in line and f"calling_ae_title={CALLING_AE}" in line]
    assert len(accepted) == 1, sent.log
    association = re.search(r"association_id=(\d+)", accepted[0])
    assert association is not None, accepted[0]
    # At the default level each stored instance is named with its association and UIDs.
    for uid in sent.sop_instance_uids:
        stored = [line for line in lines if "instance stored" in line and f"sop_instance_uid={uid}" in line]
        assert len(stored) == 1, f"no INFO line names stored instance {uid}:\n{sent.log}"
        for field in (f"association_id={association[1]}", f"study_instance_uid={sent.study_instance_uid}",
                      f"series_instance_uid={sent.series_instance_uid}"):
            assert field in stored[0], (field, stored[0])
    refused = [line for line in lines if "duplicate refused" in line]
    assert refused and f"sop_instance_uid={sent.sop_instance_uids[0]}" in refused[0], sent.log
