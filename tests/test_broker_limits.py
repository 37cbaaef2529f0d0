# -*- test-case-name: tests.test_broker_limits -*-
"""
Tests for the limits of L{amqptx.broker}: queue depth (back-pressure) and
message size.
"""

from __future__ import annotations

from proton import Message
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from amqptx import AMQPConnection, LinkDetached, MessageRejected, Outcome
from amqptx.broker import Broker, BrokerConfig, BrokerProtocol
from amqptx.testing import connectPair
from tests.test_broker import BrokerMixin


class QueueDepthTests(BrokerMixin):
    """
    With C{maxQueueDepth}, senders get credit only while their queue has
    room: sends beyond the depth wait, and nothing is lost.
    """

    def setUp(self) -> None:
        self.useBroker(BrokerConfig(maxQueueDepth=3))

    def test_backPressure(self) -> None:
        """
        Sends beyond the depth stay pending until a consumer takes messages;
        then they complete, and every message arrives once, in order.
        """
        producer = self.connect()
        sends = [producer.send("q", Message(body=i)) for i in range(5)]
        self.flush()
        for d in sends[:3]:
            self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        for d in sends[3:]:
            self.assertNoResult(d)
        self.assertEqual(self.depth("q"), 3)
        receiver = self.receiver(self.connect(), "q", credit=2, autoAccept=True)
        self.assertEqual([self.get(receiver).body for _ in range(2)], [0, 1])
        for d in sends[3:]:
            self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertEqual([self.get(receiver).body for _ in range(3)], [2, 3, 4])
        self.assertNothing(receiver)

    def test_creditWithinDepth(self) -> None:
        """
        The credit given to all the senders of a queue, plus the messages
        waiting in it, stays within the depth; a sender that detaches frees
        its credit for the others.
        """
        first, second = self.connect(), self.connect()
        one = self.sender(first, "q")
        two = self.sender(second, "q")
        self.assertEqual(one.link.credit + two.link.credit, 3)
        self.assertEqual(one.link.credit, 3)
        d = two.send(Message(body="waits"))
        self.flush()
        self.assertNoResult(d)
        one.close()
        self.flush()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertEqual(self.depth("q"), 1)

    def test_relayHeld(self) -> None:
        """
        Through the anonymous relay, a message for a full queue is held,
        unsettled, until the queue has room; messages behind it wait too.
        """
        client = self.connect()
        for i in range(3):
            self.send(client, None, address="q", body=i)
        held = client.send(None, Message(address="q", body=3))
        behind = client.send(None, Message(address="other", body="x"))
        self.flush()
        self.assertNoResult(held)
        self.assertNoResult(behind)
        receiver = self.receiver(self.connect(), "q", credit=1, autoAccept=True)
        self.assertEqual(self.get(receiver).body, 0)
        self.assertIs(self.successResultOf(held), Outcome.ACCEPTED)
        self.assertIs(self.successResultOf(behind), Outcome.ACCEPTED)
        self.assertEqual([self.get(receiver).body for _ in range(3)], [1, 2, 3])
        self.assertEqual(self.depth("other"), 1)

    def test_relayHeldDropped(self) -> None:
        """
        A message the relay holds is dropped, unsettled, when its link goes
        away; the queue keeps working.
        """
        client = self.connect()
        for i in range(3):
            self.send(client, None, address="q", body=i)
        held = client.send(None, Message(address="q", body=3))
        self.flush()
        client.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()
        self.failureResultOf(held)
        receiver = self.receiver(self.connect(), "q", autoAccept=True)
        self.assertEqual([self.get(receiver).body for _ in range(3)], [0, 1, 2])
        self.assertNothing(receiver)

    def test_relayHeldForDeletedQueue(self) -> None:
        """
        A message the relay holds for a temporary queue that is deleted is
        rejected with C{amqp:resource-deleted}; the relay goes on.
        """
        owner, client = self.connect(), self.connect()
        receiver = self.receiver(owner, None, dynamic=True, credit=1)  # type: ignore[arg-type]
        address = receiver.address
        for i in range(4):
            self.send(client, None, address=address, body=i)
        held = client.send(None, Message(address=address, body="held"))
        self.flush()
        self.assertNoResult(held)
        receiver.close()
        self.flush()
        failure = self.failureResultOf(held, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:resource-deleted")
        self.send(client, None, address="q", body="goes on")
        self.assertEqual(self.depth("q"), 1)

    def test_topicFollowsSlowestSubscriber(self) -> None:
        """
        A topic has room while its fullest subscription does.
        """
        producer = self.connect()
        fast = self.receiver(self.connect(), "topic/t", autoAccept=True)
        slow = self.receiver(self.connect(), "topic/t", credit=1, autoAccept=True)
        sends = [producer.send("topic/t", Message(body=i)) for i in range(6)]
        self.flush()
        # The slow subscriber holds one message unsettled and three queued.
        self.assertEqual(len([d for d in sends if d.called]), 4)
        self.assertEqual([self.get(fast).body for _ in range(4)], [0, 1, 2, 3])
        self.assertEqual(self.get(slow).body, 0)
        self.assertEqual(len([d for d in sends if d.called]), 5)
        self.assertEqual([self.get(slow).body for _ in range(5)], [1, 2, 3, 4, 5])
        self.assertEqual([self.get(fast).body for _ in range(2)], [4, 5])
        for d in sends:
            self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)

    def test_expiredMakeRoom(self) -> None:
        """
        A full queue drops its expired messages before it refuses room: a
        sender waiting on it gets credit as soon as the queue is looked at
        again (here, because another sender attaches), before the newcomer.
        """
        client = self.connect()
        for i in range(3):
            self.send(client, "q", body=i, ttl=1)
        waiting = client.send("q", Message(body="waiting"))
        self.flush()
        self.assertNoResult(waiting)
        self.clock.advance(2)
        newcomer = self.sender(self.connect(), "q")
        self.assertIs(self.successResultOf(waiting), Outcome.ACCEPTED)
        self.assertEqual(newcomer.link.credit, 0)
        receiver = self.receiver(client, "q")
        self.assertEqual(self.get(receiver).body, "waiting")

    def test_requeueBeyondDepth(self) -> None:
        """
        Messages given back to a full queue are kept (it goes over its
        depth for a while); senders wait until it has room again, and
        nothing is lost.
        """
        client = self.connect()
        receiver = self.receiver(self.connect(), "q", credit=2)
        sends = [client.send("q", Message(body=i)) for i in range(6)]
        self.flush()
        self.assertEqual(self.depth("q"), 3)
        self.assertNoResult(sends[5])
        receiver.close()
        self.flush()
        self.assertEqual(self.depth("q"), 5)
        self.assertNoResult(sends[5])
        later = self.receiver(self.connect(), "q", autoAccept=True)
        self.assertEqual([self.get(later).body for _ in range(6)], list(range(6)))
        self.assertIs(self.successResultOf(sends[5]), Outcome.ACCEPTED)


class MessageSizeTests(BrokerMixin):
    """
    With C{maxMessageSize}, larger messages are rejected and never stored.
    """

    def setUp(self) -> None:
        self.useBroker(BrokerConfig(maxMessageSize=2000))

    def test_advertised(self) -> None:
        """
        The broker's receiving links advertise the limit as their
        C{max-message-size}.
        """
        sender = self.sender(self.connect(), "q")
        self.assertEqual(sender.link.remote_max_message_size, 2000)

    def test_oversizeRejected(self) -> None:
        """
        A larger message is rejected with
        C{amqp:link:message-size-exceeded} and not stored; the link stays
        usable.
        """
        client = self.connect()
        d = client.send("q", Message(body="x" * 3000))
        self.flush()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:link:message-size-exceeded")
        self.assertEqual(self.depth("q"), 0)
        self.send(client, "q", body="small")
        self.assertEqual(self.depth("q"), 1)

    def test_oversizeInPieces(self) -> None:
        """
        A larger message that arrives in many frames is thrown away as it
        arrives and rejected; a message within the limit that arrives in
        many frames is stored whole.
        """
        client = self.connect(maxFrameSize=512)
        d = client.send("q", Message(body="x" * 50000))
        self.flush()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:link:message-size-exceeded")
        self.assertEqual(self.depth("q"), 0)
        body = "".join(chr(ord("a") + i % 26) for i in range(1900))
        self.send(client, "q", body=body)
        receiver = self.receiver(self.connect(), "q")
        self.assertEqual(self.get(receiver).body, body)

    def test_relayOversize(self) -> None:
        """
        Through the anonymous relay too.
        """
        client = self.connect()
        d = client.send(None, Message(address="q", body="x" * 3000))
        self.flush()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:link:message-size-exceeded")
        self.assertNotIn("q", self.broker.queues)


class LinkLimitTests(SynchronousTestCase):
    """
    C{BrokerConfig.maxLinks} bounds the links of one connection.
    """

    def test_refusedBeyond(self) -> None:
        """
        Beyond the limit, an attach is refused on the link with
        C{amqp:resource-limit-exceeded}; after a detach there is room again,
        and other connections are not concerned.
        """
        clock = Clock()
        broker = Broker(BrokerConfig(maxLinks=2), clock)
        client = AMQPConnection()
        pump = connectPair(BrokerProtocol(broker), client, clock)
        first = client.sender("a")
        second = client.receiver("b")
        third = client.sender("c")
        pump.flush()
        failure = self.failureResultOf(third, LinkDetached)
        self.assertEqual(failure.value.condition, "amqp:resource-limit-exceeded")
        self.successResultOf(second)
        self.successResultOf(first).close()
        pump.flush()
        again = client.sender("c")
        pump.flush()
        self.successResultOf(again)
        other = AMQPConnection()
        otherPump = connectPair(BrokerProtocol(broker), other, clock)
        attached = other.sender("a")
        otherPump.flush()
        self.successResultOf(attached)
