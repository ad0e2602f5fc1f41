#!/usr/bin/env bash
# Run the whole test suite: installs what a fresh machine lacks (the venv with test extras;
# DCMTK, dicom3tools and Chromium from Debian when we are root and they are missing; the viewer
# page's node_modules when npm exists), checks the layering and lint, then runs pytest. Extra
# arguments go to pytest.
source "$(dirname "$0")/_venv.sh"

# Real anatomy the AI pipelines' training data and evaluation build on: a head CT
# (invesalius-examples) and the colin27 T1 brain (mricron-data). Orthanc is a real peer of the
# loop tests (and of bench/dicomweb.py with its DICOMweb plugin).
if [ ! -x /usr/bin/storescu ] || [ ! -x /usr/bin/dciodvfy ] || [ ! -x /usr/bin/chromium ] || [ ! -x /usr/sbin/Orthanc ] || \
   [ ! -f /usr/share/doc/invesalius-examples/examples/Cranium.inv3 ] || [ ! -d /usr/share/mricron ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing DCMTK, dicom3tools, Chromium, Orthanc and anatomy data (apt)" >&2
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk dicom3tools chromium invesalius-examples mricron-data \
      orthanc orthanc-dicomweb >&2 || \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk chromium >&2
  else
    echo "==> DCMTK or Chromium missing and not root: tests marked dcmtk or browser may skip" \
      "(apt-get install dcmtk dicom3tools chromium)" >&2
  fi
fi

# The cornerstone3D page of tests/e2e/test_viewer.py: npm ci once per package-lock.json change.
if command -v npm >/dev/null && ! [ "$ROOT/viewer/node_modules/.package-lock.json" -nt "$ROOT/viewer/package-lock.json" ]; then
  echo "==> npm ci (viewer/)" >&2
  (cd "$ROOT/viewer" && npm ci --no-audit --no-fund --loglevel=error >&2) || \
    echo "==> npm ci failed: tests marked browser will skip" >&2
fi

ensure_venv "test,ai"
cd "$ROOT"
echo "==> import layering (lint-imports)" >&2
"$VENV/bin/lint-imports" --no-cache >&2
echo "==> ruff" >&2
"$VENV/bin/ruff" check dicomnode ai_pipelines tests bench migrations >&2
echo "==> pytest" >&2
exec "$VENV/bin/pytest" "$@"
