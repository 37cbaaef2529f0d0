# -*- test-case-name: tests.test_protocol -*-
"""
The failures amqptx reports, each carrying the AMQP condition when there is one.

Every failure that comes from the AMQP peer carries the condition the peer sent:
its symbolic C{condition} name (for example C{"amqp:unauthorized-access"}), its
human-readable C{description} and its C{info} map.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectError

__all__ = [
    "AMQPConnectionLost",
    "AMQPError",
    "AuthenticationFailed",
    "ConnectionClosed",
    "DeliveryNotAccepted",
    "LinkDetached",
    "MessageModified",
    "MessageRejected",
    "MessageReleased",
    "OpenRefused",
    "ProtocolError",
    "RequestTimedOut",
    "SendQueueFull",
    "SessionEnded",
    "TLSError",
]


class AMQPError(Exception):
    """
    Base class of amqptx's failures.

    @ivar condition: the AMQP error condition's symbolic name, or L{None} when
        the failure has none (a connection that simply dropped).
    @ivar description: the condition's description, or L{None}.
    @ivar info: the condition's info map, or L{None}.
    """

    def __init__(
        self,
        condition: str | None = None,
        description: str | None = None,
        info: dict[Any, Any] | None = None,
    ) -> None:
        self.condition = condition
        self.description = description
        self.info = info
        super().__init__(condition, description)

    def __str__(self) -> str:
        parts = [p for p in (self.condition, self.description) if p]
        summary = ": ".join(parts) if parts else "no condition given"
        return f"{self.__class__.__name__}({summary})"


class ConnectionClosed(AMQPError):
    """
    The peer closed the AMQP connection with an error condition after it was
    open.
    """


class OpenRefused(ConnectionClosed):
    """
    The peer refused to open the AMQP connection: it answered the Open with a
    Close carrying an error condition (a wrong virtual host, say).
    """


class AuthenticationFailed(AMQPError):
    """
    SASL authentication failed (condition C{amqp:unauthorized-access}): wrong
    credentials, or no mechanism both sides accept.  amqptx never retries after
    this failure.
    """


class ProtocolError(AMQPError):
    """
    The connection became unusable on this side: the peer sent bytes that are not
    AMQP, broke the protocol, or stayed silent past the idle timeout
    (condition C{amqp:resource-limit-exceeded}).
    """


class AMQPConnectionLost(AMQPError):
    """
    The network connection ended without an AMQP Close from the peer.

    @ivar reason: the L{twisted.python.failure.Failure} Twisted reported, or
        L{None}.
    """

    def __init__(self, reason: object = None) -> None:
        super().__init__(None, str(getattr(reason, "value", reason) or "") or None)
        self.reason = reason


class TLSError(ConnectError):
    """
    The TLS handshake failed: the server's certificate was not trusted or not
    issued for the name asked for, or the peers share no TLS parameters.
    """

    def __init__(self, message: str) -> None:
        """
        @param message: what went wrong, from OpenSSL or service_identity.
        """
        super().__init__(string=message)  # type: ignore[no-untyped-call]


class SessionEnded(AMQPError):
    """
    The peer ended the session the link belonged to, with an error condition.
    """


class LinkDetached(AMQPError):
    """
    The peer detached (or refused to attach) the link, usually with a condition
    such as C{amqp:not-found} or C{amqp:unauthorized-access}.
    """


class RequestTimedOut(AMQPError):
    """
    No reply to a request came in time.
    """


class SendQueueFull(AMQPError):
    """
    A sender already holds as many messages waiting for credit as it may;
    wait for C{Sender.whenReady()} before sending more.
    """


class DeliveryNotAccepted(AMQPError):
    """
    The peer settled a message with an outcome other than I{accepted}.
    """


class MessageRejected(DeliveryNotAccepted):
    """
    The peer rejected the message (outcome I{rejected}); the condition is the
    rejection's error, if the peer gave one.
    """


class MessageReleased(DeliveryNotAccepted):
    """
    The peer released the message (outcome I{released}): it was not and will
    not be processed there; sending it again is safe.
    """


class MessageModified(DeliveryNotAccepted):
    """
    The peer settled the message as I{modified}.

    @ivar deliveryFailed: whether the peer counts this as a failed delivery.
    @ivar undeliverableHere: whether the peer asks not to be sent this message
        again.
    @ivar annotations: message annotations the peer asks to merge, or L{None}.
    """

    def __init__(
        self,
        deliveryFailed: bool,
        undeliverableHere: bool,
        annotations: dict[Any, Any] | None = None,
    ) -> None:
        super().__init__(
            None,
            f"delivery-failed={deliveryFailed}, undeliverable-here={undeliverableHere}",
        )
        self.deliveryFailed = deliveryFailed
        self.undeliverableHere = undeliverableHere
        self.annotations = annotations
