# -*- test-case-name: tests.test_protocol -*-
"""
The Twisted protocol that pumps an L{Engine}: bytes from the transport into
proton, proton's output onto the transport, proton's deadlines onto the
reactor's clock, and proton's events to a handler.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar, cast

from OpenSSL import SSL
from proton import Condition, Connection, Endpoint, Event, EventType
from service_identity import VerificationError
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from . import _events, _raw
from ._alarms import Alarms
from ._engine import ConnectionSettings, DeliveryReader, Engine
from ._errors import (
    AMQPConnectionLost,
    AMQPError,
    AuthenticationFailed,
    ConnectionClosed,
    OpenRefused,
    ProtocolError,
    TLSError,
)
from ._interfaces import IAMQPProtocol
from ._sasl import AvatarId, SASLGate
from ._sockets import sendNow, socketOf, writeNow

if TYPE_CHECKING:
    from proton import Connection, Delivery, Handler, Link, Session

__all__ = [
    "AMQPProtocol",
    "Waiters",
    "conditionFields",
    "eventDelivery",
    "eventLink",
    "eventSession",
]

_UNAUTHORIZED = "amqp:unauthorized-access"

_T = TypeVar("_T")

# What acts on events of a kind: something (True), nothing (False), or only
# a function of the protocol's, with proton's C functions (see
# AMQPProtocol._wants).
_Want = bool | Callable[[Any, _raw.CData], None]
_log = Logger()
# A Deferred, or an observer and its argument.
_Waiter = Deferred[Any] | tuple[Callable[[Any], object], Any]

# Seconds to wait for the peer's Close after sending ours.
CLOSE_TIMEOUT = 5.0

# The most bytes of an answer gathered for one send (see flush): Twisted's
# buffer size.  Beyond, output goes through the transport's buffer.
_ANSWER_LIMIT = 1 << 16

DELIVERY_BUDGET = 32
"""
At most this many deliveries (messages, or updates of sent ones) are handled
in one turn of the reactor: the rest wait, and the connection reads no more,
until the output they gave (outcomes, credit) has been written, at the
reactor's next poll.  The peer then works on that while this side works on
the rest: two processes at the same time instead of in turns.  (Measured
with a credit window of 100, see docs/performance.rst: 32 ran workload A1
some 10 to 20% faster than 64, 128 slower.)
"""
_HANDSHAKE_TIMEOUT = (
    "amqp:resource-limit-exceeded",
    "the connection did not open within the handshake timeout",
)


class Waiters:
    """
    Deferreds waiting for one event that either happens or fails; each can be
    cancelled on its own.  Also observers: plain callables, cheaper than a
    Deferred, for bookkeeping of many (see L{AMQPProtocol.notifyClosed}).
    """

    # Every connection has two, usually with nobody waiting: no dictionary,
    # and no list until someone waits.
    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: list[_Waiter] | None = None

    def _add(self, waiter: _Waiter) -> None:
        if self._waiting is None:
            self._waiting = [waiter]
        else:
            self._waiting.append(waiter)

    def new(self) -> Deferred[Any]:
        """
        @return: a new Deferred, fired by the next L{fire}.
        """
        d: Deferred[Any] = Deferred(self._discard)
        self._add(d)
        return d

    def observe(self, observer: Callable[[_T], object], argument: _T) -> None:
        """
        Have the next L{fire} call C{observer(argument)}, whatever the result.

        @param observer: what to call (its exceptions are logged).
        @param argument: its argument.
        """
        self._add((observer, argument))

    def _discard(self, d: Deferred[Any]) -> None:
        if self._waiting is not None and d in self._waiting:
            self._waiting.remove(d)

    def fire(self, result: object) -> None:
        """
        Fire every waiting Deferred, call every observer.

        @param result: the result, or a L{Failure} to fail them with.
        """
        waiting = self._waiting
        if not waiting:
            # The common case, on the per-message path of senders.
            return
        self._waiting = None
        for waiter in waiting:
            if isinstance(waiter, tuple):
                _call(*waiter)
            elif isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)


def _call(observer: Callable[[_T], object], argument: _T) -> None:
    """
    Call an observer, logging what it raises.
    """
    try:
        observer(argument)
    except Exception:
        _log.failure("Uncaught exception in {observer}", observer=observer)


def conditionFields(
    condition: Condition | None,
) -> tuple[str | None, str | None, dict[Any, Any] | None]:
    """
    Take apart a proton condition.

    @param condition: a condition, or L{None}.
    @return: its name, description and info (all L{None} for no condition).
    """
    if condition is None:
        return None, None, None
    info = condition.info
    return (
        condition.name,
        condition.description,
        dict(info) if isinstance(info, dict) and info else None,
    )


def eventLink(event: Event) -> Link:
    """
    @param event: a link or delivery event.
    @return: its link.
    """
    link = event.link
    assert link is not None, event
    return link


def eventSession(event: Event) -> Session:
    """
    @param event: a session, link or delivery event.
    @return: its session.
    """
    session = event.session
    assert session is not None, event
    return session


def eventDelivery(event: Event) -> Delivery:
    """
    @param event: a delivery event.
    @return: its delivery.
    """
    delivery = event.delivery
    assert delivery is not None, event
    return delivery


def _defaultClock() -> IReactorTime:
    from twisted.internet import reactor

    return reactor


@implementer(IAMQPProtocol, IPushProducer)
class AMQPProtocol(Protocol):
    """
    One AMQP 1.0 connection, client or server, on a Twisted transport.

    The protocol opens and closes the connection, keeps heartbeats going on
    its clock, and reports how the connection ended.  Everything else (links,
    messages) is the business of its L{handler}, which receives every proton
    event in proton's convention (C{on_link_flow(event)} and so on), or of
    subclasses.

    API calls made from outside proton's event dispatch (a Deferred callback
    that creates a link, say) must be followed by L{flush} so that their
    frames go out at once; amqptx's own APIs do that.

    The protocol is also the producer (L{IPushProducer}) of the socket under
    its transport (a TCP transport, or the one under Twisted's TLS): once
    Twisted holds more than its buffer's worth of output, proton keeps the
    rest until Twisted has sent what it holds.

    @ivar settings: what this side says and requires (set by L{configure}).
    @ivar clock: the clock for heartbeats (set by L{configure}, defaulting to
        the global reactor when the connection is made).
    @ivar engine: the sans-I/O engine, once the connection is made.
    @ivar opened: whether both sides have sent their Open.
    @ivar closedLocally: whether this side asked to close (L{close}).
    @ivar sasl: a server's SASL gate while amqptx authenticates the client
        (see L{ConnectionSettings.sasl}), else L{None}.
    @ivar avatarId: the client's avatar id once a server authenticated it
        with amqptx's SASL, else L{None}.
    """

    _log = Logger()

    # Whether to drop the attributes proton's wrappers keep in the C
    # connection, session and link of each event once it is handled, after
    # the connection opened (see amqptx._raw.forgetAttributes): only for a
    # protocol that, like the broker's, keeps nothing in them from one event
    # to the next.  (Before, they may hold what the Open is to say.)
    _forgetsAttributes = False

    # What most connections never set, or set only at their end: class
    # defaults.  (CPython keeps up to 30 attribute names of a class's
    # instances beside each instance; past that every instance gets a
    # dictionary of its own, some hundreds of bytes more, and one more
    # object for the cyclic garbage collector to walk.  What a server sets
    # on every connection stays in __init__: made class defaults too,
    # amqp-listen's RSS grew by 2.7 KB per connection, measured.)
    _error: AMQPError | None = None
    _ended: Failure | None = None
    _refusal: tuple[str, str] | None = None
    _closeTimer: IDelayedCall | None = None
    _nextTurn: IDelayedCall | None = None
    _reader: DeliveryReader | None = None
    _wanted: dict[int, _Want] | None = None

    def __init__(self, handler: object | None = None) -> None:
        """
        @param handler: the object that receives proton's events, or L{None}.
        """
        self.settings = ConnectionSettings()
        self.clock: IReactorTime | None = None
        self._handler = handler
        self.engine: Engine | None = None
        self.opened = False
        self._openWaiters = Waiters()
        self._closeWaiters = Waiters()
        # The next tick proton asked for (see amqptx._alarms), 0 for none.
        self._deadline = 0.0
        self._flushing = False
        self._again = False
        self._disconnecting = False
        self.sasl: SASLGate | None = None
        self.avatarId: AvatarId | None = None
        self._handshakeTimer: IDelayedCall | None = None
        self.closedLocally = False
        # Deliveries left for the next turn (see DELIVERY_BUDGET).
        self._yielded = False
        self._paused = False

    @property
    def reader(self) -> DeliveryReader:
        """
        Reads incoming messages as their pieces arrive (made on first use).
        """
        reader = self._reader
        if reader is None:
            reader = self._reader = DeliveryReader()
        return reader

    @property
    def handler(self) -> object | None:
        """
        The object that receives proton's events, or L{None}.  After the
        handler, the protocol answers what the peer began or ended and the
        handler left unanswered: a server's Open, a Begin, an End, a Detach.
        (Events of a kind it has no method for are not even made.)
        """
        return self._handler

    @handler.setter
    def handler(self, handler: object | None) -> None:
        self._handler = handler
        self._wanted = None

    # --- configuration -------------------------------------------------------

    def configure(self, settings: ConnectionSettings, clock: IReactorTime) -> None:
        """
        Set the connection's settings and clock; see L{IAMQPProtocol}.

        @param settings: the connection's settings.
        @param clock: the clock for heartbeats and timeouts.
        """
        self.settings = settings
        self.clock = clock

    @property
    def connection(self) -> Connection:
        """
        The proton C{Connection}; only while the connection is made.
        """
        return self._madeEngine().connection

    def _madeEngine(self) -> Engine:
        """
        @return: the engine, once the connection is made.
        @raise RuntimeError: before.
        """
        if self.engine is None:
            raise RuntimeError("the AMQP connection is not made yet")
        return self.engine

    # --- IProtocol -------------------------------------------------------------

    def connectionMade(self) -> None:
        """
        Start the engine and, on the client side, send the protocol header and
        the Open.
        """
        if self.clock is None:
            self.clock = _defaultClock()
        noDelay = getattr(self.transport, "setTcpNoDelay", None)
        if noDelay is not None:
            # amqptx writes whole batches of frames: Nagle's algorithm would
            # only hold the last piece of each back.
            with suppress(OSError):
                noDelay(True)
        socket = socketOf(self.transport)
        if socket is not None:
            # Twisted joins what it was given and not yet sent into one
            # string before each send: megabytes handed over at once are
            # copied again and again.  Proton keeps them instead.  (Under
            # TLS, on the socket: a TLS transport with a producer of its own
            # closes only once that producer leaves.)
            socket.registerProducer(self, True)
        settings = self.settings
        if settings.role == "server" and settings.sasl is not None:
            assert self.transport is not None
            # The whole handshake, SASL and Open, must fit in the timeout:
            # one timer, which ends the gate if it is still on.
            self._handshakeTimer = self.clock.callLater(
                settings.sasl.timeout, self._handshakeTimedOut
            )
            self.sasl = SASLGate(
                settings.sasl,
                self.transport,
                self.clock,
                tls=settings.tls,
                authenticated=self._authenticated,
                failed=self._saslFailed,
            )
            return
        # A client's header (and a server's, without SASL) goes out now: the
        # peer waits for it, and nothing else is there to go with it.
        self._answering = True
        try:
            self._startEngine(b"")
        finally:
            self._answering = False

    def _startEngine(self, data: bytes, outcome: bytes = b"") -> None:
        """
        Start proton: a client sends its header and Open; a server sends
        C{outcome}, the SASL outcome of amqptx's SASL gate, with its header
        and its Open (without waiting for the client's, unless its handler
        looks at that first), then reads C{data}, what followed the SASL
        exchange.
        """
        engine = self.engine = self.makeEngine()
        if self.settings.role == "client":
            engine.openConnection()
        elif self._refusal is None and not self._handles(Event.CONNECTION_REMOTE_OPEN):
            # Nothing decides on the client's Open: the server's goes out
            # now, with the SASL outcome (AMQP allows either order, part
            # 2.4.1), and the client's first links follow its Open in one
            # write.  One round trip fewer per connection.
            engine.openConnection()
        if outcome:
            # The client waits for it: now, in one send with proton's first
            # bytes.
            writeNow(self.transport, outcome + engine.takeOutput())
        if data:
            engine.feed(data)
        self.flush()

    def makeEngine(self) -> Engine:
        """
        Make the engine of this connection, when it is made.  Override it to
        drive a proton connection made beforehand.

        @return: the engine.
        """
        return Engine(self.settings)

    def _authenticated(
        self, avatarId: AvatarId, remainder: bytes, outcome: bytes
    ) -> None:
        self.sasl = None
        self.avatarId = avatarId
        self._startEngine(remainder, outcome)

    def _handshakeTimedOut(self) -> None:
        self._handshakeTimer = None
        if self.sasl is not None:
            self.sasl.timedOut()
            return
        self._log.info(
            "Closing a connection from {peer}: no AMQP Open within the "
            "handshake timeout",
            peer=str(self.transport.getPeer()) if self.transport else "?",
        )
        if self._error is None:
            self._error = ProtocolError(*_HANDSHAKE_TIMEOUT)
        if self.engine is not None:
            # Those waiting on the connection learn why through their own
            # Deferreds.
            self.close(*_HANDSHAKE_TIMEOUT).addErrback(lambda _: None)
        if self.transport is not None:
            self.transport.loseConnection()

    def _stopHandshakeTimer(self) -> None:
        timer, self._handshakeTimer = self._handshakeTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _saslFailed(self, reason: str) -> None:
        self._error = AuthenticationFailed(_UNAUTHORIZED, reason)

    def dataReceived(self, data: bytes) -> None:
        """
        Feed bytes from the peer to proton, and act on what follows.

        @param data: bytes read from the transport.
        """
        # What answers this read goes out now (see sendNow), from the
        # outermost flush, which subclasses may extend (the SASL gate sends
        # its own answers; the engine may start on bytes that followed them).
        self._answering = True
        try:
            if self.sasl is not None:
                self.sasl.dataReceived(data)
                return
            engine = self.engine
            if engine is None or self._ended is not None:
                return
            engine.feed(data)
            self.flush()
        finally:
            self._answering = False

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """
        Finish the connection: let proton and the handler see the end, then
        report it to everyone waiting.

        @param reason: why the transport ended.
        """
        if self._deadline:
            assert self.clock is not None
            Alarms.of(self.clock).arm(self, 0)
        self._stopHandshakeTimer()
        closeTimer, self._closeTimer = self._closeTimer, None
        if closeTimer is not None and closeTimer.active():
            closeTimer.cancel()
        nextTurn, self._nextTurn = self._nextTurn, None
        if nextTurn is not None and nextTurn.active():
            nextTurn.cancel()
        if self.sasl is not None:
            self.sasl.connectionLost()
            self.sasl = None
        engine = self.engine
        if self._yielded and engine is not None and self._ended is None:
            # What the peer said before it went (its Close, say) comes first,
            # in order: as part of this, not in flushes of their own.
            self._flushing = True
            try:
                self._dispatchAll(engine)
            finally:
                self._flushing = False
        failure = self._endReason(reason)
        self._ended = failure
        engine = self.engine
        if engine is not None:
            engine.feedEOF()
            engine.closeOutput()
            self._dispatchAll(engine)
        # Subclasses first (a client parks or fails its links, a broker puts
        # messages back), then those waiting on the end.
        self.connectionClosed(failure)
        self._fireEnded(failure)
        if engine is not None:
            engine.release()

    # --- hooks for subclasses --------------------------------------------------

    def connectionOpened(self) -> None:
        """
        Called once both sides have sent their Open.  Override it.
        """

    def connectionClosed(self, reason: Failure) -> None:
        """
        Called once, when the connection has ended.  Override it.

        @param reason: a L{ConnectionDone} failure for a clean close by either
            side, or an L{AMQPError} (or L{TLSError}) failure saying what went
            wrong.
        """

    # --- public API ----------------------------------------------------------------

    def whenOpened(self) -> Deferred[IAMQPProtocol]:
        """
        See L{IAMQPProtocol.whenOpened}.

        @return: a new Deferred that fires with this protocol once the
            connection is open, or fails with L{AuthenticationFailed},
            L{OpenRefused}, L{ProtocolError}, L{AMQPConnectionLost} or
            L{TLSError} if it ends first.
        """
        if self._ended is not None:
            return fail(self._openFailure(self._ended))
        if self.opened:
            return succeed(self)
        opened: Deferred[IAMQPProtocol] = self._openWaiters.new()
        return opened

    def whenClosed(self) -> Deferred[None]:
        """
        Get a Deferred that fires when the connection has ended.

        @return: a new Deferred that fires with L{None} after a clean close, or
            fails with the L{AMQPError} that ended the connection.
        """
        ended = self._ended
        if ended is not None:
            return succeed(None) if ended.check(ConnectionDone) else fail(ended)
        closed: Deferred[None] = self._closeWaiters.new()
        return closed

    def notifyClosed(self, observer: Callable[[_T], object], argument: _T) -> None:
        """
        See L{IAMQPProtocol.notifyClosed}.

        @param observer: what to call once the connection has ended.
        @param argument: its argument.
        """
        if self._ended is not None:
            _call(observer, argument)
        else:
            self._closeWaiters.observe(observer, argument)

    def close(
        self, condition: str | None = None, description: str | None = None
    ) -> Deferred[None]:
        """
        Close the AMQP connection: send a Close (with an error condition, if
        given) and end the transport once the peer answers.

        @param condition: an error condition name to close with, or L{None}
            for a normal close.
        @param description: the condition's description.
        @return: see L{whenClosed}.
        """
        self.closedLocally = True
        engine = self.engine
        if engine is not None and self._ended is None:
            connection = engine.connection
            if not connection.state & Endpoint.LOCAL_CLOSED:
                if condition is not None:
                    connection.condition = Condition(condition, description)
                connection.close()
                self.flush()
        elif engine is None and self.transport is not None:
            self.transport.loseConnection()
        return self.whenClosed()

    def refuse(self, condition: str, description: str) -> None:
        """
        Make a server answer the client's Open with a Close carrying this
        error condition, instead of opening the connection.

        @param condition: the error condition's name, such as
            C{amqp:resource-limit-exceeded}.
        @param description: its description.
        """
        self._refusal = (condition, description)

    def flush(self) -> None:
        """
        Run proton: dispatch its events, write its output and re-arm its timer.

        Safe to call at any time, also from inside an event handler (then it
        only asks the running dispatch to go round once more).
        """
        engine = self.engine
        if engine is None or self._ended is not None:
            return
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        clock = self.clock
        assert clock is not None
        wrote = False
        # The answer to what was just read (or a client's first bytes),
        # gathered to go out in one send at the end.
        answer: list[bytes] | None = [] if self._answering else None
        try:
            while True:
                self._again = False
                engine.retryInput()
                self._dispatchAll(engine, DELIVERY_BUDGET)
                deadline = engine.tick(clock.seconds())
                wrote = self._write(engine, answer) or wrote
                if self._yielded:
                    self._waitForPoll()
                elif self._again or engine.hasEvents():
                    continue
                elif engine.inputBuffered() and engine.inputRoom() > 0:
                    continue
                if not (wrote and self._answering):
                    break
                # The answer to what was just read (or a client's first
                # bytes) goes out now, not at the reactor's next turn: the
                # peer waits for it.  (Not for every flush: a program that
                # sends many messages in a row flushes after each, and
                # Twisted sends them all at once.)  Twisted asks for more if
                # it sent all it held (resumeProducing sets _again): proton
                # may have kept some back.
                assert answer is not None
                wrote = False
                if answer:
                    writeNow(self.transport, b"".join(answer))
                    del answer[:]
                sendNow(self.transport)
                if self._yielded or not self._again:
                    break
        finally:
            self._flushing = False
            if answer:
                # (Only if something raised.)
                self.transport.write(b"".join(answer))  # type: ignore[union-attr]
        self._arm(deadline)
        if engine.outputClosed() and not self._disconnecting:
            if engine.transport.closed or self._error is not None:
                self._disconnect()
            elif self._closeTimer is None:
                # Our Close went out first: wait for the peer's (not long).
                self._closeTimer = clock.callLater(CLOSE_TIMEOUT, self._disconnect)
        self.flushed()

    def _disconnect(self) -> None:
        timer, self._closeTimer = self._closeTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        if not self._disconnecting:
            self._disconnecting = True
            # Twisted closes a transport with a producer only once the
            # producer is gone; all of proton's output has been taken.
            self._leaveTransport()
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _write(self, engine: Engine, answer: list[bytes] | None) -> bool:
        """
        Give the transport proton's output, unless the transport holds
        enough (see L{pauseProducing}); or, for an answer to what was read,
        add it to C{answer}, to be sent at once (see L{writeNow}).

        @return: whether anything was written.
        """
        wrote = False
        transport: Any = self.transport
        while not self._outputHeld and not self._disconnecting:
            output = engine.takeOutput()
            if not output:
                break
            if answer is not None and sum(map(len, answer)) + len(output) <= (
                _ANSWER_LIMIT
            ):
                answer.append(output)
            else:
                # Large output (messages sent as credit came) goes through
                # the transport's buffer, whose fill holds proton's output
                # back (see pauseProducing); what was gathered goes first.
                if answer:
                    transport.write(b"".join(answer))
                    del answer[:]
                transport.write(output)
            wrote = True
        return wrote

    # Whether the transport asked for no more output for now: a class
    # attribute until the first time it does.
    _outputHeld = False

    def pauseProducing(self) -> None:
        """
        The transport holds more output than it wants: proton keeps what
        comes next until L{resumeProducing}.  Reading goes on.
        """
        self._outputHeld = True

    def resumeProducing(self) -> None:
        """
        The transport sent what it held: give it proton's output again.
        """
        self._outputHeld = False
        self.flush()
        if self._outputHeld:
            return
        socket = socketOf(self.transport)
        if socket is not None and (
            socket.disconnecting or self.transport.disconnecting  # type: ignore[union-attr]
        ):
            # Someone closed the transport (or TLS closed the socket): a
            # socket closes once its producer is gone, now that what proton
            # had is written.
            self._leaveTransport()

    def _leaveTransport(self) -> None:
        """
        Stop being the socket's producer, if it is.
        """
        socket = socketOf(self.transport)
        if socket is not None and socket.producer is self:
            socket.unregisterProducer()

    def stopProducing(self) -> None:
        """
        The transport is gone; L{connectionLost} follows, and does the rest.
        """

    def flushed(self) -> None:
        """
        Called after each outermost L{flush}: proton's events of the batch
        are handled and its output written.  Override it to act once per
        batch (a broker flushes the other connections the batch gave work
        to, say).
        """

    # --- internals -------------------------------------------------------------------

    # Whether what is written answers the peer, and goes out at once (see
    # dataReceived and connectionMade): a class attribute until first set.
    _answering = False

    # Subclasses that handle deliveries and credit themselves, through
    # proton's C functions, set this and override _delivery and _linkFlow
    # (see amqptx._raw): their handler sees neither event.
    _rawEvents = False

    # Event kinds (numbers) that a subclass handles itself, with proton's C
    # functions: a function of the protocol and the event (C{pn_event_t}).
    # Neither its handler nor the protocol's answers see them.
    _eventsInC: dict[int, Callable[[Any, _raw.CData], None]] = {}

    def _delivery(self, delivery: _raw.CData) -> None:
        """
        Handle a C{PN_DELIVERY} event (when L{_rawEvents} is set).

        @param delivery: the event's delivery, a pointer into proton.
        """

    def _linkFlow(self, link: _raw.CData) -> None:
        """
        Handle a C{PN_LINK_FLOW} event (when L{_rawEvents} is set).

        @param link: the event's link, a pointer into proton.
        """

    def _waitForPoll(self) -> None:
        """
        Leave the deliveries beyond this turn's budget for after the
        reactor's next poll (which writes this turn's output), reading
        nothing more meanwhile.
        """
        if self._nextTurn is not None:
            return
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]
        clock = self.clock
        assert clock is not None
        # A call that a timed call makes runs after the reactor's next poll.
        self._nextTurn = clock.callLater(0, self._afterPoll)

    def _afterPoll(self) -> None:
        clock = self.clock
        assert clock is not None
        self._nextTurn = clock.callLater(0, self._turn)

    def _turn(self) -> None:
        self._nextTurn = None
        self.flush()
        if not self._yielded and self._paused and self._ended is None:
            self._paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def _dispatchAll(self, engine: Engine, budget: int | None = None) -> None:
        """
        Dispatch proton's events.

        @param engine: the engine.
        @param budget: how many deliveries to handle at most (then
            C{_yielded} is set and the rest stay with proton), or L{None}
            for all.
        """
        self._yielded = False
        if type(engine).nextEvent is not Engine.nextEvent:
            # An engine with its own idea of the next event (the Container's).
            while (event := engine.nextEvent()) is not None:
                self._dispatchOne(event)
            return
        collector = engine.rawCollector
        lib = _raw.lib
        peek, pop, kind = lib.pn_collector_peek, lib.pn_collector_pop, lib.pn_event_type
        delivery, flow, null = _raw.DELIVERY, _raw.LINK_FLOW, _raw.NULL
        raw = self._rawEvents
        wanted = self._wantedKinds()
        while (impl := peek(collector)) != null:
            number = kind(impl)
            if number == delivery:
                if budget is not None:
                    if budget <= 0:
                        self._yielded = True
                        return
                    budget -= 1
                if raw:
                    try:
                        self._delivery(lib.pn_event_delivery(impl))
                    except Exception:
                        self._log.failure("Uncaught exception handling a delivery")
                    pop(collector)
                    continue
            elif number == flow and raw:
                try:
                    self._linkFlow(lib.pn_event_link(impl))
                except Exception:
                    self._log.failure("Uncaught exception handling credit")
                pop(collector)
                continue
            want = wanted.get(number)
            if want is None:
                known = EventType.TYPES.get(number)
                want = wanted[number] = True if known is None else self._wants(known)
            if want is not True:
                # Nobody acts on it, or only the protocol does, in C: not
                # worth proton's wrappers.
                if want is not False:
                    want(self, impl)
                pop(collector)
                continue
            event = _events.event(impl)
            ends = None
            if self._forgetsAttributes and self.opened:
                ends = (
                    lib.pn_event_connection(impl),
                    lib.pn_event_session(impl),
                    lib.pn_event_link(impl),
                )
            pop(collector)
            self._dispatchOne(event)
            if ends is not None:
                _raw.forgetAttributes(*ends)

    def _wantedKinds(self) -> dict[int, _Want]:
        """
        @return: event kinds (numbers) and what acts on them (see L{_wants}):
            shared by all protocols of a class that are their own handler
            (the broker's and the Deferred API's, of which a server has
            thousands), else this protocol's own.
        """
        if self._handler is self and not getattr(self, "handlers", None):
            return _WANTED.setdefault(type(self), {})
        wanted = self._wanted
        if wanted is None:
            wanted = self._wanted = {}
        return wanted

    def _handles(self, kind: EventType) -> bool:
        """
        @return: whether the handler acts on events of a kind (a method of
            its own, its child handlers, or C{on_unhandled}).
        """
        handler = self.handler
        return handler is not None and bool(
            getattr(handler, "handlers", None)
            or hasattr(handler, kind.method)
            or hasattr(handler, "on_unhandled")
        )

    def _wants(self, kind: EventType) -> _Want:
        """
        @return: for events of a kind, whether anything here acts on them
            (the protocol itself, or a method of its handler's), or, when
            only the protocol does and a function with proton's C functions
            does it (L{_eventsInC}, or the answer to the peer), that function
            (called with the protocol and the event before it leaves the
            collector).
        """
        inC = self._eventsInC.get(kind.number)
        if inC is not None:
            return inC
        handled = self._handles(kind)
        if kind in _OWN_EVENTS:
            return True
        if kind in _ANSWERS:
            return True if handled else _RAW_ANSWERS.get(kind.number, True)
        return handled

    def _dispatchOne(self, event: Event) -> None:
        own = _OWN_EVENTS.get(event.type)
        if own is not None:
            own(self, event)
        handler = self.handler
        if handler is not None:
            try:
                event.dispatch(cast("Handler", handler))
            except Exception:
                self._log.failure(
                    "Uncaught exception in the handler of {event}",
                    event=event.type,
                )
        answer = _ANSWERS.get(event.type)
        if answer is not None:
            answer(self, event)

    def _arm(self, deadline: float) -> None:
        if deadline != self._deadline:
            assert self.clock is not None
            Alarms.of(self.clock).arm(self, deadline)

    def _onAlarm(self) -> None:
        """
        Tick proton: the deadline it gave came.
        """
        self.flush()

    def _answerOpen(self, event: Event) -> None:
        """
        After the handler saw the peer's Open: a server answers it (unless the
        handler closed the connection instead, refusing it), and the
        connection is open once both Opens have passed and no Close followed.
        """
        connection = event.connection
        assert connection is not None, event
        self._answerOpenOf(connection._impl)

    def _answerOpenOf(self, impl: _raw.CData) -> None:
        """
        L{_answerOpen}, with proton's C functions where they do.

        @param impl: the connection (C{pn_connection_t}).
        """
        lib = _raw.lib
        state = lib.pn_connection_state(impl)
        if self._refusal is not None and not state & Endpoint.LOCAL_CLOSED:
            # (After the server's own Open, when it went out first.)
            connection = Connection.wrap(impl)  # type: ignore[no-untyped-call]
            connection.condition = Condition(*self._refusal)
            connection.close()
            return
        if state & Endpoint.LOCAL_UNINIT:
            # A wrapper made now has what the handler gave the event's
            # (properties, capabilities): the C connection keeps them.
            Connection.wrap(impl).open()  # type: ignore[no-untyped-call]
            state = lib.pn_connection_state(impl)
        if not state & Endpoint.LOCAL_ACTIVE:
            return
        if state & Endpoint.REMOTE_CLOSED and self.settings.role == "client":
            # The server's Close came with its Open: it refused the
            # connection.  (A client may close as soon as it sees the
            # server's Open, which a server sends first: its Open and Close
            # then come together, and the connection did open.)
            return
        self.opened = True
        self._stopHandshakeTimer()
        self._openWaiters.fire(self)
        self.connectionOpened()

    def _remoteClose(self, event: Event) -> None:
        connection = self.connection
        name, description, info = conditionFields(connection.remote_condition)
        if name is not None and self._error is None:
            if name == _UNAUTHORIZED:
                self._error = AuthenticationFailed(name, description, info)
            elif self.opened:
                self._error = ConnectionClosed(name, description, info)
            else:
                self._error = OpenRefused(name, description, info)

    def _transportError(self, event: Event) -> None:
        if self._ended is not None or self._error is not None:
            return
        transport = self.engine.transport  # type: ignore[union-attr]
        name, description, info = conditionFields(transport.condition)
        if name == _UNAUTHORIZED:
            self._error = AuthenticationFailed(name, description, info)
        else:
            self._error = ProtocolError(name, description, info)

    def _endReason(self, reason: Failure) -> Failure:
        if self._error is not None:
            return Failure(self._error)
        if reason.check(SSL.Error, VerificationError):
            return Failure(TLSError(str(reason.value)))
        engine = self.engine
        if engine is not None:
            state = engine.connection.state
            if state & (Endpoint.REMOTE_CLOSED | Endpoint.LOCAL_CLOSED):
                return Failure(ConnectionDone("the AMQP connection was closed"))
        return Failure(AMQPConnectionLost(reason))

    @staticmethod
    def _openFailure(failure: Failure) -> Failure:
        if failure.check(ConnectionDone):
            return Failure(AMQPConnectionLost(failure))
        return failure

    def _fireEnded(self, failure: Failure) -> None:
        self._openWaiters.fire(self._openFailure(failure))
        self._closeWaiters.fire(None if failure.check(ConnectionDone) else failure)


def _answerOpenInC(protocol: AMQPProtocol, event: _raw.CData) -> None:
    """
    L{AMQPProtocol._answerOpen}, for a handler that does not look at the
    peer's Open.
    """
    protocol._answerOpenOf(_raw.lib.pn_event_connection(event))


def _answerBeginInC(protocol: AMQPProtocol, event: _raw.CData) -> None:
    """
    L{_answerBegin}, with proton's C functions, for a handler that does not
    look at the peer's Begin.
    """
    session = _raw.lib.pn_event_session(event)
    if _raw.lib.pn_session_state(session) & Endpoint.LOCAL_UNINIT:
        _raw.lib.pn_session_open(session)


def _answerBegin(protocol: AMQPProtocol, event: Event) -> None:
    session = eventSession(event)
    if session.state & Endpoint.LOCAL_UNINIT:
        session.open()


def _answerEnd(protocol: AMQPProtocol, event: Event) -> None:
    session = eventSession(event)
    if not session.state & Endpoint.LOCAL_CLOSED:
        session.close()


def _answerClose(protocol: AMQPProtocol, event: Event) -> None:
    connection = protocol.connection
    if not connection.state & Endpoint.LOCAL_CLOSED:
        connection.close()


def _answerDetach(protocol: AMQPProtocol, event: Event) -> None:
    link = eventLink(event)
    if not link.state & Endpoint.LOCAL_CLOSED:
        link.close()


# Run after the handler saw the event, unless it already acted: the peer's
# Open, Begin, End and Detach are answered in kind.
_ANSWERS = {
    Event.CONNECTION_REMOTE_OPEN: AMQPProtocol._answerOpen,
    Event.CONNECTION_REMOTE_CLOSE: _answerClose,
    Event.SESSION_REMOTE_OPEN: _answerBegin,
    Event.SESSION_REMOTE_CLOSE: _answerEnd,
    Event.LINK_REMOTE_CLOSE: _answerDetach,
    Event.LINK_REMOTE_DETACH: _answerDetach,
}

# Answers that C functions give as well, for protocols whose handler does
# not look at the event (see AMQPProtocol._wants).
_RAW_ANSWERS: dict[int, Callable[[AMQPProtocol, _raw.CData], None]] = {
    Event.CONNECTION_REMOTE_OPEN.number: _answerOpenInC,
    Event.SESSION_REMOTE_OPEN.number: _answerBeginInC,
}

# Event kinds and whether protocols of a class, their own handlers, act on
# them (see AMQPProtocol._wantedKinds).
_WANTED: dict[type[AMQPProtocol], dict[int, _Want]] = {}

_OWN_EVENTS = {
    Event.CONNECTION_REMOTE_CLOSE: AMQPProtocol._remoteClose,
    Event.TRANSPORT_ERROR: AMQPProtocol._transportError,
}
