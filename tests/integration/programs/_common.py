# -*- test-case-name: tests.integration.test_container_parity -*-
"""
What the example programs share: the command line, the choice of container,
and the log of handler callbacks they print.

Each program prints one line per C{MessagingHandler} callback
(C{EVENT on_sendable sender [0]}) and one per result (C{OUT Hello World!}), so
that a run with proton's container and a run with amqptx's can be compared
line by line.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from proton.handlers import MessagingHandler

__all__ = [
    "CALLBACKS",
    "HandlerEvent",
    "LoggingHandler",
    "containerClass",
    "out",
    "parser",
]

HandlerEvent = Any
"""
The type of a callback's event in the programs: proton's C{Event}, whose
properties (C{sender}, C{connection}...) are optional in general, and read
without checks in each callback that has them, as proton's examples do.
"""

CALLBACKS = frozenset(
    {
        "on_start",
        "on_connection_opening",
        "on_connection_opened",
        "on_connection_closing",
        "on_connection_closed",
        "on_connection_error",
        "on_session_opening",
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
        "on_aborted",
        "on_timer_task",
    }
)
"""
The callbacks of C{MessagingHandler} (and C{on_timer_task}) that are logged.
"""


def containerClass(name: str) -> Any:
    """
    @param name: C{"proton"} or C{"amqptx"}.
    @return: that project's C{Container} class.
    """
    if name == "proton":
        from proton.reactor import Container as ProtonContainer

        return ProtonContainer
    from amqptx import Container as AMQPTXContainer

    return AMQPTXContainer


def parser(description: str) -> argparse.ArgumentParser:
    """
    @param description: what the program does.
    @return: a parser with the C{--container} option.
    """
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--container", choices=["proton", "amqptx"], required=True)
    return result


def out(text: object) -> None:
    """
    Print a result line.

    @param text: what to print.
    """
    print(f"OUT {text}", flush=True)


class LoggingHandler(MessagingHandler):
    """
    A C{MessagingHandler} that prints the name of each of its callbacks
    (those in L{CALLBACKS}) before it runs, defined or not, with the role of
    its link and the number of its connection (in the order the handler
    first saw them): C{EVENT on_link_opened sender [0]}.
    """

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name in CALLBACKS and callable(value):
            return functools.partial(self._logCall, name, value)
        return value

    def _logCall(self, name: str, method: Callable[..., Any], *args: Any) -> Any:
        self._log(name, args[0] if args else None)
        return method(*args)

    def _log(self, name: str, event: HandlerEvent) -> None:
        description = ""
        link = getattr(event, "link", None)
        if link is not None:
            description += " sender" if link.is_sender else " receiver"
        connection = getattr(event, "connection", None)
        if connection is not None:
            try:
                seen = self.__dict__["_seenConnections"]
            except KeyError:
                seen = self.__dict__["_seenConnections"] = []
            if connection not in seen:
                seen.append(connection)
            description += f" [{seen.index(connection)}]"
        print(f"EVENT {name}{description}", flush=True)

    def on_unhandled(self, method: str, *args: Any) -> None:
        """
        Log a callback the program does not define.

        @param method: the callback's name.
        @param args: its arguments (the event).
        """
        if method in CALLBACKS:
            self._log(method, args[0] if args else None)
