"""
The benchmark's client on python-qpid-proton's own C{Container}: the
baseline.

C{python -m bench.programs.proton_client MODE --url URL [options]}:

  - C{send}: sends C{--messages} messages of C{--size} bytes to
    C{--address}, as fast as credit allows; at least once (each accepted by
    the peer) or, with C{--presettled}, at most once.  The window opens
    with the first credit and closes when the last outcome arrived (when the
    last message was sent, pre-settled).
  - C{receive}: prints C{{"event": "ready"}} once its receiver (granting
    C{--window} credit) is attached, then receives and accepts
    C{--messages} messages; the window runs from the first to the last.
  - C{request}: request/response through a dynamic reply node, one request
    outstanding at a time: C{--warmup} requests, then C{{"event":
    "measuring"}} and C{--messages} timed ones; the result has the round
    trip times (C{rtts}, seconds).

Each prints C{{"event": "result", ...}} with its measurement window, then
closes the connection and exits (status 1 and a message on standard error on
a failure).  (Workload D's C{connections} mode is the amqptx client's only:
proton's C{select()} loop takes no more than 1,023 sockets.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from proton import Connection, Event, Message
from proton.handlers import MessagingHandler
from proton.reactor import AtMostOnce, Container

from bench.programs._common import (
    ECHO_ADDRESS,
    Window,
    clientArguments,
    emit,
    exitOnTerm,
    fail,
    payload,
)

__all__ = ["Receive", "Request", "Send", "main"]

_PROGRAM = "proton_client"


class _Client(MessagingHandler):
    """
    What the three modes share: the connection, the window, failures.
    """

    def __init__(self, options: Any, prefetch: int) -> None:
        super().__init__(prefetch=prefetch, auto_accept=True, auto_settle=True)
        self.options = options
        self.window = Window()
        self.failed = False
        self.connection: Connection | None = None

    def connect(self, event: Event) -> Connection:
        """
        Connect to the server.
        """
        self.connection = event.container.connect(
            self.options.url, allowed_mechs="ANONYMOUS", reconnect=False
        )
        return self.connection

    def finish(self, **fields: object) -> None:
        """
        Report, and close the connection.
        """
        self.window.stop()
        emit("result", **fields, **self.window.fields())
        assert self.connection is not None
        self.connection.close()

    def abort(self, reason: str) -> None:
        """
        Give up.
        """
        fail(_PROGRAM, reason)
        self.failed = True
        if self.connection is not None:
            self.connection.close()

    def on_transport_error(self, event: Event) -> None:
        """
        The connection failed.
        """
        condition = event.transport.condition if event.transport else None
        self.abort(f"transport error: {condition}")

    def on_link_error(self, event: Event) -> None:
        """
        The peer detached a link with an error.
        """
        self.abort(f"link error: {event.link.remote_condition if event.link else ''}")


class Send(_Client):
    """
    Send messages as fast as credit allows.
    """

    def __init__(self, options: Any) -> None:
        super().__init__(options, prefetch=0)
        self._message = Message(body=payload(options.size))
        self._sent = 0
        self._settled = 0

    def on_start(self, event: Event) -> None:
        """
        Connect, and attach the sender.
        """
        event.container.create_sender(
            self.connect(event),
            self.options.address,
            options=AtMostOnce() if self.options.presettled else None,
        )

    def on_sendable(self, event: Event) -> None:
        """
        Send while there is credit.
        """
        sender = event.sender
        assert sender is not None
        self.window.start()
        total = self.options.messages
        message = self._message
        while sender.credit > 0 and self._sent < total:
            sender.send(message)
            self._sent += 1
        if self.options.presettled and self._sent == total and self._settled == 0:
            self._settled = total
            self.finish(sent=total)

    def on_accepted(self, event: Event) -> None:
        """
        The peer accepted one more message.
        """
        self._settled += 1
        if self._settled == self.options.messages:
            self.finish(sent=self._sent)

    def on_rejected(self, event: Event) -> None:
        """
        The peer rejected a message.
        """
        self.abort("a message was rejected")

    def on_released(self, event: Event) -> None:
        """
        The peer released a message.
        """
        self.abort("a message was released")


class Receive(_Client):
    """
    Receive and accept messages.
    """

    def __init__(self, options: Any) -> None:
        super().__init__(options, prefetch=options.window)
        self._received = 0

    def on_start(self, event: Event) -> None:
        """
        Connect, and attach the receiver.
        """
        event.container.create_receiver(self.connect(event), self.options.address)

    def on_link_opened(self, event: Event) -> None:
        """
        The receiver is attached.
        """
        emit("ready")

    def on_message(self, event: Event) -> None:
        """
        One more message (C{MessagingHandler} accepts it).
        """
        self.window.start()
        self._received += 1
        if self._received == self.options.messages:
            self.finish(received=self._received)


class Request(_Client):
    """
    Request/response, one request outstanding.
    """

    def __init__(self, options: Any) -> None:
        super().__init__(options, prefetch=options.window)
        self._body = payload(options.size)
        self._replyTo: str | None = None
        self._sender: Any = None
        self._outstanding: int | None = None
        self._startedAt = 0.0
        self._done = 0
        self._rtts: list[float] = []

    def on_start(self, event: Event) -> None:
        """
        Connect; attach the request sender and the dynamic reply receiver.
        """
        connection = self.connect(event)
        self._sender = event.container.create_sender(connection, ECHO_ADDRESS)
        event.container.create_receiver(connection, None, dynamic=True)

    def on_link_opened(self, event: Event) -> None:
        """
        A link is attached: the reply receiver has its address.
        """
        link = event.link
        if link is not None and link.is_receiver:
            self._replyTo = link.remote_source.address
            self._next()

    def on_sendable(self, event: Event) -> None:
        """
        The request sender has credit.
        """
        self._next()

    def _next(self) -> None:
        sender = self._sender
        if (
            self._outstanding is not None
            or self._replyTo is None
            or sender is None
            or sender.credit <= 0
        ):
            return
        if self._done == self.options.warmup:
            emit("measuring")
            self.window.start()
        self._outstanding = self._done
        self._startedAt = time.perf_counter()
        sender.send(
            Message(body=self._body, reply_to=self._replyTo, correlation_id=self._done)
        )

    def on_message(self, event: Event) -> None:
        """
        A reply.
        """
        if event.message.correlation_id != self._outstanding:
            self.abort(f"unexpected reply {event.message.correlation_id!r}")
            return
        rtt = time.perf_counter() - self._startedAt
        if self._done >= self.options.warmup:
            self._rtts.append(rtt)
        self._done += 1
        self._outstanding = None
        if self._done == self.options.warmup + self.options.messages:
            self.finish(requests=len(self._rtts), rtts=self._rtts)
        else:
            self._next()


_MODES = {
    "send": Send,
    "receive": Receive,
    "request": Request,
}


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the client.

    @param argv: the arguments, or L{None} for C{sys.argv}.
    @return: the exit status.
    """
    options = clientArguments("python -m bench.programs.proton_client", argv)
    if options.mode not in _MODES:
        fail(_PROGRAM, f"no {options.mode} mode here: see bench.programs.amqptx_client")
        return 2
    client = _MODES[options.mode](options)
    exitOnTerm()
    Container(client).run()
    return 1 if client.failed or client.window.stopped is None else 0


if __name__ == "__main__":
    sys.exit(main())
