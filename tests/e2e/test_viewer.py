"""A real viewer in a real browser shows a CT slice from our DICOMweb (issue 4).

`dicomnode serve` runs as a subprocess; a synthetic CT series reaches it by C-STORE. The
cornerstone3D page in ``viewer/`` (built with vite) is served from a second origin, so CORS is
exercised too, and pointed at the node's ``/dicom-web``. Headless Debian Chromium, driven by
``viewer/shot.mjs`` (playwright-core), opens it: QIDO-RS series, WADO-RS series metadata, then
WADO-RS frames of the middle slice, drawn by cornerstone3D. The viewport's screenshot must show
an image, and the same page told to draw nothing must not pass the same check.

Needs /usr/bin/chromium (apt-get install chromium), node and npm; ``npm ci`` runs once in
``viewer/`` (node_modules and dist/ stay there, ignored by git). scripts/run-tests.sh installs
all of it when run as root. Warm, the test takes about 10 s; with ``npm ci`` and the build, 20 s.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ai_pipelines.synthetic.series import synthetic_ct
from dicomnode.net import scu, status
from tests.helpers import REPO_ROOT, ServeProcess, get_port, serve_env

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(240)]

VIEWER = REPO_ROOT / "viewer"
CHROMIUM = Path("/usr/bin/chromium")
#: What the page's build depends on: a newer one of these means dist/ is stale.
BUILD_INPUTS = ("index.html", "main.js", "vite.config.mjs", "package-lock.json")


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


@pytest.fixture(scope="session")
def viewer_dist() -> Path:
    """viewer/dist, built (after ``npm ci`` when node_modules is missing or stale)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to build the viewer page (apt-get install nodejs npm)")
    installed = VIEWER / "node_modules" / ".package-lock.json"
    if _mtime(installed) < _mtime(VIEWER / "package-lock.json"):
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=VIEWER, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"npm ci in {VIEWER} failed (npm registry unreachable?): {done.stderr[-500:]}")
    index = VIEWER / "dist" / "index.html"
    if _mtime(index) < max(_mtime(VIEWER / name) for name in BUILD_INPUTS):
        done = subprocess.run(
            [node, "node_modules/vite/bin/vite.js", "build"],
            cwd=VIEWER,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"vite build failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    return index.parent


@pytest.fixture
def viewer_origin(viewer_dist: Path) -> Iterator[str]:
    """viewer/dist served over HTTP on a loopback port of its own (another origin than the node)."""

    class Quiet(SimpleHTTPRequestHandler):
        extensions_map = {
            **SimpleHTTPRequestHandler.extensions_map,
            ".js": "text/javascript",
            ".wasm": "application/wasm",
        }

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", get_port()), functools.partial(Quiet, directory=str(viewer_dist)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass(frozen=True, slots=True)
class Shot:
    """What shot.mjs saw: the page's final state and status line, and the screenshot."""

    state: str
    status: str
    seconds: float
    log: list[str]
    path: Path


def _shoot(url: str, out: Path) -> Shot:
    done = subprocess.run(
        [shutil.which("node") or "node", "shot.mjs", url, str(out), "60000"],
        cwd=VIEWER,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"shot.mjs printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1])
    return Shot(result.get("state", ""), result.get("status", ""), result["seconds"], result["log"], out)


def _drawn(path: Path) -> dict[str, float]:
    """Share of lit pixels, spread and number of grey levels in a screenshot of the viewport."""
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    return {
        "lit_fraction": float((grey > 16).mean()),
        "std": float(grey.std()),
        "levels": float(len(np.unique(grey))),
    }


def _is_image(measures: dict[str, float]) -> bool:
    # A CT slice lights part of the black viewport (air stays dark) in many grey levels.
    return measures["lit_fraction"] > 0.05 and measures["std"] > 10 and measures["levels"] > 32


def _send_ct(tmp_path: Path, port: int) -> tuple[str, int]:
    """C-STORE a 16-slice synthetic chest CT; its StudyInstanceUID and slice count."""
    datasets = synthetic_ct(shape=(16, 128, 128), spacing=(2.5, 2.5, 2.5), seed=7)
    directory = tmp_path / "ct"
    directory.mkdir()
    paths = []
    for number, ds in enumerate(datasets):
        path = directory / f"{number:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    results = scu.send_files(scu.Peer("DICOMNODE", "127.0.0.1", port), paths, calling_ae_title="VIEWERTEST")
    assert [r.status for r in results] == [status.SUCCESS] * len(paths), results
    return str(datasets[0].StudyInstanceUID), len(datasets)


def _wait_http(url: str, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_cornerstone_page_shows_a_ct_slice_from_dicomweb(db_url: str, tmp_path: Path, viewer_origin: str) -> None:
    started = time.monotonic()
    port, http_port = get_port(), get_port()
    node_url = f"http://127.0.0.1:{http_port}"
    env = serve_env(
        DB__URL=db_url,
        STORE__ROOT=tmp_path / "store",
        STORE__MIN_FREE_MB=0,
        NET__HOST="127.0.0.1",
        NET__PORT=port,
        NET__PROCESSES=1,
        WEB__PORT=http_port,
        WEB__PUBLIC_URL=node_url,
        WEB__CORS_ORIGINS=json.dumps([viewer_origin]),
    )
    with ServeProcess(env=env, log_path=tmp_path / "serve.log", cwd=tmp_path, args=["--no-worker"]) as node:
        node.wait_ready(port=port)
        _wait_http(f"{node_url}/healthz")
        study, slices = _send_ct(tmp_path, port)
        loaded = time.monotonic()

        page = f"{viewer_origin}/index.html?root={node_url}/dicom-web"
        shot = _shoot(f"{page}&study={study}", tmp_path / "viewer-ct.png")
        blank = _shoot(f"{page}&blank", tmp_path / "viewer-blank.png")
        serve_log = node.log_tail(60)

    print(f"\nscreenshot: {shot.path}\nblank page: {blank.path}")
    print(
        f"timings: node up + {slices} slices stored {loaded - started:.1f} s, "
        f"slice shown {shot.seconds:.1f} s, blank page {blank.seconds:.1f} s"
    )
    context = "\n".join(shot.log[-40:]) + f"\n--- serve log ---\n{serve_log}"
    assert shot.state == "rendered", f"page state {shot.state!r}: {shot.status}\n{context}"
    assert f"/{slices}" in shot.status, shot.status
    assert blank.state == "blank", blank.status
    assert not any(line.startswith(("blocked", "http ", "requestfailed")) for line in shot.log), context

    measures, baseline = _drawn(shot.path), _drawn(blank.path)
    print(f"viewport: {measures}; blank: {baseline}")
    assert not _is_image(baseline), f"the blank page passes the check, so it proves nothing: {baseline}"
    assert _is_image(measures), f"no CT slice in {shot.path}: {measures}\n{context}"
