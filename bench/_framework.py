"""
The benchmark's model: workloads of contenders measured by metrics, each
contender's repetition a L{Run} of child processes; the medians, the ratios
to the baseline, and the table.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._process import Program

__all__ = [
    "TWISTD",
    "Contender",
    "ContenderResult",
    "Metric",
    "Run",
    "Settings",
    "Workload",
    "formatTable",
]

TWISTD = "from twisted.scripts.twistd import run; run()"
"""
What C{python -c} runs to be C{twistd} (C{twisted.scripts.twistd} has no
C{__main__} block).
"""


@dataclass(frozen=True)
class Settings:
    """
    The benchmark's parameters (the command line).

    @ivar messages: messages per run of workloads A and B.
    @ivar size: their body size, in bytes.
    @ivar window: the credit receivers grant (and amqptx senders' queue
        limit) in A, B and C.
    @ivar repetitions: runs of each contender in each workload.
    @ivar roundTrips: timed request/response round trips in C.
    @ivar warmup: untimed round trips before those.
    @ivar largeMessages: messages per run of workload E.
    @ivar largeSize: their body size, in bytes.
    @ivar largeWindow: the credit (and queue limit) in E.
    @ivar connections: connections opened in workload D.
    @ivar timeout: seconds any one wait of a run may take.
    @ivar profile: a directory to write a cProfile file per program run,
        or L{None}.
    """

    messages: int = 100_000
    size: int = 100
    window: int = 100
    repetitions: int = 3
    roundTrips: int = 10_000
    warmup: int = 100
    largeMessages: int = 1_000
    largeSize: int = 1 << 20
    largeWindow: int = 10
    connections: int = 10_000
    timeout: float = 300.0
    profile: Path | None = None


@dataclass(frozen=True)
class Metric:
    """
    One measured quantity of a workload.

    @ivar key: its name in the results.
    @ivar label: its column heading (with the unit).
    @ivar scale: what the raw value is multiplied by for the table.
    @ivar digits: decimals shown in the table.
    @ivar higher: whether higher is better (a rate) or worse (a cost).
    """

    key: str
    label: str
    scale: float = 1.0
    digits: int = 0
    higher: bool = True


class Run:
    """
    One repetition of one contender: the processes it starts, all stopped
    by L{stopAll}.

    @ivar settings: the benchmark's parameters.
    @ivar programs: the processes started so far.
    """

    def __init__(self, settings: Settings, name: str) -> None:
        """
        @param settings: the benchmark's parameters.
        @param name: the run's name (used to name profile files).
        """
        self.settings = settings
        self.name = name
        self.programs: list[Program] = []
        self._cleanups: list[Callable[[], object]] = []

    def start(self, role: str, module: str, *arguments: str) -> Program:
        """
        Start C{python -m bench.programs.MODULE ARGUMENTS} (under cProfile
        when profiling).

        @param role: its part in the run (C{"server"}, C{"client"}...).
        @param module: the program's module in L{bench.programs}.
        @param arguments: its arguments.
        @return: the process.
        """
        argv = [sys.executable]
        profile = self.settings.profile
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            output = profile / f"{self.name}-{role}-{module}.prof"
            argv += ["-m", "cProfile", "-o", str(output)]
        argv += ["-m", f"bench.programs.{module}", *arguments]
        return self.adopt(Program(f"{role} ({module})", argv))

    def startTwistd(self, *arguments: str) -> Program:
        """
        Start C{twistd -n amqp-listen ARGUMENTS}, logging to its output.

        @param arguments: the arguments of C{amqp-listen}.
        @return: the process.
        """
        argv = [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile="]
        argv += ["--logfile=-", "amqp-listen", *arguments]
        return self.adopt(Program("amqp-listen", argv))

    def adopt(self, program: Program) -> Program:
        """
        Stop a program with the run's others.

        @param program: the program.
        @return: the same.
        """
        self.programs.append(program)
        return program

    def addCleanup(self, cleanup: Callable[[], object]) -> None:
        """
        Call something when the run ends, after its processes are stopped.

        @param cleanup: what to call.
        """
        self._cleanups.append(cleanup)

    def stopAll(self) -> None:
        """
        Stop every process of the run, the last started first; then call
        the cleanups, the last added first.
        """
        while self.programs:
            self.programs.pop().stop()
        while self._cleanups:
            self._cleanups.pop()()


@dataclass
class Contender:
    """
    One of the things a workload compares.

    @ivar name: its name in the table.
    @ivar run: performs one repetition, returns its metrics' values.
    """

    name: str
    run: Callable[[Run], dict[str, float]]


@dataclass
class Workload:
    """
    One benchmark: contenders compared by metrics, the first contender
    being the baseline.

    @ivar key: a short name (C{"A1"}), used to select it and in the JSON.
    @ivar title: what it measures, for the table's heading.
    @ivar metrics: what is measured; the first is the main one.
    @ivar contenders: what is compared; the first is the baseline.
    @ivar skipped: contenders left out, and why.
    @ivar note: a line printed under the table.
    @ivar close: releases what the workload's contenders share (a broker),
        after the last run.
    """

    key: str
    title: str
    metrics: list[Metric]
    contenders: list[Contender]
    skipped: dict[str, str] = field(default_factory=dict)
    note: str = ""
    close: Callable[[], None] = lambda: None


@dataclass
class ContenderResult:
    """
    What the runs of one contender measured.

    @ivar runs: each successful run's metrics.
    @ivar errors: why the other runs failed.
    """

    runs: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self, key: str) -> float | None:
        """
        @param key: a metric.
        @return: its median over the successful runs, or L{None}.
        """
        values = [run[key] for run in self.runs if key in run]
        return statistics.median(values) if values else None

    def spread(self, key: str) -> float | None:
        """
        @param key: a metric.
        @return: (largest - smallest) / median over the runs, or L{None}.
        """
        values = [run[key] for run in self.runs if key in run]
        middle = statistics.median(values) if values else 0
        if len(values) < 2 or not middle:
            return None
        return (max(values) - min(values)) / middle

    def summary(self, metrics: Sequence[Metric], baseline: ContenderResult) -> Any:
        """
        @param metrics: the workload's metrics.
        @param baseline: the baseline's result.
        @return: the JSON form: runs, errors, medians, ratios to the
            baseline.
        """
        medians = {m.key: self.median(m.key) for m in metrics}
        return {
            "runs": self.runs,
            "errors": self.errors,
            "median": medians,
            "ratio": {m.key: _ratio(self, baseline, m.key) for m in metrics},
            "spread": {m.key: self.spread(m.key) for m in metrics},
        }


def _ratio(
    result: ContenderResult, baseline: ContenderResult, key: str
) -> float | None:
    value, base = result.median(key), baseline.median(key)
    if value is None or not base:
        return None
    return value / base


def _number(value: float | None, metric: Metric) -> str:
    if value is None:
        return "-"
    return f"{value * metric.scale:,.{metric.digits}f}"


def formatTable(workload: Workload, results: dict[str, ContenderResult]) -> str:
    """
    Lay out a workload's results: per contender, each metric's median and
    its ratio to the baseline's, the number of good runs, and the spread of
    the main metric.

    @param workload: the workload.
    @param results: each contender's results, by name.
    @return: the table, as lines of text.
    """
    baseline = results[workload.contenders[0].name]
    header = ["contender"]
    for metric in workload.metrics:
        header += [metric.label, "x base"]
    header += ["runs", "spread"]
    rows = [header]
    main = workload.metrics[0].key
    for contender in workload.contenders:
        result = results[contender.name]
        name = contender.name + (" (baseline)" if result is baseline else "")
        row = [name]
        for metric in workload.metrics:
            ratio = _ratio(result, baseline, metric.key)
            row += [
                _number(result.median(metric.key), metric),
                "-" if ratio is None else f"{ratio:.2f}",
            ]
        spread = result.spread(main)
        total = len(result.runs) + len(result.errors)
        row += [
            f"{len(result.runs)}/{total}",
            "-" if spread is None else f"{spread:.0%}",
        ]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    for name, reason in workload.skipped.items():
        lines.append(f"{name}: skipped ({reason})")
    if workload.note:
        lines.append(workload.note)
    return "\n".join(lines)
