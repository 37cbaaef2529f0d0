"""
Connect with a client endpoint string (``amqps:``, a CA to trust, and
credentials or a client certificate), then send a message and receive it
back; or say why the connection could not be made.

Make the certificates and run a server with TLS as docs/tls-sasl.rst shows,
then, for example, ``python docs/examples/tls_client.py
amqps:localhost:5671:trustRoots=certs/ca.pem``.  The page gives other
servers and endpoint strings to try.
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory

from amqptx import AMQPConnection, AuthenticationFailed, TLSError


async def main(reactor, description):
    """
    Connect, send one message, receive it back, close.
    """
    try:
        endpoint = clientFromString(reactor, description)
    except ValueError as e:
        print("not even tried:", e)
        return
    try:
        connection = await endpoint.connect(Factory.forProtocol(AMQPConnection))
    except TLSError as e:
        print("TLS failed:", e)
        return
    except AuthenticationFailed as e:
        print("login refused:", e.condition)
        return
    outcome = await connection.send("tls-examples", Message(body="Hello over TLS"))
    print("sent:", outcome)
    receiver = await connection.receiver("tls-examples")
    received = await receiver.get()
    print("received:", received.body)
    received.accept()
    await connection.close()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, *sys.argv[1:]))
    )
