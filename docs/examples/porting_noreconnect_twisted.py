"""
AMQ Python's "Configuring reconnect", first part, the Twisted way: a
connection that is not made again.

A ``ReconnectingAMQPClientFactory`` with ``policy=False`` makes one
attempt; when it fails, ``whenConnected()`` fails with the reason.  Run it
as ``python docs/examples/porting_noreconnect_twisted.py
amqp://127.0.0.1:5672`` (without an argument it connects to
``amqp://example.com``).
"""

import sys

from twisted.internet import task

from amqptx import (
    AMQPClientEndpoint,
    EndpointConnector,
    ReconnectingAMQPClientFactory,
)


async def main(reactor, url="amqp://example.com"):
    """
    Connect once, then close.
    """
    factory = ReconnectingAMQPClientFactory(policy=False)
    endpoint = AMQPClientEndpoint.fromURL(reactor, url)
    EndpointConnector(endpoint, factory).connect()
    try:
        connection = await factory.whenConnected()
    except Exception as e:
        print("connection failed:", type(e).__name__)
        return
    peer = connection.transport.getPeer()
    print(f"open: {peer.host}:{peer.port}")
    await connection.close()


task.react(main, sys.argv[1:])
