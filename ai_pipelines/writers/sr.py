"""stub."""
from __future__ import annotations

def write_tid1500_sr(): ...
