"""
The benchmark's server on amqptx: L{amqptx.AMQPProtocol} on an
L{amqptx.AMQPServerEndpoint}, handling proton's events itself.

It behaves as L{bench.programs.proton_server} does, with the same command
line and output: listens on 127.0.0.1, grants each receiving link C{W} of
credit and tops it up as messages arrive, decodes, accepts and drops
messages (reporting once C{N} have arrived), and answers those sent to
C{echo} on their C{reply-to} (a dynamic node it made).  It runs until
killed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from proton import Delivery, Endpoint, Event, Message, Sender
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory

from amqptx import AMQPProtocol, AMQPServerEndpoint
from bench.programs._common import (
    ECHO_ADDRESS,
    Window,
    emit,
    serverArguments,
)
from bench.programs._twisted import listenUntilKilled, runUntilKilled

__all__ = ["BenchProtocol", "Counter", "main"]


class Counter:
    """
    What all connections of the server share: the count of messages, the
    measurement window and the reply links of dynamic nodes.
    """

    def __init__(self, messages: int, window: int) -> None:
        """
        @param messages: report after this many messages (0: never).
        @param window: the credit each receiving link grants.
        """
        self.expected = messages
        self.window = window
        self.received = 0
        self.measured = Window()
        self.replyLinks: dict[str, Sender] = {}
        self.dynamic = itertools.count()

    def arrived(self) -> None:
        """
        One more message arrived.
        """
        self.measured.start()
        self.received += 1
        if self.received == self.expected:
            self.measured.stop()
            emit("result", received=self.received, **self.measured.fields())


class BenchProtocol(AMQPProtocol):
    """
    One client's connection; the protocol is its own event handler.
    """

    def __init__(self, counter: Counter) -> None:
        """
        @param counter: the server's shared state.
        """
        super().__init__(handler=self)
        self._counter = counter

    def on_link_remote_open(self, event: Event) -> None:
        """
        Answer an attach: the same termini, a new address for a dynamic
        source, and credit for a receiving link.
        """
        link = event.link
        if link is None or not link.state & Endpoint.LOCAL_UNINIT:
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if isinstance(link, Sender):
            if link.remote_source.dynamic:
                address = f"dynamic/{next(self._counter.dynamic)}"
                link.source.address = address
                self._counter.replyLinks[address] = link
            link.open()
        else:
            link.open()
            link.flow(self._counter.window)

    def on_delivery(self, event: Event) -> None:
        """
        A message arrived (or the client settled a reply).
        """
        delivery = event.delivery
        assert delivery is not None
        link = delivery.link
        if isinstance(link, Sender):
            if delivery.remote_state or delivery.settled:
                delivery.settle()
            return
        data = self.reader.read(delivery)
        if data is None:
            return
        message = Message()
        message.decode(data)
        if not delivery.settled:
            delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        credit = self._counter.window - link.credit
        if credit > 0:
            link.flow(credit)
        if link.target.address == ECHO_ADDRESS:
            self._echo(message)
        else:
            self._counter.arrived()

    def _echo(self, message: Message) -> None:
        replyTo = message.reply_to
        link = self._counter.replyLinks.get(replyTo) if replyTo else None
        if link is None:
            return
        body = message.body
        if isinstance(body, memoryview):
            # A view into the request's buffers: make the reply own it.
            body = body.tobytes()
        reply = Message(body=body, correlation_id=message.correlation_id)
        reply.send(link)


class _BenchFactory(Factory):
    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    def buildProtocol(self, addr: IAddress | None) -> BenchProtocol:
        protocol = BenchProtocol(self._counter)
        protocol.factory = self
        return protocol


def _serve(reactor: Any, argv: Sequence[str] | None) -> Deferred[None]:
    options = serverArguments("python -m bench.programs.amqptx_server", argv)
    counter = Counter(options.messages, options.window)
    endpoint = AMQPServerEndpoint(reactor, options.port, interface=options.host)
    factory = _BenchFactory(counter)

    return listenUntilKilled(endpoint, factory)


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run the server until killed.

    @param argv: the arguments, or L{None} for C{sys.argv}.
    """
    runUntilKilled(_serve, argv)


if __name__ == "__main__":
    main()
