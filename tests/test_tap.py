# -*- test-case-name: tests.test_tap -*-
"""
Tests for L{amqptx._tap}: the options and service of C{twistd amqp-listen}.
"""

from __future__ import annotations

from proton import Message
from twisted.cred.checkers import AllowAnonymousAccess
from twisted.cred.credentials import UsernamePassword
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    RaisingMemoryReactor,
)
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from amqptx import (
    AMQPClientEndpoint,
    AMQPConnection,
    AMQPServerEndpoint,
    ConnectionClosed,
    OpenRefused,
    Outcome,
)
from amqptx._sasl import ExternalChecker
from amqptx._tap import DEFAULT_LISTEN, AMQPServerService, Options, makeService
from amqptx.broker import Broker, BrokerConfig
from amqptx.testing import IOPump, completeConnection
from tests._certs import sharedPKI


def _options(*arguments: str) -> Options:
    options = Options()
    options.parseOptions(list(arguments))
    return options


class OptionsTests(SynchronousTestCase):
    """
    Command-line options.
    """

    def test_default(self) -> None:
        """
        Without options the server listens on 127.0.0.1:5672, lets everyone in
        anonymously, and advertises an idle timeout of 60 s.
        """
        options = _options()
        self.assertEqual(options["listen"], [DEFAULT_LISTEN])
        [endpoint] = options["endpoints"]
        self.assertIsInstance(endpoint, AMQPServerEndpoint)
        self.assertIn("5672", repr(endpoint))
        self.assertIn("127.0.0.1", repr(endpoint))
        anonymous, external = options.checkers()
        self.assertIsInstance(anonymous, AllowAnonymousAccess)
        self.assertIsInstance(external, ExternalChecker)
        self.assertEqual(options["idle-timeout"], 60.0)

    def test_repeatable(self) -> None:
        """
        C{--listen} can be given several times.
        """
        options = _options("--listen", "amqp:5000", "-l", r"amqp:5001:interface=\:\:1")
        self.assertEqual(len(options["endpoints"]), 2)

    def test_notAMQP(self) -> None:
        """
        An endpoint that is not amqp: or amqps: is a usage error.
        """
        error = self.assertRaises(usage.UsageError, _options, "--listen", "tcp:5000")
        self.assertIn("tcp:5000", str(error))

    def test_badEndpoint(self) -> None:
        """
        A malformed endpoint string is a usage error naming the problem.
        """
        error = self.assertRaises(
            usage.UsageError, _options, "--listen", "amqp:notaport"
        )
        self.assertIn("notaport", str(error))
        error = self.assertRaises(
            usage.UsageError, _options, "--listen", "amqp:5000:colour=red"
        )
        self.assertIn("colour", str(error))

    def test_auth(self) -> None:
        """
        With C{--auth}, the configured checker is used (PLAIN), EXTERNAL is
        added for client certificates, and anonymous access is not allowed.
        """
        checkers = _options("--auth", "memory:alice:secret").checkers()
        self.assertEqual(len(checkers), 2)
        # SASL hands over bytes, as the file: checker expects.
        d = checkers[0].requestAvatarId(UsernamePassword(b"alice", b"secret"))
        self.assertEqual(self.successResultOf(d), b"alice")
        self.assertIsInstance(checkers[-1], ExternalChecker)
        self.assertFalse(any(isinstance(c, AllowAnonymousAccess) for c in checkers))

    def test_allowAnonymous(self) -> None:
        """
        C{--allow-anonymous} adds anonymous access to C{--auth}.
        """
        checkers = _options("--auth", "memory:a:b", "--allow-anonymous").checkers()
        self.assertTrue(any(isinstance(c, AllowAnonymousAccess) for c in checkers))

    def test_badNumbers(self) -> None:
        """
        A number option with a bad value is a usage error naming it.
        """
        for option, value in [
            ("--idle-timeout", "soon"),
            ("--idle-timeout", "0"),
            ("--max-connections", "-1"),
            ("--max-frame-size", "big"),
            ("--handshake-timeout", "never"),
        ]:
            error = self.assertRaises(usage.UsageError, _options, option, value)
            self.assertIn(option, str(error))


class ServiceTests(SynchronousTestCase):
    """
    L{AMQPServerService}, in memory.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.broker = Broker()

    def service(self, maxConnections: int | None = None) -> AMQPServerService:
        service = AMQPServerService(
            [AMQPServerEndpoint(self.reactor, 5672)],
            self.broker.factory(),
            self.reactor,
            maxConnections=maxConnections,
        )
        service.startService()
        return service

    def connect(self) -> tuple[Deferred[AMQPConnection], IOPump]:
        d = AMQPClientEndpoint(self.reactor, "127.0.0.1", 5672).connect(
            Factory.forProtocol(AMQPConnection)
        )
        pump = completeConnection(self.reactor)
        return d, pump  # type: ignore[return-value]

    def test_listens(self) -> None:
        """
        Starting the service listens on every endpoint; clients connect and
        send.
        """
        service = self.service()
        self.assertEqual(len(service.ports), 1)
        d, pump = self.connect()
        connection = self.successResultOf(d)
        sent = connection.send("q", Message(body=1))
        pump.flush()
        self.assertIs(self.successResultOf(sent), Outcome.ACCEPTED)

    def test_cannotListen(self) -> None:
        """
        A port that cannot be opened stops the start with L{SystemExit} and a
        one-line message.
        """
        reactor = RaisingMemoryReactor(
            listenException=CannotListenError("", 5672, OSError("in use"))
        )
        service = AMQPServerService(
            [AMQPServerEndpoint(reactor, 5672)], self.broker.factory(), self.reactor
        )
        error = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertIn("5672", str(error))
        self.assertNotIn("\n", str(error))

    def test_maxConnections(self) -> None:
        """
        Connections beyond the limit are refused at Open with
        C{amqp:resource-limit-exceeded}; the others keep working.
        """
        self.service(maxConnections=1)
        first, firstPump = self.connect()
        second, secondPump = self.connect()
        failure = self.failureResultOf(second, OpenRefused)
        self.assertEqual(failure.value.condition, "amqp:resource-limit-exceeded")
        connection = self.successResultOf(first)
        sent = connection.send("q", Message(body=1))
        firstPump.flush()
        self.successResultOf(sent)

    def test_closedConnectionsLeave(self) -> None:
        """
        A connection that has ended no longer counts against the limit, nor
        is it kept.
        """
        service = self.service(maxConnections=1)
        first, firstPump = self.connect()
        closed = self.successResultOf(first).close()
        firstPump.flush()
        self.successResultOf(closed)
        self.assertEqual(service._factory.live, set())
        second, secondPump = self.connect()
        self.successResultOf(second)

    def test_stopClosesConnections(self) -> None:
        """
        Stopping closes every connection with C{amqp:connection:forced}, and
        fires once they have ended, leaving no timer behind.
        """
        service = self.service()
        d, pump = self.connect()
        connection = self.successResultOf(d)
        closed = connection.whenClosed()
        stopped = service.stopService()
        pump.flush()
        failure = self.failureResultOf(closed, ConnectionClosed)
        self.assertEqual(failure.value.condition, "amqp:connection:forced")
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(service.ports, [])

    def test_stopTimeout(self) -> None:
        """
        A client that does not answer the Close is dropped after the close
        timeout, and stopping completes.
        """
        service = self.service()
        d, pump = self.connect()
        self.successResultOf(d)
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.reactor.advance(5)
        pump.flush()
        self.successResultOf(stopped)

    def test_makeService(self) -> None:
        """
        L{makeService} serves every endpoint with the options' settings.
        """
        options = _options(
            "--listen",
            "amqp:5000",
            "--listen",
            "amqp:5001:idleTimeout=5",
            "--idle-timeout",
            "30",
            "--container-id",
            "me",
        )
        service = makeService(options)
        assert isinstance(service, AMQPServerService)
        settings = [
            endpoint.settings
            for endpoint in service._endpoints
            if isinstance(endpoint, AMQPServerEndpoint)
        ]
        self.assertEqual([s.idleTimeout for s in settings], [30.0, 5.0])
        self.assertEqual([s.containerId for s in settings], ["me", "me"])


class StartLineTests(SynchronousTestCase):
    """
    The line L{makeService} logs says who gets in.
    """

    def startLine(self, *listen: str) -> str:
        """
        @param listen: endpoint strings, each given with C{--listen}.
        @return: the start line of a service made with them.
        """
        events = EventLoggingObserver()
        globalLogPublisher.addObserver(events)
        self.addCleanup(globalLogPublisher.removeObserver, events)
        arguments = [a for endpoint in listen for a in ("--listen", endpoint)]
        makeService(_options(*arguments))
        lines = [formatEvent(e) for e in events]
        [line] = [line for line in lines if line.startswith("amqp-listen: ")]
        return line

    def amqps(self, port: int, verified: bool) -> str:
        """
        @return: an C{amqps:} endpoint string with the test PKI, with
            C{caCerts=} if C{verified}.
        """
        pki = sharedPKI()
        string = f"amqps:{port}:privateKey={pki.serverKey}:certKey={pki.serverCert}"
        return f"{string}:caCerts={pki.caCert}" if verified else string

    def test_anonymous(self) -> None:
        """
        Without C{--auth}, everyone gets in anonymously, also over TLS
        without client certificates.
        """
        line = self.startLine("amqp:5000", self.amqps(5001, verified=False))
        self.assertIn("everyone gets in anonymously", line)
        self.assertNotIn("caCerts", line)

    def test_clientCertificates(self) -> None:
        """
        Without C{--auth}, on endpoints with C{caCerts=} only clients with a
        certificate signed by those get in, and the line says so.
        """
        line = self.startLine(self.amqps(5001, verified=True))
        self.assertIn("only clients with a certificate signed by caCerts=", line)
        self.assertNotIn("everyone", line)

    def test_mixed(self) -> None:
        """
        With endpoints of both kinds, the line names those that verify.
        """
        line = self.startLine("amqp:5000", self.amqps(5001, verified=True))
        self.assertIn("only clients with a certificate signed by caCerts=", line)
        self.assertIn("on <AMQPServerEndpoint amqps:5001:", line)
        self.assertIn("everyone else gets in anonymously", line)


class BrokerOptionsTests(SynchronousTestCase):
    """
    The options of the broker's semantics.
    """

    def test_defaults(self) -> None:
        """
        By default addresses are created on first use and C{topic/} ones are
        topics, with no limits.
        """
        config = _options()["broker"]
        self.assertEqual(config, BrokerConfig())

    def test_options(self) -> None:
        """
        Every option reaches the broker's configuration.
        """
        permissions = FilePath(self.mktemp())
        permissions.setContent(b"alice send orders\n")
        config = _options(
            "--no-auto-create",
            "--queue",
            "orders",
            "--queue",
            "news/x",
            "--multicast-prefix",
            "news/",
            "--dead-letter",
            "dlq",
            "--max-deliveries",
            "3",
            "--max-queue-depth",
            "100",
            "--max-message-size",
            "65536",
            "--permissions",
            permissions.path,
        )["broker"]
        self.assertFalse(config.autoCreate)
        self.assertEqual(config.queues, ("orders", "news/x"))
        self.assertEqual(config.multicastPrefix, "news/")
        self.assertEqual(config.deadLetterAddress, "dlq")
        self.assertEqual(
            (config.maxDeliveries, config.maxQueueDepth, config.maxMessageSize),
            (3, 100, 65536),
        )
        assert config.permissions is not None
        self.assertTrue(config.permissions.allows(b"alice", "send", "orders"))
        self.assertFalse(config.permissions.allows(b"alice", "receive", "orders"))

    def test_noMulticast(self) -> None:
        """
        An empty multicast prefix makes every address a queue.
        """
        config = _options("--multicast-prefix", "")["broker"]
        self.assertIsNone(config.multicastPrefix)

    def test_badPermissions(self) -> None:
        """
        A malformed permissions file, or a missing one, is a usage error
        naming the problem.
        """
        permissions = FilePath(self.mktemp())
        permissions.setContent(b"alice write orders\n")
        error = self.assertRaises(
            usage.UsageError, _options, "--permissions", permissions.path
        )
        self.assertIn("line 1", str(error))
        error = self.assertRaises(
            usage.UsageError, _options, "--permissions", "/nonexistent/perms"
        )
        self.assertIn("/nonexistent/perms", str(error))

    def test_badLimit(self) -> None:
        """
        A limit that is not a positive whole number is a usage error.
        """
        for option in ("--max-deliveries", "--max-queue-depth", "--max-message-size"):
            error = self.assertRaises(usage.UsageError, _options, option, "0")
            self.assertIn(option, str(error))
