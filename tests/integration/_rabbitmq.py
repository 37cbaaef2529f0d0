# -*- test-case-name: tests.integration.test_harness -*-
"""
A private, loopback-only RabbitMQ node for integration tests.

L{RabbitMQNode} runs the C{rabbitmq-server} script of the Debian package
directly (not the C{/usr/sbin} wrapper, which switches user) with every piece
of state -- configuration, Erlang cookie, Mnesia database, logs -- in one
temporary directory, on ports chosen at random among the free ones, with its
own C{epmd} on a private port.  Nothing it starts binds to anything but the
loopback interface, and L{RabbitMQNode.stop} leaves no process behind.

The node enables the AMQP 1.0 plugin, listens for plain TCP and for TLS (with
the certificates of L{tests._certs.sharedPKI} by default) and accepts SASL
C{ANONYMOUS} and C{PLAIN} with C{guest}/C{guest}.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import IO, NoReturn

from twisted.trial.unittest import SkipTest

from tests._certs import PKI, sharedPKI

__all__ = [
    "AMQP_SASL_HEADER",
    "RabbitMQNode",
    "RabbitMQStartError",
    "processRunning",
    "rabbitMQAvailable",
    "requireRabbitMQ",
    "sharedNode",
]

#: The protocol header a client sends to start the AMQP 1.0 SASL layer; a
#: broker offering SASL answers with the same eight bytes.
AMQP_SASL_HEADER = b"AMQP\x03\x01\x00\x00"

_SBIN_GLOB = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin"
_REQUIRE_ENV = "AMQPTX_REQUIRE_RABBITMQ"
_EPMD_READY = b"entering the main select() loop"
_LOG_TAIL_LINES = 60


def _versionKey(path: str) -> tuple[int, ...]:
    match = re.search(r"rabbitmq_server-([0-9.]+)", path)
    if match is None:
        return ()
    return tuple(int(part) for part in match.group(1).split(".") if part)


def _sbinDirectory() -> str | None:
    """
    Find the C{sbin} directory of the newest installed RabbitMQ server.

    @return: Its path, or L{None} if no server is installed.
    """
    candidates = [
        path
        for path in glob.glob(_SBIN_GLOB)
        if os.access(os.path.join(path, "rabbitmq-server"), os.X_OK)
    ]
    if not candidates:
        return None
    return max(candidates, key=_versionKey)


def _epmdExecutable() -> str | None:
    found = shutil.which("epmd")
    if found is not None:
        return found
    candidates = sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))
    return candidates[-1] if candidates else None


def rabbitMQAvailable() -> bool:
    """
    Tell whether a RabbitMQ server (and Erlang's C{epmd}) is installed.

    @return: C{True} if L{RabbitMQNode} can be started.
    """
    return _sbinDirectory() is not None and _epmdExecutable() is not None


def requireRabbitMQ() -> None:
    """
    Skip the calling test if RabbitMQ is not installed.

    If the environment variable C{AMQPTX_REQUIRE_RABBITMQ} is C{1} a missing
    installation is an error instead, so that continuous integration cannot
    silently skip the integration tests.

    @raise SkipTest: If RabbitMQ is missing and not required.
    @raise RuntimeError: If RabbitMQ is missing but required.
    """
    if rabbitMQAvailable():
        return
    if os.environ.get(_REQUIRE_ENV) == "1":
        raise RuntimeError(
            f"rabbitmq-server is not installed but {_REQUIRE_ENV}=1 requires it"
        )
    raise SkipTest("rabbitmq-server is not installed")


def processRunning(pid: int) -> bool:
    """
    Tell whether a process exists and is not a zombie.

    @param pid: The process id.
    @return: C{True} if the process is alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    # The command name is in parentheses and may contain anything; the state
    # is the first field after the last closing parenthesis.
    fields = stat[stat.rfind(b")") + 1 :].split()
    return not fields or fields[0] not in (b"Z", b"X")


def _descendants(pid: int) -> list[int]:
    """
    List the descendants of a process, read from C{/proc}.

    @param pid: The ancestor.
    @return: The process ids of its children, grandchildren, and so on.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 1 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _freePorts(count: int) -> list[int]:
    """
    Find distinct TCP ports on 127.0.0.1 that are free right now.

    @param count: How many ports.
    @return: The port numbers.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tail(path: str, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _killProcess(process: subprocess.Popen[bytes], timeout: float) -> None:
    """
    Terminate a child process, forcibly if it does not exit in time.

    @param process: The child.
    @param timeout: Seconds to wait after C{SIGTERM} before C{SIGKILL}.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RabbitMQStartError(Exception):
    """
    A L{RabbitMQNode} did not start.

    @ivar addressInUse: C{True} if the failure looks like a port taken by
        another process between choosing it and binding it.
    """

    def __init__(self, message: str, addressInUse: bool = False) -> None:
        super().__init__(message)
        self.addressInUse = addressInUse


_liveNodes: set[RabbitMQNode] = set()


@atexit.register
def _stopLiveNodes() -> None:
    for node in list(_liveNodes):
        node.stop()


class RabbitMQNode:
    """
    A private RabbitMQ node with the AMQP 1.0 plugin, on loopback only.

    Use L{start} and L{stop}, or the node as a context manager.  Ports and the
    state directory are chosen on the first L{start} and kept by L{restart}.

    @ivar pki: The certificates the TLS listener uses.
    @ivar nodeName: The Erlang node name, unique per node.
    @ivar directory: The directory holding all the node's state, or L{None}
        before the first start and after L{stop}.
    @ivar pid: The operating system process id of the Erlang VM running the
        broker, or L{None} when it is not running.
    @ivar startTimeout: Seconds L{start} waits for the broker.
    @ivar stopTimeout: Seconds L{stop} waits for a graceful shutdown.
    """

    directory: str | None
    pid: int | None

    def __init__(
        self,
        pki: PKI | None = None,
        startTimeout: float = 120.0,
        stopTimeout: float = 60.0,
    ) -> None:
        """
        @param pki: The certificates for the TLS listener; by default
            L{tests._certs.sharedPKI}.
        @param startTimeout: Seconds L{start} waits for the broker.
        @param stopTimeout: Seconds L{stop} waits for a graceful shutdown.
        """
        self.pki = pki if pki is not None else sharedPKI()
        self.startTimeout = startTimeout
        self.stopTimeout = stopTimeout
        self.nodeName = f"amqptx{os.getpid()}x{secrets.token_hex(4)}@localhost"
        self.directory = None
        self.pid = None
        self._ports: tuple[int, int, int, int] | None = None
        self._sbin: str | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._serverLog: IO[bytes] | None = None

    # Ports and addresses

    def _portsOrRaise(self) -> tuple[int, int, int, int]:
        if self._ports is None:
            raise RuntimeError("the node has not been started")
        return self._ports

    @property
    def port(self) -> int:
        """
        The AMQP (plain TCP) port on 127.0.0.1.
        """
        return self._portsOrRaise()[0]

    @property
    def tlsPort(self) -> int:
        """
        The AMQP over TLS port on 127.0.0.1.
        """
        return self._portsOrRaise()[1]

    @property
    def distPort(self) -> int:
        """
        The Erlang distribution port of the node.
        """
        return self._portsOrRaise()[2]

    @property
    def epmdPort(self) -> int:
        """
        The port of the node's private C{epmd}.
        """
        return self._portsOrRaise()[3]

    @property
    def url(self) -> str:
        """
        The plain AMQP URL, C{amqp://127.0.0.1:PORT}.
        """
        return f"amqp://127.0.0.1:{self.port}"

    @property
    def tlsURL(self) -> str:
        """
        The TLS AMQP URL, C{amqps://localhost:TLSPORT} (the host name the
        server certificate names).
        """
        return f"amqps://localhost:{self.tlsPort}"

    @property
    def epmdPid(self) -> int | None:
        """
        The process id of the node's private C{epmd}, or L{None} if it is
        not running.
        """
        if self._epmd is None or self._epmd.poll() is not None:
            return None
        return self._epmd.pid

    @property
    def serverScriptPid(self) -> int | None:
        """
        The process id of the C{rabbitmq-server} shell script (the leader of
        the broker's process group), or L{None} if it is not running.
        """
        if self._server is None or self._server.poll() is not None:
            return None
        return self._server.pid

    @property
    def running(self) -> bool:
        """
        Whether the broker process is running.
        """
        return self.serverScriptPid is not None

    # Files and environment

    def _path(self, name: str) -> str:
        if self.directory is None:
            raise RuntimeError("the node has no state directory")
        return os.path.join(self.directory, name)

    @property
    def serverLogPath(self) -> str:
        """
        The file receiving the broker's standard output and error (which
        includes its log).
        """
        return self._path("server.log")

    def _environment(self) -> dict[str, str]:
        port, _, distPort, epmdPort = self._portsOrRaise()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_"))
        }
        env.update(
            {
                "HOME": self._path(""),
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "ERL_EPMD_PORT": str(epmdPort),
                "ERL_CRASH_DUMP": self._path("erl_crash.dump"),
                "RABBITMQ_NODENAME": self.nodeName,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(port),
                "RABBITMQ_DIST_PORT": str(distPort),
                "RABBITMQ_CONFIG_FILE": self._path("rabbitmq.conf"),
                # Neither exists: keep /etc/rabbitmq out of the picture.
                "RABBITMQ_CONF_ENV_FILE": self._path("rabbitmq-env.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": self._path("advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": self._path("enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": self._path("mnesia"),
                "RABBITMQ_LOG_BASE": self._path("log"),
                "RABBITMQ_PID_FILE": self._path("rabbitmq.pid"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                    "-kernel inet_dist_use_interface {127,0,0,1}"
                ),
                # The command line tools are Erlang nodes too: let them
                # listen on an ephemeral loopback port instead of 35672-35682.
                "RABBITMQ_CTL_DIST_PORT_MIN": "0",
                "RABBITMQ_CTL_DIST_PORT_MAX": "0",
                "RABBITMQ_CTL_ERL_ARGS": (
                    "-kernel inet_dist_use_interface {127,0,0,1}"
                ),
            }
        )
        return env

    def _writeConfiguration(self) -> None:
        port, tlsPort, _, _ = self._portsOrRaise()
        config = f"""\
listeners.tcp.default = 127.0.0.1:{port}
listeners.ssl.default = 127.0.0.1:{tlsPort}
ssl_options.cacertfile = {self.pki.caCert}
ssl_options.certfile = {self.pki.serverCert}
ssl_options.keyfile = {self.pki.serverKey}
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
amqp1_0.default_user = guest
amqp1_0.default_vhost = /
amqp1_0.protocol_strict_mode = false
disk_free_limit.absolute = 50MB
"""
        with open(self._path("rabbitmq.conf"), "w") as f:
            f.write(config)
        with open(self._path("enabled_plugins"), "w") as f:
            f.write("[rabbitmq_amqp1_0].\n")
        cookie = os.open(
            self._path(".erlang.cookie"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400
        )
        with os.fdopen(cookie, "w") as f:
            f.write(secrets.token_hex(16).upper())

    # Command line tools

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """
        Run C{rabbitmqctl} against this node.

        @param args: The command and its arguments, e.g. C{"list_queues"}.
        @param timeout: Seconds before the tool is killed.
        @return: The tool's standard output.
        @raise subprocess.CalledProcessError: If the tool fails; its output
            (standard output and error together) is on the exception.
        @raise subprocess.TimeoutExpired: If it takes too long.
        """
        return self._tool("rabbitmqctl", args, timeout)

    def _tool(self, name: str, args: Sequence[str], timeout: float) -> str:
        if self._sbin is None:
            raise RuntimeError("the node has not been started")
        result = subprocess.run(
            [os.path.join(self._sbin, name), *args],
            env=self._environment(),
            cwd=self._path(""),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=True,
        )
        return result.stdout.decode("utf-8", "replace")

    # Life cycle

    def start(self) -> None:
        """
        Start the node and block until it accepts AMQP 1.0 connections.

        The first start chooses free ports and creates the state directory; a
        start after L{stop} does that anew.

        @raise RabbitMQStartError: If the node does not come up; the message
            includes the tail of the server's output.
        """
        if self.running:
            return
        attempts = 3 if self.directory is None else 1
        for attempt in range(attempts):
            if self.directory is None:
                self._prepare()
            try:
                self._startEpmd()
                self._startServer()
            except RabbitMQStartError as e:
                if e.addressInUse and attempt + 1 < attempts:
                    self.stop()
                    continue
                self.stop()
                raise
            except BaseException:
                self.stop()
                raise
            _liveNodes.add(self)
            return

    def _prepare(self) -> None:
        sbin = _sbinDirectory()
        epmd = _epmdExecutable()
        if sbin is None or epmd is None:
            raise RuntimeError("rabbitmq-server is not installed")
        self._sbin = sbin
        p = _freePorts(4)
        self._ports = (p[0], p[1], p[2], p[3])
        self.directory = tempfile.mkdtemp(prefix="amqptx-rabbitmq-")
        self._writeConfiguration()

    def _startEpmd(self) -> None:
        """
        Start the node's own C{epmd} in the foreground and wait until it
        listens.

        Starting it here rather than letting the Erlang VM spawn a daemon
        makes it our child, so L{stop} can kill and reap it.
        """
        if self._epmd is not None and self._epmd.poll() is None:
            return
        epmd = _epmdExecutable()
        assert epmd is not None
        process = subprocess.Popen(
            [epmd, "-d", "-d", "-port", str(self.epmdPort), "-address", "127.0.0.1"],
            env=self._environment(),
            cwd=self._path(""),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._epmd = process
        ready = threading.Event()
        logPath = self._path("epmd.log")

        def drain() -> None:
            assert process.stdout is not None
            with open(logPath, "ab") as log:
                for line in process.stdout:
                    log.write(line)
                    log.flush()
                    if _EPMD_READY in line:
                        ready.set()
            ready.set()

        threading.Thread(target=drain, name="epmd-log", daemon=True).start()
        if not ready.wait(30) or process.poll() is not None:
            log = _tail(logPath)
            raise RabbitMQStartError(
                f"epmd did not start on port {self.epmdPort}:\n{log}",
                addressInUse="already" in log
                or "eaddrinuse" in log.lower()
                or "dist_port_already_used" in log,
            )

    def _startServer(self) -> None:
        assert self._sbin is not None
        try:
            os.unlink(self._path("rabbitmq.pid"))
        except FileNotFoundError:
            pass
        self._serverLog = open(self.serverLogPath, "ab")
        self._server = subprocess.Popen(
            [os.path.join(self._sbin, "rabbitmq-server")],
            env=self._environment(),
            cwd=self._path(""),
            stdin=subprocess.DEVNULL,
            stdout=self._serverLog,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # "wait --pid" returns when the broker and its plugins are running,
        # or fails as soon as the given process is gone -- which, for a child
        # of ours, means reaped: an unreaped zombie still answers kill(pid, 0).
        threading.Thread(
            target=self._server.wait, name="rabbitmq-reaper", daemon=True
        ).start()
        timeout = max(1, int(self.startTimeout))
        try:
            self.ctl(
                "wait",
                "--pid",
                str(self._server.pid),
                "--timeout",
                str(timeout),
                timeout=timeout + 30,
            )
        except subprocess.CalledProcessError as e:
            self._startFailed(
                "rabbitmqctl wait failed: "
                + e.output.decode("utf-8", "replace").strip()
            )
        except subprocess.TimeoutExpired:
            self._startFailed(f"rabbitmqctl wait timed out after {timeout} s")
        try:
            with open(self._path("rabbitmq.pid")) as f:
                self.pid = int(f.read().strip())
        except (OSError, ValueError) as e:
            self._startFailed(f"cannot read the broker's pid file: {e}")
        self._checkAMQP()

    def _checkAMQP(self) -> None:
        """
        Check that the AMQP port answers the SASL protocol header.
        """
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                s.sendall(AMQP_SASL_HEADER)
                answer = b""
                while len(answer) < len(AMQP_SASL_HEADER):
                    chunk = s.recv(len(AMQP_SASL_HEADER) - len(answer))
                    if not chunk:
                        break
                    answer += chunk
        except OSError as e:
            self._startFailed(f"AMQP port {self.port} does not answer: {e}")
        if answer != AMQP_SASL_HEADER:
            self._startFailed(
                f"AMQP port {self.port} answered {answer!r} to the SASL header"
            )

    def _startFailed(self, reason: str) -> NoReturn:
        """
        Kill what was started and raise L{RabbitMQStartError}.

        @param reason: What went wrong.
        @raise RabbitMQStartError: Always.
        """
        self._killServer()
        log = _tail(self.serverLogPath)
        raise RabbitMQStartError(
            f"RabbitMQ node {self.nodeName} did not start: {reason}\n"
            f"--- tail of {self.serverLogPath} ---\n{log}",
            # The port may also have gone, between our choosing it and the
            # node binding it, to rabbitmqctl's own Erlang node.
            addressInUse="eaddrinuse" in log.lower() or "dist_port_already_used" in log,
        )

    def _stopServer(self) -> None:
        """
        Stop the broker gracefully, or kill it; keep C{epmd} and the state.
        """
        if self._server is None:
            return
        # The VM's helpers (erl_child_setup, inet_gethost, ...) live in
        # sessions of their own; note them now to make sure they are gone.
        leftovers = _descendants(self._server.pid)
        if self._server.poll() is None:
            try:
                # With the pid file, "stop" waits for the VM to exit.
                self.ctl(
                    "stop",
                    self._path("rabbitmq.pid"),
                    timeout=self.stopTimeout,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pass
            try:
                self._server.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._killServer(leftovers)

    def _killServer(self, leftovers: Sequence[int] = ()) -> None:
        """
        Kill whatever is left of the broker: its process group, the Erlang
        VM and the helpers the VM puts in sessions of their own.

        @param leftovers: Process ids of former descendants of the broker to
            kill too if they are still running.
        """
        server = self._server
        if server is not None:
            pids = set(leftovers)
            if self.pid is not None:
                pids.add(self.pid)
            if server.poll() is None:
                pids.update(_descendants(server.pid))
                try:
                    os.killpg(server.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in pids:
                if processRunning(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            server.wait()
            self._server = None
        if self._serverLog is not None:
            self._serverLog.close()
            self._serverLog = None
        self.pid = None

    def stop(self) -> None:
        """
        Stop the node, its C{epmd} and anything else it started, and remove
        its state directory.  Safe to call more than once.
        """
        _liveNodes.discard(self)
        self._stopServer()
        if self._epmd is not None:
            _killProcess(self._epmd, 10)
            if self._epmd.stdout is not None:
                self._epmd.stdout.close()
            self._epmd = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def restart(self) -> None:
        """
        Stop the broker and start it again on the same ports with the same
        state (queues and messages survive as a durable broker's would).
        """
        if self.directory is None:
            raise RuntimeError("the node has not been started")
        self._stopServer()
        try:
            self._startEpmd()
            self._startServer()
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> RabbitMQNode:
        self.start()
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        excValue: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        ports = "" if self._ports is None else f" port={self.port}"
        return f"<RabbitMQNode {self.nodeName}{ports} running={self.running}>"


_shared: RabbitMQNode | None = None
_sharedFailure: RabbitMQStartError | None = None


def sharedNode() -> RabbitMQNode:
    """
    Return a running node shared by all the tests of the process.

    Trial ignores C{setUpClass} and C{tearDownClass}, so tests that want a
    broker without paying its start-up time call this from C{setUp}.  The
    node is started on first use and stopped when the process exits.  Tests
    may L{RabbitMQNode.restart} it but must not stop it; if it is found not
    running anyway, a new node (with new ports) replaces it.

    @return: The running shared node.
    @raise SkipTest: If RabbitMQ is not installed (see L{requireRabbitMQ}).
    @raise RabbitMQStartError: If it cannot be started; after one failure,
        every later call raises the same error at once.
    """
    global _shared, _sharedFailure
    requireRabbitMQ()
    if _sharedFailure is not None:
        raise _sharedFailure
    if _shared is not None and not _shared.running:
        _shared.stop()
        _shared = None
    if _shared is None:
        node = RabbitMQNode()
        try:
            node.start()
        except RabbitMQStartError as e:
            _sharedFailure = e
            raise
        _shared = node
    return _shared
