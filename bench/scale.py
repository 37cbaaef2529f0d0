"""
Workload D: connection scale.  One client process opens C{--connections}
connections to a broker (50 opening at a time), each with a receiver from
an address of its own (a queue each), and holds them.

Measured: connections opened (and receivers attached) per second, and the
resident memory the server and the client grew by, per connection: the
server's from C{/proc} before the client starts and once all are open, the
client's its own, from C{/proc} too.  Each run has a new broker.

proton's C{Container} takes part as a client only up to 1,000 connections:
its event loop uses C{select()}, which takes no file descriptor above 1023
(C{ValueError: filedescriptor out of range in select()}).
"""

from __future__ import annotations

from collections.abc import Callable

from bench._brokers import amqpListen, freshRabbitMQ, rabbitMQUnavailable
from bench._framework import Contender, Metric, Run, Settings, Workload
from bench._process import cpuSeconds, rssBytes

__all__ = ["workloads"]

_SELECT_LIMIT = 1000


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
        result = opening.expect("result", s.timeout)
        serverRSS = rssBytes(pid) - serverRSS
        serverCPU = cpuSeconds(pid) - serverCPU
        n = result["connections"]
        return {
            "rate": n / (result["end"] - result["start"]),
            "server_rss": serverRSS / n,
            "client_rss": (result["rss_after"] - result["rss_before"]) / n,
            "server_cpu": serverCPU / n,
            "client_cpu": result["cpu"] / n,
        }

    return run


def workloads(settings: Settings) -> list[Workload]:
    """
    @param settings: the benchmark's parameters.
    @return: workload D.
    """
    contenders = [
        Contender(
            "RabbitMQ 3.10, amqptx client",
            _connections(freshRabbitMQ, "amqptx_client", "/queue/scale"),
        ),
        Contender(
            "amqp-listen, amqptx client",
            _connections(amqpListen, "amqptx_client", "scale"),
        ),
        Contender(
            "amqp-listen, proton client",
            _connections(amqpListen, "proton_client", "scale"),
        ),
    ]
    skipped = {}
    if settings.connections > _SELECT_LIMIT:
        skipped[contenders[2].name] = (
            f"proton's Container uses select(): at most {_SELECT_LIMIT} connections"
        )
        del contenders[2]
    unavailable = rabbitMQUnavailable()
    if unavailable is not None:
        skipped[contenders[0].name] = unavailable
        del contenders[0]
    return [
        Workload(
            "D",
            f"D. Connection scale: {settings.connections:,} connections, one "
            "receiver each (a queue each), held open",
            [
                Metric("rate", "conn/s", 1, 0),
                Metric("server_rss", "server KiB/conn", 1 / 1024, 1, higher=False),
                Metric("client_rss", "client KiB/conn", 1 / 1024, 1, higher=False),
                Metric("server_cpu", "server ms/conn", 1e3, 2, higher=False),
                Metric("client_cpu", "client ms/conn", 1e3, 2, higher=False),
            ],
            contenders,
            skipped=skipped,
            note="server: amqp-listen (Python) or RabbitMQ's Erlang VM (all "
            "threads); a new broker per run.",
        )
    ]
