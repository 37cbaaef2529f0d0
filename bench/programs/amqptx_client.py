"""
The benchmark's client on amqptx's Deferred API: L{amqptx.connect},
L{amqptx.AMQPConnection.sender}, L{amqptx.Sender.send} with
L{amqptx.Sender.whenReady}, L{amqptx.AMQPConnection.receiver} with
C{onMessage}, and L{amqptx.AMQPConnection.request}.

Same command line, behaviour and output as L{bench.programs.proton_client}
(the C{connections} mode runs with C{--concurrency} coroutines, each opening
one connection after another).
In C{send} mode, amqptx queues at most C{--window} messages waiting for
credit (the sender's C{queueLimit}) and the program waits on C{whenReady}
when the queue is full.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from proton import Message
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import react
from twisted.python.failure import Failure

import amqptx
from amqptx import AMQPConnection, Outcome, ReceivedMessage
from bench.programs._common import (
    ECHO_ADDRESS,
    Window,
    clientArguments,
    currentRSS,
    emit,
    payload,
)

__all__ = ["connections", "main", "receive", "request", "send"]


async def send(connection: AMQPConnection, options: Any) -> dict[str, object]:
    """
    Send C{--messages} messages, as fast as the sender takes them.

    @param connection: the open connection.
    @param options: the command line.
    @return: the result's fields.
    """
    total = options.messages
    sender = await connection.sender(
        options.address, presettled=options.presettled, queueLimit=options.window
    )
    message = Message(body=payload(options.size))
    window = Window()
    finished: Deferred[None] = Deferred()
    sent = 0
    settled = 0

    def outcome(result: Outcome) -> None:
        nonlocal settled
        settled += 1
        if settled == total:
            window.stop()
            finished.callback(None)

    def failed(reason: Failure) -> None:
        if not finished.called:
            finished.errback(reason)

    def pump(_: object = None) -> None:
        nonlocal sent
        while sent < total:
            ready = sender.whenReady()
            if not ready.called:
                ready.addCallbacks(pump, failed)
                return
            sent += 1
            sender.send(message).addCallbacks(outcome, failed)

    window.start()
    pump()
    await finished
    return {"sent": sent, **window.fields()}


async def receive(connection: AMQPConnection, options: Any) -> dict[str, object]:
    """
    Receive and accept C{--messages} messages.

    @param connection: the open connection.
    @param options: the command line.
    @return: the result's fields.
    """
    total = options.messages
    window = Window()
    finished: Deferred[None] = Deferred()
    received = 0

    def arrived(message: ReceivedMessage) -> None:
        nonlocal received
        window.start()
        received += 1
        if received == total:
            window.stop()
            finished.callback(None)

    await connection.receiver(
        options.address, credit=options.window, autoAccept=True, onMessage=arrived
    )
    emit("ready")
    await finished
    return {"received": received, **window.fields()}


async def request(connection: AMQPConnection, options: Any) -> dict[str, object]:
    """
    Make C{--warmup} requests, then C{--messages} timed ones, one at a time.

    @param connection: the open connection.
    @param options: the command line.
    @return: the result's fields, with the round trip times.
    """
    body = payload(options.size)
    window = Window()
    rtts = []
    for index in range(options.warmup + options.messages):
        if index == options.warmup:
            emit("measuring")
            window.start()
        started = time.perf_counter()
        await connection.request(ECHO_ADDRESS, Message(body=body))
        if index >= options.warmup:
            rtts.append(time.perf_counter() - started)
    window.stop()
    return {"requests": len(rtts), "rtts": rtts, **window.fields()}


async def connections(reactor: Any, options: Any) -> None:
    """
    Open C{--connections} connections, C{--concurrency} at a time, each with
    a receiver from an address of its own; report (C{opened}); then send one
    message on each connection to its own address, and report (C{result})
    once every receiver has its message; then hold them until killed.

    @param reactor: the reactor.
    @param options: the command line.
    """
    window = Window()
    window.start()
    rssBefore = currentRSS()
    held: list[tuple[AMQPConnection, str]] = []
    indices = iter(range(options.connections))
    everyone: Deferred[None] = Deferred()
    arrived = 0

    def one(message: ReceivedMessage) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == options.connections:
            everyone.callback(None)

    async def opener() -> None:
        for index in indices:
            connection = await amqptx.connect(reactor, options.url)
            address = f"{options.address}-{index}"
            held.append((connection, address))
            await connection.receiver(
                address, credit=options.window, autoAccept=True, onMessage=one
            )

    await gatherResults(
        [Deferred.fromCoroutine(opener()) for _ in range(options.concurrency)]
    )
    window.stop()
    emit(
        "opened",
        connections=len(held),
        rss_before=rssBefore,
        rss_after=currentRSS(),
        **window.fields(),
    )
    fanout = Window()
    fanout.start()
    body = payload(options.size)
    outcomes = [c.send(address, Message(body=body)) for c, address in held]
    await gatherResults(outcomes)
    await everyone
    fanout.stop()
    emit("result", messages=arrived, **fanout.fields())
    await Deferred()


_MODES = {"send": send, "receive": receive, "request": request}


async def _run(reactor: Any, options: Any) -> None:
    if options.mode == "connections":
        await connections(reactor, options)
        return
    connection = await amqptx.connect(reactor, options.url)
    try:
        fields = await _MODES[options.mode](connection, options)
        emit("result", **fields)
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run the client.

    @param argv: the arguments, or L{None} for C{sys.argv}.
    """
    options = clientArguments("python -m bench.programs.amqptx_client", argv)
    react(lambda reactor: Deferred.fromCoroutine(_run(reactor, options)))


if __name__ == "__main__":
    main()
