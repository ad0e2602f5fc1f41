"""DICOMweb bench: our web app against Orthanc's DICOMweb plugin, same data, same run.

    .venv/bin/python bench/dicomweb.py --quick     # 1,000 filler studies, 100-slice CT, ~2 min
    .venv/bin/python bench/dicomweb.py             # 10,000 filler studies, 300-slice CT

Both servers start fresh on 127.0.0.1, each in its own process group (stopped by that group's
id), and are loaded through STOW-RS with the same Part 10 files: N one-instance filler studies
(so QIDO searches an index of ~N studies) and one CT series (512x512, from ``bench/series.py``).
Then, on one keep-alive connection per server, alternating between the servers:

- QIDO-RS: studies by PatientID, studies by StudyDate range (limit 100), series of a
  study, instances of the CT series: p50 and p95 in ms;
- WADO-RS: the CT series as multipart application/dicom (as stored), MB/s; one frame, ms;
- metadata of the CT series, ms: the first request (ours reads every header then) and p50/p95
  of the following ones (ours answers from its in-memory metadata cache);
- STOW-RS: a fresh 100-instance CT series per run, one POST each, instances/s.

Ratios are Orthanc's time over ours (above 1: we are faster); the last line is
``min_ratio_vs_orthanc=X``, the worst ratio over the lines. Our app runs as one uvicorn process
(``create_app`` from settings in DICOMNODE_* variables), fsync on, on a database created on
``--pg``; Orthanc 1.10 with SQLite and ``StorageCompression`` off.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.series import SeriesSpec, materialise  # noqa: E402

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
BOUNDARY = "dicomnode-bench-boundary"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A DICOMweb server process in its own process group."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def spawn(self, command: list[str], env: dict[str, str]) -> None:
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )

    def wait(self, probe: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(probe, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Ours(Server):
    def __init__(self, base: Path, pg: str) -> None:
        super().__init__("dicomnode", base)
        import psycopg

        self.pg = pg
        self.database = f"dicomnode_webbench_{os.getpid()}"
        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.database}"')
        head, _, query = pg.partition("?")
        db_url = head.rsplit("/", 1)[0] + "/" + self.database + ("?" + query if query else "")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMNODE_")}
        env.update(
            {
                "DICOMNODE_DB__URL": db_url,
                "DICOMNODE_STORE__ROOT": str(self.workdir / "store"),
                "DICOMNODE_STORE__MIN_FREE_MB": "0",
                "DICOMNODE_WEB__MAX_UPLOAD_MB": "4096",
                "DICOMNODE_CONFIG": str(REPO / "conf" / "dicomnode.yaml"),
            }
        )
        subprocess.run(
            [sys.executable, "-m", "dicomnode", "db", "upgrade"], env=env, cwd=REPO, check=True, capture_output=True
        )
        self.spawn([sys.executable, __file__, "serve-ours", str(self.port)], env)
        self.url = f"http://127.0.0.1:{self.port}/dicom-web"
        self.wait(f"http://127.0.0.1:{self.port}/healthz")

    def stop(self) -> None:
        super().stop()
        import psycopg

        with psycopg.connect(self.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


class Orthanc(Server):
    def __init__(self, base: Path) -> None:
        super().__init__("orthanc", base)
        config = {
            "Name": "dicomweb-bench",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "SaveJobs": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Ssl": False},
        }
        (self.workdir / "orthanc.json").write_text(json.dumps(config))
        self.spawn([str(ORTHANC), str(self.workdir / "orthanc.json")], dict(os.environ))
        self.url = f"http://127.0.0.1:{self.port}/dicom-web"
        self.wait(f"http://127.0.0.1:{self.port}/system")


def serve_ours(port: int) -> None:
    """Child process: our app with settings from the environment, one uvicorn process."""
    import uvicorn

    from dicomnode.config import load_settings
    from dicomnode.web.app import create_app

    uvicorn.run(create_app(load_settings()), host="127.0.0.1", port=port, log_level="warning", ws="none")


def filler(count: int) -> Iterator[bytes]:
    """``count`` one-instance studies: small MR images, each its own patient and study."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = random.Random(7)
    for index in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid(entropy_srcs=["i", str(index)])
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["st", str(index)])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["se", str(index)])
        ds.PatientName = f"{rng.choice(['Doe', 'Smith', 'Lee', 'Garcia', 'Chen'])}^Pat{index:05d}"
        ds.PatientID = f"BENCH{index:05d}"
        ds.StudyDate = f"20{10 + index % 15:02d}{1 + index % 12:02d}{1 + index % 28:02d}"
        ds.StudyTime, ds.AccessionNumber, ds.Modality = "101010", f"ACC{index:06d}", "MR"
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.full((16, 16), index % 4096, dtype="<u2").tobytes()
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        yield buffer.getvalue()


def stow_body(parts: list[bytes]) -> bytes:
    chunks = [f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts]
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


def stow(client: httpx.Client, url: str, parts: list[bytes]) -> float:
    body = stow_body(parts)
    started = time.perf_counter()
    response = client.post(
        f"{url}/studies",
        content=body,
        timeout=600,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"STOW to {url} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def timed(client: httpx.Client, url: str, accept: str, params: dict[str, str] | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    with client.stream("GET", url, params=params, headers={"Accept": accept}) as response:
        size = sum(len(chunk) for chunk in response.iter_raw())
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return elapsed, size


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 filler studies, 100-slice CT, fewer repeats")
    parser.add_argument("--studies", type=int, default=None, help="filler studies (default 10000; quick 1000)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dicomnode-webbench"))
    parser.add_argument("--reps", type=int, default=None, help="repeats per latency line (default 40; quick 15)")
    args = parser.parse_args(argv)
    studies = args.studies or (1000 if args.quick else 10000)
    slices = 100 if args.quick else 300
    reps = args.reps or (15 if args.quick else 40)
    bulk_reps = 3 if args.quick else 5
    args.workdir.mkdir(parents=True, exist_ok=True)
    ct = materialise(SeriesSpec("CT", "CT", slices, 512, 512), args.workdir / "data")
    ct_parts = [f.read_bytes() for f in ct.files]
    fillers = list(filler(studies))
    print(f"data: {studies} filler studies, CT {slices} x 512x512 ({ct.total_bytes / 1e6:.0f} MB)", flush=True)

    servers: dict[str, Server] = {}
    results: dict[str, dict[str, float]] = {"dicomnode": {}, "orthanc": {}}
    try:
        servers["dicomnode"] = Ours(args.workdir, args.pg)
        servers["orthanc"] = Orthanc(args.workdir)
        clients = {name: httpx.Client(headers={"Accept-Encoding": "identity"}, timeout=600) for name in servers}
        for name, server in servers.items():
            started = time.perf_counter()
            for start in range(0, len(fillers), 250):
                stow(clients[name], server.url, fillers[start : start + 250])
            stow(clients[name], server.url, ct_parts)
            print(f"loaded {name} in {time.perf_counter() - started:.0f} s", flush=True)
        study_uid, series_uid, _ = _uids(ct_parts[0])
        sops = [_uids(part)[2] for part in ct_parts]
        rng = random.Random(1)

        def latency(
            line: str, make: Callable[[], tuple[str, str, dict[str, str] | None]], count: int, *, cold: bool = False
        ) -> None:
            """p50/p95 after one warm-up request; ``cold`` also reports that first request."""
            samples: dict[str, list[float]] = {name: [] for name in servers}
            requests = [make() for _ in range(count + 1)]
            for path, accept, params in requests:  # the first is a warm-up, alternating servers
                for name, server in servers.items():
                    samples[name].append(timed(clients[name], server.url + path, accept, params)[0])
            for name in servers:
                values = samples[name][1:]
                if cold:
                    results[name][f"{line}, first request ms"] = samples[name][0] * 1e3
                results[name][f"{line} p50 ms"] = p(values, 0.5) * 1e3
                results[name][f"{line} p95 ms"] = p(values, 0.95) * 1e3
            path, accept, params = requests[0]
            if accept == "application/dicom+json":  # the same question got the same number of answers?
                found = {
                    n: len(clients[n].get(s.url + path, params=params, headers={"Accept": accept}).json())
                    for n, s in servers.items()
                }
                if len(set(found.values())) > 1:
                    print(f"note: {line}: results differ {found}", flush=True)

        json_accept = "application/dicom+json"
        latency(
            "QIDO studies by PatientID",
            lambda: ("/studies", json_accept, {"PatientID": f"BENCH{rng.randrange(studies):05d}"}),
            reps,
        )
        latency(
            # (Orthanc 1.10's plugin answers no PatientName wildcard query here, so dates it is.)
            "QIDO studies by date range, limit 100",
            lambda: (
                "/studies",
                json_accept,
                {"StudyDate": f"20{rng.randrange(10, 20)}0101-20{rng.randrange(20, 25)}1231", "limit": "100"},
            ),
            reps,
        )
        latency("QIDO series of a study", lambda: (f"/studies/{study_uid}/series", json_accept, None), reps)
        latency(
            "QIDO instances of the CT series",
            lambda: (f"/studies/{study_uid}/series/{series_uid}/instances", json_accept, None),
            max(5, reps // 4),
        )
        latency(
            "WADO one frame",
            lambda: (f"/studies/{study_uid}/series/{series_uid}/instances/{rng.choice(sops)}/frames/1", FRAMES, None),
            reps,
        )
        latency(
            "WADO series metadata",
            lambda: (f"/studies/{study_uid}/series/{series_uid}/metadata", json_accept, None),
            bulk_reps,
            cold=True,  # ours caches metadata in memory; its first request reads every header
        )
        for name, server in servers.items():
            times = []
            for _ in range(bulk_reps + 1):
                elapsed, size = timed(clients[name], f"{server.url}/studies/{study_uid}/series/{series_uid}", DICOM)
                times.append(elapsed)
            results[name]["WADO series retrieve MB/s"] = size / 1e6 / statistics.median(times[1:])
        rates: dict[str, list[float]] = {name: [] for name in servers}
        for run in range(2 if args.quick else 3):
            spec = SeriesSpec("STOW", "CT", 100, 512, 512, seed=100 + run)
            fresh = [f.read_bytes() for f in materialise(spec, args.workdir / "data").files]
            for name, server in servers.items():
                rates[name].append(len(fresh) / stow(clients[name], server.url, fresh))
        for name in servers:
            results[name]["STOW-RS 100 CT instances/s"] = statistics.median(rates[name])
    finally:
        for server in servers.values():
            server.stop()
    return report(results)


def _uids(part: bytes) -> tuple[str, str, str]:
    from pydicom import dcmread

    ds = dcmread(BytesIO(part), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def report(results: dict[str, dict[str, float]]) -> int:
    ours, theirs = results["dicomnode"], results["orthanc"]
    print("\n| line | dicomnode | Orthanc | ratio (>1: we are faster) |\n|---|---:|---:|---:|")
    ratios = []
    for line in ours:
        faster_is_higher = line.endswith("/s")
        ratio = ours[line] / theirs[line] if faster_is_higher else theirs[line] / ours[line]
        ratios.append(ratio)
        print(f"| {line} | {ours[line]:.1f} | {theirs[line]:.1f} | {ratio:.2f} |")
    print(f"min_ratio_vs_orthanc={min(ratios):.2f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve-ours":
        serve_ours(int(sys.argv[2]))
    else:
        sys.exit(main())
