# -*- test-case-name: tests.test_broker -*-
"""
Tests for L{amqptx.broker}: the in-memory queues of C{twistd amqp-listen},
served to L{amqptx.AMQPConnection} clients in memory.
"""

from __future__ import annotations

import struct
from typing import Any

from proton import Delivery, Disposition, Message
from twisted.cred.checkers import (
    AllowAnonymousAccess,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from amqptx import (
    AMQPConnection,
    ConnectionSettings,
    LinkDetached,
    MessageRejected,
    Outcome,
    ReceivedMessage,
    Receiver,
    Sender,
    _raw,
)
from amqptx._sasl import SASLConfig
from amqptx.broker import Broker, BrokerConfig, BrokerProtocol
from amqptx.testing import IOPump, connectPair

EPOCH = 1_700_000_000.0
"""
A realistic time (November 2023) for the test clock, in seconds since the
epoch, so that absolute expiry times make sense."""

USERS = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret", bob=b"secret")


class BrokerMixin(SynchronousTestCase):
    """
    Clients connected in memory to a L{Broker} on a L{Clock} set to
    L{EPOCH}.
    """

    def setUp(self) -> None:
        self.useBroker(BrokerConfig())

    def useBroker(self, config: BrokerConfig) -> Broker:
        """
        Make a new broker (for the clients connected afterwards).

        @param config: its configuration.
        @return: the broker.
        """
        self.clock = Clock()
        self.clock.advance(EPOCH)
        self.broker = Broker(config, self.clock)
        self.pumps: list[IOPump] = []
        return self.broker

    def connect(
        self, user: str | None = None, maxFrameSize: int | None = None
    ) -> AMQPConnection:
        """
        Connect a client; the server authenticates with amqptx's SASL.

        @param user: a user name for PLAIN (password C{secret}), or L{None}
            for ANONYMOUS.
        @param maxFrameSize: the client's largest frame, or L{None} for
            proton's default.
        @return: the open connection.
        """
        client = AMQPConnection()
        server = ConnectionSettings(
            role="server",
            sasl=SASLConfig(
                checkers=(USERS, AllowAnonymousAccess()), allowInsecure=True
            ),
        )
        if user is None:
            settings = ConnectionSettings(
                mechanisms=("ANONYMOUS",), maxFrameSize=maxFrameSize
            )
        else:
            settings = ConnectionSettings(
                mechanisms=("PLAIN",),
                user=user,
                password="secret",
                allowInsecureMechanisms=True,
                maxFrameSize=maxFrameSize,
            )
        opened = client.whenOpened()
        self.pumps.append(
            connectPair(
                BrokerProtocol(self.broker), client, self.clock, server, settings
            )
        )
        self.flush()
        self.successResultOf(opened)
        return client

    def flush(self) -> None:
        """
        Move bytes between every client and the broker until all is quiet.
        """
        for _ in range(4):
            for pump in self.pumps:
                pump.flush()

    def receiver(self, client: AMQPConnection, address: str, **kw: object) -> Receiver:
        """
        @return: a receiver attached to C{address}.
        """
        d = client.receiver(address, **kw)  # type: ignore[arg-type]
        self.flush()
        return self.successResultOf(d)

    def sender(self, client: AMQPConnection, address: str | None) -> Sender:
        """
        @return: a sender attached to C{address}.
        """
        d = client.sender(address)
        self.flush()
        return self.successResultOf(d)

    def refused(self, d: Deferred[Any]) -> str | None:
        """
        @return: the condition of the L{LinkDetached} C{d} failed with.
        """
        self.flush()
        failure = self.failureResultOf(d, LinkDetached)
        return failure.value.condition  # type: ignore[no-any-return]

    def get(self, receiver: Receiver) -> ReceivedMessage:
        """
        @return: the next message the receiver gets.
        """
        d = receiver.get()
        self.flush()
        return self.successResultOf(d)

    def send(self, client: AMQPConnection, target: str | None, **kw: Any) -> None:
        """
        Send a message (made of C{kw}) to C{target} and check that the broker
        accepts it.
        """
        d = client.send(target, Message(**kw))
        self.flush()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)

    def assertNothing(self, receiver: Receiver) -> None:
        """
        Assert that the receiver gets no message now.
        """
        pending = receiver.get()
        self.flush()
        self.assertNoResult(pending)
        pending.cancel()
        self.failureResultOf(pending, CancelledError)

    def depth(self, address: str) -> int:
        """
        @return: how many messages wait in a queue.
        """
        return len(self.broker.queues[address].messages)


class BrokerTests(SynchronousTestCase):
    """
    Queue semantics seen by clients.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.broker = Broker()
        self.pumps: list[IOPump] = []

    def connect(self) -> AMQPConnection:
        client = AMQPConnection()
        self.pumps.append(connectPair(BrokerProtocol(self.broker), client, self.clock))
        return client

    def flush(self) -> None:
        for _ in range(3):
            for pump in self.pumps:
                pump.flush()

    def receiver(self, client: AMQPConnection, address: str, **kw: object) -> Receiver:
        d = client.receiver(address, **kw)  # type: ignore[arg-type]
        self.flush()
        return self.successResultOf(d)

    def get(self, receiver: Receiver) -> ReceivedMessage:
        d = receiver.get()
        self.flush()
        return self.successResultOf(d)

    def test_sendThenReceive(self) -> None:
        """
        Messages sent to an address are accepted, kept in order, and handed
        to a receiver that attaches later.
        """
        producer, consumer = self.connect(), self.connect()
        sends = [producer.send("q", Message(body=i)) for i in range(5)]
        self.flush()
        for d in sends:
            self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertEqual(len(self.broker.queues["q"].messages), 5)
        receiver = self.receiver(consumer, "q")
        bodies = []
        for _ in range(5):
            received = self.get(receiver)
            bodies.append(received.body)
            received.accept()
        self.flush()
        self.assertEqual(bodies, list(range(5)))
        self.assertEqual(len(self.broker.queues["q"].messages), 0)

    def test_creditTopUp(self) -> None:
        """
        A sending link gets a window of 100 credits, topped up to the full
        window once a quarter of it is used, not before.
        """
        client = self.connect()
        d = client.sender("q")
        self.flush()
        sender = self.successResultOf(d)
        self.assertEqual(sender.link.credit, 100)
        for i in range(24):
            sender.send(Message(body=i))
        self.flush()
        self.assertEqual(sender.link.credit, 76)
        sender.send(Message(body=24))
        self.flush()
        self.assertEqual(sender.link.credit, 100)
        self.assertEqual(len(self.broker.queues["q"].messages), 25)

    def test_roundRobin(self) -> None:
        """
        Two consumers of one queue share its messages in turn.
        """
        producer = self.connect()
        first = self.receiver(self.connect(), "q", autoAccept=True)
        second = self.receiver(self.connect(), "q", autoAccept=True)
        for i in range(6):
            producer.send("q", Message(body=i))
        self.flush()
        firstBodies = [self.get(first).body for _ in range(3)]
        secondBodies = [self.get(second).body for _ in range(3)]
        self.assertEqual(sorted(firstBodies + secondBodies), list(range(6)))
        self.assertEqual(firstBodies, [0, 2, 4])

    def test_releaseRequeues(self) -> None:
        """
        A released message goes back to the front of its queue.
        """
        producer, consumer = self.connect(), self.connect()
        producer.send("q", Message(body="first"))
        producer.send("q", Message(body="second"))
        self.flush()
        receiver = self.receiver(consumer, "q", credit=1)
        released = self.get(receiver)
        self.assertEqual(released.body, "first")
        # Handing it out gave credit for "second", which is on its way.
        released.release()
        self.flush()
        self.assertEqual(self.get(receiver).body, "second")
        self.assertEqual(self.get(receiver).body, "first")

    def test_disconnectRequeues(self) -> None:
        """
        Messages a consumer had not settled when its connection dropped go to
        the next consumer: nothing is lost.
        """
        producer, consumer = self.connect(), self.connect()
        for i in range(3):
            producer.send("q", Message(body=i))
        self.flush()
        receiver = self.receiver(consumer, "q")
        self.assertEqual([self.get(receiver).body for _ in range(3)], [0, 1, 2])
        consumer.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()
        self.assertEqual(len(self.broker.queues["q"].messages), 3)
        later = self.receiver(self.connect(), "q")
        self.assertEqual([self.get(later).body for _ in range(3)], [0, 1, 2])

    def test_rejectDrops(self) -> None:
        """
        A rejected message leaves the queue.
        """
        producer, consumer = self.connect(), self.connect()
        producer.send("q", Message(body=1))
        self.flush()
        receiver = self.receiver(consumer, "q")
        self.get(receiver).reject()
        self.flush()
        self.assertEqual(len(self.broker.queues["q"].messages), 0)

    def test_dynamicQueue(self) -> None:
        """
        A dynamic receiver gets a new temporary queue, which goes away when
        the receiver detaches.
        """
        client = self.connect()
        receiver = self.receiver(client, None, dynamic=True)  # type: ignore[arg-type]
        address = receiver.address
        assert address is not None
        self.assertIn(address, self.broker.queues)
        client.send(address, Message(body="reply"))
        self.flush()
        self.assertEqual(self.get(receiver).body, "reply")
        receiver.close()
        self.flush()
        self.assertNotIn(address, self.broker.queues)

    def test_anonymousRelay(self) -> None:
        """
        A sender without a target routes each message by its address.
        """
        client = self.connect()
        d = client.send(None, Message(address="routed", body="x"))
        self.flush()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertEqual(len(self.broker.queues["routed"].messages), 1)

    def test_relayWithoutAddress(self) -> None:
        """
        A message with neither a target nor an address is rejected with
        C{amqp:not-found}.
        """
        from amqptx import MessageRejected

        client = self.connect()
        d = client.send(None, Message(body="x"))
        self.flush()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:not-found")

    def test_presettledConsumer(self) -> None:
        """
        A consumer that asks for pre-settled messages (at most once) gets
        them settled, and they leave the queue at once.
        """
        producer, consumer = self.connect(), self.connect()
        producer.send("q", Message(body=1))
        self.flush()
        link = consumer.connection.session()
        link.open()
        receiver = link.receiver("presettled")
        receiver.source.address = "q"
        receiver.snd_settle_mode = receiver.SND_SETTLED
        receiver.open()
        receiver.flow(1)
        consumer.flush()
        self.flush()
        self.assertEqual(len(self.broker.queues["q"].messages), 0)
        delivery = receiver.current
        assert delivery is not None
        self.assertTrue(delivery.settled)


class RedeliveryTests(BrokerMixin):
    """
    At-least-once delivery: what happens to a message its consumer does not
    accept.
    """

    def test_releaseUnchanged(self) -> None:
        """
        A released message comes back first, with the same delivery count,
        and C{first-acquirer} false.
        """
        producer, consumer = self.connect(), self.connect()
        self.send(producer, "q", body="first", first_acquirer=True)
        self.send(producer, "q", body="second")
        receiver = self.receiver(consumer, "q", credit=1)
        received = self.get(receiver)
        self.assertTrue(received.message.first_acquirer)
        received.release()
        self.flush()
        self.assertEqual(self.get(receiver).body, "second")
        again = self.get(receiver)
        self.assertEqual(again.body, "first")
        self.assertEqual(again.message.delivery_count, 0)
        self.assertFalse(again.message.first_acquirer)

    def test_modifiedFailed(self) -> None:
        """
        A message given back I{modified} with C{delivery-failed} comes back
        first with its delivery count one higher and C{first-acquirer}
        false; without C{delivery-failed}, the count stays.  The rest of the
        message is unchanged.
        """
        producer, consumer = self.connect(), self.connect()
        self.send(
            producer,
            "q",
            body={"k": [1, 2]},
            first_acquirer=True,
            durable=True,
            priority=7,
            subject="s",
            properties={"p": 1},
        )
        receiver = self.receiver(consumer, "q")
        self.get(receiver).modify(deliveryFailed=True)
        self.flush()
        again = self.get(receiver)
        message = again.message
        self.assertEqual(message.delivery_count, 1)
        self.assertFalse(message.first_acquirer)
        self.assertEqual(
            (message.body, message.durable, message.priority, message.subject),
            ({"k": [1, 2]}, True, 7, "s"),
        )
        self.assertEqual(message.properties, {"p": 1})
        again.modify(deliveryFailed=False)
        self.flush()
        self.assertEqual(self.get(receiver).message.delivery_count, 1)

    def test_undeliverableHere(self) -> None:
        """
        A message given back as I{undeliverable-here} is not delivered to
        that consumer again, while it stays attached; the messages behind it
        still are, and another consumer gets it.
        """
        producer, first = self.connect(), self.connect()
        self.send(producer, "q", body="refused")
        self.send(producer, "q", body="next")
        receiver = self.receiver(first, "q", credit=1)
        self.get(receiver).modify(deliveryFailed=False, undeliverableHere=True)
        self.flush()
        self.assertEqual(self.get(receiver).body, "next")
        self.assertNothing(receiver)
        self.assertEqual(self.depth("q"), 1)
        other = self.receiver(self.connect(), "q")
        self.assertEqual(self.get(other).body, "refused")

    def test_disconnectCounts(self) -> None:
        """
        Messages unsettled when their consumer's connection drops go back to
        the front of the queue, in order, with their delivery count one
        higher and C{first-acquirer} false.
        """
        producer, consumer = self.connect(), self.connect()
        for i in range(2):
            self.send(producer, "q", body=i, first_acquirer=True)
        receiver = self.receiver(consumer, "q")
        self.assertEqual([self.get(receiver).body for _ in range(2)], [0, 1])
        consumer.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()
        later = self.receiver(self.connect(), "q")
        messages = [self.get(later).message for _ in range(2)]
        self.assertEqual([m.body for m in messages], [0, 1])
        self.assertEqual([m.delivery_count for m in messages], [1, 1])
        self.assertEqual([m.first_acquirer for m in messages], [False, False])

    def test_detachCounts(self) -> None:
        """
        Messages unsettled when their consumer detaches go back with their
        delivery count one higher.
        """
        producer, consumer = self.connect(), self.connect()
        self.send(producer, "q", body=1)
        receiver = self.receiver(consumer, "q")
        self.get(receiver)
        receiver.close()
        self.flush()
        self.assertEqual(self.depth("q"), 1)
        later = self.receiver(consumer, "q")
        self.assertEqual(self.get(later).message.delivery_count, 1)

    def test_sessionEndCounts(self) -> None:
        """
        Messages unsettled when the client ends its session (without
        detaching its links) go back too.
        """
        producer, consumer = self.connect(), self.connect()
        self.send(producer, "q", body=1)
        session = consumer.connection.session()
        session.open()
        link = session.receiver("raw")
        link.source.address = "q"
        link.open()
        link.flow(1)
        consumer.flush()
        self.flush()
        self.assertEqual(self.depth("q"), 0)
        session.close()
        consumer.flush()
        self.flush()
        self.assertEqual(self.depth("q"), 1)
        self.assertEqual(self.broker.queues["q"].consumers, 0)

    def test_rejectDropped(self) -> None:
        """
        Without a dead-letter address, a rejected message is dropped.
        """
        producer, consumer = self.connect(), self.connect()
        self.send(producer, "q", body=1)
        self.get(self.receiver(consumer, "q")).reject()
        self.flush()
        self.assertEqual(self.depth("q"), 0)
        self.assertEqual(sorted(self.broker.queues), ["q"])

    def test_rejectDeadLettered(self) -> None:
        """
        With a dead-letter address, a rejected message goes there.
        """
        self.useBroker(BrokerConfig(deadLetterAddress="dlq"))
        producer, consumer = self.connect(), self.connect()
        self.send(producer, "q", body="bad")
        self.get(self.receiver(consumer, "q")).reject("app:bad", "no")
        self.flush()
        self.assertEqual(self.depth("q"), 0)
        dead = self.receiver(consumer, "dlq")
        self.assertEqual(self.get(dead).body, "bad")

    def test_rejectedFromDeadLetterQueue(self) -> None:
        """
        A message rejected from the dead-letter queue itself is dropped.
        """
        self.useBroker(BrokerConfig(deadLetterAddress="dlq"))
        client = self.connect()
        self.send(client, "dlq", body=1)
        self.get(self.receiver(client, "dlq")).reject()
        self.flush()
        self.assertEqual(self.depth("dlq"), 0)

    def test_maxDeliveriesDeadLettered(self) -> None:
        """
        A message whose delivery count reaches C{maxDeliveries} is
        dead-lettered, with that count.
        """
        self.useBroker(BrokerConfig(deadLetterAddress="dlq", maxDeliveries=2))
        producer, consumer = self.connect(), self.connect()
        self.send(producer, "q", body="poison")
        receiver = self.receiver(consumer, "q")
        self.get(receiver).modify()
        self.flush()
        again = self.get(receiver)
        self.assertEqual(again.message.delivery_count, 1)
        again.modify()
        self.flush()
        self.assertEqual(self.depth("q"), 0)
        self.assertNothing(receiver)
        dead = self.get(self.receiver(consumer, "dlq"))
        self.assertEqual(dead.body, "poison")
        self.assertEqual(dead.message.delivery_count, 2)

    def test_maxDeliveriesDropped(self) -> None:
        """
        Without a dead-letter address, a message whose delivery count
        reaches C{maxDeliveries} (here through disconnects) is dropped.
        """
        self.useBroker(BrokerConfig(maxDeliveries=1))
        producer, consumer = self.connect(), self.connect()
        self.send(producer, "q", body="poison")
        self.get(self.receiver(consumer, "q"))
        consumer.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()
        self.assertEqual(self.depth("q"), 0)


class ExpiryTests(BrokerMixin):
    """
    Messages past their time to live or absolute expiry time are not
    delivered.
    """

    def test_ttlExpired(self) -> None:
        """
        A message whose C{ttl} has passed since the broker received it is
        dropped when it would be delivered; the next one is delivered.
        """
        producer = self.connect()
        self.send(producer, "q", body="old", ttl=10)
        self.send(producer, "q", body="fresh")
        self.clock.advance(10)
        receiver = self.receiver(self.connect(), "q")
        self.assertEqual(self.get(receiver).body, "fresh")
        self.assertEqual(self.depth("q"), 0)

    def test_ttlNotYet(self) -> None:
        """
        A message within its C{ttl} is delivered.
        """
        producer = self.connect()
        self.send(producer, "q", body="m", ttl=10)
        self.clock.advance(9.9)
        receiver = self.receiver(self.connect(), "q")
        self.assertEqual(self.get(receiver).body, "m")

    def test_absoluteExpiry(self) -> None:
        """
        A message whose C{absolute-expiry-time} has passed on the broker's
        clock is dropped; one whose time has not come is delivered.
        """
        producer = self.connect()
        self.send(producer, "q", body="late", expiry_time=EPOCH + 5)
        self.send(producer, "q", body="early", expiry_time=EPOCH + 50)
        self.clock.advance(6)
        receiver = self.receiver(self.connect(), "q")
        self.assertEqual(self.get(receiver).body, "early")
        self.assertNothing(receiver)

    def test_expiredDeadLettered(self) -> None:
        """
        With a dead-letter address, an expired message goes there, and no
        longer expires.
        """
        self.useBroker(BrokerConfig(deadLetterAddress="dlq"))
        producer = self.connect()
        self.send(producer, "q", body="old", ttl=1)
        self.clock.advance(2)
        self.assertEqual(self.broker.queues["q"].expire(), 1)
        self.assertEqual(self.depth("dlq"), 1)
        self.clock.advance(100)
        self.assertEqual(self.get(self.receiver(producer, "dlq")).body, "old")

    def test_expireWholeQueue(self) -> None:
        """
        L{Queue.expire} drops every expired message, wherever it is in the
        queue, and keeps the others in order.
        """
        producer = self.connect()
        self.send(producer, "q", body=0)
        self.send(producer, "q", body=1, ttl=1)
        self.send(producer, "q", body=2)
        self.send(producer, "q", body=3, ttl=100)
        self.clock.advance(2)
        queue = self.broker.queues["q"]
        self.assertEqual(queue.expire(), 1)
        self.assertEqual(queue.expire(), 0)
        receiver = self.receiver(producer, "q")
        self.assertEqual([self.get(receiver).body for _ in range(3)], [0, 2, 3])


class AddressTests(BrokerMixin):
    """
    The anonymous relay, dynamic nodes, and which addresses exist.
    """

    def test_relayOffered(self) -> None:
        """
        The server's Open offers the C{ANONYMOUS-RELAY} capability.
        """
        client = self.connect()
        self.assertIn("ANONYMOUS-RELAY", client.connection.remote_offered_capabilities)

    def test_relayToExisting(self) -> None:
        """
        Through the relay, messages reach the queue their address names, and
        that queue's consumers.
        """
        client = self.connect()
        receiver = self.receiver(client, "q")
        self.send(client, None, address="q", body="via relay")
        self.assertEqual(self.get(receiver).body, "via relay")

    def test_dynamicTarget(self) -> None:
        """
        A sending link with a dynamic target gets a new temporary queue,
        deleted when the link detaches.
        """
        client = self.connect()
        session = client.connection.session()
        session.open()
        link = session.sender("dyn")
        link.target.dynamic = True
        link.open()
        client.flush()
        self.flush()
        address = link.remote_target.address
        assert address is not None
        self.assertTrue(address.startswith("amqptx.temp."))
        self.assertIn(address, self.broker.queues)
        link.close()
        client.flush()
        self.flush()
        self.assertNotIn(address, self.broker.queues)

    def test_temporaryDeletedDetachesOthers(self) -> None:
        """
        When the link that created a temporary queue detaches, the links
        other clients attached to the queue are detached with
        C{amqp:resource-deleted}.
        """
        owner, other = self.connect(), self.connect()
        receiver = self.receiver(owner, None, dynamic=True)  # type: ignore[arg-type]
        address = receiver.address
        assert address is not None
        sender = self.sender(other, address)
        receiver.close()
        self.flush()
        failure = self.failureResultOf(sender.send(Message(body=1)), LinkDetached)
        self.assertEqual(failure.value.condition, "amqp:resource-deleted")

    def test_drain(self) -> None:
        """
        A consumer that asks to drain gets what the queue holds, and its
        unused credit back.
        """
        producer, consumer = self.connect(), self.connect()
        self.send(producer, "q", body=1)
        session = consumer.connection.session()
        session.open()
        link = session.receiver("draining")
        link.source.address = "q"
        link.open()
        link.drain(5)
        consumer.flush()
        self.flush()
        self.assertEqual(link.queued, 1)
        self.assertFalse(link.draining())

    def test_noSourceAddress(self) -> None:
        """
        A receiving link without a source address is refused with
        C{amqp:not-found}.
        """
        client = self.connect()
        condition = self.refused(client.receiver(None))
        self.assertEqual(condition, "amqp:not-found")

    def test_autoCreateOff(self) -> None:
        """
        Without C{autoCreate}, attaching to an unknown address is refused on
        the link with C{amqp:not-found} (a null terminus, then a detach), and
        the relay rejects messages for one; declared queues and topics, and
        the dead-letter queue, work.
        """
        self.useBroker(
            BrokerConfig(
                autoCreate=False,
                queues=("known", "topic/known"),
                deadLetterAddress="dlq",
            )
        )
        client = self.connect()
        self.assertEqual(self.refused(client.receiver("unknown")), "amqp:not-found")
        self.assertEqual(self.refused(client.sender("unknown")), "amqp:not-found")
        self.assertEqual(self.refused(client.sender("topic/x")), "amqp:not-found")
        d = client.send(None, Message(address="unknown", body=1))
        self.flush()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:not-found")
        self.assertEqual(sorted(self.broker.queues), ["dlq", "known"])
        receiver = self.receiver(client, "known")
        self.send(client, "known", body="k")
        self.assertEqual(self.get(receiver).body, "k")
        subscriber = self.receiver(client, "topic/known")
        self.send(client, None, address="topic/known", body="t")
        self.assertEqual(self.get(subscriber).body, "t")
        self.send(client, "dlq", body="d")

    def test_queueOfMulticastAddress(self) -> None:
        """
        L{Broker.queue} refuses a multicast address.
        """
        self.assertRaises(ValueError, self.broker.queue, "topic/x")


class MulticastTests(BrokerMixin):
    """
    Addresses with the multicast prefix are topics.
    """

    def test_everySubscriberGetsACopy(self) -> None:
        """
        Every receiver attached to a topic gets every message, in order.
        """
        producer = self.connect()
        first = self.receiver(self.connect(), "topic/news")
        second = self.receiver(self.connect(), "topic/news")
        for i in range(3):
            self.send(producer, "topic/news", body=i)
        for receiver in (first, second):
            bodies = []
            for _ in range(3):
                received = self.get(receiver)
                bodies.append(received.body)
                received.accept()
            self.assertEqual(bodies, [0, 1, 2])
        self.flush()
        topic = self.broker.topics["topic/news"]
        self.assertEqual(topic.consumers, 2)
        self.assertEqual([len(s.messages) for s in topic.subscriptions], [0, 0])

    def test_nothingStoredWithoutSubscribers(self) -> None:
        """
        A message sent to a topic nobody listens to is accepted and dropped;
        a later subscriber gets only the messages sent after it attached.
        """
        producer = self.connect()
        self.send(producer, "topic/news", body="lost")
        self.send(producer, None, address="topic/other", body="lost too")
        self.assertEqual(self.broker.queues, {})
        self.assertNotIn("topic/other", self.broker.topics)
        receiver = self.receiver(self.connect(), "topic/news")
        self.send(producer, "topic/news", body="seen")
        self.assertEqual(self.get(receiver).body, "seen")
        self.assertNothing(receiver)

    def test_subscriptionsAreIndependent(self) -> None:
        """
        A subscriber that releases a message gets it again; the other
        subscriber is not affected.  A subscriber that leaves drops its
        copies, and the topic goes away with its last user.
        """
        producer = self.connect()
        first = self.receiver(self.connect(), "topic/t", credit=1)
        second = self.receiver(self.connect(), "topic/t", autoAccept=True)
        self.send(producer, "topic/t", body=1)
        self.get(first).release()
        self.flush()
        self.assertEqual(self.get(first).body, 1)
        self.assertEqual(self.get(second).body, 1)
        first.close()
        second.close()
        self.flush()
        self.assertEqual(self.broker.topics["topic/t"].consumers, 0)
        self.assertEqual(self.broker.topics["topic/t"].producers, 1)
        producer.close()
        self.flush()
        self.assertNotIn("topic/t", self.broker.topics)

    def test_undeliverableHereDeadLettered(self) -> None:
        """
        A subscriber's copy given back as I{undeliverable-here} cannot go to
        anyone else: it is dead-lettered.
        """
        self.useBroker(BrokerConfig(deadLetterAddress="dlq"))
        producer = self.connect()
        receiver = self.receiver(self.connect(), "topic/t")
        self.send(producer, "topic/t", body=1)
        self.get(receiver).modify(undeliverableHere=True)
        self.flush()
        self.assertEqual(self.depth("dlq"), 1)

    def test_noMulticast(self) -> None:
        """
        Without a multicast prefix, C{topic/} addresses are queues.
        """
        self.useBroker(BrokerConfig(multicastPrefix=None))
        producer = self.connect()
        self.send(producer, "topic/news", body=1)
        self.assertEqual(self.depth("topic/news"), 1)


class MalformedTests(BrokerMixin):
    """
    Messages the broker cannot read, or reads only with proton's decoder.
    """

    def rawSend(self, client: AMQPConnection, data: bytes) -> Delivery:
        """
        Send bytes as a message to C{q} on a proton link.

        @return: the delivery.
        """
        session = client.connection.session()
        session.open()
        link = session.sender("raw")
        link.target.address = "q"
        link.open()
        client.flush()
        self.flush()
        delivery = link.delivery("raw")
        link.send(data)
        link.advance()
        client.flush()
        self.flush()
        return delivery

    def test_notAMessage(self) -> None:
        """
        Bytes that are not an AMQP message (which proton's decoder takes for
        an empty message) are stored and delivered as they came.
        """
        client = self.connect()
        delivery = self.rawSend(client, b"not a message")
        self.assertEqual(delivery.remote_state, Disposition.ACCEPTED)
        self.assertEqual(
            [m.data for m in self.broker.queues["q"].messages], [b"not a message"]
        )

    def test_proton(self) -> None:
        """
        A header that proton's decoder reads, but not the broker's own reader
        (a C{delivery-count} encoded as an C{int}), is rewritten through
        proton for a redelivery.
        """
        client = self.connect()
        data = (
            b"\x00\x53\x70\xc0\x0a\x05\x40\x40\x40\x41\x71\x00\x00\x00\x02"
            b"\x00\x53\x77\xa1\x02hi"
        )
        delivery = self.rawSend(client, data)
        self.assertEqual(delivery.remote_state, Disposition.ACCEPTED)
        receiver = self.receiver(client, "q")
        self.get(receiver).modify()
        self.flush()
        message = self.get(receiver).message
        self.assertEqual(message.body, "hi")
        self.assertEqual(message.delivery_count, 1)
        self.assertFalse(message.first_acquirer)

    def test_unreadable(self) -> None:
        """
        A message whose header neither the broker nor proton can read (an
        unknown constructor) is delivered as it came, again after a release
        or a failed delivery; its failed deliveries are counted by the
        broker for C{maxDeliveries}.
        """
        self.useBroker(BrokerConfig(maxDeliveries=2, deadLetterAddress="dlq"))
        client = self.connect()
        data = bytes.fromhex("005370c00201ff005377a101ff")
        self.assertEqual(self.rawSend(client, data).remote_state, Disposition.ACCEPTED)
        session = client.connection.session()
        session.open()
        link = session.receiver("raw-in")
        link.source.address = "q"
        link.open()
        link.flow(10)
        for outcome in (Disposition.RELEASED, Disposition.MODIFIED):
            client.flush()
            self.flush()
            delivery = link.current
            assert delivery is not None
            self.assertEqual(link.recv(100), data)
            link.advance()
            if outcome == Disposition.MODIFIED:
                delivery.local.failed = True
            delivery.update(outcome)
            delivery.settle()
        client.flush()
        self.flush()
        self.assertEqual(self.depth("q"), 0)
        self.assertEqual(link.queued, 1)
        delivery = link.current
        assert delivery is not None
        self.assertEqual(link.recv(100), data)
        link.advance()
        delivery.local.failed = True
        delivery.update(Disposition.MODIFIED)
        delivery.settle()
        client.flush()
        self.flush()
        self.assertEqual(self.depth("q"), 0)
        self.assertEqual([m.data for m in self.broker.queues["dlq"].messages], [data])


def _str(raw: bytes) -> bytes:
    return b"\xa1" + bytes([len(raw)]) + raw


def _described(code: int, *fields: bytes) -> bytes:
    body = b"".join(fields)
    return b"\x00\x53" + bytes([code, 0xC0, len(body) + 1, len(fields)]) + body


def _frame(performative: bytes) -> bytes:
    return struct.pack(">IBBH", 8 + len(performative), 2, 0, 0) + performative


_ZERO, _WINDOW = b"\x43", b"\x70\x00\x00\x08\x00"


def _kept(record: Any) -> bool:
    """
    @return: whether a C object's record holds attributes of proton's
        wrappers.
    """
    return bool(_raw.lib.pn_record_get_py(record) != _raw.NULL)


class WrapperAttributesTests(BrokerMixin):
    """
    The broker's connections keep none of the attributes proton's wrappers
    store in the C connection, sessions and links (a dictionary each, for
    as long as the C object lives), once open: a server holds thousands.
    """

    def serverConnection(self) -> BrokerProtocol:
        """
        @return: the broker's side of the only connection.
        """
        [protocol] = self.broker.connections
        return protocol

    def assertNoneKept(self, protocol: BrokerProtocol) -> None:
        """
        Assert that the C connection of C{protocol} and each of its
        sessions and links keep no attributes.
        """
        lib = _raw.lib
        assert protocol.engine is not None
        connection = protocol.engine.rawConnection
        self.assertFalse(_kept(lib.pn_connection_attachments(connection)))
        sessions = links = 0
        session = lib.pn_session_head(connection, 0)
        while session != _raw.NULL:
            self.assertFalse(_kept(lib.pn_session_attachments(session)))
            sessions += 1
            session = lib.pn_session_next(session, 0)
        link = lib.pn_link_head(connection, 0)
        while link != _raw.NULL:
            self.assertFalse(_kept(lib.pn_link_attachments(link)))
            links += 1
            link = lib.pn_link_next(link, 0)
        self.assertGreater(sessions, 0)
        self.assertGreater(links, 0)

    def test_consumersAndProducers(self) -> None:
        """
        After a receiver and a sender attach and a message goes through,
        nothing is kept; the links still work.
        """
        client = self.connect()
        receiver = self.receiver(client, "q")
        sender = self.sender(client, "q")
        self.assertNoneKept(self.serverConnection())
        d = sender.send(Message(body="after"))
        self.flush()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertEqual(self.get(receiver).body, "after")
        self.assertNoneKept(self.serverConnection())

    def test_fewAttributes(self) -> None:
        """
        The protocols on both sides and their engines set at most 30
        attribute names, after a message went through each way: past that
        CPython gives every instance a dictionary of its own.
        """
        client = self.connect()
        receiver = self.receiver(client, "q")
        d = client.send("q", Message(body="through"))
        self.flush()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertEqual(self.get(receiver).body, "through")
        server = self.serverConnection()
        for instance in (client, server, client.engine, server.engine):
            self.assertLessEqual(len(vars(instance)), 30, sorted(vars(instance)))

    def test_refusedLink(self) -> None:
        """
        A refused link is detached with its condition, which proton's
        wrapper carries up to the Detach.
        """
        client = self.connect()
        self.receiver(client, "q")
        self.assertEqual(self.refused(client.receiver("")), "amqp:not-found")
        self.assertNoneKept(self.serverConnection())

    def test_openSaysItAll(self) -> None:
        """
        What a server's settings put in its Open (properties, kept in the
        wrapper's attributes until the Open is sent) still reaches the client.
        """
        client = AMQPConnection()
        server = ConnectionSettings(
            role="server",
            sasl=SASLConfig(checkers=(AllowAnonymousAccess(),)),
            properties={"product": "amqp-listen"},
        )
        opened = client.whenOpened()
        self.pumps.append(
            connectPair(BrokerProtocol(self.broker), client, self.clock, server)
        )
        self.flush()
        self.successResultOf(opened)
        self.assertEqual(
            client.connection.remote_properties, {"product": "amqp-listen"}
        )
        self.assertIn("ANONYMOUS-RELAY", client.connection.remote_offered_capabilities)


class ForeignBytesTests(SynchronousTestCase):
    """
    Peer strings proton cannot decode (not UTF-8) do not break the broker.
    """

    def setUp(self) -> None:
        self.broker = Broker(BrokerConfig(), Clock())
        self.events = EventLoggingObserver()
        globalLogPublisher.addObserver(self.events)
        self.addCleanup(globalLogPublisher.removeObserver, self.events)

    def converse(self, container: bytes, *attaches: bytes) -> bytes:
        """
        Open a connection and a session, then send C{attaches}.

        @return: everything the broker answered.
        """
        protocol = BrokerProtocol(self.broker)
        protocol.configure(
            ConnectionSettings(
                role="server", sasl=SASLConfig(checkers=(AllowAnonymousAccess(),))
            ),
            Clock(),
        )
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"AMQP\x00\x01\x00\x00"
            + _frame(_described(0x10, _str(container)))
            + _frame(_described(0x11, b"\x40", _ZERO, _WINDOW, _WINDOW))
            + b"".join(_frame(a) for a in attaches)
        )
        self.assertEqual([e for e in self.events if "log_failure" in e], [])
        output: bytes = transport.value()
        return output

    def attach(self, name: bytes, role: bytes, terminus: bytes) -> bytes:
        """
        @return: an Attach performative with a source or a target.
        """
        if role == b"\x42":
            # A sender: the broker receives, at the target.
            return _described(
                0x12, _str(name), _ZERO, role, b"\x40", b"\x40", b"\x40", terminus
            )
        return _described(0x12, _str(name), _ZERO, role, b"\x40", b"\x40", terminus)

    def test_linkName(self) -> None:
        """
        Links whose names are not UTF-8 attach and work.
        """
        self.converse(
            b"c",
            self.attach(b"\xe6x", b"\x42", _described(0x29, _str(b"q"))),
        )
        self.assertEqual(self.broker.queues["q"].producers, 1)

    def test_address(self) -> None:
        """
        An address that is not UTF-8 is refused with C{amqp:invalid-field}.
        """
        output = self.converse(
            b"c", self.attach(b"s", b"\x42", _described(0x29, _str(b"\xff")))
        )
        self.assertIn(b"amqp:invalid-field", output)
        self.assertEqual(self.broker.queues, {})

    def test_containerId(self) -> None:
        """
        A dynamic node for a container id that is not UTF-8 is named for an
        anonymous container.
        """
        dynamic = _described(0x28, b"\x40", _ZERO, b"\x40", _ZERO, b"\x41")
        self.converse(b"\xff", self.attach(b"r", b"\x41", dynamic))
        self.assertEqual(list(self.broker.queues), ["amqptx.temp.anonymous.1"])
