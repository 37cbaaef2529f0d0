# -*- test-case-name: tests.test_client -*-
"""
Tests for the Deferred API of L{amqptx._client}, in memory against
L{amqptx.testing.TestPeer} on proton's engine.
"""

from __future__ import annotations

import gc

from proton import Condition, Disposition, Message, Terminus
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from amqptx import (
    AMQPConnection,
    AMQPConnectionLost,
    LinkDetached,
    MessageModified,
    MessageRejected,
    MessageReleased,
    Outcome,
    ReceivedMessage,
    Receiver,
    RequestTimedOut,
    Sender,
    SendQueueFull,
    SessionEnded,
    _raw,
)
from amqptx.testing import IOPump, TestPeer, connectPair


def _byAddress(address: str | None, message: Message) -> int | None:
    prefix = (address or "").split("/")[0]
    return {
        "reject": Disposition.REJECTED,
        "release": Disposition.RELEASED,
        "modify": Disposition.MODIFIED,
        "hold": None,
    }.get(prefix, Disposition.ACCEPTED)


class _Connected(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.client = AMQPConnection()
        self.peer = TestPeer(outcome=_byAddress)
        self.pump: IOPump = connectPair(self.peer, self.client, self.clock)

    def receiver(self, address: str | None, **options: object) -> Receiver:
        d = self.client.receiver(address, **options)  # type: ignore[arg-type]
        self.pump.flush()
        return self.successResultOf(d)

    def get(self, receiver: Receiver) -> ReceivedMessage:
        d = receiver.get()
        self.pump.flush()
        return self.successResultOf(d)


class SendTests(_Connected):
    """
    L{AMQPConnection.send} and L{Sender.send}.
    """

    def test_accepted(self) -> None:
        """
        A message the peer accepts fires the Deferred with
        L{Outcome.ACCEPTED}; the peer received it on the address.
        """
        d = self.client.send("q", Message(body="hello", subject="s"))
        self.assertNoResult(d)
        self.pump.flush()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        [(address, message)] = self.peer.received
        self.assertEqual((address, message.body, message.subject), ("q", "hello", "s"))

    def test_order(self) -> None:
        """
        Messages sent to one address arrive in the order sent.
        """
        ds = [self.client.send("q", Message(body=i)) for i in range(50)]
        self.pump.flush()
        for d in ds:
            self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)
        self.assertEqual([m.body for _, m in self.peer.received], list(range(50)))

    def test_senderCached(self) -> None:
        """
        Sends to one address share one link; another address gets another.
        """
        for address in ("a", "a", "b"):
            self.client.send(address, Message(body=1))
        self.pump.flush()
        self.assertEqual(sorted(self.peer._senders), [])
        links = [self.client._senders[a].link.name for a in ("a", "b")]
        self.assertEqual(len(set(links)), 2)
        self.assertEqual(len(self.client._links), 2)

    def test_rejected(self) -> None:
        """
        A rejection errbacks with L{MessageRejected} and the peer's condition.
        """
        d = self.client.send("reject/x", Message(body=1))
        self.pump.flush()
        failure = self.failureResultOf(d, MessageRejected)
        self.assertEqual(failure.value.condition, "amqp:precondition-failed")
        self.assertEqual(failure.value.description, "rejected by the test peer")

    def test_released(self) -> None:
        """
        A release errbacks with L{MessageReleased}.
        """
        d = self.client.send("release/x", Message(body=1))
        self.pump.flush()
        self.failureResultOf(d, MessageReleased)

    def test_modified(self) -> None:
        """
        A modification errbacks with L{MessageModified} and its flags.
        """
        d = self.client.send("modify/x", Message(body=1))
        self.pump.flush()
        failure = self.failureResultOf(d, MessageModified)
        self.assertTrue(failure.value.deliveryFailed)
        self.assertFalse(failure.value.undeliverableHere)

    def test_waitsForCredit(self) -> None:
        """
        Without credit, messages wait in order and go out as credit comes.
        """
        self.peer.credit = 2
        ds = [self.client.send("q", Message(body=i)) for i in range(5)]
        self.pump.flush()
        # TestPeer gives one more credit per message received, so all go.
        self.assertEqual([m.body for _, m in self.peer.received], list(range(5)))
        for d in ds:
            self.successResultOf(d)

    def test_noCreditAtAll(self) -> None:
        """
        A peer that gives no credit keeps messages waiting, unsent.
        """
        self.peer.credit = 0
        d = self.client.send("q", Message(body=1))
        self.pump.flush()
        self.assertNoResult(d)
        self.assertEqual(self.peer.received, [])
        sender = self.client._senders["q"]
        self.assertEqual(len(sender._waiting), 1)

    def test_cancelWaiting(self) -> None:
        """
        Cancelling a send that has not gone out withdraws it.
        """
        self.peer.credit = 0
        d = self.client.send("q", Message(body=1))
        self.pump.flush()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(self.client._senders["q"]._waiting), 0)

    def test_cancelInFlight(self) -> None:
        """
        Cancelling a sent, unsettled message forgets its outcome; a late
        outcome does not fire the Deferred again.
        """
        d = self.client.send("hold/x", Message(body=1))
        self.pump.flush()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        [delivery] = self.peer.unsettled
        delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        self.peer.flush()
        self.pump.flush()

    def test_presettled(self) -> None:
        """
        A pre-settled sender fires with L{Outcome.SETTLED} as soon as the
        message is written, and the peer receives it settled.
        """
        sender = self.successResultOf(self._sender("q", presettled=True))
        d = sender.send(Message(body="x"))
        self.assertIs(self.successResultOf(d), Outcome.SETTLED)
        self.pump.flush()
        self.assertEqual([m.body for _, m in self.peer.received], ["x"])
        self.assertEqual(self.peer.unsettled, [])

    def _sender(self, address: str, **options: object) -> Deferred[Sender]:
        d = self.client.sender(address, **options)  # type: ignore[arg-type]
        self.pump.flush()
        return d

    def test_senderAttached(self) -> None:
        """
        C{sender()} fires with a L{Sender} for the address once attached.
        """
        sender = self.successResultOf(self._sender("x"))
        self.assertIsInstance(sender, Sender)
        self.assertEqual(sender.address, "x")

    def test_onlyMessages(self) -> None:
        """
        Sending anything but a proton Message is a TypeError.
        """
        self.assertRaises(TypeError, self.client.send, "q", "just a string")

    def test_refused(self) -> None:
        """
        A link the peer refuses fails with L{LinkDetached} and the peer's
        condition, and so do the messages waiting on it.
        """
        self.peer.refuseLinks["nowhere"] = ("amqp:not-found", "no such node")
        attached = self.client.sender("nowhere")
        sent = self.client.send("nowhere", Message(body=1))
        self.pump.flush()
        for d in (attached, sent):
            failure = self.failureResultOf(d, LinkDetached)
            self.assertEqual(failure.value.condition, "amqp:not-found")
            self.assertEqual(failure.value.description, "no such node")

    def test_refusedNotCached(self) -> None:
        """
        After a refusal, the next send to the address tries a new link.
        """
        self.peer.refuseLinks["later"] = ("amqp:not-found", "not yet")
        first = self.client.send("later", Message(body=1))
        self.pump.flush()
        self.failureResultOf(first, LinkDetached)
        del self.peer.refuseLinks["later"]
        d = self.client.send("later", Message(body=2))
        self.pump.flush()
        self.assertIs(self.successResultOf(d), Outcome.ACCEPTED)

    def test_connectionLost(self) -> None:
        """
        Messages waiting for their outcome when the connection drops fail
        with L{AMQPConnectionLost}, and new sends fail at once.
        """
        d = self.client.send("hold/x", Message(body=1))
        self.pump.flush()
        self.client.transport.loseConnection()  # type: ignore[union-attr]
        self.pump.flush()
        self.failureResultOf(d, AMQPConnectionLost)

    def test_sessionEnded(self) -> None:
        """
        A peer that ends the session fails its links' waiting messages with
        L{SessionEnded}; the next send opens a new session and works.
        """
        d = self.client.send("hold/x", Message(body=1))
        self.pump.flush()
        session = self.peer.connection.session_head(0)
        assert session is not None
        session.condition = Condition("amqp:not-found", "gone")
        session.close()
        self.peer.flush()
        self.pump.flush()
        failure = self.failureResultOf(d, SessionEnded)
        self.assertEqual(failure.value.condition, "amqp:not-found")
        again = self.client.send("q", Message(body=2))
        self.pump.flush()
        self.assertIs(self.successResultOf(again), Outcome.ACCEPTED)

    def test_newSessionFromFailureCallback(self) -> None:
        """
        A link attached from the callback that reports the session's end (so
        before the protocol saw the end through) goes on a new session.
        """
        d = self.client.send("hold/x", Message(body=1))
        self.pump.flush()
        session = self.peer.connection.session_head(0)
        assert session is not None
        session.condition = Condition("amqp:not-found", "gone")
        session.close()
        self.peer.flush()
        retried: list[Deferred[Outcome]] = []
        d.addErrback(lambda _: retried.append(self.client.send("q", Message(body=2))))
        self.pump.flush()
        [again] = retried
        self.pump.flush()
        self.assertIs(self.successResultOf(again), Outcome.ACCEPTED)

    def test_closeSender(self) -> None:
        """
        Closing a sender detaches it: the Deferred fires, a second close and
        a close after the end succeed, and a send afterwards fails.
        """
        sender = self.successResultOf(self._sender("q"))
        closed = sender.close()
        self.pump.flush()
        self.assertIsNone(self.successResultOf(closed))
        self.assertIsNone(self.successResultOf(sender.close()))
        self.failureResultOf(sender.send(Message(body=1)), LinkDetached)


class ReceiveTests(_Connected):
    """
    L{AMQPConnection.receiver} and L{Receiver}.
    """

    def test_receive(self) -> None:
        """
        Messages offered by the peer arrive in order through C{get()}.
        """
        receiver = self.receiver("in")
        for i in range(3):
            self.peer.offer("in", Message(body=i))
        self.pump.flush()
        self.assertEqual([self.get(receiver).body for _ in range(3)], [0, 1, 2])

    def test_getBeforeArrival(self) -> None:
        """
        A C{get()} made before a message arrives fires when it does.
        """
        receiver = self.receiver("in")
        d = receiver.get()
        self.pump.flush()
        self.assertNoResult(d)
        self.peer.offer("in", Message(body="late"))
        self.pump.flush()
        self.assertEqual(self.successResultOf(d).body, "late")

    def test_creditWindow(self) -> None:
        """
        The peer may send only C{credit} messages ahead of C{get()}; each
        message handed out lets one more come.
        """
        receiver = self.receiver("in", credit=3)
        for i in range(10):
            self.peer.offer("in", Message(body=i))
        self.pump.flush()
        self.assertEqual(self.peer.queued("in"), 7)
        self.get(receiver)
        self.pump.flush()
        self.assertEqual(self.peer.queued("in"), 6)

    def test_creditWithAttach(self) -> None:
        """
        A receiver's credit goes out with its attach: the peer may send as
        soon as it has the attach, without waiting for another frame.
        """
        self.peer.offer("in", Message(body="waiting"))
        d = self.client.receiver("in", credit=3)
        # The client's attach reaches the peer, and nothing else yet.
        self.pump.pump()
        self.assertEqual(self.peer.queued("in"), 0)
        self.pump.flush()
        self.assertEqual(self.get(self.successResultOf(d)).body, "waiting")

    def test_settlements(self) -> None:
        """
        C{accept}, C{reject}, C{release} and C{modify} reach the peer as
        those outcomes; settling twice does nothing more.
        """
        receiver = self.receiver("in")
        for i in range(4):
            self.peer.offer("in", Message(body=i))
        self.pump.flush()
        messages = [self.get(receiver) for _ in range(4)]
        messages[0].accept()
        messages[1].reject("amqp:decode-error", "bad")
        messages[2].release()
        messages[3].modify(deliveryFailed=True, undeliverableHere=True)
        messages[0].accept()
        self.pump.flush()
        self.assertEqual(
            self.peer.sentOutcomes,
            [
                Disposition.ACCEPTED,
                Disposition.REJECTED,
                Disposition.RELEASED,
                Disposition.MODIFIED,
            ],
        )

    def test_autoAccept(self) -> None:
        """
        With C{autoAccept}, a message is accepted as it is handed out.
        """
        receiver = self.receiver("in", autoAccept=True)
        self.peer.offer("in", Message(body=1))
        self.pump.flush()
        received = self.get(receiver)
        self.assertTrue(received.settled)
        self.pump.flush()
        self.assertEqual(self.peer.sentOutcomes, [Disposition.ACCEPTED])

    def test_presettled(self) -> None:
        """
        A receiver that asks for pre-settled messages gets them settled: no
        outcome goes back to the peer.
        """
        receiver = self.receiver("in", presettled=True)
        self.peer.offer("in", Message(body=1))
        self.pump.flush()
        received = self.get(receiver)
        self.assertTrue(received.settled)
        received.accept()
        self.pump.flush()
        self.assertEqual(self.peer.sentOutcomes, [])

    def test_dynamic(self) -> None:
        """
        A dynamic receiver learns the address the peer made for it.
        """
        receiver = self.receiver(None, dynamic=True)
        self.assertEqual(receiver.address, "dynamic-0")

    def test_badCredit(self) -> None:
        """
        A credit window below one is a ValueError.
        """
        self.assertRaises(ValueError, self.client.receiver, "in", credit=0)

    def test_refused(self) -> None:
        """
        A refused receiver fails with L{LinkDetached}.
        """
        self.peer.refuseLinks["secret"] = ("amqp:unauthorized-access", "no")
        d = self.client.receiver("secret")
        self.pump.flush()
        failure = self.failureResultOf(d, LinkDetached)
        self.assertEqual(failure.value.condition, "amqp:unauthorized-access")

    def test_cancelGet(self) -> None:
        """
        A cancelled C{get()} gives up its place: the next message goes to the
        next caller.
        """
        receiver = self.receiver("in")
        first, second = receiver.get(), receiver.get()
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.peer.offer("in", Message(body="m"))
        self.pump.flush()
        self.assertEqual(self.successResultOf(second).body, "m")

    def test_connectionLost(self) -> None:
        """
        A waiting C{get()} fails when the connection drops, and so does a
        C{get()} after the end.
        """
        receiver = self.receiver("in")
        d = receiver.get()
        self.client.transport.loseConnection()  # type: ignore[union-attr]
        self.pump.flush()
        self.failureResultOf(d, AMQPConnectionLost)
        self.failureResultOf(receiver.get(), AMQPConnectionLost)

    def test_settleAfterEnd(self) -> None:
        """
        Settling a message after the connection ended does nothing.
        """
        receiver = self.receiver("in")
        self.peer.offer("in", Message(body=1))
        self.pump.flush()
        received = self.get(receiver)
        self.client.transport.loseConnection()  # type: ignore[union-attr]
        self.pump.flush()
        received.accept()
        self.assertTrue(received.settled)

    def test_closeReceiver(self) -> None:
        """
        Closing a receiver detaches it and fails a waiting C{get()} with
        L{LinkDetached}.
        """
        receiver = self.receiver("in")
        waiting = receiver.get()
        closed = receiver.close()
        self.pump.flush()
        self.assertIsNone(self.successResultOf(closed))
        self.failureResultOf(waiting, LinkDetached)

    def test_largeMessage(self) -> None:
        """
        A message larger than a frame arrives whole.
        """
        receiver = self.receiver("in")
        body = b"x" * 1_000_000
        self.peer.offer("in", Message(body=body))
        self.pump.flush()
        self.assertEqual(self.get(receiver).body, body)

    def test_binaryOwned(self) -> None:
        """
        Binary values of a received message are plain C{bytes} that stay
        valid after the message is gone (proton 0.40 hands out views into its
        own buffers, which would dangle).
        """
        receiver = self.receiver("in")
        self.peer.offer(
            "in",
            Message(body=[b"a", {"k": b"v"}], properties={"p": b"bin"}),
        )
        self.pump.flush()
        received = self.get(receiver)
        body, properties = received.body, received.message.properties
        del received
        gc.collect()
        assert properties is not None
        self.assertEqual(body, [b"a", {"k": b"v"}])
        self.assertIs(type(body[0]), bytes)
        self.assertIs(type(properties["p"]), bytes)


class BackPressureTests(_Connected):
    """
    A sender's queue of messages waiting for credit is bounded.
    """

    def test_queueLimit(self) -> None:
        """
        Beyond C{queueLimit} waiting messages, C{send} fails at once with
        L{SendQueueFull}; C{whenReady} fires once credit drains the queue.
        """
        self.peer.credit = 0
        d = self.client.sender("q", queueLimit=2)
        self.pump.flush()
        sender = self.successResultOf(d)
        first, second = sender.send(Message(body=1)), sender.send(Message(body=2))
        self.failureResultOf(sender.send(Message(body=3)), SendQueueFull)
        ready = sender.whenReady()
        self.assertNoResult(ready)
        link = self.peer.connection.link_head(0)
        assert link is not None
        link.flow(1)
        self.peer.flush()
        self.pump.flush()
        self.assertIs(self.successResultOf(ready), sender)
        # The test peer gives a credit back for every message it receives.
        self.successResultOf(first)
        self.successResultOf(second)

    def test_whenSettled(self) -> None:
        """
        C{whenSettled} fires when no sent message waits for its outcome.
        """
        self.peer.outcome = lambda address, message: None
        d = self.client.sender("hold")
        self.pump.flush()
        sender = self.successResultOf(d)
        self.assertIsNone(self.successResultOf(sender.whenSettled()))
        sender.send(Message(body=1))
        self.pump.flush()
        settled = sender.whenSettled()
        self.assertNoResult(settled)
        [delivery] = self.peer.unsettled
        delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        self.peer.flush()
        self.pump.flush()
        self.successResultOf(settled)

    def test_cancelMakesRoom(self) -> None:
        """
        Cancelling a send that waits for credit makes room: C{whenReady}
        fires, and once none waits, so does C{whenSettled}.
        """
        self.peer.credit = 0
        d = self.client.sender("q", queueLimit=2)
        self.pump.flush()
        sender = self.successResultOf(d)
        first, second = sender.send(Message(body=1)), sender.send(Message(body=2))
        ready, settled = sender.whenReady(), sender.whenSettled()
        first.cancel()
        self.assertIs(self.successResultOf(ready), sender)
        self.assertNoResult(settled)
        second.cancel()
        self.assertIsNone(self.successResultOf(settled))
        self.failureResultOf(first, CancelledError)
        self.failureResultOf(second, CancelledError)

    def test_queuedInOrder(self) -> None:
        """
        Messages sent while others wait for credit go out after them, in
        order, as credit comes.
        """
        self.peer.credit = 0
        d = self.client.sender("q", queueLimit=10)
        self.pump.flush()
        sender = self.successResultOf(d)
        sent = [sender.send(Message(body=i)) for i in range(5)]
        self.pump.flush()
        link = self.peer.connection.link_head(0)
        assert link is not None
        link.flow(2)
        self.peer.flush()
        self.pump.flush()
        sent += [sender.send(Message(body=i)) for i in range(5, 8)]
        self.pump.flush()
        for outcome in sent:
            self.assertIs(self.successResultOf(outcome), Outcome.ACCEPTED)
        self.assertEqual([m.body for _, m in self.peer.received], list(range(8)))


class GracefulCloseTests(_Connected):
    """
    L{AMQPConnection.close} waits for outstanding outcomes.
    """

    def test_waitsForOutcomes(self) -> None:
        """
        A close waits until the sent messages are settled, then closes.
        """
        self.peer.outcome = lambda address, message: None
        sent = self.client.send("q", Message(body=1))
        self.pump.flush()
        closed = self.client.close()
        self.pump.flush()
        self.assertNoResult(closed)
        [delivery] = self.peer.unsettled
        delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        self.peer.flush()
        self.pump.flush()
        self.assertIs(self.successResultOf(sent), Outcome.ACCEPTED)
        self.assertIsNone(self.successResultOf(closed))

    def test_settleTimeout(self) -> None:
        """
        After C{settleTimeout} seconds, the close goes ahead; what still
        waits fails.
        """
        self.peer.outcome = lambda address, message: None
        sent = self.client.send("q", Message(body=1))
        self.pump.flush()
        closed = self.client.close(settleTimeout=2)
        self.clock.advance(2)
        self.pump.flush()
        self.assertIsNone(self.successResultOf(closed))
        self.failureResultOf(sent)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_withConditionAtOnce(self) -> None:
        """
        A close with an error condition does not wait.
        """
        self.peer.outcome = lambda address, message: None
        self.client.send("q", Message(body=1)).addErrback(lambda _: None)
        self.pump.flush()
        closed = self.client.close("amqp:internal-error", "giving up")
        self.pump.flush()
        self.assertIsNone(self.successResultOf(closed))


class RequestTests(_Connected):
    """
    L{AMQPConnection.request}: request/response over a dynamic reply node.
    """

    def answer(self) -> None:
        """
        Answer every request the peer received, at its reply-to address.
        """
        for _, request in self.peer.received:
            self.peer.offer(
                request.reply_to,
                Message(
                    body="re: " + str(request.body),
                    correlation_id=request.correlation_id,
                ),
            )
        self.peer.received.clear()
        self.pump.flush()

    def test_reply(self) -> None:
        """
        The reply with the request's correlation id fires the Deferred; two
        requests in flight get their own replies.
        """
        first = self.client.request("service", Message(body="a"))
        second = self.client.request("service", Message(body="b"))
        self.pump.flush()
        requests = [m for _, m in self.peer.received]
        self.assertEqual([m.body for m in requests], ["a", "b"])
        self.assertEqual(requests[0].reply_to, "dynamic-0")
        self.assertNotEqual(requests[0].correlation_id, requests[1].correlation_id)
        self.answer()
        self.assertEqual(self.successResultOf(first).body, "re: a")
        self.assertEqual(self.successResultOf(second).body, "re: b")

    def test_ownCorrelationId(self) -> None:
        """
        A request's own correlation id is kept.
        """
        d = self.client.request("service", Message(body="a", correlation_id="mine"))
        self.pump.flush()
        self.assertEqual(self.peer.received[0][1].correlation_id, "mine")
        self.answer()
        self.successResultOf(d)

    def test_timeout(self) -> None:
        """
        Without a reply in time, the Deferred fails with C{TimeoutError}; a
        late reply is ignored.
        """
        d = self.client.request("service", Message(body="a"), timeout=3)
        self.pump.flush()
        self.clock.advance(3)
        self.failureResultOf(d, RequestTimedOut)
        self.answer()

    def test_rejected(self) -> None:
        """
        A rejected request fails with L{MessageRejected}, and leaves no timer.
        """
        d = self.client.request("reject/service", Message(body="a"))
        self.pump.flush()
        self.failureResultOf(d, MessageRejected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """
        A cancelled request leaves no timer and ignores its reply.
        """
        d = self.client.request("service", Message(body="a"))
        self.pump.flush()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.answer()


class AsyncIterationTests(_Connected):
    """
    A L{Receiver} is an asynchronous iterator.
    """

    def test_asyncFor(self) -> None:
        """
        C{async for} gives the messages in order and ends when the link is
        detached.
        """
        receiver = self.receiver("in")
        bodies: list[object] = []

        async def consume() -> None:
            async for received in receiver:
                bodies.append(received.body)
                received.accept()

        done = Deferred.fromCoroutine(consume())
        for i in range(3):
            self.peer.offer("in", Message(body=i))
        self.pump.flush()
        self.assertEqual(bodies, [0, 1, 2])
        self.assertNoResult(done)
        receiver.close()
        self.pump.flush()
        self.assertIsNone(self.successResultOf(done))

    def test_onMessage(self) -> None:
        """
        With C{onMessage}, each message goes to the function as it arrives.
        """
        got: list[ReceivedMessage] = []
        self.receiver("in", onMessage=got.append, autoAccept=True)
        self.peer.offer("in", Message(body="x"))
        self.pump.flush()
        self.assertEqual([m.body for m in got], ["x"])
        self.assertEqual(self.peer.sentOutcomes, [Disposition.ACCEPTED])


class DurableTests(_Connected):
    """
    Senders and receivers can ask for durable termini.
    """

    def test_durable(self) -> None:
        """
        C{durable=True} asks for a terminus whose configuration survives the
        peer's restart; by default none.
        """
        self.client.sender("durable", durable=True)
        self.client.sender("plain")
        self.client.receiver("durable-in", durable=True)
        self.pump.flush()
        durability = {}
        link = self.peer.connection.link_head(0)
        while link is not None:
            terminus = link.remote_target if link.is_receiver else link.remote_source
            durability[terminus.address] = terminus.durability
            link = link.next(0)
        self.assertEqual(
            durability,
            {
                "durable": Terminus.CONFIGURATION,
                "plain": Terminus.NONDURABLE,
                "durable-in": Terminus.CONFIGURATION,
            },
        )


class EndOfLinkTests(_Connected):
    """
    What waits on a connection or link that ends.
    """

    def test_falsyCorrelationIdKept(self) -> None:
        """
        A request's own correlation id is kept even when it is falsy (C{0}).
        """
        self.client.request("service", Message(body="a", correlation_id=0))
        self.pump.flush()
        self.assertEqual(self.peer.received[0][1].correlation_id, 0)

    def test_requestFailsWithConnection(self) -> None:
        """
        A request waiting for its reply fails when the connection ends, and
        leaves no timer.
        """
        d = self.client.request("service", Message(body="a"))
        self.pump.flush()
        self.client.transport.loseConnection()  # type: ignore[union-attr]
        self.pump.flush()
        self.failureResultOf(d, AMQPConnectionLost)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bufferDroppedAtEnd(self) -> None:
        """
        Messages received but not handed out when the link ends are not
        handed out afterwards (their settlement could not reach the peer,
        which gives them again).
        """
        receiver = self.receiver("in")
        self.peer.offer("in", Message(body=1))
        self.pump.flush()
        receiver.close()
        self.pump.flush()
        self.failureResultOf(receiver.get(), LinkDetached)

    def test_asyncForEndsWithConnection(self) -> None:
        """
        C{async for} ends when the connection is closed cleanly.
        """
        receiver = self.receiver("in")

        async def consume() -> int:
            count = 0
            async for _received in receiver:
                count += 1
            return count

        done = Deferred.fromCoroutine(consume())
        self.client.close()
        self.pump.flush()
        self.assertEqual(self.successResultOf(done), 0)


class LimitTests(_Connected):
    """
    A receiver's C{limit}.
    """

    def test_noCreditBeyond(self) -> None:
        """
        A receiver limited to N messages gives the peer credit for N only,
        whatever its window.
        """
        receiver = self.receiver("in", credit=5, limit=2)
        for i in range(4):
            self.peer.offer("in", Message(body=i))
        self.pump.flush()
        self.assertEqual(self.peer.queued("in"), 2)
        self.assertEqual([self.get(receiver).body for _ in range(2)], [0, 1])
        self.pump.flush()
        self.assertEqual(self.peer.queued("in"), 2)


class PresettledSettledTests(_Connected):
    """
    Pre-settled messages count as settled once they are out.
    """

    def test_whenSettled(self) -> None:
        """
        C{whenSettled} of a pre-settled sender fires once its messages went
        out, so a graceful close does not wait for them.
        """
        self.peer.credit = 0
        d = self.client.sender("q", presettled=True)
        self.pump.flush()
        sender = self.successResultOf(d)
        sender.send(Message(body=1))
        settled = sender.whenSettled()
        self.assertNoResult(settled)
        link = self.peer.connection.link_head(0)
        assert link is not None
        link.flow(1)
        self.peer.flush()
        self.pump.flush()
        self.assertIsNone(self.successResultOf(settled))


class WrapperlessTests(_Connected):
    """
    The Deferred API drives its connection, session and links with proton's
    C functions: none of them gets a proton wrapper (which would leave an
    attribute record and a handle on the C object for its lifetime), and a
    link holds its C link itself.
    """

    def test_noWrapperRecords(self) -> None:
        """
        After a receiver and a sender attached and a message went each way,
        the client's C connection, session and links have no record of
        proton's wrappers.
        """
        receiver = self.receiver("in", autoAccept=True)
        self.peer.offer("in", Message(body="in"))
        sent = self.client.send("out", Message(body="out"))
        self.pump.flush()
        self.assertIs(self.successResultOf(sent), Outcome.ACCEPTED)
        self.assertEqual(self.get(receiver).body, "in")
        sender = self.client._senders["out"]
        lib, NULL = _raw.lib, _raw.NULL
        engine = self.client.engine
        assert engine is not None
        records = {
            "connection": lib.pn_connection_attachments(engine.rawConnection),
            "session": lib.pn_session_attachments(lib.pn_link_session(receiver._impl)),
            "receiver": lib.pn_link_attachments(receiver._impl),
            "sender": lib.pn_link_attachments(sender._impl),
        }
        wrapped = [n for n, r in records.items() if lib.pn_record_get_py(r) != NULL]
        self.assertEqual(wrapped, [])

    def test_linkOutlivesConnection(self) -> None:
        """
        A receiver still answers about its link once its connection and
        engine are gone.
        """
        receiver = self.receiver("in")
        self.client.transport.loseConnection()  # type: ignore[union-attr]
        self.pump.flush()
        self.client.engine = None
        self.peer.engine = None
        del self.pump
        gc.collect()
        self.assertEqual(receiver.address, "in")
        self.assertEqual(receiver.link.name, receiver.name)


class SubclassTests(SynchronousTestCase):
    """
    A subclass of L{AMQPConnection} cannot define a handler method for the
    events it handles in C: the method would never be called.
    """

    def test_handledInC(self) -> None:
        """
        Defining C{on_link_remote_open}, C{on_delivery} or C{on_link_flow}
        raises L{TypeError} naming the class and the method.
        """
        for name in ("on_link_remote_open", "on_delivery", "on_link_flow"):
            with self.assertRaises(TypeError) as raised:
                type("Mine", (AMQPConnection,), {name: lambda self, event: None})
            self.assertIn(f"Mine.{name} would never be called", str(raised.exception))

    def test_handledInCByAMixin(self) -> None:
        """
        A method from a mixin counts as well.
        """

        class Deliveries:
            def on_delivery(self, event: object) -> None:
                pass

        with self.assertRaises(TypeError) as raised:
            type("Mixed", (Deliveries, AMQPConnection), {})
        self.assertIn("Mixed.on_delivery", str(raised.exception))

    def test_otherHandlers(self) -> None:
        """
        Other handler methods and hooks are fine, and are called.
        """
        calls = []

        class Mine(AMQPConnection):
            def on_connection_remote_open(self, event: object) -> None:
                calls.append("open")

        connectPair(TestPeer(), Mine(), Clock())
        self.assertEqual(calls, ["open"])
