# Sourced by the run scripts: make .venv with the project installed (idempotent, quiet).
# Usage: ensure_venv "<pip extras>", e.g. ensure_venv "test"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DICOMNODE_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

ensure_venv() {
  local extras="$1" stamp
  if [ ! -x "$PY" ]; then
    echo "==> creating $VENV" >&2
    python3 -m venv "$VENV"
  fi
  # Reinstall only when pyproject.toml changed or new extras are asked for.
  stamp="$VENV/.dicomnode-installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-${extras// /_}"
  if [ ! -f "$stamp" ]; then
    echo "==> installing dicomnode${extras:+[$extras]} into $VENV" >&2
    "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT${extras:+[$extras]}" >&2
    touch "$stamp"
  fi
}
