"""AI loop latency bench: from the last instance of a series acknowledged by our node to the
key-image montage acknowledged by a DCMTK storescp destination, minus the quiet period.

Starts `dicomnode serve --no-web` (embedded worker, 1 SCP process) on a fresh database with one
rule (CT -> key_image_montage -> storescp) and `jobs.quiet_seconds` = --quiet, and a DCMTK
storescp (TCP_NODELAY=1) as the destination. Each run sends 1 or 10 synthetic CT series at once
(pynetdicom, one association and one thread per series; the time of each C-STORE response is
taken in the sender's callback) and waits for one Secondary Capture per series in storescp's
output directory. A result's arrival time is its file's mtime (storescp's last write, just
before it answers the C-STORE); it is matched to its series by StudyInstanceUID. Per series:

  overhead = arrival - last instance acknowledged - quiet period

One warm-up series is sent first and left out. The table shows medians over --runs runs (for
10 series: the median and the worst series of each run, then the median of those); the
breakdown uses the node's own timestamps (run queued/started/finished, delivery delivered).
The last line printed is

  loop_overhead_s=X      (1 series at a time, median of --runs runs)

  .venv/bin/python bench/loop.py                 # 5 runs per cell, about 2 minutes on 2 cores
  .venv/bin/python bench/loop.py --runs 3 --concurrent 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from receivers import STORESCP, DicomnodeReceiver, StorescpReceiver, postgres_summary

REPO = Path(__file__).resolve().parents[1]
CALLING_AE_TITLE = "BENCHSCU"
RULES = """
- name: bench-ct-montage
  when: {all: [{attr: Modality, equals: CT}, {not: {attr: ImageType, contains: DERIVED}}]}
  run: [{pipeline: key_image_montage, params: {tiles: 9}}]
  send_to: [results]
"""


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class LoopNode(DicomnodeReceiver):
    """Our node with its embedded job worker, one rule, and the storescp as destination ``results``."""

    def __init__(self, *, destination: dict[str, object], quiet: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.destination = destination
        self.quiet = quiet
        self.rules_file = self.workdir / "rules.yaml"
        self.rules_file.write_text(RULES)

    def _env(self) -> dict[str, str]:
        return {
            **super()._env(),
            "DICOMNODE_JOBS__QUIET_SECONDS": str(self.quiet),
            "DICOMNODE_JOBS__RULES_FILE": str(self.rules_file),
            "DICOMNODE_DESTINATIONS": json.dumps([self.destination]),
        }

    def _launch(self) -> None:
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self._created = True
        self.store_root.mkdir()
        with open(self.log_path, "ab") as log:
            migrated = subprocess.run(
                [self.python, "-m", "dicomnode", "db", "upgrade"], cwd=self.repo, env=self._env(),
                stdout=log, stderr=subprocess.STDOUT, timeout=300,
            )
        if migrated.returncode != 0:
            raise RuntimeError(f"`dicomnode db upgrade` failed; log: {self.log_path}\n{self.log_tail()}")
        # unlike the ingest bench: the job worker runs in the node (embedded mode, as shipped)
        self._spawn([self.python, "-m", "dicomnode", "serve", "--no-web"], env=self._env(), cwd=self.repo)

    def _extra_ready(self) -> bool:
        return True

    def timestamps(self, study_instance_uid: str) -> dict[str, float]:
        """The node's own clock for the study's run and delivery (epoch seconds)."""
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT run.queued_at, run.started_at, run.finished_at, d.delivered_at FROM run"
                " JOIN series s ON s.id = run.series_fk JOIN study st ON st.id = s.study_fk"
                " JOIN delivery d ON d.run_fk = run.id WHERE st.study_instance_uid = %s ORDER BY run.id LIMIT 1",
                (study_instance_uid,),
            ).fetchone()
        if row is None or any(v is None for v in row):
            return {}
        return dict(zip(("queued", "started", "finished", "delivered"), (v.timestamp() for v in row), strict=True))


@dataclass
class Sent:
    study_instance_uid: str
    files: list[Path]
    last_ack: float = 0.0  # epoch seconds of the last C-STORE response
    problem: str = ""


@dataclass
class Cell:
    concurrent: int
    medians: list[float] = field(default_factory=list)  # per run: median overhead of its series
    worst: list[float] = field(default_factory=list)  # per run: the slowest series
    stages: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0


def make_series(directory: Path, seed: int, slices: int, size: int) -> Sent:
    """A synthetic CT series (ai_pipelines.synthetic) written as Part 10 files."""
    from ai_pipelines.synthetic.series import synthetic_ct

    directory.mkdir(parents=True, exist_ok=True)
    datasets = synthetic_ct(shape=(slices, size, size), seed=seed)
    paths = []
    for ds in datasets:
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return Sent(str(datasets[0].StudyInstanceUID), paths)


def send(node: LoopNode, sent: Sent) -> None:
    from dicomnode.net import scu

    def on_result(result: scu.SendResult) -> None:
        sent.last_ack = time.time()
        if not result.ok:
            sent.problem = f"C-STORE of {result.path} failed: {result}"

    results = scu.send_files(scu.Peer(node.ae_title, "127.0.0.1", node.port), sent.files,
                             calling_ae_title=CALLING_AE_TITLE, on_result=on_result)
    if len(results) != len(sent.files):
        sent.problem = sent.problem or f"{len(results)} responses for {len(sent.files)} files"


def arrivals(output: Path, wanted: set[str], seen: dict[str, float], timeout: float) -> dict[str, float]:
    """Wait until a result for each study in ``wanted`` is in ``output``; study -> file mtime."""
    from pydicom import dcmread

    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while wanted - set(found) and time.monotonic() < deadline:
        for entry in os.scandir(output):
            if entry.name in seen or not entry.is_file():
                continue
            try:
                ds = dcmread(entry.path, stop_before_pixels=True)
            except Exception:  # still being written: read it on the next pass
                continue
            seen[entry.name] = entry.stat().st_mtime
            found[str(ds.StudyInstanceUID)] = seen[entry.name]
        time.sleep(0.005)
    return found


def one_run(node: LoopNode, storescp: StorescpReceiver, series: list[Sent], *, quiet: int, seen: dict[str, float],
            timeout: float) -> tuple[list[float], dict[str, list[float]], str]:
    threads = [threading.Thread(target=send, args=(node, s)) for s in series]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    problems = [s.problem for s in series if s.problem]
    if problems:
        return [], {}, "; ".join(problems)
    found = arrivals(storescp.output, {s.study_instance_uid for s in series}, seen, timeout)
    missing = [s.study_instance_uid for s in series if s.study_instance_uid not in found]
    if missing:
        return [], {}, f"{len(missing)} of {len(series)} results did not arrive within {timeout:.0f} s"
    overheads = [found[s.study_instance_uid] - s.last_ack - quiet for s in series]
    stages: dict[str, list[float]] = {}
    for s in series:
        t = node.timestamps(s.study_instance_uid)
        if t:
            for name, value in (("quiet -> run queued", t["queued"] - s.last_ack - quiet),
                                ("queued -> started", t["started"] - t["queued"]),
                                ("pipeline + store", t["finished"] - t["started"]),
                                ("finished -> delivered", t["delivered"] - t["finished"]),
                                ("delivered -> file mtime", found[s.study_instance_uid] - t["delivered"])):
                stages.setdefault(name, []).append(value)
    return overheads, stages, ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/loop.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per cell; medians reported (default 5)")
    parser.add_argument("--concurrent", default="1,10", help="series sent at once, a comma list (default 1,10)")
    parser.add_argument("--quiet", type=int, default=1, help="jobs.quiet_seconds of the node, s (default 1)")
    parser.add_argument("--slices", type=int, default=12, help="slices per series (default 12)")
    parser.add_argument("--size", type=int, default=256, help="rows = columns of a slice (default 256)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server URL; a database is created and dropped (default %(default)s)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for `-m dicomnode` (default: this)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dicomnode-bench"),
                        help="series files and receiver dirs go under <workdir>/loop (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=120, help="per-run wait for the results, s (default 120)")
    args = parser.parse_args(argv)
    if os.sep in args.python:
        args.python = os.path.abspath(args.python)
    try:
        args.concurrent = [int(c) for c in args.concurrent.split(",")]
    except ValueError:
        parser.error(f"--concurrent: comma list of integers expected, got {args.concurrent!r}")
    if args.runs < 1 or min(args.concurrent) < 1 or args.quiet < 1:
        parser.error("--runs, --concurrent and --quiet must be >= 1")
    return args


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "nan"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.access(STORESCP, os.X_OK):
        progress(f"{STORESCP} is needed as the destination (Debian package dcmtk)")
        return 2
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    base = args.workdir / "loop"
    base.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="series-", dir=base))
    seed = int(time.time()) % 100_000 * 100  # fresh UIDs every invocation
    cells = {c: Cell(c) for c in args.concurrent}
    seen: dict[str, float] = {}
    with StorescpReceiver(base_dir=base) as storescp:
        destination = {"name": "results", "ae_title": storescp.ae_title, "host": "127.0.0.1", "port": storescp.port}
        node = LoopNode(base_dir=base, python=args.python, repo=REPO, server_url=args.pg, processes=1,
                        label="dicomnode", destination=destination, quiet=args.quiet)
        with node:
            progress(f"node on port {node.port}, storescp on {storescp.port}; warm-up series")
            warm = make_series(data / "warm", seed, args.slices, args.size)
            _, _, problem = one_run(node, storescp, [warm], quiet=args.quiet, seen=seen, timeout=args.timeout)
            if problem:
                progress(f"warm-up failed: {problem}\n{node.log_tail()}")
                node.keep = True
                return 1
            log_offset = node.log_size()  # migrations and start-up are not the bench's business
            for run in range(args.runs):
                for concurrent, cell in cells.items():
                    series = []
                    for _ in range(concurrent):
                        seed += 1
                        series.append(make_series(data / str(seed), seed, args.slices, args.size))
                    overheads, stages, problem = one_run(node, storescp, series, quiet=args.quiet, seen=seen,
                                                         timeout=args.timeout)
                    if problem:
                        cell.failures += 1
                        progress(f"run {run + 1} x{concurrent}: FAILED: {problem}\n{node.log_tail()}")
                        continue
                    cell.medians.append(statistics.median(overheads))
                    cell.worst.append(max(overheads))
                    for name, values in stages.items():
                        cell.stages.setdefault(name, []).append(statistics.median(values))
                    progress(f"run {run + 1}/{args.runs} x{concurrent}: overhead median "
                             f"{statistics.median(overheads):.2f} s, worst {max(overheads):.2f} s")
            log_lines = node.log_since(log_offset)
            if log_lines:
                progress(f"the node logged {len(log_lines)} line(s) at WARNING or above; last: {log_lines[-1][:300]}")

    print(f"# host {platform.node()}: {os.cpu_count()} CPUs; loadavg before {load_before}, after "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"# {postgres_summary(args.pg)}; node: serve --no-web, 1 SCP process, embedded worker, "
          f"jobs.quiet_seconds={args.quiet}, other settings from conf/dicomnode.yaml")
    print(f"# series: synthetic CT {args.slices} x {args.size}x{args.size}; montage tiles=9; "
          f"{args.runs} run(s) per cell after one warm-up series; seconds")
    print()
    stage_names = list(next((c.stages for c in cells.values() if c.stages), {}))
    print("| series at once | overhead median | worst series (median of runs) | "
          + " | ".join(stage_names) + " | failed runs |")
    print("|---:|---:|---:|" + "---:|" * len(stage_names) + "---:|")
    for cell in cells.values():
        print(f"| {cell.concurrent} | {fmt(cell.medians)} | {fmt(cell.worst)} | "
              + " | ".join(fmt(cell.stages.get(n, [])) for n in stage_names) + f" | {cell.failures} |")
    print()
    first = cells.get(1)
    print(f"loop_overhead_s={fmt(first.medians) if first else 'nan'}")
    return 1 if any(c.failures for c in cells.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
