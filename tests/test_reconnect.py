# -*- test-case-name: tests.test_reconnect -*-
"""
Tests for L{amqptx._reconnect}: the reconnect policies, L{EndpointConnector}
and L{ReconnectingAMQPClientFactory}, in memory on a L{Clock} or a
L{MemoryReactorClock}, with hand-written fake endpoints whose Deferreds the
tests fire themselves.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from proton import Condition, Message
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionDone,
    ConnectionRefusedError,
    NotConnectingError,
    TimeoutError,
)
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import (
    ClientFactory,
    Factory,
    Protocol,
    ReconnectingClientFactory,
)
from twisted.internet.task import Clock
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransport,
)
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

import amqptx
from amqptx import (
    AMQPClientEndpoint,
    AMQPClientService,
    AMQPConnection,
    AuthenticationFailed,
    ConnectionClosed,
    ConnectionSettings,
    IAMQPProtocol,
    OpenRefused,
    Outcome,
)
from amqptx._reconnect import (
    Backoff,
    Delays,
    EndpointAddress,
    EndpointConnector,
    IReconnectPolicy,
    ReconnectingAMQPClientFactory,
    _nextDelay,
    reconnectPolicy,
)
from amqptx.testing import IOPump, TestPeer, completeConnection, connectPair

_NAMESPACE = "amqptx._reconnect.ReconnectingAMQPClientFactory"
_ADDRESS = IPv4Address("TCP", "127.0.0.1", 5672)
_DEFAULT_DELAYS = [0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10, 10]


# Fakes ------------------------------------------------------------------------------


class FakeAttempt:
    """
    One C{connect()} made on a L{FakeEndpoint}; the test decides how it ends.

    @ivar factory: the factory given to C{connect()}.
    @ivar deferred: the Deferred C{connect()} returned.
    @ivar cancelled: whether it was cancelled.
    """

    def __init__(self, endpoint: FakeEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.cancelled = False
        self.deferred: Deferred[Any] = Deferred(self._cancel)

    def _cancel(self, d: Deferred[Any]) -> None:
        self.cancelled = True
        d.errback(ConnectingCancelledError(self.endpoint.name))

    def fail(self, reason: Exception | None = None) -> None:
        """
        Fail the attempt.

        @param reason: the failure; a refused connection by default.
        """
        self.deferred.errback(reason or ConnectionRefusedError())

    def succeed(self) -> tuple[Any, StringTransport]:
        """
        Connect as Twisted's TCP endpoints do: build the protocol, connect it
        to a transport and fire with it.

        @return: the protocol the factory built and its transport.
        """
        protocol = self.factory.buildProtocol(_ADDRESS)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.deferred.callback(protocol)
        return protocol, transport

    def openWith(
        self,
        peer: TestPeer,
        clock: Clock,
        clientSettings: ConnectionSettings | None = None,
        serverSettings: ConnectionSettings | None = None,
    ) -> IOPump:
        """
        Connect as amqptx's endpoints do: build the protocol, connect it to
        C{peer} in memory, and fire with the protocol once the AMQP
        connection is open (or fail with the reason it did not open).

        @param peer: the server side.
        @param clock: the clock of both.
        @param clientSettings: the client's settings (ANONYMOUS by default).
        @param serverSettings: the peer's settings (its own by default).
        @return: the pump between them.
        """
        protocol = self.factory.buildProtocol(_ADDRESS)
        assert protocol is not None
        amqp = IAMQPProtocol(protocol)
        pump = connectPair(
            peer,
            amqp,
            clock,
            serverSettings=serverSettings or peer.settings,
            clientSettings=clientSettings,
        )
        amqp.whenOpened().addCallbacks(self.deferred.callback, self.deferred.errback)
        pump.flush()
        return pump


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    A client endpoint that records each C{connect()} as a L{FakeAttempt}.

    @ivar name: the name in its C{repr}.
    @ivar attempts: every attempt, in order.
    """

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.attempts: list[FakeAttempt] = []

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Record an attempt.

        @param protocolFactory: the factory.
        @return: the attempt's Deferred.
        """
        attempt = FakeAttempt(self, protocolFactory)
        self.attempts.append(attempt)
        return attempt.deferred

    @property
    def last(self) -> FakeAttempt:
        """
        The latest attempt.
        """
        return self.attempts[-1]

    def __repr__(self) -> str:
        return f"<FakeEndpoint {self.name}>"


class Refusing(TestPeer):
    """
    A peer that accepts the TCP connection and refuses the AMQP Open.
    """

    def on_connection_remote_open(self, event: object) -> None:
        """
        Answer the Open with a Close carrying an error.

        @param event: proton's event.
        """
        self.connection.condition = Condition("amqp:not-found", "no such host")
        self.connection.close()


class RecordingPolicy:
    """
    A reconnect policy that is not declared as one: it has C{reset} and
    C{next}, and records their calls.

    @ivar calls: C{"reset"} and C{"next"}, in the order called.
    """

    def __init__(self, delays: Sequence[object]) -> None:
        self._delays = list(delays)
        self._position = 0
        self.calls: list[str] = []

    def reset(self) -> None:
        """
        Start over.
        """
        self.calls.append("reset")
        self._position = 0

    def next(self) -> Any:
        """
        @return: the next of the delays, then L{None}.
        """
        self.calls.append("next")
        if self._position >= len(self._delays):
            return None
        value = self._delays[self._position]
        self._position += 1
        return value


@implementer(IConnector)
class RecordingConnector:
    """
    A connector like C{reactor.connectTCP}'s, for driving a factory by hand.

    @ivar connects: how many times C{connect} was called.
    @ivar stops: how many times C{stopConnecting} was called.
    """

    def __init__(self) -> None:
        self.connects = 0
        self.stops = 0

    def connect(self) -> None:
        """
        Count a connection attempt.
        """
        self.connects += 1

    def stopConnecting(self) -> None:
        """
        Count a stop.
        """
        self.stops += 1

    def disconnect(self) -> None:
        """
        Nothing to disconnect.
        """

    def getDestination(self) -> IAddress:
        """
        @return: the address it would connect to.
        """
        return IPv4Address("TCP", "broker.example", 5672)


class RecordingFactory(ClientFactory):
    """
    A client factory that records what its connector tells it.

    @ivar calls: the names of the calls, in order.
    @ivar reasons: the failures given to C{clientConnectionFailed} and
        C{clientConnectionLost}.
    """

    protocol = Protocol
    noisy = False

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.reasons: list[Failure] = []

    def doStart(self) -> None:
        """
        Record it.
        """
        self.calls.append("doStart")

    def doStop(self) -> None:
        """
        Record it.
        """
        self.calls.append("doStop")

    def startedConnecting(self, connector: IConnector) -> None:
        """
        Record it.

        @param connector: the connector.
        """
        self.calls.append("startedConnecting")

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        """
        Record it.

        @param connector: the connector.
        @param reason: why.
        """
        self.calls.append("clientConnectionFailed")
        self.reasons.append(reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        """
        Record it.

        @param connector: the connector.
        @param reason: why.
        """
        self.calls.append("clientConnectionLost")
        self.reasons.append(reason)


def anonymousServer() -> ConnectionSettings:
    """
    @return: the settings of a server offering only SASL ANONYMOUS.
    """
    return ConnectionSettings(role="server", mechanisms=("ANONYMOUS",))


def externalClient() -> ConnectionSettings:
    """
    @return: the settings of a client allowing only SASL EXTERNAL.
    """
    return ConnectionSettings(role="client", mechanisms=("EXTERNAL",))


def factoryEvents(observer: EventLoggingObserver) -> list[LogEvent]:
    """
    @param observer: the test's log observer.
    @return: the events the reconnecting factory logged.
    """
    return [e for e in observer if e.get("log_namespace") == _NAMESPACE]


def _values(event: LogEvent) -> Iterator[str]:
    yield formatEvent(event)
    for key, value in event.items():
        yield str(key)
        yield repr(value)
        yield str(value)


# Policies -----------------------------------------------------------------------------


class BackoffTests(SynchronousTestCase):
    """
    L{Backoff}: AMQ Python's default delays.
    """

    def test_interface(self) -> None:
        """
        L{Backoff} and L{Delays} provide L{IReconnectPolicy}.
        """
        self.assertTrue(verifyObject(IReconnectPolicy, Backoff()))
        self.assertTrue(verifyObject(IReconnectPolicy, Delays([1])))

    def test_defaultSequence(self) -> None:
        """
        The delays are 0, then 0.1 doubling up to 10 seconds, forever.
        """
        backoff = Backoff()
        self.assertEqual([backoff.next() for _ in range(11)], _DEFAULT_DELAYS)
        self.assertEqual([backoff.next() for _ in range(100)], [10.0] * 100)

    def test_reset(self) -> None:
        """
        L{Backoff.reset} starts the sequence over from 0.
        """
        backoff = Backoff()
        for _ in range(5):
            backoff.next()
        backoff.reset()
        self.assertEqual([backoff.next() for _ in range(3)], [0, 0.1, 0.2])

    def test_attempts(self) -> None:
        """
        With C{attempts}, L{Backoff.next} returns L{None} once that many
        delays have been handed out, until reset.
        """
        backoff = Backoff(attempts=3)
        self.assertEqual([backoff.next() for _ in range(5)], [0, 0.1, 0.2, None, None])
        backoff.reset()
        self.assertEqual(backoff.next(), 0)
        self.assertIsNone(Backoff(attempts=0).next())

    def test_parameters(self) -> None:
        """
        C{initial}, C{factor} and C{maximum} shape the sequence.
        """
        backoff = Backoff(initial=1, factor=3, maximum=20)
        self.assertEqual([backoff.next() for _ in range(6)], [0, 1, 3, 9, 20, 20])
        self.assertEqual(
            (backoff.initial, backoff.factor, backoff.maximum, backoff.attempts),
            (1.0, 3.0, 20.0, None),
        )

    def test_jitterBounds(self) -> None:
        """
        With C{jitter}, each delay is spread by at most that fraction either
        way, as the injected C{random} says; the first delay stays 0 and the
        sequence under the jitter is unchanged.
        """
        values = itertools.cycle([0.0, 0.25, 0.5, 0.75, 0.999999])
        backoff = Backoff(jitter=0.2, random=lambda: next(values))
        plain = Backoff()
        for _ in range(30):
            jittered = backoff.next()
            base = plain.next()
            assert jittered is not None and base is not None
            self.assertGreaterEqual(jittered, base * 0.8)
            self.assertLessEqual(jittered, base * 1.2)
        self.assertEqual(backoff.jitter, 0.2)

    def test_jitterExtremes(self) -> None:
        """
        C{random()} returning 0 gives the smallest delay, 0.5 the delay
        itself, and values near 1 the largest.
        """
        values = iter([0.0, 0.5, 0.0])
        backoff = Backoff(initial=1, jitter=0.5, random=lambda: next(values))
        self.assertEqual(
            [backoff.next() for _ in range(4)],
            [0, 0.5, 2.0, 2.0],
        )

    def test_configurationReadOnly(self) -> None:
        """
        The configuration cannot be changed after construction.
        """
        backoff = Backoff()
        self.assertRaises(AttributeError, setattr, backoff, "maximum", 1)

    def test_invalid(self) -> None:
        """
        Values out of range are L{ValueError}s, values of the wrong type
        L{TypeError}s.
        """
        badValues: list[tuple[str, object]] = [
            ("initial", -1),
            ("factor", 0.5),
            ("maximum", 0.01),
            ("jitter", 1.5),
            ("jitter", -0.1),
            ("attempts", -1),
            ("initial", float("nan")),
            ("maximum", float("inf")),
        ]
        for name, value in badValues:
            self.assertRaises(ValueError, Backoff, **{name: value})
        badTypes: list[tuple[str, object]] = [
            ("attempts", 1.5),
            ("initial", "1"),
            ("factor", True),
        ]
        for name, value in badTypes:
            self.assertRaises(TypeError, Backoff, **{name: value})

    def test_repr(self) -> None:
        """
        The C{repr} shows the configuration.
        """
        self.assertEqual(
            repr(Backoff(attempts=3)),
            "Backoff(initial=0.1, factor=2.0, maximum=10.0, attempts=3, jitter=0.0)",
        )


class DelaysTests(SynchronousTestCase):
    """
    L{Delays}: a given sequence of delays.
    """

    def test_list(self) -> None:
        """
        The delays of a list, then L{None}; L{Delays.reset} starts over.
        """
        delays = Delays([1, 2.5, 0])
        self.assertEqual([delays.next() for _ in range(5)], [1, 2.5, 0, None, None])
        delays.reset()
        self.assertEqual([delays.next() for _ in range(2)], [1, 2.5])

    def test_infiniteIterable(self) -> None:
        """
        An infinite iterable is read lazily, and L{Delays.reset} starts over
        from its first delay.
        """
        delays = Delays(itertools.count(1))
        self.assertEqual([delays.next() for _ in range(3)], [1, 2, 3])
        delays.reset()
        self.assertEqual([delays.next() for _ in range(4)], [1, 2, 3, 4])

    def test_generator(self) -> None:
        """
        A generator can be read only once, but L{Delays.reset} still starts
        over.
        """
        delays = Delays(x for x in [3, 4])
        self.assertEqual([delays.next() for _ in range(3)], [3, 4, None])
        delays.reset()
        self.assertEqual([delays.next() for _ in range(3)], [3, 4, None])

    def test_negative(self) -> None:
        """
        A negative delay is a L{ValueError}: at once in a list, when used
        in another iterable.
        """
        self.assertRaises(ValueError, Delays, [1, -1])
        delays = Delays(iter([1, -1]))
        self.assertEqual(delays.next(), 1)
        self.assertRaises(ValueError, delays.next)

    def test_notDelays(self) -> None:
        """
        Text, mappings, sets, numbers and lists of non-numbers are
        L{TypeError}s.
        """
        for value in ["12", b"12", {1: 2}, {1, 2}, 5, [1, "a"], [None]]:
            self.assertRaises(TypeError, Delays, value)

    def test_noneInIterable(self) -> None:
        """
        L{None} among the delays of an iterable is a L{TypeError} when
        reached (the end of the delays is the end of the iterable).
        """
        values: list[Any] = [1, None]
        delays = Delays(iter(values))
        self.assertEqual(delays.next(), 1)
        self.assertRaises(TypeError, delays.next)

    def test_repr(self) -> None:
        """
        The C{repr} shows the delays.
        """
        self.assertEqual(repr(Delays((1, 2))), "Delays([1, 2])")


class ReconnectPolicyTests(SynchronousTestCase):
    """
    L{reconnectPolicy} reads C{reconnect=} as AMQ Python does.
    """

    def test_default(self) -> None:
        """
        L{True} and L{None} give the default L{Backoff}.
        """
        for value in [True, None]:
            policy = reconnectPolicy(value)
            assert policy is not None
            self.assertIsInstance(policy, Backoff)
            self.assertEqual([policy.next() for _ in range(11)], _DEFAULT_DELAYS)

    def test_false(self) -> None:
        """
        L{False} means no reconnect: no policy.
        """
        self.assertIsNone(reconnectPolicy(False))

    def test_object(self) -> None:
        """
        An object with C{reset} and C{next} is used as it is, declared as
        L{IReconnectPolicy} or not.
        """
        policy = RecordingPolicy([1])
        self.assertIs(reconnectPolicy(policy), policy)
        backoff = Backoff()
        self.assertIs(reconnectPolicy(backoff), backoff)

    def test_sequence(self) -> None:
        """
        A list or tuple of delays becomes L{Delays}.
        """
        for value in [[0, 1, 5], (0, 1, 5)]:
            policy = reconnectPolicy(value)
            assert policy is not None
            self.assertIsInstance(policy, Delays)
            self.assertEqual([policy.next() for _ in range(4)], [0, 1, 5, None])

    def test_protonBackoff(self) -> None:
        """
        Proton's own C{Backoff} (an endless iterable of delays in proton
        0.40) works: 0, 0.1, 0.2 ... and reset starts over.
        """
        from proton.reactor import Backoff as ProtonBackoff

        policy = reconnectPolicy(ProtonBackoff())
        assert policy is not None
        self.assertEqual([policy.next() for _ in range(11)], _DEFAULT_DELAYS)
        policy.reset()
        self.assertEqual(policy.next(), 0)

    def test_garbage(self) -> None:
        """
        Anything else is a L{TypeError} naming what was given.
        """
        for value in [5, 0, 1.5, "amqp://h", {"a": 1}, object()]:
            error = self.assertRaises(TypeError, reconnectPolicy, value)
            self.assertIn(repr(value), str(error))

    def test_halfAPolicy(self) -> None:
        """
        An object whose C{next} is not callable is not a policy.
        """

        class Half:
            next = 3

            def reset(self) -> None:
                """
                Nothing.
                """

        self.assertRaises(TypeError, reconnectPolicy, Half())

    def test_badDelaysAtUseTime(self) -> None:
        """
        A policy's negative, infinite or NaN delay is a L{ValueError} when
        it is used, and something that is not a number a L{TypeError}.
        """

        def policy(*delays: object) -> IReconnectPolicy:
            policy = reconnectPolicy(RecordingPolicy(delays))
            assert policy is not None
            return policy

        for value in [-1, -0.5, float("inf"), float("nan")]:
            self.assertRaises(ValueError, _nextDelay, policy(value))
        for bad in ["1", True]:
            self.assertRaises(TypeError, _nextDelay, policy(bad))
        self.assertIsNone(_nextDelay(policy()))
        self.assertEqual(_nextDelay(policy(2)), 2.0)


# The endpoint connector ---------------------------------------------------------------


class EndpointConnectorTests(SynchronousTestCase):
    """
    L{EndpointConnector} calls a C{ClientFactory} as Twisted's connectors do.
    """

    def setUp(self) -> None:
        self.endpoint = FakeEndpoint()
        self.factory = RecordingFactory()
        self.connector = EndpointConnector(self.endpoint, self.factory)

    def test_interface(self) -> None:
        """
        L{EndpointConnector} provides L{IConnector}, and its destination
        (an L{EndpointAddress}) L{IAddress}, shown as the endpoint's repr.
        """
        self.assertTrue(verifyObject(IConnector, self.connector))
        destination = self.connector.getDestination()
        self.assertTrue(verifyObject(IAddress, destination))
        self.assertEqual(destination, EndpointAddress(self.endpoint))
        self.assertEqual(str(destination), "<FakeEndpoint fake>")
        self.assertEqual(
            repr(self.connector),
            "<EndpointConnector disconnected to <FakeEndpoint fake>>",
        )

    def test_connectFails(self) -> None:
        """
        C{connect} starts the factory and tells it an attempt started; a
        failed attempt is C{clientConnectionFailed}, and the factory is
        stopped when left disconnected.
        """
        self.connector.connect()
        self.assertEqual(self.factory.calls, ["doStart", "startedConnecting"])
        self.assertEqual(self.connector.state, "connecting")
        self.endpoint.last.fail()
        self.assertEqual(self.factory.calls[2:], ["clientConnectionFailed", "doStop"])
        self.factory.reasons[0].trap(ConnectionRefusedError)
        self.assertEqual(self.connector.state, "disconnected")
        self.connector.connect()
        self.assertEqual(self.factory.calls[4:], ["doStart", "startedConnecting"])

    def test_connectedThenLost(self) -> None:
        """
        A connection made is handed to the factory's protocol; its loss is
        C{clientConnectionLost} with the transport's reason.
        """
        self.connector.connect()
        protocol, transport = self.endpoint.last.succeed()
        self.assertEqual(self.connector.state, "connected")
        self.assertIsInstance(protocol.wrapped, Protocol)
        self.assertIs(protocol.wrapped.transport, transport)
        self.assertEqual(self.factory.calls, ["doStart", "startedConnecting"])
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory.calls[2:], ["clientConnectionLost", "doStop"])
        self.factory.reasons[0].trap(ConnectionDone)
        self.assertEqual(self.connector.state, "disconnected")

    def test_reconnectFromFailureKeepsFactoryStarted(self) -> None:
        """
        A factory that connects again from C{clientConnectionFailed} is not
        stopped and started again.
        """

        class Again(RecordingFactory):
            def clientConnectionFailed(
                self, connector: IConnector, reason: Failure
            ) -> None:
                super().clientConnectionFailed(connector, reason)
                if len(self.reasons) < 2:
                    connector.connect()

        factory = Again()
        connector = EndpointConnector(self.endpoint, factory)
        connector.connect()
        self.endpoint.last.fail()
        self.endpoint.last.fail()
        self.assertEqual(
            factory.calls,
            [
                "doStart",
                "startedConnecting",
                "clientConnectionFailed",
                "startedConnecting",
                "clientConnectionFailed",
                "doStop",
            ],
        )

    def test_connectWhileConnecting(self) -> None:
        """
        C{connect} while connecting or connected is a L{RuntimeError}.
        """
        self.connector.connect()
        self.assertRaises(RuntimeError, self.connector.connect)
        self.endpoint.last.succeed()
        self.assertRaises(RuntimeError, self.connector.connect)

    def test_stopConnecting(self) -> None:
        """
        C{stopConnecting} cancels the endpoint's attempt; the factory hears
        C{clientConnectionFailed} with L{ConnectingCancelledError}.  When not
        connecting it is a L{NotConnectingError}.
        """
        self.assertRaises(NotConnectingError, self.connector.stopConnecting)
        self.connector.connect()
        self.connector.stopConnecting()
        self.assertTrue(self.endpoint.last.cancelled)
        self.assertEqual(self.factory.calls[2:], ["clientConnectionFailed", "doStop"])
        self.factory.reasons[0].trap(ConnectingCancelledError)

    def test_stopConnectingFromStartedConnecting(self) -> None:
        """
        A factory may stop the attempt from C{startedConnecting}: the
        endpoint is then not asked to connect.
        """

        class Stopping(RecordingFactory):
            def startedConnecting(self, connector: IConnector) -> None:
                super().startedConnecting(connector)
                connector.stopConnecting()

        factory = Stopping()
        connector = EndpointConnector(self.endpoint, factory)
        connector.connect()
        self.assertEqual(self.endpoint.attempts, [])
        self.assertEqual(
            factory.calls,
            ["doStart", "startedConnecting", "clientConnectionFailed", "doStop"],
        )
        factory.reasons[0].trap(ConnectingCancelledError)

    def test_disconnect(self) -> None:
        """
        C{disconnect} drops a connection, or stops an attempt.
        """
        self.connector.connect()
        self.connector.disconnect()
        self.assertTrue(self.endpoint.last.cancelled)
        self.connector.connect()
        protocol, transport = self.endpoint.last.succeed()
        self.connector.disconnect()
        self.assertTrue(transport.disconnecting)
        self.connector.disconnect()

    def test_attemptFactory(self) -> None:
        """
        The factory the endpoint gets has the application factory's log
        prefix, leaves starting and stopping it to the connector, and
        builds nothing when the application's factory builds nothing.
        """

        class Refusing(RecordingFactory):
            def buildProtocol(self, addr: IAddress | None) -> None:
                return None

        factory = Refusing()
        EndpointConnector(self.endpoint, factory).connect()
        attemptFactory = self.endpoint.last.factory
        self.assertEqual(attemptFactory.logPrefix(), "Refusing")  # type: ignore[attr-defined]
        attemptFactory.doStart()
        attemptFactory.doStop()
        self.assertEqual(factory.calls, ["doStart", "startedConnecting"])
        self.assertIsNone(attemptFactory.buildProtocol(_ADDRESS))

    def test_proxyCopies(self) -> None:
        """
        The protocol proxy can be copied (its attribute forwarding does not
        recurse while the copy is built).
        """
        self.connector.connect()
        protocol, transport = self.endpoint.last.succeed()
        copied = copy.copy(protocol)
        self.assertIs(copied.wrapped, protocol.wrapped)

    def test_disconnectWhenDisconnected(self) -> None:
        """
        C{disconnect} when disconnected does nothing.
        """
        self.connector.disconnect()
        self.assertEqual(self.factory.calls, [])

    def test_severalBuilt(self) -> None:
        """
        When the endpoint built several protocols in one attempt (a failover
        endpoint whose first server failed after the TCP connection, say),
        the connection is the one the endpoint fired with (here the
        application's protocol, as amqptx's endpoints do): only its loss is
        reported.
        """
        self.connector.connect()
        attempt = self.endpoint.last
        built: list[Any] = []
        for _ in range(2):
            protocol = attempt.factory.buildProtocol(_ADDRESS)
            assert protocol is not None
            protocol.makeConnection(StringTransport())
            built.append(protocol)
        first, second = built
        attempt.deferred.callback(first.wrapped)
        second.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory.calls, ["doStart", "startedConnecting"])
        first.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory.calls[2:], ["clientConnectionLost", "doStop"])

    def test_lostBeforeReported(self) -> None:
        """
        A connection lost before the endpoint's Deferred fired is reported
        as lost once it fires.
        """
        self.connector.connect()
        attempt = self.endpoint.last
        protocol = attempt.factory.buildProtocol(_ADDRESS)
        assert protocol is not None
        protocol.makeConnection(StringTransport())
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory.calls, ["doStart", "startedConnecting"])
        attempt.deferred.callback(protocol)
        self.assertEqual(self.factory.calls[2:], ["clientConnectionLost", "doStop"])

    def test_failedAttemptNotLost(self) -> None:
        """
        A connection that ends before the endpoint reported it (an AMQP Open
        refused, say) is reported once, as failed: the endpoint's failure.
        """
        self.connector.connect()
        attempt = self.endpoint.last
        protocol = attempt.factory.buildProtocol(_ADDRESS)
        assert protocol is not None
        protocol.makeConnection(StringTransport())
        protocol.connectionLost(Failure(ConnectionDone()))
        attempt.fail(OpenRefused("amqp:not-found"))
        self.assertEqual(self.factory.calls[2:], ["clientConnectionFailed", "doStop"])
        self.factory.reasons[0].trap(OpenRefused)

    def test_proxyProvidesProtocolInterfaces(self) -> None:
        """
        What the endpoint gets from C{buildProtocol} provides the interfaces
        of the application's protocol, so amqptx's endpoints accept it, and
        passes everything to it.
        """
        factory = ReconnectingAMQPClientFactory(clock=Clock())
        connector = EndpointConnector(self.endpoint, factory)
        connector.connect()
        built: Any = self.endpoint.last.factory.buildProtocol(_ADDRESS)
        self.assertTrue(IAMQPProtocol.providedBy(built))
        self.assertIs(IAMQPProtocol(built), built)
        assert built is not None
        self.assertIsInstance(built.wrapped, AMQPConnection)
        self.assertIs(built.settings, factory.settings)
        self.assertIn("AMQPConnection", repr(built))
        factory.stopTrying()

    def test_withTwistedReconnectingClientFactory(self) -> None:
        """
        Twisted's own C{ReconnectingClientFactory} reconnects through an
        endpoint.
        """
        clock = Clock()
        factory = ReconnectingClientFactory()
        factory.protocol = Protocol
        factory.noisy = False
        factory.clock = clock  # type: ignore[assignment]
        factory.jitter = 0
        connector = EndpointConnector(self.endpoint, factory)
        connector.connect()
        self.endpoint.last.fail()
        self.assertEqual(len(self.endpoint.attempts), 1)
        clock.advance(factory.initialDelay)
        self.assertEqual(len(self.endpoint.attempts), 2)
        factory.stopTrying()
        self.assertTrue(self.endpoint.last.cancelled)


# The reconnecting factory -------------------------------------------------------------


class _FactoryTestCase(SynchronousTestCase):
    """
    Base of the factory tests: a fake endpoint, a clock and a log observer.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = FakeEndpoint("broker")
        self.observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )

    def start(
        self, policy: object = None
    ) -> tuple[ReconnectingAMQPClientFactory, EndpointConnector]:
        """
        Start connecting with a new factory through the fake endpoint.

        @param policy: the factory's policy.
        @return: the factory and its connector.
        """
        factory = ReconnectingAMQPClientFactory(policy, clock=self.clock)
        connector = EndpointConnector(self.endpoint, factory)
        connector.connect()
        self.addCleanup(factory.stopTrying)
        return factory, connector

    def pendingDelays(self) -> list[float]:
        """
        @return: the delays of the clock's pending calls.
        """
        now = self.clock.seconds()
        return [call.getTime() - now for call in self.clock.getDelayedCalls()]

    def loggedDelays(self) -> list[float]:
        """
        @return: the reconnect delays the factory logged.
        """
        return [e["delay"] for e in factoryEvents(self.observer) if "delay" in e]

    def failAndWait(self, reason: Exception | None = None) -> float:
        """
        Fail the latest attempt, and let the reconnect delay pass.

        @param reason: the failure.
        @return: the delay waited.
        """
        self.endpoint.last.fail(reason)
        delay = self.loggedDelays()[-1]
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        attempts = len(self.endpoint.attempts)
        self.clock.advance(delay)
        self.assertEqual(len(self.endpoint.attempts), attempts + 1)
        return delay

    def openConnection(
        self, factory: ReconnectingAMQPClientFactory
    ) -> tuple[AMQPConnection, TestPeer, IOPump]:
        """
        Open the latest attempt's connection with a L{TestPeer}.

        @param factory: the factory.
        @return: the connection, the peer and the pump between them.
        """
        peer = TestPeer()
        pump = self.endpoint.last.openWith(peer, self.clock)
        connection = self.successResultOf(factory.whenConnected())
        self.assertIsInstance(connection, AMQPConnection)
        return connection, peer, pump


class DelayTests(_FactoryTestCase):
    """
    L{ReconnectingAMQPClientFactory} waits as its policy says.
    """

    def test_defaultDelays(self) -> None:
        """
        Failed attempts are retried after 0, 0.1, 0.2 ... 10, 10 seconds.
        """
        self.start()
        delays = [self.failAndWait() for _ in range(11)]
        self.assertEqual(delays, _DEFAULT_DELAYS)
        self.assertEqual(len(self.endpoint.attempts), 12)

    def test_exactClock(self) -> None:
        """
        The reconnect happens exactly after the delay, not before.
        """
        self.start(policy=[2, 4])
        self.endpoint.last.fail()
        self.assertEqual(self.pendingDelays(), [2])
        self.clock.advance(1.5)
        self.assertEqual(len(self.endpoint.attempts), 1)
        self.clock.advance(0.5)
        self.assertEqual(len(self.endpoint.attempts), 2)

    def test_attemptsLimit(self) -> None:
        """
        When the policy gives up, the factory stops: no timer, no attempt,
        and L{ReconnectingAMQPClientFactory.whenConnected} fails with the
        last failure.
        """
        factory, connector = self.start(policy=Backoff(attempts=2))
        waiting = factory.whenConnected()
        self.assertEqual([self.failAndWait() for _ in range(2)], [0, 0.1])
        self.endpoint.last.fail(TimeoutError())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.endpoint.attempts), 3)
        self.failureResultOf(waiting, TimeoutError)
        self.failureResultOf(factory.whenConnected(), TimeoutError)
        self.assertEqual(connector.state, "disconnected")

    def test_noPolicy(self) -> None:
        """
        With C{policy=False} the first failure is the last.
        """
        factory, connector = self.start(policy=False)
        self.endpoint.last.fail()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(factory.whenConnected(), ConnectionRefusedError)

    def test_userPolicy(self) -> None:
        """
        Any object with C{reset} and C{next} is a policy: reset once before
        the first reconnect sequence, then asked for each delay, until it
        says L{None}.
        """
        policy = RecordingPolicy([0.5, 2])
        factory, connector = self.start(policy=policy)
        self.assertEqual(policy.calls, [])
        self.assertEqual([self.failAndWait() for _ in range(2)], [0.5, 2])
        self.assertEqual(policy.calls, ["reset", "next", "next"])
        self.endpoint.last.fail()
        self.assertEqual(policy.calls, ["reset", "next", "next", "next"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(factory.whenConnected(), ConnectionRefusedError)

    def test_userPolicyResetOnOpen(self) -> None:
        """
        A user's policy is reset when a connection opens, and not again when
        it is lost.
        """
        policy = RecordingPolicy([0.5, 2])
        factory, connector = self.start(policy=policy)
        self.failAndWait()
        connection, peer, pump = self.openConnection(factory)
        self.assertEqual(policy.calls, ["reset", "next", "reset"])
        pump.serverIO.loseConnection()
        pump.flush()
        self.assertEqual(policy.calls, ["reset", "next", "reset", "next"])
        self.assertEqual(self.pendingDelays(), [0.5])

    def test_badDelay(self) -> None:
        """
        A negative delay from the policy is a L{ValueError} when used: the
        factory stops and reports it.
        """
        factory, connector = self.start(policy=RecordingPolicy([-1]))
        self.endpoint.last.fail()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(factory.whenConnected(), ValueError)
        [event] = [e for e in factoryEvents(self.observer) if "policy" in e]
        self.assertIn("ValueError", event["reason"])

    def test_resetOnOpenNotOnConnect(self) -> None:
        """
        A server that accepts the connection but refuses the AMQP Open does
        not reset the sequence: the delays keep growing.  An Open does: after
        it the next delay is 0 again.
        """
        factory, connector = self.start()
        for expected in [0, 0.1, 0.2, 0.4]:
            attempt = self.endpoint.last
            attempt.openWith(Refusing(), self.clock)
            events = factoryEvents(self.observer)
            failed = [e for e in events if "failed" in e["log_format"]]
            self.assertIn(OpenRefused.__name__, failed[-1]["reason"])
            self.assertEqual(self.loggedDelays()[-1], expected)
            # The pump's flush advances the clock by 0, enough for the first.
            self.clock.advance(expected if expected else 0)
            self.assertIsNot(self.endpoint.last, attempt)
        attempts = len(self.endpoint.attempts)
        connection, peer, pump = self.openConnection(factory)
        pump.serverIO.loseConnection()
        pump.flush()
        self.assertEqual(self.loggedDelays(), [0, 0.1, 0.2, 0.4, 0])
        self.assertEqual(len(self.endpoint.attempts), attempts + 1)


class StopTests(_FactoryTestCase):
    """
    When L{ReconnectingAMQPClientFactory} does not reconnect.
    """

    def test_peerCloses(self) -> None:
        """
        A connection the peer closes (cleanly) is reconnected at once.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        waiting = factory.whenConnected()
        self.assertIs(self.successResultOf(waiting), connection)
        peer.close()
        # The pump's flush advances the clock by 0: the reconnect is made.
        pump.flush()
        self.assertEqual(self.loggedDelays(), [0])
        self.assertEqual(len(self.endpoint.attempts), 2)
        self.assertIsNone(factory.connection)
        pending = factory.whenConnected()
        self.assertNoResult(pending)
        factory.stopTrying()
        self.failureResultOf(pending, CancelledError)

    def test_peerClosesWithError(self) -> None:
        """
        A connection the peer closes with an error condition is reconnected,
        and the condition is logged.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        peer.close("amqp:connection:forced", "shutting down")
        pump.flush()
        self.assertEqual(self.loggedDelays(), [0])
        self.assertEqual(len(self.endpoint.attempts), 2)
        [lost] = [e for e in factoryEvents(self.observer) if "lost" in e["log_format"]]
        self.assertIn("amqp:connection:forced", lost["reason"])
        self.assertIn(ConnectionClosed.__name__, lost["reason"])

    def test_userClose(self) -> None:
        """
        A connection the application closes is not reconnected; the factory
        reports it and L{ReconnectingAMQPClientFactory.whenConnected} fails
        with L{CancelledError} from then on.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        closed = connection.close()
        pump.flush()
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertEqual(len(self.endpoint.attempts), 1)
        self.failureResultOf(factory.whenConnected(), CancelledError)
        self.assertEqual(connector.state, "disconnected")
        self.assertTrue(
            any(
                "application closed" in e["log_format"]
                for e in factoryEvents(self.observer)
            )
        )

    def test_userCloseCrossingPeerClose(self) -> None:
        """
        A close the application began is the application's even when the
        peer's Close crosses it.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        connection.close()
        peer.close()
        pump.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(factory.whenConnected(), CancelledError)

    def test_authenticationFailed(self) -> None:
        """
        L{AuthenticationFailed} (here: the client allows only EXTERNAL, the
        server offers only ANONYMOUS) stops the factory: no retry, and
        L{ReconnectingAMQPClientFactory.whenConnected} fails with it.
        """
        factory, connector = self.start()
        waiting = factory.whenConnected()
        self.endpoint.last.openWith(
            TestPeer(settings=anonymousServer()),
            self.clock,
            clientSettings=externalClient(),
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])
        failure = self.failureResultOf(waiting, AuthenticationFailed)
        self.assertEqual(failure.value.condition, "amqp:unauthorized-access")
        self.failureResultOf(factory.whenConnected(), AuthenticationFailed)
        [event] = [
            e
            for e in factoryEvents(self.observer)
            if "authentication failed" in e["log_format"]
        ]
        self.assertIn("AuthenticationFailed", event["reason"])

    def test_stopTryingWhileWaiting(self) -> None:
        """
        L{ReconnectingAMQPClientFactory.stopTrying} cancels the pending
        delay and fails the waiting Deferreds with L{CancelledError}.
        """
        factory, connector = self.start(policy=[5])
        waiting = factory.whenConnected()
        self.endpoint.last.fail()
        self.assertEqual(self.pendingDelays(), [5])
        factory.stopTrying()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(waiting, CancelledError)
        self.failureResultOf(factory.whenConnected(), CancelledError)

    def test_stopTryingWhileConnecting(self) -> None:
        """
        L{ReconnectingAMQPClientFactory.stopTrying} cancels the attempt in
        progress, without a retry.
        """
        factory, connector = self.start()
        factory.stopTrying()
        self.assertTrue(self.endpoint.last.cancelled)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(connector.state, "disconnected")

    def test_resetDelayAfterStop(self) -> None:
        """
        As with Twisted's factory, L{ReconnectingAMQPClientFactory.resetDelay}
        after L{ReconnectingAMQPClientFactory.stopTrying} allows connecting
        again.
        """
        factory, connector = self.start()
        factory.stopTrying()
        factory.resetDelay()
        waiting = factory.whenConnected()
        connector.connect()
        self.openConnection(factory)
        self.assertIsInstance(self.successResultOf(waiting), AMQPConnection)


class WhenConnectedTests(_FactoryTestCase):
    """
    L{ReconnectingAMQPClientFactory.whenConnected}.
    """

    def test_beforeAndAfter(self) -> None:
        """
        Each call gets a new Deferred, which fires with the open connection:
        at once when there is one, else when it opens.
        """
        factory, connector = self.start()
        first, second = factory.whenConnected(), factory.whenConnected()
        self.assertIsNot(first, second)
        self.assertNoResult(first)
        connection, peer, pump = self.openConnection(factory)
        self.assertIs(self.successResultOf(first), connection)
        self.assertIs(self.successResultOf(second), connection)
        third, fourth = factory.whenConnected(), factory.whenConnected()
        self.assertIsNot(third, fourth)
        self.assertIs(self.successResultOf(third), connection)
        self.assertIs(self.successResultOf(fourth), connection)
        self.assertIs(factory.connection, connection)

    def test_nextConnection(self) -> None:
        """
        After a connection is lost, the Deferred fires with the next one.
        """
        factory, connector = self.start()
        old, peer, pump = self.openConnection(factory)
        pump.serverIO.loseConnection()
        pump.flush()
        waiting = factory.whenConnected()
        self.assertNoResult(waiting)
        self.assertEqual(len(self.endpoint.attempts), 2)
        new, peer, pump = self.openConnection(factory)
        self.assertIsNot(new, old)
        self.assertIs(self.successResultOf(waiting), new)

    def test_fromWhenClosed(self) -> None:
        """
        Asked from a callback of the connection's own C{whenClosed}, before
        the connector has reported the loss, the Deferred waits for the next
        connection instead of giving the one that just ended.
        """
        factory, connector = self.start()
        old, peer, pump = self.openConnection(factory)
        asked: list[Deferred[Any]] = []
        old.whenClosed().addBoth(lambda _: asked.append(factory.whenConnected()))
        peer.close()
        pump.flush()
        [waiting] = asked
        self.assertNoResult(waiting)
        new, peer, pump = self.openConnection(factory)
        self.assertIs(self.successResultOf(waiting), new)

    def test_cancel(self) -> None:
        """
        Cancelling one Deferred fails it with L{CancelledError} and leaves
        the others waiting.
        """
        factory, connector = self.start()
        first, second = factory.whenConnected(), factory.whenConnected()
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertNoResult(second)
        connection, peer, pump = self.openConnection(factory)
        self.assertIs(self.successResultOf(second), connection)


class LogTests(_FactoryTestCase):
    """
    What L{ReconnectingAMQPClientFactory} logs.
    """

    def test_events(self) -> None:
        """
        Each attempt, failure, delay, open and loss is logged with named
        fields: C{attempt}, C{destination}, C{delay}, C{reason}.
        """
        factory, connector = self.start()
        self.failAndWait()
        pump = self.openConnection(factory)[2]
        pump.serverIO.loseConnection()
        pump.flush()
        events = factoryEvents(self.observer)
        destination = "<FakeEndpoint broker>"
        self.assertEqual(
            [(e["log_format"].split(" ")[0], e.get("attempt")) for e in events],
            [
                ("Connecting", 1),
                ("Connection", 1),
                ("Reconnecting", 2),
                ("Connecting", 2),
                ("Connected", 2),
                ("Connection", None),
                ("Reconnecting", 1),
                ("Connecting", 1),
            ],
        )
        for event in events:
            self.assertEqual(event["destination"], destination)
        self.assertEqual(
            events[1]["reason"],
            "ConnectionRefusedError: Connection was refused by other side.",
        )
        self.assertEqual(
            formatEvent(events[1]),
            "Connection attempt 1 to <FakeEndpoint broker> failed: "
            "ConnectionRefusedError: Connection was refused by other side.",
        )
        self.assertEqual(events[2]["delay"], 0)
        self.assertEqual(
            formatEvent(events[2]),
            "Reconnecting to <FakeEndpoint broker> in 0.0 seconds (attempt 2)",
        )
        self.assertIn("lost", events[5]["log_format"])
        self.assertEqual(
            events[5]["reason"],
            "AMQPConnectionLost(Connection was closed cleanly: Connection done.)",
        )

    def test_noPassword(self) -> None:
        """
        No log event shows the password, whatever happens: an attempt that
        times out, a reconnect delay, a failed authentication.
        """
        reactor = MemoryReactorClock()
        endpoint = AMQPClientEndpoint(
            reactor,
            "h",
            5672,
            user="user",
            password="s3cret-pw",
            allowInsecurePlain=True,
            timeout=1,
        )
        factory = ReconnectingAMQPClientFactory(clock=reactor)
        EndpointConnector(endpoint, factory).connect()
        reactor.advance(1)
        reactor.advance(0)
        # Forget the first attempt, which timed out, so that the second is
        # the one completed.
        del reactor.tcpClients[0], reactor.connectors[0]
        serverFromString(reactor, "amqp:5672").listen(Factory.forProtocol(TestPeer))
        completeConnection(reactor).flush()
        self.failureResultOf(factory.whenConnected(), AuthenticationFailed)
        events = factoryEvents(self.observer)
        self.assertEqual(len([e for e in events if "Connecting" in e["log_format"]]), 2)
        for event in events:
            for text in _values(event):
                self.assertNotIn("s3cret", text)


class RealEndpointTests(SynchronousTestCase):
    """
    L{ReconnectingAMQPClientFactory} through an L{EndpointConnector} over
    amqptx's own endpoint, in memory.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        serverFromString(self.reactor, "amqp:5672").listen(
            Factory.forProtocol(TestPeer)
        )

    def test_connects(self) -> None:
        """
        The endpoint configures the protocols the factory builds, and the
        factory's connection is open when it gets it.
        """
        endpoint = clientFromString(self.reactor, "amqp:h:5672:containerId=c1")
        assert isinstance(endpoint, AMQPClientEndpoint)
        factory = ReconnectingAMQPClientFactory(clock=self.reactor)
        EndpointConnector(endpoint, factory).connect()
        completeConnection(self.reactor).flush()
        connection = self.successResultOf(factory.whenConnected())
        self.assertIsInstance(connection, AMQPConnection)
        self.assertTrue(connection.opened)
        self.assertIs(connection.settings, endpoint.settings)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        factory.stopTrying()

    def test_authenticationFailed(self) -> None:
        """
        No reconnect after the endpoint reported L{AuthenticationFailed}.
        """
        endpoint = clientFromString(self.reactor, "amqp:h:5672:mechanisms=EXTERNAL")
        factory = ReconnectingAMQPClientFactory(clock=self.reactor)
        connector = EndpointConnector(endpoint, factory)
        connector.connect()
        completeConnection(self.reactor).flush()
        self.failureResultOf(factory.whenConnected(), AuthenticationFailed)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(connector.state, "disconnected")


class ConnectorModeTests(SynchronousTestCase):
    """
    L{ReconnectingAMQPClientFactory} with a connector like
    C{reactor.connectTCP}'s: the factory configures its protocols, and a
    connection that ends before its Open is a failed attempt.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.connector = RecordingConnector()
        self.settings = ConnectionSettings(mechanisms=("ANONYMOUS",), hostname="vh")
        self.factory = ReconnectingAMQPClientFactory(
            clock=self.clock, settings=self.settings
        )
        self.addCleanup(self.factory.stopTrying)

    def attempt(self, peer: TestPeer, **settings: Any) -> IOPump:
        """
        Do what C{connectTCP} does for one attempt, and connect the protocol
        to C{peer}.

        @param peer: the server side.
        @param settings: the client's settings, if not the factory's.
        @return: the pump.
        """
        self.factory.startedConnecting(self.connector)
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 5672))
        assert protocol is not None
        self.assertIs(protocol.settings, self.settings)
        self.assertIs(protocol.clock, self.clock)
        pump = connectPair(
            peer,
            protocol,
            self.clock,
            serverSettings=peer.settings,
            clientSettings=settings.get("clientSettings", self.settings),
        )
        pump.flush()
        return pump

    def lose(self, pump: IOPump) -> None:
        """
        Drop the connection and tell the factory, as the connector would.

        @param pump: the connection's pump.
        """
        pump.serverIO.loseConnection()
        pump.flush()
        self.factory.clientConnectionLost(self.connector, Failure(ConnectionDone()))

    def test_openLostReconnect(self) -> None:
        """
        An open connection that is lost is reconnected through the
        connector at once.
        """
        pump = self.attempt(TestPeer())
        connection = self.successResultOf(self.factory.whenConnected())
        self.assertEqual(pump.server.connection.remote_hostname, "vh")
        self.assertTrue(connection.opened)
        self.lose(pump)
        self.clock.advance(0)
        self.assertEqual(self.connector.connects, 1)

    def test_lostBeforeOpen(self) -> None:
        """
        A connection that ends before its Open does not reset the delays.
        """
        self.lose(self.attempt(Refusing()))
        self.clock.advance(0)
        self.lose(self.attempt(Refusing()))
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), 0.1)

    def test_authenticationFailed(self) -> None:
        """
        L{AuthenticationFailed} before the Open stops the factory, though
        the connector reports only a lost connection.
        """
        self.lose(
            self.attempt(
                TestPeer(settings=anonymousServer()), clientSettings=externalClient()
            )
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(self.factory.whenConnected(), AuthenticationFailed)

    def test_userClose(self) -> None:
        """
        A connection the application closed is not reconnected.
        """
        pump = self.attempt(TestPeer())
        connection = self.successResultOf(self.factory.whenConnected())
        connection.close()
        pump.flush()
        self.factory.clientConnectionLost(self.connector, Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.connector.connects, 0)

    def test_openedAfterStopTrying(self) -> None:
        """
        A connection that opens after
        L{ReconnectingAMQPClientFactory.stopTrying} (through a connector that
        could not stop it) is the factory's connection, but the factory stays
        stopped.
        """
        self.factory.startedConnecting(self.connector)
        protocol = self.factory.buildProtocol(_ADDRESS)
        assert protocol is not None
        self.factory.stopTrying()
        connectPair(TestPeer(), protocol, self.clock).flush()
        self.assertIs(self.successResultOf(self.factory.whenConnected()), protocol)
        self.assertFalse(self.factory.continueTrying)

    def test_lostWithoutProtocol(self) -> None:
        """
        A connector that reports a loss the factory built no protocol for
        gets a retry, with the reason it gave.
        """
        self.factory.clientConnectionLost(
            self.connector, Failure(ConnectionRefusedError())
        )
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(self.connector.connects, 1)

    def test_retry(self) -> None:
        """
        C{retry} without a connector uses the last one; after
        L{ReconnectingAMQPClientFactory.stopTrying} it does nothing.
        """
        self.factory.startedConnecting(self.connector)
        self.factory.retry()
        self.clock.advance(0)
        self.assertEqual(self.connector.connects, 1)
        self.factory.stopTrying()
        self.factory.retry()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noPolicyOpen(self) -> None:
        """
        Without a policy, an open connection resets nothing, and its loss
        is the end.
        """
        factory = ReconnectingAMQPClientFactory(False, clock=self.clock)
        factory.startedConnecting(self.connector)
        protocol = factory.buildProtocol(_ADDRESS)
        assert protocol is not None
        pump = connectPair(TestPeer(), protocol, self.clock)
        pump.flush()
        self.successResultOf(factory.whenConnected())
        pump.serverIO.loseConnection()
        pump.flush()
        factory.clientConnectionLost(self.connector, Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(factory.whenConnected(), amqptx.AMQPConnectionLost)

    def test_defaultClock(self) -> None:
        """
        Without a clock, the factory uses the global reactor (only looked
        up, never run, here).
        """
        from twisted.internet import reactor

        protocol = ReconnectingAMQPClientFactory().buildProtocol(_ADDRESS)
        assert protocol is not None
        self.assertIs(protocol.clock, reactor)

    def test_closeSeenWhateverTheHandler(self) -> None:
        """
        The application's close is seen whatever the protocol's handler (none,
        one without child handlers, one serving several connections); the
        close of another connection of a shared handler is not this one's.
        """
        from amqptx import AMQPProtocol

        class Opaque:
            """
            A handler without child handlers.
            """

        shared = Opaque()
        other = AMQPProtocol(handler=shared)
        otherPump = connectPair(TestPeer(), other, self.clock)
        for handler in [None, Opaque(), shared]:

            class WithHandler(ReconnectingAMQPClientFactory):
                handler: object = None

                def protocol(self) -> AMQPProtocol:  # type: ignore[override]
                    return AMQPProtocol(handler=self.handler)

            clock = Clock()
            factory = WithHandler(clock=clock, settings=self.settings)
            factory.handler = handler
            self.addCleanup(factory.stopTrying)
            factory.startedConnecting(self.connector)
            protocol = factory.buildProtocol(_ADDRESS)
            assert protocol is not None
            pump = connectPair(TestPeer(), protocol, clock)
            pump.flush()
            if handler is shared:
                other.close()
                otherPump.flush()
                pump.serverIO.loseConnection()
                pump.flush()
                factory.clientConnectionLost(self.connector, Failure(ConnectionDone()))
                self.assertEqual(len(clock.getDelayedCalls()), 1)
            else:
                protocol.close()
                pump.flush()
                factory.clientConnectionLost(self.connector, Failure(ConnectionDone()))
                self.assertEqual(clock.getDelayedCalls(), [])

    def test_stopTrying(self) -> None:
        """
        L{ReconnectingAMQPClientFactory.stopTrying} stops the connector.
        """
        self.factory.startedConnecting(self.connector)
        self.factory.stopTrying()
        self.assertEqual(self.connector.stops, 1)

    def test_retryWithoutConnector(self) -> None:
        """
        C{retry} with no connector at all is a L{ValueError}, as in Twisted.
        """
        self.assertRaises(ValueError, self.factory.retry)

    def test_protocolMustBeAMQP(self) -> None:
        """
        A factory whose C{protocol} builds something else than an
        L{amqptx.AMQPProtocol} refuses to build it.
        """

        class Wrong(ReconnectingAMQPClientFactory):
            protocol = Protocol  # type: ignore[assignment]

        self.assertRaises(TypeError, Wrong(clock=self.clock).buildProtocol, None)


def _holdAll(address: str | None, message: Message) -> int | None:
    return None


class RecoveryTests(_FactoryTestCase):
    """
    Senders and receivers of an L{AMQPConnection} built by
    L{ReconnectingAMQPClientFactory} survive a reconnect: nothing sent at
    least once is lost.
    """

    def reconnect(
        self, factory: ReconnectingAMQPClientFactory, pump: IOPump
    ) -> tuple[AMQPConnection, TestPeer, IOPump]:
        """
        Drop the connection from the peer's side, wait the first delay and
        open the next connection with a new accepting peer.
        """
        pump.serverIO.loseConnection()
        pump.flush()
        self.clock.advance(self.loggedDelays()[-1])
        return self.openConnection(factory)

    def test_unsettledSentAgain(self) -> None:
        """
        Messages still waiting for their outcome when the connection drops
        are sent again, in order and first, on the next connection; each
        Deferred fires once, with the new connection's outcome.  Messages
        sent while disconnected follow.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        peer.outcome = _holdAll
        attaching = connection.sender("q")
        pump.flush()
        sender = self.successResultOf(attaching)
        sent = [sender.send(Message(body=i)) for i in range(3)]
        pump.flush()
        self.assertEqual([m.body for _, m in peer.received], [0, 1, 2])
        pump.serverIO.loseConnection()
        pump.flush()
        for d in sent:
            self.assertNoResult(d)
        late = sender.send(Message(body=3))
        self.clock.advance(self.loggedDelays()[-1])
        connection2, peer2, pump2 = self.openConnection(factory)
        pump2.flush()
        self.assertEqual([m.body for _, m in peer2.received], [0, 1, 2, 3])
        for d in [*sent, late]:
            self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertIs(connection2._links[sender.name], sender)

    def test_cachedSenderMoves(self) -> None:
        """
        The connection's cached sender of an address moves to the new
        connection.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        first = connection.send("q", Message(body="a"))
        pump.flush()
        self.successResultOf(first)
        connection2, peer2, pump2 = self.reconnect(factory, pump)
        again = connection2.send("q", Message(body="b"))
        pump2.flush()
        self.successResultOf(again)
        self.assertEqual(len(connection2._links), 1)

    def test_receiverGetsCreditBack(self) -> None:
        """
        A receiver re-attaches on the next connection with its credit, and a
        C{get()} that was waiting gets the next message there.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        d = connection.receiver("in", credit=5)
        pump.flush()
        receiver = self.successResultOf(d)
        waiting = receiver.get()
        connection2, peer2, pump2 = self.reconnect(factory, pump)
        pump2.flush()
        self.assertTrue(receiver.attached)
        for i in range(7):
            peer2.offer("in", Message(body=i))
        pump2.flush()
        self.assertEqual(self.successResultOf(waiting).body, 0)
        self.assertEqual(peer2.queued("in"), 1)

    def test_staleSettlementIgnored(self) -> None:
        """
        Settling a message received on the old connection does nothing (the
        peer delivers it again).
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        d = connection.receiver("in")
        pump.flush()
        receiver = self.successResultOf(d)
        peer.offer("in", Message(body="old"))
        pump.flush()
        old = self.successResultOf(receiver.get())
        connection2, peer2, pump2 = self.reconnect(factory, pump)
        old.accept()
        pump2.flush()
        self.assertEqual(peer2.sentOutcomes, [])

    def test_noRecoveryAfterLocalClose(self) -> None:
        """
        After the application's close, waiting sends fail instead of waiting
        for a connection that will not come.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        peer.outcome = _holdAll
        sent = connection.send("q", Message(body=1))
        pump.flush()
        connection.close()
        pump.flush()
        # The close waits (5 s at most) for the outcome the peer holds back.
        self.assertNoResult(sent)
        self.clock.advance(5)
        pump.flush()
        self.failureResultOf(sent)

    def test_abandonedWhenGivingUp(self) -> None:
        """
        When the policy gives up, the parked senders' Deferreds fail with the
        last failure.
        """
        factory, connector = self.start(policy=[0])
        connection, peer, pump = self.openConnection(factory)
        peer.outcome = _holdAll
        sent = connection.send("q", Message(body=1))
        pump.flush()
        pump.serverIO.loseConnection()
        pump.flush()
        self.assertNoResult(sent)
        self.clock.advance(0)
        self.endpoint.last.fail(ConnectionRefusedError())
        self.failureResultOf(sent, ConnectionRefusedError)


class ClientServiceTests(_FactoryTestCase):
    """
    L{AMQPClientService} keeps a connection open for an application.
    """

    def test_lifecycle(self) -> None:
        """
        Starting connects; C{whenConnected} gives the open connection, and
        the next one after a drop; stopping closes it and stops
        reconnecting.
        """
        service = AMQPClientService(self.endpoint, clock=self.clock)
        waiting = service.whenConnected()
        service.startService()
        self.assertEqual(len(self.endpoint.attempts), 1)
        pump = self.endpoint.last.openWith(TestPeer(), self.clock)
        connection = self.successResultOf(waiting)
        pump.serverIO.loseConnection()
        pump.flush()
        self.clock.advance(self.loggedDelays()[-1])
        pump = self.endpoint.last.openWith(TestPeer(), self.clock)
        again = self.successResultOf(service.whenConnected())
        self.assertIsNot(again, connection)
        stopped = service.stopService()
        pump.flush()
        self.assertIsNone(self.successResultOf(stopped))
        self.assertFalse(service.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(service.whenConnected(), CancelledError)

    def test_stopBeforeConnected(self) -> None:
        """
        Stopping before any connection opened stops the attempt.
        """
        service = AMQPClientService(self.endpoint, clock=self.clock)
        service.startService()
        self.assertIsNone(self.successResultOf(service.stopService()))


class SessionShutdownTests(_FactoryTestCase):
    """
    A broker shutting down ends its sessions first (RabbitMQ: End with
    C{amqp:internal-error}): a recoverable connection then reconnects with
    its links rather than failing them.
    """

    def test_internalErrorReconnects(self) -> None:
        """
        After an End with C{amqp:internal-error}, the connection closes, the
        factory reconnects, and the unsettled message is sent again there.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        peer.outcome = _holdAll
        sent = connection.send("q", Message(body=1))
        pump.flush()
        session = peer.connection.session_head(0)
        assert session is not None
        session.condition = Condition("amqp:internal-error", "shutdown")
        session.close()
        peer.flush()
        pump.flush()
        self.assertNoResult(sent)
        self.clock.advance(self.loggedDelays()[-1])
        connection2, peer2, pump2 = self.openConnection(factory)
        pump2.flush()
        self.assertIs(self.successResultOf(sent), Outcome.ACCEPTED)
        self.assertEqual([m.body for _, m in peer2.received], [1])

    def test_otherConditionFails(self) -> None:
        """
        Another condition (C{amqp:not-found}, say) fails the session's links
        and keeps the connection.
        """
        factory, connector = self.start()
        connection, peer, pump = self.openConnection(factory)
        peer.outcome = _holdAll
        sent = connection.send("q", Message(body=1))
        pump.flush()
        session = peer.connection.session_head(0)
        assert session is not None
        session.condition = Condition("amqp:not-found", "no such queue")
        session.close()
        peer.flush()
        pump.flush()
        self.failureResultOf(sent, amqptx.SessionEnded)
        self.assertIsNone(connection._ended)
