# -*- test-case-name: tests.test_broker_sections -*-
"""
The few fields of an encoded AMQP message that the broker acts on, read and
rewritten without decoding the whole message.

An encoded message is a run of sections, each a described AMQP value:
C{header}, C{delivery-annotations}, C{message-annotations}, C{properties},
C{application-properties}, the body, C{footer} (AMQP 1.0, part 3.2).  The
broker needs only the header's C{ttl}, C{first-acquirer} and
C{delivery-count}, and the properties' C{to} and C{absolute-expiry-time}.
Every AMQP encoding gives the width of its value in its constructor byte, so
the sections before those fields are skipped without being decoded: reading
a message's L{Summary} costs a few microseconds, where proton's full decoding
costs about ten times that.

Rewriting the header for a redelivery keeps every other byte of the message
as it came: the bare message (properties, application properties, body) is
immutable for an intermediary (part 3.2), which re-encoding through proton's
C{Message} would not guarantee.

Anything this reader does not understand raises L{MalformedMessage}; the
broker then falls back on proton's decoder.
"""

from __future__ import annotations

from struct import Struct

__all__ = ["MalformedMessage", "Summary", "rewriteHeader", "summarize"]

_HEADER = 0x70
_DELIVERY_ANNOTATIONS = 0x71
_MESSAGE_ANNOTATIONS = 0x72
_PROPERTIES = 0x73

# A section's descriptor may also be its symbolic name.
_SYMBOLIC = {
    b"amqp:header:list": 0x70,
    b"amqp:delivery-annotations:map": 0x71,
    b"amqp:message-annotations:map": 0x72,
    b"amqp:properties:list": 0x73,
    b"amqp:application-properties:map": 0x74,
    b"amqp:data:binary": 0x75,
    b"amqp:amqp-sequence:list": 0x76,
    b"amqp:amqp-value:*": 0x77,
    b"amqp:footer:map": 0x78,
}

_U32 = Struct(">I")
_U64 = Struct(">Q")
_I64 = Struct(">q")

# Fixed widths by the constructor's high nibble (AMQP 1.0, part 1.2):
# 0x4_ nothing, 0x5_ one byte, 0x6_ two, 0x7_ four, 0x8_ eight, 0x9_ sixteen.
_FIXED = {0x40: 0, 0x50: 1, 0x60: 2, 0x70: 4, 0x80: 8, 0x90: 16}


class MalformedMessage(ValueError):
    """
    The bytes are not an AMQP message this reader understands.
    """


class Summary:
    """
    What the broker needs to know of a message.

    @ivar ttl: the header's time to live in milliseconds, or L{None} (also
        for zero, which proton sends for "no time to live").
    @ivar absoluteExpiry: the properties' absolute expiry time in
        milliseconds since the epoch, or L{None} (also for zero, which
        proton sends for "none").
    @ivar to: the properties' C{to} address, or L{None} (also for one that
        is not UTF-8).
    """

    __slots__ = ("absoluteExpiry", "to", "ttl")

    def __init__(
        self, ttl: int | None, absoluteExpiry: int | None, to: str | None
    ) -> None:
        self.ttl = ttl
        self.absoluteExpiry = absoluteExpiry
        self.to = to

    def __repr__(self) -> str:
        return (
            f"Summary(ttl={self.ttl!r}, absoluteExpiry={self.absoluteExpiry!r}, "
            f"to={self.to!r})"
        )


def _skip(data: bytes, pos: int) -> int:
    """
    @return: the position after the value that starts at C{pos}.
    @raise MalformedMessage: for an unknown constructor or a value that runs
        past the end.
    """
    try:
        code = data[pos]
        if code == 0x00:
            # A described value: its descriptor, then the value.
            return _skip(data, _skip(data, pos + 1))
        high = code & 0xF0
        width = _FIXED.get(high)
        if width is not None:
            end = pos + 1 + width
        elif high in (0xA0, 0xC0, 0xE0):
            end = pos + 2 + data[pos + 1]
        elif high in (0xB0, 0xD0, 0xF0):
            end = pos + 5 + _U32.unpack_from(data, pos + 1)[0]
        else:
            raise MalformedMessage(f"unknown constructor 0x{code:02x}")
    except IndexError:
        raise MalformedMessage("truncated value") from None
    if end > len(data):
        raise MalformedMessage("truncated value")
    return end


def _section(data: bytes, pos: int) -> tuple[int, int]:
    """
    Read the descriptor of the section at C{pos}.

    @return: the section's code (C{0x70} for the header...) and the position
        of its value.
    @raise MalformedMessage: when no section starts at C{pos}.
    """
    if data[pos] != 0x00:
        raise MalformedMessage("a section must be a described value")
    code = data[pos + 1]
    if code == 0x53:
        return data[pos + 2], pos + 3
    if code == 0x80:
        return _U64.unpack_from(data, pos + 2)[0], pos + 10
    if code == 0x44:
        return 0, pos + 2
    if code in (0xA3, 0xB3):
        start = _skip(data, pos + 1)
        name = data[pos + 3 : start] if code == 0xA3 else data[pos + 6 : start]
        return _SYMBOLIC.get(bytes(name), -1), start
    raise MalformedMessage(f"unknown section descriptor 0x{code:02x}")


def _fields(data: bytes, pos: int) -> tuple[int, int, int]:
    """
    Open the list at C{pos}.

    @return: how many fields it has, where the first starts, and where the
        list ends.
    """
    code = data[pos]
    if code == 0x45 or code == 0x40:
        return 0, pos + 1, pos + 1
    if code == 0xC0:
        return data[pos + 2], pos + 3, pos + 2 + data[pos + 1]
    if code == 0xD0:
        size, count = (
            _U32.unpack_from(data, pos + 1)[0],
            _U32.unpack_from(data, pos + 5)[0],
        )
        return count, pos + 9, pos + 5 + size
    raise MalformedMessage(f"expected a list, found 0x{code:02x}")


def _uint(data: bytes, pos: int) -> int | None:
    code = data[pos]
    if code == 0x40:
        return None
    if code == 0x43 or code == 0x44:
        return 0
    if code == 0x52 or code == 0x53:
        return data[pos + 1]
    if code == 0x70:
        return int(_U32.unpack_from(data, pos + 1)[0])
    if code == 0x80:
        return int(_U64.unpack_from(data, pos + 1)[0])
    raise MalformedMessage(f"expected an unsigned integer, found 0x{code:02x}")


def _bool(data: bytes, pos: int) -> bool | None:
    code = data[pos]
    if code == 0x40:
        return None
    if code == 0x41:
        return True
    if code == 0x42:
        return False
    if code == 0x56:
        return data[pos + 1] != 0
    raise MalformedMessage(f"expected a boolean, found 0x{code:02x}")


def _timestamp(data: bytes, pos: int) -> int | None:
    code = data[pos]
    if code == 0x40:
        return None
    if code == 0x83:
        return int(_I64.unpack_from(data, pos + 1)[0])
    raise MalformedMessage(f"expected a timestamp, found 0x{code:02x}")


def _string(data: bytes, pos: int) -> str | None:
    code = data[pos]
    if code == 0x40:
        return None
    if code in (0xA1, 0xA3):
        start = pos + 2
    elif code in (0xB1, 0xB3):
        start = pos + 5
    else:
        raise MalformedMessage(f"expected a string, found 0x{code:02x}")
    try:
        return bytes(data[start : _skip(data, pos)]).decode("utf-8")
    except UnicodeDecodeError:
        # Not an address anyone can use: as good as none.
        return None


def summarize(data: bytes) -> Summary:
    """
    Read a message's time to live, absolute expiry time and C{to} address.

    @param data: the encoded message, as it arrived on a link.
    @return: the summary.
    @raise MalformedMessage: when C{data} is not a message this reader
        understands.
    """
    ttl = absoluteExpiry = None
    to = None
    pos, end = 0, len(data)
    try:
        while pos < end:
            code, value = _section(data, pos)
            if code == _HEADER:
                count, field, _ = _fields(data, value)
                if count > 2:
                    field = _skip(data, _skip(data, field))
                    ttl = _uint(data, field) or None
            elif code == _PROPERTIES:
                count, field, _ = _fields(data, value)
                for index in range(min(count, 9)):
                    if index == 2:
                        to = _string(data, field)
                    elif index == 8:
                        absoluteExpiry = _timestamp(data, field) or None
                        break
                    field = _skip(data, field)
                break
            elif code not in (_DELIVERY_ANNOTATIONS, _MESSAGE_ANNOTATIONS):
                break
            pos = _skip(data, value)
    except IndexError:
        raise MalformedMessage("truncated message") from None
    return Summary(ttl, absoluteExpiry, to)


def _encodeUint(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    if value < 256:
        return bytes((0x52, value))
    return b"\x70" + _U32.pack(value)


_DEFAULT_FIELDS = (b"\x40", b"\x40", b"\x40", b"\x42", b"\x43")
"""
The header's five fields when the message has no header: durable, priority,
ttl, first-acquirer and delivery-count, all at their defaults.
"""


def rewriteHeader(data: bytes, increment: bool) -> tuple[bytes, int]:
    """
    Prepare a message for redelivery: C{first-acquirer} false and, for a
    failed delivery, C{delivery-count} one higher.  Every other byte stays as
    it was.

    @param data: the encoded message.
    @param increment: whether to count one more failed delivery.
    @return: the message to deliver (C{data} itself when nothing had to
        change) and its delivery count.
    @raise MalformedMessage: when the header cannot be read.
    """
    try:
        if data[:1] == b"\x00":
            code, value = _section(data, 0)
        else:
            code = value = -1
        if code == _HEADER:
            count, field, listEnd = _fields(data, value)
            raw: list[bytes] = []
            for _ in range(count):
                after = _skip(data, field)
                raw.append(bytes(data[field:after]))
                field = after
            rest = data[listEnd:]
        else:
            raw = []
            rest = data
    except IndexError:
        raise MalformedMessage("truncated header") from None
    fields = raw + list(_DEFAULT_FIELDS[len(raw) :])
    firstAcquirer = _bool(fields[3], 0)
    deliveryCount = _uint(fields[4], 0) or 0
    if not increment:
        if not firstAcquirer:
            return data, deliveryCount
    else:
        deliveryCount += 1
    fields[3] = b"\x42"
    fields[4] = _encodeUint(deliveryCount)
    body = b"".join(fields)
    size = len(body) + 1
    if size < 256 and len(fields) < 256:
        header = b"\x00\x53\x70\xc0" + bytes((size, len(fields))) + body
    else:
        header = (
            b"\x00\x53\x70\xd0" + _U32.pack(size + 3) + _U32.pack(len(fields)) + body
        )
    return header + bytes(rest), deliveryCount
