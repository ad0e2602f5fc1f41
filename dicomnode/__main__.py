"""``python -m dicomnode`` runs the CLI."""

from __future__ import annotations

from dicomnode.cli import main

main()
