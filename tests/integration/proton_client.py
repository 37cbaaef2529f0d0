# -*- test-case-name: tests.integration.test_peers -*-
"""
An independent AMQP 1.0 client on python-qpid-proton's
L{proton.utils.BlockingConnection}, run as a subprocess by integration tests.

C{python -m tests.integration.proton_client URL --address A --send N
--receive M} sends N messages with the bodies C{"message-0"} ...
C{"message-(N-1)"} to A, each waiting for the peer to accept it, then
receives M messages from A, accepting each.  It prints one JSON line
C{{"body": ...}} per message received (with C{"correlation_id"} added in
C{--request} mode) and finally C{{"done": true, "sent": N, "received": M}}.

With C{--request}, every message sent carries the address of a dynamic
receiver as its C{reply-to} and its index as its C{correlation-id}, and one
reply is received per message sent, on that dynamic receiver, instead of
receiving from A.

It exits with status 0 on success and 1, with a message on standard error,
on any failure: a connection or TLS error, a link detached by the peer, a
message not accepted, or a timeout.  The timeout (C{--timeout}, 30 seconds by
default) bounds every wait for the peer, and all the sending and receiving
together.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from proton import Delivery, Message, SSLDomain
from proton.utils import BlockingConnection, BlockingReceiver, SendException

__all__ = ["clientSSLDomain", "main"]

_MAX_CREDIT = 100

_OUTCOMES: dict[int, str] = {
    Delivery.ACCEPTED: "ACCEPTED",
    Delivery.REJECTED: "REJECTED",
    Delivery.RELEASED: "RELEASED",
    Delivery.MODIFIED: "MODIFIED",
    Delivery.RECEIVED: "RECEIVED",
}


class ClientError(Exception):
    """
    The peer did not do what the client expected.
    """


def clientSSLDomain(
    ca: str | None, cert: str | None = None, key: str | None = None
) -> SSLDomain:
    """
    Build the TLS configuration of the client.

    @param ca: The path of the PEM authority the server certificate must be
        signed by; the server's name is verified against its certificate as
        well.  L{None} for the system's default authorities.
    @param cert: The path of a PEM client certificate to present, or L{None}.
    @param key: The path of the PEM private key of C{cert}.
    @return: A client-mode L{SSLDomain}.
    """
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    if ca is not None:
        domain.set_trusted_ca_db(ca)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME, ca)
    else:
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    if cert is not None and key is not None:
        domain.set_credentials(cert, key, None)
    return domain


class _Deadline:
    """
    The time by which the whole run must be over.
    """

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """
        @return: The seconds left.
        @raise ClientError: If none are.
        """
        left = self._end - time.monotonic()
        if left <= 0:
            raise ClientError("timed out")
        return left


def _emit(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _text(body: object) -> str:
    return body if isinstance(body, str) else repr(body)


def _describeOutcome(delivery: Delivery) -> str:
    state = delivery.remote_state
    text = _OUTCOMES.get(state, str(state))
    condition = delivery.remote.condition
    if condition is not None:
        text += f" ({condition.name}: {condition.description})"
    if state == Delivery.MODIFIED:
        text += (
            f" delivery-failed={delivery.remote.failed}"
            f" undeliverable-here={delivery.remote.undeliverable}"
        )
    return text


def _sendAll(
    connection: BlockingConnection,
    address: str,
    count: int,
    deadline: _Deadline,
    replyTo: str | None = None,
) -> None:
    sender = connection.create_sender(address)
    for index in range(count):
        message = Message(body=f"message-{index}")
        if replyTo is not None:
            message.reply_to = replyTo
            message.correlation_id = index
        # With no error states, send() hands back the delivery whatever its
        # outcome (by default it raises on rejected or released only, and
        # quietly returns a modified one).
        delivery = sender.send(message, timeout=deadline.remaining(), error_states=[])
        if delivery.remote_state != Delivery.ACCEPTED:
            raise ClientError(
                f"message-{index} to {address!r} not accepted: "
                f"{_describeOutcome(delivery)}"
            )
    sender.close()


def _receiveAll(
    receiver: BlockingReceiver, count: int, deadline: _Deadline, request: bool
) -> int:
    received = 0
    for _ in range(count):
        message = receiver.receive(timeout=deadline.remaining())
        receiver.accept()
        received += 1
        record: dict[str, object] = {"body": _text(message.body)}
        if request:
            record["correlation_id"] = _text(message.correlation_id)
        _emit(record)
    return received


def _run(options: argparse.Namespace) -> int:
    sslDomain = None
    if urlsplit(options.url).scheme == "amqps":
        sslDomain = clientSSLDomain(options.ca, options.cert, options.key)
    deadline = _Deadline(options.timeout)
    connection = BlockingConnection(
        options.url,
        timeout=options.timeout,
        ssl_domain=sslDomain,
        user=options.user,
        password=options.password,
    )
    received = 0
    try:
        if options.request:
            replies = connection.create_receiver(
                None, credit=max(1, min(_MAX_CREDIT, options.send)), dynamic=True
            )
            replyTo = replies.remote_source.address
            if replyTo is None:
                raise ClientError("no address given to the dynamic receiver")
            _sendAll(connection, options.address, options.send, deadline, replyTo)
            received = _receiveAll(replies, options.send, deadline, True)
            replies.close()
        else:
            if options.send:
                _sendAll(connection, options.address, options.send, deadline)
            if options.receive:
                receiver = connection.create_receiver(
                    options.address, credit=min(_MAX_CREDIT, options.receive)
                )
                received = _receiveAll(receiver, options.receive, deadline, False)
                receiver.close()
    except BaseException:
        # Report the first failure, not whatever closing then runs into.
        try:
            connection.close()
        except Exception:
            pass
        raise
    connection.close()
    _emit({"done": True, "sent": options.send, "received": received})
    return 0


def _describeError(error: BaseException) -> str:
    if isinstance(error, SendException):
        state = _OUTCOMES.get(error.state, str(error.state))
        return f"SendException: message not accepted: {state}"
    return f"{type(error).__name__}: {error}"


def _parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.integration.proton_client",
        description="Send, then receive, messages with proton's blocking API.",
    )
    parser.add_argument("url", help="amqp://host:port or amqps://host:port")
    parser.add_argument("--address", required=True)
    parser.add_argument("--send", type=int, default=0, metavar="N")
    parser.add_argument("--receive", type=int, default=0, metavar="N")
    parser.add_argument(
        "--request",
        action="store_true",
        help="send requests with a dynamic reply-to and receive the replies",
    )
    parser.add_argument("--ca", help="PEM authority to verify the server with")
    parser.add_argument("--cert", help="PEM client certificate")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds for the whole run"
    )
    options = parser.parse_args(list(argv))
    if (options.cert is None) != (options.key is None):
        parser.error("--cert and --key go together")
    if options.send < 0 or options.receive < 0:
        parser.error("counts must not be negative")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the client.

    @param argv: The command line arguments, without the program name;
        L{sys.argv} if L{None}.
    @return: The exit status: 0 on success, 1 on any failure.
    """
    options = _parseArguments(sys.argv[1:] if argv is None else argv)
    try:
        return _run(options)
    except Exception as e:
        sys.stderr.write(f"proton_client: error: {_describeError(e)}\n")
        sys.stderr.flush()
        return 1


if __name__ == "__main__":
    sys.exit(main())
