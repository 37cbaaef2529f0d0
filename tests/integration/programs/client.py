# -*- test-case-name: tests.integration.test_container_parity -*-
"""
A request/response client: sends requests with a dynamic reply queue as
their C{reply_to}, one at a time, and prints each answer (proton's
C{client.py}, written anew).
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


class Client(LoggingHandler):
    """
    Send each request once the reply queue exists, and the next one when
    the answer came.
    """

    def __init__(self, url: str, requests: list[str]) -> None:
        super().__init__()
        self.url = url
        self.requests = requests

    def on_start(self, event: HandlerEvent) -> None:
        self.sender = event.container.create_sender(self.url)
        self.receiver = event.container.create_receiver(
            self.sender.connection, None, dynamic=True
        )

    def request(self) -> None:
        address = self.receiver.remote_source.address
        self.sender.send(
            Message(
                reply_to=address,
                correlation_id=len(self.requests),
                body=self.requests[0],
            )
        )

    def on_link_opened(self, event: HandlerEvent) -> None:
        if event.receiver is not None and event.receiver == self.receiver:
            out(f"reply queue {self.receiver.remote_source.address}")
            self.request()

    def on_message(self, event: HandlerEvent) -> None:
        out(f"{self.requests.pop(0)} => {event.message.body}")
        if self.requests:
            self.request()
        else:
            event.connection.close()


def main() -> None:
    """
    Run it.
    """
    arguments = parser(__doc__ or "")
    arguments.add_argument("--url", required=True)
    arguments.add_argument(
        "requests",
        nargs="*",
        default=["Twas brillig", "and the slithy toves", "did gire"],
    )
    options = arguments.parse_args()
    Container = containerClass(options.container)
    Container(Client(options.url, list(options.requests))).run()
    out("done")


if __name__ == "__main__":
    main()
