# -*- test-case-name: tests.test_layout -*-
"""
Keeping compact the objects a server makes by the thousand.

CPython 3.11 keeps the attribute names of a class's instances in one table
that all of them share, each instance holding only its values.  A name joins
that table only while the class has few instances: every new instance lets
the table take fewer new names, none after some thirty instances.  An
instance that then sets a name the table lacks gets a dictionary of its own
(about 800 bytes for a Twisted TCP transport).

Twisted's transports set some attributes only later in their life
(C{dataBuffer} and C{offset} at their first write, others when they close):
a server that accepts a burst of connections before the first of them has
written gives every connection of the burst, and all later ones, that
dictionary.  Making one instance with those names, before the first
connection, puts them into the shared table while it still takes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from twisted.internet import tcp

__all__ = ["shareNames", "shareTransportNames"]

# What Twisted's TCP transports set after their __init__.
_TRANSPORT_NAMES = (
    "dataBuffer",
    "offset",
    "producer",
    "streamingProducer",
    "producerPaused",
    "disconnecting",
    "disconnected",
    "_writeDisconnecting",
    "_writeDisconnected",
)


def shareNames(cls: type[object], names: Iterable[str]) -> None:
    """
    Put attribute names into the table shared by the instances of C{cls}, by
    making one instance (without calling its C{__init__}) that sets them.

    To be called before the class has many instances; harmless otherwise,
    and on Pythons that share names differently.

    @param cls: a class without C{__slots__} whose instances are many.
    @param names: names its instances set only later in their life.
    """
    instance = cls.__new__(cls)
    for name in names:
        object.__setattr__(instance, name, None)


@cache
def shareTransportNames() -> None:
    """
    Share the names Twisted's server-side TCP transports set late (see the
    module's docstring).  Once per process: each call makes an instance, and
    instances are what closes the shared table.
    """
    shareNames(tcp.Server, _TRANSPORT_NAMES)
