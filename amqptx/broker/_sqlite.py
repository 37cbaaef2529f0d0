# -*- test-case-name: tests.test_store -*-
"""
The embedded message store: one SQLite file, through Python's C{sqlite3}.

The file is in write-ahead-log mode with C{synchronous=FULL}: a transaction
is on disk (the log C{fsync}'d) when its C{COMMIT} returns, and a process
killed at any moment leaves the file consistent.  It is opened with
C{locking_mode=EXCLUSIVE}: a second server cannot use the same file.  The
file's C{application_id} marks it as an amqptx store, and its
C{user_version} is the format's version (L{SCHEMA_VERSION}): a newer format
is refused at start rather than misread.

Writes never block the reactor: they are done by one writer thread (its own
one-thread pool), one transaction at a time, with I{group commit}: the
changes asked while a transaction is being committed all go into the next
transaction, which commits them with one C{fsync}.  The more changes arrive
during a commit, the larger the next batch: under load, many sends share an
C{fsync}, and alone, a change is committed at once.  Changes are written in
the order they were asked.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ._store import IMessageStore, Recovery, StoredMessage, StoreError

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "Writer"]

_log = Logger()
_T = TypeVar("_T")

SCHEMA_VERSION = 1
"""
The version of the store's format this version of amqptx writes (and the
newest it reads)."""

_APPLICATION_ID = 0x616D7178
"""
The SQLite C{application_id} of an amqptx store (C{"amqx"})."""

_SCHEMA = (
    "CREATE TABLE queues (name TEXT NOT NULL UNIQUE)",
    "CREATE TABLE messages ("
    " id INTEGER PRIMARY KEY,"
    " queue TEXT NOT NULL,"
    " position INTEGER NOT NULL,"
    " expires REAL,"
    " delivered INTEGER NOT NULL DEFAULT 0,"
    " data BLOB NOT NULL)",
)

_DECLARE = "INSERT OR IGNORE INTO queues (name) VALUES (?)"
_ADD = (
    "INSERT INTO messages (id, queue, position, expires, data) VALUES (?, ?, ?, ?, ?)"
)
_DELIVERED = "UPDATE messages SET delivered = 1 WHERE id = ?"
_REQUEUE = (
    "UPDATE messages SET queue = ?, position = ?, expires = ?, delivered = 0,"
    " data = ? WHERE id = ?"
)
_REMOVE = "DELETE FROM messages WHERE id = ?"

_Change = tuple[str, tuple[Any, ...]]
"""
One change: an SQL statement and its parameters."""

_WHY = {
    "SQLITE_BUSY": "it is in use by another process",
    "SQLITE_LOCKED": "it is in use by another process",
    "SQLITE_NOTADB": "it is not a database (corrupt, or another kind of file)",
    "SQLITE_CORRUPT": "it is corrupt",
    "SQLITE_FULL": "the disk (or the store's size limit) is full",
    "SQLITE_CANTOPEN": "it cannot be opened",
    "SQLITE_READONLY": "it is read-only",
    "SQLITE_IOERR": "an I/O error occurred",
}


def _why(error: sqlite3.Error) -> str:
    """
    @return: an explanation of a SQLite error, in a few words and SQLite's.
    """
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str):
        for prefix, why in _WHY.items():
            if name.startswith(prefix):
                return f"{why} ({error})"
    return str(error)


class Writer(Protocol):
    """
    Runs the store's blocking work, one piece at a time, in order, off the
    reactor thread.
    """

    def __call__(self, work: Callable[[], _T]) -> Deferred[_T]:
        """
        Run a piece of work.

        @param work: the work, called with no arguments.
        @return: a Deferred that fires with its result in the reactor
            thread, or fails with its exception.
        """

    def stop(self) -> None:
        """
        Stop once the work in progress is done (no more work will be given).
        """


class _ThreadWriter:
    """
    A L{Writer} that is one thread of its own, started when the reactor
    runs (never before: a thread does not survive C{twistd}'s C{fork}).
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="amqptx-store")
        self._starting = False

    def __call__(self, work: Callable[[], _T]) -> Deferred[_T]:
        if not self._starting:
            self._starting = True
            # Work given before then waits in the pool's queue.
            self._reactor.callWhenRunning(self._start)
        return deferToThreadPool(self._reactor, self._pool, work)

    def _start(self) -> None:
        if self._starting:
            self._pool.start()

    def stop(self) -> None:
        self._starting = False
        if self._pool.started:
            self._pool.stop()


def _defaultReactor() -> Any:
    from twisted.internet import reactor

    return reactor


@implementer(IMessageStore)
class SQLiteStore:
    """
    An L{IMessageStore} in a SQLite file, written by one thread with group
    commit (see the module's description).

    The counters tell how well group commit works: L{changes} / L{commits}
    is the average number of changes per transaction (each transaction is
    one C{fsync}).

    @ivar path: the file.
    @ivar commits: how many transactions were committed.
    @ivar changes: how many changes they committed.
    @ivar largestBatch: the most changes committed by one transaction.
    @ivar failures: how many transactions failed (their changes were not
        written, and failed with L{StoreError}).
    """

    def __init__(
        self,
        path: str,
        reactor: Any = None,
        writer: Writer | None = None,
        maxBatch: int | None = None,
        maxBytes: int | None = None,
    ) -> None:
        """
        Prepare a store; nothing is read or written before L{recover}.

        @param path: the file (made absolute now: a daemon changes its
            directory); created by L{recover} if it does not exist.
        @param reactor: the reactor (the global one by default), which runs
            the writer thread and gets the results of its work.
        @param writer: what runs the transactions; by default a thread of
            the store's own.
        @param maxBatch: the most changes one transaction commits, or
            L{None} for no limit (C{1} disables group commit).
        @param maxBytes: the largest the file may grow, or L{None} for no
            limit (beyond, changes fail as they would on a full disk).
        @raise ValueError: for a C{maxBatch} or C{maxBytes} less than 1.
        """
        for name, value in (("maxBatch", maxBatch), ("maxBytes", maxBytes)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")
        self.path = os.path.abspath(path)
        if writer is None:
            writer = _ThreadWriter(_defaultReactor() if reactor is None else reactor)
        self._writer = writer
        self._maxBatch = maxBatch
        self._maxBytes = maxBytes
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[_Change, Deferred[None]]] = []
        self._writing = False
        self._closed = False
        self._closing: list[Deferred[None]] | None = None
        self.commits = 0
        self.changes = 0
        self.largestBatch = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    def _error(self, why: str) -> StoreError:
        return StoreError(f"message store {self.path}: {why}")

    # --- start --------------------------------------------------------------

    def recover(self) -> Recovery:
        """
        Open the file (creating it, and its tables, if it does not exist or
        is empty), check its format and integrity, and read it.

        @return: what it holds.
        @raise StoreError: see L{IMessageStore.recover}.
        """
        if self._db is not None:
            raise RuntimeError("recover() is called once")
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except sqlite3.Error as e:
            raise self._error(_why(e)) from None
        try:
            self._prepare(db)
            recovery = self._read(db)
        except sqlite3.Error as e:
            db.close()
            raise self._error(_why(e)) from None
        except StoreError:
            db.close()
            raise
        self._db = db
        return recovery

    def _prepare(self, db: sqlite3.Connection) -> None:
        """
        Set the connection up; create the tables of a new store, or check
        those of an existing one.
        """
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise self._error(f"cannot use a write-ahead log (journal mode {mode})")
        db.execute("PRAGMA synchronous = FULL")
        # Takes the exclusive lock now, and keeps it.
        db.execute("BEGIN IMMEDIATE")
        try:
            self._check(db)
            db.execute("COMMIT")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
        if self._maxBytes is not None:
            (pageSize,) = db.execute("PRAGMA page_size").fetchone()
            db.execute(f"PRAGMA max_page_count = {max(1, self._maxBytes // pageSize)}")

    def _check(self, db: sqlite3.Connection) -> None:
        (application,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        (tables,) = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if application == 0 and version == 0 and tables == 0:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        if application != _APPLICATION_ID:
            raise self._error("it is not an amqptx message store")
        if version > SCHEMA_VERSION:
            raise self._error(
                f"it is in format {version}, written by a newer amqptx (this "
                f"version reads format {SCHEMA_VERSION} and older)"
            )
        if version < 1:
            raise self._error(f"unknown format {version}")
        problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            details = "; ".join(problems).replace("\n", "; ")
            raise self._error(f"it is corrupt ({details})")

    @staticmethod
    def _read(db: sqlite3.Connection) -> Recovery:
        queues = tuple(
            name for (name,) in db.execute("SELECT name FROM queues ORDER BY rowid")
        )
        messages = tuple(
            StoredMessage(key, queue, position, bytes(data), expires, bool(delivered))
            for key, queue, position, data, expires, delivered in db.execute(
                "SELECT id, queue, position, data, expires, delivered"
                " FROM messages ORDER BY position"
            )
        )
        return Recovery(queues, messages)

    # --- changes ------------------------------------------------------------

    def declare(self, queue: str) -> Deferred[None]:
        """
        See L{IMessageStore.declare}.
        """
        return self._change(_DECLARE, (queue,))

    def add(
        self, key: int, queue: str, position: int, data: bytes, expires: float | None
    ) -> Deferred[None]:
        """
        See L{IMessageStore.add}.
        """
        return self._change(_ADD, (key, queue, position, expires, data))

    def delivered(self, key: int) -> Deferred[None]:
        """
        See L{IMessageStore.delivered}.
        """
        return self._change(_DELIVERED, (key,))

    def requeue(
        self,
        key: int,
        queue: str,
        position: int,
        expires: float | None,
        data: bytes,
    ) -> Deferred[None]:
        """
        See L{IMessageStore.requeue}.
        """
        return self._change(_REQUEUE, (queue, position, expires, data, key))

    def remove(self, key: int) -> Deferred[None]:
        """
        See L{IMessageStore.remove}.
        """
        return self._change(_REMOVE, (key,))

    def close(self) -> Deferred[None]:
        """
        See L{IMessageStore.close}.
        """
        closed: Deferred[None] = Deferred()
        if self._closing is None:
            self._closing = [closed]
            self._closed = True
            self._next()
        elif self._db is None and not self._writing:
            closed.callback(None)
        else:
            self._closing.append(closed)
        return closed

    def _change(self, sql: str, parameters: tuple[Any, ...]) -> Deferred[None]:
        """
        Ask for a change: it goes into the next transaction.
        """
        if self._closed or self._db is None:
            return fail(self._error("the store is closed"))
        done: Deferred[None] = Deferred()
        self._pending.append(((sql, parameters), done))
        if not self._writing:
            self._next()
        return done

    def _next(self) -> None:
        """
        Start the next transaction with the changes waiting; once none
        waits and the store is closing, close it.
        """
        if self._writing:
            return
        pending = self._pending
        if not pending:
            if self._closed:
                self._finish()
            return
        limit = self._maxBatch
        if limit is None or len(pending) <= limit:
            batch, self._pending = pending, []
        else:
            batch, self._pending = pending[:limit], pending[limit:]
        self._writing = True
        changes = [change for change, _ in batch]
        self._writer(lambda: self._write(changes)).addBoth(self._written, batch)

    def _write(self, changes: Sequence[_Change]) -> None:
        """
        Commit changes in one transaction (in the writer thread).

        @raise StoreError: when they could not be (none was written).
        """
        db = self._db
        assert db is not None
        try:
            db.execute("BEGIN IMMEDIATE")
            for sql, parameters in changes:
                db.execute(sql, parameters)
            db.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise self._error(f"could not write: {_why(e)}") from None

    def _written(
        self, result: None | Failure, batch: list[tuple[_Change, Deferred[None]]]
    ) -> None:
        """
        A transaction ended: tell those who asked for its changes, and start
        the next.
        """
        if isinstance(result, Failure):
            self.failures += 1
            error = result.value
            if not isinstance(error, StoreError):
                error = self._error(f"could not write: {error}")
            _log.error(
                "{count} change(s) to the message store were not written: {error}",
                count=len(batch),
                error=str(error),
            )
            for _, done in batch:
                done.errback(Failure(error))
        else:
            self.commits += 1
            self.changes += len(batch)
            self.largestBatch = max(self.largestBatch, len(batch))
            for _, done in batch:
                done.callback(None)
        # Changes asked by the callbacks above wait for this.
        self._writing = False
        self._next()

    def _finish(self) -> None:
        """
        Close the file and stop the writer (nothing is being written).
        """
        self._writer.stop()
        db, self._db = self._db, None
        if db is not None:
            db.close()
        closing, self._closing = self._closing or [], []
        for closed in closing:
            closed.callback(None)
