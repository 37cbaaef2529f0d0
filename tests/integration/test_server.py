# -*- test-case-name: tests.integration.test_server -*-
# mypy: disable-error-code="no-untyped-call"
"""
Integration tests: independent clients (proton's C{BlockingConnection}, as a
subprocess) and amqptx clients against amqptx's own server, in this process
and as C{twistd amqp-listen}.
"""

from __future__ import annotations

import signal
import socket
from typing import Any

from proton import Message
from twisted.internet.address import IPv6Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessTerminated
from twisted.trial.unittest import SkipTest

import amqptx
from amqptx import Outcome
from tests._certs import sharedPKI
from tests.integration._peers import (
    ClientResult,
    IntegrationTestCase,
    spawnProtonClient,
    theReactor,
)
from tests.integration._twistd import TwistdTestCase


def _bodies(count: int) -> list[str]:
    return [f"message-{index}" for index in range(count)]


def _trustRoot(caCert: str) -> Any:
    """
    @param caCert: a PEM file of one CA certificate.
    @return: a trust root of that certificate only.
    """
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    with open(caCert, "rb") as f:
        return trustRootFromCertificates([Certificate.loadPEM(f.read())])


class InProcessServerTests(IntegrationTestCase):
    """
    amqptx's server, listening in this process, serves independent and
    amqptx clients.
    """

    def assertClientSucceeded(self, result: ClientResult, bodies: list[str]) -> None:
        """
        Assert that the proton client exited cleanly having received
        C{bodies}.

        @param result: what the client did.
        @param bodies: the bodies it should have received, in order.
        """
        self.assertEqual(result.exitCode, 0, result.stderr)
        self.assertTrue(result.done, result.stderr)
        self.assertEqual(result.bodies, bodies)

    async def test_protonClient(self) -> None:
        """
        The proton client sends 50 messages over C{amqp}, all accepted, and
        receives them back in order, while the server runs on this reactor.
        """
        port, broker = await self.listen("amqp:0:interface=127.0.0.1")
        result = await spawnProtonClient(
            theReactor(), f"amqp://127.0.0.1:{port}", "q", send=50, receive=50
        )
        self.assertClientSucceeded(result, _bodies(50))
        self.assertEqual(list(broker.queue("q").messages), [])

    async def test_protonClientTLS(self) -> None:
        """
        The proton client verifies the server's certificate for C{localhost}
        against the test authority, then sends 50 messages over C{amqps} and
        receives them back in order.
        """
        pki = sharedPKI()
        port, _ = await self.listen(
            "amqps:0:interface=127.0.0.1:"
            f"privateKey={pki.serverKey}:certKey={pki.serverCert}"
        )
        result = await spawnProtonClient(
            theReactor(),
            f"amqps://localhost:{port}",
            "q",
            send=50,
            receive=50,
            ca=pki.caCert,
        )
        self.assertClientSucceeded(result, _bodies(50))

    async def test_protonClientRequestResponse(self) -> None:
        """
        The proton client's requests, sent with the address of a dynamic
        receiver as C{reply-to}, reach an amqptx consumer that answers them
        there.
        """
        port, _ = await self.listen("amqp:0:interface=127.0.0.1")
        service = await self.connect(f"amqp://127.0.0.1:{port}")
        requests = await service.receiver("service", credit=10)

        async def serve() -> None:
            for _ in range(3):
                request = await requests.get()
                reply = Message(
                    body=request.body,
                    correlation_id=request.message.correlation_id,
                )
                outcome = await service.send(request.message.reply_to, reply)
                self.assertEqual(outcome, Outcome.ACCEPTED)
                request.accept()

        serving = Deferred.fromCoroutine(serve())
        result = await spawnProtonClient(
            theReactor(), f"amqp://127.0.0.1:{port}", "service", send=3, request=True
        )
        await serving
        self.assertClientSucceeded(result, _bodies(3))
        self.assertEqual(result.correlationIds, ["0", "1", "2"])

    async def test_ipv6(self) -> None:
        """
        The server listens on the IPv6 loopback address, and an amqptx client
        connects to it with an C{amqp://[::1]:PORT} URL.
        """
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.bind(("::1", 0))
        except OSError as e:
            raise SkipTest(f"no IPv6 loopback: {e}") from None
        port, _ = await self.listen(r"amqp:0:interface=\:\:1")
        connection = await self.connect(f"amqp://[::1]:{port}")
        assert connection.transport is not None
        peer = connection.transport.getPeer()
        assert isinstance(peer, IPv6Address), peer
        self.assertEqual(peer.host, "::1")
        outcomes = await gatherResults(
            [connection.send("v6", Message(body=body)) for body in _bodies(5)]
        )
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * 5)
        receiver = await connection.receiver("v6", autoAccept=True)
        received = [(await receiver.get()).body for _ in range(5)]
        self.assertEqual(received, _bodies(5))
        await connection.close()

    async def test_unsettledGoToNextConsumer(self) -> None:
        """
        Messages a consumer received but had not settled when its connection
        closed go, in order, to the next consumer.
        """
        port, broker = await self.listen("amqp:0:interface=127.0.0.1")
        url = f"amqp://127.0.0.1:{port}"
        producer = await self.connect(url)
        outcomes = await gatherResults(
            [producer.send("work", Message(body=body)) for body in _bodies(5)]
        )
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * 5)

        first = await self.connect(url)
        receiver = await first.receiver("work", credit=10)
        taken = [await receiver.get() for _ in range(5)]
        self.assertEqual([message.body for message in taken], _bodies(5))
        self.assertEqual(list(broker.queue("work").messages), [])
        await first.close()

        second = await self.connect(url)
        receiver = await second.receiver("work", credit=10)
        again = []
        for _ in range(5):
            message = await receiver.get()
            message.accept()
            again.append(message.body)
        self.assertEqual(again, _bodies(5))


class TwistdTests(TwistdTestCase):
    """
    C{twistd amqp-listen} run as a real subprocess.
    """

    async def test_serves(self) -> None:
        """
        C{twistd amqp-listen} serves the proton client, which sends 20
        messages and receives them back; on C{SIGTERM} it shuts down cleanly.
        """
        twistd = await self.startTwistd()
        result = await spawnProtonClient(
            theReactor(), twistd.url, "tq", send=20, receive=20
        )
        self.assertEqual(result.exitCode, 0, result.stderr)
        self.assertEqual(result.bodies, _bodies(20))
        ended = await twistd.signal("TERM")
        output = twistd.output()
        # After a clean shutdown on a signal, twistd kills itself with that
        # signal, as Unix daemons should, rather than exiting with 0.
        assert isinstance(ended, ProcessTerminated), output
        self.assertEqual(ended.signal, signal.SIGTERM, output)
        self.assertIn("Server Shut Down.", output)
        self.assertNotIn("Traceback", output)

    async def test_badListen(self) -> None:
        """
        A bad C{--listen} endpoint makes C{twistd} exit with a non-zero status
        and a one-line error, without a traceback.
        """
        twistd = self.spawnTwistd("--listen", "nonsense:1")
        ended = await twistd.ended
        output = twistd.output()
        assert isinstance(ended, ProcessTerminated), output
        self.assertNotEqual(ended.exitCode, 0, output)
        self.assertIsNone(ended.signal, output)
        self.assertNotIn("Traceback", output)
        errors = [line for line in output.splitlines() if "nonsense:1" in line]
        self.assertEqual(len(errors), 1, output)
        self.assertTrue(
            errors[0].endswith(
                "--listen 'nonsense:1': use an amqp: or amqps: endpoint"
            ),
            errors[0],
        )

    async def test_portInUse(self) -> None:
        """
        A port that cannot be opened stops C{twistd} at start with a non-zero
        status and a one-line message naming the port, without a traceback.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        twistd = self.spawnTwistd("--listen", f"amqp:{port}:interface=127.0.0.1")
        ended = await twistd.ended
        output = twistd.output()
        assert isinstance(ended, ProcessTerminated), output
        self.assertNotEqual(ended.exitCode, 0, output)
        self.assertNotIn("Traceback", output)
        errors = [line for line in output.splitlines() if "Couldn't listen" in line]
        self.assertEqual(len(errors), 1, output)
        self.assertIn(str(port), errors[0])

    async def test_plainAuthentication(self) -> None:
        """
        With C{--auth} and C{--allow-insecure-plain}, the proton client logs
        in with PLAIN over cleartext; a wrong password and no credentials at
        all are refused.
        """
        twistd = await self.startTwistd(
            "--auth", "memory:alice:secret", "--allow-insecure-plain"
        )
        url = twistd.url
        good = await spawnProtonClient(
            theReactor(), url, "aq", send=3, receive=3, user="alice", password="secret"
        )
        self.assertEqual(good.exitCode, 0, good.stderr)
        self.assertEqual(good.bodies, _bodies(3))
        for user, password in [("alice", "wrong"), (None, None)]:
            bad = await spawnProtonClient(
                theReactor(), url, "aq", send=1, user=user, password=password
            )
            self.assertNotEqual(bad.exitCode, 0, bad.stderr)
        self.assertNotIn("wrong", twistd.output())

    async def test_plainOverTLS(self) -> None:
        """
        Over C{amqps}, PLAIN is offered without any option; the amqptx client
        logs in.
        """
        pki = sharedPKI()
        twistd = self.spawnTwistd(
            "--listen",
            f"amqps:0:interface=127.0.0.1:privateKey={pki.serverKey}"
            f":certKey={pki.serverCert}",
            "--auth",
            "memory:alice:secret",
        )
        port = await twistd.listening
        connection = await amqptx.connect(
            theReactor(),
            f"amqps://alice:secret@localhost:{port}",
            trustRoot=_trustRoot(pki.caCert),
        )
        outcome = await connection.send("tls-auth", Message(body="x"))
        self.assertIs(outcome, amqptx.Outcome.ACCEPTED)
        await connection.close()

    async def test_stopClosesConnections(self) -> None:
        """
        On C{SIGTERM} the server closes open connections with
        C{amqp:connection:forced}.
        """
        twistd = await self.startTwistd()
        connection = await amqptx.connect(theReactor(), twistd.url)
        closed = connection.whenClosed()
        ended = twistd.signal("TERM")
        try:
            await closed
        except amqptx.ConnectionClosed as e:
            self.assertEqual(e.condition, "amqp:connection:forced")
        else:
            self.fail("the connection closed without a condition")
        await ended
