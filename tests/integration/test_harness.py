# -*- test-case-name: tests.integration.test_harness -*-
# mypy: disable-error-code="no-untyped-call"
"""
Self-tests of the integration test harness: the test PKI and the private
RabbitMQ node.
"""

from __future__ import annotations

import os
import socket
import ssl

from cryptography import x509
from service_identity import (
    CertificateError,
    VerificationError,
)
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.trial.unittest import TestCase

from tests._certs import PKI, sharedPKI
from tests.integration._rabbitmq import (
    AMQP_SASL_HEADER,
    RabbitMQNode,
    _descendants,
    processRunning,
    requireRabbitMQ,
    sharedNode,
)


def _readExactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _memoryHandshake(
    serverCombined: str, caFile: str, serverName: str
) -> ssl.SSLObject:
    """
    Run a TLS handshake between two in-memory endpoints.

    @param serverCombined: The server's key and certificate.
    @param caFile: The authorities the client trusts.
    @param serverName: The name the client expects (host name or IP address).
    @return: The client end, after a successful handshake.
    @raise ssl.SSLError: If the handshake fails.
    """
    serverContext = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serverContext.load_cert_chain(serverCombined)
    clientContext = ssl.create_default_context(cafile=caFile)
    clientIn, clientOut = ssl.MemoryBIO(), ssl.MemoryBIO()
    serverIn, serverOut = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = clientContext.wrap_bio(clientIn, clientOut, server_hostname=serverName)
    server = serverContext.wrap_bio(serverIn, serverOut, server_side=True)
    clientDone = serverDone = False
    for _ in range(10):
        if not clientDone:
            try:
                client.do_handshake()
                clientDone = True
            except ssl.SSLWantReadError:
                pass
        serverIn.write(clientOut.read())
        if not serverDone:
            try:
                server.do_handshake()
                serverDone = True
            except ssl.SSLWantReadError:
                pass
        clientIn.write(serverOut.read())
        if clientDone and serverDone:
            return client
    raise AssertionError("the in-memory TLS handshake did not finish")


class PKITests(TestCase):
    """
    Tests for L{tests._certs}.
    """

    def setUp(self) -> None:
        self.pki: PKI = sharedPKI()

    def _serverCertificate(self) -> x509.Certificate:
        with open(self.pki.serverCert, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    def test_shared(self) -> None:
        """
        L{sharedPKI} returns the same files every time.
        """
        self.assertIs(sharedPKI(), self.pki)
        for path in (self.pki.caCert, self.pki.serverCombined, self.pki.wrongCA):
            self.assertTrue(os.path.isfile(path), path)

    def test_serverIdentity(self) -> None:
        """
        The server certificate is valid for C{localhost}, C{127.0.0.1} and
        C{::1}, and not for another name.
        """
        cert = self._serverCertificate()
        verify_certificate_hostname(cert, "localhost")
        verify_certificate_ip_address(cert, "127.0.0.1")
        verify_certificate_ip_address(cert, "::1")
        self.assertRaises(
            (VerificationError, CertificateError),
            verify_certificate_hostname,
            cert,
            "wrong.example",
        )

    def test_handshakeVerifies(self) -> None:
        """
        A client trusting the test CA completes a TLS handshake with the
        server certificate, by host name and by IP address.
        """
        for name in ("localhost", "127.0.0.1"):
            client = _memoryHandshake(self.pki.serverCombined, self.pki.caCert, name)
            peer = client.getpeercert()
            self.assertIsNotNone(peer)

    def test_wrongCA(self) -> None:
        """
        A client trusting only the unrelated CA rejects the server.
        """
        self.assertRaises(
            ssl.SSLCertVerificationError,
            _memoryHandshake,
            self.pki.serverCombined,
            self.pki.wrongCA,
            "localhost",
        )

    def test_wrongHost(self) -> None:
        """
        The wrong-host certificate is signed by the test CA but fails host
        name verification for C{localhost}.
        """
        with (
            open(self.pki.wrongHostKey, "rb") as k,
            open(self.pki.wrongHostCert, "rb") as c,
        ):
            combined = self.mktemp()
            with open(combined, "wb") as out:
                out.write(k.read() + c.read())
        _memoryHandshake(combined, self.pki.caCert, "wrong.example")
        self.assertRaises(
            ssl.SSLCertVerificationError,
            _memoryHandshake,
            combined,
            self.pki.caCert,
            "localhost",
        )

    def test_twistedLoads(self) -> None:
        """
        Twisted loads the combined PEM files and the CA certificate.
        """
        for path in (self.pki.serverCombined, self.pki.clientCombined):
            with open(path, "rb") as f:
                PrivateCertificate.loadPEM(f.read())
        with open(self.pki.caCert, "rb") as f:
            ca = Certificate.loadPEM(f.read())
        self.assertIn(b"amqptx test CA", ca.getSubject().commonName)


class RabbitMQNodeTests(TestCase):
    """
    Tests for L{RabbitMQNode}, using the node of L{sharedNode}.

    (Trial does not call C{setUpClass}/C{tearDownClass}, hence the
    process-wide node.)
    """

    def setUp(self) -> None:
        self.node = sharedNode()

    def test_shared(self) -> None:
        """
        L{sharedNode} returns the same running node every time.
        """
        self.assertIs(sharedNode(), self.node)
        self.assertTrue(self.node.running)

    def _assertAnswersSASLHeader(self) -> None:
        with socket.create_connection(("127.0.0.1", self.node.port), timeout=10) as s:
            s.sendall(AMQP_SASL_HEADER)
            self.assertEqual(_readExactly(s, 8), AMQP_SASL_HEADER)

    def test_addresses(self) -> None:
        """
        The node has distinct ports and a plain AMQP URL for them.
        """
        node = self.node
        ports = {node.port, node.tlsPort, node.distPort, node.epmdPort}
        self.assertEqual(len(ports), 4)
        self.assertEqual(node.url, f"amqp://127.0.0.1:{node.port}")
        self.assertTrue(node.running)

    def test_saslHeader(self) -> None:
        """
        The AMQP port answers the AMQP SASL protocol header with the same
        header.
        """
        self._assertAnswersSASLHeader()

    def test_tls(self) -> None:
        """
        The TLS port completes a handshake verified against the test CA for
        C{localhost}, and then speaks AMQP.
        """
        context = ssl.create_default_context(cafile=self.node.pki.caCert)
        raw = socket.create_connection(("127.0.0.1", self.node.tlsPort), timeout=10)
        with context.wrap_socket(raw, server_hostname="localhost") as s:
            self.assertIsNotNone(s.version())
            s.sendall(AMQP_SASL_HEADER)
            self.assertEqual(_readExactly(s, 8), AMQP_SASL_HEADER)

    def test_tlsWrongCA(self) -> None:
        """
        A client trusting only the unrelated CA rejects the node.
        """
        context = ssl.create_default_context(cafile=self.node.pki.wrongCA)
        raw = socket.create_connection(("127.0.0.1", self.node.tlsPort), timeout=10)
        with raw:
            self.assertRaises(
                ssl.SSLCertVerificationError,
                context.wrap_socket,
                raw,
                server_hostname="localhost",
            )

    def test_restart(self) -> None:
        """
        L{RabbitMQNode.restart} runs a new broker process on the same ports.
        """
        node = self.node
        before = (node.port, node.tlsPort, node.pid)
        node.restart()
        self.assertEqual((node.port, node.tlsPort), before[:2])
        self.assertNotEqual(node.pid, before[2])
        self.assertTrue(node.pid is not None and processRunning(node.pid))
        self._assertAnswersSASLHeader()


class RabbitMQNodeStopTests(TestCase):
    """
    Tests for L{RabbitMQNode.stop}.
    """

    def setUp(self) -> None:
        requireRabbitMQ()

    def test_stopLeavesNothing(self) -> None:
        """
        After L{RabbitMQNode.stop} (here by leaving the context manager)
        neither the broker, its helpers nor its C{epmd} run, its ports are
        closed and its state directory is gone.
        """
        with RabbitMQNode() as node:
            scriptPid = node.serverScriptPid
            brokerPid = node.pid
            epmdPid = node.epmdPid
            assert scriptPid is not None
            assert brokerPid is not None
            assert epmdPid is not None
            pids = {scriptPid, brokerPid, epmdPid, *_descendants(scriptPid)}
            for pid in pids:
                self.assertTrue(processRunning(pid), pid)
            ports = (node.port, node.tlsPort, node.epmdPort)
            directory = node.directory
            assert directory is not None
        self.assertEqual([pid for pid in pids if processRunning(pid)], [])
        self.assertIsNone(node.pid)
        self.assertIsNone(node.epmdPid)
        self.assertFalse(node.running)
        self.assertFalse(os.path.exists(directory))
        for port in ports:
            self.assertRaises(
                ConnectionRefusedError,
                socket.create_connection,
                ("127.0.0.1", port),
                timeout=10,
            )
        node.stop()
