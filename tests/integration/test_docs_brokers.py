# -*- test-case-name: tests.integration.test_docs_brokers -*-
# mypy: disable-error-code="no-untyped-call"
"""
What C{docs/brokers.rst} says of RabbitMQ holds against the real RabbitMQ
node of the integration tests (L{tests.integration._rabbitmq.sharedNode}):
its example program runs, over plain TCP, TLS and in a virtual host, and
the address forms and limits the page lists behave as it says.
"""

from __future__ import annotations

import sys
import uuid

from proton import Message
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath

import amqptx
from amqptx import Outcome
from tests._certs import sharedPKI
from tests.integration._peers import (
    REPOSITORY_ROOT,
    IntegrationTestCase,
    checkoutEnvironment,
    theReactor,
)
from tests.integration._rabbitmq import RabbitMQNode, requireRabbitMQ, sharedNode

_EXAMPLE = (
    FilePath(REPOSITORY_ROOT).child("docs").child("examples").child("rabbitmq.py")
)

#: What the example prints, as the page shows it.
EXAMPLE_OUTPUT = [
    "queue: sent Outcome.ACCEPTED, received 'order 1'",
    "topic: /topic/prices.* received 'EUR 1.08'",
    "request: 'ping' -> 'PING' (replies to /queue/examples-replies)",
    "dynamic receiver: amqp:not-implemented (Dynamic sources not supported)",
]


class RabbitMQDocTests(IntegrationTestCase):
    """
    The RabbitMQ part of the brokers page, against RabbitMQ 3.10's AMQP 1.0
    plugin.
    """

    node: RabbitMQNode

    def setUp(self) -> None:
        requireRabbitMQ()
        self.node = sharedNode()

    def unique(self, stem: str) -> str:
        """
        @param stem: what the name is for.
        @return: a name no other test uses.
        """
        return f"amqptx-docs-{stem}-{uuid.uuid4().hex[:10]}"

    async def runExample(self, description: str) -> list[str]:
        """
        Run C{docs/examples/rabbitmq.py}.

        @param description: its client endpoint string.
        @return: the lines it printed; it must have succeeded.
        """
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [_EXAMPLE.path, description],
            env=checkoutEnvironment(),
            path=REPOSITORY_ROOT,
        )
        self.assertEqual(code, 0, err.decode())
        lines: list[str] = out.decode().splitlines()
        return lines

    def queues(self, vhost: str = "/") -> dict[str, str]:
        """
        @param vhost: a virtual host.
        @return: its queues' names, each with whether it is durable.
        """
        output = self.node.ctl("list_queues", "-q", "-p", vhost, "name", "durable")
        found = {}
        for line in output.splitlines():
            fields = line.split("\t")
            if len(fields) == 2 and fields[0] != "name":
                found[fields[0]] = fields[1]
        return found

    async def test_example(self) -> None:
        """
        The example prints what the page shows, twice in a row: what it
        leaves on the broker does not disturb it.
        """
        description = f"amqp:localhost:{self.node.port}"
        self.assertEqual(await self.runExample(description), EXAMPLE_OUTPUT)
        self.assertEqual(await self.runExample(description), EXAMPLE_OUTPUT)

    async def test_exampleOverTLS(self) -> None:
        """
        Over C{amqps}, with the CA as trust root and PLAIN as guest, the
        example runs the same.
        """
        description = (
            f"amqps:localhost:{self.node.tlsPort}:trustRoots={sharedPKI().caCert}"
            ":user=guest:password=guest"
        )
        self.assertEqual(await self.runExample(description), EXAMPLE_OUTPUT)

    async def test_virtualHost(self) -> None:
        """
        C{virtualHost=vhost:NAME} puts the example's queues in that virtual
        host; a plain name selects the default one; in a virtual host the
        user may not use, the connection opens, then closes with
        C{amqp:unauthorized-access} as its first session begins.
        """
        vhost = self.unique("vhost")
        self.node.ctl("add_vhost", vhost)
        self.node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        self.addCleanup(self.node.ctl, "delete_vhost", vhost)
        lines = await self.runExample(
            rf"amqp:localhost:{self.node.port}:virtualHost=vhost\:{vhost}"
        )
        self.assertEqual(lines, EXAMPLE_OUTPUT)
        self.assertLessEqual(
            {"examples", "examples-service", "examples-replies"},
            set(self.queues(vhost)),
        )

        address = f"/queue/{self.unique('default')}"
        connection = await amqptx.connect(
            theReactor(), self.node.url, virtualHost=vhost
        )
        await connection.send(address, Message(body="x"))
        await connection.close()
        self.assertIn(address[len("/queue/") :], self.queues("/"))

        # RabbitMQ opens the connection, then closes it when the first
        # session begins.
        refused = await amqptx.connect(
            theReactor(), self.node.url, virtualHost=f"vhost:{self.unique('none')}"
        )
        error = await self.failureOf(
            refused.send(address, Message(body="x")), amqptx.AuthenticationFailed
        )
        assert isinstance(error, amqptx.AuthenticationFailed)
        self.assertEqual(error.condition, "amqp:unauthorized-access")
        await self.failureOf(refused.whenClosed(), amqptx.AuthenticationFailed)

    async def test_addressForms(self) -> None:
        """
        The address forms of the page's table: a plain name and C{/queue/}
        declare a queue (durable if the sender asks for a durable target);
        C{/amq/queue/} uses an existing one; C{/topic/} and C{/exchange/}
        route through exchanges to receivers attached first, which get
        queues of their own that outlive them; the anonymous relay is
        refused.
        """
        connection = await self.connectEndpoint(f"amqp:localhost:{self.node.port}")

        async def roundTrip(target: str, source: str, receiverFirst: bool) -> None:
            receiver = await connection.receiver(source) if receiverFirst else None
            outcome = await connection.send(target, Message(body=target))
            self.assertEqual(outcome, Outcome.ACCEPTED)
            if receiver is None:
                receiver = await connection.receiver(source)
            message = await receiver.get()
            message.accept()
            self.assertEqual(message.body, target)
            await receiver.close()

        plain = self.unique("plain")
        await roundTrip(plain, plain, False)
        queue = self.unique("queue")
        await roundTrip(f"/queue/{queue}", f"/queue/{queue}", False)
        await roundTrip(f"/amq/queue/{queue}", f"/amq/queue/{queue}", False)
        key = self.unique("key")
        before = {q for q in self.queues() if q.startswith("amq.gen-")}
        await roundTrip(f"/topic/{key}.eur", f"/topic/{key}.*", True)
        await roundTrip(
            f"/exchange/amq.direct/{key}", f"/exchange/amq.direct/{key}", True
        )
        durable = self.unique("durable")
        sender = await connection.sender(f"/queue/{durable}", durable=True)
        await sender.close()
        await connection.close()

        found = self.queues()
        self.assertEqual(found[plain], "false")
        self.assertEqual(found[queue], "false")
        self.assertEqual(found[durable], "true")
        # The subscription queues of the two receivers outlive them, and
        # their connection.
        leftovers = {q for q in found if q.startswith("amq.gen-")} - before
        self.assertEqual(len(leftovers), 2, leftovers)

        relay = await self.connectEndpoint(f"amqp:localhost:{self.node.port}")
        error = await self.failureOf(relay.sender(None), amqptx.SessionEnded)
        assert isinstance(error, amqptx.SessionEnded)
        self.assertEqual(error.condition, "amqp:invalid-field")

    async def test_open(self) -> None:
        """
        RabbitMQ's Open offers no capability (no anonymous relay), names the
        product, and asks for heartbeats (an idle timeout of 60 seconds).
        """
        connection = await self.connectEndpoint(f"amqp:localhost:{self.node.port}")
        self.assertIsNone(connection.connection.remote_offered_capabilities)
        self.assertEqual(
            connection.connection.remote_properties.get("product"), "RabbitMQ"
        )
        assert connection.engine is not None
        self.assertEqual(connection.engine.transport.remote_idle_timeout, 60.0)
