"""
What the benchmark programs share: their command line, their clocks, and
the JSON lines they print.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

__all__ = [
    "ECHO_ADDRESS",
    "Window",
    "clientArguments",
    "cpuSeconds",
    "currentRSS",
    "emit",
    "exitOnTerm",
    "fail",
    "maxRSS",
    "now",
    "payload",
    "serverArguments",
]

ECHO_ADDRESS = "echo"
"""
The address whose messages the servers answer, on their C{reply-to}
address, with a message of the same body and correlation id.
"""


def now() -> float:
    """
    @return: the system-wide monotonic clock (C{CLOCK_MONOTONIC} on Linux),
        in seconds: the same clock in every process of the machine, so that
        the orchestrator can compare the times of different programs.
    """
    return time.monotonic()


def cpuSeconds() -> float:
    """
    @return: the CPU time (user and system) this process has used so far.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def maxRSS() -> int:
    """
    @return: the largest resident set size of this process so far, in bytes.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def currentRSS() -> int:
    """
    @return: the resident set size of this process now, in bytes (Linux:
        from C{/proc/self/status}).
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def payload(size: int) -> bytes:
    """
    @param size: how many bytes.
    @return: a message body of that size.
    """
    return (b"amqptx-bench-" * (size // 13 + 1))[:size]


def emit(event: str, **fields: object) -> None:
    """
    Print one JSON line on standard output, at once.

    @param event: what the line says: C{"listening"}, C{"ready"},
        C{"measuring"} or C{"result"}.
    @param fields: the rest of the line.
    """
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def fail(program: str, reason: str) -> None:
    """
    Report a failure on standard error (the orchestrator shows it).

    @param program: the program's name.
    @param reason: what went wrong.
    """
    sys.stderr.write(f"{program}: {reason}\n")
    sys.stderr.flush()


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def exitOnTerm() -> None:
    """
    Make C{SIGTERM} exit through C{SystemExit}, so that a profiler running
    the program writes its results.
    """
    signal.signal(signal.SIGTERM, _exit)


class Window:
    """
    The measurement window of one program: wall clock and CPU time between
    L{start} and L{stop}.
    """

    def __init__(self) -> None:
        self.started: float | None = None
        self.stopped: float | None = None
        self._cpuStarted = 0.0
        self._cpuStopped = 0.0

    def start(self) -> None:
        """
        Open the window (again calls do nothing).
        """
        if self.started is None:
            self._cpuStarted = cpuSeconds()
            self.started = now()

    def stop(self) -> None:
        """
        Close the window (again calls do nothing).
        """
        if self.stopped is None:
            self.stopped = now()
            self._cpuStopped = cpuSeconds()

    def fields(self) -> dict[str, float]:
        """
        @return: the window's fields for the result line: C{start},
            C{end} (monotonic seconds), C{cpu} (CPU seconds used inside)
            and C{rss} (largest resident set, bytes).
        """
        assert self.started is not None and self.stopped is not None
        return {
            "start": self.started,
            "end": self.stopped,
            "cpu": self._cpuStopped - self._cpuStarted,
            "rss": maxRSS(),
        }


def clientArguments(prog: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """
    Parse a client's command line.

    @param prog: the program's name.
    @param argv: the arguments, or L{None} for C{sys.argv}.
    @return: the options.
    """
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument(
        "mode",
        choices=["send", "receive", "request", "connections"],
        help="send N messages; receive N messages; N requests, one at a time; "
        "or open --connections connections with a receiver each, and hold them",
    )
    parser.add_argument("--url", required=True, help="amqp://HOST:PORT")
    parser.add_argument("--address", default="bench")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=100, help="body size, bytes")
    parser.add_argument(
        "--window",
        type=int,
        default=100,
        help="credit a receiver grants; messages an amqptx sender queues",
    )
    parser.add_argument(
        "--presettled", action="store_true", help="send at most once (pre-settled)"
    )
    parser.add_argument(
        "--warmup", type=int, default=0, help="requests made before measuring"
    )
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument(
        "--concurrency", type=int, default=50, help="connections opening at once"
    )
    return parser.parse_args(argv)


def serverArguments(prog: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """
    Parse a server's command line.

    @param prog: the program's name.
    @param argv: the arguments, or L{None} for C{sys.argv}.
    @return: the options.
    """
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument(
        "--messages",
        type=int,
        default=0,
        help="report once this many messages arrived (0: never)",
    )
    parser.add_argument("--window", type=int, default=100, help="credit per link")
    return parser.parse_args(argv)
