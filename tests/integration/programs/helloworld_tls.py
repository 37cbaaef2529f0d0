# -*- test-case-name: tests.integration.test_container_parity -*-
"""
Hello world over TLS: the program listens with C{amqps} (the certificate set
on C{container.ssl.server}), connects to itself with an C{SSLDomain} that
trusts the given CA and verifies the server's name, and sends one message.
With a CA that did not sign the server's certificate (and
C{--no-reconnect}), the handler hears of the TLS failure instead.
"""

from __future__ import annotations

from typing import Any

from proton import Message

from tests.integration.programs._common import (
    HandlerEvent,
    LoggingHandler,
    containerClass,
    out,
    parser,
)


def sslDomainClass(name: str) -> Any:
    """
    @param name: C{"proton"} or C{"amqptx"}.
    @return: that project's C{SSLDomain} class.
    """
    if name == "proton":
        from proton import SSLDomain as ProtonSSLDomain

        return ProtonSSLDomain
    from amqptx import SSLDomain as AMQPTXSSLDomain

    return AMQPTXSSLDomain


class HelloTLS(LoggingHandler):
    """
    Listen with TLS, send "Hello TLS!" to ourselves, print it, close.
    """

    def __init__(self, port: int, domain: Any, reconnect: bool) -> None:
        super().__init__()
        self.port = port
        self.domain = domain
        self.reconnect = reconnect

    def on_start(self, event: HandlerEvent) -> None:
        self.acceptor = event.container.listen(f"amqps://127.0.0.1:{self.port}")
        connection = event.container.connect(
            f"amqps://localhost:{self.port}",
            ssl_domain=self.domain,
            reconnect=None if self.reconnect else False,
        )
        event.container.create_sender(connection, "examples")

    def on_sendable(self, event: HandlerEvent) -> None:
        event.sender.send(Message(body="Hello TLS!"))
        event.sender.close()

    def on_message(self, event: HandlerEvent) -> None:
        out(event.message.body)

    def on_accepted(self, event: HandlerEvent) -> None:
        event.connection.close()

    def on_connection_closed(self, event: HandlerEvent) -> None:
        self.acceptor.close()

    def on_transport_error(self, event: HandlerEvent) -> None:
        out("transport error")
        self.acceptor.close()


def main() -> None:
    """
    Run it.
    """
    arguments = parser(__doc__ or "")
    arguments.add_argument("--port", type=int, required=True)
    arguments.add_argument("--ca", required=True)
    arguments.add_argument("--cert", required=True)
    arguments.add_argument("--key", required=True)
    arguments.add_argument(
        "--no-reconnect", action="store_true", help="try once (reconnect=False)"
    )
    options = arguments.parse_args()
    Container = containerClass(options.container)
    SSLDomain = sslDomainClass(options.container)
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(options.ca)
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    container = Container(HelloTLS(options.port, domain, not options.no_reconnect))
    container.ssl.server.set_credentials(options.cert, options.key, None)
    container.run()
    out("done")


if __name__ == "__main__":
    main()
