# -*- test-case-name: tests.integration.test_examples -*-
"""
The example programs of the documentation run, against amqptx's server
listening in this process, and print what the documentation says.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from amqptx._tap import AMQPServerService, Options, makeService

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

    async def runExample(self, name: str, *options: str) -> list[str]:
        """
        Run an example with the endpoint string of a new server.

        @param name: the example's file name.
        @param options: options of C{twistd amqp-listen} for the server, as
            the documentation gives them.
        @return: the lines it printed.
        """
        parsed = Options()
        parsed.parseOptions(["--listen", "amqp:0:interface=127.0.0.1", *options])
        service = makeService(parsed)
        assert isinstance(service, AMQPServerService)
        service.startService()
        self.addCleanup(service.stopService)
        address = service.ports[0].getHost()
        assert isinstance(address, IPv4Address)
        port = address.port
        environment = dict(os.environ, PYTHONPATH=_ROOT.path)
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [_EXAMPLES.child(name).path, f"amqp:127.0.0.1:{port}"],
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

    async def test_request(self) -> None:
        """
        The request() example gets its replies, one at a time and several at
        once, times out where nobody answers, and its responder's C{async
        for} ends when its receiver is closed.
        """
        lines = await self.runExample("request.py")
        self.assertEqual(
            lines,
            [
                "ping -> PING",
                "['alpha', 'beta', 'gamma'] -> ['ALPHA', 'BETA', 'GAMMA']",
                "no reply from 'nobody' within 0.5 s",
                "responder: the receiver was closed",
            ],
        )

    async def test_backpressure(self) -> None:
        """
        Against a server whose queues hold 20 messages, the back-pressure
        example fills its send queue, gets L{amqptx.SendQueueFull} beyond it,
        and then sends everything as a consumer makes room.
        """
        lines = await self.runExample("backpressure.py", "--max-queue-depth", "20")
        self.assertEqual(
            lines,
            [
                "the server holds 20; waiting for credit: 5",
                "SendQueueFull: 5 messages to 'examples-jobs' already wait for "
                "credit; wait for whenReady()",
                "producer: every message settled; unsettled: 0",
                "consumer: 100 messages, in order: True",
            ],
        )

    async def test_consumers(self) -> None:
        """
        The producer's close() waits for its outcomes, so the consumers get
        every message: through onMessage, and through C{async for}.
        """
        lines = await self.runExample("consumers.py")
        self.assertEqual(
            lines,
            [
                "producer: closed, every message settled",
                "onMessage: event 0",
                "onMessage: event 1",
                "onMessage: event 2",
                "async for: task 0",
                "async for: task 1",
                "async for: task 2",
                "async for: done, receiver closed",
            ],
        )

    async def test_service(self) -> None:
        """
        The AMQPClientService example sends and receives through the
        service's connection, and has none once stopped.
        """
        lines = await self.runExample("service.py")
        self.assertEqual(
            lines,
            [
                "sent 0: Outcome.ACCEPTED; received 0",
                "sent 1: Outcome.ACCEPTED; received 1",
                "sent 2: Outcome.ACCEPTED; received 2",
                "stopped: no connection any more",
            ],
        )

    async def test_permissions(self) -> None:
        """
        With the users, options and permissions file the documentation
        gives, each user may do what the permissions example says.
        """
        lines = await self.runExample(
            "permissions.py",
            "--auth",
            "memory:alice:secret:bob:hunter2",
            "--allow-anonymous",
            "--allow-insecure-plain",
            "--permissions",
            _EXAMPLES.child("permissions.txt").path,
        )
        refused = "amqp:unauthorized-access"
        self.assertEqual(
            lines,
            [
                "alice may send orders",
                f"alice may not receive orders: {refused}",
                "alice may send chat/lobby",
                f"alice may not send topic/news: {refused}",
                f"alice may not receive topic/news: {refused}",
                f"bob may not send orders: {refused}",
                "bob may receive orders",
                "bob may send chat/lobby",
                "bob may send topic/news",
                f"bob may not receive topic/news: {refused}",
                f"anonymous may not send orders: {refused}",
                f"anonymous may not receive orders: {refused}",
                f"anonymous may not send chat/lobby: {refused}",
                f"anonymous may not send topic/news: {refused}",
                "anonymous may receive topic/news",
            ],
        )
