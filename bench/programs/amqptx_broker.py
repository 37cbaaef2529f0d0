"""
The benchmark's amqptx server for workloads A and E: the broker of
C{twistd amqp-listen} (L{amqptx.broker.Broker}, in memory) on an
L{amqptx.AMQPServerEndpoint}, in one process, with the command line and
output of the other server programs.

Clients send to a queue; the broker grants each sending link its own credit
window (100) and accepts each message once it is on its queue, where it
stays (no consumer).  The measurement window opens when a client's
connection is open, and closes once C{--messages} messages are on the
broker's queues (checked after each batch the broker handles).  C{--window}
is accepted for the same command line, but the broker's window is its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory

from amqptx import AMQPServerEndpoint
from amqptx.broker import Broker, BrokerProtocol
from bench.programs._common import Window, emit, serverArguments
from bench.programs._twisted import listenUntilKilled, runUntilKilled

__all__ = ["CountingProtocol", "main"]


class _Count:
    def __init__(self, broker: Broker, expected: int) -> None:
        self.broker = broker
        self.expected = expected
        self.window = Window()
        self.reported = False

    def check(self) -> None:
        if self.reported or not self.expected:
            return
        arrived = sum(queue.enqueued for queue in self.broker.queues.values())
        if arrived >= self.expected:
            self.reported = True
            self.window.stop()
            emit("result", received=arrived, **self.window.fields())


class CountingProtocol(BrokerProtocol):
    """
    A broker connection that reports once the broker holds the messages the
    benchmark expects.
    """

    def __init__(self, broker: Broker, count: _Count) -> None:
        """
        @param broker: the broker.
        @param count: what the connections share.
        """
        super().__init__(broker)
        self._count = count

    def connectionOpened(self) -> None:
        """
        Open the measurement window.
        """
        super().connectionOpened()
        self._count.window.start()

    def flushed(self) -> None:
        """
        After each batch: report once every message is in.
        """
        super().flushed()
        self._count.check()


class _Factory(Factory):
    def __init__(self, broker: Broker, count: _Count) -> None:
        self._broker = broker
        self._count = count

    def buildProtocol(self, addr: IAddress | None) -> CountingProtocol:
        protocol = CountingProtocol(self._broker, self._count)
        protocol.factory = self
        return protocol


def _serve(reactor: Any, argv: Sequence[str] | None) -> Deferred[None]:
    options = serverArguments("python -m bench.programs.amqptx_broker", argv)
    broker = Broker(clock=reactor)
    count = _Count(broker, options.messages)
    endpoint = AMQPServerEndpoint(reactor, options.port, interface=options.host)

    return listenUntilKilled(endpoint, _Factory(broker, count))


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run the server until killed.

    @param argv: the arguments, or L{None} for C{sys.argv}.
    """
    runUntilKilled(_serve, argv)


if __name__ == "__main__":
    main()
