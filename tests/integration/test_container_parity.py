# -*- test-case-name: tests.integration.test_container_parity -*-
"""
The classic proton example programs (L{tests.integration.programs}), run as
processes on loopback ports once with proton's C{Container} and once with
amqptx's: what they print, handler callbacks included, is the same.

Each program prints a line per C{MessagingHandler} callback, in order, with
its link's role and its connection's number (C{EVENT on_link_opened sender
[0]}), and a line per result (C{OUT ...}).  What legitimately differs is
normalised:

  - Runs of C{on_sendable} count as one: each credit update of the peer is
    an C{on_sendable}, and how many flow frames the peer's credit takes
    depends on how its writes are batched, which is timing.
  - The broker of the request/response scenario serves two independent
    processes whose connections close concurrently: its callbacks are
    compared connection by connection, not in their order among each other.
  - The programs print nothing else that differs between runs: the broker
    names its temporary queues C{dynamic-0}, C{dynamic-1} ... instead of
    random UUIDs, and no container id, port or error text is printed.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from tests._certs import sharedPKI
from tests.integration._peers import REPOSITORY_ROOT, freePort

_PROGRAMS = os.path.join(REPOSITORY_ROOT, "tests", "integration", "programs")
_CONTAINERS = ("proton", "amqptx")
_TIMEOUT = 60.0


def _environment() -> dict[str, str]:
    """
    @return: the environment of the programs: this one, with the checkout on
        C{PYTHONPATH} and no connection configuration file.
    """
    environment = dict(os.environ, PYTHONPATH=REPOSITORY_ROOT)
    environment.pop("MESSAGING_CONNECT_FILE", None)
    return environment


def byConnection(lines: list[str]) -> dict[str, list[str]]:
    """
    Split a program's lines by connection: the callbacks of each connection
    (by the C{[n]} that ends them), the other callbacks, and the results.

    @param lines: what a program printed.
    @return: the lines of each part, in order.
    """
    parts: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith("OUT "):
            key = "results"
        elif line.endswith("]"):
            key = line[line.rindex("[") :]
        else:
            key = "container"
        parts.setdefault(key, []).append(line)
    return parts


def normalise(lines: list[str]) -> list[str]:
    """
    Count each run of identical C{on_sendable} lines as one.

    @param lines: what a program printed.
    @return: the lines to compare.
    """
    result: list[str] = []
    for line in lines:
        if line.startswith("EVENT on_sendable") and result and result[-1] == line:
            continue
        result.append(line)
    return result


class _Program:
    """
    One program running as a process.
    """

    def __init__(self, name: str, container: str, *arguments: str) -> None:
        """
        Start it.

        @param name: the program's file name, without C{.py}.
        @param container: C{"proton"} or C{"amqptx"}.
        @param arguments: its other arguments.
        """
        self.description = f"{name} --container {container} {' '.join(arguments)}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                os.path.join(_PROGRAMS, name + ".py"),
                "--container",
                container,
                *arguments,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environment(),
            cwd=REPOSITORY_ROOT,
        )
        self.lines: list[str] = []
        self._partial = b""

    def waitFor(self, line: str) -> None:
        """
        Read what the program prints until it prints C{line}.

        The pipe is read without Python's buffering, so that C{select} sees
        every line that is not read yet.

        @param line: the line to wait for.
        @raise AssertionError: when the program ends or takes too long first.
        """
        stdout = self.process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        deadline = time.monotonic() + _TIMEOUT
        while line not in self.lines:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                self.kill()
                raise AssertionError(f"{self.description}: no {line!r} in time")
            read = os.read(fd, 65536)
            if not read:
                raise AssertionError(
                    f"{self.description} ended before {line!r}: "
                    f"{self.lines}\n{self._stderr()}"
                )
            self._partial += read
            *complete, self._partial = self._partial.split(b"\n")
            self.lines.extend(piece.decode() for piece in complete)

    def finish(self) -> list[str]:
        """
        Wait for the program to end, successfully.

        @return: every line it printed.
        @raise AssertionError: when it fails or takes too long.
        """
        try:
            out, err = self.process.communicate(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.description} did not end") from None
        self.lines.extend((self._partial + out).decode().splitlines())
        self._partial = b""
        if self.process.returncode != 0:
            raise AssertionError(
                f"{self.description} exited with {self.process.returncode}: "
                f"{self.lines}\n{err.decode()}"
            )
        return self.lines

    def kill(self) -> None:
        """
        Kill the program if it still runs.
        """
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()

    def _stderr(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
        out, err = self.process.communicate()
        return err.decode(errors="replace")


class ParityTests(SynchronousTestCase):
    """
    Each example program prints the same with both containers.
    """

    maxDiff = None

    def start(self, name: str, container: str, *arguments: str) -> _Program:
        """
        Start a program, killed when the test ends if it still runs.

        @param name: the program.
        @param container: the container.
        @param arguments: its other arguments.
        @return: the running program.
        """
        program = _Program(name, container, *arguments)
        self.addCleanup(program.kill)
        return program

    def runProgram(self, name: str, container: str, *arguments: str) -> list[str]:
        """
        Run a program to its end.

        @param name: the program.
        @param container: the container.
        @param arguments: its other arguments.
        @return: what it printed.
        """
        return self.start(name, container, *arguments).finish()

    def assertSame(
        self, outputs: dict[str, list[str]], *expected: str, split: bool = False
    ) -> None:
        """
        Assert that both containers' runs printed the same, and that it holds
        the expected results.

        @param outputs: what each container's run printed.
        @param expected: C{OUT} lines that must be there, in this order.
        @param split: compare each connection's callbacks (and the results)
            on their own, not their order among each other: for a program
            whose peers are independent processes.
        """
        proton, amqptx = (normalise(outputs[c]) for c in _CONTAINERS)
        if split:
            self.assertEqual(
                {k: normalise(v) for k, v in byConnection(amqptx).items()},
                {k: normalise(v) for k, v in byConnection(proton).items()},
            )
        else:
            self.assertEqual(amqptx, proton)
        results = [line[4:] for line in proton if line.startswith("OUT ")]
        self.assertEqual([r for r in results if r in expected], list(expected))

    def test_helloWorld(self) -> None:
        """
        Hello world, direct: a listener and a client in one process.
        """
        outputs = {
            c: self.runProgram("helloworld", c, "--port", str(freePort()))
            for c in _CONTAINERS
        }
        self.assertSame(outputs, "Hello World!", "done")

    def test_helloWorldTLS(self) -> None:
        """
        Hello world over TLS: the server's certificate from
        C{container.ssl.server}, the client's CA and name check from an
        C{SSLDomain}.
        """
        pki = sharedPKI()
        outputs = {
            c: self.runProgram(
                "helloworld_tls",
                c,
                "--port",
                str(freePort()),
                "--ca",
                pki.caCert,
                "--cert",
                pki.serverCert,
                "--key",
                pki.serverKey,
            )
            for c in _CONTAINERS
        }
        self.assertSame(outputs, "Hello TLS!", "done")

    def test_tlsFailure(self) -> None:
        """
        A server certificate from a CA the client does not trust: a transport
        error on the client's connection and on the listener's, in proton's
        order.
        """
        pki = sharedPKI()
        outputs = {
            c: self.runProgram(
                "helloworld_tls",
                c,
                "--port",
                str(freePort()),
                "--ca",
                pki.wrongCA,
                "--cert",
                pki.serverCert,
                "--key",
                pki.serverKey,
                "--no-reconnect",
            )
            for c in _CONTAINERS
        }
        self.assertSame(outputs, "transport error", "transport error", "done")

    def test_refused(self) -> None:
        """
        A refused connection without reconnect: a transport error and the
        disconnection, then the work is done.
        """
        outputs = {
            c: self.runProgram("refused", c, "--port", str(freePort()))
            for c in _CONTAINERS
        }
        self.assertSame(outputs, "transport error: yes", "done")

    def sendReceive(self, brokerContainer: str, clients: str) -> dict[str, list[str]]:
        """
        Run the broker, then the sender, then the receiver.

        @param brokerContainer: the broker's container.
        @param clients: the clients' container.
        @return: what each printed, by program name.
        """
        port = str(freePort())
        broker = self.start("broker", brokerContainer, "--port", port)
        broker.waitFor("OUT listening")
        url = f"127.0.0.1:{port}/examples"
        return {
            "simple_send": self.runProgram("simple_send", clients, "--url", url),
            "simple_recv": self.runProgram("simple_recv", clients, "--url", url),
            "broker": broker.finish(),
        }

    def test_sendReceive(self) -> None:
        """
        Simple send (with confirmations) and simple receive (with a credit
        window) through the broker: the three programs print the same with
        both containers.
        """
        runs = {c: self.sendReceive(c, c) for c in _CONTAINERS}
        for name in ("simple_send", "simple_recv", "broker"):
            outputs = {c: runs[c][name] for c in _CONTAINERS}
            self.assertSame(outputs, "done")
        self.assertIn("OUT all messages confirmed", runs["amqptx"]["simple_send"])
        bodies = [line for line in runs["amqptx"]["simple_recv"] if "sequence" in line]
        self.assertEqual(
            bodies, [f"OUT {{'sequence': {index}}}" for index in range(1, 6)]
        )

    def requestResponse(
        self, brokerContainer: str, clients: str
    ) -> dict[str, list[str]]:
        """
        Run the broker, then the server, then the client.

        @param brokerContainer: the broker's container.
        @param clients: the server's and the client's container.
        @return: what each printed, by program name.
        """
        port = str(freePort())
        broker = self.start("broker", brokerContainer, "--port", port)
        broker.waitFor("OUT listening")
        server = self.start("server", clients, "--url", f"127.0.0.1:{port}")
        server.waitFor("OUT ready")
        client = self.runProgram(
            "client", clients, "--url", f"127.0.0.1:{port}/examples"
        )
        return {"client": client, "server": server.finish(), "broker": broker.finish()}

    def test_requestResponse(self) -> None:
        """
        A request/response client with a dynamic reply queue and a server
        answering through an anonymous sender, through the broker: the same
        with both containers.
        """
        runs = {c: self.requestResponse(c, c) for c in _CONTAINERS}
        self.assertSame(
            {c: runs[c]["client"] for c in _CONTAINERS},
            "reply queue dynamic-0",
            "Twas brillig => TWAS BRILLIG",
            "and the slithy toves => AND THE SLITHY TOVES",
            "did gire => DID GIRE",
            "done",
        )
        self.assertSame({c: runs[c]["server"] for c in _CONTAINERS}, "ready", "done")
        self.assertSame(
            {c: runs[c]["broker"] for c in _CONTAINERS},
            "listening",
            "dynamic queue dynamic-0",
            "stopping",
            "done",
            split=True,
        )

    def test_mixed(self) -> None:
        """
        The programs on amqptx work with proton's broker, and those on proton
        with amqptx's broker.
        """
        for broker, clients in (("proton", "amqptx"), ("amqptx", "proton")):
            run = self.sendReceive(broker, clients)
            self.assertIn("OUT all messages confirmed", run["simple_send"])
            self.assertIn("OUT {'sequence': 5}", run["simple_recv"])
            run = self.requestResponse(broker, clients)
            self.assertIn("OUT did gire => DID GIRE", run["client"])
