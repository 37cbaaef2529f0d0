"""
Workload B: producer -> broker -> consumer, three processes.

The consumer attaches first (granting C{--window} credit) and says so;
then the producer sends C{--messages} messages of C{--size} bytes at least
once, and the consumer accepts each.  Throughput is messages over the time
from the producer's first send to the consumer's last message.  The
producer's and consumer's CPU are their own, in their windows; the
broker's is read from C{/proc} just before the producer starts and after
the consumer's last message (so it includes the producer's connection).

Brokers: C{twistd amqp-listen} (a new one per run) and a private RabbitMQ
3.10 node with its AMQP 1.0 plugin (one for the workload, skipped if
RabbitMQ is not installed), each address a new queue per run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from bench._brokers import (
    SharedRabbitMQ,
    amqpListen,
    protonBroker,
    rabbitMQUnavailable,
)
from bench._framework import Contender, Metric, Run, Settings, Workload
from bench._process import cpuSeconds, rssBytes

__all__ = ["workloads"]

_Broker = Callable[[Run], tuple[str, int]]
"""
Gets a broker for a run: its URL and its process id.
"""


def _through(
    broker: _Broker, client: str, prefix: str = ""
) -> Callable[[Run], dict[str, float]]:
    """
    @param broker: gets the broker of a run.
    @param client: the producer's and consumer's program.
    @param prefix: what the broker's queue addresses begin with.
    @return: one run of the contender.
    """

    def run(r: Run) -> dict[str, float]:
        s = r.settings
        url, pid = broker(r)
        address = f"{prefix}bench-{uuid.uuid4()}"
        common = ["--url", url, "--address", address, "--messages", str(s.messages)]
        common += ["--window", str(s.window)]
        consumer = r.start("consumer", client, "receive", *common)
        consumer.expect("ready", s.timeout)
        brokerCPU = cpuSeconds(pid)
        producer = r.start("producer", client, "send", *common, "--size", str(s.size))
        sent = producer.expect("result", s.timeout)
        received = consumer.expect("result", s.timeout)
        brokerCPU = cpuSeconds(pid) - brokerCPU
        brokerRSS = rssBytes(pid)
        producer.wait(s.timeout)
        consumer.wait(s.timeout)
        elapsed = received["end"] - sent["start"]
        n = s.messages
        return {
            "rate": n / elapsed,
            "seconds": elapsed,
            "producer_cpu": sent["cpu"] / n,
            "consumer_cpu": received["cpu"] / n,
            "broker_cpu": brokerCPU / n,
            "producer_rss": sent["rss"],
            "consumer_rss": received["rss"],
            "broker_rss": brokerRSS,
        }

    return run


def workloads(settings: Settings) -> list[Workload]:
    """
    @param settings: the benchmark's parameters.
    @return: workload B.
    """
    rabbitmq = SharedRabbitMQ()
    contenders = [
        Contender(
            "RabbitMQ 3.10, proton clients",
            _through(rabbitmq, "proton_client", "/queue/"),
        ),
        Contender(
            "proton broker, proton clients", _through(protonBroker, "proton_client")
        ),
        Contender("amqp-listen, proton clients", _through(amqpListen, "proton_client")),
        Contender("amqp-listen, amqptx clients", _through(amqpListen, "amqptx_client")),
    ]
    skipped = {}
    unavailable = rabbitMQUnavailable()
    if unavailable is not None:
        skipped[contenders[0].name] = unavailable
        del contenders[0]
    return [
        Workload(
            "B",
            f"B. Through a broker: producer -> broker -> consumer, "
            f"{settings.messages:,} messages of {settings.size} bytes, at least "
            f"once, credit window {settings.window}",
            [
                Metric("rate", "msg/s"),
                Metric("producer_cpu", "producer us/msg", 1e6, 1, higher=False),
                Metric("consumer_cpu", "consumer us/msg", 1e6, 1, higher=False),
                Metric("broker_cpu", "broker us/msg", 1e6, 1, higher=False),
            ],
            contenders,
            skipped=skipped,
            note="us/msg: CPU microseconds per message of each process "
            "(RabbitMQ: the Erlang VM, all its threads).  proton broker: in the "
            "style of proton's example broker, on proton's Container.",
            close=rabbitmq.close,
        )
    ]
