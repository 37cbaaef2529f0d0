# -*- test-case-name: tests.test_protocol.SendNowTests -*-
"""
What amqptx does with Twisted's socket transports underneath a connection.
"""

from __future__ import annotations

from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import TLSMemoryBIOProtocol

__all__ = ["sendNow", "socketOf"]


def sendNow(transport: object) -> None:
    """
    Have a Twisted TCP transport send what it was given now, instead of at
    the reactor's next turn.

    A transport's C{write} only buffers: the socket is written once the
    reactor next finds it writable, one more turn of the reactor (a poll,
    and the Python around it) between a request read and its answer sent.
    C{doWrite} is what the reactor would call then (C{IWriteDescriptor});
    called here, the bytes leave at once, and the transport stops waiting to
    write if all went (else the reactor writes the rest, as it would have).
    Its result, when not L{None}, says the connection is lost; the transport
    then still waits to write, and the reactor's own C{doWrite} finds the
    same and ends the connection.  A transport that is closing is left to
    the reactor: C{doWrite} then ends the connection and returns what the
    reactor must act on.  TLS and in-memory transports are not file
    descriptors, and keep Twisted's way.

    @param transport: a protocol's transport.
    """
    if (
        isinstance(transport, FileDescriptor)
        and transport.connected
        and not transport.disconnecting
    ):
        transport.doWrite()


def socketOf(transport: object) -> FileDescriptor | None:
    """
    @param transport: a protocol's transport.
    @return: the socket transport it is, or that Twisted's TLS runs on, or
        L{None} (an in-memory transport, TLS started on a TCP transport).
    """
    if isinstance(transport, TLSMemoryBIOProtocol):
        transport = transport.transport
    return transport if isinstance(transport, FileDescriptor) else None
