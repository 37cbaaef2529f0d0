# -*- test-case-name: tests.test_broker -*-
"""
Tests for L{amqptx.broker}: the in-memory queues of C{twistd amqp-listen},
served to L{amqptx.AMQPConnection} clients in memory.
"""

from __future__ import annotations

from proton import Message
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from amqptx import AMQPConnection, Outcome, ReceivedMessage, Receiver
from amqptx.broker import Broker, BrokerProtocol
from amqptx.testing import IOPump, connectPair


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
