# -*- test-case-name: tests.integration.test_container_parity -*-
"""
Receive messages from an address with a credit window, accepting each
(proton's C{simple_recv.py}, written anew).
"""

from __future__ import annotations

from tests.integration.programs._common import (
    HandlerEvent,
    LoggingHandler,
    containerClass,
    out,
    parser,
)


class Recv(LoggingHandler):
    """
    Print C{count} messages, then close.
    """

    def __init__(self, url: str, count: int, prefetch: int) -> None:
        super().__init__(prefetch=prefetch)
        self.url = url
        self.expected = count
        self.received = 0

    def on_start(self, event: HandlerEvent) -> None:
        event.container.create_receiver(self.url)

    def on_message(self, event: HandlerEvent) -> None:
        if event.message.id and event.message.id < self.received:
            return
        if self.received < self.expected:
            out(event.message.body)
            self.received += 1
            if self.received == self.expected:
                event.receiver.close()
                event.connection.close()


def main() -> None:
    """
    Run it.
    """
    arguments = parser(__doc__ or "")
    arguments.add_argument("--url", required=True)
    arguments.add_argument("--count", type=int, default=5)
    arguments.add_argument("--prefetch", type=int, default=10)
    options = arguments.parse_args()
    Container = containerClass(options.container)
    Container(Recv(options.url, options.count, options.prefetch)).run()
    out("done")


if __name__ == "__main__":
    main()
