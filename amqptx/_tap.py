# -*- test-case-name: tests.test_tap -*-
"""
C{twistd amqp-listen}: an AMQP 1.0 server with in-memory queues.
"""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage

from .broker import Broker

__all__ = ["Options", "makeService"]

_log = Logger()

DEFAULT_LISTEN = "amqp:5672:interface=127.0.0.1"


class Options(usage.Options):
    """
    Command-line options of C{twistd amqp-listen}.
    """

    synopsis = "[--listen ENDPOINT ...]"
    longdesc = (
        "Runs an AMQP 1.0 server with in-memory queues: any AMQP 1.0 client "
        "can send to an address and receive from it. Without --listen it "
        f"listens on {DEFAULT_LISTEN} (127.0.0.1, port 5672)."
    )

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """
        Listen on a server endpoint (repeatable), such as amqp:5672,
        amqp:5672:interface=\\:\\:, or amqps:5671:privateKey=key.pem:certKey=cert.pem
        """
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        """
        Default the endpoint, and check every endpoint string now, so that a
        mistake stops C{twistd} with a one-line message.
        """
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        from twisted.internet import reactor

        endpoints = []
        for description in self["listen"]:
            if not description.startswith(("amqp:", "amqps:")):
                raise usage.UsageError(
                    f"--listen {description!r}: use an amqp: or amqps: endpoint"
                )
            try:
                endpoints.append(serverFromString(reactor, description))
            except (ValueError, TypeError, KeyError) as e:
                raise usage.UsageError(f"--listen {description!r}: {e}") from None
        self["endpoints"] = endpoints


class _ListeningService(MultiService):
    """
    The server's listening services; a port that cannot be opened stops
    C{twistd} with a one-line message instead of a traceback.
    """

    def privilegedStartService(self) -> None:
        """
        Open every port.

        @raise SystemExit: when one cannot be opened.
        """
        try:
            super().privilegedStartService()  # type: ignore[no-untyped-call]
        except CannotListenError as e:
            raise SystemExit(f"amqp-listen: {e}") from None


def makeService(options: dict[str, Any]) -> IService:
    """
    Make the server's service: one listening service per endpoint, serving
    one set of queues.

    @param options: parsed L{Options}.
    @return: the service.
    """
    broker = Broker()
    _log.info(
        "amqp-listen: queues in memory (lost at exit); SASL ANONYMOUS only, "
        "no authentication is configured; listening on {endpoints}",
        endpoints=", ".join(options["listen"]),
    )
    service = _ListeningService()  # type: ignore[no-untyped-call]
    for description in options["listen"]:
        # strports makes a port that cannot be opened stop twistd at start.
        strports.service(description, broker.factory()).setServiceParent(service)
    return service
