"""
Testing code that uses amqptx, in memory: no sockets, no real time.

Run with ``trial docs/examples/in_memory.py``.
"""

from proton import Disposition, Message
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from amqptx import (
    AMQPConnection,
    ConnectionSettings,
    MessageRejected,
    Outcome,
    ProtocolError,
)
from amqptx.testing import TestPeer, completeConnection, connectPair


def greet(connection, name):
    """
    The application code under test: send a greeting to ``greetings``.
    """
    return connection.send("greetings", Message(body=f"Hello, {name}"))


class GreetTests(SynchronousTestCase):
    """
    ``greet`` against a L{TestPeer}, connected with L{connectPair}.
    """

    def setUp(self):
        """
        Connect an L{AMQPConnection} to a L{TestPeer} in memory.
        """
        self.clock = Clock()
        self.connection = AMQPConnection()
        self.peer = TestPeer()
        self.pump = connectPair(self.peer, self.connection, self.clock)

    def test_accepted(self):
        """
        The peer receives the greeting on its address and accepts it.
        """
        d = greet(self.connection, "Alice")
        self.pump.flush()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        [(address, message)] = self.peer.received
        self.assertEqual((address, message.body), ("greetings", "Hello, Alice"))

    def test_rejected(self):
        """
        When the peer rejects the greeting, the Deferred fails with
        L{MessageRejected}.
        """
        self.peer.outcome = lambda address, message: Disposition.REJECTED
        d = greet(self.connection, "Bob")
        self.pump.flush()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:precondition-failed")

    def test_receive(self):
        """
        A message the peer offers arrives on a receiver of its address.
        """
        d = self.connection.receiver("greetings")
        self.pump.flush()
        receiver = self.successResultOf(d)
        self.peer.offer("greetings", Message(body="Hello, Carol"))
        self.pump.flush()
        received = self.successResultOf(receiver.get())
        self.assertEqual(received.body, "Hello, Carol")
        received.accept()
        self.pump.flush()
        self.assertEqual(self.peer.sentOutcomes, [Disposition.ACCEPTED])

    def test_silentPeer(self):
        """
        With an idle timeout, a peer that stays silent is declared dead once
        the clock has moved past the timeout: time is the test's.
        """
        clock = Clock()
        connection = AMQPConnection()
        settings = ConnectionSettings(
            role="client", mechanisms=("ANONYMOUS",), idleTimeout=10
        )
        pump = connectPair(TestPeer(), connection, clock, clientSettings=settings)
        closed = connection.whenClosed()
        for _ in range(10):
            clock.advance(4)
            pump.flush()  # heartbeats go both ways
        self.assertNoResult(closed)
        clock.advance(11)  # and nothing moves meanwhile
        pump.flush()
        failure = self.failureResultOf(closed, ProtocolError)
        self.assertEqual(failure.value.condition, "amqp:resource-limit-exceeded")


class EndpointTests(SynchronousTestCase):
    """
    Endpoint strings, end to end, on a L{MemoryReactorClock}.
    """

    def test_connect(self):
        """
        A client endpoint string connects to a server endpoint string; the
        Deferred fires once the AMQP connection is open.
        """
        reactor = MemoryReactorClock()
        server = serverFromString(reactor, "amqp:5672")
        server.listen(Factory.forProtocol(TestPeer))
        client = clientFromString(reactor, "amqp:broker.example:5672")
        d = client.connect(Factory.forProtocol(AMQPConnection))
        self.assertNoResult(d)
        pump = completeConnection(reactor)
        connection = self.successResultOf(d)
        self.assertTrue(connection.opened)

        closed = connection.close()
        pump.flush()
        self.assertIsNone(self.successResultOf(closed))
