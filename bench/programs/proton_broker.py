"""
A broker on python-qpid-proton's own C{Container}, in the style of proton's
example broker: the proton baseline of workloads B and D.

C{python -m bench.programs.proton_broker [--port P]} listens on 127.0.0.1
(any free port by default), prints C{{"event": "listening", "port": P}}
and runs until killed.  An address is a queue, made on first use; a
client's receiving link consumes from it (round robin among consumers,
within their credit), a sending link puts on it; messages are accepted when
they are on their queue, and a consumer's unsettled messages are not kept
(at most once on the consumer's side, as in proton's example).

proton's event loop uses C{select()}, which takes no file descriptor above
1023; this program replaces it with C{poll()} (same semantics, any number of
descriptors), as the issue's measurement of proton at 10,000 connections
did with an epoll selector.
"""

from __future__ import annotations

import select
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from proton import Message, Sender
from proton._io import IO
from proton.handlers import MessagingHandler
from proton.reactor import Container

from bench.programs._common import emit, exitOnTerm, serverArguments

__all__ = ["Broker", "main"]

_READ = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_WRITE = select.POLLOUT | select.POLLHUP | select.POLLERR


def _pollSelect(
    readers: Iterable[Any],
    writers: Iterable[Any],
    errors: Iterable[Any],
    timeout: float | None = None,
) -> tuple[list[Any], list[Any], list[Any]]:
    """
    C{select.select} on C{poll()}, for proton's C{IO.select}.
    """
    poller = select.poll()
    masks: dict[int, int] = {}
    owners: dict[int, Any] = {}
    for mask, group in (
        (select.POLLIN | select.POLLPRI, readers),
        (select.POLLOUT, writers),
    ):
        for selectable in group:
            fd = selectable.fileno()
            owners[fd] = selectable
            masks[fd] = masks.get(fd, 0) | mask
    for fd, mask in masks.items():
        poller.register(fd, mask)
    ready = poller.poll(None if timeout is None else timeout * 1000)
    readable, writable = [], []
    for fd, event in ready:
        if event & _READ and masks[fd] & select.POLLIN:
            readable.append(owners[fd])
        if event & _WRITE and masks[fd] & select.POLLOUT:
            writable.append(owners[fd])
    return readable, writable, []


class _Queue:
    def __init__(self) -> None:
        self.consumers: deque[Sender] = deque()
        self.messages: deque[Message] = deque()

    def dispatch(self) -> None:
        consumers, messages = self.consumers, self.messages
        idle = 0
        while messages and consumers and idle < len(consumers):
            consumer = consumers[0]
            consumers.rotate(-1)
            if consumer.credit > 0:
                consumer.send(messages.popleft())
                idle = 0
            else:
                idle += 1


class Broker(MessagingHandler):
    """
    Queues by address, made on first use.
    """

    def __init__(self, host: str, port: int) -> None:
        super().__init__(auto_accept=True, auto_settle=True)
        self._host = host
        self._port = port
        self._queues: dict[str | None, _Queue] = {}

    def _queue(self, address: str | None) -> _Queue:
        queue = self._queues.get(address)
        if queue is None:
            queue = self._queues[address] = _Queue()
        return queue

    def on_start(self, event: Any) -> None:
        """
        Listen, and say where.
        """
        acceptor = event.container.acceptor(self._host, str(self._port))
        emit("listening", port=acceptor._selectable.getsockname()[1])

    def on_connection_bound(self, event: Any) -> None:
        """
        Offer SASL ANONYMOUS to each new client.
        """
        transport = event.transport
        if transport is not None:
            transport.sasl().allowed_mechs("ANONYMOUS")

    def on_link_opening(self, event: Any) -> None:
        """
        Answer an attach: a consumer joins its queue.
        """
        link: Any = event.link
        if isinstance(link, Sender):
            source: str | None = link.remote_source.address
            link.source.address = source  # type: ignore[assignment]
            self._queue(source).consumers.append(link)
        else:
            link.target.address = link.remote_target.address

    def _unsubscribe(self, link: Any) -> None:
        if isinstance(link, Sender):
            queue = self._queues.get(link.source.address)
            if queue is not None and link in queue.consumers:
                queue.consumers.remove(link)

    def on_link_closing(self, event: Any) -> None:
        """
        A consumer leaves.
        """
        self._unsubscribe(event.link)

    def on_connection_closing(self, event: Any) -> None:
        """
        A client leaves: so do its consumers.
        """
        link = event.connection.link_head(0)
        while link is not None:
            self._unsubscribe(link)
            link = link.next(0)

    def on_disconnected(self, event: Any) -> None:
        """
        A client went away.
        """
        self.on_connection_closing(event)

    def on_sendable(self, event: Any) -> None:
        """
        A consumer has credit.
        """
        self._queue(event.link.source.address).dispatch()

    def on_message(self, event: Any) -> None:
        """
        Put a message on its queue.
        """
        address = event.link.target.address or event.message.address
        queue = self._queue(address)
        queue.messages.append(event.message)
        queue.dispatch()


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the broker until killed.

    @param argv: the arguments, or L{None} for C{sys.argv}.
    @return: the exit status.
    """
    options = serverArguments("python -m bench.programs.proton_broker", argv)
    exitOnTerm()
    IO.select = staticmethod(_pollSelect)  # type: ignore[method-assign]
    Container(Broker(options.host, options.port)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
