# -*- test-case-name: tests.integration.test_recovery -*-
"""
Integration tests of recovery on the real reactor: what an application
built on L{ReconnectingAMQPClientFactory} keeps across a reconnect.

  - L{RabbitMQRecoveryTests}: one L{Sender} sends 5,000 durable messages
    while its RabbitMQ node restarts twice; every send is accepted exactly
    once, and every message is in the queue (at least once: duplicates are
    counted, not refused).
  - L{AMQPListenRecoveryTests}: a receiver waiting in C{get()} keeps
    waiting while C{twistd amqp-listen} is killed and started again on the
    same port, and then gets the messages sent there; a sender fails over
    from one C{amqp-listen} server to another, and back.

The measured recovery times and duplicate counts are logged
(C{_trial_temp/test.log}) as C{"recovery"} events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

from proton import Message
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from amqptx import (
    AMQPClientEndpoint,
    AMQPConnection,
    AMQPFailoverEndpoint,
    Outcome,
    ReceivedMessage,
    Receiver,
    ReconnectingAMQPClientFactory,
    Sender,
)
from tests.integration._peers import freePort, ignoreFailure, peerPort, theReactor
from tests.integration._rabbitmq import requireRabbitMQ, sharedNode
from tests.integration._twistd import TwistdTestCase

_log = Logger()

_END = "end"
"""
The body of the message a test sends after all the others, so that a
receiver knows it has seen everything before it (queues are FIFO).
"""


def _whenLost(connection: AMQPConnection) -> Deferred[float]:
    """
    @param connection: an open connection.
    @return: a Deferred that fires with the reactor's time when the
        connection ends, however it ends.
    """
    reactor = theReactor()
    closed: Deferred[Any] = connection.whenClosed()
    return closed.addErrback(ignoreFailure).addCallback(lambda _: reactor.seconds())


class _Stream:
    """
    Sends numbered messages on one sender with a window of unsettled sends,
    and records each outcome: how many times each send Deferred fired, with
    what, when, and on which connection.

    @ivar fired: for each number, how many times its Deferred fired.
    @ivar outcomes: for each number, what its Deferred fired with (an
        L{Outcome}, or the failure).
    @ivar acceptedOn: for each accepted number, the connection the factory
        had open when the acceptance arrived.
    @ivar firstAcceptance: for each connection, the reactor's time of the
        first acceptance that arrived on it.
    @ivar sent: how many messages have been handed to the sender.
    @ivar resolved: how many send Deferreds have fired.
    @ivar accepted: how many send Deferreds fired with L{Outcome.ACCEPTED}.
    """

    def __init__(
        self,
        factory: ReconnectingAMQPClientFactory,
        sender: Sender,
        count: int,
        window: int,
        durable: bool = False,
    ) -> None:
        self._factory = factory
        self._sender = sender
        self._count = count
        self._window = DeferredSemaphore(window)
        self._durable = durable
        self.fired = [0] * count
        self.outcomes: list[object] = [None] * count
        self.acceptedOn: dict[int, AMQPConnection] = {}
        self.firstAcceptance: dict[AMQPConnection, float] = {}
        self.sent = 0
        self.resolved = 0
        self.accepted = 0
        self._done: Deferred[None] = Deferred()
        self._watchers: list[Callable[[], None]] = []
        self._gate: Callable[[int], Deferred[None] | None] = lambda number: None

    def watch(self, watcher: Callable[[], None]) -> None:
        """
        Call C{watcher} after every outcome.

        @param watcher: a function of no arguments.
        """
        self._watchers.append(watcher)

    def gate(self, gate: Callable[[int], Deferred[None] | None]) -> None:
        """
        Ask C{gate} before each send whether to wait first.

        @param gate: a function of the message's number that returns a
            Deferred to wait for, or L{None} to send at once.
        """
        self._gate = gate

    @property
    def inFlight(self) -> int:
        """
        How many messages were sent and wait for their outcome.
        """
        return self.sent - self.resolved

    async def run(self) -> None:
        """
        Send every message, then wait until every send Deferred has fired.
        """
        for number in range(self._count):
            await self._window.acquire()
            waitFor = self._gate(number)
            if waitFor is not None:
                await waitFor
            d = self._sender.send(Message(body=number, durable=self._durable))
            self.sent += 1
            d.addBoth(self._outcome, number)
        await self._done

    def _outcome(self, result: object, number: int) -> None:
        reactor = theReactor()
        self.fired[number] += 1
        self.outcomes[number] = result
        self.resolved += 1
        if result is Outcome.ACCEPTED:
            self.accepted += 1
            connection = self._factory.connection
            assert isinstance(connection, AMQPConnection)
            self.acceptedOn[number] = connection
            self.firstAcceptance.setdefault(connection, reactor.seconds())
        self._window.release()
        for watcher in self._watchers:
            watcher()
        if self.resolved == self._count and not self._done.called:
            self._done.callback(None)

    def problems(self) -> str | None:
        """
        @return: L{None} when every send Deferred fired exactly once, with
            L{Outcome.ACCEPTED}; else a summary of those that did not: how
            many, grouped by what happened, with the first and last numbers
            of each group.
        """
        groups: dict[str, list[int]] = {}
        for number, (fired, outcome) in enumerate(
            zip(self.fired, self.outcomes, strict=True)
        ):
            if fired == 1 and outcome is Outcome.ACCEPTED:
                continue
            if isinstance(outcome, Failure):
                what = outcome.getErrorMessage() or repr(outcome.value)
                what = f"{outcome.type.__name__}: {what}"  # type: ignore[union-attr]
            else:
                what = repr(outcome)
            groups.setdefault(f"fired {fired} times, last with {what}", []).append(
                number
            )
        if not groups:
            return None
        return "; ".join(
            f"{len(numbers)} sends {what} (messages {numbers[0]} to {numbers[-1]})"
            for what, numbers in groups.items()
        )


async def _drain(receiver: Receiver, patience: float) -> tuple[list[Any], list[Any]]:
    """
    Receive and accept messages until the one whose body is L{_END}.

    @param receiver: the receiver.
    @param patience: the longest wait, in seconds, for everything.
    @return: the bodies received before L{_END}, in order, and the bodies
        received twice or more (once for each extra copy).
    @raise twisted.internet.defer.TimeoutError: when L{_END} did not come
        in time.
    """
    reactor = theReactor()
    deadline = reactor.seconds() + patience
    bodies: list[Any] = []
    seen: set[Any] = set()
    duplicates: list[Any] = []
    while True:
        waiting = receiver.get()
        waiting.addTimeout(max(0.0, deadline - reactor.seconds()), reactor)
        received = await waiting
        received.accept()
        if received.body == _END:
            return bodies, duplicates
        if received.body in seen:
            duplicates.append(received.body)
        seen.add(received.body)
        bodies.append(received.body)


class _RecoveryTestCase(TwistdTestCase):
    """
    Starts what a test needs and stops all of it afterwards.
    """

    timeout = 60


class RabbitMQRecoveryTests(_RecoveryTestCase):
    """
    At least once through RabbitMQ restarts.
    """

    timeout = 120

    count = 5000
    window = 200
    restartsAfter = (1000, 3000)
    pace = 0.004
    """
    Seconds between sends while a restart is under way and the connection
    still up.  RabbitMQ accepts some 6,000 messages a second here, and
    C{rabbitmqctl stop} takes 0.7 to 4 seconds to reach it: at full speed
    the stream would be over before the broker goes down.  The price: few
    messages (1 to 6 in the runs so far) are in flight when it does.
    """
    gateAfter = 1600
    """
    How many numbers past a restart's trigger may be sent before the
    connection is seen lost (then sending waits for the loss).
    """

    def setUp(self) -> None:
        requireRabbitMQ()
        self.node = sharedNode()
        super().setUp()

    def durableQueue(self) -> str:
        """
        @return: the address of a new queue, which RabbitMQ declares durable
            because the sender asks for a durable target.
        """
        return f"/queue/recovery-{uuid4().hex}"

    async def test_atLeastOnceThroughRestarts(self) -> None:
        """
        5,000 numbered durable messages sent on one L{Sender}, with 200
        unsettled at a time, to a durable queue, while the node restarts
        twice: every send Deferred fires once, with L{Outcome.ACCEPTED};
        every number is in the queue afterwards (duplicates, the price of at
        least once, are counted and logged); the sender recovers after each
        restart.
        """
        reactor = theReactor()
        address = self.durableQueue()
        factory = self.reconnecting(
            AMQPClientEndpoint(reactor, "127.0.0.1", self.node.port, timeout=5)
        )
        sender = await (await factory.whenConnected()).sender(address, durable=True)
        stream = _Stream(factory, sender, self.count, self.window, durable=True)
        restarts: list[dict[str, Any]] = []
        restarting: list[Deferred[None]] = []

        def maybeRestart() -> None:
            index = len(restarts)
            if index == len(self.restartsAfter):
                return
            if stream.accepted < self.restartsAfter[index]:
                return
            if restarting and not restarting[-1].called:
                # The previous restart is still running: restart again when
                # it is over.
                return
            connection = factory.connection
            if not isinstance(connection, AMQPConnection):
                # Called when a restart ended, before the reconnect: the
                # next acceptance calls again.
                return
            record: dict[str, Any] = {
                "began": reactor.seconds(),
                "connection": connection,
                "trigger": stream.accepted,
            }
            restarts.append(record)

            def lost(when: float) -> None:
                record["lost"] = when
                record["inFlight"] = stream.inFlight

            record["whenLost"] = _whenLost(connection).addCallback(lost)

            def back(result: None) -> None:
                record["back"] = reactor.seconds()
                maybeRestart()

            done: Deferred[None] = deferToThread(self.node.restart)
            restarting.append(done.addCallback(back))

        def gate(number: int) -> Deferred[None] | None:
            if not restarts or "lost" in restarts[-1]:
                return None
            record = restarts[-1]
            if number >= record["trigger"] + self.gateAfter:
                waiting: Deferred[None] = record["whenLost"]
                return waiting
            return deferLater(reactor, self.pace, lambda: None)

        stream.watch(maybeRestart)
        stream.gate(gate)
        await stream.run()
        await gatherResults(restarting)
        self.assertIsNone(stream.problems())
        self.assertEqual(len(restarts), 2)

        outcome = await sender.send(Message(body=_END, durable=True))
        self.assertIs(outcome, Outcome.ACCEPTED)
        receiver = await (await factory.whenConnected()).receiver(
            address, credit=500, durable=True
        )
        bodies, duplicates = await _drain(receiver, 30)
        missing = sorted(set(range(self.count)) - set(bodies))
        self.assertEqual(missing, [])
        self.assertEqual(len(bodies), self.count + len(duplicates))

        for number, record in enumerate(restarts, 1):
            # The connection watched may already have been replaced when the
            # restart began: then count from the restart itself.
            record.setdefault("lost", record["began"])
            record.setdefault("inFlight", 0)
            after = [
                when
                for connection, when in stream.firstAcceptance.items()
                if connection is not record["connection"] and when > record["lost"]
            ]
            self.assertTrue(after, f"no acceptance after restart {number}")
            record["firstAccepted"] = min(after)
            _log.info(
                "recovery (RabbitMQ restart {number} of 2, at {trigger} "
                "acceptances): {recovery:.3f} s from the node being back to "
                "the first acceptance on the new connection; the loss came "
                "{lossAfter:.3f} s into the restart, with {inFlight} messages "
                "waiting for their outcome; the restart took {restart:.3f} s; "
                "{outage:.3f} s from the loss to the first acceptance",
                number=number,
                trigger=record["trigger"],
                recovery=record["firstAccepted"] - record["back"],
                lossAfter=record["lost"] - record["began"],
                inFlight=record["inFlight"],
                restart=record["back"] - record["began"],
                outage=record["firstAccepted"] - record["lost"],
            )
        _log.info(
            "recovery (RabbitMQ restarts): {count} messages accepted once "
            "each; {received} received, {distinct} distinct, {duplicates} "
            "duplicates: {sample}",
            count=self.count,
            received=len(bodies),
            distinct=len(set(bodies)),
            duplicates=len(duplicates),
            sample=sorted(duplicates)[:20],
        )


class AMQPListenRecoveryTests(_RecoveryTestCase):
    """
    Receivers and senders against C{twistd amqp-listen} servers that are
    killed and started again.
    """

    async def test_receiverWaitsThroughRestart(self) -> None:
        """
        Ten C{get()} calls wait on a reconnecting receiver while its server
        is killed (C{SIGKILL}) and started again on the same port; once a
        producer has sent ten messages there, all ten calls fire with them,
        in order, without any new call from the application.
        """
        reactor = theReactor()
        server = await self.startTwistd(port=freePort())
        factory = self.reconnecting(
            AMQPClientEndpoint(reactor, "127.0.0.1", server.port)
        )
        connection: AMQPConnection = await factory.whenConnected()
        receiver = await connection.receiver("recovery-in", credit=5)
        gets = [receiver.get() for _ in range(10)]
        firstMessage: dict[str, float] = {}

        def arrived(received: ReceivedMessage) -> ReceivedMessage:
            firstMessage["at"] = reactor.seconds()
            return received

        gets[0].addCallback(arrived)
        lost = _whenLost(connection)

        killed = reactor.seconds()
        await server.signal("KILL")
        await lost
        for d in gets[1:]:
            self.assertNoResult(d)
        restarted = await self.startTwistd(port=server.port)
        back = restarted.listeningAt
        assert back is not None

        again: AMQPConnection = await factory.whenConnected()
        self.assertIsNot(again, connection)
        self.assertEqual(peerPort(again), server.port)
        await receiver.whenAttached()
        attached = reactor.seconds()

        producer = await self.connect(restarted.url)
        outcomes = await gatherResults(
            [producer.send("recovery-in", Message(body=i)) for i in range(10)]
        )
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * 10)
        received = await gatherResults(gets)
        self.assertEqual([r.body for r in received], list(range(10)))
        for message in received:
            message.accept()
        _log.info(
            "recovery (amqp-listen killed and started again): the receiver "
            "attached again {attached:.3f} s after the server was back "
            "({downtime:.3f} s after the kill); its first waiting get() fired "
            "{first:.3f} s after the server was back",
            attached=attached - back,
            downtime=attached - killed,
            first=firstMessage["at"] - back,
        )

    async def test_failoverAndBack(self) -> None:
        """
        A reconnecting factory over a failover endpoint of two servers sends
        numbered messages on one L{Sender}; the first server is killed
        mid-stream, and the sender carries on with the second: every send
        Deferred fires once, with L{Outcome.ACCEPTED}; the numbers accepted
        there are all in its queue, once each, and the rest were accepted
        by the first server before it was killed (and died with its
        in-memory queue).  Started again, the first server is where the
        client returns once the second stops.
        """
        reactor = theReactor()
        count, window, killAfter = 1000, 100, 300
        first = await self.startTwistd(port=freePort())
        second = await self.startTwistd(port=freePort())
        factory = self.reconnecting(
            AMQPFailoverEndpoint.fromURLs(
                reactor, [first.url, second.url], policy=False
            )
        )
        connection: AMQPConnection = await factory.whenConnected()
        self.assertEqual(peerPort(connection), first.port)
        sender = await connection.sender("failover-q")
        stream = _Stream(factory, sender, count, window)
        lost = _whenLost(connection)
        kill: dict[str, Any] = {}

        def maybeKill() -> None:
            if stream.accepted >= killAfter and not kill:
                kill["at"] = reactor.seconds()
                kill["inFlight"] = stream.inFlight
                kill["ended"] = first.signal("KILL")

        stream.watch(maybeKill)
        await stream.run()
        lostAt = await lost
        self.assertIsNone(stream.problems())

        onFirst = {n for n, c in stream.acceptedOn.items() if c is connection}
        onSecond = set(stream.acceptedOn) - onFirst
        self.assertGreaterEqual(len(onFirst), killAfter)
        self.assertEqual(
            {peerPort(c) for n, c in stream.acceptedOn.items() if n in onSecond},
            {second.port},
        )
        self.assertLessEqual(stream.firstAcceptance[connection], lostAt)
        switched = factory.connection
        assert isinstance(switched, AMQPConnection)
        self.assertLess(lostAt, stream.firstAcceptance[switched])

        self.assertIs(
            await sender.send(Message(body=_END)),
            Outcome.ACCEPTED,
        )
        consumer = await self.connect(second.url)
        bodies, duplicates = await _drain(
            await consumer.receiver("failover-q", credit=100), 10
        )
        self.assertEqual(duplicates, [])
        self.assertEqual(set(bodies), onSecond)
        self.assertEqual(bodies, sorted(onSecond))
        await consumer.close()
        await kill["ended"]

        # Back to the first server: start it again, stop the second.
        restarted = await self.startTwistd(port=first.port)
        leaving = _whenLost(switched)
        stopping = reactor.seconds()
        await second.signal("TERM")
        await leaving
        returned: AMQPConnection = await factory.whenConnected()
        returnedAt = reactor.seconds()
        self.assertEqual(peerPort(returned), first.port)
        self.assertIs(await sender.send(Message(body="back")), Outcome.ACCEPTED)
        check = await self.connect(restarted.url)
        back = await (await check.receiver("failover-q")).get()
        self.assertEqual(back.body, "back")
        back.accept()

        _log.info(
            "recovery (failover, first amqp-listen killed after {killAfter} "
            "acceptances with {inFlight} in flight): {outage:.3f} s from the "
            "kill to the first acceptance on the second server; {onFirst} "
            "numbers accepted by the first (lost with it), {onSecond} by the "
            "second; back on the first {returned:.3f} s after the second was "
            "told to stop",
            killAfter=killAfter,
            inFlight=kill["inFlight"],
            outage=stream.firstAcceptance[switched] - kill["at"],
            onFirst=len(onFirst),
            onSecond=len(onSecond),
            returned=returnedAt - stopping,
        )
