"""Test helpers shared by the suites (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomnode.config import Settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def get_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningNode:
    """A node serving on loopback for one test."""

    settings: Settings
    db_url: str
    store_root: Path

    @property
    def port(self) -> int:
        return self.settings.net.port

    @property
    def ae_title(self) -> str:
        return self.settings.net.ae_title

    @property
    def peer(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"


def make_settings(db_url: str, store_root: Path, **sections: dict) -> Settings:  # type: ignore[type-arg]
    net = {"ae_title": "DICOMNODE", "host": "127.0.0.1", "port": get_port(), **sections.pop("net", {})}
    store = {"root": store_root, "min_free_mb": 0, **sections.pop("store", {})}
    return Settings(net=net, store=store, db={"url": db_url}, **sections)


def dcmtk(tool: str) -> str:
    """Absolute path of a DCMTK tool (a venv's pynetdicom puts its own echoscu first on PATH)."""
    path = f"/usr/bin/{tool}"
    if not os.path.exists(path):
        pytest.skip(f"DCMTK {tool} not installed (apt-get install dcmtk)")
    return path


requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared test data not found at {SHARED_DATA}"
)
