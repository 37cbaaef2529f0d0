# -*- test-case-name: tests.test_broker_sections -*-
"""
Tests for L{amqptx.broker._sections}: the header and property fields the
broker reads and rewrites in encoded messages, checked against proton's own
encoding and decoding.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from proton import Message
from twisted.trial.unittest import SynchronousTestCase

from amqptx._engine import decodeMessage
from amqptx.broker._sections import (
    MalformedMessage,
    _skip,
    rewriteHeader,
    summarize,
)

_messages = st.builds(
    Message,
    body=st.one_of(
        st.none(), st.text(max_size=20), st.binary(max_size=300), st.integers(0, 9)
    ),
    address=st.one_of(st.none(), st.text(min_size=1, max_size=300)),
    ttl=st.one_of(st.just(0), st.integers(1, 2**32 - 1).map(lambda ms: ms / 1000)),
    expiry_time=st.one_of(st.just(0), st.integers(1, 2**50).map(lambda ms: ms / 1000)),
    first_acquirer=st.booleans(),
    delivery_count=st.integers(0, 2**32 - 2),
    durable=st.booleans(),
    priority=st.integers(0, 255),
    subject=st.one_of(st.none(), st.text(max_size=10)),
    id=st.one_of(st.none(), st.integers(0, 2**63 - 1), st.text(max_size=10)),
    properties=st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)),
    ),
    annotations=st.one_of(
        st.none(), st.dictionaries(st.sampled_from(["x-opt-a", "x-opt-b"]), st.text())
    ),
    instructions=st.one_of(
        st.none(), st.dictionaries(st.just("i"), st.integers(-(2**63), 2**63 - 1))
    ),
)


def _fields(message: Message) -> tuple[Any, ...]:
    """
    Every field of a message but its header's first-acquirer and
    delivery-count.
    """
    return (
        message.body,
        message.address,
        message.ttl,
        message.expiry_time,
        message.durable,
        message.priority,
        message.subject,
        message.id,
        message.properties,
        message.annotations,
        message.instructions,
    )


# A header (long descriptor, list32) with ttl 5000, first-acquirer true and
# delivery-count 300, then properties with a symbolic descriptor, to
# "q" and absolute-expiry-time 7, then a value body.
_UNUSUAL = (
    b"\x00\x80\x00\x00\x00\x00\x00\x00\x00\x70"
    b"\xd0\x00\x00\x00\x12\x00\x00\x00\x05"
    b"\x42\x40\x70\x00\x00\x13\x88\x56\x01\x70\x00\x00\x01\x2c"
    b"\x00\xa3\x14amqp:properties:list"
    b"\xc0\x14\x09\x40\x40\xa1\x01q\x40\x40\x40\x40\x40\x83\x00\x00\x00\x00"
    b"\x00\x00\x00\x07"
    b"\x00\x53\x77\xa1\x02hi"
)


class SummarizeTests(SynchronousTestCase):
    """
    L{summarize} reads C{ttl}, C{absolute-expiry-time} and C{to}.
    """

    @given(_messages)
    def test_likeProton(self, message: Message) -> None:
        """
        For every message proton encodes, the summary holds what proton
        decodes.
        """
        data = bytes(message.encode())
        summary = summarize(data)
        decoded = decodeMessage(data)
        self.assertEqual(summary.ttl, round(decoded.ttl * 1000) or None)
        self.assertEqual(
            summary.absoluteExpiry, round(decoded.expiry_time * 1000) or None
        )
        self.assertEqual(summary.to, decoded.address)

    def test_unusualEncodings(self) -> None:
        """
        Long and symbolic descriptors, and 32-bit lists, are read too.
        """
        self.assertEqual(decodeMessage(_UNUSUAL).body, "hi")
        summary = summarize(_UNUSUAL)
        self.assertEqual(
            (summary.ttl, summary.absoluteExpiry, summary.to), (5000, 7, "q")
        )
        self.assertEqual(repr(summary), "Summary(ttl=5000, absoluteExpiry=7, to='q')")

    def test_noSections(self) -> None:
        """
        An empty message, or one with only a body, has nothing to say.
        """
        for data in (b"", b"\x00\x53\x77\x40"):
            summary = summarize(data)
            self.assertEqual(
                (summary.ttl, summary.absoluteExpiry, summary.to), (None,) * 3
            )

    def test_toNotUTF8(self) -> None:
        """
        A C{to} that is not UTF-8 is no address.
        """
        data = b"\x00\x53\x73\xc0\x05\x03\x40\x40\xa1\x01\xff"
        self.assertIsNone(summarize(data).to)

    def test_malformed(self) -> None:
        """
        What is not a message raises L{MalformedMessage}.
        """
        for data in (
            b"hello",
            b"\x00\x53",
            b"\x00\x53\x70\xc0\x05\x03\x40\x40",
            b"\x00\x53\x70\xc0\x03\x03\x40\x40\x55\x01",
            b"\x00\x53\x73\xc0\x04\x03\x40\x40\xa1\x05ab",
            b"\x00\x53\x73\xc0\x04\x03\x40\x40\x71\x00\x00\x00\x01",
            b"\x00\x53\x73\xc0\x0b\x09\x40\x40\x40\x40\x40\x40\x40\x40\x71",
            b"\x00\x53\x70\x71",
            b"\x00\x53\x71\x01",
            b"\x00\x45",
        ):
            self.assertRaises(MalformedMessage, summarize, data)


class RewriteHeaderTests(SynchronousTestCase):
    """
    L{rewriteHeader} prepares a message for redelivery.
    """

    @given(_messages, st.booleans())
    def test_likeProton(self, message: Message, increment: bool) -> None:
        """
        The rewritten message decodes as the original with C{first-acquirer}
        false and, for a failed delivery, C{delivery-count} one higher;
        everything after the header is the same bytes.
        """
        data = bytes(message.encode())
        rewritten, count = rewriteHeader(data, increment)
        before, after = decodeMessage(data), decodeMessage(rewritten)
        expected = before.delivery_count + (1 if increment else 0)
        self.assertEqual(count, expected)
        self.assertEqual(after.delivery_count, expected)
        self.assertFalse(after.first_acquirer)
        self.assertEqual(_fields(after), _fields(before))
        rest = data[_skip(data, 0) :]
        self.assertEqual(rewritten[-len(rest) :], rest)

    def test_unchanged(self) -> None:
        """
        Without an increment, a message whose C{first-acquirer} is already
        false is given back as it is.
        """
        data = bytes(Message(body=1, delivery_count=3).encode())
        self.assertIs(rewriteHeader(data, False)[0], data)
        self.assertEqual(rewriteHeader(data, False)[1], 3)

    def test_noHeader(self) -> None:
        """
        A message without a header gets one.
        """
        data = b"\x00\x53\x77\xa1\x02hi"
        self.assertIs(rewriteHeader(data, False)[0], data)
        rewritten, count = rewriteHeader(data, True)
        self.assertEqual(count, 1)
        self.assertEqual(decodeMessage(rewritten).delivery_count, 1)
        self.assertTrue(rewritten.endswith(data))

    def test_unusualEncodings(self) -> None:
        """
        A long descriptor and a 32-bit list are read, and the other fields
        kept as they were encoded.
        """
        rewritten, count = rewriteHeader(_UNUSUAL, True)
        self.assertEqual(count, 301)
        message = decodeMessage(rewritten)
        self.assertEqual(
            (message.ttl, message.first_acquirer, message.delivery_count),
            (5.0, False, 301),
        )
        self.assertEqual(message.body, "hi")
        self.assertTrue(rewritten.endswith(_UNUSUAL[33:]))

    def test_largeHeader(self) -> None:
        """
        A header too large for an 8-bit list is written as a 32-bit list.
        """
        header = b"\x00\x53\x70\xc0\xff\x06" + b"\x40" * 5 + b"\xa1\xf8" + b"x" * 248
        data = header + b"\x00\x53\x77\x40"
        rewritten, count = rewriteHeader(data, True)
        self.assertEqual(count, 1)
        self.assertEqual(rewritten[3], 0xD0)
        self.assertEqual(decodeMessage(rewritten).delivery_count, 1)

    def test_malformed(self) -> None:
        """
        A header that cannot be read raises L{MalformedMessage}.
        """
        for data in (
            b"\x00\x53\x70\xc0\x03\x05\x40",
            b"\x00\x53\x70\xc0\x06\x05\x40\x40\x40\x40\x71",
            b"\x00\x53\x70\xc0\x06\x05\x40\x40\x40\x71\x40",
            b"\x00\x99",
        ):
            self.assertRaises(MalformedMessage, rewriteHeader, data, True)
