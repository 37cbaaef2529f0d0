"""
The ways to send, and the ways to settle a received message.

Run ``twistd -n amqp-listen`` first, then ``python docs/examples/outcomes.py``
(or give a client endpoint string as the first argument).
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory

from amqptx import AMQPConnection, MessageRejected


async def sending(connection):
    """
    Send four messages to ``outcomes``, and one to nowhere.
    """
    # The connection keeps one sender per address, attached on first use.
    outcome = await connection.send("outcomes", Message(body="one"))
    print("send:", outcome)

    # A sender of its own, sending pre-settled (at most once): the outcome is
    # known as soon as the message has left.
    fast = await connection.sender("outcomes", presettled=True)
    print("pre-settled:", await fast.send(Message(body="two")))
    await fast.close()

    # The anonymous relay: a sender without an address; each message names
    # its own.
    relay = await connection.sender(None)
    print("relay:", await relay.send(Message(address="outcomes", body="three")))
    await relay.send(Message(address="outcomes", body="four"))
    try:
        await relay.send(Message(body="nowhere"))
    except MessageRejected as e:
        print("rejected:", e.condition, "-", e.description)
    await relay.close()


async def settling(connection):
    """
    Receive the messages of ``outcomes`` and settle each in another way.
    """
    receiver = await connection.receiver("outcomes", credit=10)
    for _ in range(4):
        received = await receiver.get()
        body = received.body
        if body == "one":
            received.accept()  # processed: the server forgets it
        elif body == "two":
            received.reject("app:invalid", "not a number")  # dropped
        elif body == "three":
            received.release()  # back to the queue, to be delivered again
        else:
            received.modify(deliveryFailed=True)  # back too, counted as failed
        print(f"{body}: settled")
    for _ in range(2):
        received = await receiver.get()
        print(f"{received.body}: delivered again")
        received.accept()
    await receiver.close()


async def main(reactor, description="amqp:localhost:5672"):
    """
    Connect, send, receive and settle, close.
    """
    endpoint = clientFromString(reactor, description)
    connection = await endpoint.connect(Factory.forProtocol(AMQPConnection))
    await sending(connection)
    await settling(connection)
    await connection.close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
