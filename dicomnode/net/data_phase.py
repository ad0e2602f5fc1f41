"""The data phase of a storage association, run in its network thread without pynetdicom's hops.

pynetdicom moves every C-STORE through two polling threads: the DUL thread reads and decodes
each PDU and queues it, the association's reactor thread wakes (every ``net.poll_interval``)
to assemble and serve the message, queues the response, and the DUL thread wakes again to
send it. Measured on the 300-slice CT bench (2 cores, one association), the hops and the
generic command encoding took about 1.5 ms of a 7.8 ms instance: the handler ran 64% of the
time. Here the DUL thread itself reads each P-DATA-TF PDU straight into the Part 10 buffer,
files the instance and writes the C-STORE-RSP to the socket: one thread, blocking reads, no
queues.

Scope, deliberately small: pynetdicom still negotiates the association, and everything that
is not P-DATA (A-RELEASE, A-ABORT, a closed socket) goes back through its state machine, so
its events (EVT_RELEASED/EVT_ABORTED, the association log) fire as before. Only associations
whose accepted contexts are all storage or verification take this path; associations that
carry query/retrieve stay on pynetdicom's. A message other than C-STORE-RQ or C-ECHO-RQ is
handed to pynetdicom's DIMSE layer as it arrived, and its reactor serves it. A malformed PDU
or command aborts the association (PS3.8 A-P-ABORT), as pynetdicom would.

PS3.8 9.3.5 (P-DATA-TF), E.2 (message control header); PS3.7 6.3.1, 9.3.1 (C-STORE), 9.3.5
(C-ECHO).
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA

from dicomnode.net import handlers, qr, wire
from dicomnode.store.ingest import Ingestor

logger = logging.getLogger(__name__)

_P_DATA_TF = 0x04
_PDU_HEADER = struct.Struct(">BBI")
_PDV_HEADER = struct.Struct(">IBB")
#: Largest PDU accepted when ``net.max_pdu`` is 0 (unlimited): a sanity bound on allocation.
_UNLIMITED_PDU = 64 * 2**20
#: How often a waiting data phase looks at the DUL's flags and outgoing queue, seconds.
_CHECK_INTERVAL = 0.05
#: How long to wait for pynetdicom to finish EVT_ACCEPTED before the first message, seconds.
_ESTABLISH_WAIT = 10.0
_QR_SOP_CLASSES = frozenset(str(sop_class) for sop_class in qr.SOP_CLASSES)

_original_is_transport_event: Callable[[DULServiceProvider], bool] = DULServiceProvider._is_transport_event


class ProtocolError(Exception):
    """The peer sent bytes that break PS3.8/PS3.7; the association is aborted."""


class StorageDataPhase:
    """Receives, files and answers the DIMSE messages of one storage association.

    Created at EVT_REQUESTED (before the A-ASSOCIATE-AC leaves, so no P-DATA can slip past
    it) and run by the association's DUL thread from its first P-DATA-TF PDU on.
    """

    def __init__(self, assoc: Any, *, ingestor: Ingestor, max_pdu: int) -> None:
        self.assoc = assoc
        self.ingestor = ingestor
        self.max_pdu = max_pdu or _UNLIMITED_PDU
        self.eligible: bool | None = None  # decided once, when the contexts are known
        self._transfer_syntaxes: dict[int, str] = {}
        self._reactor_wake = threading.Event()
        self._reset()

    def reactor_nap(self, seconds: float) -> None:
        """The association's reactor sleeps here: until woken, ``seconds`` at most."""
        if self._reactor_wake.wait(seconds):
            # Cleared after waking: whatever set it was queued before, so the reactor's
            # checks that follow see it.
            self._reactor_wake.clear()

    def wake_reactor(self) -> None:
        """pynetdicom has something for the reactor (a release, an abort, a message to serve)."""
        self._reactor_wake.set()

    def _reset(self) -> None:
        self._context_id: int | None = None
        self._command = bytearray()
        self._elements: dict[int, bytes] | None = None
        self._dataset: bytearray | None = None  # Part 10 prefix + dataset fragments (C-STORE)
        self._prefix_length = 0

    # -- eligibility --------------------------------------------------------------------

    def _decide(self, dul: DULServiceProvider) -> bool:
        contexts = self.assoc.accepted_contexts
        if any(str(context.abstract_syntax) in _QR_SOP_CLASSES for context in contexts):
            return False
        if not self._wait_established(dul):
            return False
        self._transfer_syntaxes = {int(c.context_id): str(c.transfer_syntax[0]) for c in contexts}
        message = self.assoc.dimse.message
        # A message pynetdicom began assembling stays with pynetdicom.
        return message is None or (message.encoded_command_set.tell() == 0 and message.data_set.tell() == 0)

    def _wait_established(self, dul: DULServiceProvider) -> bool:
        """EVT_ACCEPTED (our association log row) runs before the first instance is filed."""
        deadline = time.monotonic() + _ESTABLISH_WAIT
        while not self.assoc.is_established:
            if dul._kill_thread or self.assoc.is_aborted or time.monotonic() > deadline:
                return False
            time.sleep(0.0001)
        return True

    # -- the loop -----------------------------------------------------------------------

    def run(self, dul: DULServiceProvider) -> bool:
        """Serve P-DATA until something needs pynetdicom's loop.

        Returns True when the next PDU is not P-DATA-TF (or the peer closed): the caller
        lets pynetdicom read it. False when pynetdicom must look at its own queues first
        (something to send, the thread told to stop, the idle timer expired, an abort).
        """
        sock = dul.socket.socket  # type: ignore[union-attr]
        while True:
            if dul._kill_thread or not dul.to_provider_queue.empty() or dul._idle_timer.expired:
                return False
            readable, _, _ = select.select([sock], [], [], _CHECK_INTERVAL)
            if not readable:
                continue
            try:
                head = sock.recv(1, socket.MSG_PEEK)
            except OSError:
                return True  # pynetdicom's read reports it and closes
            if not head or head[0] != _P_DATA_TF:
                return True
            try:
                self._read_pdu(dul, sock)
            except ProtocolError as exc:
                logger.error("association aborted: invalid P-DATA", extra={"reason": str(exc)})
                dul.event_queue.put("Evt19")  # invalid PDU: pynetdicom sends A-ABORT (AA-8)
                return False
            except (OSError, TimeoutError):
                logger.warning("connection lost during P-DATA", exc_info=True)
                dul.event_queue.put("Evt17")  # transport closed (AA-4)
                return False

    def _read_pdu(self, dul: DULServiceProvider, sock: socket.socket) -> None:
        header = _recv_exactly(sock, _PDU_HEADER.size)
        _type, _reserved, length = _PDU_HEADER.unpack(header)
        if length > self.max_pdu + _PDU_HEADER.size:
            raise ProtocolError(f"P-DATA-TF of {length} bytes exceeds net.max_pdu {self.max_pdu}")
        body = memoryview(_recv_exactly(sock, length))
        dul._idle_timer.restart()
        offset = 0
        while offset < length:
            if length - offset < _PDV_HEADER.size:
                raise ProtocolError("P-DATA-TF ends inside a presentation data value header")
            item_length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
            start, end = offset + _PDV_HEADER.size, offset + 4 + item_length
            if item_length < 2 or end > length:
                raise ProtocolError(f"presentation data value of {item_length} bytes does not fit its PDU")
            self._fragment(dul, context_id, control, body[start:end])
            offset = end

    def _fragment(self, dul: DULServiceProvider, context_id: int, control: int, value: memoryview) -> None:
        if context_id not in self._transfer_syntaxes:
            raise ProtocolError(f"presentation context {context_id} was not accepted")
        if self._context_id is None:
            self._context_id = context_id
        elif context_id != self._context_id:
            raise ProtocolError(f"message fragments on contexts {self._context_id} and {context_id}")
        is_command, is_last = bool(control & 0x01), bool(control & 0x02)
        if is_command:
            if self._elements is not None:
                raise ProtocolError("command fragment after the last command fragment")
            self._command += value
            if is_last:
                self._command_complete(dul)
            return
        if self._elements is None or self._dataset is None:
            raise ProtocolError("data set fragment before the command, or after a command without one")
        self._dataset += value
        if is_last:
            self._message_complete(dul)

    def _command_complete(self, dul: DULServiceProvider) -> None:
        try:
            elements = wire.decode_command(self._command)
        except wire.MalformedCommand as exc:
            raise ProtocolError(str(exc)) from exc
        self._elements = elements
        if wire.command_uint(elements, wire.COMMAND_DATA_SET_TYPE) == wire.NO_DATASET:
            self._message_complete(dul)
            return
        assert self._context_id is not None
        if wire.command_uint(elements, wire.COMMAND_FIELD) == wire.C_STORE_RQ:
            # The file meta goes first, so the fragments land where the file wants them.
            prefix = handlers.file_meta_prefix(
                sop_class_uid=wire.command_text(elements, wire.AFFECTED_SOP_CLASS_UID),
                sop_instance_uid=wire.command_text(elements, wire.AFFECTED_SOP_INSTANCE_UID),
                transfer_syntax=self._transfer_syntaxes[self._context_id],
                calling_ae_title=self.assoc.requestor.ae_title.strip(),
            )
            self._dataset, self._prefix_length = bytearray(prefix), len(prefix)
        else:
            self._dataset, self._prefix_length = bytearray(), 0

    def _message_complete(self, dul: DULServiceProvider) -> None:
        elements, context_id = self._elements, self._context_id
        assert elements is not None and context_id is not None
        command_field = wire.command_uint(elements, wire.COMMAND_FIELD)
        message_id = wire.command_uint(elements, wire.MESSAGE_ID)
        try:
            if command_field == wire.C_STORE_RQ and message_id is not None and self._dataset is not None:
                dul.socket.send(self._store(context_id, elements, message_id, self._dataset))  # type: ignore[union-attr]
            elif command_field == wire.C_ECHO_RQ and message_id is not None:
                dul.socket.send(  # type: ignore[union-attr]
                    wire.echo_response(
                        context_id=context_id,
                        sop_class_uid=wire.command_text(elements, wire.AFFECTED_SOP_CLASS_UID),
                        message_id=message_id,
                    )
                )
            else:
                self._to_pynetdicom(context_id)
        finally:
            self._reset()

    def _store(self, context_id: int, elements: dict[int, bytes], message_id: int, part10: bytearray) -> bytes:
        sop_class_uid = wire.command_text(elements, wire.AFFECTED_SOP_CLASS_UID)
        sop_instance_uid = wire.command_text(elements, wire.AFFECTED_SOP_INSTANCE_UID)
        calling, host, _port = handlers.peer_of(self.assoc)
        result = handlers.store_received(
            self.ingestor,
            handlers.association_stats(self.assoc),
            calling=calling,
            host=host,
            sop_instance_uid=sop_instance_uid,
            part10=lambda: bytes(part10),
        )
        code, comment = (result, "") if isinstance(result, int) else (int(result.Status), str(result.ErrorComment))
        return wire.store_response(
            context_id=context_id, sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid,
            message_id=message_id, status=code, error_comment=comment,
        )

    def _to_pynetdicom(self, context_id: int) -> None:
        """Give a message we do not serve to pynetdicom's DIMSE layer, fragments as received."""
        primitive = P_DATA()
        primitive.presentation_data_value_list = [(context_id, b"\x03" + bytes(self._command))]
        if self._dataset is not None:
            primitive.presentation_data_value_list.append(
                (context_id, b"\x02" + bytes(self._dataset[self._prefix_length:]))
            )
        self.assoc.dimse.receive_primitive(primitive)
        self.wake_reactor()


def _recv_exactly(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    read = 0
    with memoryview(buffer) as view:
        while read < size:
            got = sock.recv_into(view[read:])
            if not got:
                raise ConnectionResetError(f"peer closed the connection {size - read} bytes short of a PDU")
            read += got
    return buffer


def _is_transport_event(dul: DULServiceProvider) -> bool:
    """``DULServiceProvider._is_transport_event`` with the storage data phase in front of it."""
    phase: StorageDataPhase | None = getattr(dul.assoc, "_dicomnode_data_phase", None)
    if phase is None:
        return _original_is_transport_event(dul)
    if dul.state_machine.current_state != "Sta6":
        if phase.eligible:
            phase.wake_reactor()  # released or aborting: the reactor answers or ends it
        return _original_is_transport_event(dul)
    if phase.eligible is None:
        phase.eligible = phase._decide(dul)
        logger.debug(
            "association data phase",
            extra={
                "served_by": "data_phase" if phase.eligible else "pynetdicom",
                "association_id": handlers.association_stats(dul.assoc).association_id,
            },
        )
    if not phase.eligible:
        return _original_is_transport_event(dul)
    # Back here after pynetdicom's loop ran: what it did (a release request decoded, an
    # abort, a timer) may be for the reactor.
    phase.wake_reactor()
    if phase.run(dul):
        return _original_is_transport_event(dul)
    phase.wake_reactor()
    return False


_install_lock = threading.Lock()


def install() -> None:
    """Put the data phase in front of pynetdicom's transport check (idempotent, process-wide).

    Inert for associations without a ``StorageDataPhase`` (every SCU association, and SCP
    associations when ``enable`` was not bound).
    """
    with _install_lock:
        DULServiceProvider._is_transport_event = _is_transport_event  # type: ignore[method-assign,assignment]


def enable(event: Any, ingestor: Ingestor, max_pdu: int) -> None:
    """EVT_REQUESTED: give the association a storage data phase (used if its contexts allow)."""
    event.assoc._dicomnode_data_phase = StorageDataPhase(event.assoc, ingestor=ingestor, max_pdu=max_pdu)
