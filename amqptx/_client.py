# -*- test-case-name: tests.test_client -*-
"""
The Deferred API: senders, receivers and messages on an L{AMQPConnection}.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import proton
from proton import Delivery, Disposition, Endpoint, Event, Message, Terminus
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from . import _raw
from ._engine import decodeMessage, uniqueId
from ._errors import (
    AuthenticationFailed,
    LinkDetached,
    MessageModified,
    MessageRejected,
    MessageReleased,
    RequestTimedOut,
    SendQueueFull,
    SessionEnded,
)
from ._protocol import (
    AMQPProtocol,
    Waiters,
    conditionFields,
    eventLink,
    eventSession,
)

if TYPE_CHECKING:
    from proton import Link

__all__ = [
    "DEFAULT_QUEUE_LIMIT",
    "AMQPConnection",
    "Outcome",
    "ReceivedMessage",
    "Receiver",
    "Sender",
]

DEFAULT_QUEUE_LIMIT = 1000
_T = TypeVar("_T")

# Session errors after which a recoverable connection reconnects, keeping its
# links, rather than failing them.
_TRANSIENT = frozenset(["amqp:internal-error"])

# The per-message path's calls, looked up once (see amqptx._raw).
_credit = _raw.lib.pn_link_credit
_settle = _raw.lib.pn_delivery_settle
_remoteState = _raw.lib.pn_delivery_remote_state
_isSettled = _raw.lib.pn_delivery_settled
_deliveryLink = _raw.lib.pn_delivery_link
_update = _raw.lib.pn_delivery_update
_incref = _raw.lib.pn_incref
_lib = _raw.lib
_NULL = _raw.NULL
_LOCAL_CLOSED = Endpoint.LOCAL_CLOSED
_REMOTE_CLOSED = Endpoint.REMOTE_CLOSED
_encodeMessage = _raw.encodeMessage
_sendMessage = _raw.sendMessage
_ACCEPTED = _raw.ACCEPTED


class Outcome(Enum):
    """
    How a sent message ended, when it did not end in failure.

    @cvar ACCEPTED: the peer accepted the message.
    @cvar SETTLED: the message was sent pre-settled (at most once): it left
        for the peer, which never acknowledges it.
    """

    ACCEPTED = "accepted"
    SETTLED = "settled"


class _Link:
    """
    What senders and receivers share: attaching, detaching, failing.

    The link itself is proton's C link (C{_impl}, a pointer, see
    L{amqptx._raw}), driven with proton's C functions: its Python wrapper,
    with the attribute record and handle it leaves on the C link, costs
    more than the rest of a link's opening.

    @ivar failure: why the link ended, once it has.
    """

    # The proton link this is attached to, holding a reference of its own
    # (as a wrapper would) so that it outlives its connection as long as
    # this does; and how many links this has had (one per connection).
    _impl: _raw.CData = _NULL
    _attachments = 0

    def __init__(self, connection: AMQPConnection, name: str) -> None:
        self._connection = connection
        self.name = name
        self.attached = False
        self.failure: Failure | None = None
        self._clean = False
        self._attachWaiters = Waiters()
        self._detachWaiters = Waiters()
        self._attach(connection)

    def __del__(self, _decref: Callable[[_raw.CData], None] = _lib.pn_decref) -> None:
        impl = self._impl
        if impl != _NULL:
            _decref(impl)

    @property
    def link(self) -> Link:
        """
        The link's proton wrapper (a new one each time: amqptx itself does
        without).
        """
        wrapper: Link = proton.Link.wrap(self._impl)  # type: ignore[no-untyped-call]
        return wrapper

    def _attach(self, connection: AMQPConnection) -> None:
        """
        Make and open this link's proton link (C{self._impl}) on a
        connection.

        @param connection: the connection.
        """
        link = self._makeLink(connection._newSession())
        _incref(link)
        previous, self._impl = self._impl, link
        if previous != _NULL:
            _lib.pn_decref(previous)
        self._attachments += 1
        connection._links[self.name] = self
        connection._byImpl[link] = self
        _lib.pn_link_open(link)
        self._opening()

    def _opening(self) -> None:
        """
        The link's attach is on its way (C{self._impl} is the new link): say
        now what else goes with it.
        """

    def _makeLink(self, session: _raw.CData) -> _raw.CData:
        """
        @param session: a session (C{pn_session_t}).
        @return: a new proton link of this kind (C{pn_link_t}), configured,
            not yet open.
        """
        raise NotImplementedError()

    def _park(self) -> None:
        """
        The connection dropped and a new one will come: keep what waits, and
        forget what belonged to the old link.
        """
        self.attached = False

    def _rebind(self, connection: AMQPConnection) -> None:
        """
        Attach again, on a new connection, and carry on.

        @param connection: the new connection.
        """
        self._connection = connection
        self._attach(connection)

    def _whenAttached(self: _L) -> Deferred[_L]:
        if self.failure is not None:
            return fail(self.failure)
        if self.attached:
            return succeed(self)
        attached: Deferred[_L] = self._attachWaiters.new()
        return attached

    def close(self) -> Deferred[None]:
        """
        Detach the link.

        @return: a Deferred that fires with L{None} once the peer has answered
            the detach, or fails with L{LinkDetached} if the peer detached it
            with an error first, or with the failure that ended the
            connection.
        """
        if self.failure is not None:
            return succeed(None) if self._clean else fail(self.failure)
        d: Deferred[None] = self._detachWaiters.new()
        if not _lib.pn_link_state(self._impl) & _LOCAL_CLOSED:
            _lib.pn_link_close(self._impl)
            self._connection.flush()
        return d

    def _remoteOpened(self) -> None:
        if _lib.pn_link_state(self._impl) & _REMOTE_CLOSED or self._terminusRefused():
            # The peer refuses: a detach with the reason follows (or came
            # with the attach).
            return
        self.attached = True
        self._attachWaiters.fire(self)

    def _terminusRefused(self) -> bool:
        """
        @return: whether the peer's attach carries no terminus where this side
            asked for an address: a refusal, by the specification.
        """
        raise NotImplementedError()

    def _delivery(self, delivery: _raw.CData) -> None:
        """
        A delivery on the link arrived or changed.

        @param delivery: the delivery, a pointer into proton (see
            L{amqptx._raw}).
        """
        raise NotImplementedError()

    def _remoteClosed(self) -> None:
        link = self.link
        name, description, info = conditionFields(link.remote_condition)
        if name is not None:
            self._end(Failure(LinkDetached(name, description, info)))
        else:
            self._end(Failure(LinkDetached(None, "the link was detached")), True)

    def _end(self, reason: Failure, clean: bool = False) -> None:
        """
        The link is over: fail everything that waits on it.

        @param reason: the failure to give to those waiting.
        @param clean: whether the link ended by a detach without error (then
            L{close} succeeds).
        """
        if self.failure is not None:
            return
        self.failure = reason
        self._clean = clean or bool(reason.check(ConnectionDone))
        self._connection._forget(self)
        self._attachWaiters.fire(reason)
        self._failPending(reason)
        self._detachWaiters.fire(None if self._clean else reason)

    def _failPending(self, reason: Failure) -> None:
        pass


_L = TypeVar("_L", bound=_Link)


class Sender(_Link):
    """
    A sending link to one address.

    Messages sent while the peer gives no credit wait, in order, and go out as
    credit arrives; at most L{queueLimit} of them: beyond, L{send} fails with
    L{SendQueueFull}, and L{whenReady} tells when there is room again
    (back-pressure).

    @ivar address: the target address.
    @ivar queueLimit: how many messages may wait for credit.
    """

    def __init__(
        self,
        connection: AMQPConnection,
        name: str,
        address: str | None,
        presettled: bool,
        queueLimit: int = DEFAULT_QUEUE_LIMIT,
        durable: bool = False,
    ) -> None:
        self.address = address
        self._durable = durable
        self.queueLimit = queueLimit
        self._presettled = presettled
        self._roomWaiters = Waiters()
        self._settledWaiters = Waiters()
        self._waiting: deque[tuple[bytes, Deferred[Outcome]]] = deque()
        # Keyed by proton's delivery (a pointer, see amqptx._raw): settled
        # at once when its outcome comes, so never looked up once freed.
        self._unsettled: dict[_raw.CData, tuple[bytes, Deferred[Outcome]]] = {}
        self._tags = itertools.count()
        super().__init__(connection, name)

    def _makeLink(self, session: _raw.CData) -> _raw.CData:
        link = _lib.pn_sender(session, self.name.encode("utf-8"))
        target = _lib.pn_link_target(link)
        _raw.setTerminusAddress(target, self.address)
        if self._durable:
            _lib.pn_terminus_set_durability(target, Terminus.CONFIGURATION)
        if self._presettled:
            _lib.pn_link_set_snd_settle_mode(link, proton.Link.SND_SETTLED)
        return link

    def _park(self) -> None:
        """
        Keep the messages that wait for their outcome, to send them again
        first on the next connection (at least once: the peer may have them
        already).
        """
        super()._park()
        self._waiting.extendleft(reversed(list(self._unsettled.values())))
        self._unsettled.clear()

    def whenAttached(self) -> Deferred[Sender]:
        """
        @return: a Deferred that fires with this sender once the peer has
            attached the link, or fails with L{LinkDetached} if it refused.
        """
        return self._whenAttached()

    def send(self, message: Message) -> Deferred[Outcome]:
        """
        Send a message.

        @param message: the message.
        @return: a Deferred that fires with L{Outcome.ACCEPTED} when the peer
            accepts the message (or L{Outcome.SETTLED} when it went out
            pre-settled), or fails with L{MessageRejected}, L{MessageReleased}
            or L{MessageModified} for the peer's other outcomes,
            L{LinkDetached} or L{SessionEnded} when the link ended first, or
            the connection's failure when the connection ended first; or at
            once with L{SendQueueFull} when L{queueLimit} messages already
            wait for credit.  Cancelling it before the message went out
            withdraws the message; afterwards, the outcome is no longer
            reported.
        """
        if not isinstance(message, Message):
            raise TypeError(f"send() takes a proton.Message, not {message!r}")
        if self.failure is not None:
            return fail(self.failure)
        if len(self._waiting) >= self.queueLimit:
            return fail(
                SendQueueFull(
                    None,
                    f"{len(self._waiting)} messages to {self.address!r} already "
                    "wait for credit; wait for whenReady()",
                )
            )
        d: Deferred[Outcome] = Deferred(self._cancelSend)
        waiting = self._waiting
        waiting.append((_encodeMessage(message), d))
        if len(waiting) == 1:
            # Others waiting before this one means no credit (or no link) for
            # now: the peer's next credit (PN_LINK_FLOW) or attach sends them
            # all, in order.
            self._transmit()
            self._connection.flush()
        return d

    def whenReady(self) -> Deferred[Sender]:
        """
        Wait until fewer than L{queueLimit} messages wait for credit.

        @return: a Deferred that fires with this sender when there is room
            (at once if there is), or fails with the link's failure.
        """
        if self.failure is not None:
            return fail(self.failure)
        if len(self._waiting) < self.queueLimit:
            return succeed(self)
        ready: Deferred[Sender] = self._roomWaiters.new()
        return ready

    def whenSettled(self) -> Deferred[None]:
        """
        Wait until no message sent here waits for credit or for its outcome.

        @return: a Deferred that fires with L{None} then (at once if none
            waits); it never fails.
        """
        if not self.unsettled:
            return succeed(None)
        settled: Deferred[None] = self._settledWaiters.new()
        return settled

    @property
    def unsettled(self) -> int:
        """
        How many messages sent at least once wait for their outcome (or for
        credit).
        """
        return len(self._waiting) + len(self._unsettled)

    def _cancelSend(self, d: Deferred[Outcome]) -> None:
        for item in self._waiting:
            if item[1] is d:
                self._waiting.remove(item)
                break
        else:
            for tag, (_, waiting) in self._unsettled.items():
                if waiting is d:
                    del self._unsettled[tag]
                    break
            else:
                return
        if len(self._waiting) < self.queueLimit:
            self._roomWaiters.fire(self)
        if not self._waiting and not self._unsettled:
            self._settledWaiters.fire(None)

    def _terminusRefused(self) -> bool:
        if self.address is None:
            return False
        target = _lib.pn_link_remote_target(self._impl)
        return bool(_lib.pn_terminus_get_address(target) == _NULL)

    def _transmit(self) -> None:
        waiting = self._waiting
        if not self.attached:
            return
        link = self._impl
        credit = _credit(link)
        if self._presettled:
            while waiting and credit > 0:
                credit -= 1
                data, d = waiting.popleft()
                _settle(_sendMessage(link, b"%d" % next(self._tags), data))
                d.callback(Outcome.SETTLED)
        elif waiting and credit > 0:
            unsettled, tags, pop = self._unsettled, self._tags, waiting.popleft
            for _ in range(min(credit, len(waiting))):
                item = pop()
                unsettled[_sendMessage(link, b"%d" % next(tags), item[0])] = item
        if len(waiting) < self.queueLimit:
            self._roomWaiters.fire(self)
        if not waiting and not self._unsettled:
            # Pre-settled messages are done once they are out.
            self._settledWaiters.fire(None)

    def _remoteOpened(self) -> None:
        super()._remoteOpened()
        self._transmit()

    def _delivery(self, delivery: _raw.CData) -> None:
        state = _remoteState(delivery)
        if state != _ACCEPTED and state not in _TERMINAL and not _isSettled(delivery):
            return
        sent = self._unsettled.pop(delivery, None)
        failure = None
        if sent is not None and state != _ACCEPTED:
            failure = _outcomeFailure(_raw.wrapDelivery(delivery), state)
        _settle(delivery)
        if sent is None:
            return
        if not self._unsettled and not self._waiting:
            self._settledWaiters.fire(None)
        if failure is None:
            sent[1].callback(Outcome.ACCEPTED)
        else:
            sent[1].errback(failure)

    def _failPending(self, reason: Failure) -> None:
        waiting = [d for _, d in self._waiting] + [
            d for _, d in self._unsettled.values()
        ]
        self._waiting.clear()
        self._unsettled.clear()
        for d in waiting:
            d.errback(reason)
        self._roomWaiters.fire(reason)
        self._settledWaiters.fire(None)


_TERMINAL = frozenset(
    [
        Disposition.ACCEPTED,
        Disposition.REJECTED,
        Disposition.RELEASED,
        Disposition.MODIFIED,
    ]
)


def _outcomeFailure(delivery: Delivery, state: int) -> Exception | None:
    """
    @param delivery: a sent delivery the peer updated.
    @param state: its remote state: terminal, or none when the peer settled
        it without an outcome.
    @return: the failure for an outcome other than I{accepted}, or L{None}
        for I{accepted} (also the default outcome of amqptx's sources, which
        a peer settling without an outcome means).
    """
    if state == Disposition.REJECTED:
        name, description, info = conditionFields(delivery.remote.condition)
        return MessageRejected(name, description, info)
    if state == Disposition.RELEASED:
        return MessageReleased(None, "the peer released the message")
    if state == Disposition.MODIFIED:
        remote = delivery.remote
        annotations = remote.annotations
        return MessageModified(
            bool(remote.failed),
            bool(remote.undeliverable),
            dict(annotations) if annotations else None,
        )
    return None


class ReceivedMessage:
    """
    A message that arrived on a L{Receiver}, with the means to settle it.

    @ivar message: the decoded message.
    @ivar settled: whether this side has settled it.
    """

    def __init__(self, receiver: Receiver, delivery: _raw.CData, message: Message):
        """
        @param receiver: the receiver it arrived on.
        @param delivery: its delivery, a pointer into proton: held here
            (as proton's C{Delivery} would hold it) until this is gone.
        @param message: the decoded message.
        """
        self.message = message
        self._receiver = receiver
        self._attachment = receiver._attachments
        _incref(delivery)
        self._impl = delivery
        self.settled = bool(_isSettled(delivery))

    def __del__(
        self, _decref: Callable[[_raw.CData], None] = _raw.lib.pn_decref
    ) -> None:
        _decref(self._impl)

    @property
    def body(self) -> Any:
        """
        The message's body.
        """
        return self.message.body

    def accept(self) -> None:
        """
        Tell the peer the message was processed (outcome I{accepted}).
        """
        self._settle(Disposition.ACCEPTED)

    def reject(
        self, condition: str | None = None, description: str | None = None
    ) -> None:
        """
        Tell the peer the message is invalid (outcome I{rejected}).

        @param condition: an error condition name to give, or L{None}.
        @param description: the condition's description.
        """
        if condition is None:
            self._settle(Disposition.REJECTED)
            return
        error = proton.Condition(condition, description)

        def local(disposition: Disposition) -> None:
            disposition.condition = error

        self._settle(Disposition.REJECTED, local)

    def release(self) -> None:
        """
        Give the message back unprocessed (outcome I{released}).
        """
        self._settle(Disposition.RELEASED)

    def modify(
        self, deliveryFailed: bool = True, undeliverableHere: bool = False
    ) -> None:
        """
        Give the message back, modified (outcome I{modified}).

        @param deliveryFailed: count this as a failed delivery.
        @param undeliverableHere: ask the peer not to send it here again.
        """

        def local(disposition: Disposition) -> None:
            disposition.failed = deliveryFailed
            disposition.undeliverable = undeliverableHere

        self._settle(Disposition.MODIFIED, local)

    def _settle(
        self, state: int, local: Callable[[Disposition], None] | None = None
    ) -> None:
        """
        Settle with an outcome, unless settled already.

        @param state: the outcome.
        @param local: sets the outcome's fields on the delivery's local
            disposition (through proton's wrapper), if it has any.
        """
        if self.settled:
            return
        self.settled = True
        receiver = self._receiver
        if receiver.failure is not None or receiver._attachments != self._attachment:
            # The link is gone (with its connection, say): the peer gives
            # the message to someone again, or to this receiver once it is
            # attached again.
            return
        impl = self._impl
        if local is None:
            _update(impl, state)
        else:
            delivery = _raw.wrapDelivery(impl)
            local(delivery.local)
            delivery.update(state)
        _settle(impl)
        self._receiver._connection.flush()


class Receiver(_Link):
    """
    A receiving link from one address, with a window of credit.

    The peer may send up to C{credit} messages ahead of L{Receiver.get}; each
    message handed out opens room for one more.
    """

    def __init__(
        self,
        connection: AMQPConnection,
        name: str,
        address: str | None,
        credit: int,
        dynamic: bool,
        presettled: bool,
        autoAccept: bool,
        onMessage: Callable[[ReceivedMessage], object] | None = None,
        durable: bool = False,
        limit: int | None = None,
    ) -> None:
        self._onMessage = onMessage
        self._uncredited = limit
        self._durable = durable
        self._address = address
        self._credit = credit
        self._dynamic = dynamic
        self._presettled = presettled
        self._autoAccept = autoAccept
        self._buffer: deque[ReceivedMessage] = deque()
        self._getters: deque[Deferred[ReceivedMessage]] = deque()
        self._reader = _raw.LinkReader()
        super().__init__(connection, name)

    def _makeLink(self, session: _raw.CData) -> _raw.CData:
        link = _lib.pn_receiver(session, self.name.encode("utf-8"))
        source = _lib.pn_link_source(link)
        if self._dynamic:
            _lib.pn_terminus_set_dynamic(source, True)
        else:
            _raw.setTerminusAddress(source, self._address)
        if self._durable:
            _lib.pn_terminus_set_durability(source, Terminus.CONFIGURATION)
        if self._presettled:
            _lib.pn_link_set_snd_settle_mode(link, proton.Link.SND_SETTLED)
        return link

    def _park(self) -> None:
        """
        Drop the messages received but not handed out: they were not settled,
        so the peer delivers them again.
        """
        if self._uncredited is not None:
            # Credit the old link did not use can be given again.
            self._uncredited += _credit(self._impl) + len(self._buffer)
        super()._park()
        self._buffer.clear()
        self._reader = _raw.LinkReader()

    def _flow(self, credit: int) -> None:
        """
        Give the peer credit, within the receiver's limit.
        """
        if self._uncredited is not None:
            credit = min(credit, self._uncredited)
            self._uncredited -= credit
        if credit > 0:
            _lib.pn_link_flow(self._impl, credit)

    @property
    def address(self) -> str | None:
        """
        The source address: the one asked for, or the one the peer created for
        a dynamic receiver.
        """
        impl = self._impl
        if self.attached:
            return _raw.terminusAddress(_lib.pn_link_remote_source(impl))
        return _raw.terminusAddress(_lib.pn_link_source(impl))

    def whenAttached(self) -> Deferred[Receiver]:
        """
        @return: a Deferred that fires with this receiver once the peer has
            attached the link, or fails with L{LinkDetached} if it refused.
        """
        return self._whenAttached()

    def get(self) -> Deferred[ReceivedMessage]:
        """
        Get the next message.

        @return: a Deferred that fires with the next L{ReceivedMessage} (in
            arrival order, one per call), or fails with L{LinkDetached},
            L{SessionEnded} or the connection's failure when the link ends
            first.  Cancelling it gives up the place in line.
        """
        if self._buffer:
            return succeed(self._handOut(self._buffer.popleft()))
        if self.failure is not None:
            return fail(self.failure)
        d: Deferred[ReceivedMessage] = Deferred(self._getters.remove)
        self._getters.append(d)
        return d

    def __aiter__(self) -> Receiver:
        """
        Iterate over the messages, from C{async def} code::

            async for received in receiver:
                handle(received.body)
                received.accept()

        The iteration ends when the link is detached, or the connection
        closed, cleanly; it raises the failure otherwise.
        """
        return self

    async def __anext__(self) -> ReceivedMessage:
        """
        @return: the next message.
        @raise StopAsyncIteration: when the link has been detached cleanly.
        """
        try:
            return await self.get()
        except (LinkDetached, ConnectionDone):
            if self._clean:
                raise StopAsyncIteration() from None
            raise

    def _handOut(self, received: ReceivedMessage) -> ReceivedMessage:
        if self.failure is None and self.attached:
            self._flow(1)
            if self._autoAccept:
                received.accept()
            self._connection.flush()
        return received

    def _terminusRefused(self) -> bool:
        impl = self._impl
        source = _lib.pn_link_remote_source(impl)
        return _lib.pn_terminus_get_address(source) == _NULL and not (
            _lib.pn_terminus_is_dynamic(_lib.pn_link_source(impl))
        )

    def _opening(self) -> None:
        # The credit goes with the attach, as proton's own receivers give
        # theirs: one frame and one round of the peer's work fewer than
        # waiting for its attach.  If it refuses the link, the credit dies
        # with it.
        self._flow(self._credit)

    def _delivery(self, delivery: _raw.CData) -> None:
        link = self._impl
        if _lib.pn_link_current(link) != delivery:
            # An update on a message already read (the peer settled it).
            return
        data = self._reader.read(delivery, link)
        if isinstance(data, _raw.Read):
            return
        message = decodeMessage(data)
        received = ReceivedMessage(self, delivery, message)
        if self._onMessage is not None:
            self._onMessage(self._handOut(received))
        elif self._getters:
            self._getters.popleft().callback(self._handOut(received))
        else:
            self._buffer.append(received)

    def _failPending(self, reason: Failure) -> None:
        # Messages received but not handed out: the peer gives them again.
        self._buffer.clear()
        getters, self._getters = self._getters, deque()
        for d in getters:
            d.errback(reason)


# The handler methods of the events an AMQPConnection handles in C: those of
# its _eventsInC and _rawEvents (keep them in step).
_HANDLED_IN_C = (
    Event.LINK_REMOTE_OPEN.method,
    Event.DELIVERY.method,
    Event.LINK_FLOW.method,
)


class AMQPConnection(AMQPProtocol):
    """
    An AMQP connection with a Deferred API: send to and receive from
    addresses.

    Build it through an amqptx endpoint (or C{amqptx.connect}); the Deferred
    of C{endpoint.connect(factory)} fires with it once the connection is open.

    It is its own proton event handler, but handles its links' attaches,
    deliveries and credit itself, with proton's C functions: a subclass may
    override the protocol's hooks (C{connectionOpened}, say) and other
    handler methods, not C{on_link_remote_open}, C{on_delivery} or
    C{on_link_flow} (L{TypeError} at class definition).

    @ivar recoverable: whether a new connection will take over this one's
        senders and receivers if it drops (see L{adopt}); set by
        L{amqptx.ReconnectingAMQPClientFactory}.
    """

    def __init__(self) -> None:
        super().__init__(handler=self)
        self.recoverable = False
        # The session of new links (C{pn_session_t}, see amqptx._raw).
        self._session: _raw.CData | None = None
        self._links: dict[str, _Link] = {}
        # The same links, by their proton link (a pointer, see amqptx._raw).
        self._byImpl: dict[_raw.CData, _Link] = {}
        self._senders: dict[str | None, Sender] = {}
        self._replies: dict[str | None, Receiver] = {}
        self._requests: dict[object, Deferred[Message]] = {}
        self._linksNamed = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """
        Refuse a subclass that defines a handler method for the events an
        C{AMQPConnection} handles itself, with proton's C functions (the
        peer's attach, deliveries, credit): it would never be called.

        @raise TypeError: naming the method.
        """
        super().__init_subclass__(**kwargs)
        for name in _HANDLED_IN_C:
            # Its own, or a mixin's.
            if hasattr(cls, name):
                raise TypeError(
                    f"{cls.__qualname__}.{name} would never be called: an "
                    f"AMQPConnection handles its links' attaches, deliveries "
                    f"and credit itself; use its Deferred API, or an "
                    f"AMQPProtocol with a handler of your own"
                )

    def _newSession(self) -> _raw.CData:
        session = self._session
        if session is None or _lib.pn_session_state(session) & (
            _LOCAL_CLOSED | _REMOTE_CLOSED
        ):
            session = self._session = _lib.pn_session(self._madeEngine().rawConnection)
            _lib.pn_session_open(session)
        return session

    def _name(self, kind: str) -> str:
        number = self._linksNamed
        self._linksNamed = number + 1
        return f"amqptx-{kind}-{number}"

    def sender(
        self,
        address: str | None,
        *,
        name: str | None = None,
        presettled: bool = False,
        queueLimit: int = DEFAULT_QUEUE_LIMIT,
        durable: bool = False,
    ) -> Deferred[Sender]:
        """
        Attach a new sending link.

        @param address: the target address, or L{None} for the peer's
            anonymous relay (each message then names its own C{address}).
        @param name: the link name, or L{None} for a generated one.
        @param presettled: send every message pre-settled (at most once)
            instead of waiting for the peer's outcome.
        @param queueLimit: how many messages may wait for credit (see
            L{Sender.whenReady}).
        @param durable: ask for a durable target (the node's configuration
            survives a restart of the peer; RabbitMQ then declares a
            C{/queue/NAME} queue durable).
        @return: a Deferred that fires with the L{Sender} once attached, or
            fails with L{LinkDetached} (the peer refused), L{SessionEnded} or
            the connection's failure.
        """
        return self._attachSender(
            address, name, presettled, queueLimit, durable
        ).whenAttached()

    def _attachSender(
        self,
        address: str | None,
        name: str | None,
        presettled: bool,
        queueLimit: int = DEFAULT_QUEUE_LIMIT,
        durable: bool = False,
    ) -> Sender:
        sender = Sender(
            self, name or self._name("sender"), address, presettled, queueLimit, durable
        )
        self.flush()
        return sender

    def send(self, address: str | None, message: Message) -> Deferred[Outcome]:
        """
        Send a message to an address on a sender kept for that address.

        @param address: the target address.
        @param message: the message.
        @return: see L{Sender.send}.
        """
        sender = self._senders.get(address)
        if sender is None:
            sender = self._senders[address] = self._attachSender(address, None, False)
        return sender.send(message)

    def receiver(
        self,
        address: str | None,
        *,
        credit: int = 10,
        dynamic: bool = False,
        name: str | None = None,
        autoAccept: bool = False,
        presettled: bool = False,
        onMessage: Callable[[ReceivedMessage], object] | None = None,
        durable: bool = False,
        limit: int | None = None,
    ) -> Deferred[Receiver]:
        """
        Attach a new receiving link.

        @param address: the source address (L{None} with C{dynamic}).
        @param credit: how many messages the peer may send ahead of
            L{Receiver.get}.
        @param dynamic: ask the peer to create a temporary node (the reply-to
            address of request/response).
        @param name: the link name, or L{None} for a generated one.
        @param autoAccept: accept every message as it is handed out by
            L{Receiver.get}, instead of leaving the outcome to the caller.
        @param presettled: ask the peer to send every message pre-settled (at
            most once: a message is lost if this side fails before handling
            it).
        @param onMessage: a function called with each message as it arrives,
            instead of keeping it for L{Receiver.get}.
        @param durable: ask for a durable source (see L{sender}).
        @param limit: how many messages to take in all, or L{None} for no
            limit: the peer gets no credit beyond (so a receiver that wants N
            messages is not sent an N+1th it would leave unsettled).
        @return: a Deferred that fires with the L{Receiver} once attached, or
            fails with L{LinkDetached} (the peer refused), L{SessionEnded} or
            the connection's failure.
        """
        if credit < 1:
            raise ValueError(f"credit must be at least 1, not {credit!r}")
        receiver = Receiver(
            self,
            name or self._name("receiver"),
            None if dynamic else address,
            credit,
            dynamic,
            presettled,
            autoAccept,
            onMessage,
            durable,
            limit,
        )
        self.flush()
        return receiver.whenAttached()

    def request(
        self,
        address: str,
        message: Message,
        timeout: float = 30.0,
        replyTo: str | None = None,
    ) -> Deferred[Message]:
        """
        Send a request and get its reply, through a dynamic reply-to node.

        The connection attaches one dynamic receiver for all its requests
        (on first use); each request gets that address as its C{reply_to}
        and a C{correlation_id} (its own, or a new unique one), and the reply
        with that C{correlation_id} fires the Deferred.  For a peer without
        dynamic nodes (RabbitMQ 3.x), give a C{replyTo} address instead: one
        receiver per such address takes the replies.

        @param address: where to send the request.
        @param message: the request; its C{reply_to} and (when unset)
            C{correlation_id} are set here.
        @param timeout: seconds to wait for the reply.
        @param replyTo: an address of this connection's own to receive replies
            at, instead of a dynamic node.
        @return: a Deferred that fires with the reply message, or fails with
            L{RequestTimedOut} when none came in time, with a failure of
            L{Sender.send} when the request was not accepted, or with the
            connection's failure when it ends first.  Cancelling it forgets
            the request.
        """
        correlation = message.correlation_id
        if correlation is None:
            correlation = message.correlation_id = uniqueId()
        clock = self.clock
        assert clock is not None

        def forget(d: object) -> None:
            self._requests.pop(correlation, None)
            if timer.active():
                timer.cancel()

        reply: Deferred[Message] = Deferred(forget)
        self._requests[correlation] = reply

        def timedOut() -> None:
            self._requests.pop(correlation, None)
            reply.errback(
                RequestTimedOut(None, f"no reply to {correlation!r} within {timeout} s")
            )

        timer = clock.callLater(timeout, timedOut)

        def send(replies: Receiver) -> Deferred[Outcome]:
            replyTo = replies.address
            assert replyTo is not None, "a dynamic node has an address"
            message.reply_to = replyTo
            return self.send(address, message)

        def failed(reason: Failure) -> None:
            if not reply.called:
                forget(None)
                reply.errback(reason)

        self._replyReceiver(replyTo).addCallback(send).addErrback(failed)

        def done(result: _T) -> _T:
            if timer.active():
                timer.cancel()
            return result

        return reply.addBoth(done)

    def _replyReceiver(self, address: str | None) -> Deferred[Receiver]:
        replies = self._replies.get(address)
        if replies is None or replies.failure is not None:
            replies = self._replies[address] = Receiver(
                self,
                self._name("replies"),
                address,
                DEFAULT_QUEUE_LIMIT,
                address is None,
                False,
                True,
                self._reply,
            )
            self.flush()
        return replies.whenAttached()

    def _reply(self, received: ReceivedMessage) -> None:
        d = self._requests.pop(received.message.correlation_id, None)
        if d is not None:
            d.callback(received.message)

    def close(
        self,
        condition: str | None = None,
        description: str | None = None,
        settleTimeout: float = 5.0,
    ) -> Deferred[None]:
        """
        Close the connection; without an error condition, first wait (at
        most C{settleTimeout} seconds) for the outcome of every message sent.

        @param condition: an error condition to close with (then at once).
        @param description: its description.
        @param settleTimeout: seconds to wait for outstanding outcomes.
        @return: see L{whenClosed}.
        """
        senders = [link for link in self._links.values() if isinstance(link, Sender)]
        if condition is not None or self._ended is not None or self.closedLocally:
            return super().close(condition, description)
        outstanding = [s.whenSettled() for s in senders if s.unsettled]
        if not outstanding:
            return super().close(condition, description)
        self.closedLocally = True
        clock = self.clock
        assert clock is not None
        everything = gatherResults(outstanding, consumeErrors=True)
        everything.addTimeout(settleTimeout, clock).addErrback(lambda _: None)
        return everything.addCallback(
            lambda _: AMQPProtocol.close(self, condition, description)
        )

    def _forget(self, link: _Link) -> None:
        self._links.pop(link.name, None)
        self._byImpl.pop(link._impl, None)
        if isinstance(link, Sender) and self._senders.get(link.address) is link:
            del self._senders[link.address]

    def _linkOpened(self, event: _raw.CData) -> None:
        """
        The peer attached a link (C{PN_LINK_REMOTE_OPEN}, see
        L{AMQPProtocol._eventsInC}).

        @param event: proton's event (C{pn_event_t}).
        """
        link = self._byImpl.get(_lib.pn_event_link(event))
        if link is not None:
            link._remoteOpened()

    _eventsInC = {Event.LINK_REMOTE_OPEN.number: _linkOpened}

    # proton's handler convention: the protocol dispatches events here.

    def on_link_remote_close(self, event: Event) -> None:
        """
        The peer detached a link.

        @param event: proton's event.
        """
        link = self._byImpl.get(eventLink(event)._impl)
        if link is not None:
            link._remoteClosed()

    on_link_remote_detach = on_link_remote_close

    _rawEvents = True
    # No child handlers (proton's convention).
    handlers: tuple[object, ...] = ()

    def _linkFlow(self, link: _raw.CData) -> None:
        """
        The peer gave a sender credit.

        @param link: the link, a pointer into proton.
        """
        sender = self._byImpl.get(link)
        if isinstance(sender, Sender):
            sender._transmit()

    def _delivery(self, delivery: _raw.CData) -> None:
        """
        A message arrived, or the peer updated a sent one.

        @param delivery: the delivery, a pointer into proton.
        """
        link = self._byImpl.get(_deliveryLink(delivery))
        if link is not None:
            link._delivery(delivery)

    def on_session_remote_close(self, event: Event) -> None:
        """
        The peer ended a session: every link of it ends too (or, on a
        L{recoverable} connection after C{amqp:internal-error}, the
        connection ends and its links wait for the next one).

        @param event: proton's event.
        """
        session = eventSession(event)
        name, description, info = conditionFields(session.remote_condition)
        if self._session == session._impl:
            self._session = None
        if name in _TRANSIENT and self.recoverable and not self.closedLocally:
            # A broker shutting down (RabbitMQ ends its sessions with
            # amqp:internal-error "shutdown"): end the connection, whose
            # links then wait for the next one.
            self._log.info(
                "The peer ended a session ({condition}: {description}); reconnecting",
                condition=name,
                description=description,
            )
            self.connection.close()
            return
        reason = Failure(
            SessionEnded(name, description or "the peer ended the session", info)
        )
        for link in list(self._links.values()):
            if _lib.pn_link_session(link._impl) == session._impl:
                link._end(reason)

    def connectionClosed(self, reason: Failure) -> None:
        """
        Fail every link still waiting with the connection's failure; or, for
        a L{recoverable} connection that this side did not close and whose
        credentials were not refused, keep them for the next connection (see
        L{adopt}).

        @param reason: why the connection ended.
        """
        # Replies come to a dynamic node, gone with this connection.
        self._failRequests(reason)
        if (
            self.recoverable
            and not self.closedLocally
            and not reason.check(AuthenticationFailed)
        ):
            for link in self._links.values():
                link._park()
            return
        self.abandon(reason)

    @property
    def parked(self) -> bool:
        """
        Whether links of this ended connection wait for a new one.
        """
        return self._ended is not None and bool(self._links)

    def adopt(self, previous: AMQPConnection) -> None:
        """
        Take over the senders and receivers of a previous connection that
        ended while L{recoverable}: attach them again here; messages that were
        waiting for their outcome are sent again, first and in order, and
        receivers get their credit back.

        Their Deferreds fire once, with the outcome this connection gets.
        Messages may therefore reach the peer twice (at least once), never
        zero times.  A dynamic receiver gets a new address.

        @param previous: the ended connection.
        """
        links, previous._links = previous._links, {}
        previous._byImpl = {}
        self._senders.update(
            (address, sender)
            for address, sender in previous._senders.items()
            if sender.name in links
        )
        previous._senders = {}
        for link in links.values():
            link._rebind(self)
        self.flush()

    def _failRequests(self, reason: Failure) -> None:
        requests, self._requests = self._requests, {}
        for d in requests.values():
            d.errback(reason)

    def abandon(self, reason: Failure) -> None:
        """
        Fail every sender's and receiver's waiting Deferreds: no connection
        will take them over.

        @param reason: the failure to give them.
        """
        for link in list(self._links.values()):
            link._end(reason)
