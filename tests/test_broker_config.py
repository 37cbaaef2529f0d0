# -*- test-case-name: tests.test_broker_config -*-
"""
Tests for L{amqptx.broker.BrokerConfig} and what L{amqptx.broker.Broker}
makes of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import amqptx.broker
from amqptx.broker import Broker, BrokerConfig, BrokerProtocol, Permissions


class BrokerConfigTests(SynchronousTestCase):
    """
    L{BrokerConfig} checks its values.
    """

    def test_defaults(self) -> None:
        """
        By default addresses are created when used, C{topic/} addresses are
        multicast, and there are no limits, dead letters or permissions.
        """
        config = BrokerConfig()
        self.assertTrue(config.autoCreate)
        self.assertEqual(config.queues, ())
        self.assertEqual(config.multicastPrefix, "topic/")
        self.assertEqual(
            (
                config.deadLetterAddress,
                config.maxDeliveries,
                config.maxQueueDepth,
                config.maxMessageSize,
                config.permissions,
            ),
            (None,) * 5,
        )

    def test_frozen(self) -> None:
        """
        A configuration cannot be changed, and is hashable.
        """
        config = BrokerConfig(permissions=Permissions.parse("a send q"))
        self.assertRaises(
            dataclasses.FrozenInstanceError, setattr, config, "autoCreate", False
        )
        self.assertEqual(
            hash(config), hash(BrokerConfig(permissions=Permissions.parse("a send q")))
        )

    def test_limits(self) -> None:
        """
        The limits are positive integers (or L{None}).
        """
        for name in ("maxDeliveries", "maxQueueDepth", "maxMessageSize"):
            for bad in (0, -1, True):
                kw: dict[str, Any] = {name: bad}
                error = self.assertRaises(ValueError, BrokerConfig, **kw)
                self.assertIn(name, str(error))
            BrokerConfig(**{name: 1})  # type: ignore[arg-type]

    def test_emptyNames(self) -> None:
        """
        An empty multicast prefix, dead-letter address or declared queue is
        an error.
        """
        self.assertRaises(ValueError, BrokerConfig, multicastPrefix="")
        self.assertRaises(ValueError, BrokerConfig, deadLetterAddress="")
        self.assertRaises(ValueError, BrokerConfig, queues=("a", ""))
        self.assertRaises(TypeError, BrokerConfig, queues="abc")

    def test_isMulticast(self) -> None:
        """
        An address is multicast when it begins with the prefix.
        """
        self.assertTrue(BrokerConfig().isMulticast("topic/a"))
        self.assertFalse(BrokerConfig().isMulticast("queue/topic/a"))
        self.assertFalse(BrokerConfig(multicastPrefix=None).isMulticast("topic/a"))
        self.assertTrue(BrokerConfig(multicastPrefix="mc.").isMulticast("mc.x"))


class BrokerTests(SynchronousTestCase):
    """
    L{Broker} itself.
    """

    def test_exports(self) -> None:
        """
        The public names come from C{amqptx.broker}.
        """
        self.assertEqual(
            sorted(amqptx.broker.__all__),
            [
                "Broker",
                "BrokerConfig",
                "BrokerProtocol",
                "IMessageStore",
                "Permissions",
                "Queue",
                "Recovery",
                "SQLiteStore",
                "StoreError",
                "StoreService",
                "StoredMessage",
                "Topic",
            ],
        )

    def test_defaultBroker(self) -> None:
        """
        C{Broker()} uses the default configuration, and its factory builds
        L{BrokerProtocol}s serving it.
        """
        broker = Broker()
        self.assertEqual(broker.config, BrokerConfig())
        protocol = broker.factory().buildProtocol(None)
        assert isinstance(protocol, BrokerProtocol)
        self.assertIs(protocol.broker, broker)

    def test_defaultClock(self) -> None:
        """
        Without a clock, the broker uses the global reactor's.
        """
        from twisted.internet import reactor

        self.assertIs(Broker().clock, reactor)

    def test_declared(self) -> None:
        """
        Declared queues and topics, and the dead-letter queue, exist from
        the start.
        """
        broker = Broker(
            BrokerConfig(queues=("a", "topic/b"), deadLetterAddress="dlq"), Clock()
        )
        self.assertEqual(sorted(broker.queues), ["a", "dlq"])
        self.assertEqual(sorted(broker.topics), ["topic/b"])
        self.assertEqual(broker.queues["a"].depth, 0)
        self.assertEqual(broker.queues["a"].consumers, 0)

    def test_put(self) -> None:
        """
        L{Queue.put} stores an encoded message, its time to live counted
        from now.
        """
        from proton import Message

        clock = Clock()
        broker = Broker(clock=clock)
        queue = broker.queue("q")
        queue.put(bytes(Message(body=1, ttl=5).encode()))
        queue.put(b"not a message")
        self.assertEqual(queue.depth, 2)
        clock.advance(5)
        self.assertEqual(queue.expire(), 1)
        self.assertEqual([m.data for m in queue.messages], [b"not a message"])
