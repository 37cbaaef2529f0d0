"""
Connect with a connection URL over TLS (``amqptx.connect``), trusting the
CA of a PEM file, and optionally presenting a client certificate; send a
message and receive it back.

With a server run as docs/tls-sasl.rst shows::

    python docs/examples/tls_url.py amqps://alice:secret@localhost:5671 certs/ca.pem
    python docs/examples/tls_url.py amqps://localhost:5671 certs/ca.pem \\
        certs/client.pem certs/client.key
"""

import sys

from proton import Message
from twisted.internet import defer, task
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    trustRootFromCertificates,
)

from amqptx import connect


def readFile(path):
    """
    The content of a file, as text.
    """
    with open(path) as f:
        return f.read()


async def main(reactor, url, caFile, certFile=None, keyFile=None):
    """
    Connect, send one message, receive it back, close.
    """
    options = {
        "trustRoot": trustRootFromCertificates([Certificate.loadPEM(readFile(caFile))])
    }
    if certFile is not None:
        options["clientCertificate"] = PrivateCertificate.loadPEM(
            readFile(keyFile) + readFile(certFile)
        )
    connection = await connect(reactor, url, **options)
    outcome = await connection.send("tls-examples", Message(body="Hello from a URL"))
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
