# -*- test-case-name: tests.test_tap -*-
"""
C{twistd amqp-listen}: an AMQP 1.0 server with in-memory queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from twisted.application.service import IService, MultiService, Service
from twisted.cred.checkers import (
    AllowAnonymousAccess,
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import IAnonymous, IUsernamePassword
from twisted.cred.strcred import AuthOptionMixin
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from ._endpoints import AMQPServerEndpoint
from ._interfaces import IAMQPProtocol
from ._sasl import ExternalChecker, SASLConfig
from .broker import Broker, BrokerConfig, Permissions, SQLiteStore, StoreService
from .broker._status import StatusSampler
from .broker._web import StatusWebService, statusSite

__all__ = ["AMQPServerService", "Options", "makeService"]

_log = Logger()
_T = TypeVar("_T")

DEFAULT_LISTEN = "amqp:5672:interface=127.0.0.1"


def _positive(name: str, value: str, integer: bool = False) -> float:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        raise usage.UsageError(f"--{name} {value!r}: not a number") from None
    if not number > 0:
        raise usage.UsageError(f"--{name} {value!r}: must be positive")
    return number


class Options(usage.Options, AuthOptionMixin):
    """
    Command-line options of C{twistd amqp-listen}.
    """

    synopsis = "[--listen ENDPOINT ...] [--auth CHECKER ...] [options]"
    longdesc = (
        "Runs an AMQP 1.0 server with in-memory queues: any AMQP 1.0 client "
        "can send to an address and receive from it. Without --listen it "
        f"listens on {DEFAULT_LISTEN} (127.0.0.1, port 5672). Without --auth "
        "everyone gets in anonymously; with --auth, clients log in with SASL "
        "PLAIN (over TLS, or over cleartext with --allow-insecure-plain) or "
        "EXTERNAL (TLS client certificates, with caCerts= on an amqps: "
        "endpoint)."
    )
    supportedInterfaces = (IUsernamePassword, IAnonymous)

    optFlags = [
        ["allow-anonymous", None, "With --auth, let clients in anonymously too."],
        [
            "no-auto-create",
            None,
            "Refuse addresses not declared with --queue (amqp:not-found).",
        ],
        [
            "allow-insecure-plain",
            None,
            "Offer SASL PLAIN without TLS (passwords then travel in clear).",
        ],
    ]
    optParameters = [
        ["idle-timeout", None, "60", "Seconds of silence before a client is dropped."],
        ["container-id", None, None, "The server's container id."],
        ["max-frame-size", None, None, "The largest frame accepted, in bytes."],
        ["max-connections", None, None, "Refuse connections beyond this number."],
        [
            "handshake-timeout",
            None,
            "30",
            "Seconds a client has to authenticate and open the connection.",
        ],
        [
            "multicast-prefix",
            None,
            "topic/",
            "Addresses starting with it are topics: every receiver gets a copy "
            "(empty: none).",
        ],
        ["dead-letter", None, None, "Where rejected and expired messages go."],
        [
            "max-deliveries",
            None,
            None,
            "Failed deliveries after which a message is dead-lettered.",
        ],
        [
            "max-queue-depth",
            None,
            None,
            "Messages a queue holds; senders get no credit beyond.",
        ],
        ["max-message-size", None, None, "The largest message accepted, in bytes."],
        ["max-links", None, "10000", "Links one connection may have at once."],
        [
            "permissions",
            None,
            None,
            "A file of who may send to and receive from which addresses.",
        ],
        [
            "store",
            None,
            None,
            "Keep durable queues and durable messages in this file (SQLite, "
            "created if need be) across restarts; without it, everything is "
            "in memory.",
        ],
        [
            "web",
            None,
            None,
            "Serve a live status page (/) and its JSON (/api/status) over HTTP "
            "on this endpoint, such as tcp:8080:interface=127.0.0.1; with "
            "--auth, only to users logging in with HTTP Basic authentication "
            "(never anonymously).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []
        self["queues"] = []

    def opt_queue(self, name: str) -> None:
        """
        Declare an address at start (repeatable): a queue, or a topic when it
        starts with the multicast prefix.
        """
        self["queues"].append(name)

    def opt_listen(self, endpoint: str) -> None:
        """
        Listen on a server endpoint (repeatable), such as amqp:5672,
        amqp:5672:interface=\\:\\:, or amqps:5671:privateKey=key.pem:certKey=cert.pem
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        """
        Check every option now, so that a mistake stops C{twistd} with a
        one-line message.
        """
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        self["idle-timeout"] = _positive("idle-timeout", self["idle-timeout"])
        self["handshake-timeout"] = _positive(
            "handshake-timeout", self["handshake-timeout"]
        )
        for name in (
            "max-frame-size",
            "max-connections",
            "max-deliveries",
            "max-queue-depth",
            "max-message-size",
            "max-links",
        ):
            if self[name] is not None:
                self[name] = int(_positive(name, self[name], integer=True))
        self["broker"] = self._brokerConfig()
        from twisted.internet import reactor

        endpoints = []
        for description in self["listen"]:
            if not description.startswith(("amqp:", "amqps:")):
                raise usage.UsageError(
                    f"--listen {description!r}: use an amqp: or amqps: endpoint"
                )
            try:
                endpoint = serverFromString(reactor, description)
            except (ValueError, TypeError, KeyError) as e:
                raise usage.UsageError(f"--listen {description!r}: {e}") from None
            endpoints.append(endpoint)
        self["endpoints"] = endpoints
        self["webEndpoint"] = self._webEndpoint(reactor)

    def _webEndpoint(self, reactor: object) -> IStreamServerEndpoint | None:
        """
        @return: the endpoint of C{--web}, or L{None} without it.
        @raise usage.UsageError: for an endpoint that cannot serve HTTP, or
            C{--auth} without a checker of user names and passwords.
        """
        description = self["web"]
        if description is None:
            return None
        if description.startswith(("amqp:", "amqps:")):
            raise usage.UsageError(
                f"--web {description!r}: use an HTTP server endpoint, such as "
                "tcp:8080:interface=127.0.0.1"
            )
        try:
            endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
        except (ValueError, TypeError, KeyError) as e:
            raise usage.UsageError(f"--web {description!r}: {e}") from None
        if self.get("credCheckers") and not self.webCheckers():
            raise usage.UsageError(
                "--web with --auth needs a checker of user names and passwords "
                "(such as memory: or file:): the status page is never open to "
                "anonymous users"
            )
        return endpoint

    def webCheckers(self) -> tuple[ICredentialsChecker, ...]:
        """
        @return: the checkers of the status page's users: those of C{--auth}
            that check user names and passwords (with bytes, as HTTP Basic
            authentication gives them); empty without C{--auth}, when the
            page is open to everyone.  Anonymous access (C{--auth anonymous},
            C{--allow-anonymous}) never opens the page.
        """
        return tuple(
            _bytesUsers(checker)
            for checker in self.get("credCheckers", [])
            if IUsernamePassword in checker.credentialInterfaces
        )

    def _brokerConfig(self) -> BrokerConfig:
        permissions = None
        if self["permissions"] is not None:
            try:
                permissions = Permissions.fromFile(self["permissions"])
            except (OSError, ValueError) as e:
                raise usage.UsageError(f"--permissions: {e}") from None
        try:
            return BrokerConfig(
                autoCreate=not self["no-auto-create"],
                queues=tuple(self["queues"]),
                multicastPrefix=self["multicast-prefix"] or None,
                deadLetterAddress=self["dead-letter"] or None,
                maxDeliveries=self["max-deliveries"],
                maxQueueDepth=self["max-queue-depth"],
                maxMessageSize=self["max-message-size"],
                maxLinks=self["max-links"],
                permissions=permissions,
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def checkers(self) -> tuple[ICredentialsChecker, ...]:
        """
        @return: the credentials checkers: those of C{--auth} (with
            anonymous access if C{--allow-anonymous}), plus EXTERNAL for
            verified TLS client certificates; without C{--auth}, anonymous
            access only.
        """
        configured: list[ICredentialsChecker] = [
            _bytesUsers(checker) for checker in self.get("credCheckers", [])
        ]
        if not configured:
            # EXTERNAL is offered only to clients with a verified TLS
            # certificate (an amqps: endpoint with caCerts=).
            return (AllowAnonymousAccess(), ExternalChecker())
        if self["allow-anonymous"]:
            configured.append(AllowAnonymousAccess())
        return (*configured, ExternalChecker())


def _whoGetsIn(endpoints: list[AMQPServerEndpoint]) -> str:
    """
    @param endpoints: the server's endpoints, without password
        authentication.
    @return: who gets in, for the start line.
    """
    verified = [e for e in endpoints if e.requiresClientCertificate]
    if not verified:
        return "no authentication is configured, so everyone gets in anonymously"
    who = (
        "no password authentication is configured; only clients with a "
        "certificate signed by caCerts= get in (with EXTERNAL or anonymously)"
    )
    if len(verified) == len(endpoints):
        return who
    where = ", ".join(repr(e) for e in verified)
    return f"{who} on {where}; everyone else gets in anonymously"


def _bytesUsers(checker: ICredentialsChecker) -> ICredentialsChecker:
    """
    SASL gives user names and passwords as bytes, as Twisted's file checker
    expects; its C{memory:} checker holds text: make those bytes too.
    """
    if isinstance(checker, InMemoryUsernamePasswordDatabaseDontUse):
        checker.users = {
            _utf8(name): _utf8(password) for name, password in checker.users.items()
        }
    return checker


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


@implementer(IProtocolFactory)
class _TrackingFactory:
    """
    Wraps the server's factory: keeps the open connections, and makes those
    beyond the limit refuse their client.
    """

    def __init__(self, wrapped: IProtocolFactory, maxConnections: int | None):
        self._wrapped = wrapped
        self._max = maxConnections
        self.live: set[IAMQPProtocol] = set()
        self._forget = self.live.discard

    def doStart(self) -> None:
        self._wrapped.doStart()

    def doStop(self) -> None:
        self._wrapped.doStop()

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        protocol = self._wrapped.buildProtocol(addr)
        if protocol is None:
            return None
        amqp = IAMQPProtocol(protocol)
        if self._max is not None and len(self.live) >= self._max:
            amqp.refuse(
                "amqp:resource-limit-exceeded",
                f"the server takes at most {self._max} connections",
            )
        self.live.add(amqp)
        # Not whenClosed: a Deferred and its callback would cost some 500
        # bytes per connection.
        amqp.notifyClosed(self._forget, amqp)
        return protocol


class AMQPServerService(Service):
    """
    Listens on AMQP server endpoints and serves a protocol factory.

    A port that cannot be opened stops C{twistd} at start with a one-line
    message.  Stopping closes every connection with
    C{amqp:connection:forced}, and waits for the clients to answer (at most
    C{closeTimeout} seconds, then the rest are dropped).
    """

    def __init__(
        self,
        endpoints: Sequence[IStreamServerEndpoint],
        factory: IProtocolFactory,
        clock: IReactorTime,
        maxConnections: int | None = None,
        closeTimeout: float = 5.0,
    ) -> None:
        """
        @param endpoints: where to listen.
        @param factory: builds an L{IAMQPProtocol} per connection.
        @param clock: the clock of the close timeout.
        @param maxConnections: how many connections at most, or L{None}.
        @param closeTimeout: seconds to wait for clients to answer the Close
            when stopping.
        """
        self._endpoints = list(endpoints)
        self._factory = _TrackingFactory(factory, maxConnections)
        self._clock = clock
        self._closeTimeout = closeTimeout
        self.ports: list[IListeningPort] = []

    def privilegedStartService(self) -> None:
        """
        Open every port (before twistd drops privileges).

        @raise SystemExit: when one cannot be opened.
        """
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        for endpoint in self._endpoints:
            results: list[object] = []
            endpoint.listen(self._factory).addBoth(results.append)
            [result] = results or [Failure(RuntimeError("listening did not end"))]
            if isinstance(result, Failure):
                self._stopListening()
                raise SystemExit(f"amqp-listen: {result.getErrorMessage()}")
            assert IListeningPort.providedBy(result)
            self.ports.append(result)

    def startService(self) -> None:
        """
        Start; open the ports unless that was done with privileges.
        """
        if not self.ports:
            self.privilegedStartService()
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[list[object]]:
        """
        Stop listening, and close every connection.

        @return: a Deferred that fires once all connections have ended.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        waiting: list[Deferred[object]] = self._stopListening()
        live = list(self._factory.live)
        if live:
            _log.info(
                "Closing {count} connection(s): the server is stopping",
                count=len(live),
            )
        for protocol in live:
            closed = protocol.close("amqp:connection:forced", "the server is stopping")
            waiting.append(closed.addErrback(lambda _: None))
        timer = self._clock.callLater(self._closeTimeout, self._abortAll, live)

        def done(result: _T) -> _T:
            if timer.active():
                timer.cancel()
            return result

        everything: Deferred[list[object]] = gatherResults(waiting)
        return everything.addBoth(done)

    def _stopListening(self) -> list[Deferred[object]]:
        ports, self.ports = self.ports, []
        return [maybeDeferred(port.stopListening) for port in ports]

    @staticmethod
    def _abortAll(live: list[IAMQPProtocol]) -> None:
        for protocol in live:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abortConnection()


def makeService(options: dict[str, Any]) -> IService:
    """
    Make the server's service: every endpoint serving one set of queues, with
    the authentication the options ask for.

    @param options: parsed L{Options}.
    @return: the service.
    """
    from twisted.internet import reactor

    sasl = SASLConfig(
        checkers=options.checkers(),  # type: ignore[attr-defined]
        allowInsecure=options["allow-insecure-plain"],
        timeout=options["handshake-timeout"],
    )
    endpoints = []
    for endpoint in options["endpoints"]:
        assert isinstance(endpoint, AMQPServerEndpoint)
        endpoints.append(
            endpoint.withDefaults(
                sasl=sasl,
                idleTimeout=options["idle-timeout"],
                containerId=options["container-id"],
                maxFrameSize=options["max-frame-size"],
            )
        )
    anonymousOnly = not options.get("credCheckers")
    cleartext = [e for e in endpoints if not e.settings.tls]
    if "PLAIN" in sasl.offer() and cleartext and not sasl.allowInsecure:
        _log.warn(
            "PLAIN is not offered on {endpoints} (no TLS): clients there can "
            "log in only {how}; use amqps: or --allow-insecure-plain",
            endpoints=", ".join(repr(e) for e in cleartext),
            how="anonymously" if options["allow-anonymous"] else "not at all",
        )
    if anonymousOnly and options["broker"].permissions is not None:
        _log.warn(
            "--permissions without --auth: every client is anonymous, so only "
            "the permissions of 'anonymous' apply"
        )
    path = options["store"]
    store = None if path is None else SQLiteStore(path, reactor)
    _log.info(
        "amqp-listen: {storage}; {who}; listening on {endpoints}",
        storage=(
            "queues in memory (lost at exit)"
            if store is None
            else f"durable queues and messages in {path} (others in memory)"
        ),
        who=(
            _whoGetsIn(endpoints)
            if anonymousOnly
            else f"SASL mechanisms {', '.join(sasl.offer())} (PLAIN over TLS "
            "only unless --allow-insecure-plain, EXTERNAL with caCerts= only)"
        ),
        endpoints=", ".join(options["listen"]),
    )
    broker = Broker(options["broker"], reactor, store)
    server = AMQPServerService(
        endpoints,
        broker.factory(),
        reactor,
        maxConnections=options["max-connections"],
    )
    service: IService = server
    if store is not None:
        # Recovers the store before the server listens, then starts the
        # server; closes the store once the server has stopped.
        service = StoreService(broker)
        server.setServiceParent(service)  # type: ignore[no-untyped-call]
    web = options.get("webEndpoint")
    if web is None:
        return service
    return _withStatusPage(service, broker, web, options)


def _withStatusPage(
    service: IService,
    broker: Broker,
    endpoint: IStreamServerEndpoint,
    options: dict[str, Any],
) -> IService:
    """
    Add the status page of C{--web} to the server's service.

    @param service: the server's service.
    @param broker: its broker.
    @param endpoint: where to serve the page.
    @param options: parsed L{Options}.
    @return: a service running the server, then the sampler of its rates
        and the page.
    """
    checkers = options.webCheckers()  # type: ignore[attr-defined]
    description = options["web"]
    if checkers and not description.startswith(("ssl:", "tls:")):
        _log.warn(
            "--web {endpoint} is not TLS: the status page's users send their "
            "passwords in clear (HTTP Basic authentication)",
            endpoint=description,
        )
    sampler = StatusSampler(broker)
    site = statusSite(broker, sampler, checkers)
    parent = MultiService()
    # In this order: the AMQP ports open (and are logged) first.
    for child in (service, sampler, StatusWebService(endpoint, site)):
        parent.addService(child)
    return parent
