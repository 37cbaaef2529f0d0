"""
AMQ Python's "Creating outgoing connections", the Twisted way.

``main`` runs once the reactor runs (as ``on_start`` does), connects, says
so once the connection is open, and closes it.  It takes a URL or an
endpoint string: run it as
``python docs/examples/porting_connect_twisted.py amqp://127.0.0.1:5672``
or ``... amqp:127.0.0.1:5672`` (without an argument it connects to
``amqp://example.com``).
"""

import sys

from twisted.internet import task
from twisted.internet.endpoints import clientFromString

from amqptx import connect


async def main(reactor, where="amqp://example.com"):
    """
    Connect, then close.
    """
    # A URL, or an endpoint string such as "amqp:example.com:5672".
    connection = await connect(reactor, clientFromString(reactor, where))
    peer = connection.transport.getPeer()
    print(f"open: {peer.host}:{peer.port}")
    await connection.close()


task.react(main, sys.argv[1:])
