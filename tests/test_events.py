# -*- test-case-name: tests.test_events -*-
"""
Tests for L{amqptx._events}: events that wrap what they name on first use.
"""

from __future__ import annotations

from proton import Delivery, Event, Message
from twisted.trial.unittest import SynchronousTestCase

from amqptx._engine import ConnectionSettings, Engine
from amqptx._events import LazyEvent, event
from amqptx._raw import NULL, lib

_NAMED = ("delivery", "link", "session", "connection", "transport")


class LazyEventTests(SynchronousTestCase):
    """
    L{event} gives, for every event, what proton's C{Event.wrap} gives.
    """

    def setUp(self) -> None:
        self.client = Engine(ConnectionSettings(mechanisms=("ANONYMOUS",)))
        self.server = Engine(ConnectionSettings(role="server"))
        self.seen: set[str] = set()

    def check(self, engine: Engine) -> None:
        """
        Take every event of an engine, comparing L{event}'s with proton's
        before each leaves the collector.
        """
        collector = engine.rawCollector
        while (impl := lib.pn_collector_peek(collector)) != NULL:
            ours, theirs = event(impl), Event.wrap(impl)
            self.assertIsInstance(ours, LazyEvent)
            self.assertEqual(
                (ours.type, ours.clazz, ours.context),
                (theirs.type, theirs.clazz, theirs.context),
            )
            for name in _NAMED:
                self.assertEqual(getattr(ours, name), getattr(theirs, name), name)
            self.seen.add(ours.type.name)
            lib.pn_collector_pop(collector)

    def pump(self) -> None:
        """
        Move bytes both ways, and check the events on both sides, until
        neither side has anything to say.
        """
        while True:
            self.check(self.client)
            self.check(self.server)
            toServer, toClient = self.client.takeOutput(), self.server.takeOutput()
            if not toServer and not toClient:
                return
            self.server.feed(toServer)
            self.client.feed(toClient)

    def test_sameObjects(self) -> None:
        """
        Through a connection's life (open, a link each way, a message,
        its outcome, detach, end, close), each event names the same
        delivery, link, session, connection and transport as proton's.
        """
        self.client.connection.open()
        session = self.client.connection.session()
        session.open()
        sender = session.sender("out")
        sender.target.address = "q"
        sender.open()
        self.pump()
        self.server.connection.open()
        remoteSession = self.server.connection.session_head(0)
        receiver = self.server.connection.link_head(0)
        assert remoteSession is not None and receiver is not None
        remoteSession.open()
        receiver.target.copy(receiver.remote_target)
        receiver.open()
        receiver.flow(1)
        self.pump()
        delivery = sender.delivery("1")
        sender.send(Message(body="hello").encode())
        sender.advance()
        self.pump()
        incoming = receiver.current
        assert incoming is not None
        incoming.update(Delivery.ACCEPTED)
        incoming.settle()
        self.pump()
        delivery.settle()
        sender.close()
        session.close()
        self.client.connection.close()
        self.pump()
        self.assertTrue(
            {
                "PN_CONNECTION_REMOTE_OPEN",
                "PN_SESSION_REMOTE_OPEN",
                "PN_LINK_REMOTE_OPEN",
                "PN_LINK_FLOW",
                "PN_DELIVERY",
                "PN_TRANSPORT",
                "PN_LINK_REMOTE_CLOSE",
                "PN_CONNECTION_REMOTE_CLOSE",
            }
            <= self.seen,
            self.seen,
        )

    def test_onlyContext(self) -> None:
        """
        A new event holds its context's wrapper and nothing else yet.
        """
        self.client.connection.open()
        impl = lib.pn_collector_peek(self.client.rawCollector)
        new = event(impl)
        self.assertEqual(new.context, self.client.connection)
        self.assertFalse(set(_NAMED) & set(vars(new)))
        self.assertEqual(new.transport, self.client.transport)
        self.assertIn("transport", vars(new))
