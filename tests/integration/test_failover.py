# -*- test-case-name: tests.integration.test_failover -*-
# mypy: disable-error-code="no-untyped-call"
"""
Integration tests of failover and reconnect on the real reactor: the
failover endpoint and L{ReconnectingAMQPClientFactory} against proton
servers (L{tests.integration.proton_server}) that stop, and against a
RabbitMQ node that restarts.

Each reconnect's recovery time is logged (C{_trial_temp/test.log}) as a
C{"recovery"} event.
"""

from __future__ import annotations

from typing import Any

from proton import Message
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.testing import EventLoggingObserver
from twisted.internet.threads import deferToThread
from twisted.logger import Logger, globalLogPublisher

from amqptx import AMQPClientEndpoint, AMQPConnection, Outcome
from amqptx._failover import AMQPFailoverEndpoint
from amqptx._reconnect import ReconnectingAMQPClientFactory
from tests.integration._peers import (
    IntegrationTestCase,
    freePort,
    ignoreFailure,
    peerPort,
    theReactor,
)
from tests.integration._rabbitmq import requireRabbitMQ, sharedNode

_log = Logger()
_FACTORY = "amqptx._reconnect.ReconnectingAMQPClientFactory"


class _ReconnectTestCase(IntegrationTestCase):
    """
    Starts what a test needs and stops all of it afterwards.
    """

    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def attemptsSince(self, index: int) -> int:
        """
        @param index: how many log events there were at the start.
        @return: how many connection attempts the reconnecting factory
            logged since.
        """
        return sum(
            1
            for event in self.events[index:]
            if event.get("log_namespace") == _FACTORY
            and event["log_format"].startswith("Connecting")
        )

    def reconnection(
        self, factory: ReconnectingAMQPClientFactory, connection: AMQPConnection
    ) -> tuple[Deferred[AMQPConnection], dict[str, float]]:
        """
        Follow the loss of C{connection} and the opening of the next one.

        @param factory: the reconnecting factory.
        @param connection: its open connection.
        @return: a Deferred that fires with the next connection, and a
            dictionary where the reactor's time of the loss (C{"lost"}) and
            of the new connection (C{"reconnected"}) are recorded.
        """
        reactor = theReactor()
        times: dict[str, float] = {}

        def reconnected(new: AMQPConnection) -> AMQPConnection:
            times["reconnected"] = reactor.seconds()
            return new

        def lost(result: object) -> Deferred[AMQPConnection]:
            times["lost"] = reactor.seconds()
            return factory.whenConnected().addCallback(reconnected)

        closed: Deferred[Any] = connection.whenClosed()
        return closed.addErrback(ignoreFailure).addCallback(lost), times

    async def sendOne(self, connection: AMQPConnection, body: str) -> None:
        """
        Send one message and check that it is accepted.

        @param connection: the connection.
        @param body: the message body.
        """
        outcome = await connection.send("failover-q", Message(body=body))
        self.assertEqual(outcome, Outcome.ACCEPTED)


class ProtonFailoverTests(_ReconnectTestCase):
    """
    Failover between two proton servers.
    """

    async def test_firstServerDown(self) -> None:
        """
        A failover endpoint whose first URL is a closed port connects to the
        second.
        """
        closed = freePort()
        server = self.startProtonServer()
        endpoint = AMQPFailoverEndpoint.fromURLs(
            theReactor(), [f"amqp://127.0.0.1:{closed}", server.url], policy=False
        )
        connection = await self.connectEndpoint(endpoint)
        self.assertEqual(peerPort(connection), server.port)
        await self.sendOne(connection, "hello")

    async def test_serverStopsMidStream(self) -> None:
        """
        When the server of the open connection stops while messages are in
        flight, L{ReconnectingAMQPClientFactory} through an
        L{EndpointConnector} over the failover endpoint gets a new open
        connection to the other server.
        """
        reactor = theReactor()
        first, second = self.startProtonServer(), self.startProtonServer()
        factory = self.reconnecting(
            AMQPFailoverEndpoint.fromURLs(
                reactor, [first.url, second.url], policy=False, timeout=5
            )
        )
        connection: AMQPConnection = await factory.whenConnected()
        self.assertEqual(peerPort(connection), first.port)
        await self.sendOne(connection, "before")
        sends = [
            connection.send("failover-q", Message(body=f"in-flight-{index}"))
            for index in range(200)
        ]
        inFlight = DeferredList(sends, consumeErrors=True)
        # Stop the server mid-stream: once the first messages are accepted.
        self.assertEqual(await sends[19], Outcome.ACCEPTED)
        reconnection, times = self.reconnection(factory, connection)
        began = reactor.seconds()
        index = len(self.events)
        first.stop()
        stopped = reactor.seconds()
        again = await reconnection
        self.assertIsNot(again, connection)
        self.assertTrue(again.opened)
        self.assertEqual(peerPort(again), second.port)
        await self.sendOne(again, "after")
        results = await inFlight
        accepted = sum(1 for ok, outcome in results if ok)
        self.assertEqual(len(results), 200)
        _log.info(
            "recovery (proton server stopped): {afterLoss:.3f} s from the loss "
            "to the new open connection, in {attempts} attempts; {total:.3f} s "
            "from stop(), which blocked the reactor {stopping:.3f} s; "
            "{accepted} of 200 messages sent accepted before the loss",
            afterLoss=times["reconnected"] - times["lost"],
            attempts=self.attemptsSince(index),
            total=times["reconnected"] - began,
            stopping=stopped - began,
            accepted=accepted,
        )
        self.assertLess(times["reconnected"] - times["lost"], 5)


class RabbitMQReconnectTests(_ReconnectTestCase):
    """
    Reconnecting to a RabbitMQ node that restarts.
    """

    def setUp(self) -> None:
        requireRabbitMQ()
        self.node = sharedNode()
        super().setUp()

    async def test_brokerRestarts(self) -> None:
        """
        L{ReconnectingAMQPClientFactory} reconnects by itself while and after
        the broker restarts (the restart runs in a thread, so the factory
        keeps trying on the reactor meanwhile).
        """
        reactor = theReactor()
        factory = self.reconnecting(
            AMQPClientEndpoint.fromURL(reactor, self.node.url, timeout=5)
        )
        connection: AMQPConnection = await factory.whenConnected()
        await self.sendOne(connection, "before")
        reconnection, times = self.reconnection(factory, connection)
        began = reactor.seconds()
        index = len(self.events)
        await deferToThread(self.node.restart)
        restarted = reactor.seconds()
        again = await reconnection
        self.assertIsNot(again, connection)
        self.assertEqual(peerPort(again), self.node.port)
        await self.sendOne(again, "after")
        _log.info(
            "recovery (RabbitMQ restart): {afterLoss:.3f} s from the loss to "
            "the new open connection, in {attempts} attempts; the loss came "
            "{lossAfter:.3f} s into the restart, which took {restart:.3f} s; "
            "reconnected {afterRestart:+.3f} s from its end",
            afterLoss=times["reconnected"] - times["lost"],
            attempts=self.attemptsSince(index),
            lossAfter=times["lost"] - began,
            restart=restarted - began,
            afterRestart=times["reconnected"] - restarted,
        )
