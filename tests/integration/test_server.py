# -*- test-case-name: tests.integration.test_server -*-
# mypy: disable-error-code="no-untyped-call"
"""
Integration tests: independent clients (proton's C{BlockingConnection}, as a
subprocess) and amqptx clients against amqptx's own server, in this process
and as C{twistd amqp-listen}.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from typing import Any

from proton import Message
from twisted.internet.address import IPv6Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

import amqptx
from amqptx import AMQPConnection, AMQPProtocol, Outcome
from amqptx.broker import Broker
from tests._certs import sharedPKI
from tests.integration._peers import REPOSITORY_ROOT, ClientResult, spawnProtonClient

_TWISTD = "from twisted.scripts.twistd import run; run()"
"""
The program C{python -c} runs to be C{twistd}: C{twisted.scripts.twistd} has
no C{__main__} block, so C{python -m twisted.scripts.twistd} does nothing.
"""

_STARTING = re.compile(rb"starting on (\d+)")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


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


def _ignore(reason: Failure) -> None:
    """
    Swallow a failure (of a cleanup that may find the work already done).
    """


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = (
        REPOSITORY_ROOT if not path else REPOSITORY_ROOT + os.pathsep + path
    )
    return env


@implementer(IProtocolFactory)
class _TrackingFactory:
    """
    Wraps a factory of AMQP protocols and remembers every protocol it built,
    so that a test can wait for the server's side of every connection to end.
    """

    def __init__(self, wrapped: IProtocolFactory) -> None:
        self._wrapped = wrapped
        self.protocols: list[AMQPProtocol] = []

    def doStart(self) -> None:
        self._wrapped.doStart()

    def doStop(self) -> None:
        self._wrapped.doStop()

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        protocol = self._wrapped.buildProtocol(addr)
        if isinstance(protocol, AMQPProtocol):
            self.protocols.append(protocol)
        return protocol

    def whenAllClosed(self) -> Deferred[None]:
        """
        @return: a Deferred that fires once every connection built so far has
            ended, however it ended.
        """
        waiting = [
            protocol.whenClosed().addErrback(_ignore) for protocol in self.protocols
        ]
        return gatherResults(waiting).addCallback(lambda _: None)


class _AMQPServerTestCase(TestCase):
    """
    Base for tests of amqptx's server in this process: every listening port,
    server connection and client connection is closed when the test ends.
    """

    timeout = 120

    async def listen(self, description: str) -> tuple[int, Broker]:
        """
        Serve a new L{Broker} on a server endpoint.

        @param description: the server endpoint string (with port 0).
        @return: the port it listens on, and the broker.
        """
        broker = Broker()
        factory = _TrackingFactory(broker.factory())
        port: IListeningPort = await serverFromString(_reactor(), description).listen(
            factory
        )
        self.addCleanup(factory.whenAllClosed)
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port  # type: ignore[attr-defined]
        return number, broker

    async def connect(self, url: str) -> AMQPConnection:
        """
        Connect an amqptx client, closed when the test ends.

        @param url: the connection URL.
        @return: the open connection.
        """
        connection = await amqptx.connect(_reactor(), url)
        self.addCleanup(lambda: connection.close().addErrback(_ignore))
        return connection

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


class InProcessServerTests(_AMQPServerTestCase):
    """
    amqptx's server, listening in this process, serves independent and
    amqptx clients.
    """

    async def test_protonClient(self) -> None:
        """
        The proton client sends 50 messages over C{amqp}, all accepted, and
        receives them back in order, while the server runs on this reactor.
        """
        port, broker = await self.listen("amqp:0:interface=127.0.0.1")
        result = await spawnProtonClient(
            _reactor(), f"amqp://127.0.0.1:{port}", "q", send=50, receive=50
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
            _reactor(),
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
            _reactor(), f"amqp://127.0.0.1:{port}", "service", send=3, request=True
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


class _TwistdProtocol(ProcessProtocol):
    """
    Collects a C{twistd} process's output, reports the port it listens on
    (from its log's C{starting on PORT} line) and its end.

    @ivar listening: fires with the port number, or fails if the process
        ends first.
    @ivar ended: fires with the exception Twisted reports as the reason the
        process ended: L{ProcessDone} or L{ProcessTerminated}.
    """

    def __init__(self) -> None:
        self.listening: Deferred[int] = Deferred()
        self.ended: Deferred[ProcessDone | ProcessTerminated] = Deferred()
        self.stdout = b""
        self.stderr = b""
        self.running = True

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        if not self.listening.called:
            match = _STARTING.search(self.stdout)
            if match is not None:
                self.listening.callback(int(match.group(1)))

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        if not self.listening.called:
            self.listening.errback(
                RuntimeError(f"twistd ended before listening: {self.output()}")
            )
            # Reported to whoever waited; no one need have.
            self.listening.addErrback(_ignore)
        ended = reason.value
        assert isinstance(ended, (ProcessDone, ProcessTerminated)), reason
        self.ended.callback(ended)

    def output(self) -> str:
        """
        @return: everything the process wrote, standard output then standard
            error.
        """
        return (self.stdout + self.stderr).decode("utf-8", "replace")


class TwistdTests(TestCase):
    """
    C{twistd amqp-listen} run as a real subprocess.
    """

    timeout = 120

    def spawnTwistd(self, *arguments: str) -> _TwistdProtocol:
        """
        Run C{twistd -n amqp-listen} with C{arguments}, in the checkout (so
        that its C{twisted/plugins} is found), killed if still running when
        the test ends.

        @param arguments: the arguments of C{amqp-listen}.
        @return: the process protocol.
        """
        protocol = _TwistdProtocol()
        transport = _reactor().spawnProcess(
            protocol,
            sys.executable,
            [
                sys.executable,
                "-c",
                _TWISTD,
                "--nodaemon",
                "--pidfile=",
                "--logfile=-",
                "amqp-listen",
                *arguments,
            ],
            env=_environment(),
            path=REPOSITORY_ROOT,
        )

        def kill() -> Deferred[ProcessDone | ProcessTerminated] | None:
            if not protocol.running:
                return None
            transport.signalProcess("KILL")
            return protocol.ended

        self.addCleanup(kill)
        return protocol

    async def test_serves(self) -> None:
        """
        C{twistd amqp-listen} serves the proton client, which sends 20
        messages and receives them back; on C{SIGTERM} it shuts down cleanly.
        """
        twistd = self.spawnTwistd("--listen", "amqp:0:interface=127.0.0.1")
        port = await twistd.listening
        result = await spawnProtonClient(
            _reactor(), f"amqp://127.0.0.1:{port}", "tq", send=20, receive=20
        )
        self.assertEqual(result.exitCode, 0, result.stderr)
        self.assertEqual(result.bodies, _bodies(20))
        twistd.transport.signalProcess("TERM")  # type: ignore[union-attr]
        ended = await twistd.ended
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
        twistd = self.spawnTwistd(
            "--listen",
            "amqp:0:interface=127.0.0.1",
            "--auth",
            "memory:alice:secret",
            "--allow-insecure-plain",
        )
        port = await twistd.listening
        url = f"amqp://127.0.0.1:{port}"
        good = await spawnProtonClient(
            _reactor(), url, "aq", send=3, receive=3, user="alice", password="secret"
        )
        self.assertEqual(good.exitCode, 0, good.stderr)
        self.assertEqual(good.bodies, _bodies(3))
        for user, password in [("alice", "wrong"), (None, None)]:
            bad = await spawnProtonClient(
                _reactor(), url, "aq", send=1, user=user, password=password
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
            _reactor(),
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
        twistd = self.spawnTwistd("--listen", "amqp:0:interface=127.0.0.1")
        port = await twistd.listening
        connection = await amqptx.connect(_reactor(), f"amqp://127.0.0.1:{port}")
        closed = connection.whenClosed()
        twistd.transport.signalProcess("TERM")  # type: ignore[union-attr]
        try:
            await closed
        except amqptx.ConnectionClosed as e:
            self.assertEqual(e.condition, "amqp:connection:forced")
        else:
            self.fail("the connection closed without a condition")
        await twistd.ended
