# -*- test-case-name: tests.integration.test_peers -*-
"""
Running the independent proton peers, L{tests.integration.proton_server} and
L{tests.integration.proton_client}, as subprocesses from trial tests; and
what the integration tests share to meet their peers.

L{ProtonServer} is synchronous: it blocks only while the server starts (until
it reports its port) and stops.  A client must not block the reactor when
the server under test runs in the same process, so L{spawnProtonClient}
runs it with L{IReactorProcess.spawnProcess} and returns a L{Deferred};
L{runProtonClient} is the blocking variant for when the server is another
process.

L{IntegrationTestCase}, the base of the integration tests, starts and
connects to their servers (a proton server, or amqptx's broker in this
process) and stops or closes them all when the test ends; small helpers
(L{theReactor}, L{peerPort}, L{ignoreFailure}...) go with it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, TypedDict, cast

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorProcess,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

import amqptx
from amqptx import (
    AMQPConnection,
    AMQPProtocol,
    EndpointConnector,
    ReconnectingAMQPClientFactory,
)
from amqptx.broker import Broker
from tests._certs import PKI

if TYPE_CHECKING:
    # In typing itself only from Python 3.11 on.
    from typing_extensions import Unpack

__all__ = [
    "ClientOptions",
    "ClientResult",
    "ClientTimeoutError",
    "IntegrationTestCase",
    "PeerStartupError",
    "ProtonServer",
    "REPOSITORY_ROOT",
    "TrackingFactory",
    "checkoutEnvironment",
    "clientArguments",
    "exitStatus",
    "freePort",
    "ignoreFailure",
    "jsonLines",
    "peerPort",
    "runProtonClient",
    "spawnProtonClient",
    "theReactor",
]

REPOSITORY_ROOT = str(Path(__file__).resolve().parent.parent.parent)
"""
The root of the checkout, the working directory the peers are run in.
"""

_SERVER_MODULE = "tests.integration.proton_server"
_CLIENT_MODULE = "tests.integration.proton_client"

# Mirrors proton_server.EXIT_LISTEN_FAILED without importing proton here.
_EXIT_LISTEN_FAILED = 3
_LISTEN_ATTEMPTS = 5


def freePort() -> int:
    """
    Find a TCP port on 127.0.0.1 that nothing listens on right now.

    Another process may take it before it is used; users should be ready to
    retry.

    @return: The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def checkoutEnvironment() -> dict[str, str]:
    """
    @return: the environment for a Python subprocess run in the checkout:
        this process's, with the checkout first on C{PYTHONPATH} (whatever
        the caller's path) and output unbuffered.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = (
        REPOSITORY_ROOT if not path else REPOSITORY_ROOT + os.pathsep + path
    )
    return env


class PeerStartupError(Exception):
    """
    A peer subprocess did not start.
    """


class ProtonServer:
    """
    The proton test broker, run as a subprocess in its own process group.

    Use it as a context manager, or call L{start} and arrange for L{stop} to
    be called (e.g. C{self.addCleanup(server.stop)} in a trial C{setUp}).

    @ivar tls: The PKI whose server certificate is used for C{amqps}, or
        L{None} for plain C{amqp}.
    @ivar requireClientCertificate: Whether clients must present a
        certificate signed by C{tls.caCert}.
    @ivar exitCode: The server's exit status once stopped, else L{None}.
    """

    def __init__(
        self,
        tls: PKI | None = None,
        requireClientCertificate: bool = False,
        startupTimeout: float = 20.0,
    ) -> None:
        """
        @param tls: See L{tls}.
        @param requireClientCertificate: See L{requireClientCertificate}; needs
            C{tls}.
        @param startupTimeout: Seconds to wait for the server to listen.
        """
        if requireClientCertificate and tls is None:
            raise ValueError("client certificates need TLS")
        self.tls = tls
        self.requireClientCertificate = requireClientCertificate
        self.exitCode: int | None = None
        self._startupTimeout = startupTimeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._stderrText = ""
        self._port: int | None = None

    @property
    def port(self) -> int:
        """
        The port the server listens on.

        @raise RuntimeError: If the server has not been started.
        """
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """
        The URL to connect to: C{amqp://127.0.0.1:PORT}, or with TLS
        C{amqps://localhost:PORT} (the name the server certificate is for).
        """
        if self.tls is not None:
            return f"amqps://localhost:{self.port}"
        return f"amqp://127.0.0.1:{self.port}"

    def _arguments(self, port: int) -> list[str]:
        arguments = [sys.executable, "-m", _SERVER_MODULE, "--port", str(port)]
        if self.tls is not None:
            arguments += ["--cert", self.tls.serverCert, "--key", self.tls.serverKey]
            if self.requireClientCertificate:
                arguments += ["--client-ca", self.tls.caCert]
        return arguments

    def start(self) -> None:
        """
        Start the server and wait until it listens.

        @raise PeerStartupError: If it exits or says nothing within the
            startup timeout; the message includes its standard error.
        """
        if self._process is not None:
            raise RuntimeError("server already started")
        for _ in range(_LISTEN_ATTEMPTS):
            port = freePort()
            self._launch(port)
            try:
                self._port = self._awaitListening(port)
                return
            except PeerStartupError:
                exitCode = self._terminate()
                if exitCode != _EXIT_LISTEN_FAILED:
                    raise
        raise PeerStartupError(
            f"proton server found no free port in {_LISTEN_ATTEMPTS} attempts"
        )

    def _launch(self, port: int) -> None:
        self._stderr = tempfile.TemporaryFile(prefix="proton-server-stderr-")
        self._process = subprocess.Popen(
            self._arguments(port),
            cwd=REPOSITORY_ROOT,
            env=checkoutEnvironment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )

    def _awaitListening(self, port: int) -> int:
        process = self._process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        received = b""
        deadline = time.monotonic() + self._startupTimeout
        while b"\n" not in received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"did not listen within {self._startupTimeout} s")
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                process.wait()
                self._fail(f"exited with status {process.returncode}")
            received += chunk
        line = received.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        if line != f"LISTENING {port}":
            self._fail(f"said {line!r} instead of 'LISTENING {port}'")
        return port

    def _fail(self, reason: str) -> None:
        raise PeerStartupError(f"proton server {reason}; stderr:\n{self.stderr()}")

    def stderr(self) -> str:
        """
        @return: What the server wrote to standard error so far (or, once
            stopped, in its last run).
        """
        if self._stderr is None or self._stderr.closed:
            return self._stderrText
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def _terminate(self) -> int | None:
        process = self._process
        if process is None:
            return self.exitCode
        if process.poll() is None:
            _signalGroup(process, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signalGroup(process, signal.SIGKILL)
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if self._stderr is not None:
            self._stderrText = self.stderr()
            self._stderr.close()
        self._process = None
        self._stderr = None
        self.exitCode = process.returncode
        return self.exitCode

    def stop(self) -> None:
        """
        Stop the server: C{SIGTERM}, then C{SIGKILL} if it has not exited
        within 10 seconds.  Does nothing if it is not running.
        """
        self._terminate()
        self._port = None

    def __enter__(self) -> ProtonServer:
        self.start()
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        excValue: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _signalGroup(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


@dataclass(frozen=True)
class ClientResult:
    """
    What a run of the proton client did.

    @ivar exitCode: Its exit status (negative: killed by that signal).
    @ivar bodies: The bodies of the messages it received, in order.
    @ivar stderr: What it wrote to standard error.
    @ivar done: Whether it printed its final summary line.
    @ivar correlationIds: In C{request} mode, the correlation ids of the
        replies, in order.
    """

    exitCode: int
    bodies: list[str]
    stderr: str
    done: bool = False
    correlationIds: list[str] = field(default_factory=list)


class ClientTimeoutError(Exception):
    """
    The proton client did not finish in time and was killed.

    @ivar result: What it had done when it was killed.
    """

    def __init__(self, message: str, result: ClientResult) -> None:
        super().__init__(message)
        self.result = result


_CLIENT_TIMEOUT = 30.0
"""
The proton client's default timeout for each operation, in seconds.
"""


class ClientOptions(TypedDict, total=False):
    """
    The proton client's options after C{send} and C{receive}: the keyword
    arguments of L{clientArguments}, which describes them, and so of
    L{runProtonClient} and L{spawnProtonClient}.
    """

    ca: str | None
    user: str | None
    password: str | None
    timeout: float
    request: bool
    cert: str | None
    key: str | None


def clientArguments(
    url: str,
    address: str,
    send: int = 0,
    receive: int = 0,
    ca: str | None = None,
    user: str | None = None,
    password: str | None = None,
    timeout: float = _CLIENT_TIMEOUT,
    request: bool = False,
    cert: str | None = None,
    key: str | None = None,
) -> list[str]:
    """
    Build the command line of the proton client.

    @param url: The C{amqp://} or C{amqps://} URL to connect to.
    @param address: The address to send to and receive from.
    @param send: How many messages to send.
    @param receive: How many messages to receive.
    @param ca: The PEM authority to verify the server with.
    @param user: The SASL user name.
    @param password: The SASL password.
    @param timeout: The client's timeout for each operation, in seconds.
    @param request: Send requests with a dynamic C{reply-to} and receive one
        reply for each instead.
    @param cert: A PEM client certificate to present.
    @param key: The PEM private key of C{cert}.
    @return: The arguments, starting with the interpreter.
    """
    arguments = [
        sys.executable,
        "-m",
        _CLIENT_MODULE,
        url,
        "--address",
        address,
        "--send",
        str(send),
        "--receive",
        str(receive),
        "--timeout",
        str(timeout),
    ]
    for option, value in [
        ("--ca", ca),
        ("--user", user),
        ("--password", password),
        ("--cert", cert),
        ("--key", key),
    ]:
        if value is not None:
            arguments += [option, value]
    if request:
        arguments.append("--request")
    return arguments


def jsonLines(stdout: bytes, stderr: bytes) -> tuple[list[Any], str]:
    """
    Read the output of a client that prints a JSON object a line (the proton
    client, and rhea's in L{tests.integration.test_rhea}).

    @param stdout: what it wrote to standard output.
    @param stderr: what it wrote to standard error.
    @return: the objects, in order; and its standard error as text, with a
        note of each output line that is neither blank nor JSON.
    """
    records: list[Any] = []
    stderrText = stderr.decode("utf-8", "replace")
    for line in stdout.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            stderrText += f"\n[unexpected output line: {line!r}]"
    return records, stderrText


def exitStatus(reason: Failure) -> int:
    """
    @param reason: why a process ended, as its protocol's C{processEnded}
        is told.
    @return: its exit status: negative for the signal that killed it, -1
        for a reason that is neither L{ProcessDone} nor
        L{ProcessTerminated}.
    """
    value = reason.value
    if isinstance(value, ProcessTerminated):
        if value.exitCode is not None:
            return int(value.exitCode)
        if value.signal is not None:
            return -int(value.signal)
        return 0
    if isinstance(value, ProcessDone):
        return 0
    return -1


def _result(exitCode: int, stdout: bytes, stderr: bytes) -> ClientResult:
    bodies: list[str] = []
    correlationIds: list[str] = []
    done = False
    records, stderrText = jsonLines(stdout, stderr)
    for record in records:
        if "body" in record:
            bodies.append(str(record["body"]))
            if "correlation_id" in record:
                correlationIds.append(str(record["correlation_id"]))
        elif record.get("done"):
            done = True
    return ClientResult(exitCode, bodies, stderrText, done, correlationIds)


_GRACE = 10.0


def runProtonClient(
    url: str,
    address: str,
    send: int = 0,
    receive: int = 0,
    **options: Unpack[ClientOptions],
) -> ClientResult:
    """
    Run the proton client to completion, blocking.

    Only for tests whose server is another process: this blocks the reactor.
    The parameters are those of L{clientArguments}.

    @return: What the client did.
    @raise ClientTimeoutError: If it did not exit within C{timeout} (plus a
        grace period); it is killed.
    """
    arguments = clientArguments(url, address, send, receive, **options)
    timeout = options.get("timeout", _CLIENT_TIMEOUT)
    try:
        completed = subprocess.run(
            arguments,
            cwd=REPOSITORY_ROOT,
            env=checkoutEnvironment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout + _GRACE,
        )
    except subprocess.TimeoutExpired as e:
        result = _result(-signal.SIGKILL, e.stdout or b"", e.stderr or b"")
        raise ClientTimeoutError(
            f"proton client still running after {timeout + _GRACE} s; "
            f"stderr:\n{result.stderr}",
            result,
        ) from None
    return _result(completed.returncode, completed.stdout, completed.stderr)


class _ClientProtocol(ProcessProtocol):
    def __init__(self, finished: Deferred[ClientResult]) -> None:
        self._finished = finished
        self._stdout: list[bytes] = []
        self._stderr: list[bytes] = []
        self.timedOut: float | None = None
        self.timer: IDelayedCall | None = None

    def outReceived(self, data: bytes) -> None:
        self._stdout.append(data)

    def errReceived(self, data: bytes) -> None:
        self._stderr.append(data)

    def kill(self) -> None:
        if self.transport is not None:
            try:
                self.transport.signalProcess("KILL")
            except Exception:
                # Already gone; processEnded follows.
                pass

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        result = _result(
            exitStatus(reason), b"".join(self._stdout), b"".join(self._stderr)
        )
        if self._finished.called:
            return
        if self.timedOut is not None:
            self._finished.errback(
                ClientTimeoutError(
                    f"proton client still running after {self.timedOut} s; "
                    f"stderr:\n{result.stderr}",
                    result,
                )
            )
        else:
            self._finished.callback(result)


def spawnProtonClient(
    reactor: IReactorProcess,
    url: str,
    address: str,
    send: int = 0,
    receive: int = 0,
    **options: Unpack[ClientOptions],
) -> Deferred[ClientResult]:
    """
    Run the proton client without blocking the reactor.

    The parameters after C{reactor} are those of L{clientArguments}.

    @param reactor: The reactor to spawn the process with; it must provide
        L{IReactorTime} as well.
    @return: A L{Deferred} firing with what the client did once it exits,
        or failing with L{ClientTimeoutError} if it had to be killed because
        it was still running C{timeout} (plus a grace period) seconds later.
        Cancelling it kills the client.
    """
    clock = IReactorTime(reactor)
    arguments = clientArguments(url, address, send, receive, **options)
    timeout = options.get("timeout", _CLIENT_TIMEOUT)

    def cancel(d: Deferred[ClientResult]) -> None:
        protocol.kill()

    finished: Deferred[ClientResult] = Deferred(cancel)
    protocol = _ClientProtocol(finished)
    reactor.spawnProcess(
        protocol,
        sys.executable,
        arguments,
        env=checkoutEnvironment(),
        path=REPOSITORY_ROOT,
    )

    def expire() -> None:
        protocol.timedOut = timeout + _GRACE
        protocol.kill()

    protocol.timer = clock.callLater(timeout + _GRACE, expire)
    return finished


def theReactor() -> Any:
    """
    @return: the global reactor, imported only when a test runs (after trial
        has installed the one it was asked for).
    """
    from twisted.internet import reactor

    return reactor


def ignoreFailure(reason: Failure) -> None:
    """
    Swallow a failure: of a cleanup that may find the work already done, or
    of a connection that ended as the test wanted.
    """


def peerPort(connection: AMQPConnection) -> int:
    """
    @param connection: an open connection.
    @return: the port of the server it is connected to.
    """
    assert connection.transport is not None
    port: int = connection.transport.getPeer().port  # type: ignore[attr-defined]
    return port


@implementer(IProtocolFactory)
class TrackingFactory:
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
            protocol.whenClosed().addErrback(ignoreFailure)
            for protocol in self.protocols
        ]
        return gatherResults(waiting).addCallback(lambda _: None)


class IntegrationTestCase(TestCase):
    """
    Base of the integration tests: starts servers (a proton server, or
    amqptx's broker in this process), connects clients, and stops or closes
    all of them when the test ends.
    """

    timeout = 120

    def startProtonServer(
        self, tls: PKI | None = None, requireClientCertificate: bool = False
    ) -> ProtonServer:
        """
        Start a proton server, stopped when the test ends.

        @param tls: the PKI to serve C{amqps} with, or L{None} for C{amqp}.
        @param requireClientCertificate: whether clients must present a
            certificate (needs C{tls}).
        @return: the running server.
        """
        server = ProtonServer(tls, requireClientCertificate)
        server.start()
        self.addCleanup(server.stop)
        return server

    async def listen(
        self, description: str = "amqp:0:interface=127.0.0.1"
    ) -> tuple[int, Broker]:
        """
        Serve a new L{Broker} in this process on a server endpoint; the port
        is closed, and every server connection has ended, when the test
        ends.

        @param description: the server endpoint string (with port 0); by
            default, plain C{amqp} on a free loopback port.
        @return: the port it listens on, and the broker.
        """
        broker = Broker()
        factory = TrackingFactory(broker.factory())
        port: IListeningPort = await serverFromString(theReactor(), description).listen(
            factory
        )
        self.addCleanup(factory.whenAllClosed)
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port  # type: ignore[attr-defined]
        return number, broker

    async def connect(self, url: str) -> AMQPConnection:
        """
        Connect an amqptx client with L{amqptx.connect}, closed when the test
        ends.

        @param url: the connection URL.
        @return: the open connection.
        """
        connection = await amqptx.connect(theReactor(), url)
        self.addCleanup(lambda: connection.close().addErrback(ignoreFailure))
        return connection

    async def connectEndpoint(
        self, endpoint: str | IStreamClientEndpoint
    ) -> AMQPConnection:
        """
        Connect an amqptx client through a client endpoint, closed when the
        test ends.

        @param endpoint: the endpoint, or its description string.
        @return: the open connection.
        """
        if isinstance(endpoint, str):
            target = clientFromString(theReactor(), endpoint)
        else:
            target = endpoint
        connected = await target.connect(Factory.forProtocol(AMQPConnection))
        connection = cast(AMQPConnection, connected)
        self.addCleanup(lambda: connection.close().addErrback(ignoreFailure))
        return connection

    async def failureOf(
        self, d: Deferred[Any], *expected: type[BaseException]
    ) -> BaseException:
        """
        Wait for C{d} to fail with one of C{expected}.

        @param d: the Deferred.
        @param expected: the exception types allowed.
        @return: the exception.
        """
        try:
            result = await d
        except expected as e:
            return e
        raise self.failureException(
            f"expected a failure with one of {expected}, got the result {result!r}"
        )

    def reconnecting(self, endpoint: Any) -> ReconnectingAMQPClientFactory:
        """
        Connect through C{endpoint} with a reconnecting factory (the default
        policy: 0, 0.1, 0.2 ... 10 seconds) and an L{EndpointConnector},
        which stops reconnecting and closes its connection when the test
        ends.

        @param endpoint: the client endpoint.
        @return: the factory.
        """
        factory = ReconnectingAMQPClientFactory()
        EndpointConnector(endpoint, factory).connect()

        def stop() -> Deferred[None] | None:
            factory.stopTrying()
            connection = factory.connection
            if connection is None:
                return None
            closed: Deferred[None] = connection.close()
            return closed.addErrback(ignoreFailure)

        self.addCleanup(stop)
        return factory
