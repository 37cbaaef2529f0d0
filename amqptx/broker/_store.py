# -*- test-case-name: tests.test_store -*-
"""
Where a broker keeps what must survive a restart: the durable queues, and
the durable messages they hold.

L{IMessageStore} is what the broker asks of a store; L{SQLiteStore
<amqptx.broker._sqlite.SQLiteStore>} is the embedded one.  A store is told
every change to the durable messages in the order the broker makes them,
and acknowledges each with a L{Deferred} that fires once the change is on
disk (committed); the broker waits for that before it accepts a durable
message (see L{amqptx.broker.Broker}).

L{StoreService} opens the store and recovers its contents as the server
starts, before it listens, and closes it after every connection has
ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from zope.interface import Interface

if TYPE_CHECKING:
    from ._broker import Broker

__all__ = [
    "IMessageStore",
    "Recovery",
    "StoreError",
    "StoreService",
    "StoredMessage",
]


class StoreError(Exception):
    """
    The store cannot be used, or could not write a change: its message is a
    one-line explanation, naming the store.
    """


@dataclass(frozen=True)
class StoredMessage:
    """
    A message as a store holds it.

    @ivar key: the message's identity, given by the broker: unique among
        the messages of the store.
    @ivar queue: the address of the queue that holds it.
    @ivar position: its place: a queue's messages are in increasing
        C{position} order (positions are unique within the store).
    @ivar data: the encoded message, as it will be delivered.
    @ivar expires: when the message expires, in seconds since the epoch, or
        L{None}.
    @ivar delivered: whether its delivery to a consumer had begun (and was
        not yet settled) when the change was last recorded.
    """

    key: int
    queue: str
    position: int
    data: bytes
    expires: float | None = None
    delivered: bool = False


@dataclass(frozen=True)
class Recovery:
    """
    What a store holds when the broker starts.

    @ivar queues: the addresses of the durable queues, in the order they
        were declared.
    @ivar messages: the messages, in increasing C{position} order (so each
        queue's messages come in their queue's order).
    """

    queues: tuple[str, ...] = ()
    messages: tuple[StoredMessage, ...] = ()


class IMessageStore(Interface):
    """
    A broker's durable queues and messages, on disk.

    Changes are made in the order the broker calls the methods below; each
    returns a L{Deferred} that fires with L{None} once the change is
    committed (and every change asked before it), or fails with
    L{StoreError} if it could not be written (the changes asked before and
    after it may still be written).  A store may commit many changes at
    once (group commit).  After L{close}, changes fail at once with
    L{StoreError}.
    """

    def recover() -> Recovery:
        """
        Open the store (creating it if need be) and read what it holds.

        It is called once, before any other method, and may block: the
        broker calls it while the server starts, before its reactor runs.

        @return: the durable queues and the messages.
        @raise StoreError: when the store cannot be used: a format newer
            than this version of amqptx reads, a corrupt or foreign file,
            a store in use by another process, a file that cannot be
            created.
        """

    def declare(queue: str) -> Deferred[None]:
        """
        Record a durable queue (nothing happens if it is recorded already).

        @param queue: the queue's address.
        @return: a Deferred that fires once the change is committed.
        """

    def add(
        key: int, queue: str, position: int, data: bytes, expires: float | None
    ) -> Deferred[None]:
        """
        Record a new message, not delivered.

        @param key: its key, new to the store.
        @param queue: the address of its queue.
        @param position: its place in the queue.
        @param data: the encoded message.
        @param expires: when it expires (seconds since the epoch), or
            L{None}.
        @return: a Deferred that fires once the change is committed.
        """

    def delivered(key: int) -> Deferred[None]:
        """
        Record that a message's delivery has begun.

        @param key: the message's key.
        @return: a Deferred that fires once the change is committed.
        """

    def requeue(
        key: int,
        queue: str,
        position: int,
        expires: float | None,
        data: bytes,
    ) -> Deferred[None]:
        """
        Record that a message is back on a queue (its own, released by its
        consumer, or another, dead-lettered), not delivered.

        @param key: the message's key.
        @param queue: the address of the queue that now holds it.
        @param position: its new place.
        @param expires: when it expires (seconds since the epoch), or
            L{None}.
        @param data: the message as it now is (its header changes for a
            redelivery).
        @return: a Deferred that fires once the change is committed.
        """

    def remove(key: int) -> Deferred[None]:
        """
        Forget a message (settled, dropped, or gone where it is not kept).

        @param key: the message's key; nothing happens for a key the store
            does not hold.
        @return: a Deferred that fires once the change is committed.
        """

    def close() -> Deferred[None]:
        """
        Write the changes still waiting, then close the store.

        @return: a Deferred that fires once the store is closed (it does
            not fail: changes that could not be written fail on their own).
        """


class StoreService(MultiService):
    """
    The parent service of a server whose broker has a store: on start,
    recovers the store's queues and messages into the broker
    (synchronously, before the reactor runs), then starts the server; on
    stop, stops the server (which closes its connections), then closes the
    store.

    Recovery happens first thing in L{privilegedStartService}: before the
    children open their ports (and after C{twistd} has become a daemon: a
    SQLite file must not cross a C{fork}).  With C{twistd --uid}, the store
    is therefore opened (and created, if need be) by the user C{twistd}
    starts as: create it beforehand with the right owner.  A service
    started with L{startService} alone recovers there, before starting its
    children.
    """

    def __init__(self, broker: Broker) -> None:
        """
        @param broker: a broker with a store.
        @raise ValueError: when it has none.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        if broker.store is None:
            raise ValueError("the broker has no store")
        self.broker = broker
        self._recovered = False

    def _recover(self) -> None:
        """
        Recover the store into the broker, once.

        @raise SystemExit: with a one-line message, when the store cannot
            be used.
        """
        if self._recovered:
            return
        self._recovered = True
        try:
            self.broker.recover()
        except StoreError as e:
            raise SystemExit(f"amqp-listen: {e}") from None

    def privilegedStartService(self) -> None:
        """
        Recover the store, then let the children open their ports.

        @raise SystemExit: with a one-line message, when the store cannot
            be used.
        """
        self._recover()
        super().privilegedStartService()  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        """
        Recover the store (unless done already), then start the children.

        @raise SystemExit: with a one-line message, when the store cannot
            be used.
        """
        self._recover()
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None]:
        """
        Stop the children, then close the store.

        @return: a Deferred that fires once the store is closed.
        """
        stopped: Deferred[object] = super().stopService()  # type: ignore[no-untyped-call]
        broker = self.broker
        store = broker.store
        assert store is not None

        def later(result: object) -> Deferred[object]:
            # A connection reports its end before the broker hears of it
            # (and writes the messages its consumers had not settled back
            # to their queues): close the store on the next turn.  The
            # children's failures were reported as they stopped (a
            # DeferredList does not fail): close the store in any case.
            return deferLater(broker.clock, 0, lambda: None)

        return stopped.addBoth(later).addCallback(lambda _: store.close())
