# -*- test-case-name: tests.test_store -*-
"""
Tests for the broker's message store: L{amqptx.broker.SQLiteStore} on a
temporary file, L{FakeStore} (a fake of L{IMessageStore} that holds its
writes until told, verified by the same contract), and what the broker makes
of a store (durable messages accepted only once committed, recovery at
start), with clients connected in memory.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from proton import Message
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

import amqptx.broker
from amqptx import MessageRejected, Outcome, ReceivedMessage
from amqptx.broker import (
    Broker,
    BrokerConfig,
    IMessageStore,
    Recovery,
    SQLiteStore,
    StoredMessage,
    StoreError,
    StoreService,
)
from amqptx.broker._sqlite import SCHEMA_VERSION, _ThreadWriter
from tests.test_broker import BrokerMixin

_T = TypeVar("_T")


# --- fakes -------------------------------------------------------------------


class ImmediateWriter:
    """
    A writer (see L{amqptx.broker._sqlite.Writer}) that runs each piece of
    work at once, in the calling thread.
    """

    stopped = False

    def __call__(self, work: Callable[[], _T]) -> Deferred[_T]:
        try:
            return succeed(work())
        except Exception:
            return fail()

    def stop(self) -> None:
        self.stopped = True


class HeldWriter:
    """
    A writer that holds each piece of work until the test runs it, in the
    calling thread: a transaction then stays "in progress" for as long as
    the test wants.
    """

    def __init__(self) -> None:
        self.held: list[tuple[Callable[[], Any], Deferred[Any]]] = []
        self.stopped = False

    def __call__(self, work: Callable[[], _T]) -> Deferred[_T]:
        done: Deferred[_T] = Deferred()
        self.held.append((work, done))
        return done

    def runOne(self) -> None:
        """
        Run the oldest piece of work held.
        """
        work, done = self.held.pop(0)
        try:
            result = work()
        except Exception:
            done.errback(Failure())
        else:
            done.callback(result)

    def runAll(self) -> None:
        """
        Run what is held, and what that gives, until nothing is.
        """
        while self.held:
            self.runOne()

    def stop(self) -> None:
        self.stopped = True


@dataclasses.dataclass
class FakeState:
    """
    What a L{FakeStore} has committed: what survives its "restart".
    """

    queues: list[str] = dataclasses.field(default_factory=list)
    messages: dict[int, StoredMessage] = dataclasses.field(default_factory=dict)


@implementer(IMessageStore)
class FakeStore:
    """
    An L{IMessageStore} in memory, whose changes are committed when the test
    says (L{complete}) if C{hold} is set, at once otherwise.

    @ivar state: what was committed.
    @ivar asked: every change asked, in order: C{(name, key or queue)}.
    @ivar pending: the changes asked and not yet committed.
    @ivar failing: whether the next commits fail (as on a full disk).
    @ivar error: the error L{recover} raises, or L{None}.
    @ivar commits: how many commits were made.
    """

    def __init__(self, state: FakeState | None = None, hold: bool = False) -> None:
        self.state = FakeState() if state is None else state
        self.hold = hold
        self.asked: list[tuple[str, object]] = []
        self.pending: list[tuple[Callable[[], None], Deferred[None]]] = []
        self.failing = False
        self.error: StoreError | None = None
        self.recovered = False
        self.closed = False
        self.commits = 0

    def recover(self) -> Recovery:
        if self.error is not None:
            raise self.error
        self.recovered = True
        state = self.state
        return Recovery(
            tuple(state.queues),
            tuple(sorted(state.messages.values(), key=lambda m: m.position)),
        )

    def _change(
        self, name: str, subject: object, apply: Callable[[], None]
    ) -> Deferred[None]:
        self.asked.append((name, subject))
        if self.closed or not self.recovered:
            return fail(StoreError("the store is closed"))
        done: Deferred[None] = Deferred()
        self.pending.append((apply, done))
        if not self.hold:
            self.complete()
        return done

    def complete(self) -> None:
        """
        Commit (or fail, if L{failing}) the changes asked so far.
        """
        pending, self.pending = self.pending, []
        if pending:
            self.commits += 1
        for apply, done in pending:
            if self.failing:
                done.errback(StoreError("the disk is full"))
            else:
                apply()
                done.callback(None)

    def declare(self, queue: str) -> Deferred[None]:
        def apply() -> None:
            if queue not in self.state.queues:
                self.state.queues.append(queue)

        return self._change("declare", queue, apply)

    def add(
        self, key: int, queue: str, position: int, data: bytes, expires: float | None
    ) -> Deferred[None]:
        def apply() -> None:
            self.state.messages[key] = StoredMessage(
                key, queue, position, data, expires
            )

        return self._change("add", key, apply)

    def delivered(self, key: int) -> Deferred[None]:
        def apply() -> None:
            stored = self.state.messages.get(key)
            if stored is not None:
                self.state.messages[key] = dataclasses.replace(stored, delivered=True)

        return self._change("delivered", key, apply)

    def requeue(
        self, key: int, queue: str, position: int, expires: float | None, data: bytes
    ) -> Deferred[None]:
        def apply() -> None:
            if key in self.state.messages:
                self.state.messages[key] = StoredMessage(
                    key, queue, position, data, expires
                )

        return self._change("requeue", key, apply)

    def remove(self, key: int) -> Deferred[None]:
        def apply() -> None:
            self.state.messages.pop(key, None)

        return self._change("remove", key, apply)

    def close(self) -> Deferred[None]:
        self.complete()
        self.closed = True
        return succeed(None)


# --- the contract of every store ---------------------------------------------


if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


class StoreContractMixin(_Base):
    """
    What every L{IMessageStore} does, whatever it keeps its data in.
    """

    def makeStore(self) -> IMessageStore:
        """
        @return: a new, empty store, not yet recovered, whose changes are
            committed at once.
        """
        raise NotImplementedError()

    def reopen(self, store: IMessageStore) -> IMessageStore:
        """
        Close a store, and open the same again (not yet recovered).
        """
        raise NotImplementedError()

    def restart(self, store: IMessageStore) -> Recovery:
        """
        @return: what the store holds after a restart.
        """
        return self.reopen(store).recover()

    def open(self) -> IMessageStore:
        store = self.makeStore()
        self.assertEqual(store.recover(), Recovery())
        return store

    def test_interface(self) -> None:
        """
        The store provides L{IMessageStore}.
        """
        self.assertTrue(verifyObject(IMessageStore, self.makeStore()))

    def test_messages(self) -> None:
        """
        Messages added are recovered by position (so in their queues'
        order), with their queue, data and expiry time, not delivered.
        """
        store = self.open()
        for d in [
            store.add(1, "a", 3, b"one", None),
            store.add(2, "b", 1, b"two", 1e9),
            store.add(3, "a", -5, b"three", None),
        ]:
            self.assertIsNone(self.successResultOf(d))
        self.assertEqual(
            self.restart(store),
            Recovery(
                (),
                (
                    StoredMessage(3, "a", -5, b"three"),
                    StoredMessage(2, "b", 1, b"two", 1e9),
                    StoredMessage(1, "a", 3, b"one"),
                ),
            ),
        )

    def test_queues(self) -> None:
        """
        Durable queues are recovered in the order they were first declared.
        """
        store = self.open()
        for name in ["q", "a", "q", "z"]:
            self.successResultOf(store.declare(name))
        self.assertEqual(self.restart(store).queues, ("q", "a", "z"))

    def test_delivered(self) -> None:
        """
        A message recorded as delivered is recovered so.
        """
        store = self.open()
        store.add(1, "q", 1, b"x", None)
        store.add(2, "q", 2, b"y", None)
        self.successResultOf(store.delivered(2))
        self.assertEqual(
            [m.delivered for m in self.restart(store).messages], [False, True]
        )

    def test_requeue(self) -> None:
        """
        A message requeued is recovered on its new queue, at its new
        position, with its new data and expiry, not delivered.
        """
        store = self.open()
        store.add(1, "q", 1, b"x", 5.0)
        store.add(2, "q", 2, b"y", None)
        store.delivered(2)
        self.successResultOf(store.requeue(2, "dlq", 0, None, b"y2"))
        self.successResultOf(store.requeue(1, "q", 7, 6.0, b"x2"))
        self.assertEqual(
            self.restart(store).messages,
            (StoredMessage(2, "dlq", 0, b"y2"), StoredMessage(1, "q", 7, b"x2", 6.0)),
        )

    def test_remove(self) -> None:
        """
        A message removed is not recovered; removing an unknown key does
        nothing.
        """
        store = self.open()
        store.add(1, "q", 1, b"x", None)
        store.add(2, "q", 2, b"y", None)
        self.successResultOf(store.remove(1))
        self.successResultOf(store.remove(99))
        self.assertEqual(
            self.restart(store).messages, (StoredMessage(2, "q", 2, b"y"),)
        )

    def test_closed(self) -> None:
        """
        Once closed, a store refuses changes with L{StoreError}.
        """
        store = self.open()
        self.successResultOf(store.close())
        self.failureResultOf(store.add(1, "q", 1, b"x", None), StoreError)
        self.failureResultOf(store.declare("q"), StoreError)


class FakeStoreTests(StoreContractMixin, SynchronousTestCase):
    """
    L{FakeStore} keeps the contract of L{IMessageStore}.
    """

    def makeStore(self) -> IMessageStore:
        return FakeStore()

    def reopen(self, store: IMessageStore) -> IMessageStore:
        assert isinstance(store, FakeStore)
        store.close()
        return FakeStore(store.state)


class SQLiteContractTests(StoreContractMixin, SynchronousTestCase):
    """
    L{SQLiteStore} keeps the contract of L{IMessageStore}.
    """

    def makeStore(self) -> IMessageStore:
        self.path = self.mktemp()
        return SQLiteStore(self.path, writer=ImmediateWriter())

    def reopen(self, store: IMessageStore) -> IMessageStore:
        self.successResultOf(store.close())
        return SQLiteStore(self.path, writer=ImmediateWriter())


# --- SQLite ------------------------------------------------------------------


class SQLiteStoreTests(SynchronousTestCase):
    """
    L{SQLiteStore}: group commit, and the files it refuses.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()

    def store(self, writer: Any = None, **kw: Any) -> SQLiteStore:
        """
        @return: a store on the test's file, recovered.
        """
        store = SQLiteStore(
            self.path, writer=ImmediateWriter() if writer is None else writer, **kw
        )
        store.recover()
        self.addCleanup(store.close)
        return store

    def refused(self, why: str) -> str:
        """
        Assert that a store on the test's file cannot be used.

        @param why: a part of the message expected.
        @return: the message of the L{StoreError}.
        """
        store = SQLiteStore(self.path, writer=ImmediateWriter())
        error = self.assertRaises(StoreError, store.recover)
        message = str(error)
        self.assertIn(why, message)
        self.assertIn(self.path, message)
        self.assertNotIn("\n", message)
        return message

    def test_groupCommit(self) -> None:
        """
        Changes asked while a transaction commits wait for it, and then
        all go into the next one: ten changes, two commits.  Each change's
        Deferred fires once its own transaction has committed.
        """
        writer = HeldWriter()
        store = self.store(writer)
        first = store.add(0, "q", 0, b"0", None)
        rest = [store.add(i, "q", i, b"%d" % i, None) for i in range(1, 10)]
        self.assertEqual(len(writer.held), 1)
        writer.runOne()
        self.assertIsNone(self.successResultOf(first))
        for d in rest:
            self.assertNoResult(d)
        self.assertEqual((store.commits, store.changes), (1, 1))
        self.assertEqual(len(writer.held), 1)
        writer.runOne()
        for d in rest:
            self.assertIsNone(self.successResultOf(d))
        self.assertEqual((store.commits, store.changes, store.largestBatch), (2, 10, 9))

    def test_maxBatch(self) -> None:
        """
        A transaction commits at most C{maxBatch} changes; with C{1}, each
        change is a commit of its own (no group commit).
        """
        for maxBatch, commits, largest in [(4, 4, 4), (1, 10, 1)]:
            self.path = self.mktemp()
            writer = HeldWriter()
            store = self.store(writer, maxBatch=maxBatch)
            done = [store.add(i, "q", i, b"m", None) for i in range(10)]
            writer.runAll()
            for d in done:
                self.successResultOf(d)
            self.assertEqual(
                (store.commits, store.changes, store.largestBatch),
                (commits, 10, largest),
            )

    def test_orderInABatch(self) -> None:
        """
        The changes of one transaction are made in the order they were
        asked.
        """
        writer = HeldWriter()
        store = self.store(writer)
        store.add(1, "q", 1, b"busy", None)
        store.add(2, "q", 2, b"x", None)
        store.delivered(2)
        store.remove(2)
        store.add(3, "q", 3, b"y", None)
        store.delivered(3)
        store.requeue(3, "q", 0, None, b"y2")
        store.delivered(3)
        writer.runAll()
        self.assertEqual(store.commits, 2)
        self.successResultOf(store.close())
        recovery = SQLiteStore(self.path, writer=ImmediateWriter()).recover()
        self.assertEqual(
            recovery.messages,
            (
                StoredMessage(3, "q", 0, b"y2", None, True),
                StoredMessage(1, "q", 1, b"busy"),
            ),
        )

    def test_maxBatchValue(self) -> None:
        """
        C{maxBatch} and C{maxBytes} are at least 1.
        """
        self.assertRaises(ValueError, SQLiteStore, self.path, maxBatch=0)
        self.assertRaises(ValueError, SQLiteStore, self.path, maxBytes=0)

    def test_closeWaits(self) -> None:
        """
        Closing writes the changes still waiting first: the store closes,
        and its writer stops, once they are committed.
        """
        writer = HeldWriter()
        store = SQLiteStore(self.path, writer=writer)
        store.recover()
        first = store.add(1, "q", 1, b"x", None)
        second = store.add(2, "q", 2, b"y", None)
        closed = store.close()
        again = store.close()
        self.failureResultOf(store.remove(1), StoreError)
        self.assertNoResult(closed)
        writer.runAll()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertIsNone(self.successResultOf(closed))
        self.assertIsNone(self.successResultOf(again))
        self.assertIsNone(self.successResultOf(store.close()))
        self.assertTrue(writer.stopped)
        self.assertEqual(
            len(SQLiteStore(self.path, writer=writer).recover().messages), 2
        )

    def test_notOpen(self) -> None:
        """
        Changes asked before L{SQLiteStore.recover} fail; recovering twice
        is an error.
        """
        store = SQLiteStore(self.path, writer=ImmediateWriter())
        self.failureResultOf(store.declare("q"), StoreError)
        store.recover()
        self.addCleanup(store.close)
        self.assertRaises(RuntimeError, store.recover)

    def test_walAndFull(self) -> None:
        """
        The file is in write-ahead-log mode, marked as an amqptx store of
        the current format.
        """
        store = self.store()
        self.successResultOf(store.close())
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone(), ("wal",))
        self.assertEqual(
            db.execute("PRAGMA user_version").fetchone(), (SCHEMA_VERSION,)
        )
        self.assertEqual(db.execute("PRAGMA application_id").fetchone(), (0x616D7178,))

    def test_newerFormat(self) -> None:
        """
        A store in a newer format is refused, with a one-line message
        saying so.
        """
        store = self.store()
        self.successResultOf(store.close())
        db = sqlite3.connect(self.path)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.close()
        message = self.refused("newer amqptx")
        self.assertIn(f"format {SCHEMA_VERSION + 1}", message)

    def test_notADatabase(self) -> None:
        """
        A file that is not a SQLite database is refused.
        """
        with open(self.path, "wb") as f:
            f.write(b"this is not a message store\n" * 200)
        self.refused("not a database")

    def test_foreignDatabase(self) -> None:
        """
        A SQLite database that is not an amqptx store is refused (and left
        alone).
        """
        db = sqlite3.connect(self.path)
        db.execute("CREATE TABLE other (x)")
        db.commit()
        db.close()
        self.refused("not an amqptx message store")

    def test_corrupt(self) -> None:
        """
        A store whose pages were damaged is refused as corrupt.
        """
        store = self.store()
        for i in range(200):
            store.add(i, "q", i, os.urandom(200), None)
        self.successResultOf(store.close())
        self.assertFalse(os.path.exists(self.path + "-wal"))
        size = os.path.getsize(self.path)
        with open(self.path, "r+b") as f:
            # Past the first page (the header and the schema).
            f.seek(size // 2)
            f.write(b"\xff" * 4096)
        self.refused("corrupt")

    def test_inUse(self) -> None:
        """
        A store another store (another process, say) has open is refused.
        """
        self.store()
        self.refused("in use by another process")

    def test_cannotCreate(self) -> None:
        """
        A store that cannot be created is refused.
        """
        self.path = os.path.join(self.mktemp(), "no", "store.db")
        self.refused("cannot be opened")

    def test_full(self) -> None:
        """
        When the file cannot grow (a full disk, or C{maxBytes}), the
        changes of the transaction fail with L{StoreError} and nothing of
        them is written; smaller changes go on working.
        """
        store = self.store(maxBytes=64 * 1024)
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        kept = store.add(1, "q", 1, b"small", None)
        self.successResultOf(kept)
        failure = self.failureResultOf(
            store.add(2, "q", 2, b"x" * 100_000, None), StoreError
        )
        self.assertIn("full", str(failure.value))
        self.assertEqual(store.failures, 1)
        self.assertEqual(len(observer), 1)
        self.successResultOf(store.add(3, "q", 3, b"also small", None))
        self.successResultOf(store.close())
        recovered = SQLiteStore(self.path, writer=ImmediateWriter()).recover()
        self.assertEqual([m.key for m in recovered.messages], [1, 3])


class _ThreadReactor:
    """
    Just enough reactor for L{_ThreadWriter}: it runs at once, and what
    threads hand it waits in a queue for the test.
    """

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Any, tuple[Any, ...], dict[str, Any]]] = (
            queue.Queue()
        )

    def callWhenRunning(self, f: Callable[..., Any], *a: Any) -> None:
        f(*a)

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        self.calls.put((f, a, kw))

    def runNext(self) -> None:
        """
        Wait for the next call from a thread (at most 30 seconds), and run
        it.
        """
        f, a, kw = self.calls.get(timeout=30)
        f(*a, **kw)


class ThreadWriterTests(SynchronousTestCase):
    """
    The default writer is a thread of the store's own.
    """

    def test_thread(self) -> None:
        """
        Work runs in another thread; its result comes back through the
        reactor.
        """
        reactor = _ThreadReactor()
        writer = _ThreadWriter(reactor)
        self.addCleanup(writer.stop)
        d = writer(lambda: threading.get_ident())
        reactor.runNext()
        self.assertNotEqual(self.successResultOf(d), threading.get_ident())

    def test_groupCommit(self) -> None:
        """
        With its thread, a store commits the changes asked while a commit is
        in progress together.
        """
        reactor = _ThreadReactor()
        store = SQLiteStore(self.mktemp(), reactor)
        store.recover()
        first = store.add(0, "q", 0, b"m", None)
        rest = [store.add(i, "q", i, b"m", None) for i in range(1, 100)]
        reactor.runNext()
        self.successResultOf(first)
        reactor.runNext()
        for d in rest:
            self.successResultOf(d)
        self.assertEqual((store.commits, store.changes), (2, 100))
        closed = store.close()
        self.successResultOf(closed)


# --- the broker with a store -------------------------------------------------


def durable(body: Any, **kw: Any) -> Message:
    """
    @return: a durable message.
    """
    return Message(body=body, durable=True, **kw)


class StoreBrokerMixin(BrokerMixin):
    """
    Clients connected in memory to a broker whose store is a L{FakeStore}
    that commits only when the test says.
    """

    def setUp(self) -> None:
        self.useStore(BrokerConfig())

    def useStore(
        self, config: BrokerConfig, state: FakeState | None = None
    ) -> FakeStore:
        """
        Make a new broker with a new store on C{state}, recovered.

        @return: the store.
        """
        self.useBroker(config)
        self.store = FakeStore(state, hold=True)
        self.broker = Broker(config, self.clock, self.store)
        self.broker.recover()
        return self.store

    def commit(self) -> None:
        """
        Commit what the store was asked (after moving what the clients
        sent), and let the broker act on it.
        """
        self.flush()
        self.store.complete()
        self.clock.advance(0)
        self.flush()

    def restart(self, config: BrokerConfig | None = None) -> FakeStore:
        """
        Drop every connection, and start a new broker on what the store
        committed.

        @return: the new store.
        """
        self.commit()
        return self.useStore(config or self.broker.config, self.store.state)

    def asked(self, name: str) -> list[object]:
        """
        @return: the subjects of the changes of that name the store was
            asked for.
        """
        return [subject for kind, subject in self.store.asked if kind == name]

    def bodies(self, address: str) -> list[object]:
        """
        @return: the bodies of the messages the store holds for a queue, in
            order.
        """
        messages = sorted(self.store.state.messages.values(), key=lambda m: m.position)
        return [self.decode(m.data).body for m in messages if m.queue == address]

    @staticmethod
    def decode(data: bytes) -> Message:
        message = Message()
        message.decode(data)
        return message


class DurableSendTests(StoreBrokerMixin):
    """
    A durable message sent to a queue is accepted once the store committed
    it.
    """

    def test_acceptedAfterCommit(self) -> None:
        """
        The sender gets I{accepted} only once the store has committed the
        message.
        """
        client = self.connect()
        d = client.send("q", durable("kept"))
        self.flush()
        self.assertNoResult(d)
        self.assertEqual(self.bodies("q"), [])
        self.commit()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertEqual(self.bodies("q"), ["kept"])

    def test_groupedOutcomes(self) -> None:
        """
        Many sends in flight are committed together, and accepted in order
        after that one commit.
        """
        client = self.connect()
        sends = [client.send("q", durable(i)) for i in range(20)]
        self.flush()
        for d in sends:
            self.assertNoResult(d)
        self.commit()
        self.assertEqual(
            [self.successResultOf(d) for d in sends], [Outcome.ACCEPTED] * 20
        )
        self.assertEqual(self.store.commits, 1)
        self.assertEqual(self.bodies("q"), list(range(20)))

    def test_nonDurable(self) -> None:
        """
        A message that is not durable stays in memory: accepted at once,
        never written.
        """
        client = self.connect()
        self.send(client, "q", body="memory")
        self.assertEqual(self.store.asked, [])
        self.assertEqual(self.depth("q"), 1)

    def test_availableBeforeCommit(self) -> None:
        """
        A durable message is on its queue for consumers before it is
        committed, so the queue keeps the order messages arrived in,
        durable or not.
        """
        producer, consumer = self.connect(), self.connect()
        first = producer.send("q", durable(1))
        self.send(producer, "q", body=2)
        receiver = self.receiver(consumer, "q", autoAccept=True)
        self.assertEqual([self.get(receiver).body for _ in range(2)], [1, 2])
        self.assertNoResult(first)
        self.commit()
        self.assertIs(self.successResultOf(first), Outcome.ACCEPTED)
        self.assertEqual(self.bodies("q"), [])

    def test_notWritten(self) -> None:
        """
        A message the store could not write is rejected with
        C{amqp:internal-error}, and leaves its queue.
        """
        client = self.connect()
        d = client.send("q", durable("lost"))
        self.flush()
        self.store.failing = True
        self.commit()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:internal-error")
        self.assertIn("the disk is full", failure.value.description)
        self.assertEqual(self.depth("q"), 0)
        self.store.failing = False
        self.send(client, "q", body="next")
        self.assertEqual(self.depth("q"), 1)

    def test_notWrittenDelivered(self) -> None:
        """
        A message that failed to be written after a consumer got it is
        rejected all the same, and the consumer's outcome for it writes
        nothing.
        """
        producer, consumer = self.connect(), self.connect()
        d = producer.send("q", durable("lost"))
        self.flush()
        received = self.get(self.receiver(consumer, "q"))
        self.store.failing = True
        self.commit()
        self.failureResultOf(d, MessageRejected)
        self.store.failing = False
        received.accept()
        self.flush()
        self.assertEqual(self.asked("remove"), [])

    def test_creditWindow(self) -> None:
        """
        Messages waiting to be committed take their place in the link's
        credit window: a sender gets no more credit than the window while
        the store is behind.
        """
        client = self.connect()
        sender = self.sender(client, "q")
        sends = [sender.send(durable(i)) for i in range(250)]
        self.flush()
        self.assertEqual(len(self.store.pending), 100)
        self.assertEqual(sender.link.credit, 0)
        self.commit()
        self.assertEqual(len(self.store.pending), 100)
        self.commit()
        self.commit()
        self.assertEqual(
            [self.successResultOf(d) for d in sends], [Outcome.ACCEPTED] * 250
        )

    def test_senderGone(self) -> None:
        """
        When the sender's connection drops before the commit, the message is
        kept all the same, and nothing is settled on the dead link.
        """
        client = self.connect()
        d = client.send("q", durable("orphan"))
        self.flush()
        client.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()
        self.commit()
        self.assertEqual(self.bodies("q"), ["orphan"])
        self.failureResultOf(d)

    def test_relay(self) -> None:
        """
        A durable message through the anonymous relay is accepted once
        committed too.
        """
        client = self.connect()
        d = client.send(None, durable("routed", address="q"))
        self.flush()
        self.assertNoResult(d)
        self.commit()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertEqual(self.bodies("q"), ["routed"])

    def test_relayHeld(self) -> None:
        """
        A durable message the relay held for room on a full queue is
        written, and accepted once committed, when the queue has room.
        """
        self.useStore(BrokerConfig(maxQueueDepth=1))
        client = self.connect()
        first = client.send(None, durable(1, address="q"))
        second = client.send(None, durable(2, address="q"))
        self.flush()
        self.commit()
        self.assertIs(self.successResultOf(first), Outcome.ACCEPTED)
        self.assertNoResult(second)
        receiver = self.receiver(self.connect(), "q", autoAccept=True)
        self.assertEqual(self.get(receiver).body, 1)
        self.commit()
        self.assertIs(self.successResultOf(second), Outcome.ACCEPTED)
        self.assertEqual(self.bodies("q"), [2])

    def test_topic(self) -> None:
        """
        Durable messages sent to a topic are not written: subscriptions do
        not survive a restart.
        """
        client = self.connect()
        receiver = self.receiver(client, "topic/t")
        self.send(client, "topic/t", body="fan-out", durable=True)
        self.assertEqual(self.get(receiver).body, "fan-out")
        self.assertEqual(self.store.asked, [])

    def test_temporary(self) -> None:
        """
        Durable messages sent to a temporary queue are not written.
        """
        client = self.connect()
        receiver = self.receiver(client, None, dynamic=True)  # type: ignore[arg-type]
        assert receiver.address is not None
        self.send(client, receiver.address, body="reply", durable=True)
        self.assertEqual(self.store.asked, [])

    def test_put(self) -> None:
        """
        L{Queue.put} writes a durable message too.
        """
        self.broker.queue("q").put(durable("put").encode())
        self.commit()
        self.assertEqual(self.bodies("q"), ["put"])

    def test_putNotWritten(self) -> None:
        """
        A durable message L{Queue.put} could not write leaves its queue.
        """
        self.store.failing = True
        self.broker.queue("q").put(durable("put").encode())
        self.commit()
        self.assertEqual(self.depth("q"), 0)

    def test_headers(self) -> None:
        """
        The durable flag is read from the header's bytes, or through
        proton's decoder when the broker's reader cannot read them; a
        message without a header is not durable.
        """
        from amqptx.broker._broker import _isDurable

        self.assertTrue(_isDurable(durable("x").encode()))
        self.assertFalse(_isDurable(Message(body="x").encode()))
        self.assertFalse(_isDurable(b"\x00\x53\x77\xa1\x01x"))
        self.assertFalse(_isDurable(b"not a message"))
        self.assertFalse(_isDurable(b""))
        # durable true, then a priority encoded as an int (0x71), which the
        # broker's reader does not take for a ubyte.
        odd = b"\x00\x53\x70\xc0\x07\x02\x41\x71\x00\x00\x00\x02\x00\x53\x77\xa1\x01x"
        self.assertTrue(_isDurable(odd))


class SettlementTests(StoreBrokerMixin):
    """
    What consumers do to stored messages is written too.
    """

    def stored(self, *bodies: object, address: str = "q") -> None:
        """
        Send durable messages, committed.
        """
        client = self.connect()
        sends = [client.send(address, durable(body)) for body in bodies]
        self.flush()
        self.commit()
        for d in sends:
            self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)

    def test_acceptRemoves(self) -> None:
        """
        A message accepted by its consumer is removed; its delivery was
        recorded first.
        """
        self.stored("a", "b")
        receiver = self.receiver(self.connect(), "q", credit=1)
        self.get(receiver).accept()
        self.commit()
        self.assertEqual(self.bodies("q"), ["b"])
        self.assertEqual(self.asked("delivered"), [1, 2])
        self.assertEqual(self.asked("remove"), [1])

    def test_releaseRequeues(self) -> None:
        """
        A released message is written back at the front of its queue, not
        delivered, with C{first-acquirer} false.
        """
        self.stored("a", "b")
        receiver = self.receiver(self.connect(), "q", credit=1)
        self.get(receiver).release()
        self.commit()
        self.assertEqual(self.bodies("q"), ["a", "b"])
        stored = self.store.state.messages[1]
        self.assertFalse(self.decode(stored.data).first_acquirer)
        self.assertEqual(self.decode(stored.data).delivery_count, 0)

    def test_modifiedCounts(self) -> None:
        """
        A message given back I{modified}, delivery failed, is written back
        with its delivery count one higher.
        """
        self.stored("a")
        receiver = self.receiver(self.connect(), "q")
        self.get(receiver).modify()
        self.commit()
        [stored] = self.store.state.messages.values()
        self.assertEqual(self.decode(stored.data).delivery_count, 1)

    def test_disconnectCounts(self) -> None:
        """
        Messages unsettled when their consumer goes are written back, in
        order, at the front, their delivery count one higher.
        """
        self.stored("a", "b", "c")
        consumer = self.connect()
        # Handing "a" out gives credit for "b".
        self.get(self.receiver(consumer, "q", credit=1))
        consumer.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()
        self.commit()
        self.assertEqual(self.bodies("q"), ["a", "b", "c"])
        counts = [
            self.decode(m.data).delivery_count
            for m in sorted(
                self.store.state.messages.values(), key=lambda m: m.position
            )
        ]
        self.assertEqual(counts, [1, 1, 0])

    def test_rejectDeadLettered(self) -> None:
        """
        A rejected message moves to the dead-letter queue in the store too.
        """
        self.useStore(BrokerConfig(deadLetterAddress="dlq"))
        self.stored("bad")
        self.get(self.receiver(self.connect(), "q")).reject()
        self.commit()
        self.assertEqual(self.bodies("q"), [])
        self.assertEqual(self.bodies("dlq"), ["bad"])

    def test_rejectDropped(self) -> None:
        """
        Without a dead-letter address, a rejected message is removed.
        """
        self.stored("bad")
        self.get(self.receiver(self.connect(), "q")).reject()
        self.commit()
        self.assertEqual(self.store.state.messages, {})

    def test_deadLetterTopic(self) -> None:
        """
        A message dead-lettered to a topic leaves the store.
        """
        self.useStore(BrokerConfig(deadLetterAddress="topic/dead"))
        self.stored("bad")
        client = self.connect()
        dead = self.receiver(client, "topic/dead")
        self.get(self.receiver(client, "q")).reject()
        self.commit()
        self.assertEqual(self.get(dead).body, "bad")
        self.assertEqual(self.store.state.messages, {})

    def test_expired(self) -> None:
        """
        An expired message is removed from the store.
        """
        client = self.connect()
        client.send("q", durable("old", ttl=1))
        self.flush()
        self.commit()
        self.clock.advance(2)
        receiver = self.receiver(client, "q")
        self.assertNothing(receiver)
        self.commit()
        self.assertEqual(self.store.state.messages, {})

    def test_presettled(self) -> None:
        """
        A message sent pre-settled to its consumer is removed at once.
        """
        self.stored("gone")
        client = self.connect()
        session = client.connection.session()
        session.open()
        link = session.receiver("presettled")
        link.source.address = "q"
        link.snd_settle_mode = link.SND_SETTLED
        link.open()
        link.flow(1)
        client.flush()
        self.flush()
        self.commit()
        self.assertEqual(self.store.state.messages, {})
        self.assertEqual(self.asked("delivered"), [])


class RecoveryTests(StoreBrokerMixin):
    """
    A broker recovers what its store holds before serving clients.
    """

    def inQueue(self, address: str) -> list[object]:
        """
        @return: the bodies of the messages in a queue of the broker.
        """
        return [self.decode(m.data).body for m in self.broker.queues[address].messages]

    def test_order(self) -> None:
        """
        Every stored message comes back, in its queue's order, also after
        messages went back to the front of the queue.
        """
        client = self.connect()
        for address, body in [("a", 1), ("b", 2), ("a", 3), ("a", 4)]:
            client.send(address, durable(body))
        self.flush()
        self.commit()
        receiver = self.receiver(client, "a", credit=1)
        # Handing 1 out gives credit for 3; 1 goes back to the front, then
        # 3 (unsettled when its link detaches) in front of it.
        self.get(receiver).release()
        self.flush()
        receiver.close()
        self.flush()
        before = self.inQueue("a")
        self.assertEqual(before, [3, 1, 4])
        self.restart()
        self.assertEqual(self.inQueue("a"), before)
        consumer = self.connect()
        received = self.receiver(consumer, "a", autoAccept=True)
        self.assertEqual([self.get(received).body for _ in range(3)], before)
        other = self.receiver(consumer, "b", autoAccept=True)
        self.assertEqual(self.get(other).body, 2)

    def test_redelivered(self) -> None:
        """
        A message whose delivery had begun when the broker stopped comes
        back with its delivery count one higher and C{first-acquirer}
        false; the others come back as they were.  (Handing the first
        message out gave the receiver credit for the second, which was
        delivered too.)
        """
        client = self.connect()
        for i in range(3):
            client.send("q", durable(i, first_acquirer=True))
        self.flush()
        self.commit()
        self.get(self.receiver(self.connect(), "q", credit=1))
        self.restart()
        # The new header is written back.
        self.commit()
        first = min(self.store.state.messages.values(), key=lambda m: m.position)
        self.assertFalse(first.delivered)
        self.assertEqual(self.decode(first.data).delivery_count, 1)
        receiver = self.receiver(self.connect(), "q")
        messages: list[ReceivedMessage] = [self.get(receiver) for _ in range(3)]
        self.assertEqual([m.body for m in messages], [0, 1, 2])
        self.assertEqual(
            [(m.message.delivery_count, m.message.first_acquirer) for m in messages],
            [(1, False), (1, False), (0, True)],
        )

    def test_newAfterRecovered(self) -> None:
        """
        Messages sent after a restart go behind the recovered ones, with
        new keys; a recovered message given back goes in front.
        """
        client = self.connect()
        client.send("q", durable("old"))
        self.flush()
        self.restart()
        client = self.connect()
        client.send("q", durable("new"))
        self.flush()
        self.commit()
        self.get(self.receiver(client, "q", credit=1)).release()
        self.restart()
        self.assertEqual(
            [self.decode(m.data).body for m in self.broker.queues["q"].messages],
            ["old", "new"],
        )
        self.assertEqual(sorted(self.store.state.messages), [1, 2])

    def test_maxDeliveries(self) -> None:
        """
        A redelivered message whose delivery count reaches
        C{maxDeliveries} is dead-lettered as it is recovered.
        """
        config = BrokerConfig(maxDeliveries=1, deadLetterAddress="dlq")
        self.useStore(config)
        client = self.connect()
        client.send("q", durable("poison"))
        self.flush()
        self.commit()
        self.get(self.receiver(client, "q"))
        self.restart()
        self.assertEqual(self.depth("q"), 0)
        self.assertEqual(self.depth("dlq"), 1)
        self.commit()
        self.assertEqual(self.bodies("dlq"), ["poison"])

    def test_expiry(self) -> None:
        """
        A recovered message keeps its expiry time.
        """
        client = self.connect()
        client.send("q", durable("brief", ttl=10))
        self.flush()
        self.restart()
        [entry] = self.broker.queues["q"].messages
        self.assertEqual(entry.expires, self.clock.seconds() + 10)

    def test_durableQueues(self) -> None:
        """
        Queues declared at start, and queues created by a link with a
        durable terminus, survive a restart; those of other links, topics
        and temporary queues do not.
        """
        self.useStore(BrokerConfig(queues=("declared", "topic/t")))
        client = self.connect()
        self.sender(client, "plain")
        senders = [
            client.sender("by-sender", durable=True),
            client.sender("topic/durable", durable=True),
        ]
        self.flush()
        for d in senders:
            self.successResultOf(d)
        self.receiver(client, "by-receiver", durable=True)
        self.receiver(client, None, dynamic=True, durable=True)  # type: ignore[arg-type]
        self.restart(BrokerConfig())
        self.assertEqual(
            self.store.state.queues, ["declared", "by-sender", "by-receiver"]
        )
        self.assertEqual(
            sorted(self.broker.queues), ["by-receiver", "by-sender", "declared"]
        )
        self.assertTrue(all(q.durable for q in self.broker.queues.values()))

    def test_addressNowTopic(self) -> None:
        """
        Messages of a queue whose address has become a topic stay in the
        store, unused, with a warning.
        """
        client = self.connect()
        client.send("news/1", durable("x"))
        self.flush()
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        self.restart(BrokerConfig(multicastPrefix="news/"))
        self.assertNotIn("news/1", self.broker.queues)
        self.assertEqual(len(self.store.state.messages), 1)
        warnings = [e for e in observer if "stay in the store" in e["log_format"]]
        self.assertEqual(len(warnings), 1)

    def test_logged(self) -> None:
        """
        Recovery is logged, with what was recovered and how long it took.
        """
        client = self.connect()
        client.send("q", durable("x"))
        self.flush()
        observer = EventLoggingObserver.createWithCleanup(
            self,  # type: ignore[arg-type]
            globalLogPublisher,
        )
        self.restart()
        [event] = [e for e in observer if "Recovered" in e["log_format"]]
        self.assertEqual((event["queues"], event["messages"]), (0, 1))

    def test_recoverErrors(self) -> None:
        """
        Recovering twice, or without a store, is an error.
        """
        self.assertRaises(RuntimeError, self.broker.recover)
        self.assertRaises(RuntimeError, Broker(BrokerConfig(), self.clock).recover)


class SQLiteBrokerTests(BrokerMixin):
    """
    A broker on a real L{SQLiteStore} (written in the test's thread).
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.writer = HeldWriter()
        self.start()

    def start(self, **kw: Any) -> SQLiteStore:
        """
        Start a new broker on the store's file.
        """
        self.useBroker(BrokerConfig())
        self.store = SQLiteStore(self.path, writer=self.writer, **kw)
        self.broker = Broker(BrokerConfig(), self.clock, self.store)
        self.broker.recover()
        return self.store

    def test_restart(self) -> None:
        """
        Durable messages are accepted after their commit, and come back
        after a restart, in order.
        """
        client = self.connect()
        sends = [client.send("q", durable(i)) for i in range(10)]
        self.flush()
        self.assertEqual(len(self.writer.held), 1)
        for d in sends:
            self.assertNoResult(d)
        self.writer.runAll()
        self.clock.advance(0)
        self.flush()
        for d in sends:
            self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertLess(self.store.commits, 10)
        self.successResultOf(self.store.close())
        self.start()
        receiver = self.receiver(self.connect(), "q")
        self.assertEqual([self.get(receiver).body for _ in range(10)], list(range(10)))

    def test_full(self) -> None:
        """
        A message the store has no room for is rejected with
        C{amqp:internal-error}.
        """
        self.successResultOf(self.store.close())
        self.start(maxBytes=64 * 1024)
        client = self.connect()
        d = client.send("q", durable("x" * 100_000))
        self.flush()
        self.writer.runAll()
        self.clock.advance(0)
        self.flush()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:internal-error")
        self.assertIn("full", failure.value.description)
        self.assertEqual(self.depth("q"), 0)


# --- the service ---------------------------------------------------------------


class _Child(Service):
    """
    A service whose stop waits for the test, and that tells whether the
    store was recovered when it opened its ports.
    """

    def __init__(self, store: FakeStore) -> None:
        self.stopping: Deferred[None] = Deferred()
        self.store = store
        self.recoveredFirst: bool | None = None

    def privilegedStartService(self) -> None:
        self.recoveredFirst = self.store.recovered
        Service.privilegedStartService(self)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self.stopping


class StoreServiceTests(SynchronousTestCase):
    """
    L{StoreService} recovers the store before starting its children, and
    closes it after they stopped.
    """

    def setUp(self) -> None:
        self.store = FakeStore()
        self.clock = Clock()
        self.broker = Broker(BrokerConfig(queues=("q",)), self.clock, self.store)
        self.service = StoreService(self.broker)
        self.child = _Child(self.store)
        self.child.setServiceParent(self.service)

    def test_start(self) -> None:
        """
        Starting recovers the store, then starts the children.
        """
        self.service.startService()
        self.assertTrue(self.store.recovered)
        self.assertTrue(self.child.running)
        self.assertEqual(self.store.state.queues, ["q"])

    def test_privilegedStart(self) -> None:
        """
        The privileged start recovers the store before the children open
        their ports; the start that follows does not recover again.
        """
        self.service.privilegedStartService()
        self.assertIs(self.child.recoveredFirst, True)
        self.service.startService()
        self.assertTrue(self.child.running)

    def test_startRefused(self) -> None:
        """
        A store that cannot be used stops the start with a one-line
        L{SystemExit}; the children are not started.
        """
        self.store.error = StoreError("message store x: it is corrupt")
        error = self.assertRaises(SystemExit, self.service.privilegedStartService)
        self.assertEqual(str(error), "amqp-listen: message store x: it is corrupt")
        self.assertIsNone(self.child.recoveredFirst)
        self.assertFalse(self.child.running)

    def test_stop(self) -> None:
        """
        Stopping closes the store once the children have stopped, on the
        reactor's next turn (the broker hears that a connection ended after
        whoever waited for it).
        """
        self.service.startService()
        stopped = self.service.stopService()
        self.child.stopping.callback(None)
        self.assertFalse(self.store.closed)
        self.clock.advance(0)
        self.assertTrue(self.store.closed)
        self.successResultOf(stopped)

    def test_noStore(self) -> None:
        """
        A broker without a store is refused.
        """
        self.assertRaises(ValueError, StoreService, Broker())


class ExportsTests(SynchronousTestCase):
    """
    The store's public names come from C{amqptx.broker}.
    """

    def test_exports(self) -> None:
        """
        The store's classes are public in C{amqptx.broker}.
        """
        for name in [
            "IMessageStore",
            "Recovery",
            "SQLiteStore",
            "StoreError",
            "StoreService",
            "StoredMessage",
        ]:
            self.assertIn(name, amqptx.broker.__all__)
            self.assertTrue(
                getattr(amqptx.broker, name).__module__.startswith("amqptx.broker.")
            )
