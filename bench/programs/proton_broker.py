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
1023 and costs time per descriptor at every turn; this program gives it a
selector on C{epoll} instead (proton's C{IO.Selector} interface), as the
issue's measurement of proton at 10,000 connections did.
"""

from __future__ import annotations

import select
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from proton import Message, Sender
from proton._io import IO
from proton.handlers import MessagingHandler
from proton.reactor import Container

from bench.programs._common import exitOnTerm, serverArguments
from bench.programs._proton import Listening

__all__ = ["Broker", "main"]


class _EpollSelector:
    """
    proton's C{IO.Selector} on C{epoll}: the same interface and results,
    without C{select()}'s limit of 1,023 descriptors nor its cost per
    descriptor at every turn.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._byFD: dict[int, Any] = {}
        self._masks: dict[int, int] = {}
        self._timed: set[Any] = set()
        self._all: set[Any] = set()
        self._fds: dict[Any, int] = {}

    @staticmethod
    def _mask(selectable: Any) -> int:
        return (select.EPOLLIN if selectable.reading else 0) | (
            select.EPOLLOUT if selectable.writing else 0
        )

    def _noteDeadline(self, selectable: Any) -> None:
        if selectable.deadline:
            self._timed.add(selectable)
        else:
            self._timed.discard(selectable)

    def add(self, selectable: Any) -> None:
        self._all.add(selectable)
        self.update(selectable)

    def update(self, selectable: Any) -> None:
        fd, mask = selectable.fileno(), self._mask(selectable)
        old = self._fds.get(selectable)
        if old is not None and old != fd:
            self._forget(selectable)
            old = None
        if fd >= 0:
            if old is None:
                self._fds[selectable] = fd
                self._byFD[fd], self._masks[fd] = selectable, mask
                self._epoll.register(fd, mask)
            elif self._masks[fd] != mask:
                self._masks[fd] = mask
                self._epoll.modify(fd, mask)
        self._noteDeadline(selectable)

    def _forget(self, selectable: Any) -> None:
        fd = self._fds.pop(selectable, None)
        if fd is not None:
            del self._byFD[fd], self._masks[fd]
            self._epoll.unregister(fd)

    def remove(self, selectable: Any) -> None:
        self._forget(selectable)
        self._all.discard(selectable)
        self._timed.discard(selectable)

    @property
    def selectables(self) -> int:
        return len(self._all)

    def select(self, timeout: float | None) -> tuple[list[Any], list[Any], list[Any]]:
        now = time.time()
        deadlines = [s.deadline for s in self._timed if s.deadline]
        wait = timeout
        if deadlines:
            due = max(0.0, min(deadlines) - now)
            wait = due if wait is None else min(wait, due)
        events = self._epoll.poll(-1 if wait is None else wait)
        readable, writable = [], []
        for fd, event in events:
            selectable, mask = self._byFD.get(fd), self._masks.get(fd, 0)
            if selectable is None:
                continue
            trouble = event & (select.EPOLLHUP | select.EPOLLERR)
            if mask & select.EPOLLIN and (event & select.EPOLLIN or trouble):
                readable.append(selectable)
            if mask & select.EPOLLOUT and (event & select.EPOLLOUT or trouble):
                writable.append(selectable)
        now = time.time()
        expired = [s for s in self._timed if s.deadline and now > s.deadline]
        return readable, writable, expired


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


class Broker(Listening, MessagingHandler):
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
    IO.Selector = _EpollSelector  # type: ignore[misc,assignment]
    Container(Broker(options.host, options.port)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
