# -*- test-case-name: tests.test_status -*-
"""
Tests for the status page of C{amqp-listen}: L{amqptx.broker._status} (the
snapshot and the rates) and L{amqptx.broker._web} (the page and its JSON),
in memory.
"""

from __future__ import annotations

import json
import re
from base64 import b64encode
from typing import Any

from proton import Message
from twisted.cred.checkers import (
    AllowAnonymousAccess,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.testing import (
    MemoryReactor,
    RaisingMemoryReactor,
    StringTransport,
)
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from amqptx import AMQPConnection, Outcome, Receiver, Sender
from amqptx.broker import Broker, BrokerConfig, BrokerProtocol
from amqptx.broker._status import HISTORY, StatusSampler, snapshot
from amqptx.broker._web import (
    PAGE,
    SCRIPT,
    STYLE,
    StatusWebService,
    statusSite,
)
from tests.test_broker import EPOCH, BrokerMixin


def get(
    site: Site,
    path: str,
    user: str | None = None,
    password: str = "secret",
    method: str = "GET",
) -> tuple[int, dict[str, str], bytes]:
    """
    Make one HTTP request to a site over an in-memory transport.

    @param site: the site.
    @param path: the request's path.
    @param user: a user name for HTTP Basic authentication, or L{None}.
    @param password: the password.
    @param method: the request's method.
    @return: the response's status code, headers (names in lower case) and
        body.
    """
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    assert protocol is not None
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    if user is not None:
        token = b64encode(f"{user}:{password}".encode()).decode()
        lines.append(f"Authorization: Basic {token}")
    protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status.split()[1]), headers, body


class _Mixin(BrokerMixin):
    """
    Clients of a broker in memory, and their temporary queues.
    """

    def dynamic(self, client: AMQPConnection) -> Receiver:
        """
        @return: a receiver from a new temporary queue.
        """
        d = client.receiver(None, dynamic=True)
        self.flush()
        return self.successResultOf(d)


class SnapshotTests(_Mixin):
    """
    L{snapshot}: what the page shows of a broker, with clients connected in
    memory.
    """

    def sent(self, sender: Sender, body: Any) -> Outcome:
        """
        @return: the outcome of a message sent on a sender.
        """
        d = sender.send(Message(body=body))
        self.flush()
        return self.successResultOf(d)

    def test_empty(self) -> None:
        """
        A new broker has no queues and no connections; without a sampler,
        rates are L{None} and histories empty.  The snapshot is JSON.
        """
        status = snapshot(self.broker)
        self.assertEqual(status["time"], EPOCH)
        self.assertEqual(status["queues"], [])
        self.assertEqual(status["connections"], [])
        self.assertEqual(
            status["totals"],
            {
                "connections": 0,
                "links": 0,
                "queues": 0,
                "topics": 0,
                "depth": 0,
                "consumers": 0,
                "producers": 0,
                "enqueued": None,
                "delivered": None,
                "inRate": None,
                "outRate": None,
                "inHistory": [],
                "outHistory": [],
            },
        )
        self.assertIsNone(status["startedAt"])
        self.assertEqual(json.loads(json.dumps(status)), status)

    def test_queue(self) -> None:
        """
        A queue shows its depth, consumers, producers and counters: messages
        taken in, and messages delivered.
        """
        self.useBroker(BrokerConfig(queues=("orders",)))
        client = self.connect()
        sender = self.sender(client, "orders")
        for n in range(3):
            self.assertIs(self.sent(sender, n), Outcome.ACCEPTED)
        [queue] = snapshot(self.broker)["queues"]
        self.assertEqual(
            queue,
            {
                "address": "orders",
                "kind": "queue",
                "depth": 3,
                "consumers": 0,
                "producers": 1,
                "durable": True,
                "temporary": False,
                "enqueued": 3,
                "delivered": 0,
                "inRate": None,
                "outRate": None,
                "inHistory": [],
                "outHistory": [],
            },
        )
        receiver = self.receiver(client, "orders", credit=2)
        [queue] = snapshot(self.broker)["queues"]
        self.assertEqual((queue["depth"], queue["consumers"]), (1, 1))
        self.assertEqual((queue["enqueued"], queue["delivered"]), (3, 2))
        # A released message is delivered again: counted again, not taken
        # in again.
        self.get(receiver).release()
        self.flush()
        status = snapshot(self.broker)
        [queue] = status["queues"]
        self.assertEqual((queue["enqueued"], queue["delivered"]), (3, 3))
        self.assertEqual(queue["depth"], 1)
        totals = status["totals"]
        self.assertEqual(
            (totals["queues"], totals["depth"], totals["consumers"]), (1, 1, 1)
        )
        self.assertEqual(totals["producers"], 1)

    def test_put(self) -> None:
        """
        Messages put on a queue directly count as taken in.
        """
        queue = self.broker.queue("q")
        queue.put(Message(body="x").encode())
        [shown] = snapshot(self.broker)["queues"]
        self.assertEqual((shown["depth"], shown["enqueued"]), (1, 1))

    def test_topic(self) -> None:
        """
        A topic shows its subscribers as consumers, what its subscriptions
        hold as its depth, and every copy delivered.
        """
        client = self.connect()
        self.receiver(client, "topic/news", credit=1)
        self.receiver(client, "topic/news", credit=1)
        for n in range(2):
            self.send(client, "topic/news", body=n)
        [topic] = snapshot(self.broker)["queues"]
        self.assertEqual(topic["kind"], "topic")
        self.assertEqual(topic["consumers"], 2)
        # Each subscription delivered one copy and holds the other.
        self.assertEqual((topic["depth"], topic["delivered"]), (2, 2))
        self.assertEqual(topic["enqueued"], 2)
        self.assertEqual(snapshot(self.broker)["totals"]["topics"], 1)

    def test_temporary(self) -> None:
        """
        A dynamic node is shown as a temporary queue.
        """
        client = self.connect()
        receiver = self.dynamic(client)
        [queue] = snapshot(self.broker)["queues"]
        self.assertEqual(queue["address"], receiver.address)
        self.assertTrue(queue["temporary"])
        self.assertFalse(queue["durable"])

    def test_connections(self) -> None:
        """
        Each connection shows its peer, its authenticated user (L{None} when
        anonymous), its container id and its links, from the client's side,
        with their credit and unsettled messages.
        """
        alice = self.connect(user="alice")
        anonymous = self.connect()
        sender = self.sender(alice, "q")
        self.sender(alice, None)
        receiver = self.receiver(anonymous, "q", credit=5)
        self.assertIs(self.sent(sender, 1), Outcome.ACCEPTED)
        status = snapshot(self.broker)
        self.assertEqual(status["totals"]["connections"], 2)
        self.assertEqual(status["totals"]["links"], 3)
        byUser = {c["user"]: c for c in status["connections"]}
        self.assertEqual(set(byUser), {"alice", None})
        mine = byUser["alice"]
        self.assertEqual(mine["containerId"], alice.connection.container)
        self.assertTrue(mine["opened"])
        self.assertFalse(mine["tls"])
        self.assertEqual(
            sorted((link["role"], link["address"] or "") for link in mine["links"]),
            [("sender", ""), ("sender", "q")],
        )
        for link in mine["links"]:
            self.assertIsInstance(link["name"], str)
            self.assertGreater(link["credit"], 0)
            self.assertEqual(link["unsettled"], 0)
        [link] = byUser[None]["links"]
        self.assertEqual(link["role"], "receiver")
        self.assertEqual(link["address"], "q")
        self.assertEqual((link["credit"], link["unsettled"]), (4, 1))
        self.get(receiver).accept()
        self.flush()
        [link] = [
            c["links"][0]
            for c in snapshot(self.broker)["connections"]
            if c["user"] is None
        ]
        self.assertEqual(link["unsettled"], 0)

    def test_connectionGone(self) -> None:
        """
        A connection leaves the snapshot when it is lost.
        """
        client = self.connect()
        self.assertEqual(len(self.broker.connections), 1)
        client.close()
        self.flush()
        self.assertEqual(snapshot(self.broker)["connections"], [])
        self.assertEqual(self.broker.connections, set())

    def test_peer(self) -> None:
        """
        The peer is C{HOST:PORT}, in brackets for IPv6.
        """
        client = self.connect()
        [protocol] = self.broker.connections
        assert protocol.transport is not None
        transport: Any = protocol.transport
        transport.peerAddress = IPv4Address("TCP", "192.0.2.7", 5000)
        [shown] = snapshot(self.broker)["connections"]
        self.assertEqual(shown["peer"], "192.0.2.7:5000")
        transport.peerAddress = IPv6Address("TCP", "2001:db8::1", 5001)
        [shown] = snapshot(self.broker)["connections"]
        self.assertEqual(shown["peer"], "[2001:db8::1]:5001")
        del client

    def test_beforeOpen(self) -> None:
        """
        A connection still authenticating (no engine yet) is shown without
        container id or user.
        """
        from amqptx import ConnectionSettings
        from amqptx._sasl import SASLConfig

        protocol = BrokerProtocol(self.broker)
        protocol.configure(
            ConnectionSettings(
                role="server", sasl=SASLConfig(checkers=(AllowAnonymousAccess(),))
            ),
            self.clock,
        )
        protocol.makeConnection(StringTransport())
        [shown] = snapshot(self.broker)["connections"]
        self.assertEqual(
            (shown["user"], shown["containerId"], shown["opened"], shown["links"]),
            (None, None, False, []),
        )
        protocol.connectionLost()
        self.assertEqual(snapshot(self.broker)["connections"], [])


class SamplerTests(_Mixin):
    """
    L{StatusSampler}: the rates, measured on the broker's clock.
    """

    def setUp(self) -> None:
        super().setUp()
        self.sampler = StatusSampler(self.broker)
        self.sampler.startService()
        self.addCleanup(self.sampler.stopService)

    def test_rates(self) -> None:
        """
        Every second, each queue gets the rates of the last second, in and
        out, in messages per second; the totals too.
        """
        client = self.connect()
        self.assertEqual(self.sampler.startedAt, EPOCH)
        for n in range(4):
            self.send(client, "q", body=n)
        self.clock.advance(1)
        status = snapshot(self.broker, self.sampler)
        [queue] = status["queues"]
        self.assertEqual((queue["inRate"], queue["outRate"]), (4.0, 0.0))
        self.assertEqual(queue["inHistory"], [4.0])
        receiver = self.receiver(client, "q", credit=10)
        self.clock.advance(1)
        [queue] = snapshot(self.broker, self.sampler)["queues"]
        self.assertEqual((queue["inRate"], queue["outRate"]), (0.0, 4.0))
        self.assertEqual(queue["inHistory"], [4.0, 0.0])
        self.assertEqual(queue["outHistory"], [0.0, 4.0])
        totals = snapshot(self.broker, self.sampler)["totals"]
        self.assertEqual(totals["inHistory"], [4.0, 0.0])
        self.assertEqual(totals["outHistory"], [0.0, 4.0])
        self.assertEqual((totals["enqueued"], totals["delivered"]), (4, 4))
        self.assertEqual(snapshot(self.broker, self.sampler)["interval"], 1.0)
        del receiver

    def test_elapsed(self) -> None:
        """
        Rates divide by the time that really elapsed since the last sample.
        """
        client = self.connect()
        self.sampler.stopService()
        for n in range(6):
            self.send(client, "q", body=n)
        self.clock.advance(3)
        self.sampler.sample()
        [queue] = snapshot(self.broker, self.sampler)["queues"]
        self.assertEqual(queue["inRate"], 2.0)
        # No time elapsed: no sample.
        self.sampler.sample()
        [queue] = snapshot(self.broker, self.sampler)["queues"]
        self.assertEqual(queue["inHistory"], [2.0])

    def test_history(self) -> None:
        """
        Histories keep the last minute: one rate per second, oldest first.
        """
        self.broker.queue("q")
        self.clock.pump([1.0] * (HISTORY + 10))
        [queue] = snapshot(self.broker, self.sampler)["queues"]
        self.assertEqual(queue["inHistory"], [0.0] * HISTORY)
        self.assertEqual(
            len(snapshot(self.broker, self.sampler)["totals"]["outHistory"]), HISTORY
        )

    def test_newAndGone(self) -> None:
        """
        A queue created between two samples counts from zero; one deleted
        is forgotten, what it counted until the last sample staying in the
        totals.
        """
        client = self.connect()
        receiver = self.dynamic(client)
        address = receiver.address
        assert address is not None
        self.send(client, address, body=1)
        self.clock.advance(1)
        [queue] = snapshot(self.broker, self.sampler)["queues"]
        self.assertEqual((queue["inRate"], queue["outRate"]), (1.0, 1.0))
        receiver.close()
        self.flush()
        self.clock.advance(1)
        status = snapshot(self.broker, self.sampler)
        self.assertEqual(status["queues"], [])
        self.assertEqual(status["totals"]["enqueued"], 1)
        self.assertEqual(status["totals"]["inHistory"], [1.0, 0.0])

    def test_existingCounts(self) -> None:
        """
        What a queue counted before the first sample is not a rate.
        """
        self.sampler.stopService()
        broker = self.broker
        queue = broker.queue("q")
        queue.put(b"")
        sampler = StatusSampler(broker)
        sampler.startService()
        self.addCleanup(sampler.stopService)
        self.clock.advance(1)
        [shown] = snapshot(broker, sampler)["queues"]
        self.assertEqual(shown["inHistory"], [0.0])
        self.assertEqual(shown["enqueued"], 1)

    def test_stop(self) -> None:
        """
        Stopping the sampler leaves no timer behind; the rates stay.
        """
        self.clock.advance(1)
        self.sampler.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(
            snapshot(self.broker, self.sampler)["totals"]["inHistory"], [0.0]
        )
        self.sampler.stopService()


USERS = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")


class WebTests(BrokerMixin):
    """
    L{statusSite}: the page, its script and style, and the JSON, over HTTP
    in memory.
    """

    def setUp(self) -> None:
        super().setUp()
        self.sampler = StatusSampler(self.broker)
        self.site = statusSite(self.broker, self.sampler)

    def test_json(self) -> None:
        """
        C{/api/status} is the snapshot as JSON, never cached.
        """
        client = self.connect()
        self.send(client, "q", body=1)
        status, headers, body = get(self.site, "/api/status")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/json; charset=utf-8")
        self.assertEqual(headers["cache-control"], "no-store")
        self.assertEqual(headers["x-content-type-options"], "nosniff")
        self.assertEqual(json.loads(body), snapshot(self.broker, self.sampler))
        self.assertEqual(json.loads(body)["queues"][0]["depth"], 1)

    def test_page(self) -> None:
        """
        C{/} is the HTML page, which loads only its own script and style,
        under a content security policy that allows nothing else.
        """
        status, headers, body = get(self.site, "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(body, PAGE.encode("utf-8"))
        policy = headers["content-security-policy"]
        self.assertIn("default-src 'none'", policy)
        self.assertIn("script-src 'self'", policy)
        self.assertIn("connect-src 'self'", policy)
        for path, text, kind in [
            ("/status.js", SCRIPT, "text/javascript"),
            ("/status.css", STYLE, "text/css"),
        ]:
            status, headers, body = get(self.site, path)
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith(kind))
            self.assertEqual(body, text.encode("utf-8"))

    def test_nothingExternal(self) -> None:
        """
        Nothing in the page, script or style refers to another site (the
        only URL is SVG's namespace name).
        """
        for document in (PAGE, SCRIPT, STYLE):
            urls = re.findall(r"(?:https?:)?//[\w.-]+", document)
            self.assertEqual(
                [u for u in urls if u != "http://www.w3.org"],
                [],
            )
            self.assertNotIn("@import", document)
        self.assertIn('"api/status"', SCRIPT)
        self.assertNotIn("innerHTML", SCRIPT)

    def test_head(self) -> None:
        """
        C{HEAD} works too, without a body.
        """
        status, headers, body = get(self.site, "/api/status", method="HEAD")
        self.assertEqual((status, body), (200, b""))

    def test_notFound(self) -> None:
        """
        Other paths are not found.
        """
        for path in ("/nothing", "/api", "/api/status/more", "/status.js/x"):
            status, _, _ = get(self.site, path)
            self.assertEqual(status, 404, path)

    def test_noPost(self) -> None:
        """
        The page and the API are read-only.
        """
        status, _, _ = get(self.site, "/api/status", method="POST")
        self.assertEqual(status, 405)

    def test_noAccessLog(self) -> None:
        """
        The site writes no access log (the page polls every second).
        """
        self.assertIsNone(self.site.log(None))  # type: ignore[func-returns-value,arg-type]


class AuthenticationTests(BrokerMixin):
    """
    L{statusSite} with credentials checkers: HTTP Basic authentication.
    """

    def setUp(self) -> None:
        super().setUp()
        self.site = statusSite(self.broker, checkers=[USERS])

    def test_unauthenticated(self) -> None:
        """
        Without credentials, every path is refused with 401 and a Basic
        challenge, and no status.
        """
        for path in ("/", "/api/status", "/status.js"):
            status, headers, body = get(self.site, path)
            self.assertEqual(status, 401, path)
            self.assertEqual(headers["www-authenticate"], 'basic realm="amqp-listen"')
            self.assertNotIn(b"queues", body)

    def test_wrongPassword(self) -> None:
        """
        A wrong password or an unknown user is refused with 401.
        """
        for user, password in [("alice", "guess"), ("mallory", "secret")]:
            status, _, _ = get(self.site, "/api/status", user, password)
            self.assertEqual(status, 401)

    def test_authenticated(self) -> None:
        """
        A user the checker knows gets the page and the JSON.
        """
        status, _, body = get(self.site, "/api/status", "alice")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["queues"], [])
        status, _, body = get(self.site, "/", "alice")
        self.assertEqual((status, body), (200, PAGE.encode("utf-8")))

    def test_neverAnonymous(self) -> None:
        """
        A checker that lets anyone in anonymously does not open the page to
        requests without credentials.
        """
        site = statusSite(self.broker, checkers=[USERS, AllowAnonymousAccess()])
        status, _, _ = get(site, "/api/status")
        self.assertEqual(status, 401)


class ServiceTests(SynchronousTestCase):
    """
    L{StatusWebService}: the page's port.
    """

    def setUp(self) -> None:
        self.site = statusSite(Broker())

    def test_listens(self) -> None:
        """
        Starting listens on the endpoint with the site; stopping closes the
        port.
        """
        reactor = MemoryReactor()
        service = StatusWebService(
            TCP4ServerEndpoint(reactor, 8080, interface="127.0.0.1"), self.site
        )
        service.privilegedStartService()
        service.startService()
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (8080, "127.0.0.1"))
        self.assertIs(factory, self.site)
        self.assertIsNotNone(service.port)
        service.stopService()
        self.assertIsNone(service.port)
        self.assertIsNone(service.stopService())

    def test_startListens(self) -> None:
        """
        Without a privileged start, starting opens the port.
        """
        reactor = MemoryReactor()
        service = StatusWebService(TCP4ServerEndpoint(reactor, 8080), self.site)
        service.startService()
        self.assertEqual(len(reactor.tcpServers), 1)

    def test_cannotListen(self) -> None:
        """
        A port that cannot be opened stops the start with L{SystemExit} and
        a one-line message.
        """
        reactor = RaisingMemoryReactor(
            listenException=CannotListenError("", 8080, OSError("in use"))
        )
        service = StatusWebService(TCP4ServerEndpoint(reactor, 8080), self.site)
        error = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertIn("8080", str(error))
        self.assertIn("--web", str(error))
        self.assertNotIn("\n", str(error))
