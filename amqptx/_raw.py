"""
The hot path's direct line to proton's C engine.

proton's Python layer makes wrapper objects (C{Event}, C{Delivery}, C{Link})
for every event, and they cost most of the CPU per message.  The Deferred
API and the broker handle deliveries, by far the most frequent event, with
the C functions themselves (through proton's own cffi module,
C{cproton_ffi.lib}); every other event, and every less common case of a
delivery (a rejection, a modified outcome...), still goes through the
wrappers.

A C{delivery} or C{link} here is a cffi pointer: it compares and hashes by
address, and is valid only while proton keeps the object, so code keeps one
past the event that gave it only as a dictionary key, or while proton is
known to keep the object (an unsettled delivery on a link that is open).
Anything that needs the object later holds a wrapper
(L{proton.Delivery.wrap}), which keeps a reference.
"""

from __future__ import annotations

import enum
from typing import Any

from cproton_ffi import ffi, lib
from proton import Delivery, Message

__all__ = [
    "ACCEPTED",
    "DELIVERY",
    "LINK_FLOW",
    "NULL",
    "LinkReader",
    "Read",
    "encodeMessage",
    "forgetAttributes",
    "lib",
    "offerCapabilities",
    "pushInput",
    "setTerminusAddress",
    "terminusAddress",
    "readDelivery",
    "sendMessage",
    "takeOutput",
    "wrapDelivery",
]

CData = Any
"""
A cffi pointer into proton's C engine.
"""

NULL = ffi.NULL
DELIVERY: int = lib.PN_DELIVERY
LINK_FLOW: int = lib.PN_LINK_FLOW
ACCEPTED: int = lib.PN_ACCEPTED
_OVERFLOW: int = lib.PN_OVERFLOW
_fromBuffer = ffi.from_buffer
_buffer = ffi.buffer
_new = ffi.new
_unpack = ffi.unpack


def forgetAttributes(connection: CData, session: CData, link: CData) -> None:
    """
    Drop the dictionaries of attributes proton's wrappers keep in the C
    objects of an event (each that is not C{NULL}).

    A wrapper of a C endpoint stores its attributes (its condition, its
    handler, the properties to send) in a dictionary that the C object
    keeps for as long as it lives, made the first time anything wraps it;
    an event wraps its connection, session and link.  For a server that
    holds thousands of idle connections these are some 800 bytes a
    connection.
    Wrappers made later start with fresh attributes (none set), so only a
    protocol that keeps nothing in them between events may drop them.

    @param connection: the event's connection, or C{NULL}.
    @param session: its session, or C{NULL}.
    @param link: its link, or C{NULL}.
    """
    if connection != NULL:
        lib.pn_record_set_py(lib.pn_connection_attachments(connection), NULL)
    if session != NULL:
        lib.pn_record_set_py(lib.pn_session_attachments(session), NULL)
    if link != NULL:
        lib.pn_record_set_py(lib.pn_link_attachments(link), NULL)


def wrapDelivery(delivery: CData) -> Delivery:
    """
    @param delivery: a delivery.
    @return: proton's wrapper of it, which keeps a reference to it.
    """
    wrapper: Delivery = Delivery.wrap(delivery)  # type: ignore[no-untyped-call]
    return wrapper


def offerCapabilities(connection: CData, capabilities: tuple[bytes, ...]) -> None:
    """
    Set the capabilities a connection's Open offers, straight in proton's C
    connection: as an array of symbols, as proton's wrapper would, but
    without the wrapper's C{SymbolList} and C{Data} objects that stay with
    the connection (some 500 bytes each, where a server holds thousands).

    (C{proton.Connection.open} leaves them be while the wrapper's own
    C{offered_capabilities} is L{None}.)

    @param connection: a connection (C{pn_connection_t}).
    @param capabilities: the symbols, ASCII.
    """
    data = lib.pn_connection_offered_capabilities(connection)
    lib.pn_data_clear(data)
    lib.pn_data_put_array(data, False, lib.PN_SYMBOL)
    lib.pn_data_enter(data)
    for symbol in capabilities:
        lib.pn_data_put_symbol(data, (len(symbol), _fromBuffer(symbol)))
    lib.pn_data_exit(data)


def terminusAddress(terminus: CData) -> str | None:
    """
    @param terminus: a link's source or target (C{pn_terminus_t}).
    @return: its address, as proton's C{Terminus.address}: L{None} when it
        has none.
    """
    address = lib.pn_terminus_get_address(terminus)
    if address == NULL:
        return None
    text: str = ffi.string(address).decode("utf-8")
    return text


def setTerminusAddress(terminus: CData, address: str | None) -> None:
    """
    Set (or, with L{None}, clear) the address of a link's source or target.

    @param terminus: the source or target (C{pn_terminus_t}).
    @param address: the address.
    """
    lib.pn_terminus_set_address(
        terminus, NULL if address is None else address.encode("utf-8")
    )


_OUTPUT = 1 << 18
_output = ffi.new("char[]", _OUTPUT)


def takeOutput(transport: CData) -> bytes:
    """
    Take what a transport has for the peer, up to 256 KiB, as
    C{proton.Transport.pending}, C{peek} and C{pop} would, with one copy
    fewer.

    @param transport: a transport (C{pn_transport_t}).
    @return: the bytes, possibly none.
    """
    pending = lib.pn_transport_pending(transport)
    if pending <= 0:
        return b""
    size = min(pending, _OUTPUT)
    lib.pn_transport_peek(transport, _output, size)
    output: bytes = _unpack(_output, size)
    lib.pn_transport_pop(transport, size)
    return output


def pushInput(transport: CData, data: bytes | bytearray) -> int:
    """
    Give a transport as much of C{data} as it has room for.

    @param transport: a transport (C{pn_transport_t}).
    @param data: bytes from the peer.
    @return: how many it took, or a negative number once it takes no more.
    """
    pushed: int = lib.pn_transport_push(transport, _fromBuffer(data), len(data))
    return pushed


_newDelivery = lib.pn_delivery
_linkSend = lib.pn_link_send
_advance = lib.pn_link_advance


def sendMessage(link: CData, tag: bytes, data: bytes) -> CData:
    """
    Send one whole message on a sending link that has credit.

    @param link: the link.
    @param tag: the delivery tag.
    @param data: the encoded message.
    @return: the new delivery.
    """
    delivery = _newDelivery(link, (len(tag), _fromBuffer(tag)))
    # cffi passes bytes as a char * (uncopied); other buffers need wrapping.
    _linkSend(link, data if type(data) is bytes else _fromBuffer(data), len(data))
    _advance(link)
    return delivery


def readDelivery(delivery: CData, link: CData) -> bytes:
    """
    Take the bytes of a delivery that have arrived and not been taken.

    @param delivery: the delivery, the link's current one.
    @param link: its link.
    @return: the bytes (possibly none).
    """
    pending = lib.pn_delivery_pending(delivery)
    if pending <= 0:
        return b""
    buffer = _new("char[]", pending)
    got = lib.pn_link_recv(link, buffer, pending)
    if got <= 0:
        return b""
    data: bytes = _buffer(buffer, got)[:]
    return data


class Read(enum.Enum):
    """
    What reading a delivery gave, when it gave no message.
    """

    PARTIAL = "partial"
    ABORTED = "aborted"
    OVERSIZE = "oversize"


class LinkReader:
    """
    Reads the deliveries of one receiving link as their pieces arrive.

    A message larger than a frame arrives in pieces.  Taking each piece out
    of proton as it comes keeps the session's incoming window open; waiting
    for the last piece before reading would stall the connection once the
    window is full.
    """

    def __init__(self, limit: int | None = None) -> None:
        """
        @param limit: the largest message accepted, in bytes, or L{None}:
            the pieces of a larger one are dropped as they come.
        """
        self._limit = limit
        self._buffer: bytearray | None = None
        self._oversize = False

    def read(self, delivery: CData, link: CData) -> bytes | Read:
        """
        Take what arrived of the link's current delivery; once its last
        piece is in (or it was aborted, and settled here), the link moves on
        to the next delivery.

        @param delivery: the delivery.
        @param link: its link.
        @return: the whole message once its last piece has arrived, or why
            there is none.
        """
        chunk = readDelivery(delivery, link)
        if lib.pn_delivery_aborted(delivery):
            self._buffer, self._oversize = None, False
            lib.pn_link_advance(link)
            lib.pn_delivery_settle(delivery)
            return Read.ABORTED
        limit = self._limit
        if lib.pn_delivery_partial(delivery):
            if not self._oversize:
                buffer = self._buffer
                if buffer is None:
                    buffer = self._buffer = bytearray()
                if chunk:
                    buffer += chunk
                if limit is not None and len(buffer) > limit:
                    self._buffer, self._oversize = None, True
            return Read.PARTIAL
        lib.pn_link_advance(link)
        buffer, oversize = self._buffer, self._oversize
        if buffer is not None or oversize:
            self._buffer, self._oversize = None, False
            if oversize:
                return Read.OVERSIZE
            assert buffer is not None
            if chunk:
                buffer += chunk
            data = bytes(buffer)
        else:
            data = chunk or b""
        if limit is not None and len(data) > limit:
            return Read.OVERSIZE
        return data


_SMALL = 65536
_small = ffi.new("char[]", _SMALL)
_instructionsOf = lib.pn_message_instructions
_annotationsOf = lib.pn_message_annotations
_propertiesOf = lib.pn_message_properties
_bodyOf = lib.pn_message_body
_clear = lib.pn_data_clear
_isInferred = lib.pn_message_is_inferred
_encode = lib.pn_message_encode_py


def _bodySections(descriptor: int, code8: int) -> list[bytes]:
    """
    @param descriptor: the section's descriptor code.
    @param code8: the constructor of its value, for one of up to 255 bytes.
    @return: the beginnings of a body section (a described value: the
        descriptor, a small unsigned long, then the value's constructor and
        size) for values of 0 to 255 bytes, by size.
    """
    return [bytes([0x00, 0x53, descriptor, code8, size]) for size in range(256)]


# The body sections of the common message: amqp-value (0x77) with binary
# (vbin8 0xa0, vbin32 0xb0) or a string (str8-utf8 0xa1, str32-utf8 0xb1); a
# data section (0x75) for binary when the message is "inferred".
_BINARY = _bodySections(0x77, 0xA0)
_BINARY32 = bytes([0x00, 0x53, 0x77, 0xB0])
_DATA = _bodySections(0x75, 0xA0)
_DATA32 = bytes([0x00, 0x53, 0x75, 0xB0])
_STRING = _bodySections(0x77, 0xA1)
_STRING32 = bytes([0x00, 0x53, 0x77, 0xB1])


def encodeMessage(message: Message) -> bytes:
    """
    Encode a message, as C{message.encode()} does, without proton's guess of
    16 bytes of room doubled until the message fits (four tries for a
    message of 100 bytes).

    The common message (a body of bytes or text; no application properties,
    annotations or delivery annotations) has its header and properties
    encoded by proton, and its body section, which comes last, appended
    here: the body never goes through proton's C{pn_data_t}.

    @param message: the message.
    @return: its encoding.
    """
    impl = message._msg
    body: Any = message.body
    kind = type(body)
    if (
        (kind is bytes or kind is str)
        and message.properties is None
        and message.annotations is None
        and message.instructions is None
    ):
        _clear(_instructionsOf(impl))
        _clear(_annotationsOf(impl))
        _clear(_propertiesOf(impl))
        _clear(_bodyOf(impl))
        used = _encode(impl, _small, _SMALL)
        if used >= 0:
            if kind is str:
                body = body.encode("utf-8")
                size = len(body)
                section = _STRING[size] if size < 256 else _STRING32
            else:
                size = len(body)
                if _isInferred(impl):
                    section = _DATA[size] if size < 256 else _DATA32
                else:
                    section = _BINARY[size] if size < 256 else _BINARY32
            if size < 256:
                return b"".join((_unpack(_small, used), section, body))
            head = _unpack(_small, used)
            return b"".join((head, section, size.to_bytes(4, "big"), body))
        # Sections larger than the buffer, or an error: the general way.
    message._pre_encode()  # proton's own step: body, properties... into C
    size = _SMALL
    if isinstance(body, bytes):
        size = max(size, len(body) + 4096)
    elif isinstance(body, str):
        size = max(size, 4 * len(body) + 4096)
    while True:
        buffer = _small if size == _SMALL else _new("char[]", size)
        used = _encode(impl, buffer, size)
        if used == _OVERFLOW:
            size *= 2
            continue
        if used < 0:
            # proton's own call raises the error it knows for this code.
            return message.encode()
        encoded: bytes = _unpack(buffer, used)
        return encoded
