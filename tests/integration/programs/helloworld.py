# -*- test-case-name: tests.integration.test_container_parity -*-
"""
Hello world, direct: the program listens, connects to itself, sends one
message and receives it (proton's C{helloworld_direct.py}, written anew).
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


class HelloWorld(LoggingHandler):
    """
    Listen, send "Hello World!" to ourselves, print it, close.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def on_start(self, event: HandlerEvent) -> None:
        self.acceptor = event.container.listen(self.url)
        event.container.create_sender(self.url)

    def on_sendable(self, event: HandlerEvent) -> None:
        event.sender.send(Message(body="Hello World!"))
        event.sender.close()

    def on_message(self, event: HandlerEvent) -> None:
        out(event.message.body)

    def on_accepted(self, event: HandlerEvent) -> None:
        event.connection.close()

    def on_connection_closed(self, event: HandlerEvent) -> None:
        self.acceptor.close()


def main() -> None:
    """
    Run it.
    """
    arguments = parser(__doc__ or "")
    arguments.add_argument("--port", type=int, required=True)
    options = arguments.parse_args()
    Container = containerClass(options.container)
    Container(HelloWorld(f"127.0.0.1:{options.port}/examples")).run()
    out("done")


if __name__ == "__main__":
    main()
