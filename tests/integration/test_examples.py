# -*- test-case-name: tests.integration.test_examples -*-
"""
The example programs of the documentation run, against amqptx's server
listening in this process, and print what the documentation says.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from amqptx.broker import Broker

_ROOT = FilePath(__file__).parent().parent().parent()
_EXAMPLES = _ROOT.child("docs").child("examples")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class ExampleTests(TestCase):
    """
    Each example against a fresh server.
    """

    timeout = 60

    async def runExample(self, name: str) -> list[str]:
        """
        Run an example with the endpoint string of a new server.

        @param name: the example's file name.
        @return: the lines it printed.
        """
        port = await serverFromString(_reactor(), "amqp:0:interface=127.0.0.1").listen(
            Broker().factory()
        )
        self.addCleanup(port.stopListening)
        environment = dict(os.environ, PYTHONPATH=_ROOT.path)
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [_EXAMPLES.child(name).path, f"amqp:127.0.0.1:{port.getHost().port}"],
            env=environment,
            path=_ROOT.path,
        )
        self.assertEqual(code, 0, err.decode())
        lines: list[str] = out.decode().splitlines()
        return lines

    async def test_first(self) -> None:
        """
        The README's first program sends and receives its message.
        """
        lines = await self.runExample("first.py")
        self.assertEqual(lines, ["sent: Outcome.ACCEPTED", "received: Hello, world"])

    async def test_requestReply(self) -> None:
        """
        The request/response example gets each answer.
        """
        lines = await self.runExample("request_reply.py")
        self.assertEqual(lines[0].split(":")[0], "replies come to")
        self.assertEqual(
            [line.split(" (")[0] for line in lines[1:]],
            [
                "request 0: 'ping' -> 'PING'",
                "request 1: 'hello' -> 'HELLO'",
                "request 2: 'bye' -> 'BYE'",
            ],
        )

    async def test_outcomes(self) -> None:
        """
        The outcomes example runs to its end.
        """
        lines = await self.runExample("outcomes.py")
        self.assertIn("send: Outcome.ACCEPTED", lines)
