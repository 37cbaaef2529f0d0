# ruff: noqa: D101, D102, D107
"""
AMQ Python's "Configuring reconnect", second part, the Twisted way: the
delays between attempts chosen by a policy object.

``ExampleReconnect`` is the policy of ``porting_reconnect_proton.py``,
unchanged; a ``ReconnectingAMQPClientFactory`` takes it as its ``policy``.
Start the program with nothing listening at the URL, then start a server
there: the program connects once the server is up.  Run it as
``python docs/examples/porting_reconnect_twisted.py amqp://127.0.0.1:5672``
(without an argument it connects to ``amqp://example.com``).
"""

import sys

from twisted.internet import task

from amqptx import (
    AMQPClientEndpoint,
    EndpointConnector,
    ReconnectingAMQPClientFactory,
)


class ExampleReconnect:
    def __init__(self):
        self.delay = 0

    def reset(self):
        self.delay = 0

    def next(self):
        if self.delay == 0:
            self.delay = 0.1
        else:
            self.delay = min(10, 2 * self.delay)
        print("next delay:", self.delay)
        return self.delay


async def main(reactor, url="amqp://example.com"):
    """
    Connect, as many times as it takes, then close.
    """
    factory = ReconnectingAMQPClientFactory(policy=ExampleReconnect())
    endpoint = AMQPClientEndpoint.fromURL(reactor, url)
    EndpointConnector(endpoint, factory).connect()
    connection = await factory.whenConnected()
    peer = connection.transport.getPeer()
    print(f"open: {peer.host}:{peer.port}")
    await connection.close()


task.react(main, sys.argv[1:])
