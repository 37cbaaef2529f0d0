# -*- test-case-name: tests.integration.test_robustness -*-
"""
Integration tests: C{twistd amqp-listen} against garbage.

Thousands of malformed byte streams (random bytes, foreign protocols,
impossible frame sizes, a recorded valid conversation with bits flipped,
bytes replaced, frames duplicated or dropped, cut short), each on its own
short-lived loopback connection, fifty at a time.  Where the specification
says what the server answers, the answer is decoded and checked.  Through it
all, a connection opened before keeps working, new clients are served, the
server's memory and file descriptors stay bounded, and its log shows no
traceback.  Also: thousands of links on one connection, and a message many
times larger than the largest frame.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from random import Random

from proton import Message
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from amqptx import AMQPConnection, Outcome
from tests.integration import _fuzz
from tests.integration._fuzz import (
    AMQP_HEADER,
    ATTACH,
    BEGIN,
    CLOSE,
    DETACH,
    DISPOSITION,
    END,
    OPEN,
    SASL_HEADER,
    SASL_MECHANISMS,
    TRANSFER,
    Answer,
    Conversation,
    Stream,
    parseAnswer,
)
from tests.integration._peers import spawnProtonClient, theReactor
from tests.integration._twistd import Twistd, TwistdTestCase

_log = Logger()

HANDSHAKE_TIMEOUT = 2.0
"""The C{--handshake-timeout} of the server under test, in seconds."""

MAX_FRAME_SIZE = 4096
"""The C{--max-frame-size} of the server under test."""

CONCURRENCY = 50
"""How many probing connections are open at once."""

MUST_ANSWER = HANDSHAKE_TIMEOUT + 8.0
"""
Seconds a probe waits for the server to close a connection that it must
close by itself: at once, or at the handshake timeout.  Never reached unless
the server is broken.
"""

MAY_WAIT = 1.0
"""
Seconds a probe waits for the server to close before it gives up and sends
its own end of stream: for input after which the server may rightly wait for
more bytes (a frame whose size field promises more, say).
"""

LINGER = 10.0
"""
Seconds a probe waits, after its end of stream, for the server to close;
then the probe aborts the connection (and the test fails).
"""

MEMORY_GROWTH = 50 * 1024 * 1024
"""The most the server's resident memory may grow while it is fuzzed."""

_MB = 1024 * 1024


@dataclass(frozen=True)
class _Result:
    """
    What happened to one stream.

    @ivar stream: the stream.
    @ivar answer: the server's answer, decoded.
    @ivar closedByServer: whether the server closed the connection before
        the probe sent its end of stream.
    @ivar aborted: whether the server kept the connection even after the
        probe's end of stream, and the probe aborted it.
    @ivar elapsed: seconds from the connection to its end.
    """

    stream: Stream
    answer: Answer
    closedByServer: bool
    aborted: bool
    elapsed: float

    def describe(self) -> str:
        """
        @return: the stream and what happened, for failure messages.
        """
        stream = self.stream
        return (
            f"{stream.category}: first={stream.first[:80].hex()} "
            f"later={stream.later[:80].hex()} closedByServer={self.closedByServer} "
            f"aborted={self.aborted} elapsed={self.elapsed:.2f} "
            f"answer={self.answer!r}"[:1500]
        )


@implementer(IHalfCloseableProtocol)
class _Probe(Protocol):
    """
    Sends one stream, then waits for the server to close the connection.

    If the server has not closed after C{patience} seconds, the probe shuts
    down its sending side (the server sees the end of the stream); if the
    server still has not closed C{LINGER} seconds later, the probe aborts.
    """

    def __init__(self, stream: Stream, patience: float) -> None:
        self.stream = stream
        self.patience = patience
        self.ended: Deferred[_Result] = Deferred()
        self._received = bytearray()
        self._steps = list(stream.steps)
        self._timer: IDelayedCall | None = None
        self._started = 0.0
        self._halfClosed = False
        self._peerClosed = False
        self._aborted = False

    def connectionMade(self) -> None:
        clock = theReactor()
        self._started = clock.seconds()
        assert self.transport is not None
        if self.stream.first:
            self.transport.write(self.stream.first)
        if self.stream.endWithEOF:
            self._halfClose()
        else:
            self._timer = clock.callLater(self.patience, self._halfClose)

    def dataReceived(self, data: bytes) -> None:
        self._received += data
        steps = self._steps
        if steps:
            codes = parseAnswer(bytes(self._received)).codes
            while steps and steps[0][0] in codes:
                assert self.transport is not None
                self.transport.write(steps.pop(0)[1])

    def _halfClose(self) -> None:
        if self._peerClosed:
            return
        self._halfClosed = True
        self.transport.loseWriteConnection()  # type: ignore[union-attr]
        self._timer = theReactor().callLater(LINGER, self._abort)

    def _abort(self) -> None:
        self._timer = None
        self._aborted = True
        self.transport.abortConnection()  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        """
        The server closed its side: close ours.
        """
        self._peerClosed = True
        assert self.transport is not None
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Our end of stream went out; keep reading.
        """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.ended.callback(
            _Result(
                self.stream,
                parseAnswer(bytes(self._received)),
                closedByServer=not self._halfClosed,
                aborted=self._aborted,
                elapsed=theReactor().seconds() - self._started,
            )
        )


def _patience(stream: Stream) -> float:
    """
    @return: how long to wait for the server to close after C{stream}: it
        must close by itself after anything that is not AMQP, during SASL (at
        the latest at the handshake timeout), after a valid conversation and
        after a frame it cannot take; after other input that follows the AMQP
        header, it may rightly wait for more bytes.
    """
    category = stream.category
    definite = category in ("valid", "broken") or category.startswith(
        ("amqp-size-", "oversized-")
    )
    if definite or not stream.first.startswith(AMQP_HEADER):
        return MUST_ANSWER
    return MAY_WAIT


class _Checks:
    """
    What the specification (and amqptx's documentation) says the server
    answers, by category of stream; each check raises C{AssertionError}.
    """

    def __init__(self, test: TestCase) -> None:
        self.test = test

    def common(self, result: _Result) -> None:
        """
        Whatever the input: the connection ends (by the server, or after the
        probe's end of stream), and the server writes only whole, decodable
        frames.
        """
        self.test.assertFalse(result.aborted, result.describe())
        self.test.assertEqual(result.answer.rest, b"", result.describe())

    def refusedHeader(self, result: _Result) -> None:
        """
        Not an AMQP 1.0 header: the server answers with the header it
        supports (SASL's) and closes (part 2.2 of the specification).
        """
        self.test.assertTrue(result.closedByServer, result.describe())
        self.test.assertEqual(result.answer.headers, (SASL_HEADER,), result.describe())
        self.test.assertEqual(result.answer.performatives, (), result.describe())

    def silent(self, result: _Result) -> None:
        """
        A client that says nothing (or not the whole header) is disconnected
        at the handshake timeout, and not before.
        """
        self.test.assertTrue(result.closedByServer, result.describe())
        self.test.assertGreaterEqual(
            result.elapsed, HANDSHAKE_TIMEOUT * 0.75, result.describe()
        )
        self.test.assertEqual(result.answer.performatives, (), result.describe())

    def sasl(self, result: _Result) -> None:
        """
        After the SASL header: the server offers its mechanisms, then closes
        by itself: at once with a failed outcome for broken frames, or at the
        handshake timeout for an incomplete exchange.
        """
        self.test.assertTrue(result.closedByServer, result.describe())
        answer = result.answer
        self.test.assertEqual(answer.headers[:1], (SASL_HEADER,), result.describe())
        self.test.assertEqual(answer.codes[:1], [SASL_MECHANISMS], result.describe())

    def saslFailed(self, result: _Result) -> None:
        """
        A SASL frame of an impossible size fails the exchange at once, with
        a failed C{sasl-outcome}.
        """
        self.sasl(result)
        self.test.assertNotIn(result.answer.saslOutcome, (None, 0), result.describe())
        self.test.assertLess(result.elapsed, HANDSHAKE_TIMEOUT, result.describe())

    def amqp(self, result: _Result) -> None:
        """
        After the AMQP header: the server answers with the AMQP header, and
        if it ends the connection by itself, it sends a Close first.
        """
        answer = result.answer
        if result.closedByServer:
            self.test.assertEqual(answer.headers[:1], (AMQP_HEADER,), result.describe())
            self.test.assertIn(CLOSE, answer.codes, result.describe())

    def amqpError(self, result: _Result, condition: str | None = None) -> None:
        """
        A broken frame: the server closes at once with a Close that carries
        an error condition (part 2.8.16: C{amqp:connection:framing-error}
        and friends).

        @param condition: the expected condition, or L{None} for any.
        """
        self.test.assertTrue(result.closedByServer, result.describe())
        self.amqp(result)
        found = result.answer.closeCondition
        self.test.assertIsNotNone(found, result.describe())
        if condition is not None:
            self.test.assertEqual(found, condition, result.describe())

    def valid(self, result: _Result) -> None:
        """
        The recorded conversation itself: answered in full, closed cleanly.
        """
        self.test.assertTrue(result.closedByServer, result.describe())
        answer = result.answer
        self.test.assertEqual(answer.headers, (AMQP_HEADER,), result.describe())
        for code in (OPEN, BEGIN, ATTACH, DETACH, END, CLOSE):
            self.test.assertIn(code, answer.codes, result.describe())
        self.test.assertIsNone(answer.closeCondition, result.describe())

    def forCategory(self, category: str) -> Callable[[_Result], None]:
        """
        @param category: a stream's category.
        @return: the check that applies to it.
        """
        if category == "valid":
            return self.valid
        if category == "silent" or category == "partial-header":
            return self.silent
        if category.startswith(("amqp-size-", "oversized-")):
            return lambda result: self.amqpError(
                result, "amqp:connection:framing-error"
            )
        if category.startswith("sasl-size-"):
            return self.saslFailed
        if category.startswith("sasl-"):
            return self.sasl
        if category in _FOREIGN or category == "random":
            return self.refusedHeader
        return self.amqp

    def check(self, results: Iterable[_Result]) -> None:
        """
        Apply the common checks and the category's check to each result.
        """
        for result in results:
            self.common(result)
            self.forCategory(result.stream.category)(result)


_FOREIGN = frozenset(stream.category for stream in _fuzz.foreignHeaders())


_KNOWN_BUGS: tuple[tuple[str, str], ...] = ()
"""
Problems of the server's log that L{_ServerTestCase.assertLogClean} lets
pass unless asked to be strict: each a log message's beginning and the
exception's name.
"""


def _problems(log: str) -> list[tuple[str, int]]:
    """
    Summarize what went wrong in a log: each traceback by the log message
    that introduced it and the exception it ended with, and each line that
    mentions an unhandled error.

    @param log: a C{twistd} log.
    @return: each distinct problem, with how often it occurred, most
        frequent first.
    """
    problems: Counter[str] = Counter()
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if "Unhandled" in line:
            problems[line.split("] ", 1)[-1].strip()] += 1
        if line.strip() != "Traceback (most recent call last):":
            continue
        message = lines[index - 1].split("] ", 1)[-1] if index else ""
        end = index + 1
        while end < len(lines) and lines[end].startswith(("\t ", "\t\t", "  ")):
            end += 1
        last = lines[end].strip() if end < len(lines) else "?"
        frames = [
            text.strip()
            for text in lines[index:end]
            if "/amqptx/" in text and text.strip().startswith("File")
        ]
        where = frames[-1] if frames else ""
        exception = last.split(":", 1)[0]
        problems[f"{message} | {exception} | {where}"] += 1
    return problems.most_common()


class _ServerTestCase(TwistdTestCase):
    """
    Runs a C{twistd amqp-listen} per test, and probes it.
    """

    async def startServer(self, *extra: str) -> tuple[Twistd, str]:
        """
        Start C{twistd -n amqp-listen} on a free loopback port with a short
        handshake timeout and a small maximum frame size; it is killed when
        the test ends.

        @param extra: more arguments of C{amqp-listen}.
        @return: the process, and its C{amqp://} URL.
        """
        twistd = await self.startTwistd(
            "--handshake-timeout",
            str(HANDSHAKE_TIMEOUT),
            "--max-frame-size",
            str(MAX_FRAME_SIZE),
            *extra,
        )
        self.port = twistd.port
        return twistd, twistd.url

    async def probe(
        self, streams: Iterable[Stream], patience: float | None = None
    ) -> list[_Result]:
        """
        Send each stream on its own connection, C{CONCURRENCY} at a time.

        @param streams: the streams.
        @param patience: seconds to wait for the server to close before
            sending the end of stream, or L{None} to choose by stream (see
            L{_patience}).
        @return: what happened to each, in order.
        """
        semaphore = DeferredSemaphore(CONCURRENCY)
        endpoint = TCP4ClientEndpoint(theReactor(), "127.0.0.1", self.port, timeout=10)

        async def one(stream: Stream) -> _Result:
            probe = _Probe(stream, _patience(stream) if patience is None else patience)
            await connectProtocol(endpoint, probe)
            return await probe.ended

        def start(stream: Stream) -> Deferred[_Result]:
            return Deferred.fromCoroutine(one(stream))

        results: list[_Result] = await gatherResults(
            [semaphore.run(start, stream) for stream in streams],
            consumeErrors=True,
        )
        return results

    async def assertExchange(
        self, connection: AMQPConnection, address: str, count: int = 10
    ) -> None:
        """
        Send C{count} messages on a connection, and receive them back on it.

        @param connection: an open connection.
        @param address: a queue nobody else uses.
        @param count: how many messages.
        """
        bodies = [f"{address}-{index}" for index in range(count)]
        outcomes = await gatherResults(
            [connection.send(address, Message(body=body)) for body in bodies]
        )
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * count)
        receiver = await connection.receiver(address, credit=count, autoAccept=True)
        received = [(await receiver.get()).body for _ in range(count)]
        self.assertEqual(received, bodies)
        await receiver.close()

    async def assertHealthy(
        self, twistd: Twistd, url: str, strict: bool = False
    ) -> None:
        """
        Assert that the server is running, serves a new amqptx client, and
        has logged no traceback and no unhandled error.

        @param twistd: the server.
        @param url: its URL.
        @param strict: see L{assertLogClean}.
        """
        self.assertTrue(twistd.running, twistd.output()[-3000:])
        connection = await self.connect(url)
        await self.assertExchange(connection, "health")
        await connection.close()
        self.assertLogClean(twistd, strict)

    def assertLogClean(self, twistd: Twistd, strict: bool = False) -> None:
        """
        Assert that the server's log has no traceback and no unhandled
        error.

        @param twistd: the server.
        @param strict: whether to fail for the known bugs too (see
            L{_KNOWN_BUGS}); otherwise they are only logged.
        """
        text = twistd.output()
        problems = []
        for problem in _problems(text):
            what = problem[0]
            known = any(
                what.startswith(message) and f"| builtins.{exception} |" in what
                for message, exception in _KNOWN_BUGS
            )
            if known and not strict:
                _log.info("known bug: {count} x {what}", count=problem[1], what=what)
            else:
                problems.append(problem)
        if problems:
            where = text.find("Traceback")
            self.fail(
                f"{len(problems)} distinct problem(s) in the server's log:\n"
                + "\n".join(f"  {count} x {what}" for what, count in problems)
                + "\nthe first:\n"
                + text[max(0, text.rfind("\n", 0, where - 1)) : where + 3000]
            )

    def report(self, name: str, results: Sequence[_Result]) -> None:
        """
        Log how the server ended the connections of each category (in
        C{_trial_temp/test.log}).

        @param name: what was probed.
        @param results: the results.
        """
        outcomes: Counter[tuple[str, str]] = Counter()
        for result in results:
            if result.aborted:
                how = "aborted"
            elif result.closedByServer:
                how = result.answer.closeCondition or (
                    f"sasl-outcome-{result.answer.saslOutcome}"
                    if result.answer.saslOutcome is not None
                    else "closed"
                )
            else:
                how = "waited-for-more"
            outcomes[result.stream.category.split("-size-")[0], how] += 1
        _log.info(
            "{name}: {count} connections: {outcomes}",
            name=name,
            count=len(results),
            outcomes=", ".join(
                f"{category} -> {how}: {count}"
                for (category, how), count in sorted(outcomes.items())
            ),
        )


def _conversations() -> list[Conversation]:
    """
    @return: the recorded conversations to break: a sender to the address
        C{fuzz}, a sender to the anonymous relay, a receiver from C{fuzz}
        (which releases the message it gets) and a dynamic receiver.
    """
    return [
        _fuzz.recordConversation("fuzz"),
        _fuzz.recordConversation(None),
        _fuzz.recordConsumer("fuzz"),
        _fuzz.recordConsumer(None),
    ]


def _valid() -> list[Conversation]:
    """
    @return: valid conversations, whose messages go to addresses no broken
        conversation uses: a sender to C{valid}, a sender to the anonymous
        relay with a message to C{valid-relay}, and a dynamic receiver.
    """
    return [
        _fuzz.recordConversation("valid"),
        _fuzz.recordConversation(None, relayTo="valid-relay"),
        _fuzz.recordConsumer(None),
    ]


def _corpus(rng: Random) -> list[Stream]:
    """
    @param rng: the source of randomness.
    @return: about 3,000 malformed streams of every category, and a few
        valid ones, shuffled.
    """
    conversations = _conversations()
    named = conversations[0]
    streams: list[Stream] = [
        *_fuzz.foreignHeaders(),
        *_fuzz.randomBytes(rng, 350),
        *_fuzz.randomAfterHeader(rng, SASL_HEADER, 250),
        *_fuzz.randomFrames(rng, 250, named, sasl=True),
        *_fuzz.randomAfterHeader(rng, AMQP_HEADER, 250),
        *_fuzz.randomFrames(rng, 400, named),
        *_fuzz.absurdSizes(named, MAX_FRAME_SIZE),
        *_fuzz.oversizedFrames(named, MAX_FRAME_SIZE),
        *[Stream("silent", b"") for _ in range(50)],
        *[Stream("partial-header", b"AMQ") for _ in range(10)],
    ]
    for conversation in _valid():
        streams += [conversation.stream("valid") for _ in range(30)]
    for conversation in conversations:
        streams += _fuzz.bitFlips(rng, conversation, 200)
        streams += _fuzz.byteSubstitutions(rng, conversation, 80)
        streams += _fuzz.duplicatedFrames(conversation).values()
        streams += _fuzz.droppedFrames(conversation).values()
        length = len(conversation.whole)
        streams += _fuzz.truncations(conversation, rng.sample(range(1, length), 40))
    rng.shuffle(streams)
    return streams


class FuzzTests(_ServerTestCase):
    """
    Malformed input, category by category, with the answers the
    specification asks for.
    """

    async def test_foreignProtocols(self) -> None:
        """
        Another protocol's first bytes (HTTP, a TLS ClientHello, SSH, AMQP
        0-9-1 and 0-10, AMQP 1.0's TLS header on a cleartext port, unknown
        versions) and random bytes are answered with the SASL protocol
        header, the one the server speaks, and the server closes the
        connection.
        """
        twistd, url = await self.startServer()
        rng = Random(1)
        streams = [*_fuzz.foreignHeaders(), *_fuzz.randomBytes(rng, 200)]
        results = await self.probe(streams)
        self.report("foreign protocols", results)
        checks = _Checks(self)
        for result in results:
            checks.common(result)
            checks.refusedHeader(result)
        await self.assertHealthy(twistd, url)

    async def test_silentConnections(self) -> None:
        """
        Connections that say nothing, half a protocol header, or only the
        SASL header are closed by the server at the handshake timeout; the
        last ones have been offered the mechanisms first.
        """
        twistd, url = await self.startServer()
        streams = [
            *[Stream("silent", b"") for _ in range(30)],
            *[Stream("partial-header", b"AMQP\x03") for _ in range(10)],
            *[Stream("sasl-header-only", SASL_HEADER) for _ in range(10)],
        ]
        results = await self.probe(streams, patience=MUST_ANSWER)
        self.report("silent connections", results)
        checks = _Checks(self)
        for result in results:
            checks.common(result)
            if result.stream.category == "sasl-header-only":
                checks.sasl(result)
                self.assertGreaterEqual(result.elapsed, HANDSHAKE_TIMEOUT * 0.75)
                self.assertIsNone(result.answer.saslOutcome)
            else:
                checks.silent(result)
            self.assertLess(result.elapsed, MUST_ANSWER, result.describe())
        await self.assertHealthy(twistd, url)

    async def test_silentAfterAMQPHeader(self) -> None:
        """
        A client that sends the AMQP header (skipping SASL, which the server
        allows as ANONYMOUS) and then nothing, only part of its Open, or a
        Begin and an Attach instead of an Open, is disconnected at the
        handshake timeout: C{--handshake-timeout} is
        "seconds a client has to authenticate and open the connection".
        """
        twistd, url = await self.startServer()
        conversation = _fuzz.recordConversation()
        open_ = conversation.frames[1]
        withoutOpen = _fuzz.droppedFrames(conversation)[OPEN]
        streams = [
            *[Stream("amqp-header-only", AMQP_HEADER) for _ in range(5)],
            *[Stream("amqp-partial-open", AMQP_HEADER + open_[:10]) for _ in range(5)],
            *[Stream("amqp-no-open", withoutOpen.first) for _ in range(5)],
        ]
        results = await self.probe(streams, patience=HANDSHAKE_TIMEOUT + 3)
        self.report("silent after the AMQP header", results)
        for result in results:
            _Checks(self).common(result)
            self.assertTrue(result.closedByServer, result.describe())
        await self.assertHealthy(twistd, url)

    async def test_saslGarbage(self) -> None:
        """
        Random bytes and random frames after the SASL header, and SASL frames
        of impossible sizes: the server offers its mechanisms, fails the
        exchange (a failed C{sasl-outcome} for a broken frame) and closes,
        at the latest at the handshake timeout.
        """
        twistd, url = await self.startServer()
        rng = Random(2)
        named = _fuzz.recordConversation()
        streams = [
            *_fuzz.randomAfterHeader(rng, SASL_HEADER, 150),
            *_fuzz.randomFrames(rng, 150, named, sasl=True),
            *[
                s
                for s in _fuzz.absurdSizes(named, MAX_FRAME_SIZE)
                if "sasl" in s.category
            ],
        ]
        results = await self.probe(streams)
        self.report("SASL garbage", results)
        _Checks(self).check(results)
        await self.assertHealthy(twistd, url)

    async def test_frameSizes(self) -> None:
        """
        Frames whose size field is smaller than a frame header (0, 7),
        enormous (2**31, 2**32-1) or one more than the server's
        C{--max-frame-size}, and whole frames larger than it, where the Open
        belongs and after an Attach: the server closes the connection at once
        with C{amqp:connection:framing-error}.
        """
        twistd, url = await self.startServer()
        named = _fuzz.recordConversation()
        streams = [
            *[
                s
                for s in _fuzz.absurdSizes(named, MAX_FRAME_SIZE)
                if "amqp" in s.category
            ],
            *_fuzz.oversizedFrames(named, MAX_FRAME_SIZE),
        ]
        results = await self.probe(streams, patience=MUST_ANSWER)
        self.report("frame sizes", results)
        _Checks(self).check(results)
        await self.assertHealthy(twistd, url)

    async def test_amqpGarbage(self) -> None:
        """
        Random bytes after the AMQP header, and well-sized frames with random
        bodies in the place of the Open or after an Attach: the server closes
        with a Close (with an error condition unless the random frame was a
        Close), or waits for more bytes and closes at the client's end of
        stream.
        """
        twistd, url = await self.startServer()
        rng = Random(3)
        named = _fuzz.recordConversation()
        streams = [
            *_fuzz.randomAfterHeader(rng, AMQP_HEADER, 150),
            *_fuzz.randomFrames(rng, 250, named),
        ]
        results = await self.probe(streams)
        self.report("AMQP garbage", results)
        _Checks(self).check(results)
        errors = [r for r in results if r.answer.closeCondition is not None]
        self.assertGreater(len(errors), len(results) // 2)
        await self.assertHealthy(twistd, url)

    async def test_mutatedConversation(self) -> None:
        """
        Recorded valid conversations (a sender to a queue, or to the
        anonymous relay, and one message; a dynamic receiver) are served in
        full.  Broken copies of those, and of a receiver that releases the
        message it gets: with frames duplicated or dropped where that breaks
        the protocol (a second protocol header, Attach, Transfer, Detach or
        End; no Begin), the server closes with an error condition; with bits
        flipped, bytes replaced or cut short (then the client's end of
        stream), it ends every connection and writes only well-formed
        frames.
        """
        twistd, url = await self.startServer()
        rng = Random(4)
        streams: list[Stream] = []
        for conversation in _valid():
            streams += [conversation.stream("valid") for _ in range(5)]
        for conversation in _conversations():
            duplicated = _fuzz.duplicatedFrames(conversation)
            dropped = _fuzz.droppedFrames(conversation)
            broken = [duplicated[None], duplicated[ATTACH], dropped[BEGIN]]
            if conversation.trigger != TRANSFER:
                # Sent for sure (not only if the queue has a message).
                broken += [duplicated[DETACH], duplicated[END]]
            if TRANSFER in duplicated:
                broken.append(duplicated[TRANSFER])
            for stream in broken:
                streams.append(Stream("broken", stream.first, stream.steps))
            streams += duplicated.values()
            streams += dropped.values()
            streams += _fuzz.bitFlips(rng, conversation, 120)
            streams += _fuzz.byteSubstitutions(rng, conversation, 50)
            length = len(conversation.whole)
            streams += _fuzz.truncations(conversation, range(1, length, 5))
        results = await self.probe(streams)
        self.report("mutated conversations", results)
        checks = _Checks(self)
        checks.check(results)
        for result in results:
            if result.stream.category == "broken":
                checks.amqpError(result)
        await self.assertHealthy(twistd, url)
        # The valid conversations' messages are in their queues.
        connection = await self.connect(url)
        for address in ("valid", "valid-relay"):
            receiver = await connection.receiver(address, credit=5)
            for _ in range(5):
                message = await receiver.get()
                self.assertEqual(message.body, "fuzz-0")
                self.assertEqual(message.message.properties, {"fuzzed": True})


class IsolationTests(_ServerTestCase):
    """
    Garbage on some connections leaves the others, and the server, alone.
    """

    timeout = 180

    async def test_fuzzing(self) -> None:
        """
        About 3,000 malformed streams of every category, fifty connections
        at a time: every connection ends, the server answers as the
        specification says; a connection opened before still sends and
        receives, a proton client sends and receives 100 messages, the
        server's memory grows less than 50 MB, its file descriptors go back
        to what they were, and its log has no traceback.
        """
        twistd, url = await self.startServer()
        longLived = await self.connect(url)
        waiting = await longLived.receiver("long-lived", credit=10, autoAccept=True)
        await self.assertExchange(longLived, "warm-up")
        files = twistd.openFiles()
        before = twistd.rss()
        streams = _corpus(Random(5))
        started = theReactor().seconds()
        results = await self.probe(streams)
        elapsed = theReactor().seconds() - started
        self.report("fuzzing", results)
        _Checks(self).check(results)

        outcomes = await gatherResults(
            [longLived.send("long-lived", Message(body=f"ll-{i}")) for i in range(10)]
        )
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * 10)
        bodies = [(await waiting.get()).body for _ in range(10)]
        self.assertEqual(bodies, [f"ll-{i}" for i in range(10)])
        await self.assertExchange(longLived, "long-lived-again")

        result = await spawnProtonClient(
            theReactor(), url, "after-fuzzing", send=100, receive=100
        )
        self.assertEqual(result.exitCode, 0, result.stderr)
        self.assertEqual(result.bodies, [f"message-{i}" for i in range(100)])

        after = twistd.rss()
        _log.info(
            "fuzzing: {count} streams in {elapsed:.1f} s; server RSS "
            "{before:.1f} MB before, {after:.1f} MB after; "
            "{files} file descriptors before, {filesAfter} after",
            count=len(streams),
            elapsed=elapsed,
            before=before / _MB,
            after=after / _MB,
            files=files,
            filesAfter=twistd.openFiles(),
        )
        self.assertLess(after - before, MEMORY_GROWTH)
        self.assertLessEqual(twistd.openFiles(), files + 2)
        await self.assertHealthy(twistd, url)

    async def test_manyLinks(self) -> None:
        """
        One connection attaches 5,000 senders, each to its own address: all
        are attached and work, another connection keeps working, and the
        server stays up with a bounded growth of memory.
        """
        twistd, url = await self.startServer()
        other = await self.connect(url)
        await self.assertExchange(other, "warm-up")
        before = twistd.rss()
        many = await self.connect(url)
        started = theReactor().seconds()
        senders = await gatherResults(
            [many.sender(f"link-{index}") for index in range(5000)]
        )
        attached = theReactor().seconds() - started
        self.assertEqual(len(senders), 5000)
        outcomes = await gatherResults(
            [senders[index].send(Message(body=index)) for index in (0, 2500, 4999)]
        )
        self.assertEqual(outcomes, [Outcome.ACCEPTED] * 3)
        await self.assertExchange(other, "other")
        during = twistd.rss()
        await many.close()
        after = twistd.rss()
        _log.info(
            "5000 links: attached in {attached:.1f} s; server RSS {before:.1f} MB "
            "before, {during:.1f} MB with the links, {after:.1f} MB after closing",
            attached=attached,
            before=before / _MB,
            during=during / _MB,
            after=after / _MB,
        )
        self.assertLess(during - before, 2 * MEMORY_GROWTH)
        await self.assertHealthy(twistd, url)

    async def test_oversizedMessage(self) -> None:
        """
        A 4 MiB message, a thousand times the server's maximum frame size,
        goes through in many frames and comes back intact.
        """
        twistd, url = await self.startServer()
        connection = await self.connect(url)
        body = bytes(range(256)) * (4 * 1024 * 4)
        started = theReactor().seconds()
        outcome = await connection.send("big", Message(body=body))
        self.assertIs(outcome, Outcome.ACCEPTED)
        receiver = await connection.receiver("big", credit=1)
        received = await receiver.get()
        received.accept()
        _log.info(
            "a {size} byte message through a server with --max-frame-size "
            "{frame}: {elapsed:.2f} s; server RSS {rss:.1f} MB",
            size=len(body),
            frame=MAX_FRAME_SIZE,
            elapsed=theReactor().seconds() - started,
            rss=twistd.rss() / _MB,
        )
        self.assertEqual(received.body, body)
        await self.assertHealthy(twistd, url)


MALFORMED_MESSAGE = bytes.fromhex("005370c00201ff005377a101ff")
"""
An encoded message the broker cannot take apart: a header whose only field
is a constructor that does not exist (0xff), and an C{amqp-value} body that
is a string of one byte, 0xff, which is not UTF-8.
"""


class MalformedInputTests(_ServerTestCase):
    """
    Well-framed input carrying values the server must not trust: strings
    that are not UTF-8, a message that cannot be decoded.
    """

    async def test_stringsNotUTF8(self) -> None:
        """
        A link whose name, target address or source address is not UTF-8,
        and a dynamic receiver on a connection whose container id is not
        UTF-8: the server answers the Attach (refusing the link, if it
        likes) or closes the connection with an error condition, and logs no
        traceback.
        """
        twistd, url = await self.startServer()
        producer = _fuzz.recordConversation("fuzz")
        consumer = _fuzz.recordConsumer("fuzz-source")
        dynamic = _fuzz.recordConsumer(None)
        notUTF8 = b"\xff\xfe"
        streams = [
            producer.patched(b"fuzz-sender", b"fuzz-send" + notUTF8).stream(
                "link-name"
            ),
            producer.patched(b"\xa1\x04fuzz", b"\xa1\x04fu" + notUTF8).stream(
                "target-address"
            ),
            consumer.patched(b"fuzz-source", b"fuzz-sour" + notUTF8).stream(
                "source-address"
            ),
            dynamic.patched(b"fuzz-client", b"fuzz-clie" + notUTF8).stream(
                "container-id"
            ),
        ]
        results = await self.probe(streams, patience=HANDSHAKE_TIMEOUT)
        self.report("strings that are not UTF-8", results)
        for result in results:
            _Checks(self).common(result)
            answer = result.answer
            answered = ATTACH in answer.codes or answer.closeCondition is not None
            self.assertTrue(answered, result.describe())
        await self.assertHealthy(twistd, url, strict=True)

    async def test_malformedMessages(self) -> None:
        """
        A message to the anonymous relay whose address is not UTF-8 is
        settled (accepted or rejected); a message the broker cannot decode
        (see L{MALFORMED_MESSAGE}) is stored, delivered, and, once released,
        delivered again to the next consumer; no traceback is logged.
        """
        twistd, url = await self.startServer()
        relay = _fuzz.recordConversation(None, relayTo="fuzz-relay")
        relay = relay.patched(b"fuzz-relay", b"fuzz-rel\xff\xfe")
        store = _fuzz.recordConversation("malformed", payload=MALFORMED_MESSAGE)
        [sent, stored] = await self.probe(
            [relay.awaitingOutcome("relay-address"), store.awaitingOutcome("store")],
            patience=HANDSHAKE_TIMEOUT,
        )
        consumer = _fuzz.recordConsumer("malformed")
        [taken] = await self.probe(
            [consumer.stream("release")], patience=HANDSHAKE_TIMEOUT
        )
        [again] = await self.probe(
            [consumer.stream("release-again")], patience=HANDSHAKE_TIMEOUT
        )
        results = [sent, stored, taken, again]
        self.report("malformed messages", results)
        for result in results:
            _Checks(self).common(result)
        for result in (sent, stored):
            self.assertIn(DISPOSITION, result.answer.codes, result.describe())
            self.assertTrue(result.closedByServer, result.describe())
        for result in (taken, again):
            self.assertIn(TRANSFER, result.answer.codes, result.describe())
            self.assertTrue(result.closedByServer, result.describe())
        await self.assertHealthy(twistd, url, strict=True)
