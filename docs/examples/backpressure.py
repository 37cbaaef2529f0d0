"""
Back-pressure: a producer that waits for room, a bounded send queue, and a
consumer that makes room.

Run ``twistd -n amqp-listen --max-queue-depth 20`` first (a queue then holds
at most 20 messages, and senders get no credit beyond), then
``python docs/examples/backpressure.py`` (or give a client endpoint string as
the first argument).
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory

from amqptx import AMQPConnection, SendQueueFull


async def produce(sender, numbers):
    """
    Send a message per number, never more than the sender's queue takes.

    @return: the Deferreds of the sends.
    """
    outcomes = []
    for number in numbers:
        await sender.whenReady()  # fires at once while there is room
        outcomes.append(sender.send(Message(body=number)))
    return outcomes


async def consume(reactor, receiver, count):
    """
    Receive ``count`` messages, slowly.
    """
    bodies = []
    async for received in receiver:
        bodies.append(received.body)
        received.accept()
        if len(bodies) == count:
            break
        await task.deferLater(reactor, 0.001, lambda: None)
    print(f"consumer: {count} messages, in order: {bodies == list(range(count))}")


async def main(reactor, description="amqp:localhost:5672"):
    """
    Fill a queue, hit the limit, then let a consumer drain it.
    """
    endpoint = clientFromString(reactor, description)
    connection = await endpoint.connect(Factory.forProtocol(AMQPConnection))
    # At most 5 messages wait in this program for credit from the server.
    sender = await connection.sender("examples-jobs", queueLimit=5)

    # Nobody consumes yet: the server takes 20 messages, 5 more wait here.
    outcomes = await produce(sender, range(25))
    await defer.gatherResults(outcomes[:20])
    print("the server holds 20; waiting for credit:", sender.unsettled)

    # A send beyond the limit fails at once.
    try:
        await sender.send(Message(body="one too many"))
    except SendQueueFull as e:
        print("SendQueueFull:", e.description)

    # A consumer makes room; the producer goes on as it can.
    receiver = await connection.receiver("examples-jobs", credit=5)
    consuming = defer.Deferred.fromCoroutine(consume(reactor, receiver, 100))
    await produce(sender, range(25, 100))
    await sender.whenSettled()
    print("producer: every message settled; unsettled:", sender.unsettled)
    await consuming
    await connection.close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
