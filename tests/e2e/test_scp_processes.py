"""The SCP in several processes sharing one socket: a process killed mid-service is replaced,
and the port keeps answering meanwhile (the survivors take every association)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from dicomnode.net import scu, status
from tests.helpers import ServeProcess, get_port, serve_env, wait_for

AE_TITLE = "PROCS"


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (the SCP processes; spawn also starts a resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"spawn_main" in cmdline:
                found.append(int(entry))
    return sorted(found)


def test_a_killed_scp_process_is_replaced_and_the_port_keeps_answering(db_url: str, tmp_path: Path) -> None:
    port = get_port()
    env = serve_env(
        DB__URL=db_url, STORE__ROOT=tmp_path / "store", STORE__MIN_FREE_MB=0, NET__HOST="127.0.0.1",
        NET__PORT=port, NET__AE_TITLE=AE_TITLE, NET__PROCESSES=2, LOG__LEVEL="INFO",
    )
    peer = scu.Peer(AE_TITLE, "127.0.0.1", port)
    with ServeProcess(env=env, log_path=tmp_path / "serve.log", cwd=tmp_path, args=["--no-web", "--no-worker"]) as node:
        node.wait_ready(port=port, ae_title=AE_TITLE, timeout=60)
        # it listened only once both processes served (each logs it just after)
        assert wait_for(lambda: node.log().count("worker process serving") == 2, timeout=10), node.log_tail()
        assert "serving processes=2 serving=2" in node.log(), node.log_tail()
        children = _children(node.pid)
        assert len(children) == 2, children

        os.kill(children[0], signal.SIGKILL)
        # while the parent notices and a new process starts, every echo is answered by the survivor
        answered = []
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            answered.append(scu.echo(peer, timeout=5))
        assert answered and set(answered) == {status.SUCCESS}, answered

        assert wait_for(lambda: node.log().count("worker process serving") == 3, timeout=60), node.log_tail()
        assert "worker process died, restarting" in node.log()
        replaced = _children(node.pid)
        assert len(replaced) == 2 and children[0] not in replaced and children[1] in replaced, (children, replaced)
        assert [scu.echo(peer, timeout=5) for _ in range(4)] == [status.SUCCESS] * 4
