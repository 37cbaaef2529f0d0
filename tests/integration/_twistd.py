# -*- test-case-name: tests.integration.test_server -*-
"""
C{twistd -n amqp-listen} as a subprocess of the integration tests: L{Twistd}
runs one, and L{TwistdTestCase} runs them for a test and kills them when it
ends.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from tests.integration._peers import (
    REPOSITORY_ROOT,
    IntegrationTestCase,
    checkoutEnvironment,
    ignoreFailure,
    theReactor,
)

__all__ = ["Twistd", "TwistdTestCase"]

_TWISTD = "from twisted.scripts.twistd import run; run()"
"""
The program C{python -c} runs to be C{twistd}: C{twisted.scripts.twistd} has
no C{__main__} block, so C{python -m twisted.scripts.twistd} does nothing.
"""

_STARTING = re.compile(rb"starting on (\d+)")

_STATUS_PAGE = re.compile(rb"status page on http://\S+:(\d+)/")
"""
The log line of C{--web}, with the status page's port."""


class Twistd(ProcessProtocol):
    """
    C{twistd -n amqp-listen} as a subprocess: its output, the port it
    listens on (from its log's C{starting on PORT} line), its process id and
    its end.

    @ivar listening: fires with the port number, or fails if the process
        ends first (a failure no one need have waited for).
    @ivar listeningAt: the reactor's time when L{listening} fired, or
        L{None} before.
    @ivar webListening: (with C{--web}) fires with the status page's port,
        or fails if the process ends first.
    @ivar ended: fires with the exception Twisted reports as the reason the
        process ended: L{ProcessDone} or L{ProcessTerminated}.
    @ivar running: whether the process still runs.
    @ivar pid: the process id.
    """

    def __init__(self, reactor: Any) -> None:
        """
        @param reactor: the reactor, which tells the time of L{listeningAt}.
        """
        self._reactor = reactor
        self.listening: Deferred[int] = Deferred()
        self.listeningAt: float | None = None
        self.webListening: Deferred[int] = Deferred()
        self.ended: Deferred[ProcessDone | ProcessTerminated] = Deferred()
        self.running = True
        self.pid: int | None = None
        self._port: int | None = None
        self._stdout = b""
        self._stderr = b""

    @classmethod
    def spawn(cls, reactor: Any, *arguments: str) -> Twistd:
        """
        Start C{twistd -n amqp-listen ARGUMENTS} in the checkout (so that its
        C{twisted/plugins} is found).

        @param reactor: the reactor.
        @param arguments: the arguments of C{amqp-listen}.
        @return: the running process's protocol; call L{stop} when done.
        """
        protocol = cls(reactor)
        transport = reactor.spawnProcess(
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
            env=checkoutEnvironment(),
            path=REPOSITORY_ROOT,
        )
        protocol.pid = transport.pid
        return protocol

    @property
    def port(self) -> int:
        """
        The port the process listens on (or listened on, once it has
        ended).

        @raise RuntimeError: if it has not said it listens.
        """
        if self._port is None:
            raise RuntimeError("twistd has not said it listens")
        return self._port

    @property
    def url(self) -> str:
        """
        The C{amqp://127.0.0.1:PORT} URL of a process listening on the
        loopback interface (see L{TwistdTestCase.startTwistd}).
        """
        return f"amqp://127.0.0.1:{self.port}"

    def outReceived(self, data: bytes) -> None:
        self._stdout += data
        if not self.listening.called:
            match = _STARTING.search(self._stdout)
            if match is not None:
                self._port = int(match.group(1))
                self.listeningAt = self._reactor.seconds()
                self.listening.callback(self._port)
        if not self.webListening.called:
            match = _STATUS_PAGE.search(self._stdout)
            if match is not None:
                self.webListening.callback(int(match.group(1)))

    def errReceived(self, data: bytes) -> None:
        self._stderr += data

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        if not self.listening.called:
            self.listening.errback(
                RuntimeError(f"twistd ended before listening: {self.output()}")
            )
            # Reported to whoever waited; no one need have.
            self.listening.addErrback(ignoreFailure)
        if not self.webListening.called:
            self.webListening.errback(
                RuntimeError(f"twistd ended before serving a page: {self.output()}")
            )
            self.webListening.addErrback(ignoreFailure)
        ended = reason.value
        assert isinstance(ended, (ProcessDone, ProcessTerminated)), reason
        self.ended.callback(ended)

    def output(self) -> str:
        """
        @return: everything the process wrote so far (its log), standard
            output then standard error.
        """
        return (self._stdout + self._stderr).decode("utf-8", "replace")

    def signal(self, name: str) -> Deferred[ProcessDone | ProcessTerminated]:
        """
        Send the process a signal.

        @param name: the signal, C{"KILL"} or C{"TERM"}.
        @return: L{ended}.
        """
        assert self.transport is not None
        self.transport.signalProcess(name)
        return self.ended

    def stop(self) -> Deferred[ProcessDone | ProcessTerminated] | None:
        """
        Kill the process if it still runs.

        @return: L{ended}, or L{None} if the process had ended already.
        """
        if not self.running:
            return None
        return self.signal("KILL")

    def rss(self) -> int:
        """
        @return: the process's resident memory, in bytes (Linux: from
            C{/proc/PID/status}).
        """
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")

    def openFiles(self) -> int:
        """
        @return: how many file descriptors the process holds (Linux).
        """
        return len(os.listdir(f"/proc/{self.pid}/fd"))


class TwistdTestCase(IntegrationTestCase):
    """
    Base of tests that run C{twistd amqp-listen}: every process still
    running when the test ends is killed, after every other cleanup (so the
    servers outlive their clients, which then neither go reconnecting nor
    fail to close).
    """

    def setUp(self) -> None:
        super().setUp()
        self._twistds: list[Twistd] = []
        # Registered first, so run last.
        self.addCleanup(self._stopTwistds)

    def _stopTwistds(self) -> Deferred[Any]:
        """
        Kill the processes that still run.

        @return: a Deferred that fires once they have ended.
        """
        ending = [twistd.stop() for twistd in self._twistds]
        return gatherResults([d for d in ending if d is not None])

    def spawnTwistd(self, *arguments: str) -> Twistd:
        """
        Run C{twistd -n amqp-listen} with C{arguments}, killed if still
        running when the test ends.

        @param arguments: the arguments of C{amqp-listen}.
        @return: the process.
        """
        twistd = Twistd.spawn(theReactor(), *arguments)
        self._twistds.append(twistd)
        return twistd

    async def startTwistd(self, *arguments: str, port: int = 0) -> Twistd:
        """
        Run C{twistd -n amqp-listen} serving plain C{amqp} on the loopback
        interface, killed if still running when the test ends.

        @param arguments: more arguments of C{amqp-listen}.
        @param port: the port: 0 for a free one; or a given one, such as
            that of a process killed before, to start a server again where
            its clients reconnect.
        @return: the process, once it listens (on C{port}, if given).
        """
        twistd = self.spawnTwistd(
            "--listen", f"amqp:{port}:interface=127.0.0.1", *arguments
        )
        listened = await twistd.listening
        if port:
            self.assertEqual(listened, port)
        return twistd
