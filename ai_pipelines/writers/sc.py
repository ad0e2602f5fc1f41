"""stub."""
from __future__ import annotations

def write_sc(): ...
