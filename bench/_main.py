"""
C{python -m bench}: run the workloads, print the tables, write the JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from bench import brokered, direct, latency, scale
from bench._framework import (
    ContenderResult,
    Run,
    Settings,
    Workload,
    formatTable,
)
from bench._process import BenchError

__all__ = ["WORKLOADS", "environment", "main", "runWorkload"]

WORKLOADS = ["A", "B", "C", "D", "E"]
"""
The workloads, by letter (A is A1 and A2).
"""

_DEFAULT = Settings()

HEADER = """\
Machines are shared and noisy: absolute numbers move from run to run and from
machine to machine.  Read the ratios: every contender of a workload runs in the
same session, alternating, and "x base" is its median divided by the
baseline's (the first row).  For rates (msg/s, MB/s, req/s, conn/s) above 1 is
better than the baseline; for costs (CPU per message, latency, memory) above 1
is worse.  "runs" counts good runs; "spread" is (max - min) / median of the
first column over those runs."""


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _rabbitMQVersion() -> str | None:
    try:
        from tests.integration._rabbitmq import _sbinDirectory
    except ImportError:
        return None
    sbin = _sbinDirectory()
    if sbin is None:
        return None
    return Path(sbin).parent.name.replace("rabbitmq_server-", "")


def environment() -> dict[str, Any]:
    """
    @return: what the results were measured on: CPUs, load, Python and the
        versions of proton, Twisted, amqptx and RabbitMQ.
    """
    import amqptx

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_qpid_proton": _version("python-qpid-proton"),
        "twisted": _version("twisted"),
        "amqptx": amqptx.__version__,
        "rabbitmq": _rabbitMQVersion(),
        "command": [sys.executable, "-m", "bench", *sys.argv[1:]],
    }


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark amqptx side by side with python-qpid-proton's "
        "Container (and RabbitMQ); see bench/README.md.",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="which, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--repetitions",
        type=int,
        default=_DEFAULT.repetitions,
        help="runs of each contender (default: %(default)s)",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=_DEFAULT.messages,
        help="messages per run in A and B (default: %(default)s)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=_DEFAULT.size,
        help="message body bytes in A, B, C (default: %(default)s)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=_DEFAULT.window,
        help="credit window in A, B, C (default: %(default)s)",
    )
    parser.add_argument(
        "--round-trips",
        type=int,
        default=_DEFAULT.roundTrips,
        help="timed round trips in C (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=_DEFAULT.warmup,
        help="untimed round trips first in C (default: %(default)s)",
    )
    parser.add_argument(
        "--large-messages",
        type=int,
        default=_DEFAULT.largeMessages,
        help="messages per run in E (default: %(default)s)",
    )
    parser.add_argument(
        "--large-size",
        type=int,
        default=_DEFAULT.largeSize,
        help="their body bytes (default: %(default)s)",
    )
    parser.add_argument(
        "--large-window",
        type=int,
        default=_DEFAULT.largeWindow,
        help="credit window in E (default: %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=_DEFAULT.connections,
        help="connections in D (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=_DEFAULT.timeout,
        help="seconds any one wait may take (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every program under cProfile, writing DIR/*.prof "
        "(slows them down: the numbers are then not comparable)",
    )
    options = parser.parse_args(argv)
    chosen = [w.strip().upper() for w in options.workloads.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown or not chosen:
        parser.error(f"--workloads: choose among {', '.join(WORKLOADS)}")
    options.chosen = chosen
    for name in ("repetitions", "messages", "round_trips", "large_messages"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return options


def _workloads(settings: Settings, chosen: Sequence[str]) -> list[Workload]:
    everything = [
        *direct.workloads(settings),
        *brokered.workloads(settings),
        *latency.workloads(settings),
        *scale.workloads(settings),
    ]
    return [w for w in everything if w.key[0] in chosen]


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def runWorkload(workload: Workload, settings: Settings) -> dict[str, ContenderResult]:
    """
    Run every contender of a workload C{settings.repetitions} times,
    alternating (the order rotates from one repetition to the next).

    @param workload: the workload.
    @param settings: the benchmark's parameters.
    @return: each contender's results, by name.
    """
    results = {c.name: ContenderResult() for c in workload.contenders}
    contenders = workload.contenders
    main = workload.metrics[0]
    try:
        for repetition in range(settings.repetitions):
            shift = repetition % len(contenders) if contenders else 0
            for contender in contenders[shift:] + contenders[:shift]:
                name = f"{workload.key}-{_slug(contender.name)}-{repetition + 1}"
                run = Run(settings, name)
                began = time.monotonic()
                try:
                    measured = contender.run(run)
                except BenchError as e:
                    results[contender.name].errors.append(str(e))
                    _say(f"  {workload.key} {contender.name}: FAILED: {e}")
                    continue
                finally:
                    run.stopAll()
                results[contender.name].runs.append(measured)
                value = measured[main.key] * main.scale
                _say(
                    f"  {workload.key} {repetition + 1}/{settings.repetitions} "
                    f"{contender.name}: {value:,.{main.digits}f} {main.label} "
                    f"({time.monotonic() - began:.1f} s)"
                )
    finally:
        workload.close()
    return results


def _onTerm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the benchmark.

    @param argv: the arguments, or L{None} for C{sys.argv}.
    @return: the exit status: 0, or 1 if a run failed.
    """
    options = _arguments(argv)
    settings = Settings(
        messages=options.messages,
        size=options.size,
        window=options.window,
        repetitions=options.repetitions,
        roundTrips=options.round_trips,
        warmup=options.warmup,
        largeMessages=options.large_messages,
        largeSize=options.large_size,
        largeWindow=options.large_window,
        connections=options.connections,
        timeout=options.timeout,
        profile=options.profile,
    )
    # Children are stopped in finally blocks: let SIGTERM get there too.
    signal.signal(signal.SIGTERM, _onTerm)
    env = environment()
    began = time.monotonic()
    print(
        f"amqptx benchmark, {env['date']}: {env['cpu_count']} CPUs "
        f"(load average {env['load_average'][0]:.2f}), Python {env['python']}, "
        f"python-qpid-proton {env['python_qpid_proton']}, Twisted {env['twisted']}, "
        f"RabbitMQ {env['rabbitmq'] or 'not installed'}; "
        f"{settings.repetitions} repetitions"
    )
    print(HEADER)
    if settings.profile is not None:
        print(f"PROFILING into {settings.profile}: these numbers are not comparable")
    sys.stdout.flush()
    report: dict[str, Any] = {
        "environment": env,
        "settings": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items()
        },
        "workloads": {},
    }
    failed = False
    for workload in _workloads(settings, options.chosen):
        _say(f"{workload.title}")
        results = runWorkload(workload, settings)
        failed = failed or any(r.errors for r in results.values())
        baseline = results[workload.contenders[0].name]
        print(f"\n{workload.title}\n{formatTable(workload, results)}")
        sys.stdout.flush()
        report["workloads"][workload.key] = {
            "title": workload.title,
            "baseline": workload.contenders[0].name,
            "metrics": {
                m.key: {
                    "label": m.label,
                    "scale": m.scale,
                    "higher_is_better": m.higher,
                }
                for m in workload.metrics
            },
            "contenders": {
                name: result.summary(workload.metrics, baseline)
                for name, result in results.items()
            },
            "skipped": workload.skipped,
        }
    elapsed = time.monotonic() - began
    env["load_average_end"] = os.getloadavg()
    env["seconds"] = elapsed
    print(
        f"\nTook {elapsed:.0f} s; load average at the end "
        f"{env['load_average_end'][0]:.2f}."
    )
    busiest = max(env["load_average"][0], env["load_average_end"][0])
    if busiest > (env["cpu_count"] or 1):
        print(
            f"WARNING: load average {busiest:.2f} on {env['cpu_count']} CPUs: "
            "other work competed for the CPUs; trust CPU per message over "
            "rates, and ratios over absolutes."
        )
    if options.json is not None:
        options.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"Results written to {options.json}")
    return 1 if failed else 0
