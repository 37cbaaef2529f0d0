# -*- test-case-name: tests.test_protocol -*-
"""
Tests for L{amqptx._protocol}: the Twisted protocol that pumps proton's
engine, in memory, against proton's engine on the other side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proton import Condition, Endpoint, Event, Message
from twisted.cred.checkers import AllowAnonymousAccess
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransport,
)
from twisted.logger import globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from amqptx import (
    AMQPConnection,
    AMQPConnectionLost,
    AMQPProtocol,
    ConnectionClosed,
    ConnectionSettings,
    IAMQPProtocol,
    OpenRefused,
    ProtocolError,
)
from amqptx._protocol import CLOSE_TIMEOUT, DELIVERY_BUDGET
from amqptx._sasl import SASLConfig
from amqptx.testing import IOPump, TestPeer, connectPair

from ._certs import sharedPKI

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"


def _pair(
    clock: Clock,
    clientSettings: ConnectionSettings | None = None,
    serverSettings: ConnectionSettings | None = None,
) -> tuple[AMQPConnection, TestPeer, IOPump]:
    client, server = AMQPConnection(), TestPeer()
    pump = connectPair(server, client, clock, serverSettings, clientSettings)
    return client, server, pump


def _onTransports(
    clock: Clock,
) -> tuple[AMQPConnection, StringTransport, TestPeer, StringTransport]:
    """
    @return: a client and a server, each connected to a L{StringTransport}
        of its own (the test moves the bytes).
    """
    server = TestPeer()
    server.configure(ConnectionSettings(role="server"), clock)
    serverTransport = StringTransport()
    server.makeConnection(serverTransport)
    client = AMQPConnection()
    client.configure(ConnectionSettings(mechanisms=("ANONYMOUS",)), clock)
    clientTransport = StringTransport()
    client.makeConnection(clientTransport)
    return client, clientTransport, server, serverTransport


class InterfaceTests(SynchronousTestCase):
    """
    L{AMQPProtocol} provides what it claims.
    """

    def test_provides(self) -> None:
        """
        L{AMQPProtocol} and L{AMQPConnection} provide L{IAMQPProtocol} and
        L{IProtocol}.
        """
        for protocol in (AMQPProtocol(), AMQPConnection(), TestPeer()):
            self.assertTrue(verifyObject(IAMQPProtocol, protocol))
            self.assertTrue(verifyObject(IProtocol, protocol))


class OpenCloseTests(SynchronousTestCase):
    """
    Opening and closing a connection.
    """

    def test_headerFirst(self) -> None:
        """
        A client protocol writes the SASL protocol header as soon as it is
        connected, before anything arrives.
        """
        protocol = AMQPConnection()
        protocol.configure(ConnectionSettings(mechanisms=("ANONYMOUS",)), Clock())
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value()[:8], SASL_HEADER)

    def test_serverWaits(self) -> None:
        """
        A server protocol writes nothing until the client speaks.
        """
        protocol = TestPeer()
        protocol.configure(ConnectionSettings(role="server"), Clock())
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), b"")

    def test_opened(self) -> None:
        """
        Both sides see the connection opened; C{whenOpened} fires with the
        protocol, also when asked afterwards, and the server learns the
        client's container id and hostname.
        """
        clock = Clock()
        client = AMQPConnection()
        waiting = client.whenOpened()
        server = TestPeer()
        connectPair(
            server,
            client,
            clock,
            clientSettings=ConnectionSettings(
                containerId="the-client", hostname="vhost:x"
            ),
        )
        self.assertIs(self.successResultOf(waiting), client)
        self.assertIs(self.successResultOf(client.whenOpened()), client)
        self.assertTrue(server.opened)
        self.assertEqual(server.connection.remote_container, "the-client")
        self.assertEqual(server.connection.remote_hostname, "vhost:x")

    def test_openedHook(self) -> None:
        """
        C{connectionOpened} is called once the Open exchange is complete.
        """
        calls = []

        class Hooked(AMQPConnection):
            def connectionOpened(self) -> None:
                calls.append(self.opened)

        client = Hooked()
        connectPair(TestPeer(), client, Clock())
        self.assertEqual(calls, [True])

    def test_cleanClose(self) -> None:
        """
        C{close()} sends a Close, the peer answers, the transport ends and the
        Deferred fires with L{None}; both sides report a clean end.
        """
        reasons: list[Failure] = []

        class Recording(TestPeer):
            def connectionClosed(self, reason: Failure) -> None:
                reasons.append(reason)

        client, server = AMQPConnection(), Recording()
        pump = connectPair(server, client, Clock())
        closed = client.close()
        self.assertNoResult(closed)
        pump.flush()
        self.assertIsNone(self.successResultOf(closed))
        self.assertIsNone(self.successResultOf(server.whenClosed()))
        self.assertEqual(len(reasons), 1)
        self.assertTrue(reasons[0].check(ConnectionDone))

    def test_closeWaitsForPeer(self) -> None:
        """
        After sending its Close, a protocol keeps the transport open for the
        peer's Close (up to C{CLOSE_TIMEOUT} seconds), then drops it.
        """
        clock = Clock()
        client, server, pump = _pair(clock)
        closed = client.close()
        # The peer never gets our Close: the pump is not flushed.
        self.assertFalse(pump.clientIO.disconnecting)
        clock.advance(CLOSE_TIMEOUT)
        self.assertTrue(pump.clientIO.disconnecting)
        pump.flush()
        self.assertIsNone(self.successResultOf(closed))

    def test_handlerSeesCloseFirst(self) -> None:
        """
        The handler sees the peer's Close before the protocol answers it.
        """
        states = []

        class Watching:
            handlers: list[object] = []

            def on_connection_remote_close(self, event: object) -> None:
                states.append(client.connection.state & Endpoint.LOCAL_CLOSED)

        clock = Clock()
        client = AMQPProtocol(handler=Watching())
        server = TestPeer()
        pump = connectPair(server, client, clock)
        server.close()
        pump.flush()
        self.assertEqual(states, [0])
        self.assertTrue(client.connection.state & Endpoint.LOCAL_CLOSED)

    def test_closeTwice(self) -> None:
        """
        Closing again, before or after the end, gives the same result.
        """
        client, server, pump = _pair(Clock())
        first, second = client.close(), client.close()
        pump.flush()
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))
        self.assertIsNone(self.successResultOf(client.close()))

    def test_remoteCloseWithCondition(self) -> None:
        """
        A peer that closes an open connection with an error condition makes
        the client's C{whenClosed} fail with L{ConnectionClosed} carrying that
        condition.
        """
        client, server, pump = _pair(Clock())
        closed = client.whenClosed()
        server.close("amqp:connection:forced", "shutting down")
        pump.flush()
        failure = self.failureResultOf(closed, ConnectionClosed)
        self.assertEqual(failure.value.condition, "amqp:connection:forced")
        self.assertEqual(failure.value.description, "shutting down")
        self.assertIn("amqp:connection:forced", str(failure.value))

    def test_openRefused(self) -> None:
        """
        A peer that answers the Open with a Close carrying an error makes
        C{whenOpened} fail with L{OpenRefused}.
        """

        class Refusing(TestPeer):
            def on_connection_remote_open(self, event: object) -> None:
                self.connection.condition = Condition(
                    "amqp:not-found", "no such virtual host"
                )
                self.connection.close()

        clock = Clock()
        client = AMQPConnection()
        opened = client.whenOpened()
        connectPair(Refusing(), client, clock)
        failure = self.failureResultOf(opened, OpenRefused)
        self.assertEqual(failure.value.condition, "amqp:not-found")
        self.assertEqual(failure.value.description, "no such virtual host")

    def test_lostBeforeOpen(self) -> None:
        """
        A transport that ends before the Open exchange makes C{whenOpened}
        fail with L{AMQPConnectionLost}, which keeps Twisted's reason.
        """
        protocol = AMQPConnection()
        protocol.configure(ConnectionSettings(mechanisms=("ANONYMOUS",)), Clock())
        protocol.makeConnection(StringTransport())
        opened = protocol.whenOpened()
        protocol.connectionLost(Failure(ConnectionDone()))
        failure = self.failureResultOf(opened, AMQPConnectionLost)
        self.assertIsInstance(failure.value.reason, Failure)
        self.failureResultOf(protocol.whenOpened(), AMQPConnectionLost)

    def test_lostAfterOpen(self) -> None:
        """
        A transport that ends without an AMQP Close makes C{whenClosed} fail
        with L{AMQPConnectionLost}.
        """
        client, server, pump = _pair(Clock())
        closed = client.whenClosed()
        client.transport.loseConnection()  # type: ignore[union-attr]
        pump.flush()
        self.failureResultOf(closed, AMQPConnectionLost)
        self.failureResultOf(server.whenClosed(), AMQPConnectionLost)

    def test_notifyClosed(self) -> None:
        """
        C{notifyClosed} calls its observer with its argument once the
        connection has ended, however it ended, and at once afterwards; an
        observer that raises is logged and the others are still called.
        """
        client, server, pump = _pair(Clock())
        seen: list[object] = []

        def broken(argument: object) -> None:
            raise ZeroDivisionError(argument)

        client.notifyClosed(broken, "first")
        client.notifyClosed(seen.append, "second")
        server.notifyClosed(seen.append, "server")
        pump.flush()
        self.assertEqual(seen, [])
        client.transport.loseConnection()  # type: ignore[union-attr]
        pump.flush()
        self.assertEqual(sorted(map(str, seen)), ["second", "server"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        client.notifyClosed(seen.append, "late")
        self.assertEqual(seen[-1], "late")
        client.notifyClosed(broken, "late too")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_cancelWaiters(self) -> None:
        """
        Cancelling C{whenOpened} or C{whenClosed} only drops that Deferred.
        """
        protocol = AMQPConnection()
        opened, closed = protocol.whenOpened(), protocol.whenClosed()
        opened.cancel()
        closed.cancel()
        self.failureResultOf(opened, CancelledError)
        self.failureResultOf(closed, CancelledError)
        self.assertEqual(protocol._openWaiters._waiting, [])
        self.assertEqual(protocol._closeWaiters._waiting, [])


class GarbageTests(SynchronousTestCase):
    """
    Bytes that are not AMQP.
    """

    def test_notAMQP(self) -> None:
        """
        A server given an HTTP request answers with its protocol header, then
        closes the transport; its C{whenClosed} fails with L{ProtocolError}
        naming the condition.
        """
        protocol = TestPeer()
        protocol.configure(ConnectionSettings(role="server"), Clock())
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        failure = self.failureResultOf(protocol.whenClosed(), ProtocolError)
        self.assertIsNotNone(failure.value.condition)

    def test_garbageAfterOpen(self) -> None:
        """
        Random bytes after the Open make the receiving side close with a
        framing error; the other side learns the condition.
        """
        client, server, pump = _pair(Clock())
        closed = client.whenClosed()
        server.dataReceived(b"\x00\x00\x00\x08\x02\x00\x00\x00" + b"\xff" * 64)
        pump.flush()
        failure = self.failureResultOf(server.whenClosed(), ProtocolError)
        self.assertEqual(failure.value.condition, "amqp:connection:framing-error")
        closedFailure = self.failureResultOf(closed, ConnectionClosed)
        self.assertEqual(closedFailure.value.condition, "amqp:connection:framing-error")

    def test_afterEndIgnored(self) -> None:
        """
        Bytes that arrive after the connection ended are ignored.
        """
        protocol = AMQPConnection()
        protocol.configure(ConnectionSettings(), Clock())
        protocol.makeConnection(StringTransport())
        protocol.connectionLost(Failure(ConnectionDone()))
        protocol.dataReceived(SASL_HEADER)


class HeartbeatTests(SynchronousTestCase):
    """
    Idle timeouts and heartbeats follow the reactor's clock.
    """

    def test_keptAlive(self) -> None:
        """
        A client that advertises an idle timeout of 10 s stays connected over
        ten minutes of silence: the peer sends heartbeats.
        """
        clock = Clock()
        client, server, pump = _pair(
            clock, clientSettings=ConnectionSettings(idleTimeout=10)
        )
        for _ in range(1200):
            clock.advance(0.5)
            pump.flush()
        self.assertNoResult(client.whenClosed())
        self.assertTrue(client.opened)

    def test_bothSidesKeepAlive(self) -> None:
        """
        Both sides advertising idle timeouts keep each other alive.
        """
        clock = Clock()
        client, server, pump = _pair(
            clock,
            clientSettings=ConnectionSettings(idleTimeout=4),
            serverSettings=ConnectionSettings(role="server", idleTimeout=6),
        )
        # proton advertises half the local timeout, for safety
        remote = server.engine.transport.remote_idle_timeout  # type: ignore[union-attr]
        self.assertEqual(remote, 2)
        for _ in range(200):
            clock.advance(0.5)
            pump.flush()
        self.assertNoResult(client.whenClosed())
        self.assertNoResult(server.whenClosed())

    def test_heartbeatTiming(self) -> None:
        """
        A silent server sends the client, whose idle timeout is 10 s, an
        empty frame at least every 5 s, and nothing else.
        """
        clock = Clock()
        client, server, pump = _pair(
            clock, clientSettings=ConnectionSettings(idleTimeout=10)
        )
        emptyFrame = b"\x00\x00\x00\x08\x02\x00\x00\x00"
        sentAt = []
        for _ in range(300):
            clock.advance(0.1)
            output = pump.serverIO.getOutBuffer()
            if output:
                self.assertEqual(output, emptyFrame)
                sentAt.append(clock.seconds())
                pump.clientIO.bufferReceived(output)
        gaps = [b - a for a, b in zip([0.0] + sentAt[:-1], sentAt, strict=True)]
        self.assertGreaterEqual(len(sentAt), 6)
        # to within the 0.1 s steps of the clock
        self.assertLessEqual(max(gaps), 5.2)

    def test_silentPeerDeclaredDead(self) -> None:
        """
        A client with an idle timeout whose peer goes silent (bytes stop
        moving) declares it dead after the timeout, with the condition
        C{amqp:resource-limit-exceeded}, and closes the transport.
        """
        clock = Clock()
        client, server, pump = _pair(
            clock, clientSettings=ConnectionSettings(idleTimeout=10)
        )
        closed = client.whenClosed()
        clock.advance(9.9)
        self.assertNoResult(closed)
        clock.advance(0.2)
        self.assertTrue(pump.clientIO.disconnecting)
        pump.flush()
        failure = self.failureResultOf(closed, ProtocolError)
        self.assertEqual(failure.value.condition, "amqp:resource-limit-exceeded")

    def test_timerCancelledAtEnd(self) -> None:
        """
        No timer is left on the clock once the connection has ended.
        """
        clock = Clock()
        client, server, pump = _pair(
            clock, clientSettings=ConnectionSettings(idleTimeout=10)
        )
        self.assertTrue(clock.getDelayedCalls())
        client.close()
        pump.flush()
        self.assertEqual(clock.getDelayedCalls(), [])


class HandlerTests(SynchronousTestCase):
    """
    Events reach the handler; its failures are logged, not raised.
    """

    def test_handlerException(self) -> None:
        """
        An exception raised by a handler method is logged with the event type
        and does not stop the connection from opening.
        """
        events = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

        class Broken:
            handlers: list[object] = []

            def on_connection_remote_open(self, event: object) -> None:
                raise RuntimeError("broken handler")

        client = AMQPProtocol(handler=Broken())
        connectPair(TestPeer(), client, Clock())
        self.assertTrue(client.opened)
        logged = [e for e in events if e.get("log_failure") is not None]
        self.assertEqual(len(logged), 1)
        self.assertEqual(str(logged[0]["event"]), "PN_CONNECTION_REMOTE_OPEN")
        self.flushLoggedErrors(RuntimeError)

    def test_beginAnswered(self) -> None:
        """
        The peer's Begin is answered whether or not the handler looks at it;
        a handler that ends the session instead has its way.
        """

        class Refusing:
            handlers: list[object] = []

            def on_session_remote_open(self, event: Event) -> None:
                session = event.session
                assert session is not None
                session.condition = Condition("amqp:not-allowed", "no sessions")
                session.close()

        outcomes = []
        for handler in (object(), Refusing()):
            client = AMQPConnection()
            pump = connectPair(AMQPProtocol(handler=handler), client, Clock())
            # The first Begin of a kind of handler teaches the protocol what
            # the handler looks at; the second takes the path it learned.
            for _ in range(2):
                session = client.connection.session()
                session.open()
                client.flush()
                pump.flush()
                condition = session.remote_condition
                outcomes.append(
                    (
                        bool(session.state & Endpoint.REMOTE_ACTIVE),
                        condition.name if condition else None,
                    )
                )
        self.assertEqual(
            outcomes,
            [(True, None)] * 2 + [(False, "amqp:not-allowed")] * 2,
        )

    def test_flushFromOutside(self) -> None:
        """
        Work done outside proton's dispatch (here: opening a session from test
        code) reaches the wire at once through C{flush()}, without waiting
        for input.
        """
        client, server, pump = _pair(Clock())
        session = client.connection.session()
        session.open()
        client.flush()
        self.assertNotEqual(pump.clientIO.getOutBuffer(), b"")

    def test_inputInPieces(self) -> None:
        """
        Bytes arriving one at a time, both ways, are handled like whole
        reads: the connection opens.
        """
        client, clientTransport, server, serverTransport = _onTransports(Clock())
        while clientTransport.value() or serverTransport.value():
            toServer, toClient = clientTransport.value(), serverTransport.value()
            clientTransport.clear()
            serverTransport.clear()
            for byte in toServer:
                server.dataReceived(bytes([byte]))
            for byte in toClient:
                client.dataReceived(bytes([byte]))
        self.assertTrue(client.opened)
        self.assertEqual(
            server.connection.remote_container, client.connection.container
        )


class BudgetTests(SynchronousTestCase):
    """
    At most L{DELIVERY_BUDGET} deliveries are handled in one turn; the rest
    wait for the reactor's poll (which writes what the turn gave), and the
    connection reads nothing meanwhile.
    """

    def _attached(
        self, clock: Clock
    ) -> tuple[AMQPConnection, StringTransport, TestPeer, StringTransport, list[bytes]]:
        """
        @return: a client with a receiver from C{q} (credit 1,000, each
            message's body appended to the returned list), its transport,
            the peer and its transport, all exchanged until quiet.
        """
        client, clientTransport, server, serverTransport = _onTransports(clock)
        bodies: list[bytes] = []
        client.receiver(
            "q", credit=1000, autoAccept=True, onMessage=lambda m: bodies.append(m.body)
        )
        self._exchange(client, clientTransport, server, serverTransport)
        return client, clientTransport, server, serverTransport, bodies

    def _exchange(
        self,
        client: AMQPConnection,
        clientTransport: StringTransport,
        server: TestPeer,
        serverTransport: StringTransport,
    ) -> None:
        while clientTransport.value() or serverTransport.value():
            toServer, toClient = clientTransport.value(), serverTransport.value()
            clientTransport.clear()
            serverTransport.clear()
            if toServer:
                server.dataReceived(toServer)
            if toClient:
                client.dataReceived(toClient)

    def test_turns(self) -> None:
        """
        Of 100 messages read at once, only the budget's are handled at once,
        their outcomes written, and the transport paused; the rest follow, in
        order, as the clock turns, and reading resumes.
        """
        clock = Clock()
        client, clientTransport, server, serverTransport, bodies = self._attached(clock)
        for index in range(100):
            server.offer("q", Message(body=b"%03d" % index + b"x" * 297))
        data = serverTransport.value()
        serverTransport.clear()
        client.dataReceived(data)
        self.assertEqual(len(bodies), DELIVERY_BUDGET)
        self.assertNotEqual(clientTransport.value(), b"")
        self.assertEqual(clientTransport.producerState, "paused")
        # (The reactor runs one turn per poll; task.Clock runs a call made
        # by a call at once, hence every turn in one advance.)
        clock.advance(0)
        self.assertEqual(len(bodies), 100)
        self.assertEqual(clientTransport.producerState, "producing")
        self.assertEqual([b[:3] for b in bodies], [b"%03d" % i for i in range(100)])
        self._exchange(client, clientTransport, server, serverTransport)
        clock.advance(0)  # (The peer has a budget too.)
        self.assertEqual(len(server.sentOutcomes), 100)

    def test_lostWithDeliveriesLeft(self) -> None:
        """
        When the connection is lost while deliveries wait for their turn,
        they are handled first, in order, and each once: the peer's Close
        after them makes the end a clean close, and every message before it
        arrives.  (Handing a message out flushes the connection; were that a
        dispatch of its own, inside this one, it would handle the event being
        handled again, and the outer one would then drop the next.)
        """
        clock = Clock()
        client, clientTransport, server, serverTransport, bodies = self._attached(clock)
        count = DELIVERY_BUDGET * 5
        for index in range(count):
            server.offer("q", Message(body=b"%03d" % index + b"x" * 297))
        server.close()
        data = serverTransport.value()
        client.dataReceived(data)
        self.assertLess(len(bodies), count)
        closed = client.whenClosed()
        client.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([b[:3] for b in bodies], [b"%03d" % i for i in range(count)])
        self.assertIsNone(self.successResultOf(closed))
        clock.advance(0)
        clock.advance(0)
        self.assertEqual(len(bodies), count)

    def test_manyInOneBatch(self) -> None:
        """
        Every message of a batch of input more than twice the budget arrives,
        in order, over the turns.
        """
        clock = Clock()
        client, clientTransport, server, serverTransport, bodies = self._attached(clock)
        for index in range(140):
            server.offer("q", Message(body=b"%03d" % index + b"x" * 297))
        client.dataReceived(serverTransport.value())
        serverTransport.clear()
        clock.advance(0)
        self.assertEqual([b[:3] for b in bodies], [b"%03d" % i for i in range(140)])


class NoDelayTests(SynchronousTestCase):
    """
    amqptx turns Nagle's algorithm off on TCP connections: it writes whole
    batches of frames itself.
    """

    def test_noDelay(self) -> None:
        """
        A transport with C{setTcpNoDelay} gets it set.
        """

        class TCPTransport(StringTransport):
            noDelay = False

            def setTcpNoDelay(self, enabled: bool) -> None:
                self.noDelay = enabled

        transport = TCPTransport()
        client = AMQPConnection()
        client.configure(ConnectionSettings(), Clock())
        client.makeConnection(transport)
        self.assertTrue(transport.noDelay)


class _Socket(FileDescriptor):
    """
    A Twisted file descriptor over no socket: what it sends is kept.
    """

    def __init__(self, reactor: MemoryReactorClock) -> None:
        super().__init__(reactor)
        self.connected = True
        self.sent: list[bytes] = []

    def writeSomeData(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 1)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 5672)


class _Watching(_Socket):
    """
    A L{_Socket} that counts the times it was registered to write, and may
    take only so many bytes per send.
    """

    registered = 0
    takes: int | None = None

    def startWriting(self) -> None:
        self.registered += 1
        super().startWriting()

    def writeSomeData(self, data: bytes) -> int:
        if self.takes is not None:
            data = data[: self.takes]
        return super().writeSomeData(data)


class SendNowTests(SynchronousTestCase):
    """
    On a TCP transport, the answer to what was read leaves at once, not at
    the reactor's next turn; other output waits for that turn, as Twisted
    writes.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.socket = _Socket(self.reactor)
        self.server = TestPeer()
        self.server.configure(ConnectionSettings(role="server"), Clock())
        self.server.makeConnection(self.socket)
        self.client = AMQPConnection()
        self.client.configure(ConnectionSettings(mechanisms=("ANONYMOUS",)), Clock())
        self.clientTransport = StringTransport()
        self.client.makeConnection(self.clientTransport)
        self.hello = self.clientTransport.value()

    def openBoth(self) -> None:
        """
        Carry bytes both ways until both sides have opened.
        """
        for _ in range(10):
            toServer = self.clientTransport.value()
            self.clientTransport.clear()
            if toServer:
                self.server.dataReceived(toServer)
            toClient = b"".join(self.socket.sent)
            del self.socket.sent[:]
            if toClient:
                self.client.dataReceived(toClient)
        self.assertTrue(self.server.opened and self.client.opened)

    def test_answerToARead(self) -> None:
        """
        The server's answer to the client's first bytes is sent within
        C{dataReceived}, and the transport no longer waits to write.
        """
        self.server.dataReceived(self.hello)
        self.assertTrue(self.socket.sent)
        self.assertNotIn(self.socket, self.reactor.getWriters())

    def test_clientFirstBytes(self) -> None:
        """
        A client's first bytes, its protocol header, leave within
        C{connectionMade}: the server waits for them.
        """
        client = AMQPConnection()
        client.configure(ConnectionSettings(mechanisms=("ANONYMOUS",)), Clock())
        socket = _Socket(self.reactor)
        client.makeConnection(socket)
        self.assertEqual(b"".join(socket.sent), self.hello)
        self.assertNotIn(socket, self.reactor.getWriters())

    def test_straightToTheSocket(self) -> None:
        """
        Behind amqptx's own SASL gate as well, each of the server's answers
        (the mechanisms; the outcome with the server's AMQP header and Open)
        leaves within the C{dataReceived} of what it answers, in one send
        straight to the socket: the socket is never registered to write (no
        reactor round, no C{epoll_ctl}).  The client's header and Open need
        no answer.
        """
        server = TestPeer()
        server.configure(
            ConnectionSettings(
                role="server", sasl=SASLConfig(checkers=(AllowAnonymousAccess(),))
            ),
            Clock(),
        )
        socket = _Watching(self.reactor)
        server.makeConnection(socket)
        sends = []
        while toServer := self.clientTransport.value():
            self.clientTransport.clear()
            server.dataReceived(toServer)
            sends.append(len(socket.sent))
            self.client.dataReceived(b"".join(socket.sent))
            del socket.sent[:]
        self.assertTrue(server.opened and self.client.opened)
        self.assertEqual(sends, [1, 1, 0])
        self.assertEqual(socket.registered, 0)

    def test_partOfAnAnswer(self) -> None:
        """
        What the socket does not take of an answer waits for the reactor,
        which sends it next, in order.
        """
        socket = _Watching(self.reactor)
        socket.takes = 3
        self.server = TestPeer()
        self.server.configure(ConnectionSettings(role="server"), Clock())
        self.server.makeConnection(socket)
        self.server.dataReceived(self.hello)
        self.assertEqual({len(piece) for piece in socket.sent}, {3})
        self.assertIn(socket, self.reactor.getWriters())
        socket.takes = None
        socket.doWrite()
        self.assertNotIn(socket, self.reactor.getWriters())
        self.client.dataReceived(b"".join(socket.sent))
        self.assertFalse(self.client.transport.disconnecting)  # type: ignore[union-attr]

    def test_behindWhatWaits(self) -> None:
        """
        An answer goes behind what the socket already holds, unsent: not
        straight to the socket.
        """
        socket = _Watching(self.reactor)
        self.server = TestPeer()
        self.server.configure(ConnectionSettings(role="server"), Clock())
        self.server.makeConnection(socket)
        socket.write(b"first")
        self.server.dataReceived(self.hello)
        self.assertTrue(b"".join(socket.sent).startswith(b"first"))

    def test_otherOutputWaits(self) -> None:
        """
        Output that does not answer a read (a close asked for by the
        program) is left to the reactor's next turn.
        """
        self.openBoth()
        self.assertNotIn(self.socket, self.reactor.getWriters())
        self.server.close()
        self.assertEqual(self.socket.sent, [])
        self.assertIn(self.socket, self.reactor.getWriters())
        self.socket.doWrite()
        self.assertTrue(self.socket.sent)

    def test_closingTransport(self) -> None:
        """
        A transport that is closing is left to the reactor, which acts on
        what its C{doWrite} returns.
        """
        self.socket.disconnecting = True
        self.server.dataReceived(self.hello)
        self.assertEqual(self.socket.sent, [])


class _Counting(_Socket):
    """
    A L{_Socket} that tells what it holds, and the most it held; and may
    take only so many bytes per send (a slow network).
    """

    mostHeld = 0
    takes: int | None = None

    def writeSomeData(self, data: bytes) -> int:
        if self.takes is not None:
            data = data[: self.takes]
        return super().writeSomeData(data)

    def write(self, data: bytes) -> None:
        super().write(data)
        self.mostHeld = max(self.mostHeld, self.held())

    def held(self) -> int:
        """
        @return: how many bytes it was given to send and has not sent.
        """
        return len(self.dataBuffer) - self.offset + self._tempDataLen


if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


class _OutputFlowMixin(_Base):
    """
    What holds for the protocol as the producer of the socket under its
    transport, with or without TLS.  Subclasses connect C{client} to
    C{socket} and C{peer} to C{peerTransport}, and name the protocols that
    read each side's bytes (C{clientWire}, C{peerWire}: the TLS layers, if
    any, which write through the aggregators of C{tlsClock}).
    """

    # A message much larger than Twisted's buffer (64 KiB) and than one
    # take of proton's output (256 KiB).
    body = bytes(range(256)) * 4096

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.socket = _Counting(self.reactor)
        self.tlsClock = Clock()
        self.client = AMQPConnection()
        self.client.configure(ConnectionSettings(mechanisms=("ANONYMOUS",)), Clock())
        self.peer = TestPeer()
        self.peer.configure(ConnectionSettings(role="server"), Clock())
        self.peerTransport = StringTransport()
        self.clientWire: IProtocol = self.client
        self.peerWire: IProtocol = self.peer

    def toPeer(self) -> object:
        """
        Have the socket send what it holds, and the peer read it.

        @return: what the socket's last C{doWrite} returned.
        """
        self.tlsClock.advance(0)
        result = self.drain()
        data = b"".join(self.socket.sent[self.delivered :])
        self.delivered = len(self.socket.sent)
        if data:
            self.peerWire.dataReceived(data)
        return result

    delivered = 0

    def toClient(self) -> None:
        """
        Have the client read what the peer wrote.
        """
        self.tlsClock.advance(0)
        data = self.peerTransport.value()
        self.peerTransport.clear()
        if data:
            self.clientWire.dataReceived(data)

    def exchange(self) -> None:
        """
        Carry bytes both ways until neither side has more to say.
        """
        for _ in range(50):
            self.assertIsNone(self.toPeer())
            self.toClient()
            self.tlsClock.advance(0)
            if (
                not self.peerTransport.value()
                and self.socket.held() == 0
                and self.delivered == len(self.socket.sent)
            ):
                return
        self.fail("the two sides kept talking")

    def drain(self) -> object:
        """
        Write as the reactor does: while the socket waits to.

        @return: what its last C{doWrite} returned.
        """
        result = None
        while result is None and self.socket in self.reactor.getWriters():
            result = self.socket.doWrite()
        return result

    def untilClosed(self) -> object:
        """
        Carry bytes both ways until the socket closes (or 50 rounds).

        @return: what the socket's last C{doWrite} returned.
        """
        result = None
        for _ in range(50):
            result = self.toPeer()
            if result is not None:
                break
            self.toClient()
        return result

    def test_socketClosedWhenFull(self) -> None:
        """
        A socket closed (by whoever uses it, or by TLS after its shutdown or
        a failed handshake) while its buffer is full closes once it has sent
        it, also when proton then has nothing more: Twisted asks a paused
        producer for more instead of closing.
        """
        self.exchange()
        self.socket.write(b"x" * (self.socket.bufferSize + 1))
        self.assertTrue(self.socket.producerPaused)
        self.socket.loseConnection()
        self.assertIs(self.drain(), CONNECTION_DONE)

    def test_heldByProton(self) -> None:
        """
        A message sent by the program (not in answer to a read) is handed to
        the transport a piece at a time as the socket sends: the socket never
        holds much more than its buffer; the peer gets it whole.
        """
        self.exchange()
        sender = self.client.sender("q")
        self.exchange()
        d = self.successResultOf(sender).send(Message(body=self.body))
        self.tlsClock.advance(0)
        engine = self.client.engine
        assert engine is not None
        self.assertGreater(engine.transport.pending(), 0)
        self.assertLessEqual(self.socket.held(), self.socket.bufferSize + 256 * 1024)
        self.exchange()
        self.assertEqual([m.body for _, m in self.peer.received], [self.body])
        self.successResultOf(d)
        self.assertLessEqual(self.socket.mostHeld, self.socket.bufferSize + 256 * 1024)

    def test_heldInAnAnswer(self) -> None:
        """
        A large message that waited for the peer's credit, and goes out in
        answer to the read that brought it, is handed to the transport a
        piece at a time too: however slowly the socket sends, it never holds
        much more than its buffer.
        """
        self.exchange()
        self.socket.takes = 1000
        sending = self.client.send("q", Message(body=self.body))
        self.exchange()
        self.assertEqual([m.body for _, m in self.peer.received], [self.body])
        self.successResultOf(sending)
        self.assertLessEqual(self.socket.mostHeld, self.socket.bufferSize + 256 * 1024)

    def test_closedByProtocol(self) -> None:
        """
        The protocol stops being the socket's producer when it closes its
        transport itself; the socket then closes.
        """
        self.exchange()
        self.client.close()
        result = self.untilClosed()
        self.assertIsNone(self.socket.producer)
        self.assertIs(result, CONNECTION_DONE)


class OutputFlowTests(_OutputFlowMixin, SynchronousTestCase):
    """
    On a TCP transport the protocol is the transport's producer: once the
    transport holds more than its buffer's worth, proton keeps the rest of
    the output until the transport has sent what it holds.
    """

    def setUp(self) -> None:
        super().setUp()
        self.client.makeConnection(self.socket)
        self.peer.makeConnection(self.peerTransport)

    def test_registered(self) -> None:
        """
        The protocol is the streaming producer of a TCP transport, and of no
        other kind of transport.
        """
        self.assertIs(self.socket.producer, self.client)
        self.assertTrue(self.socket.streamingProducer)
        self.assertIsNone(self.peerTransport.producer)

    def test_answerToARead(self) -> None:
        """
        An answer to a read larger than the transport's buffer (a message
        that waited for credit) still leaves within that read, when the
        socket takes it all.
        """
        self.exchange()
        d = self.client.send("q", Message(body=self.body))
        self.toPeer()
        self.assertEqual(self.peer.received, [])
        # The peer's Attach and credit: the client sends the message now.
        self.toClient()
        self.assertNotIn(self.socket, self.reactor.getWriters())
        self.assertEqual(self.socket.held(), 0)
        self.assertEqual(self.client.engine.transport.pending(), 0)  # type: ignore[union-attr]
        self.assertLessEqual(self.socket.mostHeld, self.socket.bufferSize + 256 * 1024)
        self.toPeer()
        self.assertEqual([m.body for _, m in self.peer.received], [self.body])
        self.toClient()
        self.successResultOf(d)

    def test_closedByAnother(self) -> None:
        """
        A transport closed by someone else while proton keeps output sends
        that output, then closes.
        """
        body = bytes(900 * 1024)
        self.exchange()
        attached = self.client.sender("q")
        self.exchange()
        self.successResultOf(attached).send(Message(body=body))
        self.assertGreater(self.client.engine.transport.pending(), 0)  # type: ignore[union-attr]
        self.socket.loseConnection()
        self.assertIs(self.drain(), CONNECTION_DONE)
        self.peer.dataReceived(b"".join(self.socket.sent[self.delivered :]))
        self.assertEqual([m.body for _, m in self.peer.received], [body])


class TLSOutputFlowTests(_OutputFlowMixin, SynchronousTestCase):
    """
    Under Twisted's TLS the protocol is the producer of the socket the TLS
    transport writes to (a TLS transport with a producer would close only
    once the producer leaves).
    """

    def setUp(self) -> None:
        super().setUp()
        pki = sharedPKI()
        with open(pki.serverCombined, "rb") as pem:
            serverOptions = PrivateCertificate.loadPEM(pem.read()).options()
        with open(pki.caCert, "rb") as pem:
            authority = Certificate.loadPEM(pem.read())
        clientTLS = TLSMemoryBIOFactory(
            optionsForClientTLS("localhost", trustRoot=authority),
            True,
            Factory.forProtocol(lambda: self.client),
            self.tlsClock,
        )
        serverTLS = TLSMemoryBIOFactory(
            serverOptions, False, Factory.forProtocol(lambda: self.peer), self.tlsClock
        )
        self.clientWire = self.tlsClient = clientTLS.buildProtocol(None)
        self.peerWire = serverTLS.buildProtocol(None)
        self.tlsClient.makeConnection(self.socket)
        self.peerWire.makeConnection(self.peerTransport)

    def test_registered(self) -> None:
        """
        The protocol's transport is the TLS one; its producer registration
        is with the socket under it.
        """
        self.assertIs(self.client.transport, self.tlsClient)
        self.assertIs(self.socket.producer, self.client)
        self.assertIsNone(self.peerTransport.producer)

    def test_closedByAnother(self) -> None:
        """
        A TLS transport closed by someone else while proton keeps output
        closes once the TLS shutdown is done.
        """
        self.exchange()
        attached = self.client.sender("q")
        self.exchange()
        self.successResultOf(attached).send(Message(body=self.body))
        self.tlsClient.loseConnection()
        self.assertIs(self.untilClosed(), CONNECTION_DONE)
