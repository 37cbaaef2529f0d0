# -*- test-case-name: tests.test_endpoints -*-
"""
AMQP client and server endpoints: TCP or TLS underneath, an AMQP connection
that is open (not merely connected) when their Deferreds fire.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import copy
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from twisted.cred.checkers import AllowAnonymousAccess
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectingCancelledError, NoProtocol, TimeoutError
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IListeningPort,
    ILoggingContext,
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.ssl import PrivateCertificate, optionsForClientTLS
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ._engine import ConnectionSettings
from ._interfaces import IAMQPProtocol
from ._layout import shareTransportNames
from ._sasl import SASLConfig
from ._url import AMQPURL, parseURL

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

__all__ = ["AMQPClientEndpoint", "AMQPServerEndpoint"]

_ServerTLS = IOpenSSLServerConnectionCreator | IOpenSSLContextFactory

DEFAULT_TIMEOUT = 30.0


@implementer(IProtocolFactory, ILoggingContext)
class _ConfiguringFactory:
    """
    Wraps the application's factory: every protocol it builds must be an
    L{IAMQPProtocol}, and is configured with the endpoint's settings.

    A client's factory also reports to its connection attempt: the protocol
    it built (the TCP connection is made), or, given to C{connectTCP}
    itself, the connection's failure (Twisted's C{ClientFactory} face).
    """

    def __init__(
        self,
        wrapped: IProtocolFactory,
        settings: ConnectionSettings,
        clock: IReactorTime,
        attempt: _OpeningAttempt | None = None,
    ) -> None:
        self._wrapped = wrapped
        self._settings = settings
        self._clock = clock
        self._attempt = attempt

    def logPrefix(self) -> str:
        """
        @return: what Twisted's log lines about this factory's ports start
            with.
        """
        return "AMQP"

    def doStart(self) -> None:
        """
        Start the application's factory.
        """
        self._wrapped.doStart()

    def doStop(self) -> None:
        """
        Stop the application's factory.
        """
        self._wrapped.doStop()

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        """
        Build the application's protocol and configure it.  A client's
        attempt fails when there is none, or it is not an AMQP protocol
        (and the connection is dropped), as with Twisted's endpoints.
        """
        # Once: the connector keeps its factory as long as the connection,
        # and another connection built (one that lost a race between a
        # name's addresses) is none of the attempt's business.
        attempt, self._attempt = self._attempt, None
        try:
            protocol = self._wrapped.buildProtocol(addr)
            if protocol is None:
                if attempt is None:
                    return None
                raise NoProtocol()
            if not IAMQPProtocol.providedBy(protocol):
                raise TypeError(
                    f"an AMQP endpoint needs a factory of AMQP protocols "
                    f"(IAMQPProtocol), not of {protocol!r}"
                )
        except BaseException:
            if attempt is None:
                raise
            attempt.failed(Failure())
            return None
        protocol.configure(self._settings, self._clock)
        if attempt is not None:
            attempt.built(protocol)
        return protocol

    def startedConnecting(self, connector: IConnector) -> None:
        """
        A connector started (C{ClientFactory}): nothing to do.
        """

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        """
        No TCP connection could be made: the attempt fails.
        """
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.failed(reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        """
        The connection ended (C{ClientFactory}): the protocol tells its own
        users.
        """


class _OpeningAttempt:
    """
    One connection attempt of an L{AMQPClientEndpoint}: the TCP (and TLS)
    connection, then the AMQP Open, under one timeout and one canceller.

    Its L{_ConfiguringFactory} tells it of the protocol built (L{built}), or
    of the connection's failure (L{failed}); the TCP connection is made
    either by a connector of the attempt's own (L{connector}) or by an
    endpoint (L{through}), which only reports failures.
    """

    def __init__(
        self, clock: IReactorTime, timeout: float | None, description: str
    ) -> None:
        self.result: Deferred[IAMQPProtocol] = Deferred(self._cancel)
        self._description = description
        self._protocol: IAMQPProtocol | None = None
        self.connector: IConnector | None = None
        self._connecting: Deferred[IProtocol] | None = None
        self._timer: IDelayedCall | None = None
        if timeout is not None:
            self._timer = clock.callLater(timeout, self._timedOut)

    def through(self, connecting: Deferred[IProtocol]) -> None:
        """
        The TCP connection is an endpoint's.

        @param connecting: what the endpoint's C{connect} returned.
        """
        self._connecting = connecting
        connecting.addErrback(self.failed)

    def built(self, protocol: IProtocol) -> None:
        """
        The TCP connection is made, and the factory built its protocol.

        @param protocol: what the application's factory built: the Deferred
            fires with it (a wrapper, for C{ClientService}), not with what it
            wraps.
        """
        amqp = IAMQPProtocol(protocol)
        self._protocol = amqp
        amqp.whenOpened().addCallbacks(lambda _: self._opened(protocol), self.failed)

    def _opened(self, protocol: IProtocol) -> None:
        self._stopTimer()
        if not self.result.called:
            self.result.callback(protocol)  # type: ignore[arg-type]

    def failed(self, reason: Failure) -> None:
        """
        The attempt failed, unless it is over already.

        @param reason: why.
        """
        self._stopTimer()
        if not self.result.called:
            self.result.errback(reason)

    def _stopTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _abandon(self, reason: Exception) -> None:
        self._stopTimer()
        self.result.errback(reason)
        protocol = self._protocol
        if protocol is None:
            if self._connecting is not None:
                self._connecting.cancel()
            elif self.connector is not None:
                self.connector.stopConnecting()
        elif protocol.transport is not None:  # type: ignore[attr-defined]
            protocol.transport.abortConnection()  # type: ignore[attr-defined]

    def _cancel(self, result: Deferred[IAMQPProtocol]) -> None:
        self._abandon(ConnectingCancelledError(self._description))

    def _timedOut(self) -> None:
        self._timer = None
        self._abandon(
            TimeoutError(f"the AMQP connection to {self._description} did not open")
        )


@implementer(IStreamClientEndpoint)
class AMQPClientEndpoint:
    """
    A client endpoint for AMQP 1.0 over TCP or TLS.

    C{connect(factory)} fires with the protocol once both sides have sent
    their AMQP Open.  The factory must build L{IAMQPProtocol} providers
    (L{amqptx.AMQPConnection}, for example).

    A password is never sent in clear: over C{amqp} (no TLS) the constructor
    refuses credentials unless C{allowInsecurePlain} is set.
    """

    def __init__(
        self,
        reactor: object,
        host: str,
        port: int | None = None,
        *,
        tls: bool = False,
        user: str | None = None,
        password: str | None = None,
        mechanisms: Sequence[str] | None = None,
        allowInsecurePlain: bool = False,
        virtualHost: str | None = None,
        containerId: str | None = None,
        idleTimeout: float | None = None,
        maxFrameSize: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        bindAddress: str | None = None,
        trustRoot: IOpenSSLTrustRoot | None = None,
        clientCertificate: PrivateCertificate | None = None,
        sni: str | None = None,
        tlsOptions: IOpenSSLClientConnectionCreator | None = None,
    ) -> None:
        """
        @param reactor: the reactor (a clock with TCP and name resolution).
        @param host: the host name or numeric address to connect to.
        @param port: the port; by default 5671 with C{tls}, else 5672.
        @param tls: connect with TLS (the C{amqps} scheme).
        @param user: the SASL user name.
        @param password: the SASL password.
        @param mechanisms: the SASL mechanisms to allow; by default PLAIN when
            a user is given, else EXTERNAL when a client certificate is
            given, else ANONYMOUS.
        @param allowInsecurePlain: allow a password to go in clear over a
            connection without TLS.
        @param virtualHost: the Open frame's C{hostname}; by default C{host}.
        @param containerId: this side's container id; generated by default.
        @param idleTimeout: seconds of silence after which the peer is
            declared dead; advertised so that the peer sends heartbeats.
        @param maxFrameSize: the largest frame to accept.
        @param timeout: seconds the whole attempt (TCP, TLS, SASL, Open) may
            take, or L{None} for no limit.
        @param bindAddress: a local address to connect from.
        @param trustRoot: the certificate authorities to trust (TLS); by
            default the platform's.
        @param clientCertificate: a certificate and key to present (TLS).
        @param sni: the server name to ask for and to verify (TLS); by
            default C{host}.
        @param tlsOptions: complete TLS options, instead of C{trustRoot},
            C{clientCertificate} and C{sni}.
        @raise ValueError: for a bad value, or credentials that would go in
            clear.
        """
        if not host:
            raise ValueError("an AMQP client endpoint needs a host")
        if port is None:
            port = 5671 if tls else 5672
        if not 0 < port < 65536:
            raise ValueError(f"invalid port {port!r}: must be 1-65535")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"invalid timeout {timeout!r}: must be positive")
        if idleTimeout is not None and idleTimeout < 0:
            raise ValueError(f"invalid idleTimeout {idleTimeout!r}")
        if maxFrameSize is not None and maxFrameSize < 512:
            raise ValueError(f"invalid maxFrameSize {maxFrameSize!r}: at least 512")
        if password is not None and user is None:
            raise ValueError("a password needs a user")
        if mechanisms is None:
            if user is not None:
                mechanisms = ("PLAIN",)
            elif clientCertificate is not None:
                mechanisms = ("EXTERNAL",)
            else:
                mechanisms = ("ANONYMOUS",)
        mechanisms = tuple(m.upper() for m in mechanisms)
        if (
            not tls
            and not allowInsecurePlain
            and (password is not None or "PLAIN" in mechanisms)
        ):
            raise ValueError(
                "refusing to send a password in clear over amqp (no TLS): "
                "use amqps, or allow it explicitly with allowInsecurePlain"
            )
        if not tls and (trustRoot, clientCertificate, sni, tlsOptions) != (
            None,
            None,
            None,
            None,
        ):
            raise ValueError("TLS options need tls (the amqps scheme)")
        self._reactor = reactor
        self._host = host[1:-1] if host.startswith("[") else host
        self._port = port
        self._timeout = timeout
        self._bindAddress = (bindAddress, 0) if bindAddress else None
        self._tlsOptions: IOpenSSLClientConnectionCreator | None = None
        if tls:
            self._tlsOptions = tlsOptions or optionsForClientTLS(
                sni or self._host,
                trustRoot=trustRoot,
                clientCertificate=clientCertificate,
            )
        self.settings = ConnectionSettings(
            role="client",
            hostname=virtualHost if virtualHost is not None else self._host,
            user=user,
            password=password,
            mechanisms=mechanisms,
            allowInsecureMechanisms=tls or allowInsecurePlain,
            containerId=containerId,
            idleTimeout=idleTimeout,
            maxFrameSize=maxFrameSize,
        )

    @classmethod
    def fromURL(
        cls, reactor: object, url: AMQPURL | str, **options: object
    ) -> AMQPClientEndpoint:
        """
        Make an endpoint for a connection URL.

        @param reactor: the reactor.
        @param url: an L{AMQPURL} or its text, such as
            C{"amqps://user:secret@example.com"}; its scheme selects TLS, and
            its user and password are used unless given in C{options}.
        @param options: keyword arguments of L{AMQPClientEndpoint}.
        @return: the endpoint.
        @raise ValueError: for a bad URL or option value.
        @raise TypeError: for an unknown option.
        """
        if isinstance(url, str):
            url = parseURL(url)
        if url.path:
            raise ValueError(
                f"an endpoint has no address path ({url.path!r} in {url}); "
                "give the address to the sender or receiver"
            )
        if url.user is not None:
            options.setdefault("user", url.user)
        if url.password is not None:
            options.setdefault("password", url.password)
        return cls(reactor, url.host, url.port, tls=url.tls, **options)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        scheme = "amqps" if self._tlsOptions is not None else "amqp"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"<AMQPClientEndpoint {scheme}://{host}:{self._port}>"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Connect, and open the AMQP connection.

        @param protocolFactory: a factory of L{IAMQPProtocol} providers.
        @return: a Deferred that fires with the protocol once the AMQP
            connection is open, or fails with:
              - L{twisted.internet.error.ConnectError} and its subclasses
                (C{ConnectionRefusedError}, C{DNSLookupError}...) when no
                TCP connection could be made;
              - L{amqptx.TLSError} when the TLS handshake failed (for example
                an untrusted certificate or one for another name);
              - L{amqptx.AuthenticationFailed} when SASL authentication
                failed;
              - L{amqptx.OpenRefused} when the peer refused the Open;
              - L{amqptx.ProtocolError} or L{amqptx.AMQPConnectionLost} when
                the peer spoke no AMQP or dropped the connection;
              - L{twisted.internet.error.TimeoutError} when the whole attempt
                took longer than the timeout;
              - L{twisted.internet.error.ConnectingCancelledError} when
                cancelled.
        """
        reactor: Any = self._reactor
        host, port, tlsOptions = self._host, self._port, self._tlsOptions
        attempt = _OpeningAttempt(reactor, self._timeout, f"{host}:{port}")
        factory = _ConfiguringFactory(protocolFactory, self.settings, reactor, attempt)
        wrapped: IProtocolFactory = factory
        if tlsOptions is not None:
            # TLS's timers on the endpoint's clock (Twisted's wrapClientTLS
            # always uses the global reactor).
            wrapped = TLSMemoryBIOFactory(tlsOptions, True, factory, clock=reactor)
        if isIPAddress(host) or isIPv6Address(host):
            # Straight to the address: no name resolution (which Twisted's
            # endpoints do in a thread for IPv6), and none of the wrappers
            # of Twisted's endpoints between the transport and the protocol;
            # and one timer, the attempt's (which stops the connector), or
            # TCP's own when the attempt has no limit.
            attempt.connector = reactor.connectTCP(
                host,
                port,
                wrapped,
                DEFAULT_TIMEOUT if self._timeout is None else None,
                self._bindAddress,
            )
        else:
            # Every address of the name, IPv4 and IPv6.
            endpoint = HostnameEndpoint(
                reactor,
                host,
                port,
                timeout=self._timeout or DEFAULT_TIMEOUT,
                bindAddress=self._bindAddress,
            )
            attempt.through(endpoint.connect(wrapped))
        return attempt.result  # type: ignore[return-value]


@implementer(IStreamServerEndpoint)
class AMQPServerEndpoint:
    """
    A server endpoint for AMQP 1.0 over TCP or TLS.

    Every accepted connection gets a protocol from the application's factory
    (it must build L{IAMQPProtocol} providers), configured as the server side.
    """

    def __init__(
        self,
        reactor: object,
        port: int,
        *,
        interface: str = "",
        backlog: int = 50,
        tlsOptions: _ServerTLS | None = None,
        containerId: str | None = None,
        idleTimeout: float | None = None,
        maxFrameSize: int | None = None,
        sasl: SASLConfig | None = None,
    ) -> None:
        """
        @param reactor: the reactor.
        @param port: the port to listen on (0 for any free port).
        @param interface: the address to listen on: C{""} or C{"0.0.0.0"}
            for every IPv4 interface, C{"::"} (or C{"[::0]"}) for every IPv6
            one, or one address.
        @param backlog: the listen backlog.
        @param tlsOptions: TLS server options (a
            L{twisted.internet.ssl.CertificateOptions}, say) to listen with
            TLS (the C{amqps} scheme), or L{None}.
        @param containerId: this server's container id; by default one is
            generated for each C{listen()}, the same for all its connections.
        @param idleTimeout: the idle timeout to advertise, in seconds.
        @param maxFrameSize: the largest frame to accept.
        @param sasl: how clients authenticate (amqptx performs SASL itself
            and checks credentials through C{twisted.cred}); by default
            ANONYMOUS only, everyone allowed in.
        @raise ValueError: for a bad value.
        """
        if not 0 <= port < 65536:
            raise ValueError(f"invalid port {port!r}: must be 0-65535")
        if interface.startswith("[") and interface.endswith("]"):
            interface = interface[1:-1]
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog
        self._tlsOptions = tlsOptions
        self.settings = ConnectionSettings(
            role="server",
            containerId=containerId,
            idleTimeout=idleTimeout,
            maxFrameSize=maxFrameSize,
            sasl=sasl or SASLConfig(checkers=(AllowAnonymousAccess(),)),
            tls=tlsOptions is not None,
        )

    @property
    def requiresClientCertificate(self) -> bool:
        """
        Whether TLS lets in only clients with a certificate it verified (an
        C{amqps:} endpoint string with C{caCerts=}, say).
        """
        options = self._tlsOptions
        return bool(
            getattr(options, "verify", False)
            and getattr(options, "requireCertificate", False)
        )

    def withDefaults(
        self,
        sasl: SASLConfig,
        idleTimeout: float | None = None,
        containerId: str | None = None,
        maxFrameSize: int | None = None,
    ) -> AMQPServerEndpoint:
        """
        Make the same endpoint with another authentication, and these
        settings where the endpoint has none of its own (C{twistd
        amqp-listen}'s options, say, under those of each C{--listen}).

        @param sasl: how clients authenticate.
        @param idleTimeout: the idle timeout, in seconds.
        @param containerId: the server's container id.
        @param maxFrameSize: the largest frame to accept.
        @return: a new endpoint.
        """
        settings = self.settings
        endpoint = copy(self)
        endpoint.settings = replace(
            settings,
            sasl=sasl,
            idleTimeout=settings.idleTimeout or idleTimeout,
            containerId=settings.containerId or containerId,
            maxFrameSize=settings.maxFrameSize or maxFrameSize,
        )
        return endpoint

    def __repr__(self) -> str:
        scheme = "amqps" if self._tlsOptions is not None else "amqp"
        return f"<AMQPServerEndpoint {scheme}:{self._port}:{self._interface!r}>"

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Listen for AMQP connections.

        @param protocolFactory: a factory of L{IAMQPProtocol} providers.
        @return: a Deferred that fires with the listening port, or fails with
            L{twisted.internet.error.CannotListenError}.
        """
        # Before the first connection (amqptx._layout): a transport's
        # attributes take a few bytes instead of a dictionary of its own.
        shareTransportNames()
        factory: IProtocolFactory = _ConfiguringFactory(
            protocolFactory,
            replace(
                self.settings,
                containerId=self.settings.containerId or f"amqptx-{uuid4()}",
            ),
            self._reactor,  # type: ignore[arg-type]
        )
        if self._tlsOptions is not None:
            factory = TLSMemoryBIOFactory(
                self._tlsOptions,
                False,
                factory,
                clock=self._reactor,  # type: ignore[arg-type]
            )
        listening: Deferred[IListeningPort] = TCP4ServerEndpoint(
            self._reactor,
            self._port,
            backlog=self._backlog,
            interface=self._interface,
        ).listen(factory)
        return listening
