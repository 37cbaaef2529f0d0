"""
Request/response with ``connection.request()``, and a responder that
iterates over its receiver with ``async for``.

Run ``twistd -n amqp-listen`` first, then ``python docs/examples/request.py``
(or give a client endpoint string as the first argument).
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory

from amqptx import AMQPConnection, RequestTimedOut


async def respond(requests, replies):
    """
    Answer every request that arrives on ``requests``, until that receiver
    is closed.
    """
    async for request in requests:
        reply = Message(
            address=request.message.reply_to,
            correlation_id=request.message.correlation_id,
            body=request.body.upper(),
        )
        await replies.send(reply)
        # Settle the request only once its reply is safely with the server.
        request.accept()
    print("responder: the receiver was closed")


async def main(reactor, description="amqp:localhost:5672"):
    """
    Start a responder, make requests, stop the responder.
    """
    endpoint = clientFromString(reactor, description)
    connection = await endpoint.connect(Factory.forProtocol(AMQPConnection))

    # The responder: a receiver on the service's address, and a sender on
    # the anonymous relay, since each reply goes to its own address.
    requests = await connection.receiver("upper")
    replies = await connection.sender(None)
    responding = defer.Deferred.fromCoroutine(respond(requests, replies))

    # One request at a time...
    reply = await connection.request("upper", Message(body="ping"))
    print("ping ->", reply.body)

    # ...or several at once: each reply finds its request by correlation_id.
    words = ["alpha", "beta", "gamma"]
    answers = await defer.gatherResults(
        [connection.request("upper", Message(body=word)) for word in words]
    )
    print(words, "->", [answer.body for answer in answers])

    # Nobody listens on this address: no reply comes.
    try:
        await connection.request("nobody", Message(body="hello?"), timeout=0.5)
    except RequestTimedOut:
        print("no reply from 'nobody' within 0.5 s")

    await requests.close()  # ends the responder's async for
    await responding
    await connection.close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
