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
  - B{Durability.}  Without a store, everything is in memory and lost when
    the broker stops.  With a store (an L{IMessageStore}, such as
    L{SQLiteStore <amqptx.broker._sqlite.SQLiteStore>}; see L{Broker.recover}),
    a I{durable} message (its header's C{durable} is true) sent to a queue
    is written to the store, and accepted only once the store has
    committed it; one the store could not write is rejected with
    C{amqp:internal-error} (and leaves its queue): never accepted and
    lost.  The message is on its queue for consumers meanwhile, so a queue
    keeps the order messages arrived in.  Messages waiting for their commit
    count against their link's credit window: a slow disk slows senders
    down instead of filling memory.  Messages that are not durable, and
    messages for topics (whose subscriptions go with their links) or for
    temporary queues, stay in memory only.  The store is told when a stored
    message's delivery begins, when it goes back to a queue (released,
    modified, dead-lettered, unsettled when its consumer went away: with
    its new header) and when it is done (accepted, dropped, expired, or
    moved where it is not kept).  When the broker starts, it recovers the
    durable queues (those of the configuration, and those created by a
    link whose terminus is durable; not temporary queues) and every stored
    message, in order; a message whose delivery had begun comes back as a
    redelivery (C{delivery-count} one higher, C{first-acquirer} false).

Messages are not decoded on their way through: the few header and property
fields the broker acts on are read from the encoded bytes
(L{amqptx.broker._sections}), with proton's decoder as the fallback.  Bytes
that are not a message (which proton's decoder takes for an empty message)
are stored and delivered as they came.
"""

from __future__ import annotations

import enum
import itertools
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import proton
from proton import Condition, Delivery, Disposition, Endpoint, Event
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import _raw
from .._engine import Engine, decodeMessage
from .._protocol import AMQPProtocol, eventLink, eventSession
from ._config import BrokerConfig
from ._nodes import Queue, Topic, _Node, _Stored
from ._permissions import Right
from ._sections import (
    _HEADER,
    MalformedMessage,
    Summary,
    _bool,
    _fields,
    _section,
    rewriteHeader,
    summarize,
)
from ._store import IMessageStore, StoreError

if TYPE_CHECKING:
    from proton import Link, Terminus

__all__ = ["Broker", "BrokerProtocol"]

_log = Logger()

_WINDOW = 100
"""
The credit a sending link gets, when its node has room for it."""

_ANONYMOUS_RELAY = (b"ANONYMOUS-RELAY",)

_NOT_FOUND = "amqp:not-found"
_UNAUTHORIZED = "amqp:unauthorized-access"
_TOO_LARGE = "amqp:link:message-size-exceeded"
_DELETED = "amqp:resource-deleted"
_INVALID_FIELD = "amqp:invalid-field"
_INTERNAL_ERROR = "amqp:internal-error"

_TERMINAL = frozenset(
    [
        Disposition.ACCEPTED,
        Disposition.REJECTED,
        Disposition.RELEASED,
        Disposition.MODIFIED,
    ]
)


def _isDurable(data: bytes) -> bool:
    """
    @return: whether an encoded message's header says it is durable: read
        from the bytes, or else from proton's decoding (L{False} when
        neither can read it).
    """
    try:
        if data[:1] != b"\x00":
            return False
        code, value = _section(data, 0)
        if code != _HEADER:
            return False
        count, field, _ = _fields(data, value)
        return count > 0 and bool(_bool(data, field))
    except (MalformedMessage, IndexError, struct.error):
        pass
    try:
        return bool(decodeMessage(data).durable)
    except Exception:
        return False


def _accept(delivery: _raw.CData) -> None:
    """
    Accept an incoming delivery, and settle it.

    @param delivery: the delivery, a pointer into proton.
    """
    lib = _raw.lib
    lib.pn_delivery_update(delivery, _raw.ACCEPTED)
    lib.pn_delivery_settle(delivery)


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
        self.queue: Queue
        self.presettled = link.remote_snd_settle_mode == link.SND_SETTLED
        # Keyed by proton's delivery (a pointer, see amqptx._raw), settled as
        # soon as its outcome comes.
        self.unsettled: dict[_raw.CData, _Stored] = {}
        self._tags = 0
        # The link itself rather than proton's wrapper (a server holds
        # thousands of consumers), kept as the wrapper would keep it.
        self._impl = link._impl
        _raw.lib.pn_incref(self._impl)

    def __del__(
        self, _decref: Callable[[_raw.CData], None] = _raw.lib.pn_decref
    ) -> None:
        _decref(self._impl)

    @property
    def link(self) -> proton.Sender:
        """
        The link, in proton's wrapper (made on each use).
        """
        link = proton.Link.wrap(self._impl)  # type: ignore[no-untyped-call]
        assert isinstance(link, proton.Sender)
        return link

    def deliver(self, entry: _Stored) -> None:
        """
        Send a message on the link (which has credit).

        @param entry: the message.
        """
        tag = self._tags
        self._tags = tag + 1
        delivery = _raw.sendMessage(self._impl, b"%d" % tag, entry.data)
        if self.presettled:
            _raw.lib.pn_delivery_settle(delivery)
            if entry.key is not None:
                self.protocol.broker._unstore(entry)
        else:
            self.unsettled[delivery] = entry
            if entry.key is not None:
                self.protocol.broker._delivered(entry)

    def settled(self, delivery: _raw.CData) -> None:
        """
        Act on the client's outcome for a message sent on the link.

        @param delivery: the delivery the client updated, a pointer into
            proton.
        """
        lib = _raw.lib
        state = lib.pn_delivery_remote_state(delivery)
        if state not in _TERMINAL and not lib.pn_delivery_settled(delivery):
            return
        entry = self.unsettled.pop(delivery, None)
        failed = undeliverable = False
        if entry is not None and state == Disposition.MODIFIED:
            remote = _raw.wrapDelivery(delivery).remote
            failed, undeliverable = bool(remote.failed), bool(remote.undeliverable)
        lib.pn_delivery_settle(delivery)
        if entry is None:
            return
        queue = self.queue
        if state == Disposition.REJECTED:
            queue._broker._deadLetter(entry, queue, "rejected")
        elif state == Disposition.RELEASED:
            queue._requeue([entry], failed=False)
        elif state == Disposition.MODIFIED:
            queue._requeue(
                [entry], failed=failed, avoid=self if undeliverable else None
            )
        elif entry.key is not None:
            # Accepted, or settled without an outcome (the default outcome,
            # which the broker leaves unset, is accepted): the message is
            # done.
            queue._broker._unstore(entry)

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
    @ivar committing: how many messages that arrived on the link wait for
        the store to commit them (before they are accepted); they count
        against the link's credit window.
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
        self.committing = 0
        config = protocol.broker.config
        self._limit = config.maxMessageSize
        self._unlimited = config.maxQueueDepth is None
        self._reader = _raw.LinkReader(self._limit)
        self._impl = link._impl

    def grant(self) -> None:
        """
        Top the link's credit up to the window, as far as its node has room;
        wait for room when it has not.  Messages waiting to be committed
        take their place in the window until they are.
        """
        if self.held or self.closed:
            return
        link, lib = self._impl, _raw.lib
        credit = lib.pn_link_credit(link)
        window = _WINDOW - self.committing
        node = self.node
        # (No depth limit, no room to work out: the per-message case.)
        room = None if node is None or self._unlimited else node.room()
        if room is None:
            # No limit: top up once a quarter of the window is used, about
            # one turn's worth of deliveries (DELIVERY_BUDGET): the client
            # gets credit back after every turn and keeps sending while the
            # broker works.  (Alternating runs of bench.programs.amqptx_broker
            # and amqptx_client send, 100 B, 200,000 messages, medians: at
            # half the window 72,000 msg/s at-least-once and 65,000
            # pre-settled; at a quarter 100,000 and 82,000; a sixth 86,000.)
            if credit <= window - window // 4 and credit < window:
                lib.pn_link_flow(link, window - credit)
                self.protocol.broker._dirty.add(self.protocol)
            return
        assert node is not None
        want = window - credit
        if want <= 0:
            return
        if room < want:
            node.wait(self)
            want = room
        if want > 0:
            lib.pn_link_flow(link, want)
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
            self._take(delivery._impl, entry, node)
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

    def arrived(self, delivery: _raw.CData) -> None:
        """
        Read a message that arrived (or a piece of it), and store or route
        it.

        @param delivery: the delivery, from a C{PN_DELIVERY} event: a
            pointer into proton.
        """
        if not _raw.lib.pn_delivery_readable(delivery):
            # An update on a delivery already read (held by the relay).
            return
        data = self._reader.read(delivery, self._impl)
        if isinstance(data, _raw.Read):
            if data is _raw.Read.PARTIAL:
                return
            if data is _raw.Read.OVERSIZE:
                _settle(
                    _raw.wrapDelivery(delivery),
                    Disposition.REJECTED,
                    _TOO_LARGE,
                    f"the message is larger than {self._limit} bytes",
                )
            self.grant()
            return
        broker = self.protocol.broker
        summary = broker._summarize(data)
        if self.node is not None:
            self._take(delivery, broker._stored(data, summary), self.node)
        else:
            self._relay(delivery, data, summary)
            if self.held:
                return
        self.grant()

    def _relay(self, impl: _raw.CData, data: bytes, summary: Summary) -> None:
        """
        Route a message that came through the anonymous relay by its C{to}.
        """
        delivery = _raw.wrapDelivery(impl)
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
                self._take(impl, entry, node)
                broker.discard(node)
                return
            node.wait(self)
        held.append((delivery, entry, node))

    def _take(self, impl: _raw.CData, entry: _Stored, node: _Node) -> None:
        """
        Put a message that arrived on its node, and accept it: at once, or,
        for a message the broker's store keeps, once the store has
        committed it.  The message is on its queue, for consumers, in the
        meantime (so a queue keeps its order).

        @param impl: the message's delivery, a pointer into proton.
        """
        broker = self.protocol.broker
        written = broker._persist(entry, node)
        node._add(entry)
        if written is None:
            _accept(impl)
            return
        delivery = _raw.wrapDelivery(impl)
        self.committing += 1
        written.addCallbacks(
            self._committed,
            self._notCommitted,
            callbackArgs=(delivery,),
            errbackArgs=(delivery, entry, node),
        )

    def _committed(self, result: None, delivery: Delivery) -> None:
        """
        The store committed a message: accept it.
        """
        self.committing -= 1
        if self.closed:
            return
        _settle(delivery, Disposition.ACCEPTED)
        self.protocol.broker._settledLater(self)

    def _notCommitted(
        self, reason: Failure, delivery: Delivery, entry: _Stored, node: _Node
    ) -> None:
        """
        The store could not write a message: take it back from its queue
        (if no consumer has it yet), and reject it.
        """
        self.committing -= 1
        broker = self.protocol.broker
        broker._notWritten(reason, entry, node)
        if self.closed:
            return
        _settle(
            delivery,
            Disposition.REJECTED,
            _INTERNAL_ERROR,
            f"the message could not be stored: {reason.getErrorMessage()}",
        )
        broker._settledLater(self)

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


def _storeFailed(reason: Failure) -> None:
    """
    A change the broker does not wait for could not be written: at worst,
    a message is delivered again after a restart (the store logs why).
    """
    reason.trap(StoreError)
    _log.debug("A change to the message store failed: {error}", error=reason.value)


class Broker:
    """
    The queues and topics of one server, shared by all its connections.

    @ivar config: how the broker behaves.
    @ivar queues: the queues by address.
    @ivar topics: the topics by address.
    @ivar store: where durable queues and messages are kept, or L{None} to
        keep everything in memory.
    @ivar connections: the connections being served (made, not yet lost).
    """

    def __init__(
        self,
        config: BrokerConfig = BrokerConfig(),
        clock: IReactorTime | None = None,
        store: IMessageStore | None = None,
    ) -> None:
        """
        @param config: how the broker behaves.
        @param clock: the clock message expiry is measured on (its
            C{seconds()} are seconds since the epoch); by default the global
            reactor, looked up when first needed.
        @param store: where to keep durable queues and messages, or L{None}
            to keep everything in memory.  L{recover} must be called before
            the broker serves connections.
        """
        self.config = config
        self._clock = clock
        self.store = store
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, Topic] = {}
        self._dynamic = itertools.count(1)
        self._dirty: set[BrokerProtocol] = set()
        self._keys = itertools.count(1)
        self._back = 0
        self._front = 0
        self._recovered = False
        self._granting: dict[_Producer, None] = {}
        self._settling: IDelayedCall | None = None
        self.connections: set[BrokerProtocol] = set()
        declared = set(config.queues)
        if config.deadLetterAddress is not None:
            declared.add(config.deadLetterAddress)
        self._declared = frozenset(declared)
        for address in sorted(declared):
            node = self.lookup(address, True)
            if isinstance(node, Queue):
                node.durable = True

    @property
    def clock(self) -> IReactorTime:
        """
        The clock message expiry is measured on.
        """
        if self._clock is None:
            self._clock = _defaultClock()
        return self._clock

    def recover(self) -> None:
        """
        Open the store and take back what it holds, before serving any
        connection: every durable queue, and every message, in its queue's
        order.  A message whose delivery had begun (and was not settled)
        comes back as a redelivery: C{first-acquirer} false, and its
        C{delivery-count} one higher (dead-lettered if that reaches
        C{maxDeliveries}).  The queues declared in the configuration are
        recorded as durable.

        It blocks while the store is read: call it before the reactor runs.

        @raise StoreError: when the store cannot be used.
        @raise RuntimeError: without a store, or when called twice.
        """
        store = self.store
        if store is None:
            raise RuntimeError("the broker has no store")
        if self._recovered:
            raise RuntimeError("the store was recovered already")
        started = self.clock.seconds()
        recovery = store.recover()
        self._recovered = True
        durable = set(recovery.queues)
        for address in recovery.queues:
            self._recoveredQueue(address)
        for address in sorted(self._declared):
            queue = self.queues.get(address)
            if queue is not None and address not in durable:
                store.declare(address).addErrback(_storeFailed)
        messages = recovery.messages
        if messages:
            self._keys = itertools.count(max(m.key for m in messages) + 1)
            self._back = max(m.position for m in messages)
            self._front = min(m.position for m in messages)
        limit = self.config.maxDeliveries
        again = left = 0
        poisoned: list[tuple[_Stored, Queue]] = []
        for stored in messages:
            queue = self._recoveredQueue(stored.queue, durable=False)
            if queue is None:
                left += 1
                continue
            entry = _Stored(stored.data, stored.expires)
            entry.key = stored.key
            if stored.delivered:
                again += 1
                entry.data, count = self._redeliver(entry.data, True)
                entry.redelivered = True
                entry.failures = 1
                if count is None:
                    count = entry.failures
                if limit is not None and count >= limit:
                    poisoned.append((entry, queue))
                    continue
                store.requeue(
                    stored.key, queue.name, stored.position, entry.expires, entry.data
                ).addErrback(_storeFailed)
            queue._add(entry)
        # Behind every message recovered, in memory as in the store.
        for entry, queue in poisoned:
            self._deadLetter(entry, queue, "delivery-count")
        if left:
            _log.warn(
                "{count} stored message(s) stay in the store, unused: their "
                "addresses are now topics (see the multicast prefix)",
                count=left,
            )
        _log.info(
            "Recovered {queues} durable queue(s) and {messages} message(s) "
            "({again} to deliver again) from {store} in {seconds:.3f} s",
            queues=len(recovery.queues),
            messages=len(messages) - left,
            again=again,
            store=store,
            seconds=self.clock.seconds() - started,
        )

    def _recoveredQueue(self, address: str, durable: bool = True) -> Queue | None:
        """
        @return: the queue of a recovered address, made durable if asked,
            or L{None} when the address is now a topic.
        """
        node = self.lookup(address, True)
        if not isinstance(node, Queue):
            return None
        if durable:
            node.durable = True
        return node

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
            if entry.key is not None:
                self._unstore(entry)
            return
        entry.expires = None
        entry.avoid = None
        if entry.key is not None:
            if isinstance(target, Queue) and target.storable:
                self._requeued(entry, target, front=False)
            else:
                self._unstore(entry)
        target._add(entry)

    # --- the store ----------------------------------------------------------

    def _persist(self, entry: _Stored, node: _Node) -> Deferred[None] | None:
        """
        Write a message that arrived to the store, if it is durable and its
        node a queue the store keeps; call before adding it to the node.

        @return: a Deferred that fires once the store committed it, or
            L{None} when the message is kept in memory only.
        """
        store = self.store
        if (
            store is None
            or not isinstance(node, Queue)
            or not node.storable
            or not _isDurable(entry.data)
        ):
            return None
        key = entry.key = next(self._keys)
        self._back += 1
        return store.add(key, node.name, self._back, entry.data, entry.expires)

    def _notWritten(self, reason: Failure, entry: _Stored, node: _Node) -> None:
        """
        The store could not write a new message: it is in memory only, and
        leaves its queue if it still waits there.
        """
        reason.trap(StoreError)
        entry.key = None
        if isinstance(node, Queue):
            node._withdraw(entry)

    def _delivered(self, entry: _Stored) -> None:
        """
        Record that a stored message's delivery has begun.
        """
        assert self.store is not None and entry.key is not None
        self.store.delivered(entry.key).addErrback(_storeFailed)

    def _requeued(self, entry: _Stored, queue: Queue, front: bool) -> None:
        """
        Record that a stored message is on a queue again, at its front or
        its back.
        """
        assert self.store is not None and entry.key is not None
        if front:
            self._front -= 1
            position = self._front
        else:
            self._back += 1
            position = self._back
        self.store.requeue(
            entry.key, queue.name, position, entry.expires, entry.data
        ).addErrback(_storeFailed)

    def _unstore(self, entry: _Stored) -> None:
        """
        Forget a stored message: it is done, or now in memory only.
        """
        assert self.store is not None and entry.key is not None
        key, entry.key = entry.key, None
        self.store.remove(key).addErrback(_storeFailed)

    def _makeDurable(self, node: _Node) -> None:
        """
        A link with a durable terminus attached to a node: a queue becomes
        durable, and is recorded as such.
        """
        if not isinstance(node, Queue) or node.durable or not node.storable:
            return
        node.durable = True
        if self.store is not None and self._recovered:
            self.store.declare(node.name).addErrback(_storeFailed)

    def _settledLater(self, producer: _Producer) -> None:
        """
        A producer's message was settled after the store's answer: give the
        link its credit and send the outcome, soon (once for all the
        messages of a transaction).
        """
        self._granting[producer] = None
        self._dirty.add(producer.protocol)
        if self._settling is None:
            self._settling = self.clock.callLater(0, self._settleNow)

    def _settleNow(self) -> None:
        self._settling = None
        granting, self._granting = self._granting, {}
        for producer in granting:
            producer.grant()
        self._flush()

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

    # A server holds thousands: nothing here keeps state in proton's
    # wrappers from one event to the next.
    _forgetsAttributes = True

    def __init__(self, broker: Broker) -> None:
        """
        @param broker: the queues to serve.
        """
        super().__init__(handler=self)
        self.broker = broker
        # Keyed by link (proton's wrappers compare by the C object): a link
        # name that is not UTF-8 cannot even be read.
        # (By the link's pointer into proton, see amqptx._raw.)
        self._consumers: dict[_raw.CData, _Consumer] = {}
        self._producers: dict[_raw.CData, _Producer] = {}

    def connectionMade(self) -> None:
        """
        Count the connection among the broker's, then start it.
        """
        self.broker.connections.add(self)
        super().connectionMade()

    def flushed(self) -> None:
        """
        After a batch of this connection's work, flush the other connections
        that have something to send because of it (messages for their
        consumers, credit for their senders): once per batch of input rather
        than once per message.
        """
        self.broker._flush(self)

    def makeEngine(self) -> Engine:
        """
        Make the connection's engine, its Open offering the anonymous relay.

        @return: the engine.
        """
        engine = super().makeEngine()
        _raw.offerCapabilities(engine.rawConnection, _ANONYMOUS_RELAY)
        return engine

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
        if source.durability:
            self.broker._makeDurable(node)
        consumer = _Consumer(self, link)
        self._consumers[link._impl] = consumer
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
        if node is not None and target.durability:
            self.broker._makeDurable(node)
        producer = _Producer(self, link, node)
        self._producers[link._impl] = producer
        if node is not None:
            if isinstance(node, Queue) and node.temporary and node._creator is None:
                node._creator = producer
            node.addProducer(producer)
        producer.grant()

    def _forgetConsumer(self, consumer: _Consumer) -> None:
        if self._consumers.get(consumer._impl) is consumer:
            del self._consumers[consumer._impl]

    def _forgetProducer(self, producer: _Producer) -> None:
        if self._producers.get(producer._impl) is producer:
            del self._producers[producer._impl]

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
            consumer = self._consumers.pop(link._impl, None)
            if consumer is not None:
                self._dropConsumer(consumer)
        else:
            producer = self._producers.pop(link._impl, None)
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
                del self._consumers[consumer._impl]
                self._dropConsumer(consumer)
        for producer in list(self._producers.values()):
            if producer.link.session == session:
                del self._producers[producer._impl]
                self._dropProducer(producer)

    _rawEvents = True
    # No child handlers (proton's convention); a class attribute, as are all
    # that can be: a server has thousands of these.
    handlers: tuple[object, ...] = ()

    def _linkFlow(self, link: _raw.CData) -> None:
        """
        A consumer gave credit: deliver; give back what cannot be used when
        the consumer asked to drain.

        @param link: the link, a pointer into proton.
        """
        lib = _raw.lib
        if not lib.pn_link_is_sender(link):
            return
        consumer = self._consumers.get(link)
        if consumer is not None:
            consumer.queue.dispatch()
            if lib.pn_link_credit(link) > 0:
                lib.pn_link_drained(link)

    def _delivery(self, delivery: _raw.CData) -> None:
        """
        Store an arriving message, or act on a consumer's outcome.

        @param delivery: the delivery, a pointer into proton.
        """
        lib = _raw.lib
        link = lib.pn_delivery_link(delivery)
        if lib.pn_link_is_sender(link):
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
        self.broker.connections.discard(self)
        consumers, self._consumers = self._consumers, {}
        producers, self._producers = self._producers, {}
        for consumer in consumers.values():
            self._dropConsumer(consumer)
        for producer in producers.values():
            self._dropProducer(producer)
        self.broker._flush()
