"""
Keep sending while the server goes away and comes back.

Run ``twistd -n amqp-listen``, then ``python docs/examples/reconnect.py``
(or give a client endpoint string, a URL or an ``amqp-failover:`` string as
the first argument, and how many messages to send as the second).  Stop the
server and start it again while the program runs: the sender carries on,
and every message is accepted in the end.
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString

from amqptx import EndpointConnector, ReconnectingAMQPClientFactory


async def followConnections(factory):
    """
    Say when a connection opens and when it is lost, until the application
    closes it.
    """
    while True:
        try:
            connection = await factory.whenConnected()
        except defer.CancelledError:
            return  # the application closed the connection
        peer = connection.transport.getPeer()
        print(f"connected to {peer.host}:{peer.port}")
        try:
            await connection.whenClosed()
        except Exception as e:
            print(f"connection lost ({e}); reconnecting")


async def main(reactor, description="amqp:localhost:5672", count="100"):
    """
    Send numbered messages, one every 0.1 second, through a reconnecting
    factory; wait until every one is accepted, then close.
    """
    count = int(count)
    factory = ReconnectingAMQPClientFactory()  # delays 0, 0.1, 0.2 ... 10 s
    EndpointConnector(clientFromString(reactor, description), factory).connect()
    following = defer.Deferred.fromCoroutine(followConnections(factory))

    connection = await factory.whenConnected()
    sender = await connection.sender("examples-reconnect")
    outcomes = []
    accepted = []
    for number in range(count):
        outcome = sender.send(Message(body=number))
        outcome.addCallback(accepted.append)
        outcomes.append(outcome)
        if number % 10 == 9:
            print(f"sent {number + 1}, accepted {len(accepted)}")
        await task.deferLater(reactor, 0.1, lambda: None)

    await defer.gatherResults(outcomes)
    print(f"all {count} messages accepted")
    connection = await factory.whenConnected()
    await connection.close()
    await following


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
