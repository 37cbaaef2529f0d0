# -*- test-case-name: tests.test_events -*-
"""
proton's events for amqptx's dispatch: the object an event is about wrapped
at once, the others it names (its delivery, link, session, connection and
transport) only when asked for.

proton's own C{Event} wraps all of them for every event, and a handler looks
at one or two: the Begin of a session needs the session, not the transport
too.  Each wrapper costs its creation and, on a server that forgets its
wrappers' attributes (see L{amqptx._raw.forgetAttributes}), a new attribute
record.

The event's own object (its context) is wrapped before the event leaves
proton's collector, as proton does, and that wrapper's reference keeps it
alive; every other object an event names is reached from it (a delivery's
link, a link's session, a session's connection, a connection's transport),
the way proton's C functions find them, and lives at least as long.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from cproton_ffi import ffi
from proton import (
    Connection,
    Delivery,
    Event,
    EventType,
    Receiver,
    Sender,
    Session,
    Transport,
)
from proton._events import EventBase, wrappers

from ._raw import CData, lib

__all__ = ["LazyEvent", "event"]


class LazyEvent(Event):
    """
    A proton C{Event} that wraps the objects it names on first use.
    """

    def __init__(self, number: int, clsname: str | None, context: Any) -> None:
        """
        @param number: the event's type, as proton numbers it.
        @param clsname: proton's name of the class of its context.
        @param context: the wrapper of its context, or L{None}.
        """
        # Not proton's __init__: that one wraps everything at once.
        self._type = EventType.TYPES[number]
        self._clsname = clsname
        self._context = context

    @cached_property
    def delivery(self) -> Delivery | None:
        """
        The delivery the event is about, if it is about one.
        """
        context = self._context
        return context if isinstance(context, Delivery) else None

    @cached_property
    def link(self) -> Sender | Receiver | None:
        """
        The link of the event: its delivery's, or the link it is about.
        """
        delivery = self.delivery
        if delivery is not None:
            return delivery.link
        context = self._context
        return context if isinstance(context, (Sender, Receiver)) else None

    @cached_property
    def session(self) -> Session | None:
        """
        The session of the event: its link's, or the session it is about.
        """
        link = self.link
        if link is not None:
            return link.session
        context = self._context
        return context if isinstance(context, Session) else None

    @cached_property
    def connection(self) -> Connection | None:
        """
        The connection of the event: its session's, the connection it is
        about, or its transport's.
        """
        session = self.session
        if session is not None:
            return session.connection
        context = self._context
        if isinstance(context, Connection):
            return context
        if isinstance(context, Transport):
            return context.connection
        return None

    @cached_property
    def transport(self) -> Transport | None:
        """
        The transport of the event: the one it is about, or its connection's.
        """
        context = self._context
        if isinstance(context, Transport):
            return context
        connection = self.connection
        return None if connection is None else connection.transport

    @property
    def container(self) -> Any:
        """
        The transport's C{Container}, as proton's C{Event.container}.
        """
        return self.transport._reactor  # type: ignore[union-attr]


def event(impl: CData) -> Event:
    """
    @param impl: an event from a collector, not yet popped.
    @return: an event for it, its context wrapped (or proton's application
        event, as proton's C{Event.wrap} returns it).
    """
    number = lib.pn_event_type(impl)
    clsname = ffi.string(lib.pn_event_class_name_py(impl)).decode("utf-8")
    context = None
    if clsname:
        context = wrappers[clsname](lib.pn_event_context(impl))  # type: ignore[no-untyped-call]
        if isinstance(context, EventBase):
            # An application's own event, as proton's Event.wrap gives it.
            return context  # type: ignore[return-value]
    return LazyEvent(number, clsname, context)
