# -*- test-case-name: tests.integration.test_peers -*-
"""
A tiny AMQP 1.0 broker on python-qpid-proton's own event loop, used as an
independent peer in integration tests.

Run it as C{python -m tests.integration.proton_server --port N}.  Once the
listening socket is bound it prints exactly one line, C{LISTENING <port>}, to
standard output; everything else it has to say goes to standard error.  It
exits with status 0 on C{SIGTERM} or C{SIGINT}, and with L{EXIT_LISTEN_FAILED}
if the port could not be bound (so that a parent which picked the port can
pick another one and retry).

Behaviour:

  - Every address is a FIFO queue, created on first use.  Messages sent to
    an address are accepted on arrival and handed out round-robin to the
    links receiving from that address, within their credit.  They are sent
    unsettled and forgotten once the receiver settles them; a C{released}
    (or C{modified} without C{undeliverable-here}) outcome puts the message
    back at the front of its queue, and so does the link or connection
    going away while the message is unsettled.  A sender without a target
    address (the anonymous relay) routes each message by its C{to} address.
  - A message sent to an address starting with C{reject/} is rejected with
    the condition C{amqp:precondition-failed}; C{release/} releases it;
    C{modify/} answers C{modified} with C{delivery-failed} and
    C{undeliverable-here} set.  A link attaching to an address starting with
    C{detach/} is detached at once with the condition C{amqp:not-found}.
  - A receiver asking for a dynamic source gets a fresh, unique address.
  - A message sent to the address C{echo} is answered by a message with the
    same body and C{correlation-id}, sent to its C{reply-to} address.
  - SASL offers C{ANONYMOUS} only (plus C{EXTERNAL} when client certificates
    are required).
"""

from __future__ import annotations

import argparse
import signal
import sys
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from types import FrameType

from proton import (
    Condition,
    Connection,
    Delivery,
    Endpoint,
    Event,
    Handler,
    Link,
    Message,
    Sender,
    SSLDomain,
    Terminus,
)
from proton.handlers import MessagingHandler
from proton.reactor import Container, EventInjector

__all__ = [
    "EXIT_LISTEN_FAILED",
    "ECHO_ADDRESS",
    "Broker",
    "main",
    "serverSSLDomain",
]

EXIT_LISTEN_FAILED = 3
"""
The exit status used when the listening socket could not be bound.
"""

ECHO_ADDRESS = "echo"
"""
The address whose messages are echoed to their C{reply-to} address.
"""

_SHUTDOWN_GRACE = 2.0


def _log(text: str) -> None:
    sys.stderr.write(f"proton_server: {text}\n")
    sys.stderr.flush()


class _ShutdownInjector(EventInjector):
    """
    An event injector that wakes the container from a signal handler.

    L{EventInjector.close} only sets a flag and writes to a pipe, so unlike
    L{EventInjector.trigger} (which takes a queue lock) it is safe to call
    from a signal handler running on the container's own thread.
    """

    def __init__(self, onShutdown: Callable[[], None]) -> None:
        super().__init__()
        self._onShutdown = onShutdown
        self._requested = False
        self._handled = False

    def requestShutdown(self) -> None:
        """
        Ask for the container to shut down.  Safe to call from a signal
        handler.
        """
        self._requested = True
        self.close()

    def on_selectable_readable(self, event: Event) -> None:
        super().on_selectable_readable(event)
        if self._requested and not self._handled:
            self._handled = True
            self._onShutdown()


class _StopContainer(Handler):
    """
    A timer task handler stopping the container regardless of the peers.
    """

    def __init__(self, container: Container) -> None:
        self._container = container

    def on_timer_task(self, event: Event) -> None:
        _log("peers did not close in time; stopping anyway")
        self._container.stop()


class Broker(MessagingHandler):
    """
    The broker's event handler.

    @ivar listening: Whether the listening socket has been bound.
    """

    def __init__(
        self,
        url: str,
        sslDomain: SSLDomain | None = None,
        mechanisms: str = "ANONYMOUS",
    ) -> None:
        """
        @param url: The C{amqp://} or C{amqps://} URL to listen on.
        @param sslDomain: The TLS configuration for C{amqps}, or L{None}.
        @param mechanisms: The space-separated SASL mechanisms to offer.
        """
        super().__init__(prefetch=100, auto_accept=False, auto_settle=False)
        self._url = url
        self._sslDomain = sslDomain
        self._mechanisms = mechanisms
        self.listening = False
        self._container: Container | None = None
        self._closeListener: Callable[[], None] | None = None
        self._injector = _ShutdownInjector(self._shutdown)
        self._shuttingDown = False
        self._connections: set[Connection] = set()
        self._queues: dict[str, deque[Message]] = {}
        self._consumers: dict[str, deque[Sender]] = {}
        self._consumerAddresses: dict[Link, str] = {}
        self._outstanding: dict[Delivery, tuple[str, Message]] = {}

    def requestShutdown(self) -> None:
        """
        Close the listener and all connections, then stop.  Safe to call from
        a signal handler.
        """
        self._injector.requestShutdown()

    # Listening and shutting down.

    def on_start(self, event: Event) -> None:
        container = event.container
        self._container = container
        container.selectable(self._injector)
        acceptor = container.listen(self._url, ssl_domain=self._sslDomain)
        self._closeListener = acceptor.close
        self.listening = True
        sys.stdout.write(f"LISTENING {self._port()}\n")
        sys.stdout.flush()

    def _port(self) -> int:
        port = self._url.rsplit(":", 1)[1]
        return int(port)

    def _shutdown(self) -> None:
        self._shuttingDown = True
        if self._closeListener is not None:
            self._closeListener()
        for connection in list(self._connections):
            connection.close()
        if self._container is not None:
            if self._connections:
                self._container.schedule(
                    _SHUTDOWN_GRACE, _StopContainer(self._container)
                )
            else:
                self._container.stop()

    # Connections.

    def on_connection_bound(self, event: Event) -> None:
        transport = event.transport
        connection = event.connection
        if transport is None or connection is None:
            return
        transport.sasl().allowed_mechs(self._mechanisms)
        self._connections.add(connection)
        if self._shuttingDown:
            connection.close()

    def on_transport_closed(self, event: Event) -> None:
        connection = event.connection
        if connection is None:
            return
        self._forgetConnection(connection)
        self._connections.discard(connection)
        if self._shuttingDown and not self._connections:
            if self._container is not None:
                self._container.stop()

    def on_transport_error(self, event: Event) -> None:
        transport = event.transport
        condition = transport.condition if transport is not None else None
        if condition is not None:
            _log(f"transport error: {condition.name}: {condition.description}")

    def on_connection_error(self, event: Event) -> None:
        connection = event.connection
        if connection is not None and connection.remote_condition is not None:
            condition = connection.remote_condition
            _log(f"connection closed by peer with {condition.name}")

    def on_session_error(self, event: Event) -> None:
        # MessagingHandler closes the whole connection; only the session goes.
        pass

    def on_link_error(self, event: Event) -> None:
        # MessagingHandler closes the whole connection; only the link goes.
        pass

    # Links.

    def on_link_remote_open(self, event: Event) -> None:
        # Runs before MessagingHandler's own handlers, which would open (or
        # re-open!) a link still uninitialised once this returns.
        link = event.link
        if link is None or not link.state & Endpoint.LOCAL_UNINIT:
            return
        link.snd_settle_mode = link.remote_snd_settle_mode
        if isinstance(link, Sender):
            self._attachConsumer(link)
        else:
            self._attachProducer(link)

    def _attachConsumer(self, link: Sender) -> None:
        remoteSource = link.remote_source
        if remoteSource.dynamic:
            address: str | None = f"dynamic/{uuid.uuid4()}"
        else:
            address = remoteSource.address
        if address is None or address.startswith("detach/"):
            self._refuse(link)
            return
        link.source.copy(remoteSource)
        link.source.address = address
        link.target.copy(link.remote_target)
        link.open()
        self._consumers.setdefault(address, deque()).append(link)
        self._consumerAddresses[link] = address

    def _attachProducer(self, link: Link) -> None:
        remoteTarget = link.remote_target
        address = remoteTarget.address
        if remoteTarget.dynamic:
            address = f"dynamic/{uuid.uuid4()}"
        elif remoteTarget.type == Terminus.COORDINATOR or (
            address is not None and address.startswith("detach/")
        ):
            self._refuse(link)
            return
        link.source.copy(link.remote_source)
        link.target.copy(remoteTarget)
        if address is not None:
            link.target.address = address
        link.open()

    def _refuse(self, link: Link) -> None:
        # The attach answering a refused link carries a null terminus on our
        # side of it (the target of a sender's link, the source of a
        # receiver's), then the detach follows at once.
        if isinstance(link, Sender):
            link.source.type = Terminus.UNSPECIFIED
            link.target.copy(link.remote_target)
        else:
            link.source.copy(link.remote_source)
            link.target.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = Condition("amqp:not-found", "no such node")
        link.close()

    def on_link_remote_close(self, event: Event) -> None:
        if event.link is not None:
            self._forgetLink(event.link)

    def _forgetLink(self, link: Link) -> None:
        address = self._consumerAddresses.pop(link, None)
        if address is not None:
            consumers = self._consumers.get(address)
            if consumers is not None and isinstance(link, Sender) and link in consumers:
                consumers.remove(link)
                if not consumers:
                    del self._consumers[address]
        requeue = [
            (delivery, entry)
            for delivery, entry in self._outstanding.items()
            if delivery.link == link
        ]
        for delivery, (queueAddress, message) in reversed(requeue):
            del self._outstanding[delivery]
            self._queue(queueAddress).appendleft(message)
            delivery.settle()
        for queueAddress in {queueAddress for _, (queueAddress, _) in requeue}:
            self._pump(queueAddress)

    def _forgetConnection(self, connection: Connection) -> None:
        links = [
            link
            for link in list(self._consumerAddresses)
            if link.connection == connection
        ]
        for link in links:
            self._forgetLink(link)

    # Incoming messages.

    def on_message(self, event: Event) -> None:
        delivery = event.delivery
        link = event.link
        assert delivery is not None and link is not None
        message: Message = event.message
        address = link.target.address or message.address
        if address is None:
            self._reject(delivery, "amqp:not-found", "no address")
        elif address.startswith("reject/"):
            self._reject(
                delivery, "amqp:precondition-failed", "rejected by test server"
            )
        elif address.startswith("release/"):
            self._settle(delivery, Delivery.RELEASED)
        elif address.startswith("modify/"):
            delivery.local.failed = True
            delivery.local.undeliverable = True
            self._settle(delivery, Delivery.MODIFIED)
        elif address == ECHO_ADDRESS:
            if message.reply_to:
                reply = Message(
                    body=message.body,
                    correlation_id=message.correlation_id,
                    address=message.reply_to,
                )
                self._enqueue(message.reply_to, reply)
            self._settle(delivery, Delivery.ACCEPTED)
        else:
            self._enqueue(address, message)
            self._settle(delivery, Delivery.ACCEPTED)

    def _reject(self, delivery: Delivery, name: str, description: str) -> None:
        delivery.local.condition = Condition(name, description)
        self._settle(delivery, Delivery.REJECTED)

    def _settle(self, delivery: Delivery, state: int) -> None:
        if not delivery.settled:
            delivery.update(state)
        delivery.settle()

    def _queue(self, address: str) -> deque[Message]:
        return self._queues.setdefault(address, deque())

    def _enqueue(self, address: str, message: Message) -> None:
        self._queue(address).append(message)
        self._pump(address)

    # Outgoing messages.

    def on_sendable(self, event: Event) -> None:
        link = event.link
        if link is not None:
            address = self._consumerAddresses.get(link)
            if address is not None:
                self._pump(address)

    def _pump(self, address: str) -> None:
        queue = self._queues.get(address)
        consumers = self._consumers.get(address)
        if not queue or not consumers:
            return
        idle = 0
        while queue and idle < len(consumers):
            link = consumers[0]
            consumers.rotate(-1)
            if link.credit <= 0 or not link.state & Endpoint.LOCAL_ACTIVE:
                idle += 1
                continue
            idle = 0
            message = queue.popleft()
            delivery = message.send(link)
            if link.snd_settle_mode == Link.SND_SETTLED:
                delivery.settle()
            else:
                self._outstanding[delivery] = (address, message)

    def on_accepted(self, event: Event) -> None:
        self._finish(event, requeue=False)

    def on_rejected(self, event: Event) -> None:
        self._finish(event, requeue=False)

    def on_released(self, event: Event) -> None:
        delivery = event.delivery
        requeue = True
        if delivery is not None and delivery.remote_state == Delivery.MODIFIED:
            requeue = not delivery.remote.undeliverable
        self._finish(event, requeue=requeue)

    def on_settled(self, event: Event) -> None:
        self._finish(event, requeue=False)

    def _finish(self, event: Event, requeue: bool) -> None:
        delivery = event.delivery
        if delivery is None:
            return
        entry = self._outstanding.pop(delivery, None)
        if entry is None:
            return
        address, message = entry
        delivery.settle()
        if requeue:
            if delivery.remote_state == Delivery.MODIFIED and delivery.remote.failed:
                message.delivery_count += 1
            self._queue(address).appendleft(message)
            self._pump(address)


def serverSSLDomain(cert: str, key: str, clientCA: str | None = None) -> SSLDomain:
    """
    Build the TLS configuration of the server.

    @param cert: The path of the PEM server certificate.
    @param key: The path of the PEM private key of C{cert}.
    @param clientCA: The path of the PEM authority client certificates must
        be signed by, or L{None} to not ask clients for certificates.
    @return: A server-mode L{SSLDomain}.
    """
    domain = SSLDomain(SSLDomain.MODE_SERVER)
    domain.set_credentials(cert, key, None)
    if clientCA is not None:
        domain.set_trusted_ca_db(clientCA)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER, clientCA)
    return domain


def _parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.integration.proton_server",
        description="A tiny AMQP 1.0 test broker on proton's Container.",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cert", help="PEM server certificate; enables amqps")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument(
        "--client-ca",
        dest="clientCA",
        help="PEM authority; require client certificates signed by it",
    )
    options = parser.parse_args(list(argv))
    if (options.cert is None) != (options.key is None):
        parser.error("--cert and --key go together")
    if options.clientCA is not None and options.cert is None:
        parser.error("--client-ca needs --cert and --key")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the broker until C{SIGTERM} or C{SIGINT}.

    @param argv: The command line arguments, without the program name;
        L{sys.argv} if L{None}.
    @return: The exit status.
    """
    options = _parseArguments(sys.argv[1:] if argv is None else argv)
    sslDomain = None
    scheme = "amqp"
    mechanisms = "ANONYMOUS"
    if options.cert is not None:
        sslDomain = serverSSLDomain(options.cert, options.key, options.clientCA)
        scheme = "amqps"
        if options.clientCA is not None:
            mechanisms = "ANONYMOUS EXTERNAL"
    broker = Broker(f"{scheme}://{options.host}:{options.port}", sslDomain, mechanisms)

    def onSignal(signum: int, frame: FrameType | None) -> None:
        broker.requestShutdown()

    signal.signal(signal.SIGTERM, onSignal)
    signal.signal(signal.SIGINT, onSignal)
    try:
        Container(broker).run()
    except OSError as e:
        if not broker.listening:
            _log(f"cannot listen on {options.host}:{options.port}: {e}")
            return EXIT_LISTEN_FAILED
        _log(f"failed: {e!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
