# -*- test-case-name: tests.test_protocol.SendNowTests -*-
"""
What amqptx does with Twisted's socket transports underneath a connection.
"""

from __future__ import annotations

from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import TLSMemoryBIOProtocol

__all__ = ["sendNow", "socketOf", "writeNow"]


def _idle(transport: FileDescriptor) -> bool:
    """
    @return: whether a socket transport is connected, open, and holds
        nothing it was given to send (so that what is sent now goes out in
        order).  Twisted's private attributes, when they are not there,
        count as not idle: Twisted's own way then.
    """
    return bool(
        transport.connected
        and not transport.disconnecting
        and not getattr(transport, "_writeDisconnected", True)
        and transport.offset == len(transport.dataBuffer)
        and not getattr(transport, "_tempDataLen", True)
    )


def writeNow(transport: object, data: bytes) -> None:
    """
    Send bytes now, straight to the socket, when a Twisted TCP transport
    holds nothing else to send; what the socket does not take (or all of
    it, on any other transport) goes through the transport's C{write}, to
    be sent at the reactor's next turn.

    What C{transport.write} and then L{sendNow} would do, without
    registering the socket to write and unregistering it: two C{epoll_ctl}
    system calls and their Python, for every answer.  A send that fails
    (the connection is lost) leaves the bytes to the transport, whose next
    write finds the same and ends the connection.

    @param transport: a protocol's transport.
    @param data: the bytes.
    """
    if isinstance(transport, FileDescriptor) and _idle(transport):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent > 0:
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)  # type: ignore[attr-defined]


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
        and not _idle(transport)
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
