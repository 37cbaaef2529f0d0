# -*- test-case-name: tests.test_broker -*-
"""
The broker's nodes: queues (anycast: each message to one consumer) and topics
(multicast: each message to every subscriber), and what they store.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .. import _raw

if TYPE_CHECKING:
    from ._broker import Broker, _Consumer, _Producer

__all__ = ["Queue", "Topic"]


class _Stored:
    """
    A message held by a queue.

    @ivar data: the encoded message, as it will be sent.
    @ivar expires: when the message expires, in seconds of the broker's
        clock, or L{None}.
    @ivar avoid: the consumers that gave the message back as
        I{undeliverable-here}, or L{None}.
    @ivar redelivered: whether C{data}'s header has been prepared for a
        redelivery (C{first-acquirer} false).
    @ivar failures: how many failed deliveries the broker saw (for a
        message whose header cannot be read).
    @ivar key: the message's key in the broker's store, or L{None} when the
        store does not hold it (it is in memory only).
    """

    __slots__ = ("avoid", "data", "expires", "failures", "key", "redelivered")

    def __init__(self, data: bytes, expires: float | None) -> None:
        self.data = data
        self.expires = expires
        self.avoid: tuple[_Consumer, ...] | None = None
        self.redelivered = False
        self.failures = 0
        self.key: int | None = None

    def copy(self) -> _Stored:
        """
        @return: a new entry for the same message (in memory only).
        """
        return _Stored(self.data, self.expires)


class _Node:
    """
    What queues and topics share: the sending links that feed them, and
    those waiting for room, and the node's message counters.

    @ivar name: the address.
    @ivar enqueued: how many messages the node took in since it was
        created (sent to it, put on it, dead-lettered to it, recovered;
        not those put back at the front for a redelivery).
    @ivar delivered: how many messages the node handed to its consumers
        since it was created, redeliveries included (for a topic: the
        copies delivered by all its subscriptions).
    """

    def __init__(self, broker: Broker, name: str) -> None:
        self.name = name
        self._broker = broker
        # Lists made on first use (an empty one costs 56 bytes; a server may
        # have a queue per connection, most with no sender attached).
        # (Not deques: an empty deque costs some 700 bytes.)
        self._producers: list[_Producer] | tuple[()] = ()
        self._waiting: list[_Producer] | tuple[()] = ()
        self.enqueued = 0
        self.delivered = 0

    def _used(self) -> int:
        """
        @return: how many messages count against the depth limit.
        """
        raise NotImplementedError()

    def room(self) -> int | None:
        """
        @return: how many more messages the node may be sent (the depth limit
            less the messages it holds and the credit its senders still
            have), possibly negative; L{None} without a depth limit.
        """
        depth = self._broker.config.maxQueueDepth
        if depth is None:
            return None
        return (
            depth
            - self._used()
            - sum(producer.link.credit for producer in self._producers)
        )

    def _add(self, entry: _Stored) -> None:
        """
        Take a message: store it, deliver it.

        @param entry: the message.
        """
        raise NotImplementedError()

    def addProducer(self, producer: _Producer) -> None:
        """
        @param producer: a sending link attached to this node.
        """
        if isinstance(self._producers, list):
            self._producers.append(producer)
        else:
            self._producers = [producer]

    def removeProducer(self, producer: _Producer) -> None:
        """
        @param producer: a sending link that detached; its unused credit
            becomes room for the others.
        """
        producers = self._producers
        if isinstance(producers, list) and producer in producers:
            producers.remove(producer)
        self._wake()

    @property
    def producers(self) -> int:
        """
        How many sending links are attached to the node.
        """
        return len(self._producers)

    def wait(self, producer: _Producer) -> None:
        """
        Remember a sending link that wants more room than the node has.

        @param producer: the link.
        """
        if producer.waitingOn is self:
            return
        producer.waitingOn = self
        if isinstance(self._waiting, list):
            self._waiting.append(producer)
        else:
            self._waiting = [producer]

    def unwait(self, producer: _Producer) -> None:
        """
        Forget a waiting sending link.

        @param producer: the link.
        """
        if producer.waitingOn is self:
            producer.waitingOn = None
            assert isinstance(self._waiting, list)
            self._waiting.remove(producer)

    def _wake(self) -> None:
        """
        Give room to the sending links waiting for it, in turn.
        """
        waiting = self._waiting
        if not isinstance(waiting, list):
            return
        while waiting:
            room = self.room()
            if room is not None and room <= 0:
                return
            producer = waiting.pop(0)
            producer.waitingOn = None
            producer.resume()


class Queue(_Node):
    """
    One address's messages and consumers: each message goes to one consumer.

    @ivar name: the address (for a topic's subscription, the topic's).
    @ivar temporary: whether the queue is a dynamic node, deleted when the
        link that created it detaches.
    @ivar topic: the topic a subscription queue belongs to, or L{None}.
    @ivar durable: whether the queue survives a restart of the broker (with
        a store): declared at start, or created by a link with a durable
        terminus.
    """

    def __init__(
        self,
        broker: Broker,
        name: str,
        temporary: bool = False,
        topic: Topic | None = None,
    ) -> None:
        """
        @param broker: the broker the queue belongs to.
        @param name: the address.
        @param temporary: whether the queue is a dynamic node.
        @param topic: the topic of a subscription queue.
        """
        super().__init__(broker, name)
        self.temporary = temporary
        self.topic = topic
        # Made when the first message comes, dropped when the last goes: an
        # empty deque costs some 700 bytes, and a server may have a queue per
        # connection, most of them empty most of the time.
        self._messages: deque[_Stored] | None = None
        self.durable = False
        # In turn, the next first.  (A list, for the same reason.)
        self._consumers: list[_Consumer] = []
        self._creator: object | None = None
        self._owner: object | None = None
        self._expiring = 0
        self._avoiding = 0

    @property
    def messages(self) -> deque[_Stored]:
        """
        The messages waiting, oldest first (each with its encoded C{data});
        their number is the queue's depth.  Expired messages stay until they
        reach the front (see L{expire}).
        """
        messages = self._messages
        if messages is None:
            messages = self._messages = deque()
        return messages

    @property
    def consumers(self) -> int:
        """
        How many consumers the queue has.
        """
        return len(self._consumers)

    @property
    def storable(self) -> bool:
        """
        Whether the broker's store may keep the queue's durable messages: a
        queue that is neither temporary nor a topic's subscription.
        """
        return not self.temporary and self.topic is None

    @property
    def depth(self) -> int:
        """
        How many messages wait in the queue.
        """
        return self._used()

    def _used(self) -> int:
        messages = self._messages
        return 0 if messages is None else len(messages)

    def room(self) -> int | None:
        """
        See L{_Node.room}; when the queue is full, its expired messages are
        removed first.

        @return: the room.
        """
        room = super().room()
        if room is not None and room <= 0 and self._expiring:
            self.expire()
            room = super().room()
        return room

    def put(self, data: bytes) -> None:
        """
        Add an encoded message at the back, as if a client had sent it (its
        time to live counts from now, and the depth limit does not apply),
        and deliver what can be.  A durable message goes to the broker's
        store too, if it has one (without waiting for the write).

        @param data: the encoded message.
        """
        broker = self._broker
        entry = broker._stored(data, broker._summarize(data))
        written = broker._persist(entry, self)
        if written is not None:
            written.addErrback(broker._notWritten, entry, self)
        self._add(entry)
        broker._flush()

    def _add(self, entry: _Stored) -> None:
        self.enqueued += 1
        self.messages.append(entry)
        if entry.expires is not None:
            self._expiring += 1
        if entry.avoid:
            self._avoiding += 1
        if self._consumers:
            self.dispatch()

    def _requeue(
        self,
        entries: list[_Stored],
        failed: bool,
        avoid: _Consumer | None = None,
    ) -> None:
        """
        Put messages back at the front, in their order, ready for a
        redelivery.

        @param entries: the messages, oldest first.
        @param failed: whether their delivery failed (their delivery count
            goes up, and those that reach the broker's C{maxDeliveries} are
            dead-lettered).
        @param avoid: a consumer not to deliver them to again, or L{None}.
        """
        broker = self._broker
        limit = broker.config.maxDeliveries
        back = []
        for entry in entries:
            if failed or not entry.redelivered:
                entry.data, count = broker._redeliver(entry.data, failed)
                entry.redelivered = True
                if failed:
                    entry.failures += 1
                if count is None:
                    # A header nobody can read: the broker counts itself.
                    count = entry.failures
                if failed and limit is not None and count >= limit:
                    broker._deadLetter(entry, self, "delivery-count")
                    continue
            if avoid is not None:
                if self.topic is not None:
                    # No other consumer will ever see a subscription's copy.
                    broker._deadLetter(entry, self, "undeliverable-here")
                    continue
                entry.avoid = (entry.avoid or ()) + (avoid,)
            back.append(entry)
        messages = self.messages
        for entry in reversed(back):
            messages.appendleft(entry)
            if entry.key is not None:
                broker._requeued(entry, self, front=True)
            if entry.expires is not None:
                self._expiring += 1
            if entry.avoid:
                self._avoiding += 1
        self.dispatch()

    def _withdraw(self, entry: _Stored) -> bool:
        """
        Take a message out of the queue, wherever it is.

        @param entry: the message.
        @return: whether it was waiting in the queue.
        """
        messages = self._messages
        if messages is None:
            return False
        try:
            messages.remove(entry)
        except ValueError:
            return False
        if entry.expires is not None:
            self._expiring -= 1
        if entry.avoid:
            self._avoiding -= 1
        self._took()
        return True

    def _take(self, consumer: _Consumer) -> _Stored | None:
        """
        Take the first message the consumer may get.
        """
        messages = self.messages
        if not self._avoiding:
            entry = messages.popleft()
        else:
            index = next(
                (
                    i
                    for i, each in enumerate(messages)
                    if not each.avoid or consumer not in each.avoid
                ),
                None,
            )
            if index is None:
                return None
            entry = messages[index]
            del messages[index]
            if entry.avoid:
                self._avoiding -= 1
        if entry.expires is not None:
            self._expiring -= 1
        return entry

    def dispatch(self) -> None:
        """
        Hand waiting messages to consumers with credit, in turn, dropping
        (or dead-lettering) those that expired.
        """
        messages, consumers = self._messages, self._consumers
        if not messages or not consumers:
            return
        broker = self._broker
        dirty = broker._dirty
        now: float | None = None
        took = False
        sent = 0
        idle = 0
        turns = len(consumers) > 1
        credit = _raw.lib.pn_link_credit
        while messages and idle < len(consumers):
            consumer = consumers[0]
            if turns:
                consumers.append(consumers.pop(0))
            if credit(consumer._impl) <= 0:
                idle += 1
                continue
            entry = self._take(consumer)
            if entry is None:
                idle += 1
                continue
            took = True
            expires = entry.expires
            if expires is not None:
                if now is None:
                    now = broker.clock.seconds()
                if expires <= now:
                    broker._deadLetter(entry, self, "expired")
                    # The same consumer has another go.
                    if turns:
                        consumers.insert(0, consumers.pop())
                    continue
            consumer.deliver(entry)
            dirty.add(consumer.protocol)
            sent += 1
            idle = 0
        if not messages:
            self._messages = None
        if sent:
            self.delivered += sent
            if self.topic is not None:
                self.topic.delivered += sent
        if took:
            self._took()

    def _took(self) -> None:
        """
        Messages left the queue: the senders waiting for room may get some.
        """
        if self.topic is not None:
            self.topic._wake()
        elif self._waiting:
            self._wake()

    def expire(self) -> int:
        """
        Drop (or dead-letter) every expired message now, wherever it is in
        the queue.

        @return: how many expired.
        """
        if not self._expiring:
            return 0
        broker = self._broker
        now = broker.clock.seconds()
        messages = self.messages
        expired = [m for m in messages if m.expires is not None and m.expires <= now]
        if not expired:
            return 0
        kept = [m for m in messages if m.expires is None or m.expires > now]
        messages.clear()
        messages.extend(kept)
        self._expiring -= len(expired)
        self._avoiding = sum(1 for m in kept if m.avoid)
        for entry in expired:
            broker._deadLetter(entry, self, "expired")
        self._took()
        return len(expired)

    def addConsumer(self, consumer: _Consumer) -> None:
        """
        @param consumer: a new consumer.
        """
        consumer.queue = self
        self._consumers.append(consumer)
        self.dispatch()

    def removeConsumer(self, consumer: _Consumer) -> None:
        """
        Remove a consumer and put back what it had not settled, counted as a
        failed delivery.

        @param consumer: the consumer.
        """
        if consumer in self._consumers:
            self._consumers.remove(consumer)
        left = list(consumer.unsettled.values())
        consumer.unsettled.clear()
        if self.topic is not None:
            self.topic._unsubscribe(self)
        elif left:
            self._requeue(left, failed=True)

    def _detachAll(self, condition: str, description: str) -> None:
        """
        Detach every link attached to the queue.
        """
        for consumer in list(self._consumers):
            consumer.kill(condition, description)
        for producer in list(self._producers):
            producer.kill(condition, description)


class Topic(_Node):
    """
    A multicast address: every subscriber (receiving link) gets its own
    copy of each message sent after it attached, in its own subscription
    queue.

    @ivar name: the address.
    @ivar subscriptions: the subscribers' queues.
    """

    def __init__(self, broker: Broker, name: str) -> None:
        """
        @param broker: the broker the topic belongs to.
        @param name: the address.
        """
        super().__init__(broker, name)
        self.subscriptions: list[Queue] = []
        self._adding = False

    @property
    def consumers(self) -> int:
        """
        How many subscribers the topic has.
        """
        return len(self.subscriptions)

    def _used(self) -> int:
        return max((s._used() for s in self.subscriptions), default=0)

    def _add(self, entry: _Stored) -> None:
        self.enqueued += 1
        subscriptions = self.subscriptions
        if not subscriptions:
            return
        # Room is measured once every subscription has its copy.
        self._adding = True
        try:
            subscriptions[0]._add(entry)
            for subscription in subscriptions[1:]:
                subscription._add(entry.copy())
        finally:
            self._adding = False

    def _wake(self) -> None:
        if not self._adding:
            super()._wake()

    def subscribe(self, consumer: _Consumer) -> Queue:
        """
        @param consumer: a new subscriber.
        @return: its subscription queue.
        """
        queue = Queue(self._broker, self.name, topic=self)
        self.subscriptions.append(queue)
        queue.addConsumer(consumer)
        return queue

    def _unsubscribe(self, queue: Queue) -> None:
        """
        Drop a subscription and the messages it held.
        """
        if queue in self.subscriptions:
            self.subscriptions.remove(queue)
        queue.messages.clear()
        self._wake()
        self._broker.discard(self)
