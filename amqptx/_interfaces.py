# -*- test-case-name: tests.test_protocol -*-
"""
The interfaces of amqptx.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from twisted.internet.interfaces import IProtocol
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime

    from ._engine import ConnectionSettings

__all__ = ["IAMQPProtocol", "IProtonHandler"]

_T = TypeVar("_T")


class IAMQPProtocol(IProtocol):
    """
    A Twisted protocol that speaks AMQP 1.0 over its transport.

    amqptx's endpoints accept only factories that build these: they configure
    each protocol with L{configure} before it is connected, and fire their
    Deferreds once L{whenOpened} does.
    """

    def configure(settings: ConnectionSettings, clock: IReactorTime) -> None:
        """
        Set what this side says and requires when the connection opens, and the
        clock its timers use.  Called by an endpoint before C{makeConnection}.

        @param settings: the connection's settings.
        @param clock: the clock for heartbeats and timeouts.
        """

    def whenOpened() -> Deferred[IAMQPProtocol]:
        """
        Get a Deferred that fires with this protocol once both sides have sent
        their AMQP Open, or fails with the reason the connection ended first.

        @return: a new Deferred for each call.
        """

    def whenClosed() -> Deferred[None]:
        """
        Get a Deferred that fires when the connection has ended.

        @return: a new Deferred for each call, firing with L{None} after a
            clean close, or failing with why the connection ended.
        """

    def notifyClosed(observer: Callable[[_T], object], argument: _T) -> None:
        """
        Call C{observer(argument)} once the connection has ended (at once if it
        has): L{whenClosed} without a Deferred, for a server's bookkeeping of
        its many connections.  It cannot be cancelled, and what the observer
        raises is logged.

        @param observer: what to call.
        @param argument: its argument.
        """

    def close(condition: str | None, description: str | None) -> Deferred[None]:
        """
        Close the connection, with an error condition or without.

        @param condition: an error condition name, or L{None}.
        @param description: the condition's description.
        @return: see L{whenClosed}.
        """

    def refuse(condition: str, description: str) -> None:
        """
        Make a server refuse the client's Open with this error condition.

        @param condition: the error condition's name.
        @param description: its description.
        """


class IProtonHandler(Interface):
    """
    An object that receives proton events for one connection, with proton's
    handler convention: an event of type C{PN_LINK_FLOW} calls
    C{on_link_flow(event)} if the handler has such a method.

    Protocols dispatch every event of their engine to their handler, after
    doing their own connection-level work.
    """

    handlers = Attribute(
        "Child handlers the event is also dispatched to, as in proton; "
        "usually an empty list."
    )
