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
    factory = Factory.forProtocol(AMQPConnection)
    # A factory per connection: Twisted would log "Starting factory" and
    # "Stopping factory" for every one.
    factory.noisy = False
    return endpoint.connect(factory)  # type: ignore[return-value]
