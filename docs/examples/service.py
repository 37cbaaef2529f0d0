"""
An AMQP connection as a Twisted service: ``AMQPClientService`` connects
when started, reconnects as its policy says, and closes when stopped.

Run ``twistd -n amqp-listen`` first, then ``python docs/examples/service.py``
(or give a client endpoint string as the first argument).  In a ``twistd``
application, give the services a parent (``setServiceParent(application)``)
instead of starting and stopping them by hand.
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString

from amqptx import AMQPClientService, Backoff


async def main(reactor, description="amqp:localhost:5672"):
    """
    Start the service, send and receive through its connection, stop it.
    """
    service = AMQPClientService(
        clientFromString(reactor, description),
        policy=Backoff(maximum=5.0),  # at most 5 seconds between attempts
    )
    service.startService()

    # The open connection, now or once it opens.
    connection = await service.whenConnected()
    # Durable termini: a broker that keeps queues across restarts (RabbitMQ)
    # then declares this one durable.
    sender = await connection.sender("examples-service", durable=True)
    receiver = await connection.receiver("examples-service", durable=True)
    for number in range(3):
        outcome = await sender.send(Message(body=number))
        received = await receiver.get()
        received.accept()
        print(f"sent {number}: {outcome}; received {received.body}")

    # Stopping closes the connection (after the outcomes of what was sent)
    # and stops reconnecting.
    await service.stopService()
    try:
        await service.whenConnected()
    except defer.CancelledError:
        print("stopped: no connection any more")


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
