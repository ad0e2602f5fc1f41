"""Bad input never harms the node: each gets a status a sender can act on, nothing is stored.

Bad datasets (truncated, garbage, missing or unsafe UIDs) are sent as raw bytes with
pynetdicom's chunked send, so they reach the node exactly as written here. Refused peers
(allowlists, association limit) get an A-ASSOCIATE-RJ with the right result and reason and
are recorded in the association table. Resource trouble (disk floor, database gone) is
0xA700 in seconds. Duplicates follow ``store.duplicate_policy``.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from sqlalchemy import select

from dicomnode.db.models import Association, Instance, Patient, Series, Study
from dicomnode.net import status
from dicomnode.serve import start_in_process
from tests.helpers import (
    RunningNode,
    associate,
    c_echo,
    c_store_bytes,
    c_store_files,
    count_rows,
    dataset_bytes,
    dcmtk,
    encode,
    get_port,
    indexed,
    make_settings,
    query,
    wait_for,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
LONG_UID = "1." + "2" * 63  # 65 characters
NEW_UID = "1.2.826.0.1.3680043.8.498.4242"


def ct() -> Dataset:
    """CT_small.dcm, read in full; values unchecked so tests can break them."""
    with pydicom_config.disable_value_validation():
        return dcmread(CT_SMALL)


def ct_with(**values: str) -> bytes:
    """CT_small re-encoded with some attributes replaced (empty string: removed)."""
    ds = ct()
    with pydicom_config.disable_value_validation():
        for keyword, value in values.items():
            if value == "":
                del ds[keyword]
            else:
                setattr(ds, keyword, value)
    return encode(ds)


def cut_inside_pixel_data_header() -> bytes:
    """CT_small's dataset cut 5 bytes into the 12-byte header of (7FE0,0010) Pixel Data."""
    data = dataset_bytes(CT_SMALL)
    return data[: data.index(b"\xe0\x7f\x10\x00OW") + 5]


def assert_untouched(node: RunningNode) -> None:
    """Nothing in the store (no file, no directory, no partial file), nothing indexed, serving."""
    assert list(node.store_root.iterdir()) == []
    for model in (Instance, Series, Study, Patient):
        assert count_rows(node.db_url, model) == 0, model.__tablename__
    assert c_echo(node) == status.SUCCESS


# id: (dataset bytes, command AffectedSOPInstanceUID, statuses allowed, text the ErrorComment must hold)
Case = tuple[Callable[[], bytes], str, set[int], str]
SOP = str(dcmread(CT_SMALL, stop_before_pixels=True).SOPInstanceUID)
C210, C220, X0117 = status.CANNOT_UNDERSTAND_DATASET, status.CANNOT_UNDERSTAND_UIDS, status.INVALID_OBJECT_INSTANCE
BAD_DATASETS: dict[str, Case] = {
    # cut short: in the pixel data, and inside the header
    "truncated-pixel-data": (lambda: dataset_bytes(CT_SMALL)[:-1000], SOP, {C210}, "truncated"),
    "truncated-header": (lambda: dataset_bytes(CT_SMALL)[:2001], SOP, {C210}, "truncated"),
    # ... and inside an element header: before the UIDs, and inside Pixel Data's header (which,
    # dropped silently by a lenient parser, would leave a valid-looking image with no pixels)
    "truncated-mid-tag": (lambda: dataset_bytes(CT_SMALL)[:1003], SOP, {C210, C220}, ""),
    "truncated-in-pixel-data-header": (lambda: cut_inside_pixel_data_header(), SOP, {C210}, "truncated"),
    # not DICOM at all
    "garbage": (lambda: random.Random(7).randbytes(4096), SOP, {C210}, "decode"),
    "text": (lambda: b"this is not a DICOM data set " * 64, SOP, {C210}, ""),
    "empty": (lambda: b"", SOP, {C220, X0117}, "SOPInstanceUID"),
    # required UIDs missing
    "no-study-uid": (lambda: ct_with(StudyInstanceUID=""), SOP, {C220}, "StudyInstanceUID"),
    "no-series-uid": (lambda: ct_with(SeriesInstanceUID=""), SOP, {C220}, "SeriesInstanceUID"),
    "no-sop-class-uid": (lambda: ct_with(SOPClassUID=""), SOP, {C220}, "SOPClassUID"),
    "no-sop-instance-uid": (lambda: ct_with(SOPInstanceUID=""), SOP, {C220, X0117}, "SOPInstanceUID"),
    # UIDs that must never become a path
    "study-uid-dotdot": (lambda: ct_with(StudyInstanceUID="../1"), SOP, {C220}, "StudyInstanceUID"),
    "series-uid-dotdot": (lambda: ct_with(SeriesInstanceUID="../../../tmp"), SOP, {C220}, "SeriesInstanceUID"),
    "study-uid-absolute": (lambda: ct_with(StudyInstanceUID="/etc"), SOP, {C220}, "StudyInstanceUID"),
    "study-uid-65-chars": (lambda: ct_with(StudyInstanceUID=LONG_UID), SOP, {C220}, "StudyInstanceUID"),
    "series-uid-leading-zero": (lambda: ct_with(SeriesInstanceUID="1.2.03.4"), SOP, {C220}, "SeriesInstanceUID"),
    "sop-class-uid-letters": (lambda: ct_with(SOPClassUID="1.2.abc"), SOP, {C220}, "SOPClassUID"),
    # the status must follow the attribute, not words inside the bad value
    "study-uid-naming-another-attribute": (
        lambda: ct_with(StudyInstanceUID="SOPInstanceUID"), SOP, {C220}, "StudyInstanceUID",
    ),
    # SOP Instance UID: bad in both places, or dataset and command disagree
    "sop-uid-dotdot": (lambda: ct_with(SOPInstanceUID="../1"), "../1", {X0117}, "SOPInstanceUID"),
    "sop-uid-65-chars": (lambda: ct_with(SOPInstanceUID=LONG_UID), SOP, {X0117}, "SOPInstanceUID"),
    "sop-uid-leading-zero": (lambda: ct_with(SOPInstanceUID="1.02.3"), "1.02.3", {X0117}, "SOPInstanceUID"),
    "sop-uid-differs-from-command": (lambda: dataset_bytes(CT_SMALL), NEW_UID, {X0117}, "SOPInstanceUID"),
    "sop-uid-dotdot-in-dataset-only": (lambda: ct_with(SOPInstanceUID="../1"), SOP, {X0117}, "SOPInstanceUID"),
}


@pytest.mark.parametrize("case", list(BAD_DATASETS), ids=list(BAD_DATASETS))
def test_bad_dataset_refused_nothing_stored(node: RunningNode, tmp_path: Path, case: str) -> None:
    make, command_uid, allowed, comment = BAD_DATASETS[case]
    response = c_store_bytes(
        node, tmp_path, make(), sop_class_uid=CT_IMAGE_STORAGE, sop_instance_uid=command_uid, timeout=10
    )
    assert response.status in allowed, (hex(response.status or 0), response.comment)
    assert comment in response.comment
    assert_untouched(node)


@pytest.mark.parametrize("name", ["rtplan_truncated.dcm", "MR_truncated.dcm"])
def test_truncated_file_refused(node: RunningNode, name: str) -> None:
    """pydicom's own truncated files, sent as they are on disk."""
    (response,) = c_store_files(node, [Path(get_testdata_file(name))])
    assert response.status == status.CANNOT_UNDERSTAND_DATASET, response.comment
    assert "truncated" in response.comment
    assert_untouched(node)


def test_bad_instances_do_not_end_the_association(node: RunningNode, tmp_path: Path) -> None:
    """Refusals in the middle of an association: the good instances around them are stored."""
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(CT_SMALL.read_bytes()[:-1000])
    good = tmp_path / "good.dcm"
    good.write_bytes(CT_SMALL.read_bytes())
    responses = c_store_files(node, [bad, good, bad])
    assert [r.status for r in responses] == [status.CANNOT_UNDERSTAND_DATASET, status.SUCCESS, C210]
    assert count_rows(node.db_url, Instance) == 1


# -- allowlists --------------------------------------------------------------------------------


def reject_reason(assoc: object) -> tuple[int | None, int | None, int | None]:
    """(result, source, diagnostic) of the A-ASSOCIATE-RJ the requestor received."""
    primitive = assoc.acceptor.primitive  # type: ignore[attr-defined]
    return primitive.result, primitive.result_source, primitive.diagnostic


def logged_rejections(node: RunningNode) -> list[Association]:
    return [r[0] for r in query(node.db_url, select(Association).where(Association.outcome == "rejected"))]


def test_calling_ae_not_allowed_is_rejected(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(net={"allowed_ae_titles": ["GOODAE"]})
    assoc = associate(node, calling_ae_title="BADAE")
    assert assoc.is_rejected  # type: ignore[attr-defined]
    # rejected-permanent, service user, calling AE title not recognised (PS3.8 9.3.4)
    assert reject_reason(assoc) == (0x01, 0x01, 0x03)
    rows = wait_for(lambda: logged_rejections(node))
    assert [(r.calling_ae_title, r.called_ae_title, r.peer_host) for r in rows] == [("BADAE", "DICOMNODE", "127.0.0.1")]
    assert "BADAE" in rows[0].reason and "allowed_ae_titles" in rows[0].reason
    assert rows[0].ended_at is not None
    assert c_echo(node, calling_ae_title="GOODAE") == status.SUCCESS


def test_host_not_allowed_is_rejected(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(net={"allowed_hosts": ["10.0.0.0/8"]})
    assoc = associate(node, calling_ae_title="ANYAE")
    assert assoc.is_rejected  # type: ignore[attr-defined]
    result, source, _diagnostic = reject_reason(assoc)
    assert (result, source) == (0x01, 0x01)  # permanent, service user
    rows = wait_for(lambda: logged_rejections(node))
    assert len(rows) == 1
    assert rows[0].peer_host == "127.0.0.1"
    assert "127.0.0.1" in rows[0].reason and "allowed_hosts" in rows[0].reason
    assert count_rows(node.db_url, Association) == 1


def test_allowed_host_network_is_accepted(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(net={"allowed_hosts": ["10.0.0.0/8", "127.0.0.0/8"]})
    assert c_echo(node, calling_ae_title="ANYAE") == status.SUCCESS
    assert logged_rejections(node) == []


def test_allowed_calling_ae_is_accepted(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(net={"allowed_ae_titles": ["GOODAE", "OTHERAE"], "allowed_hosts": ["127.0.0.0/8"]})
    assert c_echo(node, calling_ae_title="GOODAE") == status.SUCCESS
    assert c_echo(node, calling_ae_title="OTHERAE") == status.SUCCESS
    assert logged_rejections(node) == []


@pytest.mark.dcmtk
def test_echoscu_with_unknown_ae_fails(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(net={"allowed_ae_titles": ["GOODAE"]})
    echoscu = dcmtk("echoscu")
    refused = subprocess.run(
        [echoscu, "-aet", "BADAE", "-aec", node.ae_title, "127.0.0.1", str(node.port)],
        capture_output=True, text=True, timeout=30,
    )
    assert refused.returncode != 0
    assert "reject" in (refused.stdout + refused.stderr).lower()
    allowed = subprocess.run(
        [echoscu, "-aet", "GOODAE", "-aec", node.ae_title, "127.0.0.1", str(node.port)],
        capture_output=True, text=True, timeout=30,
    )
    assert allowed.returncode == 0, allowed.stderr


# -- resources ---------------------------------------------------------------------------------


def test_disk_floor_refuses_with_out_of_resources(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(store={"min_free_mb": 2**40})  # a floor no disk reaches
    (response,) = c_store_files(node, [CT_SMALL])
    assert response.status == status.OUT_OF_RESOURCES
    assert_untouched(node)
    (again,) = c_store_files(node, [CT_SMALL])  # and it keeps answering
    assert again.status == status.OUT_OF_RESOURCES


def test_database_unreachable_is_out_of_resources_quickly(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{get_port()}/nowhere"  # nothing listens there
    settings = make_settings(url, tmp_path / "store")
    running = start_in_process(settings, url)
    node = RunningNode(settings=settings, db_url=url, store_root=(tmp_path / "store").resolve())
    try:
        started = time.monotonic()
        (response,) = c_store_files(node, [CT_SMALL], timeout=20)
        elapsed = time.monotonic() - started
        assert response.status == status.OUT_OF_RESOURCES, response
        assert elapsed < 8, f"took {elapsed:.1f} s"
        assert "database" in response.comment.lower()
        assert list(node.store_root.rglob("*.dcm")) == []
        assert c_echo(node) == status.SUCCESS
    finally:
        running.stop()


def test_max_associations_rejects_the_next_one(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(net={"max_associations": 1})
    first = associate(node, calling_ae_title="FIRST")
    assert first.is_established  # type: ignore[attr-defined]
    try:
        second = associate(node, calling_ae_title="SECOND")
        assert second.is_rejected  # type: ignore[attr-defined]
        result, _source, _diagnostic = reject_reason(second)
        assert result == 0x02  # rejected-transient: try again later
        rsp = first.send_c_echo()  # type: ignore[attr-defined]
        assert rsp.Status == status.SUCCESS
    finally:
        first.release()  # type: ignore[attr-defined]
    assert wait_for(lambda: c_echo(node, calling_ae_title="THIRD") == status.SUCCESS)
    # the refusal is in the association log, with its reason
    rows = wait_for(lambda: logged_rejections(node))
    assert rows and rows[0].calling_ae_title == "SECOND" and "max_associations" in rows[0].reason


# -- duplicates --------------------------------------------------------------------------------


def variant(tmp_path: Path, name: str, **values: object) -> Path:
    """CT_small with some attributes changed, as a Part 10 file (same UIDs unless changed)."""
    ds = ct()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    if "SOPInstanceUID" in values:
        ds.file_meta.MediaStorageSOPInstanceUID = values["SOPInstanceUID"]
    path = tmp_path / name
    ds.save_as(path)
    return path


def stored_state(node: RunningNode) -> tuple[int, list[tuple[str, int]], bytes, str]:
    """(instance rows, [(series UID, instance_count)], stored dataset bytes, sha256 in index)."""
    row = indexed(node.db_url, SOP)
    assert row is not None
    instance = row[0]
    series = sorted((s.series_instance_uid, s.instance_count) for (s,) in query(node.db_url, select(Series)))
    stored = dataset_bytes(node.store_root / instance.file_path)
    return count_rows(node.db_url, Instance), series, stored, instance.sha256


def test_duplicate_same_series_replaces_by_default(node: RunningNode, tmp_path: Path) -> None:
    assert node.settings.store.duplicate_policy == "replace-same-series"
    changed = variant(tmp_path, "changed.dcm", InstanceNumber=99, ImageComments="second copy")
    responses = c_store_files(node, [CT_SMALL, changed])
    assert [r.status for r in responses] == [status.SUCCESS, status.SUCCESS]
    rows, series, stored, sha = stored_state(node)
    assert rows == 1
    assert [count for _, count in series] == [1]
    assert stored == dataset_bytes(changed)
    instance = indexed(node.db_url, SOP)[0]  # type: ignore[index]
    assert instance.instance_number == 99
    assert sha == hashlib.sha256((node.store_root / instance.file_path).read_bytes()).hexdigest()
    assert [p.name for p in node.store_root.rglob("*") if p.is_file()] == [f"{SOP}.dcm"]


def test_duplicate_in_another_series_refused_by_default(node: RunningNode, tmp_path: Path) -> None:
    moved = variant(tmp_path, "moved.dcm", SeriesInstanceUID=NEW_UID)
    assert [r.status for r in c_store_files(node, [CT_SMALL])] == [status.SUCCESS]
    before = stored_state(node)
    (response,) = c_store_files(node, [moved])
    assert response.status == status.DUPLICATE_SOP_INSTANCE
    assert stored_state(node) == before
    assert not any(NEW_UID in str(p) for p in node.store_root.rglob("*"))


def test_duplicate_policy_reject(node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(store={"duplicate_policy": "reject"})
    changed = variant(tmp_path, "changed.dcm", InstanceNumber=99)
    assert [r.status for r in c_store_files(node, [CT_SMALL])] == [status.SUCCESS]
    before = stored_state(node)
    (response,) = c_store_files(node, [changed])
    assert response.status == status.DUPLICATE_SOP_INSTANCE
    assert stored_state(node) == before
    assert before[2] == dataset_bytes(CT_SMALL)


def test_duplicate_policy_keep(node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(store={"duplicate_policy": "keep"})
    changed = variant(tmp_path, "changed.dcm", InstanceNumber=99)
    moved = variant(tmp_path, "moved.dcm", SeriesInstanceUID=NEW_UID)
    assert [r.status for r in c_store_files(node, [CT_SMALL])] == [status.SUCCESS]
    before = stored_state(node)
    responses = c_store_files(node, [changed, moved])
    assert [r.status for r in responses] == [status.SUCCESS, status.SUCCESS]
    assert stored_state(node) == before
    assert before[2] == dataset_bytes(CT_SMALL)
    assert count_rows(node.db_url, Series) == 1


def test_duplicate_policy_replace_moves_between_series(node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(store={"duplicate_policy": "replace"})
    moved = variant(tmp_path, "moved.dcm", SeriesInstanceUID=NEW_UID, InstanceNumber=7)
    responses = c_store_files(node, [CT_SMALL, moved])
    assert [r.status for r in responses] == [status.SUCCESS, status.SUCCESS]
    rows, series, stored, _sha = stored_state(node)
    original_series = str(ct().SeriesInstanceUID)
    assert rows == 1
    assert dict(series) == {original_series: 0, NEW_UID: 1}
    assert stored == dataset_bytes(moved)
    files = [p for p in node.store_root.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].parent.name == NEW_UID


# -- what the sender reads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "expected", "reason"),
    [
        ({"store": {"min_free_mb": 2**40}}, status.OUT_OF_RESOURCES, "free"),
        ({"store": {"duplicate_policy": "reject"}}, status.DUPLICATE_SOP_INSTANCE, "already stored"),
    ],
    ids=["disk-floor", "duplicate"],
)
def test_error_comment_says_why_within_64_characters(node_factory, sections, expected, reason) -> None:  # type: ignore[no-untyped-def]
    """ErrorComment is LO (64 characters): the reason must come before anything that may be cut."""
    node = node_factory(**sections)
    responses = c_store_files(node, [CT_SMALL, CT_SMALL])
    assert responses[-1].status == expected
    assert len(responses[-1].comment) <= 64
    assert reason in responses[-1].comment, responses[-1].comment
