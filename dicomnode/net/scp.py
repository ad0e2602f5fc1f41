"""The DIMSE SCP: build the AE from settings and run it, in one or several processes.

Several processes share one listening socket and take turns by load (``balance``):
pynetdicom is CPU-bound per message, so parallel associations need parallel interpreters,
not threads.
"""

from __future__ import annotations

import logging
import threading
import time

from pydicom import config as pydicom_config
from pydicom.uid import RE_VALID_UID, UID
from pynetdicom import AE, _config, evt
from pynetdicom import association as pynetdicom_association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer

from dicomnode.config import NetSettings
from dicomnode.net import data_phase, handlers, qr
from dicomnode.store.ingest import Ingestor

logger = logging.getLogger(__name__)


def configure_pynetdicom(*, debug_dimse: bool = False, reactor_interval: float | None = None) -> None:
    """Set pynetdicom's and pydicom's process-wide switches; the only place that does.

    ``reactor_interval`` (``net.poll_interval``, for the SCP) replaces the fixed 1 ms idle
    sleep of each association's reactor thread, see :class:`_ReactorClock`.
    """
    # Accept every storage SOP class (known, unknown, private) in the transfer syntax the
    # requestor proposes first: for a sender that is the syntax its file is in, so the bytes
    # are stored as they were made, with no transcoding on either side.
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    # As an SCU, send Part 10 files' bytes as stored (C-MOVE/C-GET, dispatch, `send`):
    # without this pynetdicom decodes and re-encodes them.
    _config.STORE_SEND_CHUNKED_DATASET = True
    # Logging context (association, UIDs) must follow the handler threads.
    _config.PASS_CONTEXTVARS = True
    # Log the ErrorComment of statuses we return; pynetdicom's own chatter stays quiet.
    _config.LOG_RESPONSE_IDENTIFIERS = debug_dimse
    _config.LOG_HANDLER_LEVEL = "none"
    # Values are stored as received; value validation on read would only warn on scanner quirks.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    if reactor_interval is not None:
        pynetdicom_association.time = _ReactorClock(reactor_interval)  # type: ignore[attr-defined]
    AssociationSocket.recv = _recv_into_one_buffer  # type: ignore[method-assign]
    UID.is_valid = property(_uid_is_valid)  # type: ignore[method-assign,assignment]
    data_phase.install()  # inert unless an SCP association was given a data phase


def _uid_is_valid(self: UID) -> bool:
    """pydicom's ``UID.is_valid``, matching with the compiled pattern's own method.

    pydicom calls ``re.match(compiled, uid)``: ``re`` then hashes the pattern for a cache it
    can never hit, and raises and catches a KeyError, on every call. Decoding one
    A-ASSOCIATE-RQ of DCMTK storescu's size (~120 presentation contexts) checks each UID a
    few times: the acceptor's CPU per such association went from ~20 to ~17 ms with this.
    """
    return len(self) <= 64 and RE_VALID_UID.match(self) is not None


def _recv_into_one_buffer(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """``AssociationSocket.recv`` reading into one buffer as fast as the kernel hands data over.

    pynetdicom's own reads 4 kB per ``socket.recv`` and appends each piece to a bytearray:
    a 256 kB PDU took 64 calls. Same contract: ``nr_bytes`` bytes, or fewer when the peer
    closed the connection; a timeout raises as before.
    """
    buffer = bytearray(nr_bytes)
    read = 0
    with memoryview(buffer) as view:
        while read < nr_bytes:
            got = self.socket.recv_into(view[read:])  # type: ignore[union-attr]
            if not got:
                break
            read += got
    if read < nr_bytes:
        del buffer[read:]
    return buffer


class _ReactorClock:
    """The ``time`` module as pynetdicom's association module sees it, with a shorter reactor nap.

    Each association's reactor thread sleeps a fixed 1 ms before it looks for the next decoded
    DIMSE message, so every C-STORE waits ~0.5-1.1 ms before its handler runs (about a tenth
    of a CT instance's time over one association). Only that exact 1 ms sleep is shortened;
    every other use of ``time`` in the module is the real one. The price is more wake-ups of
    an idle association's reactor, as for the DUL's ``net.poll_interval``.

    An association served by ``net.data_phase`` leaves its reactor only the release, abort
    and timeout checks: it naps until the data phase hands pynetdicom something (see
    ``StorageDataPhase.wake_reactor``), or ``_DATA_PHASE_NAP`` at most. Napping 2 ms instead
    cost a CT instance ~0.4 ms of GIL time over one association (py-spy --gil, 2 cores).
    """

    _REACTOR_NAP = 0.001
    _DATA_PHASE_NAP = 0.05

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def sleep(self, seconds: float) -> None:
        if seconds != self._REACTOR_NAP:
            time.sleep(seconds)
            return
        # The reactor runs in the Association thread itself.
        phase = getattr(threading.current_thread(), "_dicomnode_data_phase", None)
        if phase is not None and phase.eligible:
            phase.reactor_nap(self._DATA_PHASE_NAP)
        else:
            time.sleep(self.interval)

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def build_ae(settings: NetSettings) -> AE:
    """An AE that accepts echo and every storage SOP class (see ``configure_pynetdicom``)."""
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu
    ae.maximum_associations = settings.max_associations
    ae.network_timeout = settings.network_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.acse_timeout = 30
    ae.implementation_class_uid = handlers.IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = handlers.IMPLEMENTATION_VERSION_NAME
    ae.add_supported_context(Verification)
    # Storage is negotiated by pynetdicom's unrestricted storage service (see
    # configure_pynetdicom): every storage, private or unknown abstract syntax is accepted in
    # the first transfer syntax proposed, with both roles for a C-GET requestor's role
    # selection, without consulting this list. Listing the ~170 storage classes here anyway
    # cost a deepcopy of 6,600 transfer syntax UIDs per association (about 50 ms).
    for sop_class in qr.SOP_CLASSES:
        ae.add_supported_context(sop_class)
    return ae


def event_handlers(
    *, settings: NetSettings, ingestor: Ingestor, log: handlers.AssociationLog, archive: qr.Archive | None = None
) -> list[tuple]:  # type: ignore[type-arg]
    """The (event, handler, args) bindings of our SCP; C-FIND/C-MOVE/C-GET when given an ``archive``."""
    return [
        (evt.EVT_REQUESTED, handlers.handle_requested, [settings, log]),
        *([(evt.EVT_REQUESTED, data_phase.enable, [ingestor, settings.max_pdu])] if settings.direct_store else []),
        (evt.EVT_REJECTED, handlers.handle_rejected, [log]),
        (evt.EVT_ACCEPTED, handlers.handle_accepted, [log, settings.poll_interval]),
        (evt.EVT_RELEASED, handlers.handle_closed, [log]),
        (evt.EVT_ABORTED, handlers.handle_closed, [log]),
        (evt.EVT_DIMSE_RECV, handlers.handle_dimse_recv),
        (evt.EVT_C_ECHO, handlers.handle_echo),
        (evt.EVT_C_STORE, handlers.handle_store, [ingestor]),
        *(qr.event_handlers(archive) if archive is not None else []),
    ]


def start_scp(
    *,
    settings: NetSettings,
    ingestor: Ingestor,
    log: handlers.AssociationLog,
    archive: qr.Archive | None = None,
    server_class: type[ThreadedAssociationServer] = ThreadedAssociationServer,
) -> ThreadedAssociationServer:
    """Start serving in a background thread; returns the server (``.shutdown()`` stops it).

    ``server_class`` is :func:`balance.server_class`'s for one of several processes sharing a port.
    """
    ae = build_ae(settings)
    server = ae.make_server(
        (settings.host, settings.port),
        evt_handlers=event_handlers(settings=settings, ingestor=ingestor, log=log, archive=archive),
        server_class=server_class,
    )
    ae._servers.append(server)  # so ae.shutdown() stops it too
    thread = threading.Thread(target=server.serve_forever, name="dimse-scp", daemon=True)
    thread.start()
    logger.info(
        "DIMSE SCP listening",
        extra={
            "ae_title": settings.ae_title,
            "address": f"{settings.host}:{settings.port}",
            "max_pdu": settings.max_pdu,
        },
    )
    return server
