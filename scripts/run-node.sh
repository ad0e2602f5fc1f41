#!/usr/bin/env bash
# Run the node: installs itself into .venv on first use, then `dicomnode serve` with
# conf/dicomnode.yaml (embedded PostgreSQL in var/pgdata unless db.url is set).
# Extra arguments go to `dicomnode serve` (try --help).
source "$(dirname "$0")/_venv.sh"
ensure_venv ""
cd "$ROOT"
exec "$VENV/bin/dicomnode" serve "$@"
