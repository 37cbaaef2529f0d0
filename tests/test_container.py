# -*- test-case-name: tests.test_container -*-
"""
Tests for L{amqptx._container}: proton's C{Container} API on the Twisted
reactor, in memory (a C{MemoryReactorClock}, amqptx's L{TestPeer} and
Twisted's in-memory transports; no socket, no sleep).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from typing import Any

from proton import Delivery, Disposition, Link, Message, SSLDomain, Url
from proton.handlers import MessagingHandler, Reject, Release
from proton.reactor import AtMostOnce, Backoff, Selector
from twisted.application.service import IService
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from amqptx import AMQPServerEndpoint, Container, ContainerService
from amqptx import SSLDomain as AMQPTXSSLDomain
from amqptx._container import _readConnectFile, _toURL
from amqptx._protocol import CLOSE_TIMEOUT
from amqptx.testing import IOPump, TestPeer, completeConnection
from tests._certs import sharedPKI

_URL = "amqp://127.0.0.1:5672"

_CALLBACKS = frozenset(
    {
        "on_start",
        "on_connection_opening",
        "on_connection_opened",
        "on_connection_closing",
        "on_connection_closed",
        "on_connection_error",
        "on_session_opened",
        "on_session_closing",
        "on_session_closed",
        "on_session_error",
        "on_link_opening",
        "on_link_opened",
        "on_link_closing",
        "on_link_closed",
        "on_link_error",
        "on_disconnected",
        "on_transport_error",
        "on_sendable",
        "on_message",
        "on_accepted",
        "on_rejected",
        "on_released",
        "on_settled",
        "on_timer_task",
    }
)

Action = Callable[[Any], object]


def _collapsed(events: list[str]) -> list[str]:
    """
    @param events: callback names.
    @return: the same without repeats of C{on_sendable} (each credit update
        of the peer is one; how many there are depends on the peer).
    """
    result: list[str] = []
    for name in events:
        if not (name == "on_sendable" and result and result[-1] == name):
            result.append(name)
    return result


class _Recorder(MessagingHandler):
    """
    A C{MessagingHandler} that records each of its callbacks (by name, with
    C{event.container}) and then runs the test's action for it, if any.
    """

    def __init__(self, actions: dict[str, Action] | None = None, **options: Any):
        super().__init__(**options)
        self.events: list[str] = []
        self.containers: list[object] = []
        self.actions: dict[str, Action] = actions or {}

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name in _CALLBACKS and callable(value):
            return functools.partial(self._call, name, value)
        return value

    def _call(self, name: str, method: Action, event: Any) -> None:
        self.events.append(name)
        self.containers.append(event.container)
        method(event)
        action = self.actions.get(name)
        if action is not None:
            action(event)

    def on_unhandled(self, method: str, *args: Any) -> None:
        """
        Record a callback the handler does not define.

        @param method: the callback's name.
        @param args: its event.
        """
        if method in _CALLBACKS:
            self._call(method, lambda event: None, args[0])


def _peerFactory(peers: list[TestPeer], **options: Any) -> Factory:
    """
    @param peers: where to put each peer built.
    @param options: L{TestPeer} arguments.
    @return: a factory of L{TestPeer}s.
    """

    class PeerFactory(Factory):
        def buildProtocol(self, addr: object) -> TestPeer:
            peer = TestPeer(**options)
            peers.append(peer)
            return peer

    return PeerFactory()


class _ContainerTestCase(SynchronousTestCase):
    """
    A container on a memory reactor, and a L{TestPeer} server listening on
    port 5672 of that reactor.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.peers: list[TestPeer] = []

    def listenPeer(self, **options: Any) -> None:
        """
        Listen with L{TestPeer}s on port 5672.

        @param options: L{TestPeer} arguments.
        """
        AMQPServerEndpoint(self.reactor, 5672).listen(
            _peerFactory(self.peers, **options)
        )

    def container(self, *handlers: object) -> Container:
        """
        @param handlers: the container's handlers.
        @return: a container on the memory reactor.
        """
        return Container(*handlers, reactor=self.reactor, container_id="test")

    def sendOnce(self, event: Any) -> None:
        """
        Send one message, the first time the sender has credit.

        @param event: an C{on_sendable} event.
        """
        sender = event.sender
        if sender.credit and not getattr(self, "sent", False):
            self.sent = True
            sender.send(Message(body="hello"))

    def complete(self) -> IOPump:
        """
        Complete the pending connection attempt and exchange everything.

        @return: the pump.
        """
        pump = completeConnection(self.reactor)
        pump.flush()
        return pump


class SendTests(_ContainerTestCase):
    """
    Sending: C{on_sendable}, then the peer's outcomes.
    """

    def test_sendAccepted(self) -> None:
        """
        A sender's callbacks come in proton's order, each with the container
        as C{event.container}, and the peer receives the message on the
        sender's target.
        """
        self.listenPeer()
        recorder = _Recorder(
            {
                "on_start": lambda e: e.container.create_sender(
                    e.container.connect(_URL), "q"
                ),
                "on_sendable": self.sendOnce,
                "on_accepted": lambda e: e.connection.close(),
            }
        )
        container = self.container(recorder)
        container.start()
        self.complete()
        self.assertEqual(
            _collapsed(recorder.events),
            [
                "on_start",
                "on_connection_opened",
                "on_session_opened",
                "on_link_opened",
                "on_sendable",
                "on_accepted",
                "on_settled",
                "on_connection_closed",
            ],
        )
        self.assertEqual(set(map(id, recorder.containers)), {id(container)})
        [(address, message)] = self.peers[0].received
        self.assertEqual((address, message.body), ("q", "hello"))

    def test_connectionReturnedAtOnce(self) -> None:
        """
        C{connect} returns proton's C{Connection} at once, opened locally and
        carrying the container id; the TCP connection follows.
        """
        container = self.container()
        container.start()
        connection = container.connect(_URL)
        self.assertTrue(connection.state & connection.LOCAL_ACTIVE)
        self.assertEqual(connection.container, "test")
        [(host, port, *rest)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 5672))

    def test_connectBeforeStart(self) -> None:
        """
        A connection made before the container starts waits for it: the TCP
        connection is attempted once C{on_start} has run.
        """
        recorder = _Recorder()
        container = self.container(recorder)
        connection = container.connect(_URL)
        self.assertEqual(self.reactor.tcpClients, [])
        container.start()
        self.assertEqual(recorder.events, ["on_start"])
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(
            container.get_connection_address(connection), "amqp://127.0.0.1:5672"
        )

    def test_options(self) -> None:
        """
        C{container_id}, capabilities, properties and C{virtual_host} reach
        the peer in the Open.
        """
        self.listenPeer()
        container = self.container()
        container.start()
        container.connect(
            _URL,
            container_id="mine",
            virtual_host="vhost",
            offered_capabilities=["cap"],
            properties={"key": "value"},
        )
        self.complete()
        connection = self.peers[0].connection
        self.assertEqual(connection.remote_container, "mine")
        self.assertEqual(connection.remote_hostname, "vhost")
        self.assertEqual(list(connection.remote_offered_capabilities), ["cap"])
        self.assertEqual(dict(connection.remote_properties), {"key": "value"})

    def test_optionsAfterReconnect(self) -> None:
        """
        The Open of each attempt carries the connection's properties and
        capabilities, once: a connection that comes back says what it said
        the first time.
        """
        self.listenPeer()
        container = self.container()
        container.start()
        container.connect(
            _URL, offered_capabilities=["cap"], properties={"key": "value"}
        )
        said = []
        for attempt in range(2):
            pump = self.complete()
            connection = self.peers[attempt].connection
            said.append(
                (
                    list(connection.remote_offered_capabilities),
                    dict(connection.remote_properties),
                )
            )
            pump.server.transport.loseConnection()
            pump.flush()
        self.assertEqual(said, [(["cap"], {"key": "value"})] * 2)

    def test_saslDisabled(self) -> None:
        """
        With C{sasl_enabled=False}, the client has no SASL layer: the plain
        AMQP header goes first, as with proton; by default the SASL header
        does.
        """
        headers = []
        for enabled in (False, True):
            container = self.container()
            container.start()
            container.connect(_URL, sasl_enabled=enabled, reconnect=False)
            factory = self.reactor.tcpClients.pop()[2]
            protocol = factory.buildProtocol(None)
            assert protocol is not None
            transport = StringTransport()
            protocol.makeConnection(transport)
            headers.append(transport.value()[:8])
        self.assertEqual(headers, [b"AMQP\x00\x01\x00\x00", b"AMQP\x03\x01\x00\x00"])

    def test_linkOptions(self) -> None:
        """
        The link options of proton apply to the links made, and link names
        follow proton's: the container id and the addresses.
        """
        container = self.container()
        container.start()
        connection = container.connect(_URL)
        sender = container.create_sender(connection, "q", options=AtMostOnce())
        receiver = container.create_receiver(
            connection, "r", options=[Selector("colour = 'red'")]
        )
        self.assertEqual(sender.snd_settle_mode, Link.SND_SETTLED)
        self.assertEqual(sender.name, "test-q")
        self.assertEqual(receiver.name, "test-r")
        self.assertIn("selector", str(receiver.source.filter.get_dict()))
        self.assertEqual(sender.session, receiver.session)

    def test_urlContext(self) -> None:
        """
        C{create_sender} and C{create_receiver} given a URL connect and
        attach to its path, each on a connection of its own.
        """
        self.listenPeer()
        received: list[object] = []
        recorder = _Recorder(
            {
                "on_start": lambda e: (
                    e.container.create_sender(f"{_URL}/q"),
                    e.container.create_receiver("127.0.0.1:5672/r"),
                ),
                "on_sendable": self.sendOnce,
                "on_message": lambda e: received.append(e.message.body),
            }
        )
        container = self.container(recorder)
        container.start()
        self.assertEqual(len(self.reactor.tcpClients), 2)
        pumps = [self.complete(), self.complete()]
        for peer in self.peers:
            peer.offer("r", Message(body="for r"))
        for pump in pumps:
            pump.flush()
        self.assertEqual(received, ["for r"])
        self.assertEqual([a for p in self.peers for a, m in p.received], ["q"])

    def test_connectionHandler(self) -> None:
        """
        The events of a connection with its own handler go to that handler,
        not to the container's.
        """
        self.listenPeer()
        own = _Recorder()
        recorder = _Recorder(
            {
                "on_start": lambda e: e.container.create_sender(
                    e.container.connect(_URL, handler=own), "q"
                )
            }
        )
        self.container(recorder).start()
        self.complete()
        self.assertEqual(recorder.events, ["on_start"])
        self.assertEqual(
            own.events[:3],
            ["on_connection_opened", "on_session_opened", "on_link_opened"],
        )


class ReceiveTests(_ContainerTestCase):
    """
    Receiving: credit (C{prefetch}), C{on_message}, and the outcomes
    C{auto_accept}, C{Reject} and C{Release} give.
    """

    def receiver(self, recorder: _Recorder) -> None:
        """
        Start a container whose handler attaches a receiver to C{q}.
        """
        self.listenPeer()
        self.receiving: list[Any] = []
        start = recorder.actions.get("on_start")

        def attach(event: Any) -> None:
            self.receiving.append(
                event.container.create_receiver(event.container.connect(_URL), "q")
            )
            if start is not None:
                start(event)

        recorder.actions["on_start"] = attach
        self.container(recorder).start()

    def test_prefetch(self) -> None:
        """
        The receiver's credit is the handler's C{prefetch}, granted again as
        messages arrive; each is accepted (C{auto_accept}).
        """
        bodies: list[object] = []
        recorder = _Recorder(
            {"on_message": lambda e: bodies.append(e.message.body)}, prefetch=3
        )
        self.receiver(recorder)
        self.assertEqual(self.receiving[0].credit, 3)
        pump = self.complete()
        peer = self.peers[0]
        for index in range(5):
            peer.offer("q", Message(body=index))
        pump.flush()
        self.assertEqual(bodies, [0, 1, 2, 3, 4])
        self.assertEqual(peer.sentOutcomes, [Disposition.ACCEPTED] * 5)
        self.assertEqual(recorder.events.count("on_message"), 5)

    def test_noPrefetch(self) -> None:
        """
        Without C{prefetch}, the receiver has no credit until the handler
        grants it.
        """
        recorder = _Recorder(prefetch=0)
        self.receiver(recorder)
        pump = self.complete()
        self.peers[0].offer("q", Message(body=1))
        pump.flush()
        self.assertEqual(self.peers[0].queued("q"), 1)
        self.assertNotIn("on_message", recorder.events)

    def test_manualAccept(self) -> None:
        """
        Without C{auto_accept} a message stays unsettled until the handler
        accepts it; from outside a handler, C{Container.flush} sends the
        outcome.
        """
        deliveries: list[Delivery] = []
        recorder = _Recorder(
            {"on_message": lambda e: deliveries.append(e.delivery)},
            auto_accept=False,
        )
        self.receiver(recorder)
        pump = self.complete()
        peer = self.peers[0]
        peer.offer("q", Message(body=1))
        pump.flush()
        self.assertEqual(peer.sentOutcomes, [])
        recorder.accept(deliveries[0])
        pump.flush()
        self.assertEqual(peer.sentOutcomes, [])
        container = recorder.containers[0]
        assert isinstance(container, Container)
        container.flush()
        pump.flush()
        self.assertEqual(peer.sentOutcomes, [Disposition.ACCEPTED])

    def test_rejectRelease(self) -> None:
        """
        C{Reject} raised in C{on_message} rejects the message, C{Release}
        releases it (as modified, as proton does); others are accepted.
        """

        def decide(event: Any) -> None:
            body = event.message.body
            if body == "reject":
                raise Reject()
            if body == "release":
                raise Release()

        recorder = _Recorder({"on_message": decide})
        self.receiver(recorder)
        pump = self.complete()
        for body in ("reject", "release", "fine"):
            self.peers[0].offer("q", Message(body=body))
        pump.flush()
        self.assertEqual(
            self.peers[0].sentOutcomes,
            [Disposition.REJECTED, Disposition.MODIFIED, Disposition.ACCEPTED],
        )

    def test_dynamic(self) -> None:
        """
        A dynamic receiver learns the address the peer gave its source.
        """
        self.listenPeer()
        addresses: list[str] = []
        recorder = _Recorder(
            {
                "on_start": lambda e: e.container.create_receiver(
                    e.container.connect(_URL), None, dynamic=True
                ),
                "on_link_opened": lambda e: addresses.append(
                    e.receiver.remote_source.address
                ),
            }
        )
        self.container(recorder).start()
        self.complete()
        self.assertEqual(addresses, ["dynamic-0"])


class CloseTests(_ContainerTestCase):
    """
    How connections end: closed by either side, lost, refused.
    """

    def test_peerCloses(self) -> None:
        """
        When the peer closes first, the handler sees C{on_connection_closing}
        and then C{on_connection_closed}, once, as with proton.
        """
        self.listenPeer()
        recorder = _Recorder({"on_start": lambda e: e.container.connect(_URL)})
        self.container(recorder).start()
        pump = self.complete()
        self.peers[0].close()
        pump.flush()
        self.assertEqual(
            recorder.events,
            [
                "on_start",
                "on_connection_opened",
                "on_connection_closing",
                "on_connection_closed",
            ],
        )

    def test_peerClosesWithError(self) -> None:
        """
        A peer's Close with an error condition is C{on_connection_error}.
        """
        self.listenPeer()
        conditions: list[str] = []
        recorder = _Recorder(
            {
                "on_start": lambda e: e.container.connect(_URL),
                "on_connection_error": lambda e: conditions.append(
                    e.connection.remote_condition.name
                ),
            }
        )
        self.container(recorder).start()
        pump = self.complete()
        self.peers[0].close("amqp:internal-error", "oops")
        pump.flush()
        self.assertEqual(conditions, ["amqp:internal-error"])
        self.assertEqual(recorder.events[-1], "on_connection_closed")

    def refuse(self, named: bool = False) -> None:
        """
        Refuse the pending TCP connection attempt.

        @param named: whether the attempt is to a host name: Twisted's
            C{HostnameEndpoint} reports the failure when its attempt delay
            (0.3 seconds) ends.  To a numeric address, it is reported at
            once.
        """
        ConnectionCompleter(self.reactor).failOnce(Failure(ConnectionRefusedError()))
        if named:
            self.reactor.advance(0.3)

    def test_refusedNoReconnect(self) -> None:
        """
        With C{reconnect=False}, a refused TCP connection is a transport
        error (with the condition proton's container gives) and a
        disconnection, as proton reports them; no other attempt follows.
        """
        conditions: list[str] = []
        recorder = _Recorder(
            {
                "on_start": lambda e: e.container.connect(_URL, reconnect=False),
                "on_transport_error": lambda e: conditions.append(
                    e.transport.condition.name
                ),
            }
        )
        self.container(recorder).start()
        self.refuse()
        self.reactor.advance(60)
        self.assertEqual(
            recorder.events,
            ["on_start", "on_disconnected", "on_transport_error", "on_disconnected"],
        )
        self.assertEqual(conditions, ["proton.pythonio"])
        self.assertEqual(self.reactor.tcpClients, [])

    def test_reconnectDelays(self) -> None:
        """
        Refused attempts are retried after the policy's delays (the first
        retry after 0.1 seconds with the default backoff), on the reactor's
        clock.
        """
        self.container(
            _Recorder({"on_start": lambda e: e.container.connect(_URL)})
        ).start()
        self.refuse()
        self.assertEqual(self.reactor.tcpClients, [])
        self.reactor.advance(0.09)
        self.assertEqual(self.reactor.tcpClients, [])
        self.reactor.advance(0.011)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.refuse()
        self.reactor.advance(0.19)
        self.assertEqual(self.reactor.tcpClients, [])
        self.reactor.advance(0.011)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_reconnectList(self) -> None:
        """
        C{reconnect} may be a list of delays (or proton's C{Backoff}): after
        the last, the container gives up.
        """
        self.container(
            _Recorder(
                {"on_start": lambda e: e.container.connect(_URL, reconnect=[0, 2])}
            )
        ).start()
        self.refuse()
        self.reactor.advance(1.9)
        self.assertEqual(self.reactor.tcpClients, [])
        self.reactor.advance(0.1)
        self.refuse()
        self.reactor.advance(60)
        self.assertEqual(self.reactor.tcpClients, [])
        container = self.container()
        container.start()
        container.connect(_URL, reconnect=Backoff(max_tries=1))
        self.refuse()
        self.reactor.advance(60)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_failover(self) -> None:
        """
        C{urls} are tried in turn, each after the policy's delay.
        """
        self.container(
            _Recorder(
                {
                    "on_start": lambda e: e.container.connect(
                        urls=["amqp://a.example:1", "amqp://b.example:2"]
                    )
                }
            )
        ).start()
        self.assertEqual(self.reactor.tcpClients[0][1], 1)
        self.refuse(named=True)
        self.assertEqual(self.reactor.tcpClients[0][1], 2)
        self.refuse(named=True)
        self.assertEqual(self.reactor.tcpClients, [])
        self.reactor.advance(0.1)
        self.assertEqual(self.reactor.tcpClients[0][1], 1)

    def test_reconnectAfterLoss(self) -> None:
        """
        A connection lost after it opened comes back at once on the same
        C{Connection}; its links attach again.
        """
        self.listenPeer()
        connections: list[Any] = []
        opened: list[Any] = []
        recorder = _Recorder(
            {
                "on_start": lambda e: connections.append(
                    e.container.create_sender(e.container.connect(_URL), "q").connection
                ),
                "on_connection_opened": lambda e: opened.append(e.connection),
            }
        )
        self.container(recorder).start()
        pump = self.complete()
        pump.server.transport.loseConnection()
        pump.flush()
        self.assertIn("on_disconnected", recorder.events)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.complete()
        self.assertEqual(opened, connections * 2)
        self.assertEqual(recorder.events.count("on_link_opened"), 2)
        self.assertEqual(self.peers[1].connection.remote_container, "test")

    def test_noReconnectAfterClose(self) -> None:
        """
        A connection the application closed does not come back.
        """
        self.listenPeer()
        recorder = _Recorder(
            {
                "on_start": lambda e: e.container.connect(_URL),
                "on_connection_opened": lambda e: e.connection.close(),
            }
        )
        self.container(recorder).start()
        self.complete()
        self.reactor.advance(60)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(recorder.events[-1], "on_connection_closed")

    def test_closingBothWays(self) -> None:
        """
        When this side closes first, C{on_connection_closed} comes once, when
        the peer's Close arrives; no C{on_connection_closing}.
        """
        self.listenPeer()
        recorder = _Recorder(
            {
                "on_start": lambda e: e.container.connect(_URL),
                "on_connection_opened": lambda e: e.connection.close(),
            }
        )
        self.container(recorder).start()
        pump = self.complete()
        self.assertEqual(
            recorder.events,
            ["on_start", "on_connection_opened", "on_connection_closed"],
        )
        self.assertTrue(pump.clientIO.disconnected)

    def test_closeUnanswered(self) -> None:
        """
        When the peer does not answer this side's Close, the TCP connection
        ends C{CLOSE_TIMEOUT} seconds later (proton's container would wait
        on); no other attempt follows.
        """
        self.listenPeer()
        connections: list[Any] = []
        recorder = _Recorder(
            {"on_start": lambda e: connections.append(e.container.connect(_URL))}
        )
        container = self.container(recorder)
        container.start()
        pump = self.complete()
        self.peers[0].dataReceived = lambda data: None  # type: ignore[method-assign]
        connections[0].close()
        container.flush()
        pump.flush()
        self.reactor.advance(CLOSE_TIMEOUT - 0.1)
        pump.flush()
        self.assertFalse(pump.clientIO.disconnected)
        self.reactor.advance(0.1)
        pump.flush()
        self.assertTrue(pump.clientIO.disconnected)
        self.assertEqual(
            recorder.events,
            ["on_start", "on_connection_opened", "on_transport_error"],
        )
        self.reactor.advance(60)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(container._owners, [])

    def test_closedBeforeConnected(self) -> None:
        """
        A connection closed outside a handler, without C{flush}, before its
        TCP connection is made, is not opened when the TCP connection comes:
        the attempt is given up.
        """
        self.listenPeer()
        recorder = _Recorder()
        container = self.container(recorder)
        container.start()
        connection = container.connect(_URL)
        connection.close()
        # The TCP connection is made: Twisted asks for its protocol (and
        # drops the connection when there is none).
        factory = self.reactor.tcpClients.pop()[2]
        self.assertIsNone(factory.buildProtocol(None))
        self.reactor.advance(60)
        self.assertEqual(recorder.events, ["on_start"])
        self.assertEqual(container._owners, [])
        self.assertEqual(self.reactor.tcpClients, [])

    def test_closeWhileConnecting(self) -> None:
        """
        Closing a connection before its TCP connection is made cancels the
        attempt; nothing follows.
        """
        recorder = _Recorder()
        container = self.container(recorder)
        container.start()
        connection = container.connect(_URL)
        connection.close()
        container.flush()
        self.reactor.advance(60)
        self.assertEqual(recorder.events, ["on_start"])
        self.assertEqual(container._owners, [])


class ListenTests(_ContainerTestCase):
    """
    C{listen}: the container as the server.
    """

    def test_helloWorld(self) -> None:
        """
        A container that listens and connects to itself exchanges a message,
        with proton's callbacks on both sides; closing the acceptor stops
        listening.
        """
        bodies: list[object] = []
        acceptors: list[Any] = []

        def start(event: Any) -> None:
            acceptors.append(event.container.listen("0.0.0.0:5672"))
            event.container.create_sender("127.0.0.1:5672/examples")

        def sendable(event: Any) -> None:
            event.sender.send(Message(body="Hello World!"))
            event.sender.close()

        recorder = _Recorder(
            {
                "on_start": start,
                "on_sendable": sendable,
                "on_message": lambda e: bodies.append(e.message.body),
                "on_accepted": lambda e: e.connection.close(),
                "on_connection_closed": lambda e: acceptors[0].close(),
            }
        )
        self.container(recorder).start()
        [(port, factory, backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (5672, "0.0.0.0"))
        self.complete()
        self.assertEqual(bodies, ["Hello World!"])
        self.assertEqual(
            recorder.events,
            [
                "on_start",
                "on_connection_opening",
                "on_link_opening",
                "on_connection_opened",
                "on_session_opened",
                "on_link_opened",
                "on_connection_opened",
                "on_session_opened",
                "on_link_opened",
                "on_sendable",
                "on_message",
                "on_link_closing",
                "on_link_closed",
                "on_accepted",
                "on_settled",
                "on_link_closed",
                "on_connection_closing",
                "on_connection_closed",
                "on_connection_closed",
            ],
        )
        self.assertTrue(acceptors[0].closed)

    def test_lostBeforeAMQP(self) -> None:
        """
        A client that connects to the listener and leaves before AMQP began
        (during SASL, or TLS) is reported on the accepted connection, as
        proton's listener does: a transport error.
        """
        recorder = _Recorder()
        container = self.container(recorder)
        container.start()
        container.listen("0.0.0.0:5672")
        self.reactor.connectTCP("127.0.0.1", 5672, ClientFactory.forProtocol(Protocol))
        pump = self.complete()
        pump.clientIO.loseConnection()
        pump.flush()
        self.assertEqual(recorder.events, ["on_start", "on_transport_error"])
        self.assertEqual(container._owners, [])

    def test_ipv6(self) -> None:
        """
        C{[::0]} listens on every IPv6 interface.
        """
        container = self.container()
        container.listen("amqp://[::0]:5673")
        [(port, factory, backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (5673, "::"))

    def test_anyPort(self) -> None:
        """
        Port 0 listens on any free port, as with proton; without a port, the
        scheme's is used.
        """
        container = self.container()
        for url in (
            "127.0.0.1:0",
            "amqp://[::1]:00/ignored:0",
            Url("amqp://127.0.0.1:0"),
            "0.0.0.0",
            "[::0]",
            Url("0.0.0.0"),
            "amqp://127.0.0.1:5674/a:0",
        ):
            container.listen(url)
        self.assertEqual(
            [(port, interface) for port, _, _, interface in self.reactor.tcpServers],
            [
                (0, "127.0.0.1"),
                (0, "::1"),
                (0, "127.0.0.1"),
                (5672, "0.0.0.0"),
                (5672, "::"),
                (5672, "0.0.0.0"),
                (5674, "127.0.0.1"),
            ],
        )

    def test_tlsNeedsCredentials(self) -> None:
        """
        Listening with C{amqps} without a certificate is refused.
        """
        container = self.container()
        self.assertRaises(ValueError, container.listen, "amqps://0.0.0.0:5671")

    def test_tls(self) -> None:
        """
        With C{container.ssl.server}'s certificate and a client
        L{amqptx.SSLDomain} trusting its CA, a message goes over TLS.
        """
        pki = sharedPKI()
        bodies: list[object] = []
        domain = AMQPTXSSLDomain(AMQPTXSSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(pki.caCert)

        def start(event: Any) -> None:
            event.container.listen("amqps://0.0.0.0:5671")
            connection = event.container.connect(
                "amqps://localhost:5671", ssl_domain=domain
            )
            event.container.create_sender(connection, "q")

        recorder = _Recorder(
            {
                "on_start": start,
                "on_sendable": self.sendOnce,
                "on_message": lambda e: bodies.append(e.message.body),
            }
        )
        container = self.container(recorder)
        container.ssl.server.set_credentials(pki.serverCert, pki.serverKey, None)
        container.start()
        self.complete()
        self.assertEqual(bodies, ["hello"])


class TimerTests(_ContainerTestCase):
    """
    C{schedule}: C{on_timer_task} on the reactor's clock.
    """

    def test_schedule(self) -> None:
        """
        A task fires C{on_timer_task} on its handler after its delay, with
        the container as C{event.container}.
        """
        recorder = _Recorder()
        container = self.container()
        container.start()
        container.schedule(5, recorder)
        self.reactor.advance(4.9)
        self.assertEqual(recorder.events, [])
        self.reactor.advance(0.1)
        self.assertEqual(recorder.events, ["on_timer_task"])
        self.assertIs(recorder.containers[0], container)

    def test_cancel(self) -> None:
        """
        A cancelled task does not fire.
        """
        recorder = _Recorder()
        container = self.container()
        container.start()
        task = container.schedule(5, recorder)
        task.cancel()
        self.reactor.advance(10)
        self.assertEqual(recorder.events, [])

    def test_containerHandler(self) -> None:
        """
        Without a handler, the task fires on the container's handlers; a
        task scheduled from C{on_start} sends from C{on_timer_task}.
        """
        self.listenPeer()
        senders: list[Any] = []

        def start(event: Any) -> None:
            connection = event.container.connect(_URL)
            senders.append(event.container.create_sender(connection, "q"))
            event.container.schedule(1)

        recorder = _Recorder(
            {
                "on_start": start,
                "on_timer_task": lambda e: senders[0].send(Message(body="late")),
            }
        )
        self.container(recorder).start()
        pump = self.complete()
        self.reactor.advance(1)
        pump.flush()
        self.assertEqual([m.body for a, m in self.peers[0].received], ["late"])


class RunTests(_ContainerTestCase):
    """
    C{run}, C{start}, C{stop} and L{ContainerService}.
    """

    def test_runWhileRunning(self) -> None:
        """
        C{run} refuses to run a reactor that runs already.
        """
        self.reactor.running = True
        self.assertRaises(RuntimeError, self.container().run)

    def test_runNothingToDo(self) -> None:
        """
        C{run} fires C{on_start}; with no work, it stops the reactor.
        """
        recorder = _Recorder()
        container = self.container(recorder)
        container.run()
        self.assertEqual(recorder.events, ["on_start"])
        self.assertTrue(self.reactor.hasStopped)
        self.assertRaises(RuntimeError, container.run)

    def test_runRaises(self) -> None:
        """
        An exception raised by a handler stops C{run}, which raises it.
        """

        def fail(event: Any) -> None:
            raise ZeroDivisionError()

        container = self.container(_Recorder({"on_start": fail}))
        self.assertRaises(ZeroDivisionError, container.run)

    def test_startLogs(self) -> None:
        """
        After C{start}, an exception raised by a handler is logged and the
        container goes on.
        """
        logged: list[dict[str, Any]] = []
        publisher = _globalPublisher()
        publisher.addObserver(logged.append)
        self.addCleanup(publisher.removeObserver, logged.append)

        def fail(event: Any) -> None:
            raise ZeroDivisionError()

        recorder = _Recorder({"on_timer_task": fail})
        container = self.container()
        container.start()
        container.schedule(1, recorder)
        container.schedule(2, recorder)
        self.reactor.advance(2)
        self.assertEqual(recorder.events, ["on_timer_task", "on_timer_task"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.assertEqual(len([e for e in logged if "log_failure" in e]), 2)

    def test_stop(self) -> None:
        """
        C{stop} drops the connections, closes the listeners and cancels the
        tasks; no event is dispatched afterwards.
        """
        self.listenPeer()
        recorder = _Recorder()
        container = self.container(recorder)
        container.start()
        acceptor = container.listen("0.0.0.0:5680")
        container.connect(_URL)
        container.schedule(1, recorder)
        pump = self.complete()
        events = list(recorder.events)
        container.stop()
        pump.flush()
        self.reactor.advance(60)
        self.assertEqual(recorder.events, events)
        self.assertTrue(acceptor.closed)
        self.assertTrue(pump.clientIO.disconnected)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertRaises(RuntimeError, container.connect, _URL)

    def test_service(self) -> None:
        """
        L{ContainerService} starts the container with the application and
        stops it, firing once its connections are gone.
        """
        self.listenPeer()
        recorder = _Recorder({"on_start": lambda e: e.container.connect(_URL)})
        service = ContainerService(self.container(recorder))
        verifyObject(IService, service)
        service.startService()
        self.assertEqual(recorder.events, ["on_start"])
        pump = self.complete()
        stopped = service.stopService()
        self.assertNoResult(stopped)
        pump.flush()
        self.successResultOf(stopped)


class ArgumentTests(_ContainerTestCase):
    """
    What C{connect} refuses, and how URLs are read.
    """

    def test_urlAndURLs(self) -> None:
        """
        C{url} and C{urls} together are an error (proton ignores C{urls}).
        """
        container = self.container()
        with self.assertRaises(ValueError) as raised:
            container.connect(_URL, urls=[_URL])
        self.assertIn("not both", str(raised.exception))

    def test_addressOnly(self) -> None:
        """
        An C{address} without any URL is an error, as with proton.
        """
        self.assertRaises(ValueError, self.container().connect, address="q")

    def test_unknownOption(self) -> None:
        """
        An unknown keyword argument is an error.
        """
        self.assertRaises(TypeError, self.container().connect, _URL, colour="red")

    def test_protonSSLDomain(self) -> None:
        """
        A C{proton.SSLDomain} cannot be read back: it is refused with a
        pointer to L{amqptx.SSLDomain}.
        """
        with self.assertRaises(TypeError) as raised:
            self.container().connect(
                "amqps://h", ssl_domain=SSLDomain(SSLDomain.MODE_CLIENT)
            )
        self.assertIn("amqptx.SSLDomain", str(raised.exception))

    def test_insecurePlain(self) -> None:
        """
        With C{allow_insecure_mechs=False}, a password over C{amqp} is
        refused at once.
        """
        self.assertRaises(
            ValueError,
            self.container().connect,
            "amqp://u:p@h",
            allow_insecure_mechs=False,
        )

    def test_toURL(self) -> None:
        """
        URLs may leave out the scheme, as proton's C{Url} allows, or be
        C{proton.Url} objects.
        """
        self.assertEqual(str(_toURL("h:1/q")), "amqp://h:1/q")
        self.assertEqual(str(_toURL(Url("amqps://u:p@h/q"))), "amqps://u:***@h:5671/q")
        self.assertRaises(TypeError, _toURL, 5)

    def test_sslDomain(self) -> None:
        """
        L{amqptx.SSLDomain} makes Twisted's client TLS options, and refuses
        what amqptx cannot do.
        """
        domain = AMQPTXSSLDomain(AMQPTXSSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(sharedPKI().caCert)
        self.assertTrue(
            IOpenSSLClientConnectionCreator.providedBy(domain.clientOptions("h"))
        )
        self.assertRaises(NotImplementedError, domain.allow_unsecured_client)
        self.assertRaises(ValueError, domain.set_peer_authentication, 99)
        self.assertRaises(ValueError, AMQPTXSSLDomain, 99)


def _globalPublisher() -> Any:
    from twisted.logger import globalLogPublisher

    return globalLogPublisher


class ConnectFileTests(_ContainerTestCase):
    """
    AMQ's connection configuration file, read when C{connect} has no URL.
    """

    def write(self, text: str) -> str:
        """
        @param text: the file's content.
        @return: the path of a temporary file holding it.
        """
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.remove, path)
        return path

    def useFile(self, path: str) -> None:
        """
        Point C{MESSAGING_CONNECT_FILE} at C{path} for this test.

        @param path: the file.
        """
        previous = os.environ.get("MESSAGING_CONNECT_FILE")
        os.environ["MESSAGING_CONNECT_FILE"] = path

        def restore() -> None:
            if previous is None:
                del os.environ["MESSAGING_CONNECT_FILE"]
            else:
                os.environ["MESSAGING_CONNECT_FILE"] = previous

        self.addCleanup(restore)

    def test_connect(self) -> None:
        """
        Without a URL, C{connect} connects where the file says, with its
        credentials; comments are allowed.
        """
        self.useFile(
            self.write(
                """
                // where the broker is
                {
                    "scheme": "amqp", /* no TLS */
                    "host": "127.0.0.1",
                    "port": 5673,
                    "user": "alice",
                    "password": "secret // not a comment",
                    "sasl": {"mechanisms": "PLAIN", "allow_insecure": true}
                }
                """
            )
        )
        container = self.container()
        container.start()
        connection = container.connect()
        [(host, port, *rest)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 5673))
        self.assertEqual(connection.user, "alice")

    def test_read(self) -> None:
        """
        Every key is read; the default scheme is C{amqps} and the port
        follows the scheme.
        """
        config = _readConnectFile(
            self.write(
                '{"host": "b.example", "sasl": {"enabled": false,'
                ' "mechanisms": ["PLAIN", "EXTERNAL"]},'
                ' "tls": {"ca": "ca.pem", "cert": "c.pem", "key": "k.pem",'
                ' "verify": false}}'
            )
        )
        self.assertEqual(str(config.url), "amqps://b.example:5671")
        self.assertFalse(config.saslEnabled)
        self.assertEqual(config.mechanisms, "PLAIN EXTERNAL")
        self.assertEqual(
            (config.ca, config.cert, config.key), ("ca.pem", "c.pem", "k.pem")
        )
        domain = config.sslDomain()
        self.assertEqual(domain.verifyMode, AMQPTXSSLDomain.ANONYMOUS_PEER)
        self.assertEqual(domain.caFile, "ca.pem")

    def test_documented(self) -> None:
        """
        The example file of the documentation says what the documentation
        says it does.
        """
        path = os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            "docs",
            "examples",
            "container_connect.json",
        )
        config = _readConnectFile(path)
        self.assertEqual(str(config.url), "amqps://broker.example.com:5671")
        self.assertEqual((config.user, config.password), ("alice", "secret"))
        self.assertEqual(
            (config.saslEnabled, config.mechanisms, config.allowInsecure),
            (True, "PLAIN", False),
        )
        self.assertEqual(
            (config.ca, config.cert, config.key, config.verify),
            ("/etc/pki/ca.pem", "client.pem", "client-key.pem", True),
        )

    def assertMalformed(self, text: str, *fragments: str) -> None:
        """
        Assert that reading a file fails with a L{ValueError} naming the file
        and saying what is wrong.

        @param text: the file's content.
        @param fragments: text the message must hold.
        """
        path = self.write(text)
        with self.assertRaises(ValueError) as raised:
            _readConnectFile(path)
        message = str(raised.exception)
        self.assertIn(path, message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_malformed(self) -> None:
        """
        A file that is not JSON, not an object, has an unknown key, a value
        of the wrong type, a bad scheme or an unterminated comment is a
        clear L{ValueError}; a password is never shown.
        """
        self.assertMalformed('{"host": }', "not valid JSON", "line 1")
        self.assertMalformed("[1]", "expected a JSON object")
        self.assertMalformed('{"hots": "h"}', "unknown key 'hots'")
        self.assertMalformed('{"port": "x"}', "port must be a number")
        self.assertMalformed('{"port": true}', "'port' must be a number or a string")
        self.assertMalformed('{"scheme": "http"}', "scheme must be")
        self.assertMalformed('{"sasl": {"enabled": "yes"}}', "'enabled' must be")
        self.assertMalformed('{"host": "h"} /* open', "unterminated")
        self.assertMalformed('{"password": "hunter2"}', "a password needs a user")
        self.assertMalformed(
            '{"user": "u", "password": 7}', "must be a string, not ***"
        )
        self.assertMalformed(
            '{"scheme": "amqp", "tls": {"enabled": true}}', "tls enabled"
        )

    def test_malformedOnConnect(self) -> None:
        """
        C{connect} without a URL raises the file's L{ValueError}; a
        C{MESSAGING_CONNECT_FILE} that names no file is one too.
        """
        self.useFile(self.write("{"))
        self.assertRaises(ValueError, self.container().connect)
        os.environ["MESSAGING_CONNECT_FILE"] = "/nonexistent/connect.json"
        with self.assertRaises(ValueError) as raised:
            self.container().connect()
        self.assertIn("/nonexistent/connect.json", str(raised.exception))
