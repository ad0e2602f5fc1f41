"""Spread associations evenly over the SCP processes that share one listening socket.

Why not SO_REUSEPORT: the kernel picks a process per connection by a hash of the address pair,
so four associations land 2+2 on two processes only 3 times in 8; the rest go 3+1 or 4+0 and
one process, bound by its GIL, does most of the work while a core idles. Here the parent binds
one socket, every process polls it, and a process only accepts when it holds no more
associations than the least loaded serving one (counts in shared memory). A connection nobody
lighter takes within ``_DEFER_LIMIT`` is accepted anyway, so a stuck process cannot hold up
the queue.

The parent listens only once every process serves (or one died starting): until then a
sender is refused, rather than queued for the first process up, which would get them all.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import evt
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

# How long a busier process leaves a pending connection to a lighter one before taking it.
_DEFER_LIMIT = 0.05
# The nap of a process that leaves a connection to another (the select loop would spin).
_DEFER_NAP = 0.002
#: The count of a process that is not serving (starting, or dead and being restarted).
NOT_SERVING = -1


@dataclass
class SharedListener:
    """What the SCP processes share: the socket, associations per process, "listening" flag.

    Made by :meth:`bind` in the parent and handed to each process (multiprocessing pickles
    the socket as a duplicated descriptor).
    """

    socket: socket.socket
    #: multiprocessing.Array("i", processes, lock=False); NOT_SERVING or associations held
    active: Any
    #: multiprocessing.Event, set once the parent listens
    opened: Any

    @classmethod
    def bind(cls, host: str, port: int, *, processes: int, context: Any) -> SharedListener:
        """Bind (not yet listen) on host:port, so a port another program listens on fails here."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        # Non-blocking (shared by all processes): each wakes for a connection, all but one find it gone.
        sock.setblocking(False)
        active = context.Array("i", [NOT_SERVING] * processes, lock=False)
        return cls(socket=sock, active=active, opened=context.Event())

    def serving(self) -> int:
        """How many processes serve now."""
        return sum(1 for count in self.active if count != NOT_SERVING)

    def restarting(self, index: int) -> None:
        """Process ``index`` died: its associations died with it, and it is not serving."""
        self.active[index] = NOT_SERVING

    def open(self, *, backlog: int = 128) -> None:
        """Start listening: connections from now on go to the serving processes."""
        self.socket.listen(backlog)
        self.opened.set()

    def close(self) -> None:
        self.socket.close()


class _WholeAssociationHandler(RequestHandler):
    """pynetdicom's request handler, returning only when the association has ended.

    pynetdicom's own returns as soon as the association thread starts; the server counts an
    association as ended when the handler returns, so this one waits for the thread.
    """

    def handle(self) -> None:
        assoc = self._create_association()
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()
        assoc.join()


class SharedSocketServer(ThreadedAssociationServer):
    """pynetdicom's threaded server on an inherited listening socket, accepting when least loaded.

    Built by :func:`server_class`, which sets the class attributes below.
    """

    shared: SharedListener
    index: int
    # The handler threads wait on association threads, which pynetdicom makes daemons too.
    daemon_threads = True

    def server_bind(self) -> None:
        assert self.socket is not None
        self.RequestHandlerClass = _WholeAssociationHandler
        self.socket.close()  # the fresh socket socketserver made; ours is already bound
        self.socket = self.shared.socket
        self.server_address = self.socket.getsockname()
        self._deferred_since: float | None = None
        self._count_lock = threading.Lock()

    def server_activate(self) -> None:
        """Report this process serving, then wait until the parent listens."""
        self.shared.active[self.index] = 0
        self.shared.opened.wait()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        if self._defer():
            time.sleep(_DEFER_NAP)
            raise BlockingIOError("left to a less loaded SCP process")
        client, address = super().get_request()  # BlockingIOError when another process took it
        self._deferred_since = None
        client.setblocking(True)  # as pynetdicom's own accept leaves it
        return client, address

    def _defer(self) -> bool:
        active = self.shared.active
        if active[self.index] <= min(count for count in active if count != NOT_SERVING):
            return False
        now = time.monotonic()
        if self._deferred_since is None:
            self._deferred_since = now
        return now - self._deferred_since < _DEFER_LIMIT

    def service_actions(self) -> None:
        """Nothing per loop: see ``process_request``.

        pynetdicom's runs a full ``gc.collect()`` every 60 turns of the accept loop (20-70 ms
        holding the GIL here); a process leaving connections to another turns that loop every
        few milliseconds, and would stall its own associations with it.
        """

    def process_request(self, request: Any, client_address: Any) -> None:
        # pynetdicom's periodic collection, counted in accepted connections only.
        super().service_actions()
        # Counted here, in the accept thread, so the next accept decision already sees it.
        self._add(1)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._add(-1)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:  # runs as long as the association (see _WholeAssociationHandler)
            super().process_request_thread(request, client_address)
        finally:
            self._add(-1)

    def _add(self, delta: int) -> None:
        with self._count_lock:  # += on shared memory is a read and a write
            self.shared.active[self.index] += delta

    def server_close(self) -> None:
        # pynetdicom shuts the socket down, which would stop the other processes listening too.
        self.socket.close()


def server_class(shared: SharedListener, index: int) -> type[SharedSocketServer]:
    """A :class:`SharedSocketServer` for process ``index`` of those sharing ``shared``."""
    return type("SharedSocketServer", (SharedSocketServer,), {"shared": shared, "index": index})
