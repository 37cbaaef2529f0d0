# -*- test-case-name: tests.integration.test_bench -*-
"""
The benchmark (C{python -m bench}) runs every workload at a tiny size, so
that it cannot rot: its programs start, talk to each other and to RabbitMQ,
and its own checks (every message received, counts match) hold.  Its
numbers mean nothing at this size and are not looked at.
"""

from __future__ import annotations

import json
import os
import sys

from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.integration._rabbitmq import requireRabbitMQ

_ROOT = FilePath(__file__).parent().parent().parent()

_TINY = [
    "--repetitions", "1",
    "--messages", "300",
    "--window", "20",
    "--round-trips", "30",
    "--warmup", "5",
    "--large-messages", "4",
    "--large-size", "100000",
    "--large-window", "2",
    "--connections", "30",
    "--timeout", "120",
]  # fmt: skip


class BenchmarkSmokeTests(TestCase):
    """
    Every workload of the benchmark, every contender, once, tiny.
    """

    timeout = 600

    async def test_everyWorkload(self) -> None:
        """
        C{python -m bench} exits with 0, and its JSON has a good run and no
        error for every contender of A1, A2, B, C, D and E, none skipped.
        """
        requireRabbitMQ()
        output = FilePath(self.mktemp())
        environment = dict(os.environ, PYTHONPATH=_ROOT.path)
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "bench", *_TINY, "--json", output.path],
            env=environment,
            path=_ROOT.path,
        )
        self.assertEqual(code, 0, err.decode()[-3000:])
        results = json.loads(output.getContent())
        workloads = results["workloads"]
        self.assertEqual(sorted(workloads), ["A1", "A2", "B", "C", "D", "E"])
        for key, workload in workloads.items():
            for name, contender in workload["contenders"].items():
                self.assertEqual(contender["errors"], [], f"{key}: {name}")
                self.assertEqual(len(contender["runs"]), 1, f"{key}: {name}")
            self.assertEqual(workload["skipped"], {}, key)
