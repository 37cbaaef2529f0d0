"""
Workloads A and E: one client process sends to one server process over
loopback, directly (no broker between them).

  - A1: C{--messages} messages of C{--size} bytes, at least once: the server
    grants C{--window} credit and accepts each message; the client counts
    the outcomes.
  - A2: the same, pre-settled (at most once).
  - E: C{--large-messages} messages of C{--large-size} bytes, at least once,
    with C{--large-window} credit.

The server reports its window from the first message to the last; the
client from its first send to the last outcome (to the last send,
pre-settled).  Throughput is messages over the time from the client's first
send to the later of the two ends (both processes read the same monotonic
clock).  CPU per message is each process's own CPU time in its window.
"""

from __future__ import annotations

from collections.abc import Callable

from bench._framework import Contender, Metric, Run, Settings, Workload

__all__ = ["PAIRS", "workloads"]

PAIRS = [
    ("proton -> proton", "proton_client", "proton_server"),
    ("amqptx -> amqptx", "amqptx_client", "amqptx_broker"),
    ("amqptx client -> proton server", "amqptx_client", "proton_server"),
    ("proton client -> amqptx server", "proton_client", "amqptx_broker"),
    ("amqptx client -> amqptx handler", "amqptx_client", "amqptx_server"),
]
"""
The contenders: name, client program, server program; the first is the
baseline.  The amqptx server is amqp-listen's broker (C{amqptx_broker}: it
keeps the messages on a queue); the last pair's server is a proton-style
event handler on L{amqptx.AMQPProtocol} (C{amqptx_server}), the path of
code ported from proton's C{MessagingHandler}.
"""


def _transfer(
    client: str,
    server: str,
    messages: int,
    size: int,
    window: int,
    presettled: bool,
) -> Callable[[Run], dict[str, float]]:
    def run(r: Run) -> dict[str, float]:
        timeout = r.settings.timeout
        serving = r.start(
            "server", server, "--messages", str(messages), "--window", str(window)
        )
        port = serving.expect("listening", timeout)["port"]
        arguments = ["send", "--url", f"amqp://127.0.0.1:{port}"]
        arguments += ["--messages", str(messages), "--size", str(size)]
        arguments += ["--window", str(window)]
        if presettled:
            arguments.append("--presettled")
        sending = r.start("client", client, *arguments)
        sent = sending.expect("result", timeout)
        received = serving.expect("result", timeout)
        sending.wait(timeout)
        elapsed = max(sent["end"], received["end"]) - sent["start"]
        return {
            "rate": messages / elapsed,
            "mbps": messages * size / elapsed / 1e6,
            "seconds": elapsed,
            "client_cpu": sent["cpu"] / messages,
            "server_cpu": received["cpu"] / messages,
            "client_rss": sent["rss"],
            "server_rss": received["rss"],
        }

    return run


def workloads(settings: Settings) -> list[Workload]:
    """
    @param settings: the benchmark's parameters.
    @return: workloads A1, A2 and E.
    """
    perMessage = [
        Metric("rate", "msg/s"),
        Metric("client_cpu", "client CPU us/msg", 1e6, 1, higher=False),
        Metric("server_cpu", "server CPU us/msg", 1e6, 1, higher=False),
    ]
    n, size, window = settings.messages, settings.size, settings.window
    result = []
    for key, presettled, how in [
        ("A1", False, "at least once"),
        ("A2", True, "pre-settled (at most once)"),
    ]:
        result.append(
            Workload(
                key,
                f"A. Direct throughput, {how}: {n:,} messages of {size} bytes, "
                f"credit window {window}, client and server processes",
                perMessage,
                [
                    Contender(name, _transfer(c, s, n, size, window, presettled))
                    for name, c, s in PAIRS
                ],
            )
        )
    large, largeSize = settings.largeMessages, settings.largeSize
    largeWindow = settings.largeWindow
    mib = largeSize / (1 << 20)
    result.append(
        Workload(
            "E",
            f"E. Large messages: {large:,} messages of {mib:g} MiB, at least once, "
            f"credit window {largeWindow}",
            [
                Metric("mbps", "MB/s", 1, 1),
                Metric("client_cpu", "client CPU ms/msg", 1e3, 2, higher=False),
                Metric("server_cpu", "server CPU ms/msg", 1e3, 2, higher=False),
            ],
            [
                Contender(
                    name,
                    _transfer(c, s, large, largeSize, largeWindow, False),
                )
                for name, c, s in PAIRS[:2] + PAIRS[4:]
            ],
            note="MB/s: 10^6 bytes of message body per second.",
        )
    )
    return result
