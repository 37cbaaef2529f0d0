"""
The brokers of workloads B and D: C{twistd amqp-listen}, and a private
RabbitMQ node (through the integration tests' L{RabbitMQNode} harness).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench._framework import Run
from bench._process import BenchError

if TYPE_CHECKING:
    from tests.integration._rabbitmq import RabbitMQNode

__all__ = [
    "SharedRabbitMQ",
    "amqpListen",
    "freshRabbitMQ",
    "protonBroker",
    "rabbitMQUnavailable",
]


def amqpListen(r: Run) -> tuple[str, int]:
    """
    Start C{twistd amqp-listen} on a free loopback port, for one run.

    @param r: the run.
    @return: its URL and process id, once it listens.
    """
    twistd = r.startTwistd("--listen", "amqp:0:interface=127.0.0.1")
    port = twistd.expectPattern(r"starting on (\d+)", r.settings.timeout).group(1)
    return f"amqp://127.0.0.1:{port}", twistd.pid


def protonBroker(r: Run) -> tuple[str, int]:
    """
    Start the proton example-style broker (L{bench.programs.proton_broker})
    on a free loopback port, for one run.

    @param r: the run.
    @return: its URL and process id, once it listens.
    """
    broker = r.start("broker", "proton_broker")
    port = broker.expect("listening", r.settings.timeout)["port"]
    return f"amqp://127.0.0.1:{port}", broker.pid


def rabbitMQUnavailable() -> str | None:
    """
    @return: why RabbitMQ cannot be used here, or L{None} if it can.
    """
    try:
        from tests.integration._rabbitmq import rabbitMQAvailable
    except ImportError as e:
        return f"cannot import the RabbitMQ harness: {e}"
    if not rabbitMQAvailable():
        return "rabbitmq-server is not installed"
    return None


def _start() -> RabbitMQNode:
    from tests.integration._rabbitmq import RabbitMQNode, RabbitMQStartError

    node = RabbitMQNode()
    try:
        node.start()
    except (RabbitMQStartError, RuntimeError) as e:
        raise BenchError(f"RabbitMQ did not start: {e}") from None
    return node


def freshRabbitMQ(r: Run) -> tuple[str, int]:
    """
    Start a new RabbitMQ node for one run (stopped with the run).

    @param r: the run.
    @return: its URL and the process id of its Erlang VM.
    @raise BenchError: if it does not start.
    """
    node = _start()
    r.addCleanup(node.stop)
    assert node.pid is not None
    return node.url, node.pid


class SharedRabbitMQ:
    """
    One RabbitMQ node for all the runs of a workload, started on first use.
    """

    def __init__(self) -> None:
        self._node: RabbitMQNode | None = None
        self._failure: BenchError | None = None

    def __call__(self, r: Run) -> tuple[str, int]:
        """
        @param r: the run.
        @return: the node's URL and the process id of its Erlang VM.
        @raise BenchError: if it did not start (now or at first use).
        """
        if self._failure is not None:
            raise self._failure
        if self._node is None:
            try:
                self._node = _start()
            except BenchError as e:
                self._failure = e
                raise
        assert self._node.pid is not None
        return self._node.url, self._node.pid

    def close(self) -> None:
        """
        Stop the node, if it was started.
        """
        node, self._node = self._node, None
        if node is not None:
            node.stop()
