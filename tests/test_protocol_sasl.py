# -*- test-case-name: tests.test_protocol_sasl -*-
"""
L{AMQPProtocol} as a server doing amqptx's own SASL (checked through
C{twisted.cred}), against amqptx's client protocol, in memory.
"""

from __future__ import annotations

import struct

from twisted.cred.checkers import (
    ANONYMOUS,
    AllowAnonymousAccess,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from amqptx import (
    AMQPConnection,
    AuthenticationFailed,
    ConnectionClosed,
    ConnectionSettings,
    ProtocolError,
)
from amqptx._sasl import AMQP_HEADER, SASL_HEADER, SASLConfig
from amqptx.testing import TestPeer, connectPair

_USERS = InMemoryUsernamePasswordDatabaseDontUse(user=b"secret")


def _server(**kw: object) -> ConnectionSettings:
    return ConnectionSettings(role="server", sasl=SASLConfig(**kw))  # type: ignore[arg-type]


def _client(password: str = "secret") -> ConnectionSettings:
    return ConnectionSettings(
        mechanisms=("PLAIN",),
        user="user",
        password=password,
        allowInsecureMechanisms=True,
    )


class ServerSASLTests(SynchronousTestCase):
    """
    The server protocol authenticates with L{amqptx._sasl.SASLGate}.
    """

    def test_plain(self) -> None:
        """
        PLAIN over cleartext (allowed): both sides open; the server knows the
        avatar id.
        """
        clock = Clock()
        client, server = AMQPConnection(), TestPeer()
        opened = client.whenOpened()
        connectPair(
            server,
            client,
            clock,
            _server(checkers=(_USERS,), allowInsecure=True),
            _client(),
        ).flush()
        self.successResultOf(opened)
        self.assertTrue(server.opened)
        self.assertEqual(server.avatarId, b"user")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_wrongPassword(self) -> None:
        """
        A wrong password: after the failure delay the client fails with
        L{AuthenticationFailed}, and so does the server's C{whenClosed}.
        """
        clock = Clock()
        client, server = AMQPConnection(), TestPeer()
        opened = client.whenOpened()
        closed = server.whenClosed()
        pump = connectPair(
            server,
            client,
            clock,
            _server(checkers=(_USERS,), allowInsecure=True),
            _client("wrong"),
        )
        pump.flush()
        self.assertNoResult(opened)
        clock.advance(1.0)
        pump.flush()
        self.failureResultOf(opened, AuthenticationFailed)
        self.failureResultOf(closed, AuthenticationFailed)

    def test_anonymousDefault(self) -> None:
        """
        The default amqptx client (ANONYMOUS) against an anonymous server.
        """
        clock = Clock()
        client, server = AMQPConnection(), TestPeer()
        opened = client.whenOpened()
        connectPair(
            server, client, clock, _server(checkers=(AllowAnonymousAccess(),))
        ).flush()
        self.successResultOf(opened)
        self.assertEqual(server.avatarId, ANONYMOUS)

    def test_timeout(self) -> None:
        """
        The handshake timeout runs on the protocol's clock, one timer for
        SASL and the Open together; when it expires during SASL the
        connection ends as a failed login.
        """
        clock = Clock()
        server = TestPeer()
        server.configure(_server(checkers=(_USERS,), timeout=5.0), clock)
        transport = StringTransport()
        server.makeConnection(transport)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(5.0)
        self.assertTrue(transport.disconnecting)
        server.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(server.whenClosed(), AuthenticationFailed)
        self.assertEqual(clock.getDelayedCalls(), [])


class ServerSASLOverTLSTests(SynchronousTestCase):
    """
    EXTERNAL with a client certificate, through real TLS in memory.
    """

    def test_external(self) -> None:
        """
        The server reads the verified client certificate from Twisted's TLS
        transport and lets the client in with EXTERNAL.
        """
        import dataclasses

        from OpenSSL import crypto
        from twisted.internet.endpoints import clientFromString
        from twisted.internet.protocol import Factory
        from twisted.internet.ssl import Certificate, CertificateOptions
        from twisted.internet.testing import MemoryReactorClock
        from twisted.python.filepath import FilePath

        from amqptx._endpoints import AMQPServerEndpoint
        from amqptx._sasl import ExternalChecker
        from amqptx.testing import completeConnection
        from tests._certs import sharedPKI

        pki = sharedPKI()
        reactor = MemoryReactorClock()

        def load(path: str) -> bytes:
            return FilePath(path).getContent()

        options = CertificateOptions(
            privateKey=crypto.load_privatekey(crypto.FILETYPE_PEM, load(pki.serverKey)),
            certificate=crypto.load_certificate(
                crypto.FILETYPE_PEM, load(pki.serverCert)
            ),
            verify=True,
            caCerts=[Certificate.loadPEM(load(pki.caCert)).original],
            requireCertificate=True,
        )
        endpoint = AMQPServerEndpoint(reactor, 5671, tlsOptions=options)
        endpoint.settings = dataclasses.replace(
            endpoint.settings, sasl=SASLConfig(checkers=(ExternalChecker(),)), tls=True
        )
        servers: list[TestPeer] = []

        def build() -> TestPeer:
            peer = TestPeer()
            servers.append(peer)
            return peer

        endpoint.listen(Factory.forProtocol(build))
        client = clientFromString(
            reactor,
            f"amqps:localhost:5671:trustRoots={pki.caCert}"
            f":certificate={pki.clientCert}:privateKey={pki.clientKey}",
        )
        d = client.connect(Factory.forProtocol(AMQPConnection))
        pump = completeConnection(reactor)
        pump.flush()
        self.successResultOf(d)
        [server] = servers
        self.assertEqual(server.avatarId, b"CN=client,O=amqptx tests")
        self.assertEqual(server.sasl, None)
        pump.clientIO.abortConnection()
        pump.flush()


class HandshakeTimeoutTests(SynchronousTestCase):
    """
    The handshake timeout covers SASL and the AMQP Open together.
    """

    def test_silentAfterHeader(self) -> None:
        """
        A client that sends the AMQP header (anonymous, no SASL) and then
        nothing is closed when the handshake timeout expires, with
        C{amqp:resource-limit-exceeded}.
        """
        from twisted.internet.testing import StringTransport

        from amqptx import ProtocolError

        clock = Clock()
        server = TestPeer()
        server.configure(
            _server(checkers=(AllowAnonymousAccess(),), timeout=5.0), clock
        )
        transport = StringTransport()
        server.makeConnection(transport)
        server.dataReceived(b"AMQP\x00\x01\x00\x00")
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        server.connectionLost(Failure(ConnectionDone()))
        failure = self.failureResultOf(server.whenClosed(), ProtocolError)
        self.assertEqual(failure.value.condition, "amqp:resource-limit-exceeded")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_openedInTime(self) -> None:
        """
        A connection that opens in time leaves no handshake timer.
        """
        clock = Clock()
        client, server = AMQPConnection(), TestPeer()
        connectPair(
            server,
            client,
            clock,
            _server(checkers=(AllowAnonymousAccess(),), timeout=5.0),
            ConnectionSettings(mechanisms=("ANONYMOUS",)),
        )
        self.assertTrue(server.opened)
        self.assertEqual(clock.getDelayedCalls(), [])


class _Conversation:
    """
    A client's writes carried to a server one at a time, each followed by
    the server's answer to the client, over in-memory transports.

    @ivar turns: each write of the client's with the server's answer to it.
    """

    def __init__(self, server: TestPeer, client: AMQPConnection) -> None:
        self.clock = Clock()
        server.configure(_server(checkers=(AllowAnonymousAccess(),)), self.clock)
        client.configure(ConnectionSettings(mechanisms=("ANONYMOUS",)), self.clock)
        self.server, self.client = server, client
        self.toServer, self.toClient = StringTransport(), StringTransport()
        server.makeConnection(self.toClient)
        client.makeConnection(self.toServer)
        self.turns: list[tuple[bytes, bytes]] = []

    def run(self, turns: int = 10) -> None:
        """
        Go on until the client has nothing more to say, or for C{turns}
        writes.
        """
        for _ in range(turns):
            said = self.toServer.value()
            self.toServer.clear()
            if not said:
                return
            self.server.dataReceived(said)
            answer = self.toClient.value()
            self.toClient.clear()
            self.turns.append((said, answer))
            if answer:
                self.client.dataReceived(answer)


class _LooksAtOpen:
    """
    A handler that looks at the client's Open.
    """

    def __init__(self) -> None:
        self.opens = 0

    def on_connection_remote_open(self, event: object) -> None:
        self.opens += 1


class EagerOpenTests(SynchronousTestCase):
    """
    A server behind amqptx's SASL gate sends its AMQP header and Open with
    the SASL outcome, before the client's Open, unless its handler looks at
    the client's Open first.
    """

    def test_openWithOutcome(self) -> None:
        """
        The server's answer to the client's C{sasl-init} is the outcome, the
        AMQP header and the Open; the client's header and Open need no
        answer.  Three round trips are two.
        """
        talk = _Conversation(TestPeer(), AMQPConnection())
        talk.run()
        [(hello, _), (init, outcome), (header, last)] = talk.turns
        self.assertEqual((hello, header[:8]), (SASL_HEADER, AMQP_HEADER))
        (size,) = struct.unpack_from(">I", outcome)
        self.assertEqual(outcome[size : size + 8], AMQP_HEADER)
        self.assertGreater(len(outcome), size + 8)
        self.assertEqual(last, b"")
        self.assertTrue(talk.client.opened and talk.server.opened)

    def test_handlerLooksFirst(self) -> None:
        """
        A handler that looks at the client's Open (it may refuse it, or put
        something in the server's) sees it before the server's Open goes
        out.
        """
        server = TestPeer()
        looks = _LooksAtOpen()
        server.handlers.append(looks)
        talk = _Conversation(server, AMQPConnection())
        talk.run()
        [_, (_, outcome), (_, last)] = talk.turns
        self.assertTrue(outcome.endswith(AMQP_HEADER))
        self.assertNotEqual(last, b"")
        self.assertEqual(looks.opens, 1)
        self.assertTrue(talk.client.opened and talk.server.opened)

    def test_closedAtOnce(self) -> None:
        """
        A client may close as soon as it sees the server's Open: its Open and
        Close then come together, and the server's connection did open
        before it closed.
        """
        talk = _Conversation(TestPeer(), AMQPConnection())
        opened = talk.server.whenOpened()
        talk.run(turns=2)
        self.assertTrue(talk.client.opened)
        closing = talk.client.close()
        talk.run()
        self.assertIs(self.successResultOf(opened), talk.server)
        self.assertTrue(talk.toClient.disconnecting)
        talk.client.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.successResultOf(closing))

    def test_refusedAfterOpen(self) -> None:
        """
        A refusal made after the server's Open went out still closes the
        connection, with its condition, when the client's Open arrives.
        """
        talk = _Conversation(TestPeer(), AMQPConnection())
        closed = talk.client.whenClosed()
        talk.run(turns=2)
        self.assertTrue(talk.client.opened)
        talk.server.refuse("amqp:resource-limit-exceeded", "full")
        talk.run()
        self.assertFalse(talk.server.opened)
        self.assertTrue(talk.toServer.disconnecting)
        talk.client.connectionLost(Failure(ConnectionDone()))
        failure = self.failureResultOf(closed, ConnectionClosed)
        self.assertEqual(failure.value.condition, "amqp:resource-limit-exceeded")

    def test_garbageAfterOutcome(self) -> None:
        """
        What is not the AMQP header after the SASL outcome closes that
        connection with C{amqp:connection:framing-error}.
        """
        for garbage in (SASL_HEADER, b"HTTP/1.1 200 OK\r\n", b"AMQP\x00\x01\x00\x01"):
            talk = _Conversation(TestPeer(), AMQPConnection())
            closed = talk.server.whenClosed()
            talk.run(turns=2)
            talk.toServer.clear()
            talk.server.dataReceived(garbage)
            self.assertTrue(talk.toClient.disconnecting, garbage)
            talk.server.connectionLost(Failure(ConnectionDone()))
            failure = self.failureResultOf(closed, ProtocolError)
            self.assertEqual(
                failure.value.condition, "amqp:connection:framing-error", garbage
            )
