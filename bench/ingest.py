"""C-STORE ingest bench: our node against DCMTK storescp and Orthanc, same data, same sender.

Sends a synthetic 300-slice 512x512 CT series and a 3x100-slice 256x256 MR study with DCMTK
storescu (TCP_NODELAY=1) over 1 association and over 4 parallel associations (4 storescu
processes, a quarter of the files each) to each receiver, started fresh for every run. A run
is timed from the first sender's start to the last sender's exit; it counts only when every
sender exited 0, logged no error, and the receiver then holds exactly the instances sent
(for our node: rows in the index). Runs are interleaved across receivers; the table shows
medians. The last line printed is

  ratio_vs_storescp_1assoc=R1 ratio_vs_orthanc_1assoc=R2 ratio_vs_storescp_4assoc=R3 ratio_vs_orthanc_4assoc=R4

(CT series, instances/s, ours over theirs; nan where a peer is not installed or failed).

  .venv/bin/python bench/ingest.py              # full: 3 runs, 3-5 minutes on 2 cores
  .venv/bin/python bench/ingest.py --quick      # smoke check: 60 CT slices, 3x20 MR, 1 run
  .venv/bin/python bench/ingest.py --processes 1,2 --receivers dicomnode,storescp
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from receivers import (
    CALLING_AE_TITLE,
    ORTHANC,
    STORESCP,
    DicomnodeReceiver,
    OrthancReceiver,
    Receiver,
    StorescpReceiver,
    dcmtk_env,
    postgres_summary,
)
from report import Cell, RunResult, print_table, ratio_line
from series import SeriesFiles, SeriesSpec, materialise

STORESCU = Path("/usr/bin/storescu")
REPO = Path(__file__).resolve().parents[1]
OURS = "dicomnode"
PEERS = ("storescp", "orthanc")
ASSOCIATIONS = (1, 4)


def progress(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def split(files: tuple[Path, ...], parts: int) -> list[list[Path]]:
    """``parts`` contiguous slices of ``files``, sizes differing by at most one."""
    size, extra = divmod(len(files), parts)
    out, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        out.append(list(files[start:end]))
        start = end
    return [chunk for chunk in out if chunk]


def send(receiver: Receiver, files: tuple[Path, ...], associations: int, *, logdir: Path,
         timeout: float) -> tuple[float, str]:
    """Run the storescu senders at once; return (wall seconds, problem or "")."""
    commands = [
        [str(STORESCU), "-aet", CALLING_AE_TITLE, "-aec", receiver.ae_title, "127.0.0.1", str(receiver.port),
         *map(str, chunk)]
        for chunk in split(files, associations)
    ]
    env = dcmtk_env()
    logs = [logdir / f"storescu-{index}.log" for index in range(len(commands))]
    processes: list[subprocess.Popen[bytes]] = []
    timed_out = threading.Event()

    def kill_running() -> None:
        for process in list(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)

    def on_timeout() -> None:
        timed_out.set()
        kill_running()

    # A watchdog, so the clock stops at a plain blocking wait: Popen.wait(timeout=...) polls
    # with naps of up to 50 ms, which quantised every run's wall time by as much.
    watchdog = threading.Timer(timeout, on_timeout)
    start = time.perf_counter()
    watchdog.start()
    try:
        for command, log_path in zip(commands, logs, strict=True):
            with open(log_path, "wb") as log:
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                  start_new_session=True))
        codes = [process.wait() for process in processes]
        wall = time.perf_counter() - start
    finally:
        watchdog.cancel()
        kill_running()  # after an exception while starting them
        for process in processes:
            process.wait()
    if timed_out.is_set():
        return wall, f"senders still running after {timeout:.0f} s (killed)"
    problems = [f"storescu #{i} exited {code}" for i, code in enumerate(codes) if code != 0]
    for index, log_path in enumerate(logs):
        errors = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith(("E:", "F:"))]
        if errors:
            problems.append(f"storescu #{index} logged {len(errors)} error line(s), first: {errors[0]}")
    return wall, "; ".join(problems)


def one_run(cell: Cell, data: SeriesFiles, receiver: Receiver, *, logdir: Path, timeout: float) -> RunResult:
    """Start ``receiver``, send ``data`` to it, verify the stored count, stop it."""
    with receiver:
        os.sync()  # the previous run's dirty pages must not be flushed on this run's clock
        time.sleep(0.3)
        cpu_before = receiver.cpu_seconds()
        log_offset = receiver.log_size()
        database_before = receiver.database_cpu_seconds()
        wall, problem = send(receiver, data.files, cell.associations, logdir=logdir, timeout=timeout)
        time.sleep(0.2)  # let a forking receiver reap its children before reading its CPU time
        cpu = receiver.cpu_seconds() - cpu_before
        database_after = receiver.database_cpu_seconds()
        database_cpu = (sum(t - database_before.get(pid, 0.0) for pid, t in database_after.items())
                        if database_after else None)
        try:
            stored: int | None = receiver.stored_instances()
        except Exception as exc:  # any failure to count is a failed run, reported below
            stored = None
            problem = "; ".join(filter(None, [problem, f"cannot count stored instances: {exc}"]))
        if stored is not None and stored != cell.instances:
            problem = "; ".join(filter(None, [problem, f"receiver holds {stored} of {cell.instances} instances"]))
        log_lines = receiver.log_since(log_offset)
        if log_lines:  # our node logs at WARNING: anything it says during a run is worth a look
            progress(f"{receiver.label} logged {len(log_lines)} line(s) during the run; last: {log_lines[-1][:300]}")
        if problem:
            receiver.keep = True
            problem += f" (receiver dir {receiver.workdir}, sender logs {logdir})"
            tail = receiver.log_tail()
            if tail:
                problem += "\n  receiver log tail:\n    " + tail.replace("\n", "\n    ")
    return RunResult(wall_s=wall, ok=not problem, stored=stored, receiver_cpu_s=cpu, database_cpu_s=database_cpu,
                     problem=problem)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/ingest.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per cell; the median is reported (default 3, "
                        "--quick 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 60-slice CT, 3x20-slice MR, 1 run (the ratios are not meaningful)")
    parser.add_argument("--processes", default="0",
                        help="our node's SCP processes (DICOMNODE_NET__PROCESSES; 0 = one per core, the node's "
                        "default). A comma list benches each; the ratios use the first (default 0)")
    parser.add_argument("--receivers", default="dicomnode,storescp,orthanc",
                        help="comma list of receivers to run, from dicomnode, storescp, orthanc (default all; "
                        "a peer that is not installed is skipped)")
    parser.add_argument("--datasets", default="CT,MR", help="comma list from CT, MR (default both)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server URL; the bench creates and drops one database per run of our node "
                        "(default %(default)s)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs `-m dicomnode` (default: this one)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dicomnode-bench"),
                        help="generated data (cached between invocations) and per-run receiver dirs; put it on "
                        "the disk you want to measure (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic data (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="per-run sender time limit, s (default 600)")
    parser.add_argument("--json", type=Path, help="also write every run and the medians here")
    args = parser.parse_args(argv)
    if os.sep in args.python:  # it runs from the repository root; keep a venv's symlink unresolved
        args.python = os.path.abspath(args.python)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    try:
        args.processes = [int(p) for p in args.processes.split(",")]
    except ValueError:
        parser.error(f"--processes: comma list of integers expected, got {args.processes!r}")
    args.receivers = [r.strip() for r in args.receivers.split(",") if r.strip()]
    unknown = set(args.receivers) - {OURS, *PEERS}
    if unknown:
        parser.error(f"--receivers: unknown {sorted(unknown)}; choose from {OURS}, {', '.join(PEERS)}")
    args.datasets = [d.strip().upper() for d in args.datasets.split(",") if d.strip()]
    if not set(args.datasets) <= {"CT", "MR"} or not args.datasets:
        parser.error("--datasets: choose from CT, MR")
    return args


def dataset_specs(args: argparse.Namespace) -> list[SeriesSpec]:
    ct_slices, mr_slices = (60, 20) if args.quick else (300, 100)
    specs = {
        "CT": SeriesSpec(name="ct", modality="CT", slices=ct_slices, rows=512, columns=512, seed=args.seed),
        "MR": SeriesSpec(name="mr", modality="MR", slices=mr_slices, rows=256, columns=256, series_count=3,
                         seed=args.seed),
    }
    return [specs[name] for name in args.datasets]


def receiver_labels(args: argparse.Namespace) -> dict[str, tuple[str, int | None]]:
    """label -> (kind, processes) for every receiver that will run, ours first."""
    labels: dict[str, tuple[str, int | None]] = {}
    if OURS in args.receivers:
        for processes in args.processes:
            label = OURS if len(args.processes) == 1 else f"{OURS} p={processes}"
            labels[label] = (OURS, processes)
    programs = {"storescp": STORESCP, "orthanc": ORTHANC}
    for peer in PEERS:
        if peer not in args.receivers:
            continue
        if os.access(programs[peer], os.X_OK):
            labels[peer] = (peer, None)
        else:
            progress(f"{peer}: {programs[peer]} is not installed; skipped (its ratios print nan)")
    return labels


def make_receiver(kind: str, processes: int | None, label: str, args: argparse.Namespace, base: Path) -> Receiver:
    if kind == OURS:
        return DicomnodeReceiver(base_dir=base, python=args.python, repo=REPO, server_url=args.pg,
                                 processes=processes or 0, label=label)
    if kind == "storescp":
        return StorescpReceiver(base_dir=base)
    return OrthancReceiver(base_dir=base)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def context_lines(args: argparse.Namespace, load_before: str) -> list[str]:
    def version(command: list[str]) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
        except OSError:
            return "not installed"
        return out.strip().splitlines()[0] if out.strip() else "?"

    return [
        f"host {platform.node()}: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
        f"loadavg (1/5/15 min) before {load_before}, after {loadavg()}",
        f"dicomnode {version([args.python, '-m', 'dicomnode', '--version'])} "
        f"(processes {','.join(map(str, args.processes))}); "
        f"{version([str(STORESCP), '--version']).strip('$ ').replace('dcmtk: ', 'DCMTK ')}; "
        f"Orthanc {version([str(ORTHANC), '--version']).removeprefix(str(ORTHANC)).strip()}",
        f"index server for dicomnode: {postgres_summary(args.pg)}",
        f"sender: {STORESCU} with TCP_NODELAY=1; {args.runs} run(s) per cell, median; workdir {args.workdir}",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = loadavg()
    for program in (STORESCU, Path("/usr/bin/echoscu")):
        if not os.access(program, os.X_OK):
            progress(f"{program} is needed as the sender (Debian package dcmtk)")
            return 2
    labels = receiver_labels(args)
    if not labels:
        progress("no receiver to run")
        return 2
    ours_label = next((label for label, (kind, _) in labels.items() if kind == OURS), None)

    data_dir = args.workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    datasets: list[SeriesFiles] = []
    for spec in dataset_specs(args):
        started = time.perf_counter()
        progress(f"data {spec.key}: generating or reusing")
        datasets.append(materialise(spec, data_dir))
        progress(f"data {spec.name}: {len(datasets[-1].files)} files, {datasets[-1].total_bytes / 1e6:.1f} MB "
                 f"({time.perf_counter() - started:.1f} s)")

    runs_dir = args.workdir / "runs"
    runs_dir.mkdir(exist_ok=True)
    cells: dict[tuple[str, int, str], Cell] = {}
    for data in datasets:
        for associations in ASSOCIATIONS:
            for label in labels:
                cells[(data.spec.modality, associations, label)] = Cell(
                    dataset=data.spec.modality, associations=associations, receiver=label,
                    instances=len(data.files), megabytes=data.total_bytes / 1e6)

    order = list(labels)
    failures = 0
    for run in range(args.runs):
        rotated = order[run % len(order):] + order[: run % len(order)]  # no receiver always goes first
        for data in datasets:
            for associations in ASSOCIATIONS:
                for label in rotated:
                    kind, processes = labels[label]
                    cell = cells[(data.spec.modality, associations, label)]
                    logdir = runs_dir / f"senders-{os.getpid()}-r{run + 1}-{data.spec.name}-{associations}-{kind}"
                    logdir.mkdir(exist_ok=True)
                    try:
                        receiver = make_receiver(kind, processes, label, args, runs_dir)
                        result = one_run(cell, data, receiver, logdir=logdir, timeout=args.timeout)
                    except Exception as exc:  # one broken receiver must not end the whole bench
                        result = RunResult(wall_s=math.nan, ok=False, stored=None, receiver_cpu_s=None,
                                           problem=f"{label} did not start or stop cleanly: {exc}")
                    cell.runs.append(result)
                    if result.ok:
                        for log in logdir.iterdir():
                            log.unlink()
                        logdir.rmdir()
                    else:
                        failures += 1
                    status = "ok" if result.ok else f"FAILED: {result.problem}"
                    progress(f"run {run + 1}/{args.runs} {data.spec.modality} x{associations} {label:<16} "
                             f"{result.wall_s:7.2f} s  {len(data.files) / result.wall_s:6.0f} inst/s  {status}")

    if args.json:
        rows = [{**{k: v for k, v in asdict(c).items() if k != "runs"}, "runs": [asdict(r) for r in c.runs],
                 "median_s": c.median_s, "instances_per_s": c.instances_per_s, "MB_per_s": c.megabytes_per_s}
                for c in cells.values()]
        args.json.write_text(json.dumps(rows, indent=1))
    for line in context_lines(args, load_before):
        print(f"# {line}")
    print()
    print_table(cells, ours_label)
    if failures:
        print(f"\n{failures} run(s) failed; see stderr for the receiver and sender logs kept.")
    print()
    if args.quick:
        print("(--quick: small data and one run; the ratios below are a smoke check, not a measurement)")
    print(ratio_line(cells, dataset="CT", ours_label=ours_label, peers=PEERS, associations_counts=ASSOCIATIONS))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
