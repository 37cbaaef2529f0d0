# -*- test-case-name: tests.integration.test_rhea -*-
"""
Integration tests: rhea, an AMQP 1.0 client for Node.js that shares no code
with proton, against amqptx's server, in this process and as C{twistd
amqp-listen}.

The client is C{tests/integration/rhea/client.js}; its one dependency is
installed with C{npm ci --prefix tests/integration/rhea}.  Without it (or
without C{node}) these tests are skipped, unless the environment variable
C{AMQPTX_REQUIRE_RHEA} is C{1}: then they fail.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from amqptx import AMQPProtocol
from amqptx.broker import Broker
from tests.integration._fuzz import Twistd

CLIENT_DIRECTORY = Path(__file__).resolve().parent / "rhea"
"""Where C{client.js} and its C{node_modules} are."""

CLIENT_TIMEOUT = 30.0
"""The client's own timeout, in seconds (its C{--timeout})."""

GRACE = 15.0
"""Seconds after the client's own timeout before the test kills it."""


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _ignore(reason: Failure) -> None:
    """
    Swallow the failure of a cleanup that may find the work already done.
    """


def _node() -> str:
    """
    @return: the path of C{node}, with rhea installed for the client.
    @raise SkipTest: when either is missing, unless C{AMQPTX_REQUIRE_RHEA=1}.
    @raise RuntimeError: when either is missing and C{AMQPTX_REQUIRE_RHEA=1}.
    """
    node = shutil.which("node")
    installed = (CLIENT_DIRECTORY / "node_modules" / "rhea").is_dir()
    if node is not None and installed:
        return node
    missing = (
        "node is not on the PATH"
        if node is None
        else f"rhea is not installed (npm ci --prefix {CLIENT_DIRECTORY})"
    )
    if os.environ.get("AMQPTX_REQUIRE_RHEA") == "1":
        raise RuntimeError(f"AMQPTX_REQUIRE_RHEA=1, but {missing}")
    raise SkipTest(missing)


@dataclass(frozen=True)
class RheaResult:
    """
    What a run of the rhea client did.

    @ivar exitCode: its exit status (negative: killed by that signal).
    @ivar bodies: the bodies it received, in order.
    @ivar done: whether it printed its final C{{"done": true}} line.
    @ivar stderr: what it wrote to standard error, and any unexpected
        output line.
    """

    exitCode: int
    bodies: list[object]
    done: bool
    stderr: str


class _RheaProtocol(ProcessProtocol):
    """
    Collects the client's output; kills it if it outlives its own timeout
    by L{GRACE} seconds.
    """

    def __init__(self) -> None:
        self.ended: Deferred[RheaResult] = Deferred()
        self._stdout = b""
        self._stderr = b""
        self.timer: IDelayedCall | None = None

    def outReceived(self, data: bytes) -> None:
        self._stdout += data

    def errReceived(self, data: bytes) -> None:
        self._stderr += data

    def kill(self) -> None:
        """
        Kill the client, which has run too long.
        """
        self.timer = None
        self._stderr += b"\n[killed: still running after its timeout]"
        assert self.transport is not None
        self.transport.signalProcess("KILL")

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        value = reason.value
        exitCode = 0
        if isinstance(value, ProcessTerminated):
            exitCode = (
                value.exitCode if value.exitCode is not None else -(value.signal or 0)
            )
        elif not isinstance(value, ProcessDone):
            exitCode = -1
        bodies: list[object] = []
        done = False
        stderr = self._stderr.decode("utf-8", "replace")
        for line in self._stdout.decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                stderr += f"\n[unexpected output line: {line!r}]"
                continue
            if "body" in record:
                bodies.append(record["body"])
            elif record.get("done"):
                done = True
        self.ended.callback(RheaResult(exitCode, bodies, done, stderr))


def runRhea(
    url: str,
    address: str,
    count: int,
    user: str | None = None,
    password: str | None = None,
) -> Deferred[RheaResult]:
    """
    Run the rhea client, without blocking the reactor.

    @param url: the server's C{amqp://} URL.
    @param address: the address to send to and receive from.
    @param count: how many messages.
    @param user: the user name, or L{None}.
    @param password: the password, or L{None}.
    @return: a Deferred that fires with what the client did.
    """
    node = _node()
    arguments = [
        node,
        str(CLIENT_DIRECTORY / "client.js"),
        url,
        address,
        str(count),
        "--timeout",
        str(CLIENT_TIMEOUT),
    ]
    if user is not None:
        arguments += ["--user", user]
    if password is not None:
        arguments += ["--password", password]
    protocol = _RheaProtocol()
    reactor = _reactor()
    reactor.spawnProcess(
        protocol,
        node,
        arguments,
        env={"PATH": os.environ.get("PATH", ""), "NODE_NO_WARNINGS": "1"},
        path=str(CLIENT_DIRECTORY),
    )
    protocol.timer = reactor.callLater(CLIENT_TIMEOUT + GRACE, protocol.kill)
    return protocol.ended


def _bodies(count: int) -> list[object]:
    return [f"rhea-{index}" for index in range(count)]


@implementer(IProtocolFactory)
class _TrackingFactory:
    """
    Wraps a factory of AMQP protocols and keeps every protocol it built, so
    that a test can wait for the server's side of each connection to end.
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
        @return: a Deferred that fires once every connection built so far
            has ended, however it ended.
        """
        waiting = [p.whenClosed().addErrback(_ignore) for p in self.protocols]
        return gatherResults(waiting).addCallback(lambda _: None)


class RheaTests(TestCase):
    """
    The rhea client sends to and receives from amqptx's server.
    """

    timeout = 120

    def setUp(self) -> None:
        _node()

    async def listen(self) -> tuple[str, Broker]:
        """
        Serve a new broker in this process, on a free loopback port; the
        port and every connection are closed when the test ends.

        @return: the server's URL, and the broker.
        """
        broker = Broker()
        factory = _TrackingFactory(broker.factory())
        port: IListeningPort = await serverFromString(
            _reactor(), "amqp:0:interface=127.0.0.1"
        ).listen(factory)
        self.addCleanup(factory.whenAllClosed)
        self.addCleanup(port.stopListening)
        return f"amqp://127.0.0.1:{port.getHost().port}", broker  # type: ignore[attr-defined]

    async def twistd(self, *arguments: str) -> tuple[Twistd, str]:
        """
        Run C{twistd -n amqp-listen} on a free loopback port, killed when the
        test ends.

        @param arguments: more arguments of C{amqp-listen}.
        @return: the process, and the server's URL.
        """
        twistd = Twistd.spawn(
            _reactor(), "--listen", "amqp:0:interface=127.0.0.1", *arguments
        )
        self.addCleanup(twistd.stop)
        port = await twistd.listening
        return twistd, f"amqp://127.0.0.1:{port}"

    def assertSucceeded(self, result: RheaResult, count: int) -> None:
        """
        Assert that the client exited cleanly, having received its C{count}
        messages in order.

        @param result: what the client did.
        @param count: how many messages it sent.
        """
        self.assertEqual(result.exitCode, 0, result.stderr)
        self.assertTrue(result.done, result.stderr)
        self.assertEqual(result.bodies, _bodies(count), result.stderr)

    def assertRefused(self, result: RheaResult) -> None:
        """
        Assert that the client failed, told why, and sent nothing.

        @param result: what the client did.
        """
        self.assertEqual(result.exitCode, 1, result.stderr)
        self.assertFalse(result.done, result.stderr)
        self.assertEqual(result.bodies, [])
        self.assertIn("amqp:unauthorized-access", result.stderr)

    async def test_withoutSASL(self) -> None:
        """
        The rhea client without credentials sends the AMQP header without a
        SASL layer, which the server takes as an anonymous login; it sends 50
        messages, each accepted, and receives them back in order.
        """
        url, broker = await self.listen()
        result = await runRhea(url, "rhea-q", 50)
        self.assertSucceeded(result, 50)
        self.assertEqual(len(broker.queue("rhea-q").messages), 0)

    async def test_anonymous(self) -> None:
        """
        The rhea client logs in with SASL ANONYMOUS (a user name without a
        password is its trace information), sends 20 messages and receives
        them back.
        """
        url, _ = await self.listen()
        result = await runRhea(url, "rhea-anonymous", 20, user="rhea")
        self.assertSucceeded(result, 20)

    async def test_plain(self) -> None:
        """
        Against C{twistd amqp-listen --auth memory:alice:secret
        --allow-insecure-plain}, rhea logs in with SASL PLAIN, sends 20
        messages and receives them back; with a wrong password, without a
        password (ANONYMOUS) or without credentials (no SASL) it is refused
        with C{amqp:unauthorized-access}, and the wrong password appears
        nowhere in the server's log.
        """
        twistd, url = await self.twistd(
            "--auth", "memory:alice:secret", "--allow-insecure-plain"
        )
        good = await runRhea(url, "rhea-plain", 20, user="alice", password="secret")
        self.assertSucceeded(good, 20)
        for user, password in [("alice", "Wr0ngPassw0rd"), ("alice", None)]:
            self.assertRefused(await runRhea(url, "rhea-plain", 1, user, password))
        noSASL = await runRhea(url, "rhea-plain", 1)
        self.assertNotEqual(noSASL.exitCode, 0, noSASL.stderr)
        self.assertFalse(noSASL.done, noSASL.stderr)
        self.assertEqual(noSASL.bodies, [])
        log = twistd.text()
        self.assertNotIn("Wr0ngPassw0rd", log)
        self.assertNotIn("Traceback", log)
