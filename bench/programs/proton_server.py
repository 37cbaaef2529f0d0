"""
The benchmark's server on python-qpid-proton's own C{Container}: the
baseline.

C{python -m bench.programs.proton_server [--port P] [--messages N]
[--window W]} listens on 127.0.0.1 (any free port by default) and prints
C{{"event": "listening", "port": P}}.  Every link it accepts gets C{W} of
credit, topped up as messages arrive (proton's C{MessagingHandler}
prefetch).  Messages are decoded, accepted and dropped; once C{N} of them
have arrived it prints C{{"event": "result", "received": N, ...}} with its
measurement window (from the first message to the C{N}th).  A message to
C{echo} is answered instead: the reply, with the same body and correlation
id, goes to the link attached to its C{reply-to}, a dynamic node this
server made.  It runs until killed.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence

from proton import Endpoint, Event, Message, Sender
from proton.handlers import MessagingHandler
from proton.reactor import Container

from bench.programs._common import (
    ECHO_ADDRESS,
    Window,
    emit,
    exitOnTerm,
    serverArguments,
)
from bench.programs._proton import Listening

__all__ = ["Server", "main"]


class Server(Listening, MessagingHandler):
    """
    Accept and drop messages, or echo them; count them.
    """

    def __init__(self, host: str, port: int, messages: int, window: int) -> None:
        """
        @param host: the address to listen on.
        @param port: the port, 0 for any.
        @param messages: report after this many messages (0: never).
        @param window: the credit each receiving link grants.
        """
        super().__init__(prefetch=window, auto_accept=True, auto_settle=True)
        self._host = host
        self._port = port
        self._expected = messages
        self._received = 0
        self._window = Window()
        self._replyLinks: dict[str, Sender] = {}
        self._dynamic = itertools.count()

    def on_link_remote_open(self, event: Event) -> None:
        """
        Answer a client's attach (before C{MessagingHandler} opens the link):
        the same termini, and a new address for a dynamic source.
        """
        link = event.link
        if link is None or not link.state & Endpoint.LOCAL_UNINIT:
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if isinstance(link, Sender) and link.remote_source.dynamic:
            address = f"dynamic/{next(self._dynamic)}"
            link.source.address = address
            self._replyLinks[address] = link
        link.open()

    def on_message(self, event: Event) -> None:
        """
        Count a message, or answer it; C{MessagingHandler} accepts it.
        """
        link = event.link
        if link is not None and link.target.address == ECHO_ADDRESS:
            self._echo(event.message)
            return
        self._window.start()
        self._received += 1
        if self._received == self._expected:
            self._window.stop()
            emit("result", received=self._received, **self._window.fields())

    def _echo(self, message: Message) -> None:
        replyTo = message.reply_to
        link = self._replyLinks.get(replyTo) if replyTo else None
        if link is None:
            return
        reply = Message(body=message.body, correlation_id=message.correlation_id)
        link.send(reply)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the server until killed.

    @param argv: the arguments, or L{None} for C{sys.argv}.
    @return: the exit status.
    """
    options = serverArguments("python -m bench.programs.proton_server", argv)
    exitOnTerm()
    Container(
        Server(options.host, options.port, options.messages, options.window)
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
