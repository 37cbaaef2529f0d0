"""
Two ways to consume (a callback per message, and ``async for``), and a
producer that closes without waiting for its outcomes itself.

Run ``twistd -n amqp-listen`` first, then ``python docs/examples/consumers.py``
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
    Produce on one connection, consume on another.
    """
    endpoint = clientFromString(reactor, description)
    factory = Factory.forProtocol(AMQPConnection)

    # The producer sends without waiting for outcomes, and closes: close()
    # waits (at most settleTimeout=5 seconds) until the server has settled
    # every message sent on the connection.
    producer = await endpoint.connect(factory)
    for number in range(3):
        producer.send("examples-events", Message(body=f"event {number}"))
        producer.send("examples-tasks", Message(body=f"task {number}"))
    await producer.close()
    print("producer: closed, every message settled")

    consumer = await endpoint.connect(factory)

    # A function called with each message as it arrives.
    events = []
    allEvents = defer.Deferred()

    def onEvent(received):
        print("onMessage:", received.body)
        received.accept()
        events.append(received.body)
        if len(events) == 3:
            allEvents.callback(None)

    await consumer.receiver("examples-events", onMessage=onEvent)
    await allEvents

    # A loop over the messages, as they come.
    tasks = await consumer.receiver("examples-tasks")
    async for received in tasks:
        print("async for:", received.body)
        received.accept()
        if received.body == "task 2":
            break
    await tasks.close()
    print("async for: done, receiver closed")

    await consumer.close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
