# -*- test-case-name: tests.integration.test_cli -*-
"""
The C{amqptx} command-line tool, run as C{python -m amqptx} subprocesses
against amqptx's server listening in this process, against C{twistd
amqp-listen} and against RabbitMQ: its output and its exit statuses.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass, replace
from typing import Any

from proton import Message
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    maybeDeferred,
)
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
)
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

import amqptx
from amqptx import AMQPConnection, AMQPServerEndpoint
from amqptx._cli import (
    EXIT_AUTHENTICATION,
    EXIT_CONNECTION,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
)
from amqptx._engine import ConnectionSettings
from amqptx._sasl import SASLConfig
from amqptx.broker import Broker, BrokerConfig, BrokerProtocol
from tests._certs import sharedPKI
from tests.integration._rabbitmq import requireRabbitMQ, sharedNode
from tests.integration._twistd import Twistd, TwistdTestCase

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PASSWORD = "correct-horse-battery"


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@dataclass(frozen=True)
class Result:
    """
    What a run of C{amqptx} did.

    @ivar code: its exit status.
    @ivar out: its standard output.
    @ivar err: its standard error.
    """

    code: int
    out: bytes
    err: str

    @property
    def lines(self) -> list[str]:
        """
        The lines of standard output.
        """
        return self.out.decode("utf-8").splitlines()

    @property
    def errors(self) -> list[str]:
        """
        The lines of standard error.
        """
        return self.err.splitlines()


class _Run(ProcessProtocol):
    """
    Collects a subprocess's output and exit status.
    """

    def __init__(self) -> None:
        self.ended: Deferred[Result] = Deferred()
        self.output: Deferred[None] = Deferred()
        self.running = True
        self._out = b""
        self._err = b""

    def outReceived(self, data: bytes) -> None:
        self._out += data
        if not self.output.called:
            self.output.callback(None)

    def errReceived(self, data: bytes) -> None:
        self._err += data

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        value = reason.value
        if isinstance(value, ProcessTerminated):
            code = value.exitCode if value.exitCode is not None else -1
        else:
            assert isinstance(value, ProcessDone)
            code = 0
        if not self.output.called:
            self.output.callback(None)
        self.ended.callback(Result(code, self._out, self._err.decode("utf-8")))


@implementer(IProtocolFactory)
class _TrackingFactory:
    """
    A broker's factory that remembers its connections, so that a test can
    wait for the server's side of each to end.
    """

    def __init__(self, broker: Broker, properties: dict[str, object] | None) -> None:
        self.broker = broker
        self.properties = properties
        self.built: list[BrokerProtocol] = []

    def doStart(self) -> None:
        pass

    def doStop(self) -> None:
        pass

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        protocol = _ServerProtocol(self.broker, self.properties)
        self.built.append(protocol)
        return protocol

    def whenAllClosed(self) -> Deferred[list[None]]:
        return gatherResults(
            [p.whenClosed().addErrback(lambda _: None) for p in self.built]
        )


class _ServerProtocol(BrokerProtocol):
    """
    A broker connection whose Open carries properties (a product and a
    version, say).
    """

    def __init__(self, broker: Broker, properties: dict[str, object] | None) -> None:
        super().__init__(broker)
        self._properties = properties

    def configure(self, settings: ConnectionSettings, clock: Any) -> None:
        if self._properties is not None:
            settings = replace(settings, properties=self._properties)
        super().configure(settings, clock)


class _Runs(TestCase):
    """
    Base of test cases that run C{amqptx} in a subprocess.
    """

    def spawn(self, run: _Run, *arguments: str, usePTY: bool = False) -> Any:
        """
        Start C{python -m amqptx ARGUMENTS} in the checkout; the process is
        killed if it still runs when the test ends.

        @param run: the protocol of the process.
        @param usePTY: run it on a pseudo-terminal (then standard output and
            standard error are one).
        @return: the process.
        """
        path = os.environ.get("PYTHONPATH")
        environment = dict(
            os.environ,
            PYTHONPATH=_ROOT if not path else _ROOT + os.pathsep + path,
        )
        process = _reactor().spawnProcess(
            run,
            sys.executable,
            [sys.executable, "-m", "amqptx", *arguments],
            env=environment,
            path=_ROOT,
            usePTY=usePTY,
        )

        def kill() -> Deferred[Result] | None:
            if not run.running:
                return None
            process.signalProcess("KILL")
            return run.ended

        self.addCleanup(kill)
        return process

    async def amqptx(self, *arguments: str) -> Result:
        """
        Run C{python -m amqptx ARGUMENTS} (see L{spawn}).

        @return: what it did.
        """
        run = _Run()
        self.spawn(run, *arguments)
        return await run.ended

    def assertOneError(self, result: Result, code: int, start: str) -> str:
        """
        Assert that a run failed with C{code}, printing nothing on standard
        output and one line on standard error, which starts with
        C{amqptx: error: } and C{start}.

        @return: the line.
        """
        self.assertEqual(result.code, code, result.err)
        self.assertEqual(result.out, b"")
        self.assertEqual(len(result.errors), 1, result.err)
        line = result.errors[0]
        self.assertTrue(line.startswith(f"amqptx: error: {start}"), line)
        self.assertNotIn("Traceback", result.err)
        return line


class CommandLineTests(_Runs):
    """
    Each command, its output and its exit status.
    """

    timeout = 60

    async def listen(
        self,
        config: BrokerConfig | None = None,
        properties: dict[str, object] | None = None,
    ) -> tuple[int, Broker]:
        """
        Serve a new broker on a free loopback port, with
        C{serverFromString(reactor, "amqp:0:interface=127.0.0.1")}.

        @param config: the broker's configuration.
        @param properties: the properties of the server's Open.
        @return: the port and the broker.
        """
        broker = Broker(config or BrokerConfig())
        factory = _TrackingFactory(broker, properties)
        port: IListeningPort = await serverFromString(
            _reactor(), "amqp:0:interface=127.0.0.1"
        ).listen(factory)
        self.addCleanup(factory.whenAllClosed)
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port  # type: ignore[attr-defined]
        return number, broker

    async def listenTLS(self) -> int:
        """
        Serve a broker over TLS (the test PKI's C{localhost} certificate),
        with SASL PLAIN for C{guest} and L{_PASSWORD}.

        @return: the port.
        """
        pki = sharedPKI()
        with open(pki.serverCert, "rb") as cert, open(pki.serverKey, "rb") as key:
            certificate = PrivateCertificate.loadPEM(cert.read() + key.read())
        endpoint = AMQPServerEndpoint(
            _reactor(),
            0,
            interface="127.0.0.1",
            tlsOptions=CertificateOptions(
                privateKey=certificate.privateKey.original,
                certificate=certificate.original,
            ),
            sasl=SASLConfig(
                checkers=(
                    InMemoryUsernamePasswordDatabaseDontUse(
                        guest=_PASSWORD.encode("ascii")
                    ),
                ),
                failureDelay=0,
            ),
        )
        factory = _TrackingFactory(Broker(), None)
        port: IListeningPort = await endpoint.listen(factory)
        self.addCleanup(factory.whenAllClosed)
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port  # type: ignore[attr-defined]
        return number

    async def closedPort(self) -> int:
        """
        @return: a loopback port nothing listens on (one that did a moment
            ago).
        """
        port: IListeningPort = await serverFromString(
            _reactor(), "tcp:0:interface=127.0.0.1"
        ).listen(Factory())
        number: int = port.getHost().port  # type: ignore[attr-defined]
        await maybeDeferred(port.stopListening)
        return number

    # --- send and receive ------------------------------------------------------

    async def test_roundTrip(self) -> None:
        """
        C{send --count} sends numbered messages and prints each outcome;
        C{receive --count} prints their bodies, in order.
        """
        port, _ = await self.listen()
        url = f"amqp://127.0.0.1:{port}/greetings"
        sent = await self.amqptx("send", url, "-m", "hello {n}", "--count", "3")
        self.assertEqual(sent.code, 0, sent.err)
        self.assertEqual(
            sent.lines,
            ["message 1: accepted", "message 2: accepted", "message 3: accepted"],
        )
        self.assertEqual(sent.err, "")
        received = await self.amqptx("receive", url, "--count", "3", "--timeout", "10")
        self.assertEqual(received.code, 0, received.err)
        self.assertEqual(received.lines, ["hello 1", "hello 2", "hello 3"])
        self.assertEqual(received.err, "")

    async def test_json(self) -> None:
        """
        C{receive --json} prints one JSON object per message: body,
        properties, application properties, delivery count and header.
        """
        port, _ = await self.listen()
        url = f"amqp://127.0.0.1:{port}/orders"
        sent = await self.amqptx(
            "send",
            url,
            "-m",
            "order {n}",
            "--count",
            "2",
            "--property",
            "subject=orders",
            "--property",
            "message-id=id-{n}",
            "--property",
            "content-type=text/plain",
            "--property",
            "ttl=600",
            "--header",
            "sequence={n}",
            "--header",
            "colour=blue",
            "--durable",
            "--quiet",
        )
        self.assertEqual((sent.code, sent.lines), (0, ["2 messages: 2 accepted"]))
        received = await self.amqptx("receive", url, "--count", "2", "--json")
        self.assertEqual(received.code, 0, received.err)
        records = [json.loads(line) for line in received.lines]
        self.assertEqual(
            records,
            [
                {
                    "body": f"order {n}",
                    "properties": {
                        "message-id": f"id-{n}",
                        "subject": "orders",
                        "content-type": "text/plain",
                    },
                    "application-properties": {"sequence": str(n), "colour": "blue"},
                    "delivery-count": 0,
                    "durable": True,
                    "priority": 4,
                    "ttl": 600.0,
                }
                for n in (1, 2)
            ],
        )

    async def test_bytes(self) -> None:
        """
        C{send --file} sends the file's bytes; C{receive} prints them as they
        are, and C{--json} in base64 when they are not UTF-8.
        """
        port, _ = await self.listen()
        url = f"amqp://127.0.0.1:{port}/blobs"
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"\x00\xff{n}")
        sent = await self.amqptx("send", url, "--file", path, "--count", "2")
        self.assertEqual(sent.code, 0, sent.err)
        raw = await self.amqptx("receive", url)
        self.assertEqual((raw.code, raw.out), (0, b"\x00\xff{n}\n"))
        record = await self.amqptx("receive", url, "--json")
        self.assertEqual(
            json.loads(record.out)["body"], {"base64": "AP97bn0="}, record.err
        )

    async def test_presettled(self) -> None:
        """
        C{send --presettled} gets no outcomes: the messages are just sent.
        """
        port, _ = await self.listen()
        url = f"amqp://127.0.0.1:{port}/fire-and-forget"
        sent = await self.amqptx("send", url, "-m", "x", "-c", "3", "--presettled")
        self.assertEqual(
            (sent.code, sent.lines),
            (0, ["message 1: sent", "message 2: sent", "message 3: sent"]),
        )
        received = await self.amqptx("receive", url, "--count", "3")
        self.assertEqual(received.lines, ["x", "x", "x"])

    async def test_ackRelease(self) -> None:
        """
        C{receive --ack release} prints the message and gives it back: it
        stays in the queue.
        """
        port, _ = await self.listen()
        url = f"amqp://127.0.0.1:{port}/work"
        await self.amqptx("send", url, "-m", "keep me")
        released = await self.amqptx("receive", url, "--ack", "release")
        self.assertEqual((released.code, released.lines), (0, ["keep me"]))
        again = await self.amqptx("receive", url, "--timeout", "10")
        self.assertEqual((again.code, again.lines), (0, ["keep me"]), again.err)

    async def test_ackReject(self) -> None:
        """
        C{receive --ack reject} takes the message out of the queue (to no
        dead-letter address here).
        """
        port, _ = await self.listen()
        url = f"amqp://127.0.0.1:{port}/work"
        await self.amqptx("send", url, "-m", "bad")
        rejected = await self.amqptx("receive", url, "--ack", "reject")
        self.assertEqual((rejected.code, rejected.lines), (0, ["bad"]))
        empty = await self.amqptx("receive", url, "--timeout", "0.5")
        self.assertOneError(empty, EXIT_TIMEOUT, "received 0 of 1 message within 0.5 s")

    async def test_receiveTimeout(self) -> None:
        """
        With fewer messages than C{--count} before C{--timeout}, C{receive}
        prints those that came and exits with 2; with C{--count 0} it
        receives until the timeout and exits with 0.
        """
        port, _ = await self.listen()
        url = f"amqp://127.0.0.1:{port}/sparse"
        await self.amqptx("send", url, "-m", "only one")
        short = await self.amqptx("receive", url, "--count", "2", "--timeout", "1")
        self.assertEqual(short.code, 2)
        self.assertEqual(short.lines, ["only one"])
        self.assertEqual(
            short.errors, ["amqptx: error: received 1 of 2 messages within 1 s"]
        )
        await self.amqptx("send", url, "-m", "more", "-c", "2")
        drained = await self.amqptx("receive", url, "--count", "0", "--timeout", "1")
        self.assertEqual((drained.code, drained.lines), (0, ["more", "more"]))

    async def test_rejected(self) -> None:
        """
        A message the server rejects: its line says why, and C{send} exits
        with L{EXIT_REJECTED}.
        """
        port, _ = await self.listen(BrokerConfig(maxMessageSize=200))
        url = f"amqp://127.0.0.1:{port}/small"
        sent = await self.amqptx("send", url, "-m", "x" * 300, "-c", "2")
        self.assertEqual(sent.code, EXIT_REJECTED)
        self.assertEqual(len(sent.lines), 2)
        for line in sent.lines:
            self.assertRegex(
                line, r"^message \d: rejected \(amqp:link:message-size-exceeded: "
            )
        self.assertEqual(sent.errors, ["amqptx: error: 2 of 2 messages not accepted"])

    async def test_reconnect(self) -> None:
        """
        With C{--reconnect}, C{send} waits for the server to come up, saying
        so on standard error.
        """
        number = await self.closedPort()
        running = Deferred.fromCoroutine(
            self.amqptx(
                "send", f"amqp://127.0.0.1:{number}/later", "-m", "x", "--reconnect"
            )
        )
        await deferLater(_reactor(), 1.0, lambda: None)
        broker = Broker()
        factory = _TrackingFactory(broker, None)
        port: IListeningPort = await serverFromString(
            _reactor(), f"amqp:{number}:interface=127.0.0.1"
        ).listen(factory)
        self.addCleanup(factory.whenAllClosed)
        self.addCleanup(port.stopListening)
        result = await running
        self.assertEqual((result.code, result.lines), (0, ["message 1: accepted"]))
        self.assertTrue(result.errors, "no warnings about the failed attempts")
        for line in result.errors:
            self.assertTrue(line.startswith("amqptx: warning: "), line)

    async def test_reconnectTimeout(self) -> None:
        """
        C{receive --timeout} bounds the wait for a connection too: with
        C{--reconnect} and no server, C{receive} gives up and exits with 2.
        """
        number = await self.closedPort()
        result = await self.amqptx(
            "receive", f"amqp://127.0.0.1:{number}/q", "--reconnect", "-t", "1"
        )
        self.assertEqual(result.code, 2, result.err)
        self.assertEqual(result.out, b"")
        self.assertEqual(
            result.errors[-1],
            f"amqptx: error: no connection to amqp://127.0.0.1:{number} within 1 s",
        )
        for line in result.errors[:-1]:
            self.assertTrue(line.startswith("amqptx: warning: "), line)

    # --- request ---------------------------------------------------------------

    async def respond(self, port: int) -> None:
        """
        Answer the requests sent to C{service}, upper-cased, through the
        anonymous relay, until the test ends.
        """
        connection: AMQPConnection = await amqptx.connect(
            _reactor(), f"amqp://127.0.0.1:{port}"
        )
        requests = await connection.receiver("service")
        replies = await connection.sender(None)

        async def respond() -> None:
            while True:
                request = await requests.get()
                await replies.send(
                    Message(
                        address=request.message.reply_to,
                        correlation_id=request.message.correlation_id,
                        subject="reply",
                        body=str(request.body).upper(),
                    )
                )
                request.accept()

        responding = Deferred.fromCoroutine(respond())

        async def stop() -> None:
            responding.cancel()
            try:
                await responding
            except CancelledError:
                pass
            await connection.close()

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))

    async def test_request(self) -> None:
        """
        C{request} prints the reply's body, or with C{--json} the whole reply.
        """
        port, _ = await self.listen()
        await self.respond(port)
        url = f"amqp://127.0.0.1:{port}/service"
        reply = await self.amqptx("request", url, "-m", "ping", "--timeout", "10")
        self.assertEqual((reply.code, reply.lines, reply.err), (0, ["PING"], ""))
        reply = await self.amqptx(
            "request", url, "-m", "hello", "-p", "correlation-id=c-1", "--json"
        )
        self.assertEqual(reply.code, 0, reply.err)
        record = json.loads(reply.out)
        self.assertEqual(record["body"], "HELLO")
        self.assertEqual(record["properties"]["correlation-id"], "c-1")
        self.assertEqual(record["properties"]["subject"], "reply")

    async def test_requestTimeout(self) -> None:
        """
        With no one to answer, C{request} gives up after C{--timeout} and
        exits with 2.
        """
        port, _ = await self.listen()
        result = await self.amqptx(
            "request", f"amqp://127.0.0.1:{port}/nobody", "-m", "hi", "-t", "0.5"
        )
        self.assertOneError(result, EXIT_TIMEOUT, "no reply from 'nobody' within 0.5 s")

    # --- ping ------------------------------------------------------------------

    async def test_ping(self) -> None:
        """
        C{ping} prints how long the open took and the server's product and
        version, from the properties of its Open.
        """
        port, _ = await self.listen(
            properties={"product": "test-broker", "version": "1.2.3"}
        )
        result = await self.amqptx("ping", f"amqp://127.0.0.1:{port}")
        self.assertEqual(result.code, 0, result.err)
        self.assertRegex(
            result.lines[0],
            rf"^connected to amqp://127\.0\.0\.1:{port}: open in \d+\.\d ms$",
        )
        fields = dict(line.split(": ", 1) for line in result.lines[1:])
        self.assertEqual(fields["product"], "test-broker")
        self.assertEqual(fields["version"], "1.2.3")
        self.assertEqual(fields["sasl"], "ANONYMOUS")
        self.assertEqual(fields["capabilities"], "ANONYMOUS-RELAY")
        self.assertNotIn("tls", fields)

    async def test_pingTLS(self) -> None:
        """
        Over TLS with a password: C{ping} says which TLS and which login; the
        password is in no output, even with C{--verbose}.
        """
        port = await self.listenTLS()
        url = f"amqps://guest:{_PASSWORD}@localhost:{port}"
        result = await self.amqptx("ping", url, "--ca", sharedPKI().caCert, "-v")
        self.assertEqual(result.code, 0, result.err)
        fields = dict(line.split(": ", 1) for line in result.lines[1:])
        self.assertRegex(fields["tls"], r"^TLSv1\.[23], ")
        self.assertIn("CN=localhost", fields["certificate"])
        self.assertEqual(fields["sasl"], "PLAIN as guest")
        self.assertIn(f"amqps://guest:***@localhost:{port}", result.lines[0])
        self.assertTrue(result.err, "--verbose logged nothing")
        self.assertNotIn(_PASSWORD, result.out.decode() + result.err)

    # --- failures --------------------------------------------------------------

    async def test_refused(self) -> None:
        """
        Nothing listening: one line, L{EXIT_CONNECTION}.
        """
        number = await self.closedPort()
        for command in (["ping"], ["receive"], ["send", "-m", "x"]):
            result = await self.amqptx(
                command[0], f"amqp://127.0.0.1:{number}/q", *command[1:]
            )
            self.assertOneError(
                result,
                EXIT_CONNECTION,
                f"cannot connect to amqp://127.0.0.1:{number}: connection refused",
            )

    async def test_wrongPassword(self) -> None:
        """
        A refused login: one line, L{EXIT_AUTHENTICATION}, no password.
        """
        port = await self.listenTLS()
        wrong = "not-" + _PASSWORD
        result = await self.amqptx(
            "send",
            f"amqps://guest:{wrong}@localhost:{port}/q",
            "-m",
            "x",
            "--ca",
            sharedPKI().caCert,
        )
        line = self.assertOneError(
            result,
            EXIT_AUTHENTICATION,
            f"authentication failed at amqps://guest:***@localhost:{port}: ",
        )
        self.assertIn("amqp:unauthorized-access", line)
        self.assertNotIn(wrong, result.err)

    async def test_untrusted(self) -> None:
        """
        A server certificate of an authority not trusted: one line,
        L{EXIT_CONNECTION}.
        """
        port = await self.listenTLS()
        result = await self.amqptx(
            "ping", f"amqps://guest:{_PASSWORD}@localhost:{port}"
        )
        line = self.assertOneError(
            result,
            EXIT_CONNECTION,
            f"TLS handshake with amqps://guest:***@localhost:{port} failed",
        )
        self.assertIn("certificate verify failed", line)
        self.assertNotIn(_PASSWORD, result.err)

    async def test_notFound(self) -> None:
        """
        An address the server does not have: one line, L{EXIT_REJECTED}.
        """
        port, _ = await self.listen(BrokerConfig(autoCreate=False))
        for arguments in (["send", "-m", "x"], ["receive"]):
            result = await self.amqptx(
                arguments[0], f"amqp://127.0.0.1:{port}/nowhere", *arguments[1:]
            )
            line = self.assertOneError(
                result, EXIT_REJECTED, "cannot attach to 'nowhere': "
            )
            self.assertIn("amqp:not-found", line)

    async def test_usageErrors(self) -> None:
        """
        A bad URL or option: one line, exit status 64, no password.
        """
        result = await self.amqptx("send", "amqp://h:0/q", "-m", "x")
        self.assertOneError(result, EXIT_USAGE, "bad URL: ")
        result = await self.amqptx("receive", "amqp://h/q", "--count", "many")
        self.assertOneError(result, EXIT_USAGE, "--count 'many': not a whole number")
        result = await self.amqptx("ping", f"amqp://guest:{_PASSWORD}@h")
        self.assertOneError(result, EXIT_USAGE, "refusing to send a password in clear")
        self.assertNotIn(_PASSWORD, result.err)


class TwistdCommandLineTests(_Runs, TwistdTestCase):
    """
    The exit statuses of C{amqptx} against C{twistd amqp-listen}: a refused
    login, a refused address, a rejected message, a lost connection.
    """

    async def startAuthenticating(self, *arguments: str) -> Twistd:
        """
        Run C{twistd amqp-listen} with the user C{alice} and L{_PASSWORD}
        (SASL PLAIN over cleartext).

        @param arguments: more arguments of C{amqp-listen}.
        @return: the process, once it listens.
        """
        return await self.startTwistd(
            "--auth",
            f"memory:alice:{_PASSWORD}",
            "--allow-insecure-plain",
            *arguments,
        )

    async def test_wrongPassword(self) -> None:
        """
        A wrong password, or no credentials at all: L{EXIT_AUTHENTICATION}
        at once, even with C{--reconnect}; the password is not shown.
        """
        twistd = await self.startAuthenticating()
        wrong = "not-" + _PASSWORD
        server = f"amqp://alice:***@127.0.0.1:{twistd.port}"
        for command in (["ping"], ["send", "-m", "x", "--reconnect"]):
            result = await self.amqptx(
                command[0],
                f"amqp://alice:{wrong}@127.0.0.1:{twistd.port}/q",
                "--insecure",
                *command[1:],
            )
            line = self.assertOneError(
                result, EXIT_AUTHENTICATION, f"authentication failed at {server}: "
            )
            self.assertIn("amqp:unauthorized-access", line)
            self.assertNotIn(wrong, result.err)
        anonymous = await self.amqptx("ping", twistd.url)
        line = self.assertOneError(anonymous, EXIT_AUTHENTICATION, "authentication")
        self.assertIn("give a user and password", line)
        right = await self.amqptx(
            "ping", f"amqp://alice:{_PASSWORD}@127.0.0.1:{twistd.port}", "--insecure"
        )
        self.assertEqual(right.code, EXIT_OK, right.err)

    async def test_permissions(self) -> None:
        """
        An address C{--permissions} does not allow: L{EXIT_REJECTED} for
        C{send}, C{receive} and C{request}.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as rules:
            rules.write("alice all allowed/*\n")
        twistd = await self.startAuthenticating("--permissions", path)
        base = f"amqp://alice:{_PASSWORD}@127.0.0.1:{twistd.port}"
        for command in (["send", "-m", "x"], ["receive"], ["request", "-m", "x"]):
            result = await self.amqptx(
                command[0], f"{base}/forbidden", "--insecure", *command[1:]
            )
            line = self.assertOneError(
                result, EXIT_REJECTED, "cannot attach to 'forbidden': "
            )
            self.assertIn("amqp:unauthorized-access", line)
            self.assertNotIn(_PASSWORD, result.err)
        allowed = await self.amqptx(
            "send", f"{base}/allowed/q", "--insecure", "-m", "x"
        )
        self.assertEqual(
            (allowed.code, allowed.lines), (EXIT_OK, ["message 1: accepted"])
        )

    async def test_rejected(self) -> None:
        """
        A message larger than C{--max-message-size}: rejected,
        L{EXIT_REJECTED}.
        """
        twistd = await self.startTwistd("--max-message-size", "200")
        sent = await self.amqptx(
            "send", f"{twistd.url}/small", "-m", "x" * 300, "--quiet"
        )
        self.assertEqual(sent.code, EXIT_REJECTED, sent.err)
        self.assertEqual(sent.lines, ["1 message: 1 rejected"])
        self.assertEqual(sent.errors, ["amqptx: error: 1 of 1 message not accepted"])

    async def test_connectionLost(self) -> None:
        """
        The server dies while C{receive} waits: L{EXIT_CONNECTION}; then
        nothing listens there: L{EXIT_CONNECTION} again.
        """
        twistd = await self.startTwistd()
        url = f"{twistd.url}/work"
        await self.amqptx("send", url, "-m", "first")
        run = _Run()
        self.spawn(run, "receive", url, "--count", "2")
        await run.output
        await twistd.signal("KILL")
        result = await run.ended
        self.assertEqual(result.code, EXIT_CONNECTION, result.err)
        self.assertEqual(result.lines, ["first"])
        self.assertEqual(
            result.errors, [f"amqptx: error: lost the connection to {twistd.url}"]
        )
        refused = await self.amqptx("ping", twistd.url)
        self.assertOneError(
            refused, EXIT_CONNECTION, f"cannot connect to {twistd.url}: "
        )

    async def test_failover(self) -> None:
        """
        With C{--failover}, a command reaches the server the URL's does not
        answer for.
        """
        twistd = await self.startTwistd()
        closed = await self.startTwistd()
        await closed.signal("KILL")
        result = await self.amqptx("ping", closed.url, "--failover", twistd.url)
        self.assertEqual(result.code, EXIT_OK, result.err)
        self.assertTrue(
            result.lines[0].startswith(f"connected to {twistd.url}: "), result.out
        )

    async def test_progressOnTerminal(self) -> None:
        """
        On a terminal, C{receive --count} keeps a status line up to date,
        and ends it before its error.
        """
        twistd = await self.startTwistd()
        url = f"{twistd.url}/progress"
        await self.amqptx("send", url, "-m", "x")
        run = _Run()
        self.spawn(run, "receive", url, "--count", "3", "--timeout", "1.5", usePTY=True)
        result = await run.ended
        self.assertEqual(result.code, EXIT_TIMEOUT, result.out)
        screen = result.out.decode("utf-8")
        self.assertIn("\rreceived 1 of 3 (33%), ", screen)
        self.assertIn(
            " s\r\namqptx: error: received 1 of 3 messages within 1.5 s", screen
        )


class RabbitMQCommandLineTests(_Runs):
    """
    The exit statuses of C{amqptx} against RabbitMQ.
    """

    timeout = 120

    def setUp(self) -> None:
        requireRabbitMQ()
        self.node = sharedNode()

    async def test_wrongPassword(self) -> None:
        """
        A wrong password: L{EXIT_AUTHENTICATION}.
        """
        port = self.node.tlsPort
        result = await self.amqptx(
            "ping", f"amqps://guest:wrong@localhost:{port}", "--ca", sharedPKI().caCert
        )
        line = self.assertOneError(
            result,
            EXIT_AUTHENTICATION,
            f"authentication failed at amqps://guest:***@localhost:{port}: ",
        )
        self.assertIn("amqp:unauthorized-access", line)
        right = await self.amqptx(
            "ping", f"amqps://guest:guest@localhost:{port}", "--ca", sharedPKI().caCert
        )
        self.assertEqual(right.code, EXIT_OK, right.err)

    async def test_missingQueue(self) -> None:
        """
        A queue that does not exist (RabbitMQ ends the session with
        C{amqp:not-found}): L{EXIT_REJECTED}.
        """
        queue = f"/amq/queue/amqptx-missing-{uuid.uuid4().hex[:12]}"
        result = await self.amqptx(
            "receive", f"amqp://127.0.0.1:{self.node.port}/{queue}", "-t", "10"
        )
        line = self.assertOneError(
            result,
            EXIT_REJECTED,
            f"cannot attach to {queue!r}: the server ended the session: ",
        )
        self.assertIn("amqp:not-found", line)
