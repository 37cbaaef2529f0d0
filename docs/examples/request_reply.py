"""
Request/response over one connection: a responder and a requester.

The responder receives requests on the address ``requests`` and answers each
one at its ``reply_to`` address, with the request's ``correlation_id``.  The
requester attaches a dynamic receiver (the server creates a temporary queue
for it), sends its requests with that queue as their ``reply_to``, and reads
the answers.

Run ``twistd -n amqp-listen`` first, then
``python docs/examples/request_reply.py`` (or give a client endpoint string
as the first argument).
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory

from amqptx import AMQPConnection


async def respond(connection):
    """
    Answer every request on ``requests`` until cancelled.
    """
    requests = await connection.receiver("requests")
    # A sender with no address: the anonymous relay.  Each reply names its
    # own destination in its address (the "to" field).
    replies = await connection.sender(None)
    while True:
        request = await requests.get()
        reply = Message(
            address=request.message.reply_to,
            correlation_id=request.message.correlation_id,
            body=request.body.upper(),
        )
        await replies.send(reply)
        # Settle the request only once its reply is safely with the server:
        # if this program stops before, the request goes back to the queue.
        request.accept()


async def main(reactor, description="amqp:localhost:5672"):
    """
    Connect, start the responder, send three requests and print the replies.
    """
    endpoint = clientFromString(reactor, description)
    connection = await endpoint.connect(Factory.forProtocol(AMQPConnection))
    responding = defer.Deferred.fromCoroutine(respond(connection))

    inbox = await connection.receiver(None, dynamic=True)
    print("replies come to:", inbox.address)
    for number, text in enumerate(["ping", "hello", "bye"]):
        request = Message(body=text, reply_to=inbox.address, correlation_id=number)
        await connection.send("requests", request)
        reply = await inbox.get()
        reply.accept()
        print(f"request {number}: {text!r} -> {reply.body!r}", end=" ")
        print(f"(correlation_id {reply.message.correlation_id})")

    responding.cancel()
    await responding.addErrback(lambda failure: failure.trap(defer.CancelledError))
    await connection.close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
