# -*- test-case-name: tests.test_endpoints -*-
"""
C{connect()}: from a URL or an endpoint to an open L{AMQPConnection}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory

from ._client import AMQPConnection
from ._endpoints import AMQPClientEndpoint
from ._url import AMQPURL

__all__ = ["connect"]


def connect(
    reactor: object,
    target: str | AMQPURL | IStreamClientEndpoint,
    **options: object,
) -> Deferred[AMQPConnection]:
    """
    Open an AMQP connection.

    @param reactor: the reactor.
    @param target: a connection URL (C{"amqps://user:pw@host"}), an
        L{AMQPURL}, or an amqptx client endpoint (from C{clientFromString},
        say).
    @param options: keyword arguments of L{AMQPClientEndpoint}, with a URL
        only.
    @return: a Deferred that fires with the open L{AMQPConnection}; its
        failures are those of L{AMQPClientEndpoint.connect}.
    @raise ValueError: for a bad URL or option value.
    @raise TypeError: for an unknown option, or options given with an
        endpoint.
    """
    if IStreamClientEndpoint.providedBy(target):
        if options:
            raise TypeError("options go with a URL, not with an endpoint")
        endpoint = target
    else:
        endpoint = AMQPClientEndpoint.fromURL(reactor, target, **options)
    return endpoint.connect(_FACTORY)  # type: ignore[return-value]


# One factory for every connection (it keeps nothing of theirs), quiet:
# Twisted would log "Starting factory" and "Stopping factory" for each.
_FACTORY = Factory.forProtocol(AMQPConnection)
_FACTORY.noisy = False
