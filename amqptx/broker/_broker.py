# -*- test-case-name: tests.test_broker -*-
"""
In-memory queues and topics, and the protocol that serves them to AMQP
clients.

Semantics (see L{BrokerConfig} for the settings):

  - B{Addresses.}  An address names a queue, or a topic when it begins with
    the multicast prefix; it is created when first used, unless
    C{autoCreate} is off (then attaching to an unknown address is refused on
    the link with C{amqp:not-found}).  A refused attach is answered with a
    null terminus and detached with the error condition, as the
    specification asks (part 2.6.3).  A receiving link without a source
    address is refused with C{amqp:not-found}, and an address that is not
    UTF-8 with C{amqp:invalid-field}.
  - B{Queues} (anycast).  Consumers share a queue's messages round-robin,
    each within its credit.  Delivery is at least once: a message leaves
    its queue when its consumer I{accepts} or I{rejects} it (rejected
    messages go to the dead-letter address, if any).  A I{released}
    message goes back to the front unchanged; a I{modified} one too, with
    its header's C{delivery-count} one higher when C{delivery-failed} is
    set; so does a message still unsettled when its consumer's link,
    session or connection ends.  I{undeliverable-here} is honoured for as
    long as the consumer stays attached: the message goes to other
    consumers, and waits (without holding back the messages behind it) if
    there are none.  Every redelivered message has C{first-acquirer} false.
    A message whose C{delivery-count} reaches C{maxDeliveries} is
    dead-lettered.  The header is rewritten in place: the rest of the
    message is sent byte for byte as it arrived (so the I{modified}
    outcome's C{message-annotations} are not merged into the message).
  - B{Topics} (multicast).  Each receiver gets its own subscription queue
    with the semantics above, fed with a copy of every message sent to the
    topic after it attached; a subscription, and what it holds, goes away
    with its link.  A message sent while nobody listens is accepted and
    dropped.
  - B{Expiry.}  A message's header C{ttl} (counted from when the broker
    received it) and its properties' C{absolute-expiry-time} (milliseconds
    since the epoch) are compared with the broker's clock when the message
    reaches the front of its queue for a consumer: an expired message is
    dropped (or dead-lettered) instead of delivered.  There is no timer per
    message; L{Queue.expire} clears a whole queue, and a full queue does so
    before refusing room.  Dead-lettered messages no longer expire.
  - B{Dead letters.}  With a dead-letter address, rejected, expired and
    too-often-delivered messages go there (never beyond it: a message
    dead-lettered from that address itself is dropped).  Dead letters are
    taken even when the dead-letter queue is full.
  - B{Back-pressure.}  With C{maxQueueDepth}, a sending link gets credit
    only while its node has room: messages waiting plus credit already
    given stays within the depth, so nothing is ever refused or dropped for
    lack of room.  Links left without room wait, in order, and get credit
    as consumers take messages (for a topic: as its fullest subscription
    does).  Through the anonymous relay, a message for a full node is held
    unsettled (and the link gets no more credit) until the node has room.
  - B{Message size.}  With C{maxMessageSize}, the broker's receiving links
    advertise it as their C{max-message-size} (proton 0.40 enforces it on
    neither side); a larger message is read and thrown away piece by piece
    as it arrives, then rejected with C{amqp:link:message-size-exceeded}.
    The link and the connection stay usable.
  - B{Anonymous relay.}  The server's Open offers C{ANONYMOUS-RELAY}.  A
    sending link with no target routes each message by its C{to} address;
    a message without one, or for an unknown address (C{autoCreate} off),
    is rejected with C{amqp:not-found}, and one the user may not send to
    with C{amqp:unauthorized-access}.
  - B{Dynamic nodes.}  A link with a dynamic source (or target) gets a new
    temporary queue, C{amqptx.temp.CONTAINER.N}; the queue is deleted when
    that link detaches (other links still attached to it are detached with
    C{amqp:resource-deleted}).  Its creator's connection may always use
    it, whatever the permissions say.
  - B{Permissions.}  With L{Permissions}, attaching to an address the user
    may not use is refused on the link with C{amqp:unauthorized-access}.

Messages are not decoded on their way through: the few header and property
fields the broker acts on are read from the encoded bytes
(L{amqptx.broker._sections}), with proton's decoder as the fallback.  Bytes
that are not a message (which proton's decoder takes for an empty message)
are stored and delivered as they came.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from typing import TYPE_CHECKING

import proton
from proton import Condition, Delivery, Disposition, Endpoint, Event, SymbolList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._engine import decodeMessage
from .._protocol import AMQPProtocol, eventDelivery, eventLink, eventSession
from ._config import BrokerConfig
from ._nodes import Queue, Topic, _Node, _Stored
from ._permissions import Right
from ._sections import MalformedMessage, Summary, rewriteHeader, summarize

if TYPE_CHECKING:
    from proton import Link, Terminus

__all__ = ["Broker", "BrokerProtocol"]

_log = Logger()

_WINDOW = 100
"""
The credit a sending link gets, when its node has room for it."""

_ANONYMOUS_RELAY = "ANONYMOUS-RELAY"

_NOT_FOUND = "amqp:not-found"
_UNAUTHORIZED = "amqp:unauthorized-access"
_TOO_LARGE = "amqp:link:message-size-exceeded"
_DELETED = "amqp:resource-deleted"
_INVALID_FIELD = "amqp:invalid-field"

_TERMINAL = frozenset(
    [
        Disposition.ACCEPTED,
        Disposition.REJECTED,
        Disposition.RELEASED,
        Disposition.MODIFIED,
    ]
)


class _Read(enum.Enum):
    """
    What reading a delivery gave, when it gave no message.
    """

    PARTIAL = "partial"
    ABORTED = "aborted"
    OVERSIZE = "oversize"


def _settle(
    delivery: Delivery,
    state: int,
    condition: str | None = None,
    description: str | None = None,
) -> None:
    """
    Give an incoming delivery its outcome, and settle it.
    """
    if condition is not None:
        delivery.local.condition = Condition(condition, description)
    delivery.update(state)
    delivery.settle()


class _Consumer:
    """
    A client's receiving link, as seen from the broker: our sending link, and
    the messages sent on it that wait for their outcome.

    @ivar queue: the queue the consumer takes from (a subscription queue for
        a topic).
    """

    def __init__(self, protocol: BrokerProtocol, link: proton.Sender) -> None:
        self.protocol = protocol
        self.link = link
        self.queue: Queue
        self.presettled = link.remote_snd_settle_mode == link.SND_SETTLED
        self.unsettled: dict[str, _Stored] = {}
        self._tags = itertools.count()

    def deliver(self, entry: _Stored) -> None:
        """
        Send a message on the link (which has credit).

        @param entry: the message.
        """
        link = self.link
        tag = str(next(self._tags))
        delivery = link.delivery(tag)
        link.send(entry.data)
        link.advance()
        if self.presettled:
            delivery.settle()
        else:
            self.unsettled[tag] = entry

    def settled(self, delivery: Delivery) -> None:
        """
        Act on the client's outcome for a message sent on the link.

        @param delivery: the delivery the client updated.
        """
        state = delivery.remote_state
        if state not in _TERMINAL and not delivery.settled:
            return
        entry = self.unsettled.pop(delivery.tag, None)
        delivery.settle()
        if entry is None:
            return
        queue = self.queue
        if state == Disposition.REJECTED:
            queue._broker._deadLetter(entry, queue, "rejected")
        elif state == Disposition.RELEASED:
            queue._requeue([entry], failed=False)
        elif state == Disposition.MODIFIED:
            remote = delivery.remote
            queue._requeue(
                [entry],
                failed=bool(remote.failed),
                avoid=self if remote.undeliverable else None,
            )
        # Accepted, or settled without an outcome (the default outcome,
        # which the broker leaves unset, is accepted): the message is done.

    def kill(self, condition: str, description: str) -> None:
        """
        Detach the link with an error, its queue being gone.
        """
        self.protocol._forgetConsumer(self)
        self.queue.removeConsumer(self)
        _closeLink(self.link, condition, description)
        self.queue._broker._dirty.add(self.protocol)


class _Producer:
    """
    A client's sending link, as seen from the broker: our receiving link,
    and the credit it gets.

    @ivar node: the node the link sends to, or L{None} for the anonymous
        relay.
    @ivar waitingOn: the node the link waits for room on, or L{None}.
    @ivar held: (anonymous relay) messages waiting for room on their node,
        unsettled, in arrival order.
    """

    def __init__(
        self, protocol: BrokerProtocol, link: proton.Receiver, node: _Node | None
    ) -> None:
        self.protocol = protocol
        self.link = link
        self.node = node
        self.waitingOn: _Node | None = None
        self.held: deque[tuple[Delivery, _Stored, _Node]] = deque()
        self.closed = False
        self._limit = protocol.broker.config.maxMessageSize
        self._buffer: bytearray | None = None
        self._oversize = False

    def grant(self) -> None:
        """
        Top the link's credit up to the window, as far as its node has room;
        wait for room when it has not.
        """
        if self.held or self.closed:
            return
        link = self.link
        credit = link.credit
        node = self.node
        room = None if node is None else node.room()
        if room is None:
            # No limit: top up once half the window is used.
            if credit <= _WINDOW // 2:
                link.flow(_WINDOW - credit)
                self.protocol.broker._dirty.add(self.protocol)
            return
        assert node is not None
        want = _WINDOW - credit
        if want <= 0:
            return
        if room < want:
            node.wait(self)
            want = room
        if want > 0:
            link.flow(want)
            self.protocol.broker._dirty.add(self.protocol)

    def resume(self) -> None:
        """
        The node this link waited on has room: place the messages held for
        it (relay), or give credit.
        """
        held = self.held
        broker = self.protocol.broker
        while held:
            delivery, entry, node = held[0]
            room = node.room()
            if room is not None and room <= 0:
                node.wait(self)
                return
            held.popleft()
            node._add(entry)
            _settle(delivery, Disposition.ACCEPTED)
            broker._dirty.add(self.protocol)
            broker.discard(node)
        self.grant()

    def abandon(self, node: _Node, condition: str, description: str) -> None:
        """
        Reject the messages held for a node that is gone, and go on with
        the others.

        @param node: the node.
        @param condition: the rejection's error condition.
        @param description: its description.
        """
        kept: deque[tuple[Delivery, _Stored, _Node]] = deque()
        for held in self.held:
            if held[2] is node:
                _settle(held[0], Disposition.REJECTED, condition, description)
            else:
                kept.append(held)
        self.held = kept
        self.protocol.broker._dirty.add(self.protocol)
        self.resume()

    def arrived(self, delivery: Delivery) -> None:
        """
        Read a message that arrived (or a piece of it), and store or route
        it.

        @param delivery: the delivery, from a C{PN_DELIVERY} event.
        """
        if not delivery.readable:
            # An update on a delivery already read (held by the relay).
            return
        data = self._read(delivery)
        if isinstance(data, _Read):
            if data is _Read.PARTIAL:
                return
            if data is _Read.OVERSIZE:
                _settle(
                    delivery,
                    Disposition.REJECTED,
                    _TOO_LARGE,
                    f"the message is larger than {self._limit} bytes",
                )
            self.grant()
            return
        broker = self.protocol.broker
        summary = broker._summarize(data)
        if self.node is not None:
            self.node._add(broker._stored(data, summary))
            _settle(delivery, Disposition.ACCEPTED)
        else:
            self._relay(delivery, data, summary)
            if self.held:
                return
        self.grant()

    def _relay(self, delivery: Delivery, data: bytes, summary: Summary) -> None:
        """
        Route a message that came through the anonymous relay by its C{to}.
        """
        address = summary.to
        broker = self.protocol.broker
        if not address:
            _settle(
                delivery, Disposition.REJECTED, _NOT_FOUND, "the message has no address"
            )
            return
        if not self.protocol._allowed("send", address):
            _settle(
                delivery,
                Disposition.REJECTED,
                _UNAUTHORIZED,
                f"not allowed to send to {address!r}",
            )
            return
        node = broker.lookup(address, broker.config.autoCreate)
        if node is None:
            _settle(
                delivery,
                Disposition.REJECTED,
                _NOT_FOUND,
                f"no such address: {address!r}",
            )
            return
        entry = broker._stored(data, summary)
        held = self.held
        if not held:
            room = node.room()
            if room is None or room > 0:
                node._add(entry)
                _settle(delivery, Disposition.ACCEPTED)
                broker.discard(node)
                return
            node.wait(self)
        held.append((delivery, entry, node))

    def _read(self, delivery: Delivery) -> bytes | _Read:
        """
        Take what arrived of the link's current delivery.

        @return: the whole message once its last piece has arrived, or why
            there is none.
        """
        link = self.link
        pending = delivery.pending
        chunk = link.recv(pending) if pending > 0 else None
        if delivery.aborted:
            self._buffer, self._oversize = None, False
            link.advance()
            delivery.settle()
            return _Read.ABORTED
        limit = self._limit
        if delivery.partial:
            if not self._oversize:
                buffer = self._buffer
                if buffer is None:
                    buffer = self._buffer = bytearray()
                if chunk:
                    buffer += chunk
                if limit is not None and len(buffer) > limit:
                    self._buffer, self._oversize = None, True
            return _Read.PARTIAL
        link.advance()
        buffer, oversize = self._buffer, self._oversize
        if buffer is not None or oversize:
            self._buffer, self._oversize = None, False
            if oversize:
                return _Read.OVERSIZE
            assert buffer is not None
            if chunk:
                buffer += chunk
            data = bytes(buffer)
        else:
            data = chunk or b""
        if limit is not None and len(data) > limit:
            return _Read.OVERSIZE
        return data

    def close(self) -> None:
        """
        The link is gone: forget it everywhere; messages held for room are
        dropped (the client had no outcome for them).
        """
        self.closed = True
        if self.waitingOn is not None:
            self.waitingOn.unwait(self)
        self.held.clear()
        if self.node is not None:
            self.node.removeProducer(self)

    def kill(self, condition: str, description: str) -> None:
        """
        Detach the link with an error, its node being gone.
        """
        self.protocol._forgetProducer(self)
        self.close()
        _closeLink(self.link, condition, description)
        self.protocol.broker._dirty.add(self.protocol)


class _Invalid(enum.Enum):
    """
    A terminus address that cannot be read.
    """

    ADDRESS = "invalid"


def _address(terminus: Terminus) -> str | None | _Invalid:
    """
    @return: a terminus's address (L{None} for none or an empty one), or
        L{_Invalid.ADDRESS} when it is not UTF-8.
    """
    try:
        return terminus.address or None
    except UnicodeDecodeError:
        return _Invalid.ADDRESS


def _closeLink(link: Link, condition: str, description: str) -> None:
    if not link.state & Endpoint.LOCAL_CLOSED:
        link.condition = Condition(condition, description)
        link.close()


def _defaultClock() -> IReactorTime:
    from twisted.internet import reactor

    return reactor


class Broker:
    """
    The queues and topics of one server, shared by all its connections.

    @ivar config: how the broker behaves.
    @ivar queues: the queues by address.
    @ivar topics: the topics by address.
    """

    def __init__(
        self, config: BrokerConfig = BrokerConfig(), clock: IReactorTime | None = None
    ) -> None:
        """
        @param config: how the broker behaves.
        @param clock: the clock message expiry is measured on (its
            C{seconds()} are seconds since the epoch); by default the global
            reactor, looked up when first needed.
        """
        self.config = config
        self._clock = clock
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, Topic] = {}
        self._dynamic = itertools.count(1)
        self._dirty: set[BrokerProtocol] = set()
        declared = set(config.queues)
        if config.deadLetterAddress is not None:
            declared.add(config.deadLetterAddress)
        self._declared = frozenset(declared)
        for address in sorted(declared):
            self.lookup(address, True)

    @property
    def clock(self) -> IReactorTime:
        """
        The clock message expiry is measured on.
        """
        if self._clock is None:
            self._clock = _defaultClock()
        return self._clock

    def queue(self, name: str) -> Queue:
        """
        @param name: an address that is not multicast.
        @return: the queue for the address, created if needed.
        @raise ValueError: for a multicast address.
        """
        if self.config.isMulticast(name):
            raise ValueError(f"{name!r} is a multicast address, not a queue")
        node = self.lookup(name, True)
        assert isinstance(node, Queue)
        return node

    def lookup(self, address: str, create: bool) -> Queue | Topic | None:
        """
        Find the node for an address.

        @param address: the address.
        @param create: whether to create it when it does not exist.
        @return: the queue or topic, or L{None} when it does not exist (and
            is not created).
        """
        if self.config.isMulticast(address):
            topic = self.topics.get(address)
            if topic is None and (create or address in self._declared):
                topic = self.topics[address] = Topic(self, address)
            return topic
        queue = self.queues.get(address)
        if queue is None and (create or address in self._declared):
            queue = self.queues[address] = Queue(self, address)
        return queue

    def temporaryQueue(self, container: str) -> Queue:
        """
        @param container: the container id of the connection asking.
        @return: a new queue with a unique address, a dynamic node.
        """
        name = f"amqptx.temp.{container}.{next(self._dynamic)}"
        queue = self.queues[name] = Queue(self, name, temporary=True)
        return queue

    def discard(self, node: _Node) -> None:
        """
        Forget a topic that nobody uses and that was not declared.

        @param node: a node.
        """
        if (
            isinstance(node, Topic)
            and not node.subscriptions
            and not node.producers
            and node.name not in self._declared
            and self.topics.get(node.name) is node
        ):
            del self.topics[node.name]

    def deleteTemporary(self, queue: Queue) -> None:
        """
        Delete a temporary queue: its messages are dropped, and the links
        still attached to it are detached with C{amqp:resource-deleted}.

        @param queue: the queue.
        """
        if self.queues.get(queue.name) is queue:
            del self.queues[queue.name]
        description = f"the temporary queue {queue.name} was deleted"
        queue._detachAll(_DELETED, description)
        queue.messages.clear()
        # What is left waiting are relay links, holding messages for it.
        for producer in list(queue._waiting):
            queue.unwait(producer)
            producer.abandon(queue, _DELETED, description)

    def factory(self) -> Factory:
        """
        @return: a protocol factory serving this broker.
        """
        return Factory.forProtocol(lambda: BrokerProtocol(self))

    # --- internals ----------------------------------------------------------

    def _summarize(self, data: bytes) -> Summary:
        """
        @return: what the broker needs to know of a message: read from its
            bytes, or else from proton's decoding (which takes anything for
            a message, empty if need be).
        """
        try:
            return summarize(data)
        except MalformedMessage:
            pass
        try:
            message = decodeMessage(data)
            return Summary(
                int(message.ttl * 1000) or None,
                int(message.expiry_time * 1000) or None,
                message.address,
            )
        except Exception:
            # Not even proton can read it (a C{to} that is not UTF-8...).
            return Summary(None, None, None)

    def _stored(self, data: bytes, summary: Summary) -> _Stored:
        """
        @return: a new entry for a message that arrived now.
        """
        expires = None
        ttl, absolute = summary.ttl, summary.absoluteExpiry
        if ttl is not None:
            expires = self.clock.seconds() + ttl / 1000
        if absolute is not None:
            at = absolute / 1000
            expires = at if expires is None else min(expires, at)
        return _Stored(data, expires)

    def _redeliver(self, data: bytes, failed: bool) -> tuple[bytes, int | None]:
        """
        Prepare a message for redelivery: C{first-acquirer} false, and the
        C{delivery-count} one higher after a failed delivery.

        @return: the message and its delivery count; the message as it was
            and L{None} when neither the broker's reader nor proton's
            decoder can read it.
        """
        try:
            return rewriteHeader(data, failed)
        except MalformedMessage:
            pass
        try:
            message = decodeMessage(data)
            if failed:
                message.delivery_count += 1
            message.first_acquirer = False
            return bytes(message.encode()), message.delivery_count
        except Exception:
            return data, None

    def _deadLetter(self, entry: _Stored, origin: Queue, reason: str) -> None:
        """
        Send a message to the dead-letter address, or drop it.

        @param entry: the message.
        @param origin: the queue it comes from.
        @param reason: why, for the log.
        """
        address = self.config.deadLetterAddress
        target = None if address is None else self.lookup(address, True)
        if target is None or target is origin or target is origin.topic:
            _log.debug(
                "Dropped a message from {queue} ({reason})",
                queue=origin.name,
                reason=reason,
            )
            return
        entry.expires = None
        entry.avoid = None
        target._add(entry)

    def _flush(self, exclude: BrokerProtocol | None = None) -> None:
        """
        Flush every connection that has something to send after a change.

        @param exclude: a connection not to flush (one that just did).
        """
        dirty = self._dirty
        if exclude is not None:
            dirty.discard(exclude)
        while dirty:
            dirty.pop().flush()


class BrokerProtocol(AMQPProtocol):
    """
    The server side of one connection to a L{Broker}.

    Its Open offers C{ANONYMOUS-RELAY}; the client's avatar id
    (L{AMQPProtocol.avatarId}) is what the broker's permissions are checked
    against.

    @ivar broker: the broker served.
    """

    def __init__(self, broker: Broker) -> None:
        """
        @param broker: the queues to serve.
        """
        super().__init__(handler=self)
        self.handlers: list[object] = []
        self.broker = broker
        # Keyed by link (proton's wrappers compare by the C object): a link
        # name that is not UTF-8 cannot even be read.
        self._consumers: dict[Link, _Consumer] = {}
        self._producers: dict[Link, _Producer] = {}

    def flushed(self) -> None:
        """
        After a batch of this connection's work, flush the other connections
        that have something to send because of it (messages for their
        consumers, credit for their senders): once per batch of input rather
        than once per message.
        """
        self.broker._flush(self)

    def on_connection_remote_open(self, event: Event) -> None:
        """
        Offer the anonymous relay in the Open the protocol sends next.

        @param event: proton's event.
        """
        self.connection.offered_capabilities = SymbolList([_ANONYMOUS_RELAY])

    def on_link_remote_open(self, event: Event) -> None:
        """
        Attach a link to its node, or refuse it on the link.

        @param event: proton's event.
        """
        link = eventLink(event)
        if link.state & Endpoint.LOCAL_ACTIVE:
            return
        limit = self.broker.config.maxLinks
        if limit is not None and len(self._consumers) + len(self._producers) >= limit:
            self._refuse(
                link,
                "amqp:resource-limit-exceeded",
                f"a connection may have at most {limit} links",
            )
            return
        if link.is_sender:
            assert isinstance(link, proton.Sender)
            self._attachConsumer(link)
        else:
            assert isinstance(link, proton.Receiver)
            self._attachProducer(link)

    def _allowed(self, right: Right, address: str) -> bool:
        """
        @return: whether this connection's user may use the address so.
        """
        permissions = self.broker.config.permissions
        if permissions is None:
            return True
        queue = self.broker.queues.get(address)
        if queue is not None and queue._owner is self:
            return True
        return permissions.allows(self.avatarId, right, address)

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        """
        Refuse an attach: answer it with a null terminus, then detach with
        the reason.
        """
        link.open()
        _closeLink(link, condition, description)

    def _find(
        self, right: Right, address: str | None | _Invalid, link: Link
    ) -> _Node | None:
        """
        The node a link attaches to, or L{None} after refusing the link.
        """
        if isinstance(address, _Invalid):
            self._refuse(link, _INVALID_FIELD, "the address is not UTF-8")
            return None
        if not address:
            self._refuse(link, _NOT_FOUND, "no address")
            return None
        if not self._allowed(right, address):
            self._refuse(link, _UNAUTHORIZED, f"not allowed to {right} {address!r}")
            return None
        node = self.broker.lookup(address, self.broker.config.autoCreate)
        if node is None:
            self._refuse(link, _NOT_FOUND, f"no such address: {address!r}")
        return node

    def _temporary(self) -> Queue:
        try:
            container = self.connection.remote_container or "anonymous"
        except UnicodeDecodeError:
            container = "anonymous"
        queue = self.broker.temporaryQueue(container)
        queue._owner = self
        return queue

    def _attachConsumer(self, link: proton.Sender) -> None:
        source = link.remote_source
        node: _Node | None
        if source.dynamic:
            node = self._temporary()
        else:
            node = self._find("receive", _address(source), link)
            if node is None:
                return
        link.source.copy(source)
        if source.dynamic:
            link.source.address = node.name
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.open()
        consumer = _Consumer(self, link)
        self._consumers[link] = consumer
        if isinstance(node, Topic):
            node.subscribe(consumer)
        else:
            assert isinstance(node, Queue)
            if node.temporary and node._creator is None:
                node._creator = consumer
            node.addConsumer(consumer)

    def _attachProducer(self, link: proton.Receiver) -> None:
        target = link.remote_target
        node: _Node | None
        if target.dynamic:
            node = self._temporary()
        elif (address := _address(target)) is None:
            node = None
        else:
            node = self._find("send", address, link)
            if node is None:
                return
        link.target.copy(target)
        if target.dynamic:
            assert node is not None
            link.target.address = node.name
        link.source.copy(link.remote_source)
        limit = self.broker.config.maxMessageSize
        if limit is not None:
            link.max_message_size = limit
        link.open()
        producer = _Producer(self, link, node)
        self._producers[link] = producer
        if node is not None:
            if isinstance(node, Queue) and node.temporary and node._creator is None:
                node._creator = producer
            node.addProducer(producer)
        producer.grant()

    def _forgetConsumer(self, consumer: _Consumer) -> None:
        if self._consumers.get(consumer.link) is consumer:
            del self._consumers[consumer.link]

    def _forgetProducer(self, producer: _Producer) -> None:
        if self._producers.get(producer.link) is producer:
            del self._producers[producer.link]

    def _dropConsumer(self, consumer: _Consumer) -> None:
        """
        A consumer's link is gone: its unsettled messages go back.
        """
        queue = consumer.queue
        queue.removeConsumer(consumer)
        if queue.temporary and queue._creator is consumer:
            self.broker.deleteTemporary(queue)

    def _dropProducer(self, producer: _Producer) -> None:
        producer.close()
        node = producer.node
        if isinstance(node, Queue) and node.temporary and node._creator is producer:
            self.broker.deleteTemporary(node)
        elif node is not None:
            self.broker.discard(node)

    def on_link_remote_close(self, event: Event) -> None:
        """
        Detach a link; a consumer's unsettled messages go back to its queue.

        @param event: proton's event.
        """
        link = eventLink(event)
        if link.is_sender:
            consumer = self._consumers.pop(link, None)
            if consumer is not None:
                self._dropConsumer(consumer)
        else:
            producer = self._producers.pop(link, None)
            if producer is not None:
                self._dropProducer(producer)

    on_link_remote_detach = on_link_remote_close

    def on_session_remote_close(self, event: Event) -> None:
        """
        The client ended a session: its links are gone too.

        @param event: proton's event.
        """
        session = eventSession(event)
        for consumer in list(self._consumers.values()):
            if consumer.link.session == session:
                del self._consumers[consumer.link]
                self._dropConsumer(consumer)
        for producer in list(self._producers.values()):
            if producer.link.session == session:
                del self._producers[producer.link]
                self._dropProducer(producer)

    def on_link_flow(self, event: Event) -> None:
        """
        A consumer gave credit: deliver; give back what cannot be used when
        the consumer asked to drain.

        @param event: proton's event.
        """
        link = eventLink(event)
        if not link.is_sender:
            return
        consumer = self._consumers.get(link)
        if consumer is not None:
            consumer.queue.dispatch()
            if link.credit > 0:
                link.drained()

    def on_delivery(self, event: Event) -> None:
        """
        Store an arriving message, or act on a consumer's outcome.

        @param event: proton's event.
        """
        delivery = eventDelivery(event)
        link = delivery.link
        if link.is_sender:
            consumer = self._consumers.get(link)
            if consumer is not None:
                consumer.settled(delivery)
        else:
            producer = self._producers.get(link)
            if producer is not None:
                producer.arrived(delivery)

    def connectionClosed(self, reason: Failure) -> None:
        """
        Give back every message the connection's consumers had not settled.

        @param reason: why the connection ended.
        """
        consumers, self._consumers = self._consumers, {}
        producers, self._producers = self._producers, {}
        for consumer in consumers.values():
            self._dropConsumer(consumer)
        for producer in producers.values():
            self._dropProducer(producer)
        self.broker._flush()
