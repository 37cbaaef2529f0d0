# -*- test-case-name: tests.integration.test_robustness -*-
"""
Malformed input for an AMQP 1.0 server, and a reader of what it answers.

The streams are built from conversations recorded in memory between two
proton engines (no socket), then broken in many ways; the random ones are
the same for the same seed.  L{parseAnswer} splits the
bytes a server wrote into protocol headers and decoded performatives, so
that a test can check the server's error conditions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

from OpenSSL import SSL
from proton import (
    Collector,
    Connection,
    Data,
    Described,
    Event,
    Message,
    Session,
    Transport,
    ulong,
)

__all__ = [
    "AMQP_HEADER",
    "ATTACH",
    "BEGIN",
    "CLOSE",
    "DETACH",
    "DISPOSITION",
    "END",
    "FLOW",
    "OPEN",
    "SASL_HEADER",
    "SASL_MECHANISMS",
    "SASL_OUTCOME",
    "TRANSFER",
    "Answer",
    "Conversation",
    "Performative",
    "Stream",
    "absurdSizes",
    "bitFlips",
    "byteSubstitutions",
    "droppedFrames",
    "duplicatedFrames",
    "foreignHeaders",
    "frameCode",
    "frame",
    "oversizedFrames",
    "parseAnswer",
    "performative",
    "randomAfterHeader",
    "randomBytes",
    "randomFrames",
    "recordConsumer",
    "recordConversation",
    "tlsClientHello",
    "truncations",
]

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"

OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
_ERROR = 0x1D
SASL_MECHANISMS, SASL_INIT, SASL_CHALLENGE, SASL_RESPONSE, SASL_OUTCOME = range(
    0x40, 0x45
)

_AMQP_FRAME = 0
_SASL_FRAME = 1


# --- streams -------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """
    What a probing client sends on one connection.

    @ivar category: what kind of input this is, for the report.
    @ivar first: the bytes sent as soon as the connection is made.
    @ivar steps: what to send next, in order: each step's bytes go once
        the server's answer holds a performative with the step's code (its
        Flow: credit for a sender attached before; its Transfer: a message
        for a receiver; its Attach; its Disposition...); a step whose
        performative never comes is never sent, nor are those after it.
    @ivar endWithEOF: whether to shut down the client's sending side right
        after C{first}, leaving the server with a truncated input and its
        end.
    """

    category: str
    first: bytes
    steps: tuple[tuple[int, bytes], ...] = ()
    endWithEOF: bool = False

    @classmethod
    def after(cls, category: str, first: bytes, trigger: int, then: bytes) -> Stream:
        """
        @param category: the stream's category.
        @param first: the bytes to send at once.
        @param trigger: the performative to wait for.
        @param then: the bytes to send after it, if any.
        @return: a stream of one step (or none, if C{then} is empty).
        """
        return cls(category, first, ((trigger, then),) if then else ())

    @property
    def later(self) -> bytes:
        """
        Every byte of the steps.
        """
        return b"".join(data for _, data in self.steps)


def frame(
    body: bytes, *, kind: int = _AMQP_FRAME, channel: int = 0, size: int | None = None
) -> bytes:
    """
    Frame a performative (and payload).

    @param body: the frame body.
    @param kind: the frame type: 0 for AMQP, 1 for SASL.
    @param channel: the channel.
    @param size: the size field to write instead of the true size.
    @return: the frame's bytes.
    """
    true = 8 + len(body)
    header = (true if size is None else size).to_bytes(4, "big")
    return header + bytes([2, kind]) + channel.to_bytes(2, "big") + body


def performative(code: int, fields: list[Any]) -> bytes:
    """
    Encode a described list, as performatives are.

    @param code: the descriptor's numeric code.
    @param fields: the list's items, in proton's Python types.
    @return: the encoded value.
    """
    data = Data()
    data.put_object(Described(ulong(code), fields))
    encoded: bytes = data.encode()
    return encoded


@dataclass(frozen=True)
class Conversation:
    """
    A client's bytes for one valid conversation, one frame each: the
    protocol header, Open, Begin, Attach and what follows (see
    L{recordConversation} and L{recordConsumer}).

    @ivar frames: the header, then each frame.
    @ivar split: the index in C{frames} of the first frame the client sends
        only after the server's answer holds a C{trigger} performative.
    @ivar trigger: that performative's code.
    """

    frames: tuple[bytes, ...]
    split: int
    trigger: int = FLOW

    @property
    def whole(self) -> bytes:
        """
        Every byte of the conversation.
        """
        return b"".join(self.frames)

    @property
    def splitOffset(self) -> int:
        """
        Where, in L{whole}, the bytes sent after the trigger begin.
        """
        return sum(len(piece) for piece in self.frames[: self.split])

    def stream(self, category: str, data: bytes | None = None) -> Stream:
        """
        Make a stream of this conversation, or of a mutation of it of the
        same length (cut at the same place).

        @param category: the stream's category.
        @param data: the bytes, or L{None} for the conversation as recorded.
        @return: the stream.
        """
        data = self.whole if data is None else data
        cut = self.splitOffset
        return Stream.after(category, data[:cut], self.trigger, data[cut:])

    def awaitingOutcome(self, category: str) -> Stream:
        """
        Make a stream of this producer conversation that sends the Transfer
        after the server's Flow, and the rest only after the server's
        Disposition (its outcome for the message).

        @param category: the stream's category.
        @return: the stream.
        """
        frames, split = self.frames, self.split
        return Stream(
            category,
            b"".join(frames[:split]),
            (
                (self.trigger, frames[split]),
                (DISPOSITION, b"".join(frames[split + 1 :])),
            ),
        )

    def streamOfFrames(self, category: str, pieces: Sequence[bytes]) -> Stream:
        """
        Make a stream of some of this conversation's frames, in any order:
        from the first of those that came after the trigger on, they wait
        for the trigger.

        @param category: the stream's category.
        @param pieces: the header and frames.
        @return: the stream.
        """
        late = set(self.frames[self.split :])
        first: list[bytes] = []
        then: list[bytes] = []
        for piece in pieces:
            (then if then or piece in late else first).append(piece)
        return Stream.after(category, b"".join(first), self.trigger, b"".join(then))

    def patched(self, old: bytes, new: bytes) -> Conversation:
        """
        Replace bytes in every frame by as many other bytes (so that no size
        changes): to put a string that is not UTF-8 in place of a name.

        @param old: the bytes to replace.
        @param new: their replacement, of the same length.
        @return: the new conversation.
        @raise ValueError: if the lengths differ or C{old} is nowhere.
        """
        if len(old) != len(new) or old not in self.whole:
            raise ValueError(f"cannot patch {old!r} with {new!r}")
        frames = tuple(piece.replace(old, new) for piece in self.frames)
        return Conversation(frames, self.split, self.trigger)


def frameCode(piece: bytes) -> int | None:
    """
    @param piece: a protocol header or a frame of L{Conversation.frames}.
    @return: the frame's performative code, or L{None} for a header or an
        empty frame.
    """
    if piece.startswith(b"AMQP") or len(piece) <= 8:
        return None
    answer = parseAnswer(piece)
    return answer.performatives[0].code if answer.performatives else None


class _Recorder:
    """
    A proton client engine and a proton server engine, connected in memory;
    the server attaches every link, gives senders credit, accepts messages,
    and sends one message, C{body}, to each receiver.
    """

    def __init__(self) -> None:
        self.client = Connection()
        self.client.container = "fuzz-client"
        self._clientTransport = Transport(Transport.CLIENT)
        self._clientTransport.bind(self.client)
        self._server = Connection()
        self._collector = Collector()
        self._server.collect(self._collector)
        self._serverTransport = Transport(Transport.SERVER)
        self._serverTransport.bind(self._server)
        self._sent: set[str] = set()
        self.output = bytearray()

    def openSession(self) -> Session:
        """
        Open the client's connection, and a session on it.

        @return: the session.
        """
        self.client.open()
        session = self.client.session()
        session.open()
        return session

    def settle(self) -> None:
        """
        Move bytes and answer events until nothing happens.
        """
        while self._pump() or self._serve():
            pass

    def _pump(self) -> bool:
        moved = False
        client, server = self._clientTransport, self._serverTransport
        for source, sink, record in ((client, server, True), (server, client, False)):
            pending = source.pending()
            if pending > 0:
                data = source.peek(pending) or b""
                source.pop(len(data))
                sink.push(data)
                if record:
                    self.output += data
                moved = True
        return moved

    def _serve(self) -> bool:
        moved = False
        collector = self._collector
        while (event := collector.peek()) is not None:
            collector.pop()
            moved = True
            kind = event.type
            if kind == Event.CONNECTION_REMOTE_OPEN:
                self._server.open()
            elif kind == Event.SESSION_REMOTE_OPEN:
                assert event.session is not None
                event.session.open()
            elif kind == Event.LINK_REMOTE_OPEN:
                link = event.link
                assert link is not None
                link.target.copy(link.remote_target)
                link.source.copy(link.remote_source)
                if link.remote_source.dynamic:
                    link.source.address = "fuzz-dynamic"
                link.open()
                if link.is_receiver:
                    link.flow(10)
            elif kind == Event.LINK_FLOW:
                link = event.link
                assert link is not None
                if link.is_sender and link.credit > 0 and link.name not in self._sent:
                    self._sent.add(link.name)
                    link.delivery("0")
                    link.send(Message(body="fuzz-0").encode())
                    link.advance()
            elif kind == Event.DELIVERY:
                delivery = event.delivery
                assert delivery is not None
                if delivery.link.is_receiver:
                    delivery.link.recv(delivery.pending)
                    delivery.link.advance()
                    delivery.update(delivery.ACCEPTED)
                    delivery.settle()
        return moved

    def conversation(
        self, codes: list[int | None], split: int, trigger: int
    ) -> Conversation:
        """
        @param codes: the performatives the client must have sent.
        @param split: the index of the first frame to send after the trigger.
        @param trigger: the trigger's code.
        @return: what the client sent.
        """
        data = bytes(self.output)
        pieces = [data[:8]]
        offset = 8
        while offset < len(data):
            size = int.from_bytes(data[offset : offset + 4], "big")
            pieces.append(data[offset : offset + size])
            offset += size
        found = [frameCode(piece) for piece in pieces]
        assert found == codes, found
        return Conversation(tuple(pieces), split, trigger)


def recordConversation(
    address: str | None = "fuzz",
    payload: bytes | None = None,
    relayTo: str = "fuzz-relay",
) -> Conversation:
    """
    Record, in memory, what a proton client sends to attach a sender and send
    one message, with a proton server engine answering: the header, Open,
    Begin, Attach, then (after the server's Flow) Transfer, Detach, End and
    Close.

    @param address: the sender's target address; L{None} for the anonymous
        relay (the message then carries the address C{relayTo}).
    @param payload: the Transfer's payload: an encoded message, or anything;
        by default a message with body C{"fuzz-0"} and an application
        property.
    @param relayTo: the message's address, for the anonymous relay.
    @return: the client's side of the conversation.
    """
    if payload is None:
        payload = Message(
            address=None if address is not None else relayTo,
            body="fuzz-0",
            properties={"fuzzed": True},
        ).encode()
    recorder = _Recorder()
    session = recorder.openSession()
    sender = session.sender("fuzz-sender")
    sender.target.address = address  # type: ignore[assignment]
    sender.open()
    recorder.settle()
    assert sender.credit > 0, "the server engine gave no credit"
    delivery = sender.delivery("0")
    sender.send(payload)
    sender.advance()
    recorder.settle()
    delivery.settle()
    sender.close()
    session.close()
    recorder.client.close()
    recorder.settle()
    return recorder.conversation(
        [None, OPEN, BEGIN, ATTACH, TRANSFER, DETACH, END, CLOSE], 4, FLOW
    )


def recordConsumer(address: str | None = "fuzz") -> Conversation:
    """
    Record, in memory, what a proton client sends to attach a receiver, take
    one message and release it.

    With an address: the header, Open, Begin, Attach, Flow, then (after the
    server's Transfer) a Disposition (released, settled), Detach, End and
    Close.  With L{None}, a dynamic receiver (the server makes a temporary
    queue), which gets no message: the header, Open, Begin, Attach, Flow,
    then (after the server's Attach) Detach, End and Close.

    @param address: the source address, or L{None} for a dynamic source.
    @return: the client's side of the conversation.
    """
    recorder = _Recorder()
    session = recorder.openSession()
    receiver = session.receiver("fuzz-receiver")
    if address is None:
        receiver.source.dynamic = True
    else:
        receiver.source.address = address
    receiver.open()
    receiver.flow(1)
    recorder.settle()
    if address is not None:
        delivery = receiver.current
        assert delivery is not None and not delivery.partial, "no message"
        receiver.recv(delivery.pending)
        delivery.update(delivery.RELEASED)
        delivery.settle()
    receiver.close()
    session.close()
    recorder.client.close()
    recorder.settle()
    if address is None:
        codes = [None, OPEN, BEGIN, ATTACH, FLOW, DETACH, END, CLOSE]
        return recorder.conversation(codes, 5, ATTACH)
    codes = [None, OPEN, BEGIN, ATTACH, FLOW, DISPOSITION, DETACH, END, CLOSE]
    return recorder.conversation(codes, 5, TRANSFER)


# --- generators ------------------------------------------------------------------


def tlsClientHello() -> bytes:
    """
    @return: the first bytes of a real TLS client (OpenSSL's ClientHello).
    """
    connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    hello: bytes = connection.bio_read(65536)
    return hello


def foreignHeaders() -> list[Stream]:
    """
    @return: streams that open with another protocol, or another version of
        AMQP: HTTP, TLS, SSH, AMQP 0-9-1 and 0-10, AMQP 1.0 over TLS (the
        protocol id 2 header, on a cleartext port), unknown AMQP versions,
        zeros, and the AMQP header in lower case.
    """
    return [
        Stream("http", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        Stream("tls-client-hello", tlsClientHello()),
        Stream("ssh", b"SSH-2.0-OpenSSH_9.6\r\n"),
        Stream("amqp-0-9-1", b"AMQP\x00\x00\x09\x01"),
        Stream("amqp-0-10", b"AMQP\x01\x01\x00\x0a"),
        Stream("amqp-tls-header", b"AMQP\x02\x01\x00\x00"),
        Stream("amqp-2.0", b"AMQP\x00\x02\x00\x00"),
        Stream("amqp-1.0.1", b"AMQP\x00\x01\x00\x01"),
        Stream("amqp-sasl-1.1", b"AMQP\x03\x01\x01\x00"),
        Stream("zeros", b"\x00" * 64),
        Stream("lowercase", b"amqp\x00\x01\x00\x00"),
    ]


def _randomBytes(rng: Random, low: int, high: int) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def randomBytes(rng: Random, count: int) -> Iterator[Stream]:
    """
    @param rng: the source of randomness.
    @param count: how many streams.
    @return: streams of 1 to 1024 random bytes that do not begin with
        C{AMQP} (their first byte is not C{A}).
    """
    for _ in range(count):
        data = _randomBytes(rng, 1, 1024)
        if data[:1] == b"A":
            data = b"B" + data[1:]
        yield Stream("random", data)


def randomAfterHeader(rng: Random, header: bytes, count: int) -> Iterator[Stream]:
    """
    @param rng: the source of randomness.
    @param header: the protocol header to begin with.
    @param count: how many streams.
    @return: streams of the header then 1 to 1024 random bytes.
    """
    name = "sasl" if header == SASL_HEADER else "amqp"
    for _ in range(count):
        yield Stream(f"{name}-header+random", header + _randomBytes(rng, 1, 1024))


def _randomPerformative(rng: Random, codes: Sequence[int]) -> bytes:
    """
    A random body that looks like a performative: a known descriptor, then
    random bytes, or a described list of random encoded values.
    """
    code = rng.choice(codes)
    if rng.random() < 0.5:
        return b"\x00\x53" + bytes([code]) + _randomBytes(rng, 0, 64)
    fields: list[Any] = []
    for _ in range(rng.randint(0, 8)):
        fields.append(
            rng.choice(
                [
                    None,
                    rng.random() < 0.5,
                    rng.randrange(2**32),
                    -rng.randrange(2**31),
                    rng.randbytes(rng.randint(0, 16)),
                    "".join(chr(rng.randint(32, 0x2FF)) for _ in range(8)),
                    [rng.randrange(256)],
                    {"k": rng.randrange(256)},
                ]
            )
        )
    return performative(code, fields)


def randomFrames(
    rng: Random, count: int, conversation: Conversation, sasl: bool = False
) -> Iterator[Stream]:
    """
    Well-sized frames with random bodies: one to three, after the protocol
    header (SASL: as the client's C{sasl-init}; AMQP: instead of the Open),
    or, for AMQP, after the conversation's Open, Begin and Attach (in the
    place of the Transfer).

    @param rng: the source of randomness.
    @param count: how many streams.
    @param conversation: the valid conversation to start from.
    @param sasl: whether to make SASL frames after the SASL header.
    @return: the streams.
    """
    codes = (
        list(range(SASL_MECHANISMS, SASL_OUTCOME + 1))
        if sasl
        else list(range(OPEN, CLOSE + 1))
    )
    kind = _SASL_FRAME if sasl else _AMQP_FRAME
    for index in range(count):
        frames = b"".join(
            frame(
                _randomPerformative(rng, codes),
                kind=kind if rng.random() < 0.9 else rng.randrange(256),
                channel=rng.choice([0, 0, 0, 1, rng.randrange(2**16)]),
            )
            for _ in range(rng.randint(1, 3))
        )
        if sasl:
            yield Stream("sasl-random-frames", SASL_HEADER + frames)
        elif index % 2:
            yield Stream("amqp-random-frames", AMQP_HEADER + frames)
        else:
            setup = b"".join(conversation.frames[: conversation.split])
            yield Stream.after("amqp-random-frames-after-attach", setup, FLOW, frames)


def absurdSizes(conversation: Conversation, maxFrameSize: int) -> list[Stream]:
    """
    Frames whose size field is impossible (0 and 7: smaller than a frame
    header), enormous (2**31, 2**32-1), or beyond the server's maximum frame
    size: in the SASL layer, where the AMQP Open belongs, and after the
    Attach.

    @param conversation: the valid conversation to start from.
    @param maxFrameSize: the server's largest frame.
    @return: the streams.
    """
    setup = b"".join(conversation.frames[: conversation.split])
    streams = []
    for size in [0, 7, maxFrameSize + 1, 2**31, 2**32 - 1]:
        bad = frame(b"\x00\x53\x10\x45", size=size)
        streams += [
            Stream(f"amqp-size-{size}-before-open", AMQP_HEADER + bad),
            Stream.after(f"amqp-size-{size}-after-attach", setup, FLOW, bad),
        ]
    for size in [0, 7, 65537, 2**31, 2**32 - 1]:
        bad = frame(b"\x00\x53\x41\x45", kind=_SASL_FRAME, size=size)
        streams.append(Stream(f"sasl-size-{size}", SASL_HEADER + bad))
    return streams


def oversizedFrames(conversation: Conversation, maxFrameSize: int) -> list[Stream]:
    """
    Whole, well-formed frames larger than the server's maximum frame size:
    an Open with a large host name, and a Transfer with a large payload.

    @param conversation: the valid conversation to start from.
    @param maxFrameSize: the server's largest frame.
    @return: the streams.
    """
    big = "x" * (maxFrameSize * 2)
    hugeOpen = frame(performative(OPEN, ["fuzz-client", big]))
    setup = b"".join(conversation.frames[: conversation.split])
    transfer = conversation.frames[conversation.split]
    hugeTransfer = transfer + b"\x00\x53\x77\xb1" + b"y" * (maxFrameSize * 2)
    size = len(hugeTransfer).to_bytes(4, "big")
    return [
        Stream("oversized-open", AMQP_HEADER + hugeOpen),
        Stream.after("oversized-transfer", setup, FLOW, size + hugeTransfer[4:]),
    ]


def bitFlips(rng: Random, conversation: Conversation, count: int) -> Iterator[Stream]:
    """
    @param rng: the source of randomness.
    @param conversation: the valid conversation to start from.
    @param count: how many streams.
    @return: the conversation with one to three random bits flipped (never
        in the protocol header, which other streams cover).
    """
    whole = conversation.whole
    for _ in range(count):
        data = bytearray(whole)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(8, len(data))
            data[position] ^= 1 << rng.randrange(8)
        yield conversation.stream("bit-flip", bytes(data))


_INTERESTING = [0x00, 0x01, 0x40, 0x41, 0x42, 0x45, 0x7F, 0x80, 0xA0, 0xC0, 0xFF]
"""
Bytes that mean something in AMQP's type system: null, true, false, empty
list, and the constructors of the variable-width types at their edges.
"""


def byteSubstitutions(
    rng: Random, conversation: Conversation, count: int
) -> Iterator[Stream]:
    """
    @param rng: the source of randomness.
    @param conversation: the valid conversation to start from.
    @param count: how many streams.
    @return: the conversation with one byte replaced by one that means
        something to the decoder (see L{_INTERESTING}).
    """
    whole = conversation.whole
    for _ in range(count):
        data = bytearray(whole)
        data[rng.randrange(8, len(data))] = rng.choice(_INTERESTING)
        yield conversation.stream("byte-substitution", bytes(data))


def truncations(conversation: Conversation, offsets: Sequence[int]) -> list[Stream]:
    """
    @param conversation: the valid conversation to start from.
    @param offsets: where to cut it.
    @return: the conversation cut at each offset, followed by the client's
        end of stream.
    """
    whole = conversation.whole
    return [Stream("truncation", whole[:offset], endWithEOF=True) for offset in offsets]


def duplicatedFrames(conversation: Conversation) -> dict[int | None, Stream]:
    """
    @param conversation: the valid conversation to start from.
    @return: for each frame (and the header, code L{None}), the conversation
        with that frame sent twice in a row, by the frame's performative code.
    """
    streams: dict[int | None, Stream] = {}
    frames = conversation.frames
    for index, piece in enumerate(frames):
        code = frameCode(piece)
        pieces = [*frames[: index + 1], piece, *frames[index + 1 :]]
        streams[code] = conversation.streamOfFrames(f"duplicate-{code}", pieces)
    return streams


def droppedFrames(conversation: Conversation) -> dict[int, Stream]:
    """
    @param conversation: the valid conversation to start from.
    @return: for each frame, the conversation without it, by the frame's
        performative code.
    """
    streams: dict[int, Stream] = {}
    frames = conversation.frames
    for index, piece in enumerate(frames[1:], 1):
        code = frameCode(piece)
        assert code is not None
        pieces = [*frames[:index], *frames[index + 1 :]]
        streams[code] = conversation.streamOfFrames(f"dropped-{code}", pieces)
    return streams


# --- answers ---------------------------------------------------------------------


def _owned(value: Any) -> Any:
    """
    Copy what proton decoded out of its buffers (binary values are memory
    views into them), also inside lists, maps and described values.
    """
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, Described):
        return Described(value.descriptor, _owned(value.value))
    if isinstance(value, dict):
        return {_owned(k): _owned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_owned(v) for v in value]
    return value


@dataclass(frozen=True)
class Performative:
    """
    One decoded frame body.

    @ivar code: the descriptor's numeric code (C{0x18} for Close...).
    @ivar fields: the described list's items, in proton's Python types.
    @ivar sasl: whether it came in a SASL frame.
    @ivar channel: the frame's channel.
    @ivar decoded: whether the body could be decoded; if not (a string that
        is not UTF-8, say), C{fields} is empty.
    """

    code: int
    fields: list[Any]
    sasl: bool
    channel: int
    decoded: bool = True

    def field(self, index: int) -> Any:
        """
        @param index: a field's position.
        @return: the field, or L{None} if the list is shorter.
        """
        return self.fields[index] if index < len(self.fields) else None


@dataclass(frozen=True)
class Answer:
    """
    What a server wrote on one connection, decoded.

    @ivar headers: the protocol headers, in order.
    @ivar performatives: the non-empty frames' performatives, in order.
    @ivar rest: bytes at the end that are no whole frame (a server that was
        cut off, or one that writes garbage).
    @ivar emptyFrames: how many empty frames (heartbeats) there were.
    """

    headers: tuple[bytes, ...] = ()
    performatives: tuple[Performative, ...] = ()
    rest: bytes = b""
    emptyFrames: int = 0

    @property
    def codes(self) -> list[int]:
        """
        The performatives' codes, in order.
        """
        return [p.code for p in self.performatives]

    def first(self, code: int) -> Performative | None:
        """
        @param code: a performative code.
        @return: the first performative with that code, or L{None}.
        """
        for p in self.performatives:
            if p.code == code:
                return p
        return None

    @property
    def closeCondition(self) -> str | None:
        """
        The error condition of the server's Close, or L{None} (no Close, or
        a Close without an error).
        """
        close = self.first(CLOSE)
        error = None if close is None else close.field(0)
        if not isinstance(error, Described) or error.descriptor != _ERROR:
            return None
        if not isinstance(error.value, list):
            return None
        condition = error.value[0] if error.value else None
        return None if condition is None else str(condition)

    @property
    def saslOutcome(self) -> int | None:
        """
        The code of the server's C{sasl-outcome}, or L{None}.
        """
        outcome = self.first(SASL_OUTCOME)
        return None if outcome is None else int(outcome.field(0))


def parseAnswer(data: bytes) -> Answer:
    """
    Split a server's output into protocol headers and frames, and decode each
    frame's performative (the payload of a Transfer is left alone).

    @param data: what the server wrote, from the start of the connection.
    @return: the decoded answer.
    """
    headers: list[bytes] = []
    performatives: list[Performative] = []
    empty = 0
    offset = 0
    while offset < len(data):
        if data[offset : offset + 4] == b"AMQP":
            if len(data) - offset < 8:
                break
            headers.append(data[offset : offset + 8])
            offset += 8
            continue
        if len(data) - offset < 8:
            break
        size = int.from_bytes(data[offset : offset + 4], "big")
        doff = data[offset + 4]
        if size < 8 or doff < 2 or doff * 4 > size or offset + size > len(data):
            break
        body = data[offset + doff * 4 : offset + size]
        kind = data[offset + 5]
        channel = int.from_bytes(data[offset + 6 : offset + 8], "big")
        if not body:
            empty += 1
            offset += size
            continue
        decoder = Data()
        try:
            decoder.decode(body)
            value = _owned(decoder.get_object())
        except Exception:
            # Well framed, but not decodable by proton's Python layer (a
            # string that is not UTF-8, say, echoed from the client).
            value = None
        if isinstance(value, Described) and isinstance(value.value, list):
            code, fields, decoded = value.descriptor, value.value, True
        elif body[:2] == b"\x00\x53" and len(body) > 2:
            code, fields, decoded = body[2], [], False
        else:
            break
        if not isinstance(code, int):
            break
        performatives.append(
            Performative(int(code), fields, kind == _SASL_FRAME, channel, decoded)
        )
        offset += size
    return Answer(tuple(headers), tuple(performatives), data[offset:], empty)
