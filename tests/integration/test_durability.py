# -*- test-case-name: tests.integration.test_durability -*-
"""
Integration tests of C{twistd amqp-listen --store}: durable messages
accepted by a real server process survive its C{SIGKILL}.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3

from proton import Message
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated

from amqptx import AMQPConnection, Outcome
from amqptx.broker._sqlite import SCHEMA_VERSION
from tests.integration._twistd import Twistd, TwistdTestCase

COUNT = 2000
"""
How many durable messages the tests send."""

_RECOVERED = re.compile(
    r"Recovered (\d+) durable queue\(s\) and (\d+) message\(s\) "
    r"\((\d+) to deliver again\) from .* in ([0-9.]+) s"
)


def _body(index: int) -> str:
    return f"message-{index}"


class DurabilityTests(TwistdTestCase):
    """
    C{twistd amqp-listen --store PATH}, killed with C{SIGKILL} and started
    again on the same store.
    """

    def setUp(self) -> None:
        super().setUp()
        # twistd runs in the checkout, not in trial's directory.
        self.store = os.path.abspath(self.mktemp())

    async def restart(self, killed: Twistd) -> Twistd:
        """
        Start C{twistd} again on the same port and store.

        @param killed: the process killed.
        @return: the new process, once it listens.
        """
        return await self.startTwistd("--store", self.store, port=killed.port)

    def recovered(self, twistd: Twistd) -> tuple[int, int, int, float]:
        """
        @return: what the process's log says it recovered: durable queues,
            messages, messages to deliver again, and the seconds it took.
        """
        match = _RECOVERED.search(twistd.output())
        assert match is not None, twistd.output()
        queues, messages, again, seconds = match.groups()
        return int(queues), int(messages), int(again), float(seconds)

    async def sendAll(
        self, connection: AMQPConnection, address: str, count: int
    ) -> list[Deferred[Outcome]]:
        """
        Send C{count} durable messages, all in flight at once.

        @return: the Deferreds of their outcomes.
        """
        sender = await connection.sender(address, queueLimit=count)
        return [
            sender.send(Message(body=_body(index), durable=True))
            for index in range(count)
        ]

    async def test_killed(self) -> None:
        """
        2,000 durable messages accepted before a C{SIGKILL} all come back,
        in order, from the server started again on the same store; the two
        whose delivery had begun (unacknowledged) come back with their
        delivery count one higher and C{first-acquirer} false.
        """
        first = await self.startTwistd("--store", self.store)
        connection = await self.connect(first.url)
        outcomes = await gatherResults(await self.sendAll(connection, "durable", COUNT))
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * COUNT)

        # Handing the first message out gives credit for the second: both
        # are delivered, neither is settled.
        receiver = await connection.receiver("durable", credit=1)
        taken = await receiver.get()
        self.assertEqual(taken.body, _body(0))
        # Committed after the server recorded both deliveries: the store
        # writes its changes in order.
        barrier = await connection.send("barrier", Message(body="b", durable=True))
        self.assertIs(barrier, Outcome.ACCEPTED)

        killed = await first.signal("KILL")
        assert isinstance(killed, ProcessTerminated)
        self.assertEqual(killed.signal, signal.SIGKILL)

        second = await self.restart(first)
        self.assertEqual(self.recovered(second)[1:3], (COUNT + 1, 2))
        again = await self.connect(second.url)
        receiver = await again.receiver("durable", credit=100)
        received = []
        for _ in range(COUNT):
            message = await receiver.get()
            message.accept()
            received.append(
                (
                    message.body,
                    message.message.delivery_count,
                    message.message.first_acquirer,
                )
            )
        self.assertEqual(
            received,
            [(_body(0), 1, False), (_body(1), 1, False)]
            + [(_body(index), 0, False) for index in range(2, COUNT)],
        )
        await again.close()

    async def test_killedWhileSending(self) -> None:
        """
        When the server is killed while durable messages are being sent,
        every message that was accepted comes back after the restart, in
        order (those in flight may come back too: they were committed, but
        their outcome was lost).
        """
        first = await self.startTwistd("--store", self.store)
        connection = await self.connect(first.url)
        sends = await self.sendAll(connection, "durable", COUNT)
        accepted: list[int] = []
        killing: list[Deferred[ProcessDone | ProcessTerminated]] = []

        def outcome(result: object, index: int) -> None:
            if result is Outcome.ACCEPTED:
                accepted.append(index)
                if len(accepted) == COUNT // 4 and not killing:
                    killing.append(first.signal("KILL"))

        for index, d in enumerate(sends):
            d.addBoth(outcome, index)
        await gatherResults(sends)
        await killing[0]
        self.assertGreaterEqual(len(accepted), COUNT // 4)
        self.assertEqual(accepted, sorted(accepted))

        second = await self.restart(first)
        again = await self.connect(second.url)
        recovered = self.recovered(second)[1]
        self.assertGreaterEqual(recovered, len(accepted))
        receiver = await again.receiver("durable", credit=100, autoAccept=True)
        bodies = [(await receiver.get()).body for _ in range(recovered)]
        self.assertEqual(bodies, [_body(index) for index in range(recovered)])
        await again.close()

    async def test_newerStore(self) -> None:
        """
        A store written by a newer amqptx stops C{twistd} at start with a
        one-line message, without a traceback.
        """
        db = sqlite3.connect(self.store)
        db.execute(f"PRAGMA application_id = {0x616D7178}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.close()
        twistd = self.spawnTwistd(
            "--listen", "amqp:0:interface=127.0.0.1", "--store", self.store
        )
        ended = await twistd.ended
        output = twistd.output()
        assert isinstance(ended, ProcessTerminated), output
        self.assertNotEqual(ended.exitCode, 0, output)
        self.assertNotIn("Traceback", output)
        errors = [line for line in output.splitlines() if "newer amqptx" in line]
        self.assertEqual(len(errors), 1, output)
        self.assertIn(f"amqp-listen: message store {self.store}: ", errors[0])
        # It stopped before listening.
        self.assertNotIn("starting on", output)

    async def test_cleanStop(self) -> None:
        """
        On C{SIGTERM} the server closes the store once its connections are
        closed: what was acknowledged before is not delivered again.
        """
        first = await self.startTwistd("--store", self.store)
        connection = await self.connect(first.url)
        outcomes = await gatherResults(await self.sendAll(connection, "q", 10))
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * 10)
        receiver = await connection.receiver("q", credit=5, autoAccept=True)
        self.assertEqual(
            [(await receiver.get()).body for _ in range(5)],
            [_body(index) for index in range(5)],
        )
        # The accepts of the last messages handed out have reached the
        # server once this is accepted.
        await connection.send("barrier", Message(body="b"))
        await first.signal("TERM")
        self.assertNotIn("Traceback", first.output())

        second = await self.restart(first)
        self.assertEqual(self.recovered(second)[1:3], (5, 0))
        again = await self.connect(second.url)
        receiver = await again.receiver("q", credit=5, autoAccept=True)
        self.assertEqual(
            [(await receiver.get()).body for _ in range(5)],
            [_body(index) for index in range(5, 10)],
        )
        await again.close()
