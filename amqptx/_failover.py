# -*- test-case-name: tests.test_failover -*-
"""
Failover: one client endpoint over several AMQP servers (the nodes of a
broker cluster, say), tried in order, round after round, as AMQ Python does
with C{urls=[...]}.

This module is imported by Twisted's plugin system (for the
C{amqp-failover:} endpoint-string parser), so it imports neither proton nor
the modules that do until an endpoint is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ConnectError, ConnectingCancelledError
from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
)
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from ._errors import AuthenticationFailed
from ._parsers import _CLIENT_OPTIONS, _CLIENT_TLS_OPTIONS, _parseClient, _strings
from ._url import AMQPURL, parseURL

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IDelayedCall,
        IProtocol,
        IProtocolFactory,
        IReactorCore,
        IReactorTime,
    )

    from ._reconnect import IReconnectPolicy

__all__ = [
    "AMQPFailoverEndpoint",
    "AMQPFailoverParser",
    "FailoverExhausted",
    "failoverEndpoint",
]

_PREFIX = "amqp-failover"
# The failover string's options: those of amqp:/amqps: client strings, but
# the host and port, which each URL gives.
_FAILOVER_OPTIONS = _CLIENT_OPTIONS - {"host", "port"}


class FailoverExhausted(ConnectError):
    """
    Every endpoint of an L{AMQPFailoverEndpoint} failed, round after round,
    until its policy gave up.

    @ivar failures: C{(endpoint, failure)} for each endpoint of the last
        round, in the order tried (earlier rounds are not kept: a policy may
        allow any number of them).
    @ivar rounds: how many rounds were tried.
    """

    def __init__(
        self,
        failures: list[tuple[IStreamClientEndpoint, Failure]],
        rounds: int,
    ) -> None:
        """
        @param failures: see L{failures}.
        @param rounds: see L{rounds}.
        """
        summary = "; ".join(
            f"{endpoint!r}: {failure.getErrorMessage()}"
            for endpoint, failure in failures
        )
        super().__init__(  # type: ignore[no-untyped-call]
            string=(
                f"all {len(failures)} endpoints failed "
                f"({rounds} round{'s' if rounds != 1 else ''}); last round: {summary}"
            )
        )
        self.failures = failures
        self.rounds = rounds


class _FailoverAttempt:
    """
    One C{connect()} of an L{AMQPFailoverEndpoint}: the endpoints in order,
    then the policy's delay, then the endpoints again, until one connects.

    @ivar result: the Deferred C{connect()} returned.
    """

    _log = Logger()

    def __init__(
        self,
        endpoint: AMQPFailoverEndpoint,
        factory: IProtocolFactory,
    ) -> None:
        self._endpoint = endpoint
        self._endpoints = endpoint.endpoints
        self._factory = factory
        self._index = 0
        self._round = 1
        self._failures: list[tuple[IStreamClientEndpoint, Failure]] = []
        self._pending: Deferred[IProtocol] | None = None
        self._timer: IDelayedCall | None = None
        self.result: Deferred[IProtocol] = Deferred(self._cancel)

    def start(self) -> Deferred[IProtocol]:
        """
        Reset the policy and try the first endpoint.

        @return: L{result}.
        """
        policy = self._endpoint.policy
        if policy is not None:
            try:
                policy.reset()
            except Exception:
                self.result.errback()
                return self.result
        self._tryCurrent()
        return self.result

    def _tryCurrent(self) -> None:
        endpoint = self._endpoints[self._index]
        self._log.info(
            "Trying {endpoint} (endpoint {index} of {count}, round {round})",
            endpoint=repr(endpoint),
            index=self._index + 1,
            count=len(self._endpoints),
            round=self._round,
        )
        pending: Deferred[IProtocol] = maybeDeferred(endpoint.connect, self._factory)
        self._pending = pending
        pending.addCallbacks(
            self._connected,
            self._failed,
            callbackArgs=(endpoint,),
            errbackArgs=(endpoint,),
        )

    def _connected(self, protocol: IProtocol, endpoint: IStreamClientEndpoint) -> None:
        self._pending = None
        self._log.info(
            "Connected to {endpoint} (endpoint {index} of {count}, round {round})",
            endpoint=repr(endpoint),
            index=self._index + 1,
            count=len(self._endpoints),
            round=self._round,
        )
        self.result.callback(protocol)

    def _failed(self, reason: Failure, endpoint: IStreamClientEndpoint) -> None:
        from ._reconnect import _nextDelay, _reasonText

        self._pending = None
        if self.result.called:
            # Cancelled: this is our own attempt's cancellation.
            return
        self._failures.append((endpoint, reason))
        self._log.warn(
            "Could not connect to {endpoint}: {reason}",
            endpoint=repr(endpoint),
            reason=_reasonText(reason),
        )
        if reason.check(AuthenticationFailed):
            self.result.errback(reason)
            return
        self._index += 1
        if self._index < len(self._endpoints):
            self._tryCurrent()
            return
        policy = self._endpoint.policy
        try:
            delay = None if policy is None else _nextDelay(policy)
        except Exception:
            self.result.errback()
            return
        if delay is None:
            self._log.error(
                "Giving up: all {count} endpoints failed, {round} rounds",
                count=len(self._endpoints),
                round=self._round,
            )
            self.result.errback(FailoverExhausted(self._failures, self._round))
            return
        self._log.info(
            "All {count} endpoints failed; starting over in {delay} seconds",
            count=len(self._endpoints),
            delay=delay,
        )
        self._timer = self._endpoint.clock.callLater(delay, self._nextRound)

    def _nextRound(self) -> None:
        self._timer = None
        self._index = 0
        self._round += 1
        self._failures = []
        self._tryCurrent()

    def _cancel(self, result: Deferred[IProtocol]) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        pending, self._pending = self._pending, None
        self.result.errback(Failure(ConnectingCancelledError(repr(self._endpoint))))
        if pending is not None:
            pending.cancel()


@implementer(IStreamClientEndpoint)
class AMQPFailoverEndpoint:
    """
    A client endpoint over several endpoints (usually amqptx's, one per
    server of a cluster): C{connect()} tries them in order until one
    connects.

      - An endpoint that fails sends C{connect()} to the next one.  When
        all have failed, it waits for the policy's next delay and starts a
        new round from the first; when the policy gives up (returns
        L{None}), C{connect()} fails with L{FailoverExhausted}.
      - L{amqptx.AuthenticationFailed} ends C{connect()} at once: the
        credentials would fail on every node too, and retrying them may lock
        the account.
      - Every C{connect()} starts with the first endpoint and resets the
        policy: after a connection that was open drops, the next
        C{connect()} (a reconnect by L{amqptx.ReconnectingAMQPClientFactory}
        or by Twisted's C{ClientService}) tries the first server again,
        as proton's C{Container} does after a connection opened.  List the
        preferred server first.
      - The policy object is shared by every C{connect()} of the endpoint:
        make one C{connect()} at a time (as C{ClientService} and the
        reconnecting factory do), or give each concurrent user its own
        endpoint.

    The Deferred of C{connect()} can be cancelled at any stage; it then fails
    with C{ConnectingCancelledError}, the attempt in progress is cancelled and
    no timer is left.

    @ivar endpoints: the endpoints, in order.
    @ivar policy: the delays between rounds (see L{amqptx.reconnectPolicy}),
        or L{None} for one round only.
    @ivar clock: the clock for the delays between rounds.
    """

    def __init__(
        self,
        reactor: object,
        endpoints: Iterable[IStreamClientEndpoint | AMQPURL | str],
        policy: object = None,
    ) -> None:
        """
        @param reactor: the reactor: the clock for the delays between rounds,
            and what the endpoints made from URLs connect with.
        @param endpoints: client endpoints, or connection URLs (text or
            L{AMQPURL}) that become L{amqptx.AMQPClientEndpoint}s with their
            default options (use L{fromURLs} to give options).
        @param policy: anything L{amqptx.reconnectPolicy} accepts: L{None}
            (the default L{amqptx.Backoff}: 0, 0.1, 0.2 ... 10 seconds
            between rounds, forever), L{False} for one round only, a policy
            object, or a list of delays.
        @raise ValueError: for no endpoint at all, or a bad URL.
        @raise TypeError: for something that is neither an endpoint nor a URL,
            or a policy L{amqptx.reconnectPolicy} refuses.
        """
        from ._reconnect import reconnectPolicy

        if isinstance(endpoints, (str, AMQPURL)):
            raise TypeError(
                "AMQPFailoverEndpoint needs a list of endpoints or URLs, not "
                f"one URL ({endpoints!s})"
            )
        resolved: list[IStreamClientEndpoint] = []
        for entry in endpoints:
            if isinstance(entry, (str, AMQPURL)):
                from ._endpoints import AMQPClientEndpoint

                resolved.append(AMQPClientEndpoint.fromURL(reactor, entry))
            elif IStreamClientEndpoint.providedBy(entry):
                resolved.append(entry)
            else:
                raise TypeError(f"not a client endpoint nor an AMQP URL: {entry!r}")
        if not resolved:
            raise ValueError("AMQPFailoverEndpoint needs at least one endpoint or URL")
        self.endpoints: tuple[IStreamClientEndpoint, ...] = tuple(resolved)
        self.policy: IReconnectPolicy | None = reconnectPolicy(policy)
        self.clock: IReactorTime = reactor  # type: ignore[assignment]

    @classmethod
    def fromURLs(
        cls,
        reactor: object,
        urls: Iterable[AMQPURL | str],
        policy: object = None,
        **options: object,
    ) -> AMQPFailoverEndpoint:
        """
        Make a failover endpoint over connection URLs, with the same options
        for each.

        @param reactor: the reactor.
        @param urls: the URLs (text or L{AMQPURL}), in order.
        @param policy: see L{__init__}.
        @param options: keyword arguments of L{amqptx.AMQPClientEndpoint}
            for every URL.
        @return: the endpoint.
        @raise ValueError: for no URL, a bad URL or a bad option value.
        @raise TypeError: for an unknown option, or a single URL instead of
            a list.
        """
        from ._endpoints import AMQPClientEndpoint

        if isinstance(urls, (str, AMQPURL)):
            raise TypeError(f"fromURLs needs a list of URLs, not one URL ({urls!s})")
        endpoints: list[IStreamClientEndpoint] = [
            AMQPClientEndpoint.fromURL(reactor, url, **options) for url in urls
        ]
        return cls(reactor, endpoints, policy)

    def __repr__(self) -> str:
        inner = ", ".join(repr(endpoint) for endpoint in self.endpoints)
        return f"<AMQPFailoverEndpoint [{inner}]>"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Connect through the first endpoint that succeeds.

        @param protocolFactory: the factory (for amqptx endpoints, a factory
            of L{amqptx.IAMQPProtocol} providers).
        @return: a Deferred that fires with what the endpoint that connected
            fired with (for amqptx endpoints: the protocol, once the AMQP
            connection is open), or fails with:
              - L{FailoverExhausted} when the policy gave up; it holds the
                failures of the last round;
              - L{amqptx.AuthenticationFailed} at once, when an endpoint
                reported it;
              - C{ConnectingCancelledError} when cancelled;
              - the policy's C{TypeError} or C{ValueError} when it gave
                something that is not a delay (a negative one, say).
        """
        return _FailoverAttempt(self, protocolFactory).start()


def failoverEndpoint(
    reactor: object,
    url: AMQPURL | str | None = None,
    urls: Iterable[AMQPURL | str] | None = None,
    *,
    policy: object = None,
    **options: object,
) -> AMQPFailoverEndpoint:
    """
    Make a failover endpoint from AMQ Python's C{url=} or C{urls=}
    arguments.

    @param reactor: the reactor.
    @param url: one connection URL.
    @param urls: several connection URLs, tried in order.
    @param policy: see L{AMQPFailoverEndpoint.__init__}.
    @param options: keyword arguments of L{amqptx.AMQPClientEndpoint}, for
        every URL.
    @return: the endpoint.
    @raise ValueError: for both C{url} and C{urls} (the AMQ documentation
        makes that an error; proton silently ignores C{urls}), for neither,
        or for a bad URL or option value.
    @raise TypeError: for an unknown option, or one URL given as C{urls}.
    """
    if url is not None and urls is not None:
        raise ValueError("give url or urls, not both")
    if url is None and urls is None:
        raise ValueError("give a url or a list of urls")
    if urls is None:
        assert url is not None
        urls = [url]
    return AMQPFailoverEndpoint.fromURLs(reactor, urls, policy, **options)


def _parseFailover(
    reactor: object, args: tuple[str, ...], options: dict[str, str]
) -> AMQPFailoverEndpoint:
    """
    Make a failover endpoint from the parts of an C{amqp-failover:} string.

    @param reactor: the reactor.
    @param args: the positional parts: the URLs, split by Twisted at every
        C{":"}.
    @param options: the C{name=value} parts.
    @return: the endpoint.
    @raise TypeError: for an unknown option, or a TLS option without any
        C{amqps://} URL.
    @raise ValueError: for no URL, a bad URL or a bad option value.
    """
    known = _FAILOVER_OPTIONS | _CLIENT_TLS_OPTIONS
    for name in options:
        if name not in known:
            raise TypeError(
                f"unknown option {name!r} for {_PREFIX}: "
                f"(known: {', '.join(sorted(known))})"
            )
    joined = ":".join(args)
    if not joined.strip():
        raise ValueError(
            f"{_PREFIX}: needs URLs, as in {_PREFIX}:amqp://host1,amqp://host2"
        )
    texts = [text.strip() for text in joined.split(",")]
    if not all(texts):
        raise ValueError(
            f"{_PREFIX}: an empty URL in the list (a comma at either end, or "
            "two in a row)"
        )
    urls = [parseURL(text) for text in texts]
    tlsOptions = sorted(name for name in options if name in _CLIENT_TLS_OPTIONS)
    if tlsOptions and not any(url.tls for url in urls):
        raise TypeError(
            f"option {tlsOptions[0]!r} of {_PREFIX}: needs an amqps:// URL (TLS)"
        )
    plainOptions = {k: v for k, v in options.items() if k not in _CLIENT_TLS_OPTIONS}
    endpoints = [
        _parseClient(
            url.scheme,
            reactor,
            ("//" + text.partition("://")[2],),
            options if url.tls else plainOptions,
        )
        for text, url in zip(texts, urls, strict=True)
    ]
    return AMQPFailoverEndpoint(reactor, endpoints)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class AMQPFailoverParser:
    """
    Parses C{amqp-failover:} client endpoint strings: a comma-separated list
    of connection URLs, then options for all of them, as in
    C{amqp-failover:amqp://h1:5672,amqps://h2:5671:trustRoots=ca.pem:timeout=5}.

    The options are those of C{amqp:} and C{amqps:} client strings but
    C{host} and C{port}; each applies to every URL, except the TLS options
    (C{trustRoots}, C{certificate}, C{privateKey}, C{sni}), which apply to
    the C{amqps://} URLs only.  A user or password in a URL must not be
    given as an option too.  Each endpoint's C{timeout} limits one attempt
    on one server; between rounds the endpoint waits as the default
    L{amqptx.Backoff} says, forever.

    Twisted splits endpoint strings at every C{":"}; the positional parts
    are joined again, so URLs need no escaping, but a C{"="} in a password
    must be percent-encoded (C{%3D}).

    @ivar prefix: C{"amqp-failover"}.
    """

    prefix = _PREFIX

    def parseStreamClient(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamClientEndpoint:
        """
        Make a failover endpoint from a parsed endpoint string.

        @param reactor: the reactor.
        @param args: the positional parts (the URLs).
        @param kwargs: the C{name=value} parts.
        @return: an L{AMQPFailoverEndpoint}.
        @raise TypeError: for an unknown option.
        @raise ValueError: for a bad URL or value.
        """
        return _parseFailover(reactor, *_strings(args, kwargs))
