# -*- test-case-name: tests.integration.test_porting -*-
"""
The examples of the porting guide (C{docs/porting.rst}) and of the
Container's page (C{docs/container.rst}), C{porting_*.py} and
C{container_*.py} in C{docs/examples}, run as programs.

The porting examples are the snippets of AMQ Python's "Network connections"
chapter, each with proton's C{Container}, with amqptx's (the same program
with the import changed), and the Twisted way.  They run against amqptx's
broker in this process or the proton server, on free loopback ports.

No test sleeps: each waits for what a program prints, or for it to end.
"""

from __future__ import annotations

import os
import socket
import sys

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest

from tests._certs import sharedPKI
from tests.integration._peers import (
    REPOSITORY_ROOT,
    IntegrationTestCase,
    checkoutEnvironment,
    freePort,
    theReactor,
)

_EXAMPLES = os.path.join(REPOSITORY_ROOT, "docs", "examples")

# The snippets with a proton, an amqptx Container and a Twisted version.
_SNIPPETS = ("connect", "noreconnect", "reconnect", "failover", "listen")
_CONTAINERS = ("proton", "amqptx")
_REFUSED = "connection failed: proton.pythonio"


class _Program(ProcessProtocol):
    """
    An example program running as a process: the lines it printed, and
    Deferreds for a line to come and for its end.

    @ivar lines: what it printed on standard output so far, line by line.
    @ivar ended: fires with the exit status.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.ended: Deferred[int] = Deferred()
        self.running = True
        self._partial = b""
        self._stderr = b""
        self._waiting: list[tuple[str, Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for entry in [entry for entry in self._waiting if entry[0] == line]:
                self._waiting.remove(entry)
                entry[1].callback(None)

    def errReceived(self, data: bytes) -> None:
        self._stderr += data

    def stderr(self) -> str:
        """
        @return: what the program wrote to standard error.
        """
        return self._stderr.decode("utf-8", "replace")

    def waitFor(self, line: str) -> Deferred[None]:
        """
        @param line: a line the program prints.
        @return: a Deferred that fires once it printed C{line}, or fails if
            it ends first.
        """
        if line in self.lines:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        if not self.running:
            return self._ended(line)
        waiting: Deferred[None] = Deferred()
        self._waiting.append((line, waiting))
        return waiting

    def _ended(self, line: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        d.errback(
            AssertionError(
                f"{self.name} ended without printing {line!r}; it printed "
                f"{self.lines!r} and on standard error:\n{self.stderr()}"
            )
        )
        return d

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        waiting, self._waiting = self._waiting, []
        for line, d in waiting:
            self._ended(line).chainDeferred(d)
        value = reason.value
        if isinstance(value, ProcessDone):
            self.ended.callback(0)
        elif isinstance(value, ProcessTerminated):
            code = value.exitCode
            self.ended.callback(code if code is not None else -(value.signal or 0))
        else:
            self.ended.callback(-1)


def _ipv6Loopback() -> bool:
    """
    @return: whether this host can listen on C{::1}.
    """
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _freePort6() -> int:
    """
    @return: a TCP port that nothing listens on right now on C{::1}.
    """
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        port: int = s.getsockname()[1]
        return port


def _read(path: str) -> str:
    """
    @param path: a file.
    @return: its text.
    """
    with open(path) as f:
        return f.read()


class _ExampleTestCase(IntegrationTestCase):
    """
    Runs example programs.

    @cvar prefix: how the names of the examples begin.
    """

    timeout = 90
    prefix = ""

    def start(self, name: str, *arguments: str) -> _Program:
        """
        Start an example program; it is killed, if it still runs, when the
        test ends.

        @param name: its file name, without L{prefix} and C{.py}.
        @param arguments: its arguments.
        @return: the program.
        """
        program = _Program(name)
        path = os.path.join(_EXAMPLES, f"{self.prefix}{name}.py")
        environment = checkoutEnvironment()
        environment.pop("MESSAGING_CONNECT_FILE", None)
        theReactor().spawnProcess(
            program,
            sys.executable,
            [sys.executable, path, *arguments],
            env=environment,
            path=REPOSITORY_ROOT,
        )

        def stop() -> Deferred[int] | None:
            if not program.running:
                return None
            program.transport.signalProcess("KILL")  # type: ignore[union-attr]
            return program.ended

        self.addCleanup(stop)
        return program

    async def finish(self, program: _Program) -> list[str]:
        """
        Wait for a program to end, and check that it succeeded.

        @param program: the program.
        @return: the lines it printed.
        """
        status = await program.ended
        self.assertEqual(status, 0, f"{program.name} failed:\n{program.stderr()}")
        return program.lines

    async def runExample(self, name: str, *arguments: str) -> list[str]:
        """
        Run an example program to its end.

        @param name: its file name, without L{prefix} and C{.py}.
        @param arguments: its arguments.
        @return: the lines it printed.
        """
        return await self.finish(self.start(name, *arguments))

    async def runAll(self, *runs: tuple[str, ...]) -> list[list[str]]:
        """
        Run example programs at the same time, each to its end.

        @param runs: the name and arguments of each.
        @return: the lines each printed, in the order of C{runs}.
        """
        results: list[list[str]] = await gatherResults(
            [Deferred.fromCoroutine(self.runExample(*run)) for run in runs],
            consumeErrors=True,
        )
        return results


class PortingTests(_ExampleTestCase):
    """
    Every C{porting_*.py} example runs and prints what the guide says.
    """

    prefix = "porting_"

    async def test_urls(self) -> None:
        """
        The URLs of the chapter mean the same to proton and to amqptx, and the
        endpoint made from a URL is the one made from the short endpoint
        string.
        """
        lines = await self.runExample("urls")
        self.assertEqual(
            lines,
            [
                "amqps://example.com: proton amqps example.com 5671",
                "amqps://example.com: amqptx amqps example.com 5671",
                "amqps://example.com: <AMQPClientEndpoint amqps://example.com:5671>",
                "amqps:example.com:5671: <AMQPClientEndpoint amqps://example.com:5671>",
                "amqps://example.net:56720: proton amqps example.net 56720",
                "amqps://example.net:56720: amqptx amqps example.net 56720",
                "amqps://example.net:56720: "
                "<AMQPClientEndpoint amqps://example.net:56720>",
                "amqps:example.net:56720: "
                "<AMQPClientEndpoint amqps://example.net:56720>",
                "amqp://127.0.0.1: proton amqp 127.0.0.1 5672",
                "amqp://127.0.0.1: amqptx amqp 127.0.0.1 5672",
                "amqp://127.0.0.1: <AMQPClientEndpoint amqp://127.0.0.1:5672>",
                "amqp:127.0.0.1:5672: <AMQPClientEndpoint amqp://127.0.0.1:5672>",
                "amqp://[::1]:2000: proton amqp ::1 2000",
                "amqp://[::1]:2000: amqptx amqp ::1 2000",
                "amqp://[::1]:2000: <AMQPClientEndpoint amqp://[::1]:2000>",
                "amqp:[::1]:2000: <AMQPClientEndpoint amqp://[::1]:2000>",
            ],
        )

    def test_onlyTheImport(self) -> None:
        """
        Each amqptx Container example is its proton twin with the import of
        C{Container} changed, and nothing else.
        """
        for snippet in _SNIPPETS:
            proton = _read(os.path.join(_EXAMPLES, f"porting_{snippet}_proton.py"))
            amqptx = _read(os.path.join(_EXAMPLES, f"porting_{snippet}_amqptx.py"))
            self.assertIn("from proton.reactor import Container\n", proton)
            self.assertEqual(
                amqptx,
                proton.replace("from proton.reactor import Container\n", "").replace(
                    "from proton.handlers import MessagingHandler\n",
                    "from proton.handlers import MessagingHandler\n\n"
                    "from amqptx import Container\n",
                ),
            )

    async def test_connect(self) -> None:
        """
        Connecting in C{on_start} with either container, or with
        C{amqptx.connect} given a URL or an endpoint string: the connection
        opens (on amqptx's broker).
        """
        port, _ = await self.listen()
        url = f"amqp://127.0.0.1:{port}"
        results = await self.runAll(
            *[(f"connect_{container}", url) for container in _CONTAINERS],
            ("connect_twisted", url),
            ("connect_twisted", f"amqp:127.0.0.1:{port}"),
        )
        opened = f"open: 127.0.0.1:{port}"
        self.assertEqual(results, [[f"open: {url}"]] * 2 + [[opened]] * 2)

    async def test_connectProtonServer(self) -> None:
        """
        The connect examples open their connection on the proton server too.
        """
        server = self.startProtonServer()
        results = await self.runAll(
            *[(f"connect_{container}", server.url) for container in _CONTAINERS],
            ("connect_twisted", server.url),
        )
        self.assertEqual(
            results,
            [[f"open: {server.url}"]] * 2 + [[f"open: 127.0.0.1:{server.port}"]],
        )

    async def test_noReconnect(self) -> None:
        """
        Without reconnect, a refused connection is reported once and the
        program ends; a server that listens is connected to.
        """
        port, _ = await self.listen()
        live, dead = f"amqp://127.0.0.1:{port}", f"amqp://127.0.0.1:{freePort()}"
        results = await self.runAll(
            *[(f"noreconnect_{c}", url) for c in _CONTAINERS for url in (dead, live)],
            ("noreconnect_twisted", dead),
            ("noreconnect_twisted", live),
        )
        self.assertEqual(
            results,
            [[_REFUSED], [f"open: {live}"]] * 2
            + [
                ["connection failed: ConnectionRefusedError"],
                [f"open: 127.0.0.1:{port}"],
            ],
        )

    async def test_reconnect(self) -> None:
        """
        With C{ExampleReconnect}, a program started before its server waits
        the policy's delays between attempts and connects once the server
        listens.  The containers ask the policy for a delay before the first
        attempt (and do not wait it); the factory asks after a failure.
        """
        variants = [*_CONTAINERS, "twisted"]
        ports = [freePort() for _ in variants]
        programs = [
            self.start(f"reconnect_{variant}", f"amqp://127.0.0.1:{port}")
            for variant, port in zip(variants, ports, strict=True)
        ]

        async def serveWhenRetrying(program: _Program, port: int) -> list[str]:
            await program.waitFor("next delay: 0.2")
            await self.listen(f"amqp:{port}:interface=127.0.0.1")
            return await self.finish(program)

        results: list[list[str]] = await gatherResults(
            [
                Deferred.fromCoroutine(serveWhenRetrying(program, port))
                for program, port in zip(programs, ports, strict=True)
            ],
            consumeErrors=True,
        )
        for variant, port, lines in zip(variants, ports, results, strict=True):
            # ExampleReconnect's delays, as many as the program asked for.
            delays = [line for line in lines if line.startswith("next delay: ")]
            expected, delay = [], 0.1
            for _ in delays:
                expected.append(f"next delay: {delay}")
                delay = min(10, 2 * delay)
            self.assertIn("next delay: 0.2", expected)
            if variant == "twisted":
                self.assertEqual(lines, [*expected, f"open: 127.0.0.1:{port}"])
            else:
                # Each delay but the last is followed by a failed attempt.
                self.assertEqual(
                    lines,
                    [
                        *[line for d in expected[:-1] for line in (d, _REFUSED)],
                        expected[-1],
                        f"open: amqp://127.0.0.1:{port}",
                    ],
                )

    async def test_failover(self) -> None:
        """
        Given a URL where nothing listens and then one where a server does,
        each program connects to the second.
        """
        port, _ = await self.listen()
        dead, live = f"amqp://127.0.0.1:{freePort()}", f"amqp://127.0.0.1:{port}"
        results = await self.runAll(
            *[(f"failover_{container}", dead, live) for container in _CONTAINERS],
            ("failover_twisted", dead, live),
        )
        self.assertEqual(
            results,
            [[_REFUSED, f"open: {live}"]] * 2 + [[f"open: 127.0.0.1:{port}"]],
        )

    async def listenAndConnect(
        self, name: str, address: str, host: str, port: int
    ) -> list[str]:
        """
        Run a listen example, connect to it once it listens, close.

        @param name: the example.
        @param address: where it is to listen (its argument).
        @param host: the address to connect to.
        @param port: the port to connect to.
        @return: the lines it printed.
        """
        program = self.start(name, address)
        await program.waitFor(f"listening on {address}")
        connection = await self.connect(f"amqp://{host}:{port}")
        await connection.close()
        return await self.finish(program)

    async def checkListen(
        self, host: str, port: int, interface: str, variants: tuple[str, ...]
    ) -> None:
        """
        Run listen examples on one address.

        @param host: the address to listen on, in a URL.
        @param port: the port.
        @param interface: the address as a server endpoint string's
            C{interface} option.
        @param variants: the examples to run (C{"proton"}, C{"amqptx"},
            C{"twisted"}).
        """
        container = f"{host}:{port}"
        twisted = f"amqp:{port}:interface={interface}"
        for variant in variants:
            address = twisted if variant == "twisted" else container
            lines = await self.listenAndConnect(
                f"listen_{variant}", address, host, port
            )
            self.assertEqual(
                lines,
                [
                    f"listening on {address}",
                    "new incoming connection",
                    "connection closed; no longer listening",
                ],
            )

    async def test_listen(self) -> None:
        """
        Each listen example accepts a connection, says so, and stops
        listening once it has closed.
        """
        await self.checkListen(
            "127.0.0.1", freePort(), "127.0.0.1", (*_CONTAINERS, "twisted")
        )

    async def test_listenIPv6(self) -> None:
        """
        The listen examples of amqptx listen on IPv6 addresses too.
        (proton's Python container cannot: it listens with IPv4 sockets
        only.)
        """
        if not _ipv6Loopback():
            raise SkipTest("no IPv6 loopback here")
        await self.checkListen("[::1]", _freePort6(), r"\:\:1", ("amqptx", "twisted"))


class ContainerExampleTests(_ExampleTestCase):
    """
    Every C{container_*.py} example runs and prints what the Container's
    page says.
    """

    prefix = "container_"

    async def test_helloWorld(self) -> None:
        """
        The "Hello World" of proton on amqptx's Container gets its message back,
        from amqptx's broker and from the proton server.
        """
        port, _ = await self.listen()
        server = self.startProtonServer()
        results = await self.runAll(
            ("helloworld", f"amqp://127.0.0.1:{port}"), ("helloworld", server.url)
        )
        self.assertEqual(results, [["Hello World!"]] * 2)

    async def test_service(self) -> None:
        """
        A L{ContainerService} sends while the program's Deferred code
        receives.
        """
        port, _ = await self.listen()
        lines = await self.runExample("service", f"amqp://127.0.0.1:{port}")
        # The two happen in either order.
        self.assertEqual(
            sorted(lines),
            [
                "received: Hello from the Container",
                "the container's message was accepted",
            ],
        )

    async def test_tls(self) -> None:
        """
        The TLS example sends its message over TLS, with amqptx's
        C{SSLDomain} and with Twisted's TLS options.
        """
        pki = sharedPKI()
        files = (pki.caCert, pki.serverCert, pki.serverKey)
        results = await self.runAll(("tls", *files), ("tls", *files, "twisted"))
        self.assertEqual(results, [["Hello TLS!"]] * 2)
