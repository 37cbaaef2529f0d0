"""
What the benchmark's servers on proton's C{Container} share: listen on
start, say where, and offer SASL ANONYMOUS.
"""

from __future__ import annotations

from typing import Any

from bench.programs._common import emit

__all__ = ["Listening"]


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
        # The listening socket, to learn the port it was given.
        emit("listening", port=acceptor._selectable.getsockname()[1])

    def on_connection_bound(self, event: Any) -> None:
        """
        Offer SASL ANONYMOUS to each new client.
        """
        transport = event.transport
        if transport is not None:
            transport.sasl().allowed_mechs("ANONYMOUS")
