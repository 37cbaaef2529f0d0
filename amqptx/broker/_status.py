# -*- test-case-name: tests.test_status -*-
"""
What the status page of C{amqp-listen} shows: a snapshot of a L{Broker}
(its connections and their links, its queues and topics, totals) as plain
data ready for JSON, and the message rates measured on the broker's clock.

Each node counts the messages it takes in and hands out
(L{_Node.enqueued <amqptx.broker._nodes._Node.enqueued>} and
L{_Node.delivered <amqptx.broker._nodes._Node.delivered>}); L{StatusSampler}
reads those counters every second and keeps the last minute of rates, per
node and for the whole broker.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ._nodes import Queue, Topic

if TYPE_CHECKING:
    from ._broker import Broker, BrokerProtocol
    from ._nodes import _Node

__all__ = ["StatusSampler", "snapshot"]

_log = Logger()

INTERVAL = 1.0
"""
Seconds between two samples of the counters."""

HISTORY = 60
"""
How many rates each history keeps (one per sample: the last minute)."""


class _History:
    """
    The recent rates of one node (or of the whole broker): messages per
    second in and out, oldest first.

    @ivar enqueued: the node's C{enqueued} counter at the last sample.
    @ivar delivered: the node's C{delivered} counter at the last sample.
    @ivar rateIn: messages per second taken in, one per sample.
    @ivar rateOut: messages per second delivered, one per sample.
    """

    __slots__ = ("delivered", "enqueued", "rateIn", "rateOut")

    def __init__(self, length: int, enqueued: int = 0, delivered: int = 0) -> None:
        self.enqueued = enqueued
        self.delivered = delivered
        self.rateIn: deque[float] = deque(maxlen=length)
        self.rateOut: deque[float] = deque(maxlen=length)

    def add(self, rateIn: float, rateOut: float) -> None:
        """
        Keep the rates of one more sample (forgetting the oldest beyond the
        length).
        """
        self.rateIn.append(round(rateIn, 3))
        self.rateOut.append(round(rateOut, 3))

    def asDict(self) -> dict[str, Any]:
        """
        @return: the last rates and the histories, for JSON.
        """
        return {
            "inRate": self.rateIn[-1] if self.rateIn else None,
            "outRate": self.rateOut[-1] if self.rateOut else None,
            "inHistory": list(self.rateIn),
            "outHistory": list(self.rateOut),
        }


_NO_RATES: dict[str, Any] = {
    "inRate": None,
    "outRate": None,
    "inHistory": [],
    "outHistory": [],
}


class StatusSampler(Service):
    """
    Samples the message counters of a broker's nodes on the broker's clock,
    every C{interval} seconds while the service runs, and keeps the last
    C{length} rates of each node and of the whole broker.

    A node's rates over an interval are the growth of its counters divided
    by the time elapsed (measured, not assumed: a late sample still gives
    true rates).  A node created between two samples counts from zero; the
    messages of a node deleted between two samples since the last one are
    not counted.

    @ivar broker: the broker sampled.
    @ivar interval: seconds between samples.
    @ivar length: how many rates each history keeps.
    @ivar startedAt: the time of the first sample, on the broker's clock, or
        L{None} before it.
    @ivar sampledAt: the time of the last sample, or L{None} before the
        first.
    @ivar enqueued: how many messages the broker's nodes took in, counted up
        to the last sample (nodes deleted since included).
    @ivar delivered: how many messages they delivered, the same way.
    """

    def __init__(
        self, broker: Broker, interval: float = INTERVAL, length: int = HISTORY
    ) -> None:
        """
        @param broker: the broker to sample.
        @param interval: seconds between samples.
        @param length: how many rates each history keeps.
        """
        self.broker = broker
        self.interval = interval
        self.length = length
        self.startedAt: float | None = None
        self.sampledAt: float | None = None
        self.enqueued = 0
        self.delivered = 0
        self.total = _History(length)
        self._nodes: dict[_Node, _History] = {}
        self._call: LoopingCall | None = None

    def startService(self) -> None:
        """
        Take a first sample now, then one every C{interval} seconds.
        """
        super().startService()  # type: ignore[no-untyped-call]
        call = self._call = LoopingCall(self.sample)
        call.clock = self.broker.clock
        call.start(self.interval, now=True).addErrback(
            lambda failure: _log.failure("Sampling the broker failed", failure)
        )

    def stopService(self) -> None:
        """
        Stop sampling (the rates measured so far stay).
        """
        super().stopService()  # type: ignore[no-untyped-call]
        call, self._call = self._call, None
        if call is not None and call.running:
            call.stop()

    def sample(self) -> None:
        """
        Read every node's counters now: the first sample only records them;
        each later one adds a rate to every history.
        """
        broker = self.broker
        now = broker.clock.seconds()
        previous = self.sampledAt
        elapsed = None if previous is None else now - previous
        if elapsed is not None and elapsed <= 0:
            return
        self.sampledAt = now
        if self.startedAt is None:
            self.startedAt = now
        length = self.length
        old = self._nodes
        nodes: dict[_Node, _History] = {}
        totalIn = totalOut = 0
        for node in _nodes(broker):
            history = old.pop(node, None)
            enqueued, delivered = node.enqueued, node.delivered
            if history is None:
                history = _History(length)
                if elapsed is None:
                    # Already there at the first sample: counted before.
                    history.enqueued, history.delivered = enqueued, delivered
            growthIn = enqueued - history.enqueued
            growthOut = delivered - history.delivered
            history.enqueued, history.delivered = enqueued, delivered
            totalIn += growthIn
            totalOut += growthOut
            if elapsed is not None:
                history.add(growthIn / elapsed, growthOut / elapsed)
            nodes[node] = history
        self._nodes = nodes
        if elapsed is None:
            return
        self.enqueued += totalIn
        self.delivered += totalOut
        self.total.add(totalIn / elapsed, totalOut / elapsed)

    def rates(self, node: _Node) -> dict[str, Any]:
        """
        @param node: a queue or topic of the broker.
        @return: its rates for JSON: C{inRate} and C{outRate} (messages per
            second over the last interval, or L{None} before there is one),
            C{inHistory} and C{outHistory} (the last rates, oldest first).
        """
        history = self._nodes.get(node)
        if history is None:
            return dict(_NO_RATES)
        return history.asDict()


def _nodes(broker: Broker) -> list[Queue | Topic]:
    """
    @return: the broker's queues and topics, queues first, each sorted by
        address.
    """
    queues = sorted(broker.queues.values(), key=lambda q: q.name)
    topics = sorted(broker.topics.values(), key=lambda t: t.name)
    return [*queues, *topics]


def _peer(protocol: BrokerProtocol) -> str | None:
    """
    @return: the client's address, C{HOST:PORT} (C{[HOST]:PORT} for IPv6),
        or L{None} without a transport.
    """
    transport = protocol.transport
    if transport is None:
        return None
    address = transport.getPeer()
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    return str(address)


def _user(protocol: BrokerProtocol) -> str | None:
    """
    @return: the authenticated user name, or L{None} for an anonymous
        client (or one not authenticated yet).
    """
    avatarId = protocol.avatarId
    if isinstance(avatarId, bytes):
        return avatarId.decode("utf-8", "replace")
    return None


def _containerId(protocol: BrokerProtocol) -> str | None:
    """
    @return: the client's container id, once its Open arrived.
    """
    if protocol.engine is None:
        return None
    try:
        return protocol.connection.remote_container or None
    except UnicodeDecodeError:
        return None


def _linkName(link: Any) -> str | None:
    """
    @return: a link's name, or L{None} when it is not UTF-8.
    """
    try:
        return str(link.name)
    except UnicodeDecodeError:
        return None


def _links(protocol: BrokerProtocol) -> list[dict[str, Any]]:
    """
    @return: the connection's links, from the client's side: C{receiver}
        for one the client receives on, C{sender} for one it sends on.
    """
    links: list[dict[str, Any]] = []
    for consumer in list(protocol._consumers.values()):
        links.append(
            {
                "name": _linkName(consumer.link),
                "role": "receiver",
                "address": consumer.queue.name,
                "credit": consumer.link.credit,
                "unsettled": len(consumer.unsettled),
            }
        )
    for producer in list(protocol._producers.values()):
        node = producer.node
        links.append(
            {
                "name": _linkName(producer.link),
                "role": "sender",
                "address": None if node is None else node.name,
                "credit": producer.link.credit,
                "unsettled": len(producer.held) + producer.committing,
            }
        )
    return links


def _connection(protocol: BrokerProtocol) -> dict[str, Any]:
    """
    @return: what the page shows of a connection.
    """
    return {
        "peer": _peer(protocol),
        "user": _user(protocol),
        "containerId": _containerId(protocol),
        "opened": protocol.opened,
        "tls": protocol.settings.tls,
        "links": _links(protocol),
    }


def _node(node: Queue | Topic, sampler: StatusSampler | None) -> dict[str, Any]:
    """
    @return: what the page shows of a queue or topic.
    """
    if isinstance(node, Queue):
        kind, depth = "queue", node.depth
        durable, temporary = node.durable, node.temporary
    else:
        kind = "topic"
        depth = sum(s.depth for s in node.subscriptions)
        durable = temporary = False
    result: dict[str, Any] = {
        "address": node.name,
        "kind": kind,
        "depth": depth,
        "consumers": node.consumers,
        "producers": node.producers,
        "durable": durable,
        "temporary": temporary,
        "enqueued": node.enqueued,
        "delivered": node.delivered,
    }
    result.update(_NO_RATES if sampler is None else sampler.rates(node))
    return result


def snapshot(broker: Broker, sampler: StatusSampler | None = None) -> dict[str, Any]:
    """
    Describe a broker now, as plain data (dicts, lists, strings, numbers,
    booleans and L{None}) ready for JSON.

    @param broker: the broker.
    @param sampler: the sampler of the broker's rates, or L{None} (then
        every rate is L{None} and every history empty).
    @return: C{{"time", "startedAt", "interval", "historyLength", "totals",
        "queues", "connections"}}; see the C{amqp-listen} documentation for each
        field.
    """
    nodes = [_node(node, sampler) for node in _nodes(broker)]
    connections = sorted(
        (_connection(protocol) for protocol in list(broker.connections)),
        key=lambda c: (c["peer"] or "", c["containerId"] or ""),
    )
    totals: dict[str, Any] = {
        "connections": len(connections),
        "links": sum(len(c["links"]) for c in connections),
        "queues": sum(1 for n in nodes if n["kind"] == "queue"),
        "topics": sum(1 for n in nodes if n["kind"] == "topic"),
        "depth": sum(n["depth"] for n in nodes),
        "consumers": sum(n["consumers"] for n in nodes),
        "producers": sum(n["producers"] for n in nodes),
        "enqueued": None if sampler is None else sampler.enqueued,
        "delivered": None if sampler is None else sampler.delivered,
    }
    totals.update(_NO_RATES if sampler is None else sampler.total.asDict())
    return {
        "time": broker.clock.seconds(),
        "startedAt": None if sampler is None else sampler.startedAt,
        "interval": None if sampler is None else sampler.interval,
        "historyLength": None if sampler is None else sampler.length,
        "totals": totals,
        "queues": nodes,
        "connections": connections,
    }
