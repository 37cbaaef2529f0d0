# -*- test-case-name: tests.integration.test_heartbeats -*-
"""
Heartbeats against RabbitMQ: its Open advertises an idle timeout of 60 s,
amqptx keeps the connection alive within it, and RabbitMQ honours the idle
timeout amqptx advertises.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

import amqptx
from tests.integration._rabbitmq import requireRabbitMQ, sharedNode


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class RabbitMQHeartbeatTests(TestCase):
    """
    Heartbeats both ways with RabbitMQ 3.10.
    """

    timeout = 60

    def setUp(self) -> None:
        requireRabbitMQ()
        self.node = sharedNode()

    async def test_bothWays(self) -> None:
        """
        RabbitMQ advertises 60 s; amqptx's next keep-alive is due within 30 s
        of silence.  With amqptx advertising an idle timeout of 2 s, RabbitMQ
        sends empty frames while the connection is otherwise silent, and the
        connection stays open over several timeouts.
        """
        reactor = _reactor()
        connection = await amqptx.connect(
            reactor, f"amqp://127.0.0.1:{self.node.port}", idleTimeout=2
        )
        self.addCleanup(lambda: connection.close().addErrback(lambda _: None))
        engine = connection.engine
        assert engine is not None
        self.assertEqual(engine.transport.remote_idle_timeout, 60.0)
        now = reactor.seconds()
        self.assertLessEqual(engine.tick(now) - now, 30.0)
        framesBefore = engine.transport.frames_input
        # Wait three of our advertised timeouts of silence: nothing but the
        # connection's own timers runs meanwhile.
        silence: Deferred[None] = Deferred()
        reactor.callLater(3.0, silence.callback, None)
        await silence
        self.assertIsNone(connection._ended)
        self.assertGreater(engine.transport.frames_input, framesBefore)
