# -*- test-case-name: tests.test_engine -*-
"""
Tests for L{amqptx._engine}: the sans-I/O core, driven by moving bytes between
two engines by hand, with no Twisted transport and no clock.
"""

from __future__ import annotations

import os

from proton import Event, Message
from twisted.trial.unittest import SynchronousTestCase

from amqptx import _engine
from amqptx._engine import ConnectionSettings, DeliveryReader, Engine, decodeMessage


def _pump(a: Engine, b: Engine) -> None:
    """
    Move bytes both ways until neither side has anything to say.
    """
    while True:
        ab, ba = a.takeOutput(), b.takeOutput()
        if not ab and not ba:
            return
        b.feed(ab)
        a.feed(ba)


def _events(engine: Engine) -> list[str]:
    names = []
    while (event := engine.nextEvent()) is not None:
        names.append(event.type.name)
    return names


class EngineTests(SynchronousTestCase):
    """
    Bytes in, bytes out, events out, time in.
    """

    def test_handshake(self) -> None:
        """
        A client engine with an open connection and a server engine that
        answers reach the open state on both sides, with SASL first.
        """
        client = Engine(ConnectionSettings(mechanisms=("ANONYMOUS",)))
        server = Engine(ConnectionSettings(role="server"))
        client.connection.open()
        header = client.takeOutput()
        self.assertEqual(header[:8], b"AMQP\x03\x01\x00\x00")
        server.feed(header)
        client.feed(server.takeOutput())
        _pump(client, server)
        self.assertIn("PN_CONNECTION_REMOTE_OPEN", _events(server))
        server.connection.open()
        _pump(client, server)
        self.assertIn("PN_CONNECTION_REMOTE_OPEN", _events(client))

    def test_inputInPieces(self) -> None:
        """
        Input fed a byte at a time is all consumed.
        """
        client = Engine(ConnectionSettings(mechanisms=("ANONYMOUS",)))
        server = Engine(ConnectionSettings(role="server"))
        client.connection.open()
        while True:
            toServer, toClient = client.takeOutput(), server.takeOutput()
            if not toServer and not toClient:
                break
            for byte in toServer:
                server.feed(bytes([byte]))
            for byte in toClient:
                client.feed(bytes([byte]))
        self.assertEqual(server.inputBuffered(), 0)
        self.assertIn("PN_CONNECTION_REMOTE_OPEN", _events(server))

    def test_inputAfterEOFDropped(self) -> None:
        """
        After the input side is closed, fed bytes are dropped, not kept.
        """
        server = Engine(ConnectionSettings(role="server"))
        server.feedEOF()
        server.feed(b"AMQP\x00\x01\x00\x00")
        self.assertEqual(server.inputBuffered(), 0)

    def test_outputClosed(self) -> None:
        """
        Once both sides closed, the engine says its output is over.
        """
        client = Engine(ConnectionSettings(mechanisms=("ANONYMOUS",)))
        server = Engine(ConnectionSettings(role="server"))
        client.connection.open()
        _pump(client, server)
        server.connection.open()
        _pump(client, server)
        self.assertFalse(client.outputClosed())
        client.connection.close()
        _pump(client, server)
        server.connection.close()
        _pump(client, server)
        self.assertTrue(client.outputClosed())
        self.assertTrue(server.outputClosed())

    def test_tickDeadline(self) -> None:
        """
        On an open connection with an idle timeout, C{tick} gives a deadline
        after the time given, and no later than the timeout; without one,
        C{0.0}.
        """
        for timeout, expected in ((None, False), (10.0, True)):
            client = Engine(
                ConnectionSettings(mechanisms=("ANONYMOUS",), idleTimeout=timeout)
            )
            server = Engine(ConnectionSettings(role="server"))
            client.connection.open()
            _pump(client, server)
            server.connection.open()
            _pump(client, server)
            deadline = client.tick(100.0)
            if expected:
                self.assertGreater(deadline, 100.0)
                self.assertLessEqual(deadline, 110.0)
            else:
                self.assertEqual(deadline, 0.0)

    def test_containerIdGenerated(self) -> None:
        """
        Without a container id, each engine makes a unique one.
        """
        first = Engine(ConnectionSettings()).connection.container
        second = Engine(ConnectionSettings()).connection.container
        self.assertTrue(first.startswith("amqptx-"), first)
        self.assertNotEqual(first, second)

    def test_containerIdAfterFork(self) -> None:
        """
        A forked child makes container ids of its own: its parent's next ones
        are not among them.
        """
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            try:
                os.write(write, _engine.uniqueId().encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(child, 0)
        with os.fdopen(read, "rb") as pipe:
            childId = pipe.read().decode()
        parentId = _engine.uniqueId()
        self.assertTrue(childId.startswith("amqptx-"), childId)
        self.assertNotEqual(childId.rsplit("-", 1)[0], parentId.rsplit("-", 1)[0])

    def test_wrappers(self) -> None:
        """
        The engine's proton wrappers wrap its C objects, the transport bound
        to the connection, and each is made once.
        """
        engine = Engine(ConnectionSettings(mechanisms=("ANONYMOUS",)))
        self.assertIs(engine.connection, engine.connection)
        self.assertEqual(engine.connection._impl, engine.rawConnection)
        self.assertEqual(engine.transport._impl, engine.rawTransport)
        self.assertEqual(engine.collector._impl, engine.rawCollector)
        self.assertEqual(engine.transport.connection, engine.connection)
        self.assertEqual(engine.connection.transport, engine.transport)

    def test_settingsReachTheWire(self) -> None:
        """
        Container id, hostname, properties and maximum frame size are sent in
        the Open.
        """
        client = Engine(
            ConnectionSettings(
                mechanisms=("ANONYMOUS",),
                containerId="c1",
                hostname="vhost:v",
                properties={"product": "test"},
                maxFrameSize=4096,
            )
        )
        server = Engine(ConnectionSettings(role="server"))
        client.connection.open()
        _pump(client, server)
        remote = server.connection
        self.assertEqual(remote.remote_container, "c1")
        self.assertEqual(remote.remote_hostname, "vhost:v")
        self.assertEqual(remote.remote_properties, {"product": "test"})
        self.assertEqual(server.transport.remote_max_frame_size, 4096)


class DeliveryReaderTests(SynchronousTestCase):
    """
    L{DeliveryReader} takes messages out of proton as their pieces arrive.
    """

    def test_multiFrame(self) -> None:
        """
        A message of many frames comes out whole, once, after its last piece,
        even when the bytes arrive in small reads.
        """
        client = Engine(ConnectionSettings(mechanisms=("ANONYMOUS",)))
        server = Engine(ConnectionSettings(role="server"))
        client.connection.open()
        session = client.connection.session()
        session.open()
        sender = session.sender("s")
        sender.target.address = "q"
        sender.open()
        _pump(client, server)
        server.connection.open()
        while (event := server.nextEvent()) is not None:
            if event.type == Event.SESSION_REMOTE_OPEN:
                event.session.open()  # type: ignore[union-attr]
            if event.type == Event.LINK_REMOTE_OPEN:
                link = event.link
                assert link is not None
                link.target.copy(link.remote_target)
                link.open()
                link.flow(1)
        _pump(client, server)
        body = bytes(range(256)) * 1000
        sender.delivery("1")
        sender.send(Message(body=body).encode())
        sender.advance()
        reader = DeliveryReader()
        got = []
        while data := client.takeOutput():
            for start in range(0, len(data), 1000):
                server.feed(data[start : start + 1000])
                while (event := server.nextEvent()) is not None:
                    if event.type == Event.DELIVERY:
                        delivery = event.delivery
                        assert delivery is not None
                        whole = reader.read(delivery)
                        if whole is not None:
                            got.append(whole)
            client.feed(server.takeOutput())
        self.assertEqual(len(got), 1)
        self.assertEqual(decodeMessage(got[0]).body, body)
