# -*- test-case-name: tests.integration.test_container_parity -*-
"""
Send messages to an address and wait for each to be accepted (proton's
C{simple_send.py}, written anew).
"""

from __future__ import annotations

from proton import Message

from tests.integration.programs._common import (
    HandlerEvent,
    LoggingHandler,
    containerClass,
    out,
    parser,
)


class Send(LoggingHandler):
    """
    Send C{count} messages as credit allows; close once all are accepted.
    """

    def __init__(self, url: str, count: int) -> None:
        super().__init__()
        self.url = url
        self.total = count
        self.sent = 0
        self.confirmed = 0

    def on_start(self, event: HandlerEvent) -> None:
        event.container.create_sender(self.url)

    def on_sendable(self, event: HandlerEvent) -> None:
        while event.sender.credit and self.sent < self.total:
            self.sent += 1
            event.sender.send(Message(id=self.sent, body={"sequence": self.sent}))

    def on_accepted(self, event: HandlerEvent) -> None:
        self.confirmed += 1
        if self.confirmed == self.total:
            out("all messages confirmed")
            event.connection.close()

    def on_disconnected(self, event: HandlerEvent) -> None:
        self.sent = self.confirmed


def main() -> None:
    """
    Run it.
    """
    arguments = parser(__doc__ or "")
    arguments.add_argument("--url", required=True)
    arguments.add_argument("--count", type=int, default=5)
    options = arguments.parse_args()
    Container = containerClass(options.container)
    Container(Send(options.url, options.count)).run()
    out("done")


if __name__ == "__main__":
    main()
