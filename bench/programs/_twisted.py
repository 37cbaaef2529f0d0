"""
What the benchmark's servers on Twisted share: listen, say where, and run
until killed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import react

from bench.programs._common import emit

__all__ = ["listenUntilKilled", "runUntilKilled"]


def listenUntilKilled(
    endpoint: IStreamServerEndpoint, factory: Factory
) -> Deferred[None]:
    """
    Listen, print C{{"event": "listening", "port": P}}, and never fire.

    @param endpoint: where to listen.
    @param factory: the protocols' factory.
    @return: a Deferred that fires only if listening fails.
    """

    def listening(port: IListeningPort) -> Deferred[None]:
        emit("listening", port=port.getHost().port)  # type: ignore[attr-defined]
        return Deferred()  # until killed

    return endpoint.listen(factory).addCallback(listening)


def runUntilKilled(
    serve: Callable[[Any, Sequence[str]], Deferred[None]],
    argv: Sequence[str] | None,
) -> None:
    """
    Run a server on the reactor until killed.

    @param serve: called with the reactor and the arguments.
    @param argv: the arguments, or L{None} for C{sys.argv}.
    """
    react(serve, [argv if argv is not None else sys.argv[1:]])
