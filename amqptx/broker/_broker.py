# -*- test-case-name: tests.test_broker -*-
"""
In-memory queues, and the protocol that serves them to AMQP clients.

Semantics: an address names a queue, created when a link first attaches to it.
A message leaves its queue when a consumer accepts (or rejects) it; a released
or modified message, or one still unsettled when its consumer goes away,
returns to the front of the queue.  Consumers of one queue share its messages
round-robin, each within its credit.
"""

from __future__ import annotations

import itertools
from collections import deque

import proton
from proton import Disposition, Endpoint, Event
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._engine import decodeMessage
from .._protocol import AMQPProtocol, eventDelivery, eventLink

__all__ = ["Broker", "BrokerProtocol", "Queue"]

_SENDER_CREDIT = 100
_REQUEUE = frozenset([Disposition.RELEASED, Disposition.MODIFIED])


class _Consumer:
    """
    A client's receiving link on a queue, as seen from the broker: our
    sending link, and the messages sent on it that wait for their outcome.
    """

    def __init__(self, protocol: BrokerProtocol, link: proton.Sender, queue: Queue):
        self.protocol = protocol
        self.link = link
        self.queue = queue
        self.presettled = link.remote_snd_settle_mode == link.SND_SETTLED
        self.unsettled: dict[str, bytes] = {}
        self.tags = itertools.count()

    def deliver(self, data: bytes) -> None:
        link = self.link
        tag = str(next(self.tags))
        delivery = link.delivery(tag)
        link.send(data)
        link.advance()
        if self.presettled:
            delivery.settle()
        else:
            self.unsettled[tag] = data


class Queue:
    """
    One address's messages and consumers.

    @ivar name: the address.
    @ivar messages: the encoded messages waiting, oldest first.
    @ivar temporary: whether the queue goes away with its last consumer (a
        dynamic node).
    """

    def __init__(self, name: str, temporary: bool = False) -> None:
        self.name = name
        self.temporary = temporary
        self.messages: deque[bytes] = deque()
        self._consumers: deque[_Consumer] = deque()

    def put(self, data: bytes) -> None:
        """
        Add an encoded message at the back, and deliver what can be.

        @param data: the encoded message.
        """
        self.messages.append(data)
        self.dispatch()

    def requeue(self, data: list[bytes]) -> None:
        """
        Put messages back at the front, in their order.

        @param data: the encoded messages, oldest first.
        """
        self.messages.extendleft(reversed(data))
        self.dispatch()

    def dispatch(self) -> None:
        """
        Hand waiting messages to consumers with credit, in turn.
        """
        messages, consumers = self.messages, self._consumers
        touched: set[BrokerProtocol] = set()
        while messages and consumers:
            for _ in range(len(consumers)):
                consumer = consumers[0]
                consumers.rotate(-1)
                if consumer.link.credit > 0:
                    consumer.deliver(messages.popleft())
                    touched.add(consumer.protocol)
                    break
            else:
                break
        for protocol in touched:
            protocol.flush()

    def addConsumer(self, consumer: _Consumer) -> None:
        """
        @param consumer: a new consumer.
        """
        self._consumers.append(consumer)
        self.dispatch()

    def removeConsumer(self, consumer: _Consumer) -> None:
        """
        Remove a consumer and put back what it had not settled.

        @param consumer: the consumer.
        """
        if consumer in self._consumers:
            self._consumers.remove(consumer)
        left = list(consumer.unsettled.values())
        consumer.unsettled.clear()
        if left:
            self.requeue(left)

    @property
    def consumers(self) -> int:
        """
        How many consumers the queue has.
        """
        return len(self._consumers)


class Broker:
    """
    The queues of one server, shared by all its connections.

    @ivar queues: the queues by address.
    """

    def __init__(self) -> None:
        self.queues: dict[str, Queue] = {}
        self._dynamic = itertools.count(1)

    def queue(self, name: str) -> Queue:
        """
        @param name: an address.
        @return: the queue for the address, created if needed.
        """
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue(name)
        return queue

    def temporaryQueue(self, container: str) -> Queue:
        """
        @param container: the container id of the connection asking.
        @return: a new queue with a unique address, removed when its last
            consumer leaves.
        """
        name = f"amqptx.temp.{container}.{next(self._dynamic)}"
        queue = self.queues[name] = Queue(name, temporary=True)
        return queue

    def discard(self, queue: Queue) -> None:
        """
        Remove a temporary queue that has no consumer left.

        @param queue: the queue.
        """
        if queue.temporary and not queue.consumers:
            self.queues.pop(queue.name, None)

    def factory(self) -> Factory:
        """
        @return: a protocol factory serving this broker.
        """
        return Factory.forProtocol(lambda: BrokerProtocol(self))


class BrokerProtocol(AMQPProtocol):
    """
    The server side of one connection to a L{Broker}.
    """

    _log = Logger()

    def __init__(self, broker: Broker) -> None:
        """
        @param broker: the queues to serve.
        """
        super().__init__(handler=self)
        self.handlers: list[object] = []
        self.broker = broker
        self._consumers: dict[str, _Consumer] = {}

    def on_link_remote_open(self, event: Event) -> None:
        """
        Attach a link to its queue (a new temporary one for a dynamic source).

        @param event: proton's event.
        """
        link = eventLink(event)
        if link.state & Endpoint.LOCAL_ACTIVE:
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if link.is_sender:
            if link.remote_source.dynamic:
                queue = self.broker.temporaryQueue(
                    self.connection.remote_container or "anonymous"
                )
                link.source.address = queue.name
            else:
                queue = self.broker.queue(link.remote_source.address or "")
            link.snd_settle_mode = link.remote_snd_settle_mode
            link.open()
            assert isinstance(link, proton.Sender)
            consumer = _Consumer(self, link, queue)
            self._consumers[link.name] = consumer
            queue.addConsumer(consumer)
        else:
            link.open()
            link.flow(_SENDER_CREDIT)

    def on_link_remote_close(self, event: Event) -> None:
        """
        Detach a link; a consumer's unsettled messages go back to its queue.

        @param event: proton's event.
        """
        link = eventLink(event)
        consumer = self._consumers.pop(link.name, None) if link.is_sender else None
        if consumer is not None:
            consumer.queue.removeConsumer(consumer)
            self.broker.discard(consumer.queue)

    on_link_remote_detach = on_link_remote_close

    def on_link_flow(self, event: Event) -> None:
        """
        A consumer gave credit: deliver.

        @param event: proton's event.
        """
        consumer = self._consumers.get(eventLink(event).name)
        if consumer is not None:
            consumer.queue.dispatch()

    def on_delivery(self, event: Event) -> None:
        """
        Store an arriving message, or act on a consumer's outcome.

        @param event: proton's event.
        """
        delivery = eventDelivery(event)
        link = delivery.link
        if link.is_sender:
            consumer = self._consumers.get(link.name)
            if consumer is None:
                return
            state = delivery.remote_state
            if not (delivery.settled or state):
                return
            data = consumer.unsettled.pop(delivery.tag, None)
            delivery.settle()
            if data is not None and state in _REQUEUE:
                consumer.queue.requeue([data])
            return
        data = self.reader.read(delivery)
        if data is None:
            return
        address = link.target.address
        if address is None:
            message = decodeMessage(data)
            address = message.address
        if not address:
            delivery.local.condition = proton_condition(
                "amqp:not-found", "the message has no address"
            )
            delivery.update(Disposition.REJECTED)
        else:
            self.broker.queue(address).put(data)
            delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        link.flow(1)

    def connectionClosed(self, reason: Failure) -> None:
        """
        Give back every message the connection's consumers had not settled.

        @param reason: why the connection ended.
        """
        consumers, self._consumers = self._consumers, {}
        for consumer in consumers.values():
            consumer.queue.removeConsumer(consumer)
            self.broker.discard(consumer.queue)


def proton_condition(name: str, description: str) -> proton.Condition:
    """
    @param name: a condition name.
    @param description: its description.
    @return: a proton condition.
    """
    from proton import Condition

    return Condition(name, description)
