# -*- test-case-name: tests.integration.test_proton -*-
# mypy: disable-error-code="no-untyped-call"
"""
Integration tests: the amqptx client against an independent AMQP 1.0 peer,
the broker on python-qpid-proton's own C{Container}
(L{tests.integration.proton_server}), run as a subprocess.
"""

from __future__ import annotations

import socket

from proton import Message
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory

import amqptx
from amqptx import AMQPConnection, Outcome
from tests._certs import sharedPKI
from tests.integration._peers import IntegrationTestCase, theReactor


def _bodies(count: int, prefix: str = "message") -> list[str]:
    return [f"{prefix}-{index}" for index in range(count)]


class _ProtonServerTestCase(IntegrationTestCase):
    """
    Base for tests that run the proton server and connect amqptx clients to
    it; every server and connection started is stopped when the test ends.
    """

    async def sendAndReceive(
        self, connection: AMQPConnection, address: str, bodies: list[str]
    ) -> None:
        """
        Send messages with C{bodies} to C{address}, all accepted, then
        receive them back from it in order, accepting each.

        @param connection: an open connection.
        @param address: the address to send to and receive from.
        @param bodies: the message bodies.
        """
        outcomes = await gatherResults(
            [connection.send(address, Message(body=body)) for body in bodies]
        )
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * len(bodies))
        receiver = await connection.receiver(address, credit=50)
        received = []
        for _ in bodies:
            message = await receiver.get()
            received.append(message.body)
            message.accept()
        self.assertEqual(received, bodies)
        await receiver.close()


class ProtonServerAMQPTests(_ProtonServerTestCase):
    """
    The amqptx client against the proton server over plain C{amqp}.
    """

    async def test_sendAndReceive(self) -> None:
        """
        One hundred messages sent to an address are all accepted, then come
        back from it in order; the connection then closes cleanly.
        """
        server = self.startProtonServer()
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{server.port}")
        await self.sendAndReceive(connection, "q", _bodies(100))
        await connection.close()

    async def test_rejected(self) -> None:
        """
        A message the peer rejects fails with L{amqptx.MessageRejected},
        carrying the peer's condition and description.
        """
        server = self.startProtonServer()
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{server.port}")
        error = await self.failureOf(
            connection.send("reject/x", Message(body="no")), amqptx.MessageRejected
        )
        assert isinstance(error, amqptx.MessageRejected)
        self.assertEqual(error.condition, "amqp:precondition-failed")
        self.assertEqual(error.description, "rejected by test server")

    async def test_released(self) -> None:
        """
        A message the peer releases fails with L{amqptx.MessageReleased}.
        """
        server = self.startProtonServer()
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{server.port}")
        await self.failureOf(
            connection.send("release/x", Message(body="no")), amqptx.MessageReleased
        )

    async def test_modified(self) -> None:
        """
        A message the peer settles as I{modified} fails with
        L{amqptx.MessageModified}, carrying the peer's flags.
        """
        server = self.startProtonServer()
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{server.port}")
        error = await self.failureOf(
            connection.send("modify/x", Message(body="no")), amqptx.MessageModified
        )
        assert isinstance(error, amqptx.MessageModified)
        self.assertTrue(error.deliveryFailed)
        self.assertTrue(error.undeliverableHere)

    async def test_outcomesKeepConnection(self) -> None:
        """
        Refused messages leave the connection (and a sender to another
        address) working.
        """
        server = self.startProtonServer()
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{server.port}")
        await self.failureOf(
            connection.send("reject/y", Message(body="no")), amqptx.MessageRejected
        )
        await self.sendAndReceive(connection, "after-reject", _bodies(3))

    async def test_senderDetached(self) -> None:
        """
        A sender the peer refuses fails with L{amqptx.LinkDetached} carrying
        the condition C{amqp:not-found}, and so does a message sent on it;
        the connection stays usable.
        """
        server = self.startProtonServer()
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{server.port}")
        error = await self.failureOf(connection.sender("detach/x"), amqptx.LinkDetached)
        assert isinstance(error, amqptx.LinkDetached)
        self.assertEqual(error.condition, "amqp:not-found")
        error = await self.failureOf(
            connection.send("detach/y", Message(body="no")), amqptx.LinkDetached
        )
        assert isinstance(error, amqptx.LinkDetached)
        self.assertEqual(error.condition, "amqp:not-found")
        await self.sendAndReceive(connection, "after-detach", _bodies(3))

    async def test_receiverDetached(self) -> None:
        """
        A receiver the peer refuses fails with L{amqptx.LinkDetached} carrying
        the condition C{amqp:not-found}.
        """
        server = self.startProtonServer()
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{server.port}")
        error = await self.failureOf(
            connection.receiver("detach/x"), amqptx.LinkDetached
        )
        assert isinstance(error, amqptx.LinkDetached)
        self.assertEqual(error.condition, "amqp:not-found")
        self.assertEqual(error.description, "no such node")

    async def test_requestResponse(self) -> None:
        """
        A request sent to C{echo} with the address of a dynamic receiver as
        its C{reply-to} is answered there, with its correlation id.
        """
        server = self.startProtonServer()
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{server.port}")
        replies = await connection.receiver(None, dynamic=True)
        replyTo = replies.address
        assert replyTo is not None
        self.assertTrue(replyTo.startswith("dynamic/"), replyTo)
        requests = [
            Message(body=f"request-{index}", reply_to=replyTo, correlation_id=cid)
            for index, cid in enumerate(["first", "second"])
        ]
        outcomes = await gatherResults(
            [connection.send("echo", request) for request in requests]
        )
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * 2)
        answers = []
        for _ in requests:
            reply = await replies.get()
            reply.accept()
            answers.append((reply.message.correlation_id, reply.body))
        self.assertEqual(answers, [("first", "request-0"), ("second", "request-1")])

    async def test_connectionRefused(self) -> None:
        """
        Connecting to a port nothing listens on fails with Twisted's
        C{ConnectionRefusedError}.
        """
        # A bound socket that does not listen refuses connections, and no
        # other process can take its port while it is held.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
            held.bind(("127.0.0.1", 0))
            port = held.getsockname()[1]
            endpoint = clientFromString(theReactor(), f"amqp:127.0.0.1:{port}")
            await self.failureOf(
                endpoint.connect(Factory.forProtocol(AMQPConnection)),
                ConnectionRefusedError,
            )


class ProtonServerTLSTests(_ProtonServerTestCase):
    """
    The amqptx client against the proton server over C{amqps}, with the test
    PKI.
    """

    def setUp(self) -> None:
        self.pki = sharedPKI()
        self.server = self.startProtonServer(tls=self.pki)

    async def test_hostName(self) -> None:
        """
        With the test authority as trust root, the client connects to
        C{localhost} over TLS, and sends and receives.
        """
        connection = await self.connectEndpoint(
            f"amqps:localhost:{self.server.port}:trustRoots={self.pki.caCert}"
        )
        await self.sendAndReceive(connection, "tls", _bodies(10))
        await connection.close()

    async def test_ipAddress(self) -> None:
        """
        Connecting to C{127.0.0.1} verifies the certificate's IP address
        subject alternative name.
        """
        connection = await self.connectEndpoint(
            f"amqps:127.0.0.1:{self.server.port}:trustRoots={self.pki.caCert}"
        )
        await self.sendAndReceive(connection, "tls-ip", _bodies(3))

    async def test_wrongAuthority(self) -> None:
        """
        A server certificate not signed by the trusted authority fails the
        connection attempt with L{amqptx.TLSError}.
        """
        endpoint = clientFromString(
            theReactor(),
            f"amqps:localhost:{self.server.port}:trustRoots={self.pki.wrongCA}",
        )
        await self.failureOf(
            endpoint.connect(Factory.forProtocol(AMQPConnection)), amqptx.TLSError
        )


class ProtonServerClientCertificateTests(_ProtonServerTestCase):
    """
    The amqptx client presents a certificate to a proton server that requires
    one, and authenticates with SASL EXTERNAL.
    """

    def setUp(self) -> None:
        self.pki = sharedPKI()
        self.server = self.startProtonServer(
            tls=self.pki, requireClientCertificate=True
        )

    async def test_external(self) -> None:
        """
        With a client certificate and no user, the client uses EXTERNAL by
        default, and sends and receives.
        """
        connection = await self.connectEndpoint(
            f"amqps:localhost:{self.server.port}:trustRoots={self.pki.caCert}"
            f":certificate={self.pki.clientCert}:privateKey={self.pki.clientKey}"
        )
        self.assertEqual(connection.settings.mechanisms, ("EXTERNAL",))
        await self.sendAndReceive(connection, "external", _bodies(3))

    async def test_noCertificate(self) -> None:
        """
        Without a certificate the server ends the TLS handshake, and the
        connection attempt fails with L{amqptx.TLSError} or, when the server's
        refusal comes after the handshake, with L{amqptx.AMQPConnectionLost}.
        """
        endpoint = clientFromString(
            theReactor(),
            f"amqps:localhost:{self.server.port}:trustRoots={self.pki.caCert}",
        )
        await self.failureOf(
            endpoint.connect(Factory.forProtocol(AMQPConnection)),
            amqptx.TLSError,
            amqptx.AMQPConnectionLost,
        )
