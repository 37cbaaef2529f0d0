# -*- test-case-name: tests.integration.test_peers -*-
# mypy: disable-error-code="no-untyped-call"
"""
Tests for the independent proton peers: the proton client against the
proton server, both as subprocesses.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess
from twisted.trial.unittest import TestCase

from tests._certs import sharedPKI
from tests.integration._peers import (
    ClientResult,
    ProtonServer,
    freePort,
    runProtonClient,
    spawnProtonClient,
)


def _reactor() -> IReactorProcess:
    from twisted.internet import reactor

    return cast(IReactorProcess, reactor)


def _bodies(count: int) -> list[str]:
    return [f"message-{index}" for index in range(count)]


class ProtonPeersTests(TestCase):
    """
    The proton client and server talk to each other.
    """

    def startServer(self, server: ProtonServer) -> ProtonServer:
        """
        Start C{server} and stop it when the test ends.
        """
        server.start()
        self.addCleanup(server.stop)
        return server

    def assertSucceeded(self, result: ClientResult, bodies: list[str]) -> None:
        """
        Assert that the client exited cleanly having received C{bodies}.
        """
        self.assertEqual(result.exitCode, 0, result.stderr)
        self.assertEqual(result.bodies, bodies)
        self.assertTrue(result.done)

    def assertFailed(self, result: ClientResult, *expected: str) -> None:
        """
        Assert that the client failed, saying all of C{expected}.
        """
        self.assertEqual(result.exitCode, 1, result.stderr)
        self.assertFalse(result.done)
        for text in expected:
            self.assertIn(text, result.stderr)

    def test_plain(self) -> Deferred[None]:
        """
        Over plain C{amqp}, ten messages sent to an address are received back
        from it, in order.
        """
        server = self.startServer(ProtonServer())
        self.assertEqual(server.url, f"amqp://127.0.0.1:{server.port}")
        return spawnProtonClient(
            _reactor(), server.url, "queue/plain", 10, 10
        ).addCallback(self.assertSucceeded, _bodies(10))

    def test_tls(self) -> Deferred[None]:
        """
        Over C{amqps}, the client verifies the server's certificate for
        C{localhost} against the test authority, then sends and receives.
        """
        pki = sharedPKI()
        server = self.startServer(ProtonServer(tls=pki))
        self.assertEqual(server.url, f"amqps://localhost:{server.port}")
        return spawnProtonClient(
            _reactor(), server.url, "queue/tls", 10, 10, ca=pki.caCert
        ).addCallback(self.assertSucceeded, _bodies(10))

    def test_tlsWrongAuthority(self) -> Deferred[None]:
        """
        The client fails against the C{amqps} server when told to trust an
        authority which did not sign the server certificate.
        """
        pki = sharedPKI()
        server = self.startServer(ProtonServer(tls=pki))
        return spawnProtonClient(
            _reactor(), server.url, "queue/tls", 1, 1, ca=pki.wrongCA, timeout=10
        ).addCallback(self.assertFailed, "certificate verify failed")

    def test_tlsClientCertificate(self) -> None:
        """
        A server requiring client certificates accepts a client presenting
        one signed by the test authority and turns away one presenting none.
        """
        pki = sharedPKI()
        server = self.startServer(ProtonServer(tls=pki, requireClientCertificate=True))
        result = runProtonClient(
            server.url,
            "queue/mutual",
            2,
            2,
            ca=pki.caCert,
            cert=pki.clientCert,
            key=pki.clientKey,
            timeout=10,
        )
        self.assertSucceeded(result, _bodies(2))
        result = runProtonClient(
            server.url, "queue/mutual", 1, 1, ca=pki.caCert, timeout=10
        )
        self.assertFailed(result, "certificate required")

    def test_outcomes(self) -> None:
        """
        The server rejects, releases or modifies messages sent to the
        special C{reject/}, C{release/} and C{modify/} addresses, and
        detaches links to C{detach/} ones; the client reports each as a
        failure.
        """
        server = self.startServer(ProtonServer())
        expectations = {
            "reject/x": [
                "REJECTED",
                "amqp:precondition-failed",
                "rejected by test server",
            ],
            "release/x": ["RELEASED"],
            "modify/x": [
                "MODIFIED",
                "delivery-failed=True",
                "undeliverable-here=True",
            ],
            "detach/x": ["LinkDetached", "amqp:not-found", "no such node"],
        }
        for address, expected in expectations.items():
            result = runProtonClient(server.url, address, 1, 0, timeout=10)
            self.assertFailed(result, *expected)

    def test_requestResponse(self) -> Deferred[None]:
        """
        Requests sent to C{echo} with the address of a dynamic receiver as
        C{reply-to} come back there with their correlation ids.
        """
        server = self.startServer(ProtonServer())

        def check(result: ClientResult) -> None:
            self.assertSucceeded(result, _bodies(3))
            self.assertEqual(result.correlationIds, ["0", "1", "2"])

        d = spawnProtonClient(_reactor(), server.url, "echo", 3, request=True)
        return d.addCallback(check)

    def test_queueOutlivesClients(self) -> None:
        """
        Messages sent by one client stay queued for the next one, and
        messages a client does not take stay queued too.
        """
        server = self.startServer(ProtonServer())
        result = runProtonClient(server.url, "queue/kept", 5, 2, timeout=10)
        self.assertSucceeded(result, _bodies(2))
        result = runProtonClient(server.url, "queue/kept", 0, 3, timeout=10)
        self.assertSucceeded(result, ["message-2", "message-3", "message-4"])

    def test_receiveTimeout(self) -> Deferred[None]:
        """
        The client gives up, failing, when no message arrives in time.
        """
        server = self.startServer(ProtonServer())
        return spawnProtonClient(
            _reactor(), server.url, "queue/empty", 0, 1, timeout=1
        ).addCallback(self.assertFailed, "timed out")

    def test_connectionRefused(self) -> Deferred[None]:
        """
        The client fails when nothing listens at the URL.
        """
        url = f"amqp://127.0.0.1:{freePort()}"
        return spawnProtonClient(
            _reactor(), url, "queue/none", 1, 0, timeout=5
        ).addCallback(self.assertFailed, "ConnectionException")

    def test_stopIsClean(self) -> None:
        """
        The server exits with status 0 on C{SIGTERM}, also with a client
        connected earlier; stopping it again does nothing.
        """
        server = ProtonServer()
        with server:
            result = runProtonClient(server.url, "queue/stop", 1, 1, timeout=10)
            self.assertSucceeded(result, _bodies(1))
        self.assertEqual(server.exitCode, 0, server.stderr())
        server.stop()
        self.assertEqual(server.exitCode, 0)
