"""
amqptx with RabbitMQ 3.x and its AMQP 1.0 plugin: a queue, a topic, and
request/response through a reply queue of your own (RabbitMQ 3.x has no
dynamic nodes).

Enable the plugin (``rabbitmq-plugins enable rabbitmq_amqp1_0``), then run
``python docs/examples/rabbitmq.py`` (or give a client endpoint string as the
first argument: ``amqps:rabbit.example.com:user=app:password=secret``).
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory

from amqptx import AMQPConnection, SessionEnded

QUEUE = "/queue/examples"
SERVICE = "/queue/examples-service"
REPLIES = "/queue/examples-replies"


async def respond(connection, requests):
    """
    Answer one request: its body in capitals, to its reply-to address.
    """
    request = await requests.get()
    reply = Message(
        body=request.body.upper(), correlation_id=request.message.correlation_id
    )
    await connection.send(request.message.reply_to, reply)
    request.accept()


async def main(reactor, description="amqp:localhost:5672"):
    """
    A queue, a topic, a request; then what RabbitMQ 3.x cannot do.
    """
    endpoint = clientFromString(reactor, description)
    connection = await endpoint.connect(Factory.forProtocol(AMQPConnection))

    # A queue: /queue/NAME is declared if it does not exist yet.
    outcome = await connection.send(QUEUE, Message(body="order 1"))
    receiver = await connection.receiver(QUEUE)
    message = await receiver.get()
    message.accept()
    print(f"queue: sent {outcome}, received {message.body!r}")

    # A topic: each receiver gets a queue of its own, bound to the amq.topic
    # exchange with its key, wildcards allowed; senders give the key.
    prices = await connection.receiver("/topic/prices.*")
    await connection.send("/topic/prices.eur", Message(body="EUR 1.08"))
    message = await prices.get()
    message.accept()
    print(f"topic: /topic/prices.* received {message.body!r}")

    # Request/response: replies come to a queue named in replyTo.
    requests = await connection.receiver(SERVICE)
    responding = defer.Deferred.fromCoroutine(respond(connection, requests))
    reply = await connection.request(SERVICE, Message(body="ping"), replyTo=REPLIES)
    await responding
    print(f"request: 'ping' -> {reply.body!r} (replies to {REPLIES})")

    await connection.close()

    # Without replyTo, request() attaches a dynamic receiver (a temporary
    # reply queue).  RabbitMQ 3.x has none: it ends the session, and with it
    # every link of the connection (hence a connection of its own here).
    other = await endpoint.connect(Factory.forProtocol(AMQPConnection))
    try:
        await other.receiver(None, dynamic=True)
    except SessionEnded as e:
        print(f"dynamic receiver: {e.condition} ({e.description})")
    await other.close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
