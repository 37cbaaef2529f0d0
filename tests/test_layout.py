"""
Tests for L{amqptx._layout}.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Sequence

from twisted.internet import tcp
from twisted.trial.unittest import SynchronousTestCase

from amqptx._layout import _TRANSPORT_NAMES, shareNames

_LATE = ("late", "later")


def _lateGrowth(names: Sequence[str], prime: bool) -> float:
    """
    Make a burst of instances of a new class, then have each set C{names}.

    @param names: the names set late.
    @param prime: whether to share the names first.
    @return: the bytes allocated per instance by setting them.
    """

    class Transport:
        def __init__(self) -> None:
            self.reactor = self.socket = self.protocol = None

    if prime:
        shareNames(Transport, names)
    burst = [Transport() for _ in range(100)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for instance in burst:
            for name in names:
                setattr(instance, name, 1)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return grown / len(burst)


class ShareNamesTests(SynchronousTestCase):
    """
    L{shareNames} keeps names set late in the instances' shared layout.
    """

    def test_sharedNamesCostNothing(self) -> None:
        """
        Once shared, names that a burst of instances sets late take no new
        memory.
        """
        self.assertEqual(_lateGrowth(_LATE, prime=True), 0)

    def test_unsharedNamesCostADictionary(self) -> None:
        """
        Without it, on CPython 3.11, each instance of the burst gets a
        dictionary of its own: what L{shareNames} is for.
        """
        if sys.version_info[:2] != (3, 11):
            raise self.skipTest("CPython 3.11's layout of instances")
        self.assertGreater(_lateGrowth(_LATE, prime=False), 200)

    def test_theInstanceIsBare(self) -> None:
        """
        The instance is made without running C{__init__}: nothing of the
        class's work (a socket, a registration) happens.
        """
        made = []

        class Counted:
            def __init__(self) -> None:
                made.append(self)

        shareNames(Counted, _LATE)
        self.assertEqual(made, [])

    def test_transportNames(self) -> None:
        """
        The transport's names are attributes of Twisted's TCP transports
        (class defaults that instances later set), so sharing them changes
        no behaviour.
        """
        for name in _TRANSPORT_NAMES:
            self.assertTrue(hasattr(tcp.Server, name), name)
