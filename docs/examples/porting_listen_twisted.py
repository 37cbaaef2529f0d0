"""
AMQ Python's "Accepting incoming connections", the Twisted way.

``serverFromString`` listens (on every IPv4 interface, port 5672, unless
given another endpoint string such as ``amqp:5673:interface=127.0.0.1`` or
``amqp:5673:interface=\\:\\:1``); each connection is an ``AMQPProtocol``,
whose ``connectionOpened`` says when it comes in.  Once the first
connection has closed, the program stops listening and ends.
"""

import sys

from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory

from amqptx import AMQPProtocol


class ExampleServer(AMQPProtocol):
    """
    An incoming connection.
    """

    def connectionOpened(self):
        """
        The client's Open arrived and was answered.
        """
        print("new incoming connection")

    def connectionClosed(self, reason):
        """
        The connection is over.
        """
        self.factory.closed.callback(None)


async def main(reactor, description="amqp:5672:interface=0.0.0.0"):
    """
    Listen until the first connection has come and gone.
    """
    factory = Factory.forProtocol(ExampleServer)
    factory.closed = defer.Deferred()
    port = await serverFromString(reactor, description).listen(factory)
    print("listening on", description)
    await factory.closed
    print("connection closed; no longer listening")
    await port.stopListening()


task.react(main, sys.argv[1:])
