"""
Tests for L{amqptx._raw}: the hot path's direct calls into proton's C
engine give what proton's own Python layer gives.
"""

from __future__ import annotations

from typing import Any

from cproton_ffi import ffi
from hypothesis import given
from hypothesis import strategies as st
from proton import Connection, Message
from twisted.trial.unittest import SynchronousTestCase

from amqptx._raw import encodeMessage, lib, sendMessage

_values = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.text(max_size=300),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.lists(st.integers(min_value=0, max_value=1000), max_size=20),
    st.dictionaries(st.text(max_size=10), st.binary(max_size=20), max_size=5),
)


class EncodeTests(SynchronousTestCase):
    """
    L{encodeMessage} encodes exactly as C{Message.encode}.
    """

    @given(
        body=_values,
        properties=st.none()
        | st.dictionaries(st.text(max_size=10), st.integers(0, 9), max_size=4),
        address=st.none() | st.text(max_size=30),
        durable=st.booleans(),
        inferred=st.booleans(),
    )
    def test_sameAsProton(
        self,
        body: Any,
        properties: dict[str, int] | None,
        address: str | None,
        durable: bool,
        inferred: bool,
    ) -> None:
        """
        Any body, with or without application properties, an address and a
        header, inferred (binary in a data section) or not, gives proton's
        bytes.
        """
        message = Message(body=body, properties=properties, address=address)
        message.durable = durable
        message.inferred = inferred
        self.assertEqual(encodeMessage(message), message.encode())

    def test_large(self) -> None:
        """
        Bodies larger than the reused buffer (64 KiB) come out whole: binary,
        and text of up to four bytes a character.
        """
        for body in (b"x" * 200_000, "\U0001f600" * 50_000, {"k": "v" * 70_000}):
            message = Message(body=body)
            self.assertEqual(encodeMessage(message), message.encode())

    def test_reused(self) -> None:
        """
        A message encoded again after a change gives its new encoding (no
        leftover of the previous body, annotations or properties).
        """
        message = Message(body=b"first", properties={"a": 1}, annotations={"x-b": 2})
        encodeMessage(message)
        message.properties = None
        message.annotations = None
        message.body = b"second"
        self.assertEqual(encodeMessage(message), Message(body=b"second").encode())

    def test_sizes(self) -> None:
        """
        Bodies of bytes and text around the sizes where their encoding
        changes (one byte of size up to 255, four beyond) and around the
        reused buffer's size, in a data section or not, and messages whose
        other sections alone overflow the reused buffer, come out whole.
        """
        sizes = (0, 1, 255, 256, 65535, 65536, 65537)
        for size in sizes:
            for body in (b"b" * size, "s" * size, "\u00e9" * size):
                for address in (None, "a" * 70_000):
                    for inferred in (False, True):
                        message = Message(body=body, address=address)
                        message.inferred = inferred
                        self.assertEqual(encodeMessage(message), message.encode())


class SendMessageTests(SynchronousTestCase):
    """
    L{sendMessage} puts a whole message on a sending link as one delivery.
    """

    def test_buffers(self) -> None:
        """
        The message may be bytes or another buffer: each gives a delivery
        with the tag, holding the message's bytes, and the link moves on.
        """
        connection = Connection()
        link = connection.session().sender("s")
        link.open()
        for tag, data in [(b"1", b"abc"), (b"2", bytearray(b"defg"))]:
            delivery = sendMessage(link._impl, tag, data)  # type: ignore[arg-type]
            self.assertEqual(lib.pn_delivery_pending(delivery), len(data))
            sent = lib.pn_delivery_tag(delivery)
            self.assertEqual(ffi.unpack(sent.start, sent.size), tag)
            self.assertNotEqual(lib.pn_link_current(link._impl), delivery)
