# -*- test-case-name: tests.test_reconnect -*-
"""
Reconnecting, the way AMQ Python does it, on Twisted's own pieces.

  - Reconnect policies: objects with C{reset()} and C{next()}
    (L{IReconnectPolicy}); L{Backoff} gives 0, 0.1, 0.2, 0.4 ... up to 10
    seconds, L{Delays} a fixed list, and L{reconnectPolicy} turns what users
    pass as C{reconnect=} into one.
  - L{ReconnectingAMQPClientFactory}: Twisted's C{ReconnectingClientFactory}
    for AMQP connections, with the delays of a policy, the delay sequence
    reset when the AMQP Open arrives (not at TCP connect), and no reconnect
    after the application closed the connection or after
    C{amqp:unauthorized-access}.
  - L{EndpointConnector}: an C{IConnector} over any client endpoint, so that
    C{ClientFactory}s (reconnecting ones included) can use endpoints, amqptx's
    among them.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any, cast

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionDone,
    NotConnectingError,
)
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ClientFactory, ReconnectingClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from ._client import AMQPConnection
from ._engine import ConnectionSettings
from ._errors import AuthenticationFailed
from ._protocol import AMQPProtocol

if TYPE_CHECKING:
    pass

__all__ = [
    "AMQPClientService",
    "Backoff",
    "Delays",
    "EndpointAddress",
    "EndpointConnector",
    "IReconnectPolicy",
    "ReconnectingAMQPClientFactory",
    "reconnectPolicy",
]


# --- policies ----------------------------------------------------------------------


class IReconnectPolicy(Interface):
    """
    How long to wait before each connection attempt of a reconnect sequence.

    Any object with these two methods is a policy (amqptx checks by duck
    typing, not by interface declaration), as in AMQ Python and proton.
    """

    def reset() -> None:
        """
        Start over: called once before a reconnect sequence begins (and, by
        L{ReconnectingAMQPClientFactory}, whenever an AMQP connection opens).
        """

    def next() -> float | None:
        """
        The delay before the next attempt.

        @return: the delay in seconds (0 or more), or L{None} to give up.
        """


def _checkDelay(value: object, policy: object) -> float | None:
    """
    Check one delay a policy gave.

    @param value: what the policy's C{next()} returned.
    @param policy: the policy, for the error message.
    @return: the delay as a float, or L{None} to give up.
    @raise TypeError: for something that is neither a number nor L{None}.
    @raise ValueError: for a negative, infinite or NaN delay.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"reconnect policy {policy!r} gave {value!r}: a delay is a number "
            "of seconds, or None to give up"
        )
    delay = float(value)
    if not math.isfinite(delay) or delay < 0:
        raise ValueError(
            f"reconnect policy {policy!r} gave the delay {value!r}: delays are "
            "finite numbers of seconds, at least 0"
        )
    return delay


def _nextDelay(policy: IReconnectPolicy) -> float | None:
    """
    Ask a policy for its next delay, and check it.

    @param policy: the policy.
    @return: the delay in seconds, or L{None} to give up.
    @raise TypeError: when the policy gave something that is not a delay.
    @raise ValueError: when the policy gave a negative (or infinite) delay.
    """
    return _checkDelay(policy.next(), policy)


@implementer(IReconnectPolicy)
class Backoff:
    """
    Exponential backoff, AMQ Python's default: the first delay is 0 (reconnect
    at once), then C{initial}, growing by C{factor} up to C{maximum}; with the
    defaults 0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10 ...

    The configuration is fixed at construction (read-only attributes); the
    position in the sequence is the only state, and L{reset} rewinds it.

    @ivar initial: the second delay, the first that is not 0.
    @ivar factor: what each delay is multiplied by to get the next one.
    @ivar maximum: the largest delay (before jitter).
    @ivar attempts: how many delays to hand out before giving up
        (L{next} then returns L{None}), or L{None} for no limit.
    @ivar jitter: each delay is spread at random by up to this fraction of
        itself either way (0.1: from 90% to 110%), so that many clients
        reconnecting to one server do not all come back at once; 0 for none.
        Jitter can take a delay up to C{maximum * (1 + jitter)}.
    """

    def __init__(
        self,
        initial: float = 0.1,
        factor: float = 2.0,
        maximum: float = 10.0,
        attempts: int | None = None,
        jitter: float = 0.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """
        @param initial: see L{initial}; at least 0.
        @param factor: see L{factor}; at least 1.
        @param maximum: see L{maximum}; at least C{initial}.
        @param attempts: see L{attempts}; L{None} or at least 0.
        @param jitter: see L{jitter}; from 0 to 1.
        @param random: returns a number in [0, 1) at each call; the jitter's
            source of randomness (inject a fixed one in tests).
        @raise ValueError: for a value out of range.
        @raise TypeError: for C{attempts} that is not a whole number.
        """
        for name, value in [
            ("initial", initial),
            ("factor", factor),
            ("maximum", maximum),
            ("jitter", jitter),
        ]:
            if isinstance(value, bool) or not isinstance(value, Real):
                raise TypeError(f"Backoff {name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"Backoff {name} must be finite, not {value!r}")
        if initial < 0:
            raise ValueError(f"Backoff initial must be at least 0, not {initial!r}")
        if factor < 1:
            raise ValueError(f"Backoff factor must be at least 1, not {factor!r}")
        if maximum < initial:
            raise ValueError(
                f"Backoff maximum ({maximum!r}) must be at least initial ({initial!r})"
            )
        if not 0 <= jitter <= 1:
            raise ValueError(f"Backoff jitter must be from 0 to 1, not {jitter!r}")
        if attempts is not None:
            if isinstance(attempts, bool) or not isinstance(attempts, int):
                raise TypeError(
                    f"Backoff attempts must be a whole number or None, not {attempts!r}"
                )
            if attempts < 0:
                raise ValueError(
                    f"Backoff attempts must be at least 0, not {attempts!r}"
                )
        self._initial = float(initial)
        self._factor = float(factor)
        self._maximum = float(maximum)
        self._attempts = attempts
        self._jitter = float(jitter)
        self._random = random
        self._given = 0
        self._base = self._initial

    @property
    def initial(self) -> float:
        """
        See the class docstring.
        """
        return self._initial

    @property
    def factor(self) -> float:
        """
        See the class docstring.
        """
        return self._factor

    @property
    def maximum(self) -> float:
        """
        See the class docstring.
        """
        return self._maximum

    @property
    def attempts(self) -> int | None:
        """
        See the class docstring.
        """
        return self._attempts

    @property
    def jitter(self) -> float:
        """
        See the class docstring.
        """
        return self._jitter

    def reset(self) -> None:
        """
        Start the sequence over: the next delay is 0 again.
        """
        self._given = 0
        self._base = self._initial

    def next(self) -> float | None:
        """
        The next delay of the sequence.

        @return: the delay in seconds, or L{None} once C{attempts} delays have
            been handed out since the last L{reset}.
        """
        if self._attempts is not None and self._given >= self._attempts:
            return None
        self._given += 1
        if self._given == 1:
            return 0.0
        delay = self._base
        self._base = min(self._maximum, self._base * self._factor)
        if self._jitter:
            spread = self._jitter * (2.0 * self._random() - 1.0)
            delay = max(0.0, delay * (1.0 + spread))
        return delay

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self._initial!r}, factor={self._factor!r}, "
            f"maximum={self._maximum!r}, attempts={self._attempts!r}, "
            f"jitter={self._jitter!r})"
        )


_NOT_DELAYS = (str, bytes, bytearray, Mapping, set, frozenset)


@implementer(IReconnectPolicy)
class Delays:
    """
    A given sequence of delays: C{Delays([0, 1, 5])} waits 0, 1 and 5 seconds
    before three attempts, then gives up.

    Any iterable works, infinite ones included (C{itertools.repeat(2)}, or
    proton's C{Backoff}, which is an iterable of delays since proton 0.36):
    it is read lazily and what was read is kept, so that L{reset} can start
    over from the first delay.
    """

    def __init__(self, delays: Iterable[float]) -> None:
        """
        @param delays: the delays in seconds.  A list or tuple is checked at
            once; the items of another iterable when they are used.
        @raise TypeError: for something that is not an iterable of numbers
            (text, mappings and sets are refused too).
        @raise ValueError: for a negative delay in a list or tuple.
        """
        if isinstance(delays, _NOT_DELAYS) or not isinstance(delays, Iterable):
            raise TypeError(f"Delays needs an iterable of delays, not {delays!r}")
        if isinstance(delays, (list, tuple)):
            for value in delays:
                _checkDelay(value, delays)
            if any(value is None for value in delays):
                raise TypeError(f"Delays holds None: {delays!r}")
        self._source: Iterator[float] = iter(delays)
        self._read: list[float] = []
        self._exhausted = False
        self._position = 0
        self._description = (
            repr(list(delays)) if isinstance(delays, (list, tuple)) else repr(delays)
        )

    def reset(self) -> None:
        """
        Start over from the first delay.
        """
        self._position = 0

    def next(self) -> float | None:
        """
        The next delay.

        @return: the delay in seconds, or L{None} when there are no more.
        @raise TypeError: for an item that is not a number.
        @raise ValueError: for a negative delay.
        """
        if self._position < len(self._read):
            value = self._read[self._position]
        elif self._exhausted:
            return None
        else:
            try:
                value = next(self._source)
            except StopIteration:
                self._exhausted = True
                return None
            self._read.append(value)
        self._position += 1
        if value is None:
            raise TypeError(f"{self!r} holds None, not a delay")
        return _checkDelay(value, self)

    def __repr__(self) -> str:
        return f"Delays({self._description})"


def reconnectPolicy(reconnect: object) -> IReconnectPolicy | None:
    """
    Turn what users pass as C{reconnect=} into a policy, as AMQ Python reads
    it.

    @param reconnect: L{True} or L{None} for the default L{Backoff}; L{False}
        for no reconnect; an object with callable C{reset()} and C{next()}
        (any L{IReconnectPolicy}, declared or not), used as it is; an iterable
        of delays in seconds (a list, a tuple, proton's C{Backoff}...),
        wrapped in L{Delays}.
    @return: the policy, or L{None} for no reconnect.
    @raise TypeError: for anything else (the message names what was given).
    @raise ValueError: for a negative delay in a list or tuple.
    """
    if reconnect is None or reconnect is True:
        return Backoff()
    if reconnect is False:
        return None
    if callable(getattr(reconnect, "reset", None)) and callable(
        getattr(reconnect, "next", None)
    ):
        return cast(IReconnectPolicy, reconnect)
    if isinstance(reconnect, Iterable) and not isinstance(reconnect, _NOT_DELAYS):
        return Delays(reconnect)
    raise TypeError(
        "reconnect must be True, False, None, a policy with reset() and next(), "
        f"or a sequence of delays in seconds, not {reconnect!r}"
    )


# --- the endpoint connector ----------------------------------------------------------


@implementer(IAddress)
@dataclass(frozen=True)
class EndpointAddress:
    """
    What L{EndpointConnector.getDestination} returns: an endpoint has no
    address before it connects, so the destination is the endpoint itself.
    Its C{str} is the endpoint's C{repr} (amqptx's endpoints show their
    scheme, host and port, never credentials).

    @ivar endpoint: the endpoint the connector connects with.
    """

    endpoint: IStreamClientEndpoint

    def __str__(self) -> str:
        return repr(self.endpoint)


class _LossNotifyingProtocol:
    """
    Stands in for the application's protocol on the transport, to tell the
    connector when the connection is lost.

    Everything but C{makeConnection} and C{connectionLost} goes to the
    wrapped protocol through C{__getattr__}, zope.interface's attributes too:
    the class declares no interface of its own, so this object provides
    exactly what the wrapped protocol provides (L{amqptx.IAMQPProtocol},
    C{IHalfCloseableProtocol}...), as Twisted's C{ClientService} proxy does.

    @ivar wrapped: the application's protocol.
    @ivar lostReason: why the connection was lost, once it has been.
    """

    def __init__(
        self,
        wrapped: IProtocol,
        lost: Callable[[_LossNotifyingProtocol, Failure], None],
    ) -> None:
        self.wrapped = wrapped
        self.lostReason: Failure | None = None
        self._lost = lost

    def makeConnection(self, transport: object) -> None:
        """
        Connect the wrapped protocol.

        @param transport: the transport.
        """
        self.wrapped.makeConnection(transport)  # type: ignore[arg-type]

    def connectionLost(self, reason: Failure) -> None:
        """
        Tell the wrapped protocol, then the connector.

        @param reason: why the connection was lost.
        """
        try:
            self.wrapped.connectionLost(reason)
        finally:
            self.lostReason = reason
            self._lost(self, reason)

    def __getattr__(self, name: str) -> Any:
        if name in ("wrapped", "lostReason", "_lost"):
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} wrapping {self.wrapped!r}>"


@implementer(IProtocolFactory)
class _AttemptFactory:
    """
    The factory an L{EndpointConnector} gives its endpoint for one attempt:
    the application's protocols, wrapped in L{_LossNotifyingProtocol}s.

    Starting and stopping the application's factory is the connector's
    business (as for Twisted's own connectors), so L{doStart} and L{doStop}
    do nothing.

    @ivar built: the wrapped protocols built during this attempt (a failover
        endpoint may build several before one connects).
    """

    def __init__(self, connector: EndpointConnector) -> None:
        self._connector = connector
        self.built: list[_LossNotifyingProtocol] = []

    def doStart(self) -> None:
        """
        Nothing: the connector starts the application's factory.
        """

    def doStop(self) -> None:
        """
        Nothing: the connector stops the application's factory.
        """

    def logPrefix(self) -> str:
        """
        @return: the application factory's log prefix.
        """
        prefix: str = self._connector.factory.logPrefix()
        return prefix

    def buildProtocol(self, addr: IAddress | None) -> IProtocol | None:
        """
        Build the application's protocol and wrap it.

        @param addr: the peer's address.
        @return: the wrapped protocol, or L{None} when the application's
            factory refused the connection.
        """
        built = self._connector.factory.buildProtocol(addr)
        if built is None:
            return None
        protocol = _LossNotifyingProtocol(built, self._connector._lost)
        self.built.append(protocol)
        return cast(IProtocol, protocol)


@implementer(IConnector)
class EndpointConnector:
    """
    An L{IConnector} that connects with a client endpoint, for the
    C{ClientFactory} API (Twisted ticket 6592): C{ReconnectingClientFactory}
    and L{ReconnectingAMQPClientFactory} can then reconnect through any
    endpoint, amqptx's (with TLS, SASL and the AMQP Open) and
    L{amqptx.AMQPFailoverEndpoint} among them.

    It calls the factory as Twisted's TCP connectors do: C{doStart()} when
    it starts connecting while the factory is stopped,
    C{startedConnecting(self)} at each attempt, C{clientConnectionFailed}
    when the endpoint's Deferred fails, C{clientConnectionLost} when a
    connection it made is lost, and C{doStop()} when the factory leaves it
    disconnected after either.

    To hear about the loss of a connection without subclassing the protocol,
    the connector puts a small proxy between the transport and each protocol
    the factory builds; the proxy provides every interface the protocol
    provides, so amqptx's endpoints still see an L{amqptx.IAMQPProtocol}.
    The endpoint's Deferred fires with the application's own protocol
    (amqptx's endpoints) or with the proxy (Twisted's); either way the
    factory's C{buildProtocol} is where the application gets its protocol.

    @ivar endpoint: the endpoint to connect with.
    @ivar factory: the application's factory.
    @ivar state: C{"disconnected"}, C{"connecting"} or C{"connected"}, as on
        Twisted's connectors.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, factory: ClientFactory) -> None:
        """
        @param endpoint: see L{endpoint}.
        @param factory: see L{factory}.
        """
        self.endpoint = endpoint
        self.factory = factory
        self.state = "disconnected"
        self._attemptFactory: _AttemptFactory | None = None
        self._attempt: Deferred[object] | None = None
        self._protocol: _LossNotifyingProtocol | None = None
        self._factoryStarted = False

    def __repr__(self) -> str:
        return f"<EndpointConnector {self.state} to {self.endpoint!r}>"

    def connect(self) -> None:
        """
        Start a connection attempt.

        @raise RuntimeError: when already connecting or connected.
        """
        if self.state != "disconnected":
            raise RuntimeError(f"cannot connect while {self.state}")
        self.state = "connecting"
        if not self._factoryStarted:
            self.factory.doStart()
            self._factoryStarted = True
        attemptFactory = self._attemptFactory = _AttemptFactory(self)
        self.factory.startedConnecting(self)
        if self.state != "connecting" or self._attemptFactory is not attemptFactory:
            # The factory stopped the attempt from startedConnecting.
            return
        attempt: Deferred[object] = maybeDeferred(self.endpoint.connect, attemptFactory)
        self._attempt = attempt
        attempt.addCallbacks(
            self._connected, self._failed, callbackArgs=(attemptFactory,)
        )

    def _connected(self, result: object, attemptFactory: _AttemptFactory) -> None:
        self._attempt = None
        self._attemptFactory = None
        built = attemptFactory.built
        protocol = next(
            (p for p in built if p is result or p.wrapped is result),
            built[-1] if built else None,
        )
        self._protocol = protocol
        self.state = "connected"
        if protocol is not None and protocol.lostReason is not None:
            # Lost before the endpoint reported the connection.
            self._lost(protocol, protocol.lostReason)

    def _failed(self, reason: Failure) -> None:
        self._attempt = None
        self._attemptFactory = None
        self.state = "disconnected"
        self.factory.clientConnectionFailed(self, reason)
        self._maybeStopFactory()

    def _lost(self, protocol: _LossNotifyingProtocol, reason: Failure) -> None:
        if protocol is not self._protocol or self.state != "connected":
            # A connection of an attempt that failed (the endpoint reports
            # that through its Deferred), or an old one.
            return
        self._protocol = None
        self.state = "disconnected"
        self.factory.clientConnectionLost(self, reason)
        self._maybeStopFactory()

    def _maybeStopFactory(self) -> None:
        if self.state == "disconnected" and self._factoryStarted:
            self._factoryStarted = False
            self.factory.doStop()

    def stopConnecting(self) -> None:
        """
        Cancel the attempt in progress; the factory's
        C{clientConnectionFailed} is called with the endpoint's failure
        (C{ConnectingCancelledError} for amqptx's and Twisted's endpoints).

        @raise NotConnectingError: when not connecting.
        """
        if self.state != "connecting":
            raise NotConnectingError()
        attempt = self._attempt
        if attempt is None:
            # Called from the factory's startedConnecting: nothing has
            # started yet.
            self._failed(Failure(ConnectingCancelledError(self.getDestination())))
        else:
            attempt.cancel()

    def disconnect(self) -> None:
        """
        Drop the connection (the transport's C{loseConnection}), or stop
        connecting.  As with Twisted's connectors, a reconnecting factory
        reconnects after this unless told to stop trying.
        """
        if self.state == "connecting":
            self.stopConnecting()
        elif self._protocol is not None:
            self._protocol.transport.loseConnection()

    def getDestination(self) -> EndpointAddress:
        """
        @return: an L{EndpointAddress} naming the endpoint.
        """
        return EndpointAddress(self.endpoint)


# --- the reconnecting factory ---------------------------------------------------------


def _destination(connector: IConnector | None) -> str:
    """
    @param connector: a connector, or L{None}.
    @return: its destination as text, for logs.
    """
    if connector is None:
        return "(no connector yet)"
    return str(connector.getDestination())


def _reasonText(reason: Failure) -> str:
    """
    @param reason: a failure.
    @return: its type and message, for logs.
    """
    name: str = reason.type.__name__  # type: ignore[union-attr]
    message = reason.getErrorMessage()
    # amqptx's errors already start with their name.
    return message if message.startswith(name + "(") else f"{name}: {message}"


class _ConnectionWatch:
    """
    Follows one protocol a L{ReconnectingAMQPClientFactory} built: whether
    its AMQP connection opened, and how it ended.

    @ivar protocol: the protocol.
    @ivar opened: whether its AMQP connection opened.
    @ivar ended: why it ended (a C{ConnectionDone} failure for a clean AMQP
        close), once it has.
    """

    def __init__(
        self, factory: ReconnectingAMQPClientFactory, protocol: AMQPProtocol
    ) -> None:
        self.protocol = protocol
        self.opened = False
        self.ended: Failure | None = None
        self._factory = factory
        protocol.whenOpened().addCallbacks(self._opened, self._notOpened)
        protocol.whenClosed().addCallbacks(self._closedCleanly, self._closedBadly)

    @property
    def closedLocally(self) -> bool:
        """
        Whether the application closed the connection.
        """
        return self.protocol.closedLocally

    def _opened(self, result: object) -> None:
        self.opened = True
        self._factory._opened(self)

    def _notOpened(self, reason: Failure) -> None:
        """
        The connection ended before it opened; L{_closedBadly} records why.
        """

    def _closedCleanly(self, result: None) -> None:
        self._closedBadly(Failure(ConnectionDone("the AMQP connection was closed")))

    def _closedBadly(self, reason: Failure) -> None:
        self.ended = reason
        self._factory._ended(self)


class ReconnectingAMQPClientFactory(ReconnectingClientFactory):
    """
    A C{ReconnectingClientFactory} of AMQP connections, with AMQ Python's
    reconnect rules.

      - The delays come from a policy (L{reconnectPolicy}: the default
        L{Backoff} gives 0, 0.1, 0.2 ... 10 seconds, forever); Twisted's
        C{initialDelay}, C{factor}, C{maxDelay}, C{jitter} and
        C{maxRetries} are not used.  The policy is reset before the first
        reconnect sequence and whenever an AMQP connection opens (its Open
        arrives): a server that accepts TCP connections and then refuses or
        drops them gets ever longer delays.
      - No reconnect after the application closed the connection (called
        the protocol's C{close()}), after C{amqp:unauthorized-access}
        (L{amqptx.AuthenticationFailed}), after L{stopTrying}, or when the
        policy gives up; L{whenConnected} then fails.
      - Every attempt, failure, delay and decision is logged with named
        fields (C{attempt}, C{destination}, C{delay}, C{reason}); the
        destination is the connector's (an endpoint's C{repr}, or an
        address), which holds no password.

    Use it through an L{EndpointConnector} over an amqptx endpoint
    (C{EndpointConnector(endpoint, factory).connect()}); the endpoint
    configures each protocol (TLS, SASL, virtual host) and reports a
    connection as made once it is open.  Over an
    L{amqptx.AMQPFailoverEndpoint}, give the endpoint C{policy=False}: each
    attempt is then one round over its servers, and this factory's policy
    spaces the rounds, as AMQ Python does with C{urls}.  With a plain
    C{reactor.connectTCP(host, port, factory)}, the factory configures each
    protocol with L{settings} itself, and a connection that ends before its
    Open counts as a failed attempt.

    One factory serves one connector.

    @cvar protocol: the class (or any callable) that builds each protocol:
        L{amqptx.AMQPConnection} by default; it must build
        L{amqptx.AMQPProtocol} instances.
    @ivar policy: the reconnect policy, or L{None} for no reconnect.
    @ivar settings: the settings protocols are configured with (endpoints
        configure them again with their own).
    @ivar connection: the open connection, or L{None} between connections.
    @ivar attempt: the number of the current attempt since the last open
        connection (1 for the first).
    """

    protocol = AMQPConnection
    noisy = False
    _log = Logger()

    def __init__(
        self,
        policy: object = None,
        clock: IReactorTime | None = None,
        settings: ConnectionSettings | None = None,
    ) -> None:
        """
        @param policy: anything L{reconnectPolicy} accepts: L{None} or
            L{True} for the default L{Backoff}, L{False} for no reconnect, a
            policy object, or a list of delays.
        @param clock: the clock for the delays and the protocols' timers;
            the global reactor by default.
        @param settings: see L{settings}; by default a plain client's.
        @raise TypeError: for a C{policy} L{reconnectPolicy} refuses.
        """
        self.policy = reconnectPolicy(policy)
        self._givenClock = clock
        self.settings = settings if settings is not None else ConnectionSettings()
        self.connection: Any = None
        self.attempt = 0
        self._needsReset = True
        self._stopped: Failure | None = None
        self._lastFailure: Failure | None = None
        self._waiting: list[Deferred[Any]] = []
        self._latest: _ConnectionWatch | None = None
        self._open: _ConnectionWatch | None = None
        self._parked: AMQPConnection | None = None

    def _clock(self) -> IReactorTime:
        clock = self._givenClock
        if clock is None:
            from twisted.internet import reactor

            clock = self._givenClock = cast(IReactorTime, reactor)
        return clock

    # --- what connectors call ----------------------------------------------------

    def startedConnecting(self, connector: IConnector) -> None:
        """
        Log the attempt.

        @param connector: the connector.
        """
        self.connector = connector
        self.attempt += 1
        self._log.info(
            "Connecting to {destination} (attempt {attempt})",
            destination=_destination(connector),
            attempt=self.attempt,
        )

    def buildProtocol(self, addr: IAddress | None) -> AMQPProtocol | None:
        """
        Build a protocol, configure it with L{settings} and the factory's
        C{clock}, and follow its connection.

        @param addr: the peer's address.
        @return: the protocol.
        @raise TypeError: when L{protocol} built something that is not an
            L{amqptx.AMQPProtocol}.
        """
        protocol = self.protocol()
        if not isinstance(protocol, AMQPProtocol):
            raise TypeError(
                f"{type(self).__name__}.protocol must build AMQPProtocol "
                f"instances, not {protocol!r}"
            )
        protocol.factory = self
        protocol.configure(self.settings, self._clock())
        if isinstance(protocol, AMQPConnection):
            protocol.recoverable = self.policy is not None
        self._latest = _ConnectionWatch(self, protocol)
        return protocol

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        """
        An attempt failed: reconnect after the policy's delay, unless the
        failure is L{amqptx.AuthenticationFailed}.

        @param connector: the connector.
        @param reason: why.
        """
        self.connector = connector
        self._log.warn(
            "Connection attempt {attempt} to {destination} failed: {reason}",
            attempt=self.attempt,
            destination=_destination(connector),
            reason=_reasonText(reason),
        )
        self._afterFailure(connector, reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        """
        A connection ended: reconnect after the policy's delay, unless the
        application closed it or authentication failed.

        @param connector: the connector.
        @param reason: why, as the transport says; the AMQP reason (the
            peer's error condition, say) is used when there is one.
        """
        self.connector = connector
        watch = self._open if self._open is not None else self._latest
        self._open = None
        self.connection = None
        if (
            watch is not None
            and isinstance(watch.protocol, AMQPConnection)
            and watch.protocol.parked
        ):
            # Its senders and receivers wait for the next connection.
            self._parked = watch.protocol
        if watch is not None and watch.ended is not None:
            reason = watch.ended
        destination = _destination(connector)
        if watch is not None and watch.opened:
            self._log.warn(
                "Connection to {destination} lost: {reason}",
                destination=destination,
                reason=_reasonText(reason),
            )
        else:
            self._log.warn(
                "Connection attempt {attempt} to {destination} failed: {reason}",
                attempt=self.attempt,
                destination=destination,
                reason=_reasonText(reason),
            )
        if watch is not None and watch.closedLocally and self._stopped is None:
            self._log.info(
                "Not reconnecting to {destination}: the application closed "
                "the connection",
                destination=destination,
            )
            self._stop(Failure(CancelledError("the application closed the connection")))
            return
        self._afterFailure(connector, reason)

    def _afterFailure(self, connector: IConnector, reason: Failure) -> None:
        self._lastFailure = reason
        if self._stopped is not None or not self.continueTrying:
            return
        if reason.check(AuthenticationFailed):
            self._log.error(
                "Not reconnecting to {destination}: authentication failed: {reason}",
                destination=_destination(connector),
                reason=_reasonText(reason),
            )
            self._stop(reason)
            return
        self.retry(connector)

    def _opened(self, watch: _ConnectionWatch) -> None:
        """
        A protocol's AMQP connection opened: it is the connection now, and the
        reconnect sequence starts over.
        """
        self._log.info(
            "Connected to {destination}: the AMQP connection is open "
            "(attempt {attempt})",
            destination=_destination(self.connector),
            attempt=self.attempt,
        )
        self._open = watch
        self.connection = watch.protocol
        parked, self._parked = self._parked, None
        if parked is not None and isinstance(watch.protocol, AMQPConnection):
            watch.protocol.adopt(parked)
        if self._stopped is None:
            self.resetDelay()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(watch.protocol)

    def _ended(self, watch: _ConnectionWatch) -> None:
        """
        A protocol's connection ended: if it was the open connection, there
        is none until the connector reports the loss and a new one opens
        (so that L{whenConnected} called from a callback of the protocol's
        own C{whenClosed} does not give the connection that just ended).
        """
        if watch is self._open:
            self.connection = None

    # --- ReconnectingClientFactory ----------------------------------------------------

    def retry(self, connector: IConnector | None = None) -> None:
        """
        Connect again after the policy's next delay, or give up when it
        says so (or when there is no policy); giving up fails the
        L{whenConnected} Deferreds with the last failure, or with the
        policy's error when it gave something that is not a delay.

        @param connector: the connector; by default the last one.
        @raise ValueError: when there is no connector at all.
        """
        if not self.continueTrying or self._stopped is not None:
            return
        if connector is None:
            if self.connector is None:
                raise ValueError("no connector to retry")
            connector = self.connector
        destination = _destination(connector)
        delay: float | None = None
        policy = self.policy
        if policy is not None:
            try:
                if self._needsReset:
                    self._needsReset = False
                    policy.reset()
                delay = _nextDelay(policy)
            except Exception as e:
                failure = Failure()
                self._log.error(
                    "Not reconnecting to {destination}: the reconnect policy "
                    "{policy} failed: {reason}",
                    destination=destination,
                    policy=repr(policy),
                    reason=f"{type(e).__name__}: {e}",
                )
                self._stop(failure)
                return
        if delay is None:
            last = self._lastFailure or Failure(ConnectError(string="no attempt made"))
            self._log.error(
                "Giving up on {destination} after {attempt} attempts: {reason}",
                destination=destination,
                attempt=self.attempt,
                reason=_reasonText(last),
            )
            self._stop(last)
            return
        self.retries += 1
        self._log.info(
            "Reconnecting to {destination} in {delay} seconds (attempt {attempt})",
            destination=destination,
            delay=delay,
            attempt=self.attempt + 1,
        )
        self._callID = self._clock().callLater(delay, self._reconnect, connector)

    def _reconnect(self, connector: IConnector) -> None:
        self._callID = None
        connector.connect()

    def resetDelay(self) -> None:
        """
        Start the reconnect sequence over: reset the policy and the attempt
        count, and (as Twisted's does) allow reconnects again after
        L{stopTrying}.  Called when an AMQP connection opens.
        """
        super().resetDelay()  # type: ignore[no-untyped-call]
        self._stopped = None
        self.attempt = 0
        self._needsReset = False
        if self.policy is not None:
            self.policy.reset()

    def stopTrying(self) -> None:
        """
        Stop reconnecting: cancel a pending delay and a connection attempt in
        progress; L{whenConnected} fails with C{CancelledError} from now on.
        The open connection, if any, stays open.
        """
        if self._stopped is None:
            self._log.info(
                "Stopped reconnecting to {destination}",
                destination=_destination(self.connector),
            )
            self._stop(Failure(CancelledError("stopTrying() was called")))
        super().stopTrying()  # type: ignore[no-untyped-call]

    def _stop(self, reason: Failure) -> None:
        self._stopped = reason
        parked, self._parked = self._parked, None
        if parked is not None:
            parked.abandon(reason)
        self.continueTrying = 0
        callID, self._callID = self._callID, None
        if callID is not None and callID.active():
            callID.cancel()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(reason)

    # --- the application's API --------------------------------------------------------

    def whenConnected(self) -> Deferred[Any]:
        """
        Get the open connection, now or when the next one opens.

        @return: a new Deferred for each call, firing with the open protocol
            (an L{amqptx.AMQPConnection} by default), or failing when the
            factory stopped reconnecting: with L{amqptx.AuthenticationFailed};
            with the last attempt's failure when the policy gave up; with the
            policy's C{TypeError} or C{ValueError} when it gave a bad delay;
            with C{CancelledError} after the application closed the
            connection or called L{stopTrying}.  Cancelling it fails only it,
            with C{CancelledError}.
        """
        if self.connection is not None:
            return succeed(self.connection)
        if self._stopped is not None:
            return fail(self._stopped)
        d: Deferred[Any] = Deferred(self._waiting.remove)
        self._waiting.append(d)
        return d


class AMQPClientService(Service):
    """
    A Twisted service that keeps an AMQP connection open for an application:
    it connects when started, reconnects as its policy says (senders and
    receivers carry over, see L{amqptx.AMQPConnection.adopt}), and closes
    the connection when stopped.

    @ivar factory: the L{ReconnectingAMQPClientFactory} it uses.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        policy: object = None,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param endpoint: where to connect (an amqptx client endpoint, or a
            failover endpoint with C{policy=False}).
        @param policy: the reconnect policy (see L{reconnectPolicy}).
        @param clock: the clock of the delays; the global reactor by default.
        """
        self.factory = ReconnectingAMQPClientFactory(policy, clock=clock)
        self._connector = EndpointConnector(endpoint, self.factory)

    def startService(self) -> None:
        """
        Start connecting.
        """
        super().startService()  # type: ignore[no-untyped-call]
        self._connector.connect()

    def stopService(self) -> Deferred[None]:
        """
        Stop reconnecting and close the open connection.

        @return: a Deferred that fires once the connection is closed.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        connection = self.factory.connection
        self.factory.stopTrying()
        if connection is None:
            return succeed(None)
        closed: Deferred[None] = connection.close().addErrback(lambda _: None)
        return closed

    def whenConnected(self) -> Deferred[Any]:
        """
        Get the open connection, now or when the next one opens.

        @return: see L{ReconnectingAMQPClientFactory.whenConnected}.
        """
        return self.factory.whenConnected()
