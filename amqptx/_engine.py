# -*- test-case-name: tests.test_engine -*-
"""
The sans-I/O core: one AMQP connection on proton's protocol engine.

An L{Engine} owns a proton C{Transport}, C{Connection} and C{Collector}. Bytes
from the network go in through L{Engine.feed}, bytes for the network come out of
L{Engine.takeOutput}, time goes in through L{Engine.tick}, and proton's events
come out of L{Engine.nextEvent}. Nothing here touches a socket, a clock or
Twisted: the Twisted protocol in L{amqptx._protocol} is a thin pump around it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any, Literal
from uuid import uuid4

from proton import Collector, Connection, Delivery, Endpoint, Event, Message, Transport

from . import _raw

_ids = count(1)
_process = f"amqptx-{uuid4()}"


def _newProcess() -> None:
    global _process
    _process = f"amqptx-{uuid4()}"


# A forked child is another container.
os.register_at_fork(after_in_child=_newProcess)


def uniqueId() -> str:
    """
    @return: a new id, unique among processes (a container id, a request's
        correlation id): this process's random part (a UUID, made again in a
        forked child) and a count, cheaper than a UUID each.
    """
    return f"{_process}-{next(_ids)}"


if TYPE_CHECKING:
    from ._sasl import SASLConfig

__all__ = [
    "ConnectionSettings",
    "DeliveryReader",
    "Engine",
    "Role",
    "decodeMessage",
    "uniqueId",
]

Role = Literal["client", "server"]


@dataclass(frozen=True)
class ConnectionSettings:
    """
    What one side says and requires when an AMQP connection opens.

    Endpoints build these from their options; protocols read them when they
    start their engine.

    @ivar role: C{"client"} sends the protocol header and the Open first;
        C{"server"} answers.
    @ivar hostname: the Open frame's C{hostname} field (the virtual host), or
        L{None}.
    @ivar user: the SASL user name (client), or L{None} for none.
    @ivar password: the SASL password (client); never shown in C{repr}.
    @ivar mechanisms: the SASL mechanisms this side allows, or L{None} for
        proton's default choice.
    @ivar allowInsecureMechanisms: whether mechanisms that reveal a password
        (PLAIN) may be used; amqptx sets it only over TLS or when the user
        explicitly allowed cleartext passwords.
    @ivar containerId: the Open frame's C{container-id}, or L{None} for a
        generated one (C{amqptx-} and a random UUID).
    @ivar idleTimeout: the local idle timeout in seconds: a peer silent for
        that long is declared dead.  proton advertises half of it in the
        Open frame, and the peer sends keep-alive frames at half of what it
        was told; L{None} for none.
    @ivar maxFrameSize: the largest frame this side accepts, or L{None} for
        proton's default.
    @ivar properties: the Open frame's C{properties} map.
    @ivar sasl: (server) how amqptx authenticates clients before proton sees
        a byte (see L{amqptx._sasl.SASLGate}), or L{None} to leave SASL to
        proton (ANONYMOUS only).  When set, proton's transport gets no SASL
        layer at all.
    @ivar tls: (server) whether the connection runs over TLS, which decides
        whether PLAIN and EXTERNAL are offered.
    """

    role: Role = "client"
    hostname: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    mechanisms: tuple[str, ...] | None = None
    allowInsecureMechanisms: bool = False
    containerId: str | None = None
    idleTimeout: float | None = None
    maxFrameSize: int | None = None
    properties: dict[str, object] | None = field(default=None, hash=False)
    sasl: SASLConfig | None = None
    tls: bool = False


class Engine:
    """
    One AMQP connection as bytes in, bytes out, events out.

    The engine holds proton's C objects themselves; proton's Python wrappers
    of them (L{connection}, L{transport}, L{collector}) are made on first use.
    A wrapped C object keeps a dictionary of the wrapper's attributes for as
    long as it lives: a server holds thousands of connections, and takes the
    common path (SASL done by amqptx, no properties) without any.

    @ivar settings: the settings the engine was made with.
    @ivar rawConnection: proton's C connection (a cffi pointer).
    @ivar rawTransport: proton's C transport, bound to C{rawConnection}.
    @ivar rawCollector: the C collector the connection reports events to.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        connection: Connection | None = None,
        collector: Collector | None = None,
    ) -> None:
        """
        Make a proton transport for C{settings}, bound to a connection and
        ready to produce the protocol header.

        @param settings: what this side says and requires.
        @param connection: the proton connection to drive (one made before
            the network connection, as proton's Container does), or L{None}
            for a new one.
        @param collector: the collector C{connection} reports its events to,
            or L{None} for a new one; an engine releases only a collector it
            made.
        """
        lib = _raw.lib
        self.settings = settings
        # What the engine made is its own, and freed in __del__ (pointers
        # that free themselves cost twice the memory).
        self._ownConnection = connection is None
        self._ownCollector = collector is None
        if connection is None:
            self.rawConnection = lib.pn_connection()
        else:
            self._connection = connection
            self.rawConnection = connection._impl
        if collector is None:
            self.rawCollector = lib.pn_collector()
            lib.pn_connection_collect(self.rawConnection, self.rawCollector)
        else:
            self._collector = collector
            self.rawCollector = collector._impl
        self.rawTransport = lib.pn_transport()
        if settings.role == "server" and settings.sasl is None:
            # A proton server transport writes nothing until it has seen
            # which protocol the client speaks.  After amqptx's SASL gate it
            # is plain AMQP, which a transport in proton's default mode
            # reads and writes from the start: the server's header (and its
            # Open) can go out with the SASL outcome.
            lib.pn_transport_set_server(self.rawTransport)
        self._configure(settings)
        lib.pn_transport_bind(self.rawTransport, self.rawConnection)
        # What proton had no room for yet; made when first needed (a server
        # holds thousands of engines, most with nothing held back).
        self._input: bytearray | None = None

    def __del__(
        self,
        _decref: Callable[[_raw.CData], None] = _raw.lib.pn_decref,
        _free: Callable[[_raw.CData], None] = _raw.lib.pn_collector_free,
    ) -> None:
        _decref(self.rawTransport)
        if self._ownConnection:
            _decref(self.rawConnection)
        if self._ownCollector:
            _free(self.rawCollector)

    # proton's wrappers, made on first use.  (Class defaults, not
    # cached_property: that writes to the instance's __dict__, which then
    # exists as a dictionary of its own, some hundreds of bytes more for each
    # of a server's thousands of engines.)
    _connection: Connection | None = None
    _transport: Transport | None = None
    _collector: Collector | None = None

    @property
    def connection(self) -> Connection:
        """
        The proton C{Connection} wrapping L{rawConnection}.
        """
        wrapper = self._connection
        if wrapper is None:
            wrapper = self._connection = Connection.wrap(self.rawConnection)  # type: ignore[no-untyped-call]
        return wrapper

    @property
    def transport(self) -> Transport:
        """
        The proton C{Transport} wrapping L{rawTransport}.
        """
        wrapper = self._transport
        if wrapper is None:
            wrapper = self._transport = Transport.wrap(self.rawTransport)
            assert wrapper is not None
        return wrapper

    @property
    def collector(self) -> Collector:
        """
        The proton C{Collector} wrapping L{rawCollector}.
        """
        collector = self._collector
        if collector is None:
            collector = self._collector = _BorrowedCollector(self.rawCollector)
        return collector

    def openConnection(self) -> None:
        """
        Open the connection (send its Open), unless it is open already:
        through proton's wrapper when there is one, which holds what the
        Open says (properties, capabilities) until then; else with proton's
        C function.
        """
        if not _raw.lib.pn_connection_state(self.rawConnection) & Endpoint.LOCAL_UNINIT:
            return
        wrapper = self._connection
        if wrapper is not None:
            wrapper.open()
        else:
            _raw.lib.pn_connection_open(self.rawConnection)

    def _configure(self, settings: ConnectionSettings) -> None:
        """
        Apply C{settings} to the unbound connection and transport.

        @param settings: what this side says and requires.
        """
        lib = _raw.lib
        connection, transport = self.rawConnection, self.rawTransport
        current = lib.pn_connection_get_container(connection)
        if settings.containerId or current == _raw.NULL or not current[0]:
            containerId = settings.containerId or uniqueId()
            lib.pn_connection_set_container(connection, containerId.encode("utf-8"))
        if settings.hostname is not None:
            hostname = settings.hostname.encode("utf-8")
            lib.pn_connection_set_hostname(connection, hostname)
        if settings.properties:
            self.connection.properties = dict(settings.properties)  # type: ignore[arg-type]
        if settings.idleTimeout:
            # In milliseconds (proton's wrapper takes seconds).
            milliseconds = int(settings.idleTimeout * 1000)
            lib.pn_transport_set_idle_timeout(transport, milliseconds)
        if settings.maxFrameSize:
            lib.pn_transport_set_max_frame(transport, settings.maxFrameSize)
        if settings.role == "server" and settings.sasl is not None:
            # amqptx's SASLGate did SASL: proton must take the plain AMQP
            # header that follows.  No transport.sasl() here, and no
            # authentication required (proton's default, made explicit).
            lib.pn_transport_require_auth(transport, False)
            return
        self._configureSASL(settings)

    def _configureSASL(self, settings: ConnectionSettings) -> None:
        """
        Give the transport proton's SASL layer, with the settings' mechanisms
        and credentials.  Override it to speak without SASL.

        @param settings: what this side says and requires.
        """
        lib = _raw.lib
        # proton's C functions, as its Transport.sasl() and SASL's setters
        # call them, without their wrappers.
        sasl = lib.pn_sasl(self.rawTransport)
        if settings.mechanisms is not None:
            mechanisms = " ".join(settings.mechanisms).encode("utf-8")
            lib.pn_sasl_allowed_mechs(sasl, mechanisms)
        lib.pn_sasl_set_allow_insecure_mechs(sasl, settings.allowInsecureMechanisms)
        if settings.role == "client":
            connection = self.rawConnection
            if settings.user is not None:
                lib.pn_connection_set_user(connection, settings.user.encode("utf-8"))
            if settings.password is not None:
                password = settings.password.encode("utf-8")
                lib.pn_connection_set_password(connection, password)

    def feed(self, data: bytes) -> None:
        """
        Give proton bytes that arrived from the peer.

        What proton has no room for now stays buffered and goes in on a later
        call of C{feed} or L{Engine.retryInput}, so nothing is lost.  Once the
        transport's input side is closed, further bytes are dropped: the
        connection is ending.

        @param data: bytes read from the network.
        """
        pending = self._input
        if data and not pending:
            # The common case, nothing held back: straight from the bytes
            # read, without copying them into the buffer first.
            pushed = _raw.pushInput(self.rawTransport, data)
            if pushed < 0 or pushed == len(data):
                return
            data = data[pushed:]
        if pending is None:
            self._input = bytearray(data)
        else:
            pending += data
        self.retryInput()

    def retryInput(self) -> None:
        """
        Push buffered input into proton, as much as it has room for.
        """
        pending = self._input
        if pending is None:
            # The common case, called once per round of every flush.
            return
        while pending:
            pushed = _raw.pushInput(self.rawTransport, pending)
            if pushed < 0:
                # The transport takes no more input: the connection is ending.
                break
            if not pushed:
                return
            del pending[:pushed]
        self._input = None

    def inputBuffered(self) -> int:
        """
        @return: how many received bytes wait for room in proton.
        """
        return len(self._input) if self._input is not None else 0

    def inputRoom(self) -> int:
        """
        @return: how many bytes proton can take now (negative once it takes
            no more).
        """
        return int(_raw.lib.pn_transport_capacity(self.rawTransport))

    def feedEOF(self) -> None:
        """
        Tell proton that the peer will send nothing more.
        """
        self.transport.close_tail()

    def takeOutput(self) -> bytes:
        """
        Take what proton has for the peer, up to 256 KiB at a time (call
        again for more).

        @return: the bytes to write, possibly empty.
        """
        return _raw.takeOutput(self.rawTransport)

    def outputClosed(self) -> bool:
        """
        @return: whether proton will never produce output again (the
            connection is over on our side and everything has been taken).
        """
        return bool(_raw.lib.pn_transport_pending(self.rawTransport) < 0)

    def closeOutput(self) -> None:
        """
        Tell proton that nothing more can be written to the peer.
        """
        self.transport.close_head()

    def tick(self, now: float) -> float:
        """
        Let proton act on the passage of time: send heartbeats, and declare a
        silent peer dead.

        @param now: the current time, in seconds, from the reactor's clock.
        @return: when to call again, in the same clock's seconds, or C{0.0}
            when no timer is needed.
        """
        return (
            float(_raw.lib.pn_transport_tick(self.rawTransport, int(now * 1000))) / 1000
        )

    def hasEvents(self) -> bool:
        """
        @return: whether proton has events to report.
        """
        return bool(_raw.lib.pn_collector_peek(self.rawCollector) != _raw.NULL)

    def nextEvent(self) -> Event | None:
        """
        Take the next event proton has to report.

        @return: the event, or L{None} when there is none left.
        """
        collector = self.collector
        event = collector.peek()
        if event is None:
            return None
        collector.pop()
        return event

    def release(self) -> None:
        """
        Unbind the transport and stop collecting events, breaking proton's
        reference cycles; the engine is useless afterwards.
        """
        _raw.lib.pn_transport_unbind(self.rawTransport)
        if self._ownCollector:
            _raw.lib.pn_collector_release(self.rawCollector)


class _BorrowedCollector(Collector):
    """
    proton's C{Collector} wrapper of a C collector it does not own: proton's
    own frees the C collector when the wrapper goes.
    """

    def __init__(self, impl: _raw.CData) -> None:
        self._impl = impl

    def __del__(self) -> None:
        pass


class DeliveryReader:
    """
    Reads incoming deliveries as their bytes arrive.

    A message larger than a frame arrives in pieces.  Taking each piece out of
    proton as it comes keeps the session's incoming window open; waiting for
    the last piece before reading would stall the connection once the window
    is full.
    """

    def __init__(self) -> None:
        # Keyed by the delivery itself (proton's wrappers hash as their C
        # object): names and tags from the peer may not even be text.
        self._partial: dict[Delivery, bytearray] = {}

    def read(self, delivery: Delivery) -> bytes | None:
        """
        Take what arrived of a delivery.

        @param delivery: a delivery on a receiving link, from a
            C{PN_DELIVERY} event.
        @return: the whole encoded message once its last piece has arrived
            (the link then moves on to the next delivery), else L{None}.  An
            aborted delivery is settled and gives L{None}.
        """
        link = delivery.link
        pending = delivery.pending
        chunk = link.recv(pending) if pending > 0 else b""
        partial = self._partial
        if delivery.aborted:
            partial.pop(delivery, None)
            link.advance()
            delivery.settle()
            return None
        if delivery.partial:
            buffer = partial.get(delivery)
            if buffer is None:
                buffer = partial[delivery] = bytearray()
            buffer += chunk or b""
            return None
        if partial:
            buffer = partial.pop(delivery, None)
            if buffer is not None:
                buffer += chunk or b""
                chunk = bytes(buffer)
        link.advance()
        return bytes(chunk or b"")


def _owned(value: Any) -> Any:
    """
    Copy memory views, also inside maps and lists, into C{bytes}.
    """
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):
        return type(value)((_owned(k), _owned(v)) for k, v in value.items())
    if isinstance(value, list):
        return type(value)(_owned(v) for v in value)
    return value


def decodeMessage(data: bytes) -> Message:
    """
    Decode a message from its encoded bytes.

    proton 0.40 decodes binary values as memory views into the message's
    own C buffers; a view that outlives its L{Message} reads freed memory
    (and crashes the process).  The body, properties, annotations and
    delivery instructions are therefore copied into plain C{bytes} here.

    @param data: the encoded message, as sent on a link.
    @return: the message.
    """
    message = Message()
    message.decode(data)
    body = message.body
    if isinstance(body, (memoryview, dict, list)):
        message.body = _owned(body)
    for name in ("properties", "annotations", "instructions"):
        value = getattr(message, name)
        if value:
            setattr(message, name, _owned(value))
    return message
