# -*- test-case-name: tests.test_client -*-
"""
In-memory fakes for testing code that uses amqptx, without sockets or time.

L{TestPeer} is a scriptable AMQP peer on proton's own engine.  L{connectPair}
connects any two AMQP protocols through Twisted's in-memory transports, and
L{completeConnection} completes a connection attempt an amqptx endpoint made
on a C{MemoryReactor}, so endpoints (TLS included) can be tested in memory
too.  Both return an L{IOPump}: call its C{flush()} to move bytes both ways.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.internet.testing import MemoryReactor
from twisted.test.iosim import (
    ConnectionCompleter,
    IOPump,
    connect,
    makeFakeClient,
    makeFakeServer,
)

from ._engine import ConnectionSettings
from ._interfaces import IAMQPProtocol
from ._peer import TestPeer

__all__ = ["IOPump", "TestPeer", "completeConnection", "connectPair"]


def connectPair(
    server: IAMQPProtocol,
    client: IAMQPProtocol,
    clock: IReactorTime,
    serverSettings: ConnectionSettings | None = None,
    clientSettings: ConnectionSettings | None = None,
) -> IOPump:
    """
    Connect two AMQP protocols in memory and let them open the connection.

    @param server: the protocol of the accepting side.
    @param client: the protocol of the connecting side.
    @param clock: the clock both use for heartbeats (a
        L{twisted.internet.task.Clock}, usually); the pump advances it by
        nothing.
    @param serverSettings: the server's settings; by default a plain server.
    @param clientSettings: the client's settings; by default a plain client
        with SASL ANONYMOUS.
    @return: the pump that moves bytes between them, already flushed once.
    """
    server.configure(serverSettings or ConnectionSettings(role="server"), clock)
    client.configure(
        clientSettings or ConnectionSettings(role="client", mechanisms=("ANONYMOUS",)),
        clock,
    )
    return connect(  # type: ignore[no-any-return]
        server,
        makeFakeServer(server),
        client,
        makeFakeClient(client),
        clock=clock,
    )


def completeConnection(reactor: MemoryReactor) -> IOPump:
    """
    Complete the oldest pending TCP connection attempt on a
    L{MemoryReactor} with the server listening on its port there.

    @param reactor: a L{MemoryReactor} (a C{MemoryReactorClock} usually) on
        which an endpoint connected and another listened.
    @return: the pump between the two protocols, already flushed once.
    @raise LookupError: when no attempt matches a listening port.
    """
    pump = ConnectionCompleter(reactor).succeedOnce()
    if pump is None:
        raise LookupError("no pending connection attempt matches a listener")
    return pump
