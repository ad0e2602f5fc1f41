"""The association table: one row per association, with who, when, how it ended and the counts.

The node closes a row when the association ends, which can be a moment after the peer has
its A-RELEASE-RP; the tests poll for the closed row rather than sleep.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file
from sqlalchemy import select

from dicomnode.db.models import Association, Instance
from dicomnode.net import status
from tests.helpers import RunningNode, associate, c_store_on, get_port, query, wait_for

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
MR_SMALL = Path(get_testdata_file("MR_small.dcm"))


def rows(node: RunningNode) -> list[Association]:
    return [r[0] for r in query(node.db_url, select(Association).order_by(Association.id))]


def closed_rows(node: RunningNode, count: int = 1) -> list[Association]:
    """All rows, once at least ``count`` of them have an end time."""

    def closed() -> list[Association] | None:
        found = rows(node)
        return found if sum(r.ended_at is not None for r in found) >= count else None

    found = wait_for(closed)
    assert found, f"fewer than {count} closed association rows: {[(r.outcome, r.ended_at) for r in rows(node)]}"
    return found  # type: ignore[return-value]


def test_released_association_row(node: RunningNode, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(CT_SMALL.read_bytes()[:-1000])
    port = get_port()
    assoc = associate(node, calling_ae_title="LOGSCU", files=[CT_SMALL, MR_SMALL], bind_port=port)
    assert assoc.is_established  # type: ignore[attr-defined]
    assert assoc.send_c_echo().Status == status.SUCCESS  # type: ignore[attr-defined]
    statuses = [c_store_on(assoc, p).status for p in (CT_SMALL, truncated, MR_SMALL)]
    assert statuses == [status.SUCCESS, status.CANNOT_UNDERSTAND_DATASET, status.SUCCESS]
    while_open = rows(node)
    assoc.release()  # type: ignore[attr-defined]

    assert [(r.outcome, r.ended_at) for r in while_open] == [("accepted", None)]
    (row,) = closed_rows(node)
    assert row.id == while_open[0].id
    assert row.calling_ae_title == "LOGSCU"
    assert row.called_ae_title == node.ae_title
    assert row.peer_host == "127.0.0.1"
    assert row.peer_port == port
    assert row.outcome == "released"
    assert row.reason == ""
    assert row.started_at <= row.ended_at
    assert (row.instances_received, row.failures) == (2, 1)
    instances = [r[0] for r in query(node.db_url, select(Instance))]
    assert len(instances) == 2
    assert {(i.association_fk, i.calling_ae_title, i.peer_address) for i in instances} == {
        (row.id, "LOGSCU", "127.0.0.1")
    }


def test_echo_only_association_counts_nothing(node: RunningNode) -> None:
    assoc = associate(node, calling_ae_title="ECHOONLY")
    assert assoc.is_established  # type: ignore[attr-defined]
    assert assoc.send_c_echo().Status == status.SUCCESS  # type: ignore[attr-defined]
    assoc.release()  # type: ignore[attr-defined]
    (row,) = closed_rows(node)
    assert (row.calling_ae_title, row.outcome, row.instances_received, row.failures) == ("ECHOONLY", "released", 0, 0)


def test_aborted_association_row(node: RunningNode) -> None:
    assoc = associate(node, calling_ae_title="ABORTER", files=[CT_SMALL])
    assert c_store_on(assoc, CT_SMALL).status == status.SUCCESS
    assoc.abort()  # type: ignore[attr-defined]
    (row,) = closed_rows(node)
    assert (row.calling_ae_title, row.outcome, row.instances_received, row.failures) == ("ABORTER", "aborted", 1, 0)
    assert row.ended_at is not None and row.started_at <= row.ended_at


def test_each_association_counts_its_own(node: RunningNode, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(CT_SMALL.read_bytes()[:-1000])
    first = associate(node, calling_ae_title="FIRSTSCU", files=[CT_SMALL])
    second = associate(node, calling_ae_title="SECONDSCU", files=[MR_SMALL, CT_SMALL])
    assert c_store_on(first, CT_SMALL).status == status.SUCCESS
    assert c_store_on(second, MR_SMALL).status == status.SUCCESS
    assert c_store_on(second, bad).status == status.CANNOT_UNDERSTAND_DATASET
    assert c_store_on(second, bad).status == status.CANNOT_UNDERSTAND_DATASET
    first.release()  # type: ignore[attr-defined]
    second.release()  # type: ignore[attr-defined]
    found = {r.calling_ae_title: (r.outcome, r.instances_received, r.failures) for r in closed_rows(node, 2)}
    assert found == {"FIRSTSCU": ("released", 1, 0), "SECONDSCU": ("released", 1, 2)}
