# -*- test-case-name: tests.integration.test_container_parity -*-
"""
A small broker with queues: a message sent to an address waits in that
address's queue until a receiver attached to it has credit.  Receivers that
ask for a dynamic source get a new queue (C{dynamic-0}, C{dynamic-1} ...).
It stops after C{--stop-after} client connections have closed.
"""

from __future__ import annotations

from collections import deque

from proton import Link, Message

from tests.integration.programs._common import (
    HandlerEvent,
    LoggingHandler,
    containerClass,
    out,
    parser,
)


class Queue:
    """
    One address: its messages and its consumers.
    """

    def __init__(self, dynamic: bool = False) -> None:
        self.dynamic = dynamic
        self.messages: deque[Message] = deque()
        self.consumers: list[Link] = []

    def subscribe(self, consumer: Link) -> None:
        self.consumers.append(consumer)

    def unsubscribe(self, consumer: Link) -> bool:
        """
        @return: whether the queue is done with (dynamic, or empty and
            unused).
        """
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        return not self.consumers and (self.dynamic or not self.messages)

    def publish(self, message: Message) -> None:
        self.messages.append(message)
        self.dispatch()

    def dispatch(self, consumer: Link | None = None) -> None:
        """
        Send queued messages to consumers with credit.
        """
        consumers = [consumer] if consumer is not None else list(self.consumers)
        progress = True
        while self.messages and progress:
            progress = False
            for link in consumers:
                if self.messages and link.credit > 0:
                    link.send(self.messages.popleft())
                    progress = True


class Broker(LoggingHandler):
    """
    Route messages between the queues' producers and consumers.
    """

    def __init__(self, url: str, stopAfter: int) -> None:
        super().__init__()
        self.url = url
        self.stopAfter = stopAfter
        self.closed = 0
        self.queues: dict[str, Queue] = {}
        self.dynamic = 0

    def on_start(self, event: HandlerEvent) -> None:
        self.acceptor = event.container.listen(self.url)
        out("listening")

    def queue(self, address: str, dynamic: bool = False) -> Queue:
        if address not in self.queues:
            self.queues[address] = Queue(dynamic)
        return self.queues[address]

    def on_link_opening(self, event: HandlerEvent) -> None:
        link = event.link
        if link.is_sender:
            if link.remote_source.dynamic:
                address = f"dynamic-{self.dynamic}"
                self.dynamic += 1
                link.source.address = address
                self.queue(address, dynamic=True).subscribe(link)
                out(f"dynamic queue {address}")
            elif link.remote_source.address:
                link.source.address = link.remote_source.address
                self.queue(link.source.address).subscribe(link)
        elif link.remote_target.address:
            link.target.address = link.remote_target.address

    def unsubscribe(self, link: Link) -> None:
        address = link.source.address
        if address in self.queues and self.queues[address].unsubscribe(link):
            del self.queues[address]

    def on_link_closing(self, event: HandlerEvent) -> None:
        if event.link.is_sender:
            self.unsubscribe(event.link)

    def forget(self, connection: object) -> None:
        link = connection.link_head(0)  # type: ignore[attr-defined]
        while link:
            if link.is_sender:
                self.unsubscribe(link)
            link = link.next(0)

    def on_connection_closing(self, event: HandlerEvent) -> None:
        self.forget(event.connection)

    def on_connection_closed(self, event: HandlerEvent) -> None:
        self.closed += 1
        if self.closed == self.stopAfter:
            out("stopping")
            self.acceptor.close()

    def on_disconnected(self, event: HandlerEvent) -> None:
        self.forget(event.connection)

    def on_sendable(self, event: HandlerEvent) -> None:
        self.queue(event.link.source.address).dispatch(event.link)

    def on_message(self, event: HandlerEvent) -> None:
        address = event.link.target.address or event.message.address
        self.queue(address).publish(event.message)


def main() -> None:
    """
    Run it.
    """
    arguments = parser(__doc__ or "")
    arguments.add_argument("--port", type=int, required=True)
    arguments.add_argument("--stop-after", type=int, default=2)
    options = arguments.parse_args()
    Container = containerClass(options.container)
    Container(Broker(f"127.0.0.1:{options.port}", options.stop_after)).run()
    out("done")


if __name__ == "__main__":
    main()
