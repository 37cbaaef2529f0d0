"""
One timer per clock for the deadlines of every connection on it.

proton asks to be ticked by a deadline (heartbeats to send, an idle peer to
drop), and the deadline moves later with every frame that comes or goes.  A
C{DelayedCall} per connection, cancelled and made again each time it moves,
costs some 700 bytes per connection (a server holds thousands, mostly idle)
and a few microseconds per batch of frames.  Here each connection keeps only
its deadline, a float; a clock's L{Alarms} keeps a heap of (deadline,
connection) entries and one C{DelayedCall}, for the earliest.

A deadline that moves later is not queued again: its earlier entry comes due
first, and is queued again then, at the connection's current deadline.  One
that moves earlier is queued at once.  So every connection with a deadline
has an entry at or before it, and entries that no longer match are dropped as
they come due.  When no connection has a deadline, the heap is emptied and
the timer cancelled: a clock with no live connections has nothing pending.
Entries of connections that no longer have a deadline (closed ones, say)
are also dropped once they are more than half of the heap, as Twisted
does with cancelled calls, so that a server with many short connections
does not keep the closed ones until their old deadlines.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from itertools import count
from typing import Protocol
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["Alarmed", "Alarms"]


class Alarmed(Protocol):
    """
    What L{Alarms} keeps the deadline of (an L{amqptx.AMQPProtocol}).
    """

    _deadline: float
    """
    When to be woken, in the clock's seconds; C{0} for never.  Only
    L{Alarms.arm} sets it.
    """

    def _onAlarm(self) -> None:
        """
        The deadline came (it is C{0} again by then).
        """


class Alarms:
    """
    The deadlines of the connections on one clock, and one timer for the
    earliest.
    """

    _byClock: WeakKeyDictionary[IReactorTime, Alarms] = WeakKeyDictionary()

    def __init__(self, clock: IReactorTime) -> None:
        """
        @param clock: the clock.
        """
        self._clock = clock
        self._heap: list[tuple[float, int, Alarmed]] = []
        self._order = count()
        self._live = 0
        self._disarmed = 0
        self._call: IDelayedCall | None = None

    @classmethod
    def of(cls, clock: IReactorTime) -> Alarms:
        """
        @param clock: a clock.
        @return: the clock's alarms, made on first use.
        """
        alarms = cls._byClock.get(clock)
        if alarms is None:
            alarms = cls._byClock[clock] = cls(clock)
        return alarms

    @property
    def pending(self) -> int:
        """
        How many connections have a deadline.
        """
        return self._live

    def arm(self, alarmed: Alarmed, deadline: float) -> None:
        """
        Set a connection's deadline.

        @param alarmed: the connection.
        @param deadline: when to wake it, in the clock's seconds, or C{0}
            for never.
        """
        current = alarmed._deadline
        if deadline == current:
            return
        alarmed._deadline = deadline
        if not deadline:
            self._live -= 1
            if not self._live:
                self._stop()
                return
            self._disarmed += 1
            if self._disarmed > 50 and self._disarmed > len(self._heap) // 2:
                self._compact()
            return
        if not current:
            self._live += 1
        elif deadline > current:
            # Its entry at the earlier deadline comes first.
            return
        self._push(deadline, alarmed)

    def _push(self, deadline: float, alarmed: Alarmed) -> None:
        heappush(self._heap, (deadline, next(self._order), alarmed))
        call = self._call
        delay = max(0.0, deadline - self._clock.seconds())
        if call is None:
            self._call = self._clock.callLater(delay, self._fire)
        elif deadline < call.getTime():
            call.reset(delay)

    def _compact(self) -> None:
        """
        Drop the entries of connections without a deadline.
        """
        self._disarmed = 0
        self._heap = [entry for entry in self._heap if entry[2]._deadline]
        heapify(self._heap)

    def _stop(self) -> None:
        self._disarmed = 0
        self._heap.clear()
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _fire(self) -> None:
        self._call = None
        heap = self._heap
        now = self._clock.seconds()
        due: list[Alarmed] = []
        while heap and heap[0][0] <= now:
            deadline, _, alarmed = heappop(heap)
            current = alarmed._deadline
            if current == deadline:
                alarmed._deadline = 0
                self._live -= 1
                due.append(alarmed)
            elif current > deadline:
                # It moved later: its turn comes then.
                heappush(heap, (current, next(self._order), alarmed))
            # Else it has no deadline, or an earlier entry of its own.
        if heap and self._live:
            self._call = self._clock.callLater(
                max(0.0, heap[0][0] - self._clock.seconds()), self._fire
            )
        else:
            heap.clear()
        for alarmed in due:
            alarmed._onAlarm()
