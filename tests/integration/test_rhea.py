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

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest

from tests.integration._peers import exitStatus, jsonLines, theReactor
from tests.integration._twistd import TwistdTestCase

CLIENT_DIRECTORY = Path(__file__).resolve().parent / "rhea"
"""Where C{client.js} and its C{node_modules} are."""

CLIENT_TIMEOUT = 30.0
"""The client's own timeout, in seconds (its C{--timeout})."""

GRACE = 15.0
"""Seconds after the client's own timeout before the test kills it."""


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
        bodies: list[object] = []
        done = False
        records, stderr = jsonLines(self._stdout, self._stderr)
        for record in records:
            if "body" in record:
                bodies.append(record["body"])
            elif record.get("done"):
                done = True
        self.ended.callback(RheaResult(exitStatus(reason), bodies, done, stderr))


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
    reactor = theReactor()
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


class RheaTests(TwistdTestCase):
    """
    The rhea client sends to and receives from amqptx's server.
    """

    def setUp(self) -> None:
        super().setUp()
        _node()

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
        port, broker = await self.listen()
        result = await runRhea(f"amqp://127.0.0.1:{port}", "rhea-q", 50)
        self.assertSucceeded(result, 50)
        self.assertEqual(len(broker.queue("rhea-q").messages), 0)

    async def test_anonymous(self) -> None:
        """
        The rhea client logs in with SASL ANONYMOUS (a user name without a
        password is its trace information), sends 20 messages and receives
        them back.
        """
        port, _ = await self.listen()
        url = f"amqp://127.0.0.1:{port}"
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
        twistd = await self.startTwistd(
            "--auth", "memory:alice:secret", "--allow-insecure-plain"
        )
        url = twistd.url
        good = await runRhea(url, "rhea-plain", 20, user="alice", password="secret")
        self.assertSucceeded(good, 20)
        for user, password in [("alice", "Wr0ngPassw0rd"), ("alice", None)]:
            self.assertRefused(await runRhea(url, "rhea-plain", 1, user, password))
        noSASL = await runRhea(url, "rhea-plain", 1)
        self.assertNotEqual(noSASL.exitCode, 0, noSASL.stderr)
        self.assertFalse(noSASL.done, noSASL.stderr)
        self.assertEqual(noSASL.bodies, [])
        log = twistd.output()
        self.assertNotIn("Wr0ngPassw0rd", log)
        self.assertNotIn("Traceback", log)
