"""
The benchmark's child processes: started in a session of their own, their
JSON lines read as they come, their CPU time and memory read from C{/proc},
and stopped (the whole process group) even when something failed.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "BenchError",
    "Program",
    "childEnvironment",
    "cpuSeconds",
    "rssBytes",
]

ROOT = str(Path(__file__).resolve().parent.parent)
"""
The checkout: the working directory of every child, first on its path.
"""

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_STOP_GRACE = 5.0


class BenchError(Exception):
    """
    A run of the benchmark went wrong: a program failed, or did not answer
    in time.
    """


def childEnvironment() -> dict[str, str]:
    """
    @return: the environment of the children: this process's, with the
        checkout first on C{PYTHONPATH} and output unbuffered.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = ROOT if not path else ROOT + os.pathsep + path
    return env


def cpuSeconds(pid: int) -> float:
    """
    @param pid: a process id.
    @return: the CPU time (user and system, all threads) the process has
        used, from C{/proc/PID/stat}.
    @raise BenchError: if the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError as e:
        raise BenchError(f"cannot read the CPU time of process {pid}: {e}") from None
    # The command name is in parentheses and may hold anything: count the
    # fields after the last closing one (utime and stime are fields 14, 15).
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rssBytes(pid: int) -> int:
    """
    @param pid: a process id.
    @return: its resident set size now, in bytes, from C{/proc/PID/status}.
    @raise BenchError: if the process is gone.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError as e:
        raise BenchError(f"cannot read the memory of process {pid}: {e}") from None
    raise BenchError(f"no VmRSS for process {pid}")


class Program:
    """
    One child process, in its own session (so that L{stop} ends all it
    started), its standard output read line by line on a thread.

    @ivar label: a name for messages.
    @ivar process: the child.
    """

    def __init__(self, label: str, argv: Sequence[str]) -> None:
        """
        Start the child.

        @param label: a name for messages.
        @param argv: the command line.
        """
        self.label = label
        self._argv = list(argv)
        self._stderr = tempfile.TemporaryFile()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._output: list[str] = []
        self.process = subprocess.Popen(
            self._argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
            env=childEnvironment(),
            start_new_session=True,
        )
        threading.Thread(target=self._read, name=f"bench-{label}", daemon=True).start()

    @property
    def pid(self) -> int:
        """
        The child's process id.
        """
        return self.process.pid

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line.decode("utf-8", "replace"))
        self._lines.put(None)

    def _nextLine(self, deadline: float, waitingFor: str) -> str:
        remaining = deadline - time.monotonic()
        try:
            line = self._lines.get(timeout=max(0.0, remaining))
        except queue.Empty:
            raise BenchError(
                f"{self.label} said no {waitingFor} within the timeout"
                + self.diagnostics()
            ) from None
        if line is None:
            self._lines.put(None)
            status = self.process.wait()
            raise BenchError(
                f"{self.label} exited (status {status}) before its {waitingFor}"
                + self.diagnostics()
            )
        self._output.append(line)
        return line

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """
        Wait for the child's next JSON line of an event.

        @param event: the C{"event"} of the line.
        @param timeout: seconds to wait.
        @return: the line, decoded.
        @raise BenchError: if the child ends or says nothing of it in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            line = self._nextLine(deadline, f'"{event}" line')
            if not line.startswith("{"):
                continue
            try:
                decoded = json.loads(line)
            except ValueError:
                continue
            if isinstance(decoded, dict) and decoded.get("event") == event:
                return decoded

    def expectPattern(self, pattern: str, timeout: float) -> re.Match[str]:
        """
        Wait for an output line matching a regular expression.

        @param pattern: the expression.
        @param timeout: seconds to wait.
        @return: the match.
        @raise BenchError: if the child ends or prints no such line in time.
        """
        expression = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = expression.search(self._nextLine(deadline, repr(pattern)))
            if match is not None:
                return match

    def cpu(self) -> float:
        """
        @return: the CPU seconds the child has used so far.
        """
        return cpuSeconds(self.pid)

    def rss(self) -> int:
        """
        @return: the child's resident set size now, in bytes.
        """
        return rssBytes(self.pid)

    def wait(self, timeout: float) -> None:
        """
        Wait for the child to exit, successfully.

        @param timeout: seconds to wait.
        @raise BenchError: if it failed or still runs after the timeout.
        """
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(
                f"{self.label} did not exit within {timeout:.0f} s"
            ) from None
        if status != 0:
            raise BenchError(
                f"{self.label} exited with status {status}" + self.diagnostics()
            )

    def diagnostics(self) -> str:
        """
        @return: the command line and the end of the child's output, to
            explain a failure.
        """
        stderr = ""
        if not self._stderr.closed:
            self._stderr.seek(0)
            stderr = self._stderr.read().decode("utf-8", "replace")
        tail = (("".join(self._output[-10:])) + stderr)[-3000:]
        command = " ".join(self._argv)
        return f"\n  command: {command}\n  output:\n{tail}"

    def stop(self) -> None:
        """
        End the child (its process group): C{SIGTERM}, then C{SIGKILL} after
        a few seconds.  Safe to call more than once.
        """
        process = self.process
        if process.poll() is None:
            # Signalled by its id while it is still ours (not yet reaped).
            self._signal(signal.SIGTERM)
            try:
                process.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
