# -*- test-case-name: tests.integration.test_rabbitmq -*-
# mypy: disable-error-code="no-untyped-call"
"""
Integration tests: the amqptx client against a real RabbitMQ node with the
AMQP 1.0 plugin (L{tests.integration._rabbitmq}).

Trial does not call C{setUpClass}, so the tests share the node of
L{sharedNode}: started by the first test that needs it, stopped when the
process exits.  Every test uses queues of its own.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

from proton import Message
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SkipTest

import amqptx
from amqptx import AMQPConnection, Outcome
from tests._certs import sharedPKI
from tests.integration._peers import IntegrationTestCase, theReactor
from tests.integration._rabbitmq import RabbitMQNode, requireRabbitMQ, sharedNode

_THOUSAND = 1000
_IN_FLIGHT = 100
_ATTACH_TIMEOUT = 10


class RabbitMQTests(IntegrationTestCase):
    """
    The amqptx client against RabbitMQ 3.10's AMQP 1.0 plugin.
    """

    node: RabbitMQNode

    def setUp(self) -> None:
        requireRabbitMQ()
        self.node = sharedNode()
        self.pki = sharedPKI()

    def queue(self, stem: str) -> str:
        """
        @param stem: what the queue is for.
        @return: the name of a queue no other test uses.
        """
        return f"amqptx-{stem}-{uuid.uuid4().hex[:12]}"

    async def sendAll(
        self, connection: AMQPConnection, address: str, bodies: list[str]
    ) -> None:
        """
        Send a message for each of C{bodies}, keeping at most L{_IN_FLIGHT}
        of them unsettled at a time, and check that each is accepted.

        @param connection: the connection.
        @param address: the target address.
        @param bodies: the bodies.
        """
        sender = await connection.sender(address)
        for start in range(0, len(bodies), _IN_FLIGHT):
            batch = bodies[start : start + _IN_FLIGHT]
            outcomes = await gatherResults(
                [sender.send(Message(body=body)) for body in batch]
            )
            self.assertEqual(outcomes, [Outcome.ACCEPTED] * len(batch))
        await sender.close()

    async def receiveAll(
        self, connection: AMQPConnection, address: str, count: int
    ) -> list[Any]:
        """
        Receive C{count} messages with a credit of 100, accepting each.

        @param connection: the connection.
        @param address: the source address.
        @param count: how many messages.
        @return: their bodies, in order of arrival.
        """
        receiver = await connection.receiver(address, credit=100)
        bodies = []
        for _ in range(count):
            message = await receiver.get()
            bodies.append(message.body)
            message.accept()
        await receiver.close()
        return bodies

    async def roundTrip(self, connection: AMQPConnection, count: int) -> None:
        """
        Send C{count} messages to a new queue and receive exactly them back,
        in order.

        @param connection: the connection.
        @param count: how many messages.
        """
        address = f"/queue/{self.queue('thousand')}"
        bodies = [f"message-{index}" for index in range(count)]
        await self.sendAll(connection, address, bodies)
        self.assertEqual(await self.receiveAll(connection, address, count), bodies)

    async def test_anonymousThousand(self) -> None:
        """
        With SASL ANONYMOUS over C{amqp}, a thousand messages sent to a queue
        are accepted, then received back in order; the connection closes
        cleanly.
        """
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{self.node.port}")
        await self.roundTrip(connection, _THOUSAND)
        await connection.close()

    async def test_tenThousandInOrder(self) -> None:
        """
        Ten thousand messages sent to a queue are accepted and received back
        in order.
        """
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{self.node.port}")
        await self.roundTrip(connection, 10 * _THOUSAND)
        await connection.close()

    async def test_requestResponse(self) -> None:
        """
        C{request()} through RabbitMQ: a responder consumes a queue and
        answers each request at its reply-to address (a queue of the
        requester's: RabbitMQ 3.10 has no dynamic nodes), with its
        correlation id.
        """
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{self.node.port}")
        service = f"/queue/{self.queue('service')}"
        replyTo = f"/queue/{self.queue('replies')}"
        requests = await connection.receiver(service)

        async def respond() -> None:
            for _ in range(3):
                request = await requests.get()
                await connection.send(
                    request.message.reply_to,
                    Message(
                        correlation_id=request.message.correlation_id,
                        body=str(request.body).upper(),
                    ),
                )
                request.accept()

        responding = Deferred.fromCoroutine(respond())
        answers = await gatherResults(
            [
                connection.request(service, Message(body=w), replyTo=replyTo)
                for w in ("a", "b", "c")
            ]
        )
        self.assertEqual([answer.body for answer in answers], ["A", "B", "C"])
        await responding
        await connection.close()

    async def test_allSendsAtOnce(self) -> None:
        """
        A thousand sends started at once wait for RabbitMQ's credit, go out
        in order and are all accepted.
        """
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{self.node.port}")
        address = f"/queue/{self.queue('at-once')}"
        bodies = [f"burst-{index}" for index in range(_THOUSAND)]
        outcomes = await gatherResults(
            [connection.send(address, Message(body=body)) for body in bodies]
        )
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * _THOUSAND)
        self.assertEqual(await self.receiveAll(connection, address, _THOUSAND), bodies)

    async def test_plainInsecure(self) -> None:
        """
        SASL PLAIN over C{amqp} works once cleartext passwords are allowed
        explicitly.
        """
        connection = await self.connectEndpoint(
            f"amqp:127.0.0.1:{self.node.port}"
            ":user=guest:password=guest:allowInsecurePlain=yes"
        )
        await self.roundTrip(connection, 10)

    def test_plainNeedsPermission(self) -> None:
        """
        Without C{allowInsecurePlain}, a password over C{amqp} is refused when
        the endpoint is made.
        """
        with self.assertRaises(ValueError) as raised:
            clientFromString(
                theReactor(),
                f"amqp:127.0.0.1:{self.node.port}:user=guest:password=guest",
            )
        self.assertIn("allowInsecurePlain", str(raised.exception))

    async def test_plainTLSThousand(self) -> None:
        """
        With SASL PLAIN over C{amqps}, verifying RabbitMQ's certificate with
        the test authority, a thousand messages go to a queue and back.
        """
        connection = await self.connectEndpoint(
            f"amqps:localhost:{self.node.tlsPort}:trustRoots={self.pki.caCert}"
            ":user=guest:password=guest"
        )
        await self.roundTrip(connection, _THOUSAND)
        await connection.close()

    async def test_wrongPassword(self) -> None:
        """
        A wrong password fails the connection attempt with
        L{amqptx.AuthenticationFailed} and the condition
        C{amqp:unauthorized-access}.
        """
        endpoint = clientFromString(
            theReactor(),
            f"amqps:localhost:{self.node.tlsPort}:trustRoots={self.pki.caCert}"
            ":user=guest:password=wrong",
        )
        error = await self.failureOf(
            endpoint.connect(Factory.forProtocol(AMQPConnection)),
            amqptx.AuthenticationFailed,
        )
        assert isinstance(error, amqptx.AuthenticationFailed)
        self.assertEqual(error.condition, "amqp:unauthorized-access")

    async def test_missingQueue(self) -> None:
        """
        A receiver from a queue that does not exist fails (RabbitMQ ends the
        whole session with C{amqp:not-found}) instead of hanging, and the
        connection can then attach a sender, in a new session, and send.
        """
        # AMQPConnection.on_session_remote_close before it forgets the ended
        # session, so a sender attached right away (as here) goes into the
        # ended session and never attaches.
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{self.node.port}")
        missing = f"/amq/queue/{self.queue('does-not-exist')}"
        error = await self.failureOf(
            connection.receiver(missing), amqptx.LinkDetached, amqptx.SessionEnded
        )
        assert isinstance(error, amqptx.AMQPError)
        self.assertEqual(error.condition, "amqp:not-found")
        # Fail in seconds rather than at the test's timeout if it hangs.
        attaching = connection.sender(f"/queue/{self.queue('ok')}")
        sender = await attaching.addTimeout(_ATTACH_TIMEOUT, theReactor())
        self.assertEqual(await sender.send(Message(body="ok")), Outcome.ACCEPTED)
        await connection.close()

    async def test_rejected(self) -> None:
        """
        A message RabbitMQ refuses (a queue at its maximum length, which
        rejects new messages) fails with L{amqptx.MessageRejected}.

        RabbitMQ 3.10's AMQP 1.0 plugin cannot say so: its session process
        crashes on the broker's internal negative acknowledgement, and the
        connection drops; the test is skipped then.
        """
        queue = self.queue("full")
        try:
            self.node.ctl(
                "set_policy",
                f"reject-{queue}",
                f"^{queue}$",
                json.dumps({"max-length": 0, "overflow": "reject-publish"}),
                "--apply-to",
                "queues",
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise SkipTest(f"cannot set a max-length policy: {e}") from None
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{self.node.port}")
        sender = await connection.sender(f"/queue/{queue}")
        error = await self.failureOf(
            sender.send(Message(body="too many")),
            amqptx.MessageRejected,
            amqptx.AMQPConnectionLost,
        )
        if isinstance(error, amqptx.AMQPConnectionLost):
            raise SkipTest(
                "RabbitMQ dropped the connection instead of rejecting the "
                "message (its AMQP 1.0 plugin crashes on basic.nack)"
            )
        self.assertIsInstance(error, amqptx.MessageRejected)

    async def test_openFrame(self) -> None:
        """
        RabbitMQ's Open names the product and asks for heartbeats every 30
        seconds (an idle timeout of 60 seconds).
        """
        connection = await self.connectEndpoint(f"amqp:127.0.0.1:{self.node.port}")
        properties = connection.connection.remote_properties
        self.assertEqual(properties.get("product"), "RabbitMQ")
        assert connection.engine is not None
        self.assertEqual(connection.engine.transport.remote_idle_timeout, 60.0)
