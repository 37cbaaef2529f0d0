# -*- test-case-name: tests.integration.test_container_parity -*-
"""
A request/response server: receives requests on an address and sends each
answer (the request in upper case) to its C{reply_to} address through an
anonymous sender (proton's C{server.py}, written anew).
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


class Server(LoggingHandler):
    """
    Answer C{count} requests, then close.
    """

    def __init__(self, url: str, address: str, count: int) -> None:
        super().__init__()
        self.url = url
        self.address = address
        self.count = count
        self.answered = 0

    def on_start(self, event: HandlerEvent) -> None:
        connection = event.container.connect(self.url)
        self.receiver = event.container.create_receiver(connection, self.address)
        self.sender = event.container.create_sender(connection, None)

    def on_link_opened(self, event: HandlerEvent) -> None:
        if event.receiver is not None and event.receiver == self.receiver:
            out("ready")

    def on_message(self, event: HandlerEvent) -> None:
        request = event.message
        out(f"request {request.body!r}")
        self.sender.send(
            Message(
                address=request.reply_to,
                body=request.body.upper(),
                correlation_id=request.correlation_id,
            )
        )

    def on_accepted(self, event: HandlerEvent) -> None:
        self.answered += 1
        if self.answered == self.count:
            event.connection.close()


def main() -> None:
    """
    Run it.
    """
    arguments = parser(__doc__ or "")
    arguments.add_argument("--url", required=True)
    arguments.add_argument("--address", default="examples")
    arguments.add_argument("--count", type=int, default=3)
    options = arguments.parse_args()
    Container = containerClass(options.container)
    Container(Server(options.url, options.address, options.count)).run()
    out("done")


if __name__ == "__main__":
    main()
