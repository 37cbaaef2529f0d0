"""
What the benchmark's servers on proton's C{Container} share: listen on
start, say where, and offer SASL ANONYMOUS.
"""

from __future__ import annotations

from typing import Any

from bench.programs._common import emit

__all__ = ["BACKLOG", "Listening"]

BACKLOG = 50
"""
The listen backlog of proton's servers here, as amqptx's servers have it.
"""


class Listening:
    """
    A mixin for a C{MessagingHandler} that listens on C{_host} and C{_port}.
    """

    _host: str
    _port: int

    def on_start(self, event: Any) -> None:
        """
        Listen, and say where.
        """
        acceptor = event.container.acceptor(self._host, str(self._port))
        # proton listens with a backlog of 10: with 50 clients connecting at
        # once (workload D) the accept queue overflows and the kernel drops
        # or resets connections.  The same backlog as amqptx's servers
        # (Twisted's default, 50); listen() again only changes the backlog.
        acceptor._selectable.listen(BACKLOG)
        # The listening socket, to learn the port it was given.
        emit("listening", port=acceptor._selectable.getsockname()[1])

    def on_connection_bound(self, event: Any) -> None:
        """
        Offer SASL ANONYMOUS to each new client.
        """
        transport = event.transport
        if transport is not None:
            transport.sasl().allowed_mechs("ANONYMOUS")
