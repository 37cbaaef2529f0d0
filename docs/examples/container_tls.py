# ruff: noqa: D101, D102, D107
"""
TLS with amqptx's ``Container``: it listens with TLS and sends "Hello TLS!"
to itself, the client checking the server's certificate and name.

The TLS settings are ``amqptx.SSLDomain`` objects (the calls of
``proton.SSLDomain``), or, given ``twisted`` as the fourth argument,
Twisted's TLS options.  Run it as ``python docs/examples/container_tls.py
CA.pem SERVER-CERT.pem SERVER-KEY.pem [twisted]``, with a server
certificate for ``localhost``.
"""

import sys

from proton import Message
from proton.handlers import MessagingHandler
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)

from amqptx import Container, SSLDomain


def protonStyle(ca, cert, key):
    """
    The settings as ``proton.SSLDomain`` takes them.
    """
    server = SSLDomain(SSLDomain.MODE_SERVER)
    server.set_credentials(cert, key, None)
    client = SSLDomain(SSLDomain.MODE_CLIENT)
    client.set_trusted_ca_db(ca)
    client.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    return server, client


def twistedStyle(ca, cert, key):
    """
    The same settings as Twisted's TLS options.
    """
    with open(ca) as f:
        authority = Certificate.loadPEM(f.read())
    with open(key) as k, open(cert) as c:
        server = PrivateCertificate.loadPEM(k.read() + c.read()).options()
    client = optionsForClientTLS(
        "localhost", trustRoot=trustRootFromCertificates([authority])
    )
    return server, client


class HelloTLS(MessagingHandler):
    def __init__(self, server, client):
        super().__init__()
        self.server = server
        self.client = client

    def on_start(self, event):
        self.acceptor = event.container.listen(
            "amqps://127.0.0.1:0", ssl_domain=self.server
        )
        url = f"amqps://localhost:{self.acceptor.port}"
        connection = event.container.connect(url, ssl_domain=self.client)
        event.container.create_sender(connection, "examples")

    def on_sendable(self, event):
        event.sender.send(Message(body="Hello TLS!"))
        event.sender.close()

    def on_message(self, event):
        print(event.message.body)

    def on_accepted(self, event):
        event.connection.close()

    def on_connection_closed(self, event):
        self.acceptor.close()


style = twistedStyle if sys.argv[4:] == ["twisted"] else protonStyle
Container(HelloTLS(*style(*sys.argv[1:4]))).run()
