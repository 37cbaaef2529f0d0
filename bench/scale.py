"""
Workload D: connection scale.  One client process opens C{--connections}
connections to a broker (50 opening at a time), each with a receiver from
an address of its own (a queue each), and holds them.

Measured: connections opened (and receivers attached) per second, and the
resident memory the server and the client grew by, per connection: the
server's from C{/proc} before the client starts and once all are open, the
client's its own, from C{/proc} too.  Each run has a new broker.

The proton baseline is a broker in the style of proton's example broker on
proton's C{Container} (L{bench.programs.proton_broker}), its C{select()}
replaced by C{epoll}: C{select()} takes no file descriptor above 1023.
Once all are open, each connection sends one message to its own address,
through the broker, and the time until every receiver has its message
gives the I{msg/s, one to each}.
"""

from __future__ import annotations

from collections.abc import Callable

from bench._brokers import (
    amqpListen,
    freshRabbitMQ,
    protonBroker,
    rabbitMQUnavailable,
)
from bench._framework import Contender, Metric, Run, Settings, Workload
from bench._process import BenchError, cpuSeconds, rssBytes

__all__ = ["workloads"]


def _connections(
    broker: Callable[[Run], tuple[str, int]], client: str, address: str
) -> Callable[[Run], dict[str, float]]:
    """
    @param broker: starts the broker of a run.
    @param client: the client program.
    @param address: the addresses' prefix.
    @return: one run of the contender.
    """

    def run(r: Run) -> dict[str, float]:
        s = r.settings
        url, pid = broker(r)
        serverRSS, serverCPU = rssBytes(pid), cpuSeconds(pid)
        opening = r.start(
            "client",
            client,
            "connections",
            "--url",
            url,
            "--address",
            address,
            "--connections",
            str(s.connections),
            "--window",
            "10",
        )
        result = opening.expect("opened", s.timeout)
        serverRSS = rssBytes(pid) - serverRSS
        serverCPU = cpuSeconds(pid) - serverCPU
        n = result["connections"]
        if n != s.connections:
            raise BenchError(f"{n} connections opened of {s.connections}")
        fanout = opening.expect("result", s.timeout)
        if fanout["messages"] != n:
            raise BenchError(f"{fanout['messages']} messages arrived of {n}")
        return {
            "rate": n / (result["end"] - result["start"]),
            "server_rss": serverRSS / n,
            "client_rss": (result["rss_after"] - result["rss_before"]) / n,
            "server_cpu": serverCPU / n,
            "client_cpu": result["cpu"] / n,
            "fanout": n / (fanout["end"] - fanout["start"]),
        }

    return run


def workloads(settings: Settings) -> list[Workload]:
    """
    @param settings: the benchmark's parameters.
    @return: workload D.
    """
    contenders = [
        Contender(
            "proton broker, amqptx client",
            _connections(protonBroker, "amqptx_client", "scale"),
        ),
        Contender(
            "RabbitMQ 3.10, amqptx client",
            _connections(freshRabbitMQ, "amqptx_client", "/queue/scale"),
        ),
        Contender(
            "amqp-listen, amqptx client",
            _connections(amqpListen, "amqptx_client", "scale"),
        ),
    ]
    skipped = {}
    unavailable = rabbitMQUnavailable()
    if unavailable is not None:
        skipped[contenders[1].name] = unavailable
        del contenders[1]
    return [
        Workload(
            "D",
            f"D. Connection scale: {settings.connections:,} connections, one "
            "receiver each (a queue each), held open; then one message to each",
            [
                Metric("rate", "conn/s", 1, 0),
                Metric("server_rss", "server KiB/conn", 1 / 1024, 1, higher=False),
                Metric("client_rss", "client KiB/conn", 1 / 1024, 1, higher=False),
                Metric("server_cpu", "server ms/conn", 1e3, 2, higher=False),
                Metric("client_cpu", "client ms/conn", 1e3, 2, higher=False),
                Metric("fanout", "msg/s, one to each", 1, 0),
            ],
            contenders,
            skipped=skipped,
            note="server: a proton example-style broker (Python, select() "
            "replaced by epoll), amqp-listen (Python) or RabbitMQ's Erlang VM "
            "(all threads); a new broker per run.  msg/s, one to each: each "
            "connection sends one message to its own address through the broker.",
        )
    ]
