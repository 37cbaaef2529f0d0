"""
Tests for L{amqptx._raw}: the hot path's direct calls into proton's C
engine give what proton's own Python layer gives.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from proton import Message
from twisted.trial.unittest import SynchronousTestCase

from amqptx._raw import encodeMessage

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
    )
    def test_sameAsProton(
        self,
        body: Any,
        properties: dict[str, int] | None,
        address: str | None,
        durable: bool,
    ) -> None:
        """
        Any body, with or without application properties, an address and a
        header, gives proton's bytes.
        """
        message = Message(body=body, properties=properties, address=address)
        message.durable = durable
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
