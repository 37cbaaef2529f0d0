"""
AMQ Python's "Configuring failover", the Twisted way.

An ``AMQPFailoverEndpoint`` tries the URLs in turn until one connects; under
a ``ReconnectingAMQPClientFactory`` (which spaces its rounds, as the
container's ``reconnect`` does) give it ``policy=False``.  Run it as
``python docs/examples/porting_failover_twisted.py amqp://127.0.0.1:5672
amqp://127.0.0.1:5673`` (without arguments it connects to
``amqp://alpha.example.com`` or ``amqp://beta.example.com``).
"""

import sys

from twisted.internet import task

from amqptx import (
    AMQPFailoverEndpoint,
    EndpointConnector,
    ReconnectingAMQPClientFactory,
)


async def main(reactor, *urls):
    """
    Connect to one of the URLs, then close.
    """
    if not urls:
        urls = ["amqp://alpha.example.com", "amqp://beta.example.com"]
    endpoint = AMQPFailoverEndpoint.fromURLs(reactor, urls, policy=False)
    factory = ReconnectingAMQPClientFactory()
    EndpointConnector(endpoint, factory).connect()
    connection = await factory.whenConnected()
    peer = connection.transport.getPeer()
    print(f"open: {peer.host}:{peer.port}")
    await connection.close()


task.react(main, sys.argv[1:])
