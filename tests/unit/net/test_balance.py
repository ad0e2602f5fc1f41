"""Associations spread by load over SCP servers sharing one listening socket.

The node runs one such server per process; here two run as threads of this process on the
same socket and the same shared counts, which is the code path the processes take.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicomnode.net import balance


@pytest.fixture
def bound() -> Iterator[socket.socket]:
    """A bound port, for SharedListener.bind to be refused on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def _shared(processes: int) -> balance.SharedListener:
    return balance.SharedListener.bind("127.0.0.1", 0, processes=processes, context=multiprocessing.get_context())


def _start(shared: balance.SharedListener, index: int) -> ThreadedAssociationServer:
    """Process ``index``'s server, as a thread here (its own descriptor, as a child has)."""
    own = dataclasses.replace(shared, socket=shared.socket.dup())
    ae = AE(ae_title="BALANCE")
    ae.add_supported_context(Verification)
    server = ae.make_server(("127.0.0.1", 0), server_class=balance.server_class(own, index))
    ae._servers.append(server)  # as start_scp does, so server.shutdown() can drop it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _start_in_background(shared: balance.SharedListener, index: int) -> list[ThreadedAssociationServer]:
    """Build the server in a thread: its constructor waits until the parent listens."""
    started: list[ThreadedAssociationServer] = []
    threading.Thread(target=lambda: started.append(_start(shared, index)), daemon=True).start()
    return started


def _associate(port: int, count: int) -> list[Association]:
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(Verification)
    associations = [ae.associate("127.0.0.1", port, ae_title="BALANCE") for _ in range(count)]
    assert all(a.is_established for a in associations)
    return associations


def _wait_for(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


@contextmanager
def _serving(
    processes: int, *, started: int | None = None
) -> Iterator[tuple[balance.SharedListener, list[ThreadedAssociationServer], int]]:
    """``processes`` slots, the first ``started`` (default all) serving and the socket open:
    (shared, their servers, port). Servers still running are shut down after."""
    count = processes if started is None else started
    shared = _shared(processes)
    pending = [_start_in_background(shared, index) for index in range(count)]
    _wait_for(lambda: shared.serving() == count)
    shared.open()
    _wait_for(lambda: all(pending))
    servers = [started_server[0] for started_server in pending]
    try:
        yield shared, servers, shared.socket.getsockname()[1]
    finally:
        for server in servers:
            if server in server.ae._servers:  # a test may have shut it down itself
                server.shutdown()
        shared.close()


def test_nobody_is_connected_until_every_process_serves() -> None:
    shared = _shared(2)
    port = shared.socket.getsockname()[1]
    first = _start_in_background(shared, 0)
    _wait_for(lambda: shared.serving() == 1)
    assert list(shared.active) == [0, balance.NOT_SERVING]
    with pytest.raises(ConnectionRefusedError):  # bound, not listening: refused, not queued
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert not first  # its constructor waits for the parent
    second = _start_in_background(shared, 1)
    _wait_for(lambda: shared.serving() == 2)
    shared.open()
    _wait_for(lambda: bool(first and second))
    try:
        (association,) = _associate(port, 1)
        assert association.send_c_echo().Status == 0x0000
        association.release()
    finally:
        for server in first + second:
            server.shutdown()
        shared.close()


def test_associations_split_evenly_and_counts_return_to_zero() -> None:
    with _serving(2) as (shared, servers, port):
        associations = _associate(port, 4)
        _wait_for(lambda: sum(shared.active) == 4)
        assert list(shared.active) == [2, 2]
        # pynetdicom's own view (acceptor threads per server) agrees with the shared counts
        assert [len(server.active_associations) for server in servers] == [2, 2]
        for association in associations:
            assert association.send_c_echo().Status == 0x0000
            association.release()
        _wait_for(lambda: sum(shared.active) == 0)
        assert list(shared.active) == [0, 0]


def test_an_aborted_association_is_counted_out() -> None:
    with _serving(2) as (shared, _servers, port):
        (association,) = _associate(port, 1)
        _wait_for(lambda: sum(shared.active) == 1)
        association.abort()
        _wait_for(lambda: sum(shared.active) == 0)
        assert list(shared.active) == [0, 0]


def test_a_process_being_restarted_is_not_waited_for() -> None:
    # index 2 died and is restarting: the two serving take every connection without deferring
    with _serving(3, started=2) as (shared, _servers, port):
        started = time.monotonic()
        associations = _associate(port, 4)
        elapsed = time.monotonic() - started
        _wait_for(lambda: sum(c for c in shared.active if c > 0) == 4)
        assert list(shared.active) == [2, 2, balance.NOT_SERVING]
        assert elapsed < 4 * balance._DEFER_LIMIT  # no connection waited out a deferral
        for association in associations:
            association.release()


def test_one_server_closing_leaves_the_shared_socket_listening() -> None:
    with _serving(2) as (shared, (first, _second), port):
        first.shutdown()  # pynetdicom's own server_close would shut the socket down for everyone
        shared.restarting(0)
        (association,) = _associate(port, 1)
        assert association.send_c_echo().Status == 0x0000
        association.release()
        _wait_for(lambda: shared.active[1] == 0)
        assert list(shared.active) == [balance.NOT_SERVING, 0]


def test_a_port_in_use_fails_at_bind(bound: socket.socket) -> None:
    bound.listen()
    with pytest.raises(OSError):
        balance.SharedListener.bind("127.0.0.1", bound.getsockname()[1], processes=2, context=multiprocessing)
