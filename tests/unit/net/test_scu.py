"""SCU helpers that need no peer: parsing AE@host:port and finding files to send."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomnode.net.scu import Peer, find_files

GOOD = {
    "ORTHANC@127.0.0.1:4242": Peer("ORTHANC", "127.0.0.1", 4242),
    "PACS@pacs.example.org:104": Peer("PACS", "pacs.example.org", 104),
    "STORESCP@localhost:11112": Peer("STORESCP", "localhost", 11112),
    "A@h:1": Peer("A", "h", 1),
    "SIXTEEN_CHARS_AE@10.0.0.1:65535": Peer("SIXTEEN_CHARS_AE", "10.0.0.1", 65535),
    "MY AE@10.0.0.1:104": Peer("MY AE", "10.0.0.1", 104),
    "  PACS@10.0.0.1:104  ": Peer("PACS", "10.0.0.1", 104),
    "PACS@[::1]:11112": Peer("PACS", "::1", 11112),
    "PACS@[2001:db8::7]:104": Peer("PACS", "2001:db8::7", 104),
}
BAD = {
    "no port": "PACS@10.0.0.1",
    "empty port": "PACS@10.0.0.1:",
    "port zero": "PACS@10.0.0.1:0",
    "port too large": "PACS@10.0.0.1:65536",
    "port six digits": "PACS@10.0.0.1:111120",
    "port not a number": "PACS@10.0.0.1:dicom",
    "no AE": "@10.0.0.1:104",
    "no host": "PACS@:104",
    "no @": "10.0.0.1:104",
    "two @": "PACS@A@10.0.0.1:104",
    "AE of 17 characters": "SEVENTEEN_CHARS_X@10.0.0.1:104",
    "IPv6 without brackets": "PACS@::1:104",
    "unclosed bracket": "PACS@[::1:104",
    "empty": "",
}


@pytest.mark.parametrize("text", GOOD, ids=GOOD)
def test_parse_good(text: str) -> None:
    assert Peer.parse(text) == GOOD[text]


@pytest.mark.parametrize("text", BAD.values(), ids=BAD)
def test_parse_bad(text: str) -> None:
    with pytest.raises(ValueError, match="AE@host:port"):
        Peer.parse(text)


@pytest.mark.parametrize("text", ["ORTHANC@127.0.0.1:4242", "PACS@[::1]:11112", "PACS@[2001:db8::7]:104"])
def test_str_parses_back(text: str) -> None:
    """What we print (send summaries, logs) can be pasted back into --to."""
    peer = Peer.parse(text)
    assert Peer.parse(str(peer)) == peer


def test_find_files_recursive_sorted_without_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for name in ["b/2.dcm", "b/1.dcm", "a/deep/x", "a/.DS_Store", ".git/config", "top.dcm"]:
        (tmp_path / name).write_bytes(b"")
    found = find_files([tmp_path, tmp_path / "a" / ".DS_Store"])
    relative = [str(p.relative_to(tmp_path)) for p in found]
    # folders: walked in order, hidden entries skipped; a file named explicitly is taken as is
    assert relative == ["top.dcm", "a/deep/x", "b/1.dcm", "b/2.dcm", "a/.DS_Store"]
