"""
Send a message to a queue, receive it back.

Run ``twistd -n amqp-listen`` first, then ``python docs/examples/first.py``
(or give a client endpoint string as the first argument).
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory

from amqptx import AMQPConnection


async def main(reactor, description="amqp:localhost:5672"):
    """
    Connect, send one message, receive it back, close.
    """
    endpoint = clientFromString(reactor, description)
    connection = await endpoint.connect(Factory.forProtocol(AMQPConnection))
    outcome = await connection.send("examples", Message(body="Hello, world"))
    print("sent:", outcome)

    receiver = await connection.receiver("examples")
    received = await receiver.get()
    print("received:", received.body)
    received.accept()
    await connection.close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
