"""
Tests for L{amqptx._alarms}: one timer per clock for many deadlines.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from amqptx._alarms import Alarms


class _Sleeper:
    """
    Something with a deadline, that records when it is woken and may set a
    new deadline then.
    """

    def __init__(
        self, alarms: Alarms, clock: Clock, name: str, log: list[tuple[str, float]]
    ) -> None:
        self._deadline = 0.0
        self._alarms = alarms
        self._clock = clock
        self.name = name
        self.log = log
        self.then: float | None = None

    def _onAlarm(self) -> None:
        self.log.append((self.name, self._clock.seconds()))
        if self.then is not None:
            then, self.then = self.then, None
            self._alarms.arm(self, then)


class AlarmsTests(SynchronousTestCase):
    """
    L{Alarms} wakes each connection at its deadline, with one delayed call
    on the clock, and leaves nothing pending once no deadline is left.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.alarms = Alarms(self.clock)
        self.log: list[tuple[str, float]] = []

    def sleeper(self, name: str) -> _Sleeper:
        return _Sleeper(self.alarms, self.clock, name, self.log)

    def test_ofClock(self) -> None:
        """
        L{Alarms.of} gives one L{Alarms} per clock.
        """
        other = Clock()
        self.assertIs(Alarms.of(self.clock), Alarms.of(self.clock))
        self.assertIsNot(Alarms.of(self.clock), Alarms.of(other))

    def test_wakesInOrder(self) -> None:
        """
        Each is woken at its own deadline, earliest first, through a single
        delayed call.
        """
        a, b, c = self.sleeper("a"), self.sleeper("b"), self.sleeper("c")
        self.alarms.arm(b, 2.0)
        self.alarms.arm(a, 1.0)
        self.alarms.arm(c, 3.0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.alarms.pending, 3)
        self.clock.pump([1.0, 1.0, 1.0])
        self.assertEqual(self.log, [("a", 1.0), ("b", 2.0), ("c", 3.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.alarms.pending, 0)
        self.assertEqual(a._deadline, 0)

    def test_movesLater(self) -> None:
        """
        A deadline moved later wakes at the later time, not before.
        """
        a = self.sleeper("a")
        self.alarms.arm(a, 1.0)
        self.alarms.arm(a, 5.0)
        self.clock.advance(1.0)
        self.assertEqual(self.log, [])
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 5.0)
        self.clock.advance(4.0)
        self.assertEqual(self.log, [("a", 5.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_movesEarlier(self) -> None:
        """
        A deadline moved earlier wakes at the earlier time, once.
        """
        a = self.sleeper("a")
        self.alarms.arm(a, 5.0)
        self.alarms.arm(a, 2.0)
        self.clock.pump([1.0] * 6)
        self.assertEqual(self.log, [("a", 2.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_disarm(self) -> None:
        """
        A deadline of C{0} is never woken; with none left, nothing is pending
        on the clock.
        """
        a, b = self.sleeper("a"), self.sleeper("b")
        self.alarms.arm(a, 1.0)
        self.alarms.arm(b, 2.0)
        self.alarms.arm(a, 0)
        self.clock.advance(1.0)
        self.assertEqual(self.log, [])
        self.alarms.arm(b, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5.0)
        self.assertEqual(self.log, [])

    def test_rearmWhenWoken(self) -> None:
        """
        What is woken may set its next deadline then.
        """
        a = self.sleeper("a")
        a.then = 4.0
        self.alarms.arm(a, 1.0)
        self.clock.pump([1.0] * 5)
        self.assertEqual(self.log, [("a", 1.0), ("a", 4.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_sameDeadline(self) -> None:
        """
        Arming the deadline a connection already has changes nothing.
        """
        a = self.sleeper("a")
        self.alarms.arm(a, 1.0)
        self.alarms.arm(a, 1.0)
        self.assertEqual(self.alarms.pending, 1)
        self.clock.advance(1.0)
        self.assertEqual(self.log, [("a", 1.0)])

    def test_pastDeadline(self) -> None:
        """
        A deadline already past wakes on the clock's next turn.
        """
        self.clock.advance(10.0)
        a = self.sleeper("a")
        self.alarms.arm(a, 3.0)
        self.clock.advance(0)
        self.assertEqual(self.log, [("a", 10.0)])

    def test_closedAreDropped(self) -> None:
        """
        The entries of many connections that no longer have a deadline are
        dropped long before their old deadlines; the others still wake.
        """
        kept = self.sleeper("kept")
        self.alarms.arm(kept, 100.0)
        closed = [self.sleeper(f"closed{i}") for i in range(200)]
        for each in closed:
            self.alarms.arm(each, 50.0)
        for each in closed:
            self.alarms.arm(each, 0)
        self.assertLess(len(self.alarms._heap), 100)
        self.clock.advance(100.0)
        self.assertEqual(self.log, [("kept", 100.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
