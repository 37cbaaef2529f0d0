# -*- test-case-name: tests.test_broker_config -*-
"""
How a L{amqptx.broker.Broker} behaves: the settings behind the options of
C{twistd amqp-listen}.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._permissions import Permissions

__all__ = ["BrokerConfig"]


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, not {value!r}")


@dataclass(frozen=True)
class BrokerConfig:
    """
    The messaging semantics of a broker.

    @ivar autoCreate: whether an address is created when first used.  When
        false, only the addresses in C{queues} (and C{deadLetterAddress})
        exist: attaching a link to another address is refused on the link
        with C{amqp:not-found}, and the anonymous relay rejects a message to
        one with C{amqp:not-found}.
    @ivar queues: addresses that exist from the start (queues, or topics
        when they begin with C{multicastPrefix}).
    @ivar multicastPrefix: addresses that begin with it are topics
        (multicast): each receiver attached to one gets its own copy of each
        message sent after it attached; a message sent while no receiver is
        attached is accepted and dropped.  L{None} makes every address a
        queue.
    @ivar deadLetterAddress: where rejected messages go (instead of being
        dropped), and messages whose delivery count reaches
        C{maxDeliveries}, and expired messages; L{None} to drop them.
    @ivar maxDeliveries: how many failed deliveries (the C{delivery-count}
        of the message's header: a I{modified} outcome with
        C{delivery-failed}, or a delivery still unsettled when its consumer
        went away) a message may have before it is dead-lettered (or
        dropped); L{None} for no limit.
    @ivar maxQueueDepth: how many messages a queue holds: a sending link gets
        credit only while its queue has room (back-pressure: nothing is
        dropped), and gets more as consumers take messages.  Messages that
        come back to a queue (released, modified, unsettled when their
        consumer went away) may take it over the limit.  L{None} for no
        limit.
    @ivar maxMessageSize: the largest message in bytes (encoded, as
        transferred) the broker takes: advertised as the C{max-message-size}
        of every link the broker receives on; a larger message is rejected
        with C{amqp:link:message-size-exceeded} and not stored.  L{None} for
        no limit.
    @ivar permissions: who may send to and receive from which addresses, or
        L{None} to let every client use every address.
    @ivar maxLinks: how many links one connection may have attached at once
        (each costs the server memory); beyond, an attach is refused on the
        link with C{amqp:resource-limit-exceeded}.  L{None} for no limit.
    """

    autoCreate: bool = True
    queues: tuple[str, ...] = ()
    multicastPrefix: str | None = "topic/"
    deadLetterAddress: str | None = None
    maxDeliveries: int | None = None
    maxQueueDepth: int | None = None
    maxMessageSize: int | None = None
    permissions: Permissions | None = None
    maxLinks: int | None = 10_000

    def __post_init__(self) -> None:
        _positive("maxLinks", self.maxLinks)
        _positive("maxDeliveries", self.maxDeliveries)
        _positive("maxQueueDepth", self.maxQueueDepth)
        _positive("maxMessageSize", self.maxMessageSize)
        if self.multicastPrefix == "":
            raise ValueError("multicastPrefix must not be empty (None disables it)")
        if self.deadLetterAddress == "":
            raise ValueError("deadLetterAddress must not be empty (None disables it)")
        if isinstance(self.queues, str):
            raise TypeError("queues must be a tuple of addresses, not a string")
        if not all(self.queues):
            raise ValueError("queues must not contain an empty address")

    def isMulticast(self, address: str) -> bool:
        """
        @param address: an address.
        @return: whether the address is a topic.
        """
        prefix = self.multicastPrefix
        return prefix is not None and address.startswith(prefix)
