"""
Fail over between servers, with a reconnect policy of your own.

Run two servers (``twistd -n amqp-listen --listen amqp:5672`` and another
on port 5673), then
``python docs/examples/failover.py amqp://localhost:5672 amqp://localhost:5673``.
Stop the server the program is connected to: it goes on with the other one.
"""

import sys

from proton import Message
from twisted.internet import defer, task

from amqptx import (
    AMQPFailoverEndpoint,
    EndpointConnector,
    ReconnectingAMQPClientFactory,
)


class ExampleReconnect:
    """
    A reconnect policy, as in the AMQ Python documentation: 0.1 second
    before the first attempt, then twice as long each time, up to 10 seconds.
    """

    def __init__(self):
        self.delay = 0

    def reset(self):
        """
        Start over: called before a reconnect sequence begins.
        """
        self.delay = 0

    def next(self):
        """
        The delay before the next attempt, in seconds.
        """
        if self.delay == 0:
            self.delay = 0.1
        else:
            self.delay = min(10, 2 * self.delay)
        return self.delay


async def main(reactor, *urls):
    """
    Send a message every 0.1 second to whichever server is up, 100 in all.
    """
    # One round over the URLs per attempt; the factory's policy spaces the
    # rounds.
    endpoint = AMQPFailoverEndpoint.fromURLs(reactor, urls, policy=False)
    factory = ReconnectingAMQPClientFactory(policy=ExampleReconnect())
    EndpointConnector(endpoint, factory).connect()

    connection = await factory.whenConnected()
    sender = await connection.sender("examples-failover")
    outcomes = []
    server = None
    for number in range(100):
        outcomes.append(sender.send(Message(body=number)))
        if factory.connection is not None:
            peer = factory.connection.transport.getPeer()
            if peer.port != server:
                server = peer.port
                print(f"message {number}: sending to port {server}")
        await task.deferLater(reactor, 0.1, lambda: None)

    await defer.gatherResults(outcomes)
    print("all 100 messages accepted")
    await (await factory.whenConnected()).close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
