"""
Workload C: request/response latency, one request outstanding at a time.

The client sends a request of C{--size} bytes to the server's C{echo}
address with a dynamic reply node as its C{reply-to}, waits for the reply,
and sends the next: C{--warmup} untimed round trips, then C{--round-trips}
timed ones.  amqptx uses L{amqptx.AMQPConnection.request}; proton a
C{MessagingHandler} doing the same.  The server's CPU is read from C{/proc}
between the client's "measuring" line and its result.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from bench._framework import Contender, Metric, Run, Settings, Workload

__all__ = ["workloads"]


def _percentile(ordered: list[float], fraction: float) -> float:
    """
    @param ordered: values, sorted.
    @param fraction: which percentile, as a fraction (0.99).
    @return: the value below which that fraction of the values lie
        (nearest rank).
    """
    rank = max(1, int(round(fraction * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


def _requests(client: str, server: str) -> Callable[[Run], dict[str, float]]:
    def run(r: Run) -> dict[str, float]:
        s = r.settings
        serving = r.start("server", server, "--window", str(s.window))
        port = serving.expect("listening", s.timeout)["port"]
        arguments = ["request", "--url", f"amqp://127.0.0.1:{port}"]
        arguments += ["--messages", str(s.roundTrips), "--warmup", str(s.warmup)]
        arguments += ["--size", str(s.size), "--window", str(s.window)]
        requesting = r.start("client", client, *arguments)
        requesting.expect("measuring", s.timeout)
        serverCPU = serving.cpu()
        result = requesting.expect("result", s.timeout)
        serverCPU = serving.cpu() - serverCPU
        requesting.wait(s.timeout)
        rtts = sorted(result["rtts"])
        n = len(rtts)
        return {
            "p50": _percentile(rtts, 0.50),
            "p99": _percentile(rtts, 0.99),
            "mean": statistics.fmean(rtts),
            "max": rtts[-1],
            "rate": n / (result["end"] - result["start"]),
            "client_cpu": result["cpu"] / n,
            "server_cpu": serverCPU / n,
        }

    return run


def workloads(settings: Settings) -> list[Workload]:
    """
    @param settings: the benchmark's parameters.
    @return: workload C.
    """
    return [
        Workload(
            "C",
            f"C. Latency: request/response, one outstanding, {settings.roundTrips:,} "
            f"round trips (after {settings.warmup} untimed) of {settings.size} bytes",
            [
                Metric("p50", "p50 us", 1e6, 0, higher=False),
                Metric("p99", "p99 us", 1e6, 0, higher=False),
                Metric("rate", "req/s"),
                Metric("client_cpu", "client us/req", 1e6, 1, higher=False),
                Metric("server_cpu", "server us/req", 1e6, 1, higher=False),
            ],
            [
                Contender(
                    "proton -> proton", _requests("proton_client", "proton_server")
                ),
                Contender(
                    "amqptx -> amqptx", _requests("amqptx_client", "amqptx_server")
                ),
            ],
            note="server us/req: read from /proc (10 ms ticks), approximate.",
        )
    ]
