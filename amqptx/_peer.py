# -*- test-case-name: tests.test_client -*-
"""
A scriptable AMQP peer on proton's engine, for tests: it answers everything a
client asks, records what it receives and settles it as told.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from collections.abc import Callable

import proton
from proton import Condition, Delivery, Disposition, Endpoint, Event, Message

from ._engine import ConnectionSettings, decodeMessage
from ._protocol import AMQPProtocol, eventDelivery, eventLink

__all__ = ["TestPeer"]


def _acceptAll(address: str | None, message: Message) -> int | None:
    return Disposition.ACCEPTED


class TestPeer(AMQPProtocol):
    """
    An AMQP peer that attaches every link it is asked to, grants credit,
    records and settles the messages it receives, and sends the messages it
    is given to the receivers of their address.

    @ivar received: C{(address, message)} for every message received, in
        order.
    @ivar outcome: decides each received message's outcome: called with the
        address and the message, returns a C{proton.Disposition} constant, or
        L{None} to leave the message unsettled.  Rejections carry the
        condition C{amqp:precondition-failed}; modifications have
        I{delivery-failed} set.
    @ivar refuseLinks: maps addresses to C{(condition, description)}: a link to
        such an address is refused (attached with no terminus, then detached
        with that condition).
    @ivar credit: the credit window given to every incoming sending link.
    @ivar unsettled: received deliveries left unsettled by L{outcome}.
    @ivar sentOutcomes: the client's outcome (a C{proton.Disposition}
        constant) for every message this peer sent, in the order settled.
    """

    __test__ = False

    def __init__(
        self,
        outcome: Callable[[str | None, Message], int | None] = _acceptAll,
        credit: int = 100,
        settings: ConnectionSettings | None = None,
    ) -> None:
        """
        @param outcome: see L{TestPeer.outcome}.
        @param credit: see L{TestPeer.credit}.
        @param settings: the peer's settings (a server by default).
        """
        super().__init__(handler=self)
        self.handlers: list[object] = []
        self.settings = settings or ConnectionSettings(role="server")
        self.outcome = outcome
        self.credit = credit
        self.refuseLinks: dict[str, tuple[str, str]] = {}
        self.received: list[tuple[str | None, Message]] = []
        self.unsettled: list[Delivery] = []
        self.sentOutcomes: list[int] = []
        self._queues: defaultdict[str | None, deque[Message]] = defaultdict(deque)
        self._senders: defaultdict[str | None, list[proton.Link]] = defaultdict(list)
        self._dynamic = itertools.count()
        self._tags = itertools.count()

    def offer(self, address: str | None, message: Message) -> None:
        """
        Queue a message for the receivers attached to C{address}; it goes out
        as soon as one of them has credit.

        @param address: the source address receivers attach to.
        @param message: the message.
        """
        self._queues[address].append(message)
        self._transmit(address)
        self.flush()

    def queued(self, address: str | None) -> int:
        """
        @param address: a source address.
        @return: how many offered messages still wait for credit there.
        """
        return len(self._queues[address])

    def _transmit(self, address: str | None) -> None:
        queue = self._queues[address]
        for link in self._senders[address]:
            while queue and link.credit > 0 and not link.state & Endpoint.LOCAL_CLOSED:
                delivery = link.delivery(str(next(self._tags)))
                link.send(queue.popleft().encode())
                link.advance()
                if link.snd_settle_mode == link.SND_SETTLED:
                    delivery.settle()

    def on_link_remote_open(self, event: Event) -> None:
        """
        Attach the link the client asked for, or refuse it.

        @param event: proton's event.
        """
        link = eventLink(event)
        if link.state & Endpoint.LOCAL_ACTIVE:
            return
        remote = link.remote_source if link.is_sender else link.remote_target
        refused = self.refuseLinks.get(remote.address or "")
        if refused is not None:
            link.open()
            link.condition = Condition(*refused)
            link.close()
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        if link.is_sender and link.remote_source.dynamic:
            link.source.address = f"dynamic-{next(self._dynamic)}"
        link.open()
        if link.is_sender:
            address = link.source.address
            self._senders[address].append(link)
            self._transmit(address)
        else:
            link.flow(self.credit)

    def on_link_remote_close(self, event: Event) -> None:
        """
        Forget a detached sending link.

        @param event: proton's event.
        """
        link = eventLink(event)
        if link.is_sender:
            senders = self._senders[link.source.address]
            if link in senders:
                senders.remove(link)

    def on_link_flow(self, event: Event) -> None:
        """
        Send queued messages on new credit.

        @param event: proton's event.
        """
        link = eventLink(event)
        if link.is_sender:
            self._transmit(link.source.address)

    def on_delivery(self, event: Event) -> None:
        """
        Record and settle a received message, or note the client's outcome for
        a sent one.

        @param event: proton's event.
        """
        delivery = eventDelivery(event)
        link = delivery.link
        if link.is_sender:
            if delivery.settled or delivery.remote_state:
                self.sentOutcomes.append(delivery.remote_state)
                delivery.settle()
            return
        data = self.reader.read(delivery)
        if data is None:
            return
        message = decodeMessage(data)
        address = link.target.address or message.address
        self.received.append((address, message))
        link.flow(1)
        if delivery.settled:
            delivery.settle()
            return
        outcome = self.outcome(address, message)
        if outcome is None:
            self.unsettled.append(delivery)
            return
        if outcome == Disposition.REJECTED:
            delivery.local.condition = Condition(
                "amqp:precondition-failed", "rejected by the test peer"
            )
        elif outcome == Disposition.MODIFIED:
            delivery.local.failed = True
        delivery.update(outcome)
        delivery.settle()
