#!/usr/bin/env bash
# Run the whole test suite: installs what a fresh machine lacks (the venv with test extras;
# DCMTK and dicom3tools from Debian when we are root and they are missing), checks the
# layering and lint, then runs pytest. Extra arguments go to pytest.
source "$(dirname "$0")/_venv.sh"

if [ ! -x /usr/bin/storescu ] || [ ! -x /usr/bin/dciodvfy ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing DCMTK and dicom3tools (apt)" >&2
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk dicom3tools >&2 || \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk >&2
  else
    echo "==> DCMTK missing and not root: tests marked dcmtk will skip (apt-get install dcmtk)" >&2
  fi
fi

ensure_venv "test"
cd "$ROOT"
echo "==> import layering (lint-imports)" >&2
"$VENV/bin/lint-imports" --no-cache >&2
echo "==> ruff" >&2
"$VENV/bin/ruff" check dicomnode ai_pipelines tests bench migrations >&2
echo "==> pytest" >&2
exec "$VENV/bin/pytest" "$@"
