# -*- test-case-name: tests.test_failover -*-
"""
Tests for L{amqptx._failover}: L{AMQPFailoverEndpoint}, its
C{amqp-failover:} endpoint strings and L{failoverEndpoint}, in memory on a
L{Clock} or a L{MemoryReactorClock}, with the hand-written fake endpoints of
L{tests.test_reconnect}.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from twisted.application.internet import ClientService
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionDone,
    ConnectionRefusedError,
    TimeoutError,
)
from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface.verify import verifyObject

from amqptx import AMQPClientEndpoint, AMQPConnection, AuthenticationFailed, parseURL
from amqptx._failover import (
    AMQPFailoverEndpoint,
    AMQPFailoverParser,
    FailoverExhausted,
    failoverEndpoint,
)
from amqptx._reconnect import EndpointConnector, ReconnectingAMQPClientFactory
from amqptx.testing import TestPeer
from tests._certs import sharedPKI
from tests.test_reconnect import FakeEndpoint, RecordingPolicy, _values

_ROOT = FilePath(__file__).parent().parent()
_NAMESPACE = "amqptx._failover._FailoverAttempt"


def _fakes(count: int = 3) -> list[FakeEndpoint]:
    """
    @param count: how many.
    @return: fake endpoints named C{e1}, C{e2}...
    """
    return [FakeEndpoint(f"e{index + 1}") for index in range(count)]


def _attempts(endpoints: list[FakeEndpoint]) -> list[int]:
    """
    @param endpoints: fake endpoints.
    @return: how many attempts each has seen.
    """
    return [len(endpoint.attempts) for endpoint in endpoints]


class _FailoverTestCase(SynchronousTestCase):
    """
    Base of the tests of L{AMQPFailoverEndpoint} over fake endpoints.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.fakes = _fakes()
        self.factory = Factory.forProtocol(Protocol)

    def endpoint(self, policy: object = None) -> AMQPFailoverEndpoint:
        """
        @param policy: the endpoint's policy.
        @return: a failover endpoint over the three fakes.
        """
        return AMQPFailoverEndpoint(self.clock, self.fakes, policy)

    def failRound(self, reason: Exception | None = None) -> None:
        """
        Fail one attempt on each fake, in order.

        @param reason: the failure; a refused connection by default.
        """
        for fake in self.fakes:
            fake.last.fail(reason)


class OrderTests(_FailoverTestCase):
    """
    The endpoints are tried in order, round after round.
    """

    def test_interface(self) -> None:
        """
        L{AMQPFailoverEndpoint} provides L{IStreamClientEndpoint}.
        """
        self.assertTrue(verifyObject(IStreamClientEndpoint, self.endpoint()))

    def test_order(self) -> None:
        """
        C{connect} tries the first endpoint, then each next one when the
        previous failed, and fires with what the one that connected fired
        with.
        """
        d = self.endpoint().connect(self.factory)
        self.assertEqual(_attempts(self.fakes), [1, 0, 0])
        self.fakes[0].last.fail()
        self.assertEqual(_attempts(self.fakes), [1, 1, 0])
        self.fakes[1].last.fail(TimeoutError())
        self.assertEqual(_attempts(self.fakes), [1, 1, 1])
        self.assertNoResult(d)
        protocol, transport = self.fakes[2].last.succeed()
        self.assertIs(self.successResultOf(d), protocol)
        self.assertIs(self.fakes[2].last.factory, self.factory)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_roundsAfterDelays(self) -> None:
        """
        When all have failed, the next round starts from the first endpoint
        exactly after the policy's delay; when the policy gives up,
        C{connect} fails with L{FailoverExhausted}, holding the failures of
        the last round.
        """
        d = self.endpoint(policy=[0.5, 2]).connect(self.factory)
        self.failRound()
        self.assertEqual(_attempts(self.fakes), [1, 1, 1])
        self.clock.advance(0.25)
        self.assertEqual(_attempts(self.fakes), [1, 1, 1])
        self.clock.advance(0.25)
        self.assertEqual(_attempts(self.fakes), [2, 1, 1])
        self.failRound()
        self.clock.advance(1.5)
        self.assertEqual(_attempts(self.fakes), [2, 2, 2])
        self.clock.advance(0.5)
        self.assertEqual(_attempts(self.fakes), [3, 2, 2])
        self.fakes[0].last.fail()
        self.fakes[1].last.fail(TimeoutError())
        self.fakes[2].last.fail()
        failure = self.failureResultOf(d, FailoverExhausted)
        error = failure.value
        assert isinstance(error, FailoverExhausted)
        self.assertIsInstance(error, ConnectError)
        self.assertEqual(error.rounds, 3)
        self.assertEqual([endpoint for endpoint, _ in error.failures], self.fakes)
        self.assertEqual(
            [f.type for _, f in error.failures],
            [ConnectionRefusedError, TimeoutError, ConnectionRefusedError],
        )
        self.assertIn("<FakeEndpoint e2>", str(error))
        self.assertIn("3 rounds", str(error))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_defaultPolicy(self) -> None:
        """
        By default the rounds are AMQ Python's backoff: 0, 0.1, 0.2 ...
        seconds apart, forever.
        """
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        self.endpoint().connect(self.factory)
        for _ in range(4):
            self.failRound()
            [delay] = [e["delay"] for e in observer if "delay" in e][-1:]
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
            self.clock.advance(delay)
        self.assertEqual(
            [e["delay"] for e in observer if "delay" in e], [0, 0.1, 0.2, 0.4]
        )
        self.assertEqual(_attempts(self.fakes), [5, 4, 4])

    def test_oneRound(self) -> None:
        """
        With C{policy=False}, one round only.
        """
        d = self.endpoint(policy=False).connect(self.factory)
        self.failRound()
        self.assertEqual(
            self.failureResultOf(d, FailoverExhausted).value.rounds,
            1,
        )

    def test_policyResetEachConnect(self) -> None:
        """
        Each C{connect} resets the policy and starts with the first endpoint.
        """
        policy = RecordingPolicy([1])
        endpoint = self.endpoint(policy=policy)
        first = endpoint.connect(self.factory)
        self.failRound()
        self.assertEqual(policy.calls, ["reset", "next"])
        self.clock.advance(1)
        self.fakes[0].last.fail()
        self.fakes[1].last.succeed()
        self.successResultOf(first)
        second = endpoint.connect(self.factory)
        self.assertEqual(policy.calls, ["reset", "next", "reset"])
        self.assertEqual(_attempts(self.fakes), [3, 2, 1])
        self.fakes[0].last.succeed()
        self.successResultOf(second)

    def test_authenticationFailed(self) -> None:
        """
        L{AuthenticationFailed} ends C{connect} at once: no other endpoint,
        no other round.
        """
        d = self.endpoint().connect(self.factory)
        self.fakes[0].last.fail(AuthenticationFailed("amqp:unauthorized-access"))
        self.failureResultOf(d, AuthenticationFailed)
        self.assertEqual(_attempts(self.fakes), [1, 0, 0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_authenticationFailedLater(self) -> None:
        """
        L{AuthenticationFailed} from a later endpoint ends C{connect} too.
        """
        d = self.endpoint().connect(self.factory)
        self.fakes[0].last.fail()
        self.fakes[1].last.fail(AuthenticationFailed("amqp:unauthorized-access"))
        self.failureResultOf(d, AuthenticationFailed)
        self.assertEqual(_attempts(self.fakes), [1, 1, 0])

    def test_badPolicy(self) -> None:
        """
        A negative delay from the policy fails C{connect} with
        L{ValueError}.
        """
        d = self.endpoint(policy=RecordingPolicy([-1])).connect(self.factory)
        self.failRound()
        self.failureResultOf(d, ValueError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_brokenReset(self) -> None:
        """
        A policy whose C{reset} raises fails C{connect} with that error.
        """

        class Broken(RecordingPolicy):
            def reset(self) -> None:
                raise RuntimeError("broken")

        d = self.endpoint(policy=Broken([])).connect(self.factory)
        self.failureResultOf(d, RuntimeError)
        self.assertEqual(_attempts(self.fakes), [0, 0, 0])

    def test_synchronousFailures(self) -> None:
        """
        Endpoints that fail at once (or raise) are passed over as well.
        """

        class Raising(FakeEndpoint):
            def connect(self, protocolFactory: Any) -> Any:
                raise ConnectionRefusedError("at once")

        fake = FakeEndpoint("last")
        d = AMQPFailoverEndpoint(self.clock, [Raising(), Raising(), fake]).connect(
            self.factory
        )
        protocol, transport = fake.last.succeed()
        self.assertIs(self.successResultOf(d), protocol)

    def test_logs(self) -> None:
        """
        Each attempt, failure and delay is logged with named fields.
        """
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        self.endpoint(policy=[1]).connect(self.factory)
        self.failRound()
        events = [e for e in observer if e.get("log_namespace") == _NAMESPACE]
        self.assertEqual(
            [(e.get("endpoint"), e.get("index"), e.get("delay")) for e in events],
            [
                ("<FakeEndpoint e1>", 1, None),
                ("<FakeEndpoint e1>", None, None),
                ("<FakeEndpoint e2>", 2, None),
                ("<FakeEndpoint e2>", None, None),
                ("<FakeEndpoint e3>", 3, None),
                ("<FakeEndpoint e3>", None, None),
                (None, None, 1.0),
            ],
        )
        self.assertIn("ConnectionRefusedError", events[1]["reason"])


class CancelTests(_FailoverTestCase):
    """
    C{connect} can be cancelled at every stage, leaving no timer.
    """

    def test_cancelFirstAttempt(self) -> None:
        """
        Cancelling during the first attempt cancels it.
        """
        d = self.endpoint().connect(self.factory)
        d.cancel()
        self.failureResultOf(d, ConnectingCancelledError)
        self.assertTrue(self.fakes[0].last.cancelled)
        self.assertEqual(_attempts(self.fakes), [1, 0, 0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelLaterAttempt(self) -> None:
        """
        Cancelling during a later attempt cancels that one, and no other
        endpoint is tried.
        """
        d = self.endpoint().connect(self.factory)
        self.fakes[0].last.fail()
        d.cancel()
        self.failureResultOf(d, ConnectingCancelledError)
        self.assertTrue(self.fakes[1].last.cancelled)
        self.assertEqual(_attempts(self.fakes), [1, 1, 0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelDuringDelay(self) -> None:
        """
        Cancelling while waiting between rounds stops the timer.
        """
        d = self.endpoint(policy=[5]).connect(self.factory)
        self.failRound()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        d.cancel()
        self.failureResultOf(d, ConnectingCancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(_attempts(self.fakes), [1, 1, 1])

    def test_cancelSecondRound(self) -> None:
        """
        Cancelling during an attempt of a later round cancels it.
        """
        d = self.endpoint(policy=[5]).connect(self.factory)
        self.failRound()
        self.clock.advance(5)
        self.fakes[0].last.fail()
        d.cancel()
        self.failureResultOf(d, ConnectingCancelledError)
        self.assertTrue(self.fakes[1].last.cancelled)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelAfterResult(self) -> None:
        """
        Cancelling after C{connect} fired changes nothing.
        """
        d = self.endpoint().connect(self.factory)
        protocol, transport = self.fakes[0].last.succeed()
        d.cancel()
        self.assertIs(self.successResultOf(d), protocol)

    def test_cancelUncancellable(self) -> None:
        """
        An endpoint whose Deferred ignores cancellation still ends
        C{connect} with L{ConnectingCancelledError}.
        """
        from twisted.internet.defer import Deferred

        class Stubborn(FakeEndpoint):
            def connect(self, protocolFactory: Any) -> Any:
                return Deferred()

        d = AMQPFailoverEndpoint(self.clock, [Stubborn()]).connect(self.factory)
        d.cancel()
        self.failureResultOf(d, ConnectingCancelledError)


class ConstructionTests(SynchronousTestCase):
    """
    Making L{AMQPFailoverEndpoint}s.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def test_empty(self) -> None:
        """
        No endpoint at all is a L{ValueError}.
        """
        self.assertRaises(ValueError, AMQPFailoverEndpoint, self.reactor, [])
        self.assertRaises(ValueError, AMQPFailoverEndpoint.fromURLs, self.reactor, [])

    def test_notAList(self) -> None:
        """
        One URL instead of a list, or something that is neither an endpoint
        nor a URL, is a L{TypeError}.
        """
        self.assertRaises(TypeError, AMQPFailoverEndpoint, self.reactor, "amqp://h")
        self.assertRaises(
            TypeError, AMQPFailoverEndpoint.fromURLs, self.reactor, "amqp://h"
        )
        self.assertRaises(TypeError, AMQPFailoverEndpoint, self.reactor, [object()])
        self.assertRaises(
            TypeError, AMQPFailoverEndpoint, self.reactor, ["amqp://h"], 5
        )

    def test_urls(self) -> None:
        """
        URLs, as text or L{amqptx.AMQPURL}, become amqptx client endpoints;
        endpoints are used as they are.
        """
        fake = FakeEndpoint()
        endpoint = AMQPFailoverEndpoint(
            self.reactor, ["amqp://h1", parseURL("amqps://h2:5000"), fake]
        )
        self.assertEqual(
            repr(endpoint),
            "<AMQPFailoverEndpoint [<AMQPClientEndpoint amqp://h1:5672>, "
            "<AMQPClientEndpoint amqps://h2:5000>, <FakeEndpoint fake>]>",
        )
        self.assertIs(endpoint.endpoints[2], fake)

    def test_fromURLsOptions(self) -> None:
        """
        L{AMQPFailoverEndpoint.fromURLs} applies its options to every URL,
        and the URLs' own credentials to each (as
        L{AMQPClientEndpoint.fromURL} does).
        """
        endpoint = AMQPFailoverEndpoint.fromURLs(
            self.reactor,
            ["amqps://u1:p1@h1", "amqps://h2"],
            containerId="c",
        )
        settings = [
            e.settings for e in endpoint.endpoints if isinstance(e, AMQPClientEndpoint)
        ]
        self.assertEqual([s.containerId for s in settings], ["c", "c"])
        self.assertEqual([s.user for s in settings], ["u1", None])
        self.assertEqual([s.password for s in settings], ["p1", None])

    def test_noPasswordShown(self) -> None:
        """
        Neither the C{repr} nor the logs show a URL's password.
        """
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        endpoint = AMQPFailoverEndpoint.fromURLs(
            self.reactor,
            ["amqp://user:s3cret-pw@h1", "amqp://user:s3cret-pw@h2"],
            allowInsecurePlain=True,
            timeout=1,
            policy=[1],
        )
        self.assertNotIn("s3cret", repr(endpoint))
        d = endpoint.connect(Factory.forProtocol(AMQPConnection))
        # Two rounds of two attempts that time out after 1 s, 1 s apart.
        for _ in range(5):
            self.reactor.advance(1)
        self.failureResultOf(d, FailoverExhausted)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertGreater(len(observer), 6)
        for event in observer:
            for text in _values(event):
                self.assertNotIn("s3cret", text)

    def test_failoverEndpoint(self) -> None:
        """
        L{failoverEndpoint} takes AMQ Python's C{url} or C{urls}, not both,
        and options for every URL.
        """
        one = failoverEndpoint(self.reactor, "amqp://h1", containerId="c")
        self.assertEqual(len(one.endpoints), 1)
        several = failoverEndpoint(self.reactor, urls=["amqp://h1", "amqp://h2"])
        self.assertEqual(len(several.endpoints), 2)
        self.assertRaises(
            ValueError,
            failoverEndpoint,
            self.reactor,
            "amqp://h1",
            ["amqp://h2"],
        )
        self.assertRaises(ValueError, failoverEndpoint, self.reactor)
        self.assertRaises(
            TypeError, failoverEndpoint, self.reactor, "amqp://h", nonsense=1
        )
        several = failoverEndpoint(self.reactor, urls=["amqp://h1"], policy=False)
        self.assertIsNone(several.policy)


class CompositionTests(SynchronousTestCase):
    """
    L{AMQPFailoverEndpoint} under Twisted's C{ClientService} and under
    L{ReconnectingAMQPClientFactory}.
    """

    def test_clientService(self) -> None:
        """
        C{ClientService} connects through the failover endpoint, and after
        the connection is lost, reconnects through it starting with the
        first endpoint again.
        """
        clock = Clock()
        fakes = _fakes()
        service = ClientService(
            AMQPFailoverEndpoint(clock, fakes),
            Factory.forProtocol(Protocol),
            retryPolicy=lambda attempt: 5.0,
            clock=clock,
        )
        service.startService()
        connected = service.whenConnected()
        fakes[0].last.fail()
        proxy, transport = fakes[1].last.succeed()
        protocol: Any = self.successResultOf(connected)
        self.assertIsInstance(protocol, Protocol)
        self.assertIs(protocol.transport, transport)
        proxy.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(_attempts(fakes), [1, 1, 0])
        clock.advance(5)
        self.assertEqual(_attempts(fakes), [2, 1, 0])
        again = service.whenConnected()
        proxy, transport = fakes[0].last.succeed()
        self.successResultOf(again)
        stopped = service.stopService()
        self.assertTrue(transport.disconnecting)
        proxy.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_clientServiceStops(self) -> None:
        """
        Stopping the C{ClientService} while the failover endpoint waits
        between rounds cancels it and leaves no timer.
        """
        clock = Clock()
        fakes = _fakes(2)
        service = ClientService(
            AMQPFailoverEndpoint(clock, fakes, policy=[3]),
            Factory.forProtocol(Protocol),
            clock=clock,
        )
        service.startService()
        waiting = service.whenConnected()
        for fake in fakes:
            fake.last.fail()
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.successResultOf(service.stopService())
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_reconnectingFactory(self) -> None:
        """
        L{ReconnectingAMQPClientFactory} through an L{EndpointConnector}
        over the failover endpoint: the first server refuses, the second
        opens; when that connection drops, the reconnect starts with the
        first server again.  With C{policy=False} on the endpoint, each
        round that fails is a failed attempt for the factory, whose policy
        spaces the rounds.
        """
        clock = Clock()
        fakes = _fakes(2)
        factory = ReconnectingAMQPClientFactory([0.5, 0.5], clock=clock)
        connector = EndpointConnector(
            AMQPFailoverEndpoint(clock, fakes, policy=False), factory
        )
        connector.connect()
        self.addCleanup(factory.stopTrying)
        fakes[0].last.fail()
        fakes[1].last.fail()
        self.assertEqual(_attempts(fakes), [1, 1])
        clock.advance(0.5)
        fakes[0].last.fail()
        pump = fakes[1].last.openWith(TestPeer(), clock)
        connection = self.successResultOf(factory.whenConnected())
        self.assertIsInstance(connection, AMQPConnection)
        pump.serverIO.loseConnection()
        pump.flush()
        clock.advance(0.5)
        self.assertEqual(_attempts(fakes), [3, 2])
        fakes[0].last.openWith(TestPeer(), clock)
        self.assertIsNot(self.successResultOf(factory.whenConnected()), connection)


class StringTests(SynchronousTestCase):
    """
    C{amqp-failover:} endpoint strings.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pki = sharedPKI()

    def parse(self, description: str) -> AMQPFailoverEndpoint:
        """
        Parse a failover endpoint string with C{clientFromString}.

        @param description: the endpoint string.
        @return: the endpoint.
        """
        endpoint = clientFromString(self.reactor, description)
        assert isinstance(endpoint, AMQPFailoverEndpoint)
        return endpoint

    def clients(self, description: str) -> list[AMQPClientEndpoint]:
        """
        @param description: a failover endpoint string.
        @return: its client endpoints.
        """
        endpoints = list(self.parse(description).endpoints)
        for endpoint in endpoints:
            assert isinstance(endpoint, AMQPClientEndpoint)
        return endpoints  # type: ignore[return-value]

    def test_parser(self) -> None:
        """
        L{AMQPFailoverParser} is a client endpoint string parser plugin for
        the prefix C{amqp-failover}.
        """
        parser = AMQPFailoverParser()
        self.assertTrue(
            verifyObject(IStreamClientEndpointStringParserWithReactor, parser)
        )
        self.assertTrue(verifyObject(IPlugin, parser))
        self.assertEqual(parser.prefix, "amqp-failover")

    def test_plugin(self) -> None:
        """
        Once the plugin file names the parser, C{clientFromString} parses
        C{amqp-failover:} strings.
        """
        from twisted.plugins import amqptx_plugins

        if not hasattr(amqptx_plugins, "amqpFailoverParser"):
            raise SkipTest("the plugin file does not name the failover parser yet")
        endpoint = clientFromString(self.reactor, "amqp-failover:amqp://h1,amqp://h2")
        assert isinstance(endpoint, AMQPFailoverEndpoint)
        self.assertEqual(len(endpoint.endpoints), 2)

    def test_noProtonOnImport(self) -> None:
        """
        Importing the module (as the plugin system does) does not import
        proton.
        """
        output = subprocess.run(
            [
                sys.executable,
                "-c",
                "import amqptx._failover, sys; print('proton' in sys.modules)",
            ],
            cwd=_ROOT.path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        self.assertEqual(output, "False")

    def test_urls(self) -> None:
        """
        The URLs, separated by commas, give one endpoint each, in order;
        Twisted's splitting at colons is undone.
        """
        endpoints = self.clients(
            "amqp-failover:amqp://h1:5672,amqps://h2:5671,amqp://[::1]:2000,amqp://h4"
        )
        self.assertEqual(
            [repr(e) for e in endpoints],
            [
                "<AMQPClientEndpoint amqp://h1:5672>",
                "<AMQPClientEndpoint amqps://h2:5671>",
                "<AMQPClientEndpoint amqp://[::1]:2000>",
                "<AMQPClientEndpoint amqp://h4:5672>",
            ],
        )

    def test_optionsForEveryURL(self) -> None:
        """
        Options apply to every URL; the TLS options to the C{amqps} ones.
        """
        description = (
            "amqp-failover:amqp://h1:5672,amqps://h2:5671"
            f":trustRoots={self.pki.caCert}:timeout=5:containerId=c:mechanisms=ANONYMOUS"
        )
        endpoints = self.clients(description)
        self.assertEqual([e.settings.containerId for e in endpoints], ["c", "c"])
        self.assertEqual(
            [e.settings.mechanisms for e in endpoints], [("ANONYMOUS",)] * 2
        )
        for endpoint in endpoints:
            endpoint.connect(Factory.forProtocol(AMQPConnection))
        self.assertEqual(
            [(c[0], c[1], c[3]) for c in self.reactor.tcpClients],
            [("127.0.0.1", 5672, 5.0), ("127.0.0.1", 5671, 5.0)],
        )

    def test_credentials(self) -> None:
        """
        Credentials come from each URL, or from the options for all.
        """
        endpoints = self.clients("amqp-failover:amqps://u1:p1@h1,amqps://u2:p%3D2@h2")
        self.assertEqual(
            [(e.settings.user, e.settings.password) for e in endpoints],
            [("u1", "p1"), ("u2", "p=2")],
        )
        endpoints = self.clients(
            "amqp-failover:amqps://h1,amqps://h2:user=u:password=p"
        )
        self.assertEqual(
            [(e.settings.user, e.settings.password) for e in endpoints],
            [("u", "p"), ("u", "p")],
        )

    def test_whitespace(self) -> None:
        """
        Spaces around the commas are ignored.
        """
        self.assertEqual(len(self.clients("amqp-failover:amqp://h1, amqp://h2")), 2)

    def test_rejected(self) -> None:
        """
        Bad strings are L{ValueError}s (bad values) or L{TypeError}s
        (unknown options), naming what is wrong.
        """
        for description, error, words in [
            ("amqp-failover:", ValueError, "needs URLs"),
            ("amqp-failover:amqp://h1,,amqp://h2", ValueError, "empty URL"),
            ("amqp-failover:amqp://h1,", ValueError, "empty URL"),
            ("amqp-failover:h1:5672", ValueError, "://"),
            ("amqp-failover:http://h1", ValueError, "scheme"),
            ("amqp-failover:amqp://h1/queue", ValueError, "path"),
            ("amqp-failover:amqp://h1:timeout=abc", ValueError, "timeout"),
            ("amqp-failover:amqp://h1:maxFrameSize=10", ValueError, "maxFrameSize"),
            ("amqp-failover:amqp://h1:nonsense=1", TypeError, "nonsense"),
            ("amqp-failover:amqp://h1:host=h2", TypeError, "host"),
            ("amqp-failover:amqp://h1:port=1", TypeError, "port"),
            ("amqp-failover:amqp://h1:sni=x", TypeError, "amqps"),
            ("amqp-failover:amqps://u:p@h1:user=v", ValueError, "user given twice"),
            ("amqp-failover:amqp://u:p@h1", ValueError, "clear"),
        ]:
            exception = self.assertRaises(error, self.parse, description)
            self.assertIn(words, str(exception), description)

    def test_passwordNotInErrors(self) -> None:
        """
        An error about a bad URL in the list does not show its password.
        """
        exception = self.assertRaises(
            ValueError, self.parse, "amqp-failover:amqp://u:s3cret@h1:99999"
        )
        self.assertNotIn("s3cret", str(exception))

    def test_notText(self) -> None:
        """
        The parser takes only text, as Twisted's string parsing gives.
        """
        self.assertRaises(
            TypeError, AMQPFailoverParser().parseStreamClient, self.reactor, 5
        )
