# -*- test-case-name: tests.integration.test_container_parity -*-
"""
Connect where nothing listens, without reconnecting (C{reconnect=False}):
the handler hears of the failure, and the container's work is done.
"""

from __future__ import annotations

from tests.integration.programs._common import (
    HandlerEvent,
    LoggingHandler,
    containerClass,
    out,
    parser,
)


class Refused(LoggingHandler):
    """
    Try once to attach a sender to a closed port.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def on_start(self, event: HandlerEvent) -> None:
        connection = event.container.connect(self.url, reconnect=False)
        event.container.create_sender(connection, "examples")

    def on_transport_error(self, event: HandlerEvent) -> None:
        condition = event.transport.condition
        out(f"transport error: {'yes' if condition is not None else 'no'}")


def main() -> None:
    """
    Run it.
    """
    arguments = parser(__doc__ or "")
    arguments.add_argument("--port", type=int, required=True)
    options = arguments.parse_args()
    Container = containerClass(options.container)
    Container(Refused(f"127.0.0.1:{options.port}")).run()
    out("done")


if __name__ == "__main__":
    main()
