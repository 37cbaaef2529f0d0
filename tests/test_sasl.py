# -*- test-case-name: tests.test_sasl -*-
"""
Tests for L{amqptx._sasl}: amqptx's server-side SASL, driven against proton's
own client transport by moving bytes by hand, with C{twisted.cred} checkers,
a L{StringTransport} and a L{Clock}; no sockets, no sleeping.
"""

from __future__ import annotations

import datetime
import random
import struct
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL.crypto import X509
from proton import Connection, Data, Endpoint, Transport
from twisted.cred.checkers import (
    ANONYMOUS,
    AllowAnonymousAccess,
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import (
    Anonymous,
    IAnonymous,
    IUsernamePassword,
    UsernamePassword,
)
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from amqptx._sasl import (
    AMQP_HEADER,
    SASL_HEADER,
    AvatarId,
    ExternalChecker,
    ExternalCredentials,
    IExternalCredentials,
    SASLConfig,
    SASLGate,
    SASLOutcome,
    SASLServer,
    checkCredentials,
    mechanismsFor,
    peerSubject,
)

_PASSWORD = "s3cret-Pa55"
_UNAUTHORIZED = "amqp:unauthorized-access"
_SUBJECT = "CN=client,O=amqptx tests"


def _users() -> InMemoryUsernamePasswordDatabaseDontUse:
    """
    @return: a checker that knows C{user} with the password L{_PASSWORD}.
    """
    return InMemoryUsernamePasswordDatabaseDontUse(user=_PASSWORD.encode())


def _client(
    mechanisms: str | None = "PLAIN",
    user: str | None = "user",
    password: str | None = _PASSWORD,
) -> tuple[Transport, Connection]:
    """
    Make proton's client side: a transport with SASL (unless C{mechanisms} is
    L{None}) and an opened connection.
    """
    transport = Transport(Transport.CLIENT)
    connection = Connection()
    if mechanisms is not None:
        sasl = transport.sasl()
        sasl.allowed_mechs(mechanisms)
        sasl.allow_insecure_mechs = True
        if user is not None:
            connection.user = user
        if password is not None:
            connection.password = password
    transport.bind(connection)
    connection.open()
    return transport, connection


def _take(transport: Transport) -> bytes:
    """
    Take everything proton has to send.
    """
    chunks = []
    while (pending := transport.pending()) > 0:
        data = transport.peek(pending)
        assert data is not None
        chunks.append(bytes(data))
        transport.pop(pending)
    return b"".join(chunks)


def _give(transport: Transport, data: bytes) -> None:
    """
    Push bytes into proton, as far as its input is still open.
    """
    while data and transport.capacity() > 0:
        size = min(len(data), transport.capacity())
        transport.push(data[:size])
        data = data[size:]


def _pump(client: Transport, server: SASLServer) -> None:
    """
    Move bytes both ways until neither side has anything to say.
    """
    while True:
        toServer = _take(client)
        server.feed(toServer)
        toClient = server.takeOutput()
        _give(client, toClient)
        if not toServer and not toClient:
            return


def _protonServer(client: Transport, data: bytes) -> Connection:
    """
    Hand what follows the SASL exchange to a proton transport without SASL,
    in proton's default mode, as amqptx's protocol does; answer the client's
    Open; and pump until both sides are quiet.

    @return: the server's connection.
    """
    transport = Transport()
    transport.require_auth(False)
    connection = Connection()
    transport.bind(connection)
    _give(transport, data)
    connection.open()
    while True:
        toClient, toServer = _take(transport), _take(client)
        if not toClient and not toServer:
            return connection
        _give(client, toClient)
        _give(transport, toServer)


def _frame(descriptor: int | str, fill: Callable[[Data], None]) -> bytes:
    """
    Encode a SASL frame the way a client would.
    """
    data = Data()
    data.put_described()
    data.enter()
    if isinstance(descriptor, int):
        data.put_ulong(descriptor)
    else:
        data.put_symbol(descriptor)
    data.put_list()
    data.enter()
    fill(data)
    data.exit()
    data.exit()
    body = bytes(data.encode())
    return struct.pack(">IBBH", 8 + len(body), 2, 1, 0) + body


def _init(
    mechanism: str, response: bytes | None = None, hostname: str | None = None
) -> bytes:
    """
    Encode a C{sasl-init} frame.
    """

    def fill(data: Data) -> None:
        data.put_symbol(mechanism)
        if response is None:
            data.put_null()
        else:
            data.put_binary(response)
        if hostname is not None:
            data.put_string(hostname)

    return _frame(0x41, fill)


def _frames(data: bytes) -> list[tuple[int, list[Any]]]:
    """
    Decode the SASL frames a server sent (after its protocol header).

    @return: each frame's descriptor and fields.
    """
    frames = []
    while data:
        (size,) = struct.unpack_from(">I", data)
        codec = Data()
        codec.decode(data[8:size])
        codec.rewind()
        codec.next()
        described = codec.get_object()
        assert described is not None
        frames.append((int(described.descriptor), list(described.value)))
        data = data[size:]
    return frames


def _outcome(data: bytes) -> int:
    """
    @return: the code of the only frame in C{data}, a C{sasl-outcome}.
    """
    [(descriptor, fields)] = _frames(data)
    assert descriptor == 0x44, descriptor
    return int(fields[0])


def _started(mechanisms: tuple[str, ...] = ("ANONYMOUS",), **kw: object) -> SASLServer:
    """
    A server that received the SASL header and sent its mechanisms.
    """
    server = SASLServer(mechanisms, **kw)  # type: ignore[arg-type]
    server.feed(SASL_HEADER)
    server.takeOutput()
    return server


def _certificate(commonName: str = "client") -> X509:
    """
    Make a self-signed certificate, as a TLS transport would return it.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "amqptx tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, commonName),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return X509.from_cryptography(certificate)


class _TLSTransport(StringTransport):
    """
    A L{StringTransport} that, like Twisted's TLS transport, has the peer's
    certificate.
    """

    def __init__(self, certificate: X509 | None) -> None:
        super().__init__()
        self.certificate = certificate

    def getPeerCertificate(self) -> X509 | None:
        """
        @return: the certificate given to the constructor.
        """
        return self.certificate


@implementer(ICredentialsChecker)
class _SlowChecker:
    """
    A checker that answers when the test says so.
    """

    credentialInterfaces = (IUsernamePassword, IAnonymous)

    def __init__(self) -> None:
        self.checks: list[Deferred[AvatarId]] = []
        self.cancelled = 0

    def requestAvatarId(self, credentials: object) -> Deferred[AvatarId]:
        """
        @return: a new Deferred, kept in C{checks}, that counts cancellations.
        """

        def cancel(d: Deferred[AvatarId]) -> None:
            self.cancelled += 1

        d: Deferred[AvatarId] = Deferred(cancel)
        self.checks.append(d)
        return d


@implementer(ICredentialsChecker)
class _BrokenChecker:
    """
    A checker whose back-end fails.
    """

    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials: object) -> Deferred[AvatarId]:
        """
        @raise ZeroDivisionError: always.
        """
        raise ZeroDivisionError("the user database is down")


class SASLServerTests(SynchronousTestCase):
    """
    L{SASLServer} against proton's client, bytes moved by hand.
    """

    def test_plain(self) -> None:
        """
        Over TLS the server offers PLAIN; the client's user name and password
        come out as L{UsernamePassword} credentials.  After C{succeed}, the
        client's AMQP header and Open come out of C{remainder}, a proton
        server transport without SASL accepts them, and the client's
        connection opens.
        """
        client, connection = _client()
        server = SASLServer(["PLAIN"], tls=True)
        self.assertEqual(server.offered, ("PLAIN",))
        _pump(client, server)
        self.assertEqual(server.state, "checking")
        credentials = server.pendingCredentials
        assert isinstance(credentials, UsernamePassword)
        self.assertEqual(
            (credentials.username, credentials.password),
            (b"user", _PASSWORD.encode()),
        )
        self.assertEqual((server.mechanism, server.user), ("PLAIN", "user"))
        server.succeed(b"user")
        self.assertIsNone(server.pendingCredentials)
        _pump(client, server)
        self.assertEqual(server.state, "done")
        self.assertEqual(server.avatarId, b"user")
        rest = server.remainder()
        self.assertEqual(rest[:8], AMQP_HEADER)
        self.assertEqual(server.remainder(), b"")
        remote = _protonServer(client, rest)
        self.assertTrue(connection.state & Endpoint.REMOTE_ACTIVE)
        self.assertTrue(remote.state & Endpoint.REMOTE_ACTIVE)
        self.assertTrue(client.authenticated)

    def test_bytesAfterDoneKept(self) -> None:
        """
        Bytes fed after the exchange is done are kept for C{remainder}.
        """
        client, _ = _client()
        server = SASLServer(["PLAIN"], tls=True)
        _pump(client, server)
        server.succeed(b"user")
        _pump(client, server)
        first = server.remainder()
        server.feed(b"more")
        self.assertEqual(server.remainder(), b"more")
        self.assertEqual(first[:8], AMQP_HEADER)

    def test_inPieces(self) -> None:
        """
        The client's bytes fed one at a time give the same result.
        """
        client, connection = _client()
        server = SASLServer(["PLAIN"], tls=True)
        rest = b""
        while True:
            data = _take(client)
            for byte in data:
                server.feed(bytes([byte]))
            if server.state == "checking":
                server.succeed(b"user")
            output = server.takeOutput()
            _give(client, output)
            rest += server.remainder()
            if not data and not output:
                break
        self.assertEqual(server.state, "done")
        _protonServer(client, rest)
        self.assertTrue(connection.state & Endpoint.REMOTE_ACTIVE)

    def test_plainRefused(self) -> None:
        """
        C{fail} sends the C{auth} outcome: proton's client reports
        C{amqp:unauthorized-access}.
        """
        client, connection = _client(password="wrong")
        server = SASLServer(["PLAIN"], tls=True)
        _pump(client, server)
        server.fail()
        self.assertEqual(server.state, "failed")
        self.assertEqual(server.failureCode, SASLOutcome.AUTH)
        self.assertIsNone(server.pendingCredentials)
        _pump(client, server)
        assert client.condition is not None
        self.assertEqual(client.condition.name, _UNAUTHORIZED)
        self.assertFalse(connection.state & Endpoint.REMOTE_ACTIVE)
        self.assertEqual(server.remainder(), b"")

    def test_plainNotOfferedInClear(self) -> None:
        """
        Without TLS, PLAIN is not offered, and a client that wants PLAIN
        gives up with C{amqp:unauthorized-access}; with C{allowInsecure} it
        is offered.
        """
        client, _ = _client()
        server = SASLServer(["PLAIN"])
        self.assertEqual(server.offered, ())
        _pump(client, server)
        self.assertEqual(server.state, "waiting")
        assert client.condition is not None
        self.assertEqual(client.condition.name, _UNAUTHORIZED)
        self.assertEqual(SASLServer(["PLAIN"], allowInsecure=True).offered, ("PLAIN",))

    def test_mechanismNotOffered(self) -> None:
        """
        A client that picks a mechanism that was not offered gets the C{auth}
        outcome at once.
        """
        server = _started(("ANONYMOUS",))
        server.feed(_init("PLAIN", b"\0user\0" + _PASSWORD.encode()))
        self.assertEqual(server.state, "failed")
        self.assertEqual(_outcome(server.takeOutput()), SASLOutcome.AUTH)
        self.assertIn("not offered", server.failureReason or "")

    def test_mechanismsFrame(self) -> None:
        """
        The server answers the SASL header with the SASL header and a
        C{sasl-mechanisms} frame listing the offered mechanisms in the
        configured order, without duplicates.
        """
        server = SASLServer(["anonymous", "PLAIN", "ANONYMOUS"], tls=True)
        server.feed(SASL_HEADER)
        output = server.takeOutput()
        self.assertEqual(output[:8], SASL_HEADER)
        [(descriptor, fields)] = _frames(output[8:])
        self.assertEqual(descriptor, 0x40)
        self.assertEqual(list(fields[0]), ["ANONYMOUS", "PLAIN"])

    def test_unknownMechanism(self) -> None:
        """
        Configuring a mechanism amqptx does not implement is an error.
        """
        self.assertRaises(ValueError, SASLServer, ["CRAM-MD5"])

    def test_anonymous(self) -> None:
        """
        ANONYMOUS gives L{Anonymous} credentials and its trace text.
        """
        client, connection = _client("ANONYMOUS", user="someone@example.com")
        server = SASLServer(["PLAIN", "ANONYMOUS"])
        _pump(client, server)
        self.assertIsInstance(server.pendingCredentials, Anonymous)
        self.assertEqual(server.mechanism, "ANONYMOUS")
        self.assertIsNone(server.user)
        server.succeed(ANONYMOUS)
        _pump(client, server)
        _protonServer(client, server.remainder())
        self.assertTrue(connection.state & Endpoint.REMOTE_ACTIVE)

    def test_anonymousTrace(self) -> None:
        """
        ANONYMOUS's initial response is kept as trace text, and the
        C{sasl-init}'s hostname is kept too.
        """
        server = _started()
        server.feed(_init("ANONYMOUS", b"someone@example.com", "vhost"))
        self.assertEqual(
            (server.trace, server.hostname), ("someone@example.com", "vhost")
        )

    def test_anonymousNotConfigured(self) -> None:
        """
        Without ANONYMOUS configured, a client that only does ANONYMOUS
        fails with C{amqp:unauthorized-access}.
        """
        client, _ = _client("ANONYMOUS")
        server = SASLServer(["PLAIN"], tls=True)
        _pump(client, server)
        assert client.condition is not None
        self.assertEqual(client.condition.name, _UNAUTHORIZED)
        self.assertNotEqual(server.state, "checking")

    def test_external(self) -> None:
        """
        Over TLS with a client certificate, EXTERNAL is offered and gives
        L{ExternalCredentials} with the certificate's subject.
        """
        client, connection = _client("EXTERNAL", user=None, password=None)
        server = SASLServer(["EXTERNAL", "PLAIN"], tls=True, peerSubject=_SUBJECT)
        self.assertEqual(server.offered, ("EXTERNAL", "PLAIN"))
        _pump(client, server)
        self.assertEqual(server.pendingCredentials, ExternalCredentials(_SUBJECT))
        self.assertEqual(server.user, _SUBJECT)
        server.succeed(_SUBJECT.encode())
        _pump(client, server)
        _protonServer(client, server.remainder())
        self.assertTrue(connection.state & Endpoint.REMOTE_ACTIVE)

    def test_externalNotOffered(self) -> None:
        """
        EXTERNAL is offered only with TLS and a certificate subject.
        """
        self.assertEqual(SASLServer(["EXTERNAL"], tls=True).offered, ())
        self.assertEqual(SASLServer(["EXTERNAL"], peerSubject=_SUBJECT).offered, ())

    def test_externalAuthorizationIdentity(self) -> None:
        """
        EXTERNAL's response, an authorization identity, may repeat the
        subject; another identity is refused.
        """
        for response, state in (
            (None, "checking"),
            (b"", "checking"),
            (_SUBJECT.encode(), "checking"),
            (b"CN=admin", "failed"),
        ):
            server = _started(("EXTERNAL",), tls=True, peerSubject=_SUBJECT)
            server.feed(_init("EXTERNAL", response))
            self.assertEqual(server.state, state, response)

    def test_plainResponses(self) -> None:
        """
        PLAIN's response must be C{authzid NUL authcid NUL password} with a
        user name in UTF-8 and an authorization identity that is empty or the
        user name; an empty password is left to the checker.
        """
        for response, state in (
            (b"\0user\0pw", "checking"),
            (b"user\0user\0pw", "checking"),
            (b"\0user\0", "checking"),
            (b"admin\0user\0pw", "failed"),
            (b"\0\0pw", "failed"),
            (b"user\0pw", "failed"),
            (b"\0user\0pw\0", "failed"),
            (b"\0\xff\xfe\0pw", "failed"),
            (None, "failed"),
        ):
            server = _started(("PLAIN",), tls=True)
            server.feed(_init("PLAIN", response))
            self.assertEqual(server.state, state, response)
            if state == "failed":
                self.assertEqual(_outcome(server.takeOutput()), SASLOutcome.AUTH)

    def test_controlCharactersEscaped(self) -> None:
        """
        Control characters in the user name, the trace or the mechanism name
        are escaped, so that logging them cannot forge log lines.
        """
        server = _started(("PLAIN",), tls=True)
        server.feed(_init("PLAIN", b"\0us\ner\0pw"))
        self.assertEqual(server.user, "us\\ner")
        server = _started()
        server.feed(_init("ANONYMOUS", b"a\r\nb"))
        self.assertEqual(server.trace, "a\\r\\nb")
        server = _started()
        server.feed(_init("X\nY"))
        self.assertEqual(server.mechanism, "X\\nY")

    def test_symbolicDescriptor(self) -> None:
        """
        A C{sasl-init} described by its symbolic name is understood.
        """
        server = _started()

        def fill(data: Data) -> None:
            data.put_symbol("ANONYMOUS")

        server.feed(_frame("amqp:sasl-init:list", fill))
        self.assertEqual(server.state, "checking")

    def test_pipelined(self) -> None:
        """
        A client that sends its C{sasl-init}, AMQP header and Open without
        waiting for the outcome is served: after C{succeed} the exchange is
        done at once.
        """
        server = SASLServer(["ANONYMOUS"])
        server.feed(SASL_HEADER + _init("ANONYMOUS") + AMQP_HEADER + b"open")
        self.assertEqual(server.state, "checking")
        server.succeed(ANONYMOUS)
        self.assertEqual(server.state, "done")
        self.assertEqual(server.remainder(), AMQP_HEADER + b"open")

    def test_doneWithOutcome(self) -> None:
        """
        The exchange is done as soon as the C{ok} outcome is out; whatever
        follows is proton's to read, even what is not an AMQP header (proton
        refuses that: see C{tests.test_protocol_sasl}).
        """
        for data in (AMQP_HEADER, b"HTTP"):
            server = _started()
            server.feed(_init("ANONYMOUS"))
            server.succeed(ANONYMOUS)
            self.assertEqual(server.state, "done")
            self.assertEqual(_outcome(server.takeOutput()), SASLOutcome.OK)
            self.assertEqual(server.remainder(), b"")
            server.feed(data)
            self.assertEqual(server.remainder(), data)

    def test_plainAMQPHeaderAnonymous(self) -> None:
        """
        A client that skips SASL is, when ANONYMOUS is offered, checked as
        anonymous; once accepted, everything it sent (its AMQP header
        included) goes to proton, which opens the connection.
        """
        client, connection = _client(mechanisms=None)
        server = SASLServer(["ANONYMOUS"])
        server.feed(_take(client))
        self.assertEqual(server.state, "checking")
        self.assertIsInstance(server.pendingCredentials, Anonymous)
        self.assertIsNone(server.mechanism)
        server.succeed(ANONYMOUS)
        self.assertEqual(server.takeOutput(), b"")
        self.assertEqual(server.state, "done")
        _protonServer(client, server.remainder())
        self.assertTrue(connection.state & Endpoint.REMOTE_ACTIVE)

    def test_plainAMQPHeaderFlood(self) -> None:
        """
        A client that skipped SASL and sends too much while the anonymous
        check runs gets the SASL header, and the exchange fails.
        """
        server = SASLServer(["ANONYMOUS"], maxFrameSize=512)
        server.feed(AMQP_HEADER + b"x" * 600)
        self.assertEqual(server.state, "failed")
        self.assertEqual(server.takeOutput(), SASL_HEADER)

    def test_plainAMQPHeaderAnonymousRefused(self) -> None:
        """
        When the anonymous check fails, a client that skipped SASL gets the
        SASL header and the exchange fails.
        """
        server = SASLServer(["ANONYMOUS"])
        server.feed(AMQP_HEADER)
        server.fail()
        self.assertEqual(server.takeOutput(), SASL_HEADER)
        self.assertEqual(server.state, "failed")

    def test_plainAMQPHeaderRefused(self) -> None:
        """
        Without ANONYMOUS, a client that skips SASL gets the SASL header, as
        the specification says for an unsupported protocol, and the exchange
        fails; proton's client then gives up.
        """
        client, connection = _client(mechanisms=None)
        server = SASLServer(["PLAIN"], tls=True)
        _pump(client, server)
        self.assertEqual(server.state, "failed")
        self.assertEqual(server.failureReason, "the client skipped SASL")
        self.assertIsNotNone(client.condition)
        self.assertFalse(connection.state & Endpoint.REMOTE_ACTIVE)

    def test_otherHeaders(self) -> None:
        """
        A non-AMQP header, AMQP's TLS header or another AMQP version get the
        SASL header and fail, as soon as the bytes cannot be an AMQP header.
        """
        for data in (
            b"GET / HTTP/1.1\r\n",
            b"\x16\x03",
            b"AMQP\x02\x01\x00\x00",
            b"AMQP\x03\x01\x01\x00",
            b"AMQP\x00\x00\x09\x01",
        ):
            server = SASLServer(["ANONYMOUS"])
            server.feed(data)
            self.assertEqual(server.state, "failed", data)
            self.assertEqual(server.takeOutput(), SASL_HEADER)
            server.feed(b"more")
            self.assertEqual(server.takeOutput(), b"")

    def test_truncated(self) -> None:
        """
        Part of a header or of a frame leaves the server waiting for more,
        with nothing to say.
        """
        server = SASLServer(["ANONYMOUS"])
        server.feed(SASL_HEADER[:5])
        self.assertEqual((server.state, server.takeOutput()), ("waiting", b""))
        server.feed(SASL_HEADER[5:])
        server.takeOutput()
        frame = _init("ANONYMOUS")
        for piece in (frame[:3], frame[3:7], frame[7:-1]):
            server.feed(piece)
            self.assertEqual((server.state, server.takeOutput()), ("waiting", b""))
        server.feed(frame[-1:])
        self.assertEqual(server.state, "checking")

    def test_brokenFrames(self) -> None:
        """
        Frames that are not well-formed SASL frames get the C{sys-perm}
        outcome, and the exchange fails.
        """
        init = _init("ANONYMOUS")
        body = init[8:]

        def header(size: int, doff: int = 2, kind: int = 1) -> bytes:
            return struct.pack(">IBBH", size, doff, kind, 0)

        def fields(fill: Callable[[Data], None]) -> bytes:
            return _frame(0x41, fill)

        def responseString(data: Data) -> None:
            data.put_symbol("ANONYMOUS")
            data.put_string("x")

        def hostnameBinary(data: Data) -> None:
            data.put_symbol("ANONYMOUS")
            data.put_null()
            data.put_binary(b"h")

        cases = {
            "too small": header(7),
            "AMQP frame": header(len(init), kind=0) + body,
            "small offset": header(len(init), doff=1) + body,
            "offset past end": header(len(init), doff=200) + body,
            "garbage body": header(12) + b"\xff\xff\xff\xff",
            "truncated body": header(len(init) - 2) + body[:-2],
            "trailing bytes": header(len(init) + 1) + body + b"\x00",
            "not described": header(9) + b"\x40",
            "bad descriptor": header(12) + b"\x00\xa1\x01x",
            "not a list": header(12) + b"\x00\x53\x41\x40",
            "other frame": _frame(0x43, lambda data: data.put_binary(b"x")),
            "unknown symbol": _frame("amqp:nope:list", lambda data: None),
            "mechanisms frame": _frame(0x40, lambda data: data.put_symbol("X")),
            "no mechanism": fields(lambda data: None),
            "mechanism null": fields(lambda data: data.put_null()),
            "mechanism string": fields(lambda data: data.put_int(3)),
            "response string": fields(responseString),
            "hostname binary": fields(hostnameBinary),
        }
        for name, data in cases.items():
            server = _started()
            server.feed(data)
            self.assertEqual(server.state, "failed", name)
            self.assertEqual(_outcome(server.takeOutput()), SASLOutcome.SYS_PERM, name)
            self.assertEqual(server.failureCode, SASLOutcome.SYS_PERM)
            self.assertTrue(server.failureReason, name)

    def test_brokenFrameReachesClient(self) -> None:
        """
        The proton client, told C{sys-perm}, reports an authentication failure.
        """
        client, _ = _client()
        server = SASLServer(["PLAIN"], tls=True)
        server.feed(_take(client))
        _give(client, server.takeOutput())
        init = _take(client)
        server.feed(init[:4] + b"\x01" + init[5:])
        _give(client, server.takeOutput())
        self.assertEqual(_take(client), b"")
        assert client.condition is not None
        self.assertEqual(client.condition.name, _UNAUTHORIZED)

    def test_oversized(self) -> None:
        """
        A frame larger than the limit fails the exchange as soon as its size
        is known, before its body arrives.
        """
        server = _started(maxFrameSize=512)
        server.feed(struct.pack(">I", 513))
        self.assertEqual(server.state, "failed")
        self.assertEqual(_outcome(server.takeOutput()), SASLOutcome.SYS_PERM)
        server = _started(maxFrameSize=512)
        server.feed(_init("ANONYMOUS", b"x" * 400))
        self.assertEqual(server.state, "checking")

    def test_tooManyFrames(self) -> None:
        """
        Empty frames are ignored, but only a few of them.
        """
        empty = struct.pack(">IBBH", 8, 2, 1, 0)
        server = _started(maxFrames=3)
        server.feed(empty * 2 + _init("ANONYMOUS"))
        self.assertEqual(server.state, "checking")
        server = _started(maxFrames=3)
        server.feed(empty * 3)
        self.assertEqual(server.state, "waiting")
        server.feed(_init("ANONYMOUS"))
        self.assertEqual(server.state, "failed")

    def test_floodWhileChecking(self) -> None:
        """
        A client that sends more than a frame's worth of bytes while its
        credentials are checked fails with C{sys-perm}; the verdict that
        comes later changes nothing.
        """
        server = _started(maxFrameSize=512)
        server.feed(_init("ANONYMOUS") + b"x" * 500)
        self.assertEqual(server.state, "checking")
        server.feed(b"x" * 100)
        self.assertEqual(server.state, "failed")
        self.assertEqual(_outcome(server.takeOutput()), SASLOutcome.SYS_PERM)
        server.succeed(ANONYMOUS)
        server.fail()
        self.assertEqual((server.state, server.takeOutput()), ("failed", b""))

    def test_floodWithInit(self) -> None:
        """
        A C{sasl-init} followed, in the same read, by more than a frame's
        worth of bytes fails with C{sys-perm}.
        """
        server = _started(maxFrameSize=512)
        server.feed(_init("ANONYMOUS") + b"x" * 513)
        self.assertEqual(server.state, "failed")
        self.assertEqual(_outcome(server.takeOutput()), SASLOutcome.SYS_PERM)

    def test_verdictWithoutCredentials(self) -> None:
        """
        C{succeed} and C{fail} without pending credentials are programming
        errors.
        """
        server = SASLServer(["ANONYMOUS"])
        self.assertRaises(RuntimeError, server.succeed, ANONYMOUS)
        self.assertRaises(RuntimeError, server.fail)

    def test_fuzz(self) -> None:
        """
        Random corruptions of a valid exchange never make C{feed} raise: the
        server waits, fails, or asks for a verdict.
        """
        valid = SASL_HEADER + _init("PLAIN", b"\0user\0pw", "host") + AMQP_HEADER
        rng = random.Random(1234)
        for _ in range(3000):
            data = bytearray(valid)
            for _ in range(rng.randint(1, 6)):
                position = rng.randrange(len(data))
                action = rng.random()
                if action < 0.6:
                    data[position] = rng.randrange(256)
                elif action < 0.8:
                    del data[position]
                else:
                    data[position:position] = bytes([rng.randrange(256)])
            server = SASLServer(["PLAIN", "ANONYMOUS"], tls=True)
            for start in range(0, len(data), rng.randint(1, 40)):
                server.feed(bytes(data[start : start + 40]))
            self.assertIn(server.state, ("waiting", "checking", "failed"))
            if server.state == "checking":
                server.succeed(b"user")


class CheckCredentialsTests(SynchronousTestCase):
    """
    L{checkCredentials} and the checkers.
    """

    def test_inMemory(self) -> None:
        """
        The right password gives the avatar id; a wrong one or an unknown
        user fails with L{UnauthorizedLogin}.
        """
        checkers = [_users()]
        self.assertEqual(
            self.successResultOf(
                checkCredentials(
                    checkers, UsernamePassword(b"user", _PASSWORD.encode())
                )
            ),
            b"user",
        )
        for name, password in ((b"user", b"wrong"), (b"nobody", _PASSWORD.encode())):
            self.failureResultOf(
                checkCredentials(checkers, UsernamePassword(name, password)),
                UnauthorizedLogin,
            )

    def test_noChecker(self) -> None:
        """
        Credentials no checker handles fail with L{UnauthorizedLogin}.
        """
        self.failureResultOf(
            checkCredentials([_users()], Anonymous()), UnauthorizedLogin
        )
        self.failureResultOf(checkCredentials([], Anonymous()), UnauthorizedLogin)

    def test_inOrder(self) -> None:
        """
        A checker that refuses the credentials passes them on to the next one
        that handles them.
        """
        other = InMemoryUsernamePasswordDatabaseDontUse(admin=b"x")
        checkers = [other, AllowAnonymousAccess(), _users()]
        credentials = UsernamePassword(b"user", _PASSWORD.encode())
        self.assertEqual(
            self.successResultOf(checkCredentials(checkers, credentials)), b"user"
        )
        self.assertEqual(
            self.successResultOf(checkCredentials(checkers, Anonymous())), ANONYMOUS
        )

    def test_unexpectedError(self) -> None:
        """
        A checker's unexpected error is not turned into a refusal.
        """
        self.failureResultOf(
            checkCredentials(
                [_BrokenChecker(), _users()], UsernamePassword(b"user", b"pw")
            ),
            ZeroDivisionError,
        )

    def test_cancel(self) -> None:
        """
        Cancelling the check cancels the running checker's Deferred.
        """
        slow = _SlowChecker()
        d = checkCredentials([slow], Anonymous())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(slow.cancelled, 1)

    def test_mechanismsFor(self) -> None:
        """
        The mechanisms offered follow the checkers' credential interfaces.
        """
        self.assertEqual(mechanismsFor([]), ())
        self.assertEqual(
            mechanismsFor([AllowAnonymousAccess(), _users(), ExternalChecker()]),
            ("EXTERNAL", "PLAIN", "ANONYMOUS"),
        )
        self.assertEqual(mechanismsFor([_users()]), ("PLAIN",))
        self.assertEqual(
            SASLConfig(checkers=(AllowAnonymousAccess(),)).offer(), ("ANONYMOUS",)
        )
        self.assertEqual(
            SASLConfig(checkers=(_users(),), mechanisms=("ANONYMOUS",)).offer(),
            ("ANONYMOUS",),
        )

    def test_externalChecker(self) -> None:
        """
        L{ExternalChecker} takes the subject as avatar id, from every subject
        or from the allowed ones only.
        """
        credentials = ExternalCredentials(_SUBJECT)
        verifyObject(IExternalCredentials, credentials)
        verifyObject(ICredentialsChecker, ExternalChecker())
        self.assertEqual(
            self.successResultOf(checkCredentials([ExternalChecker()], credentials)),
            _SUBJECT.encode(),
        )
        self.successResultOf(
            checkCredentials([ExternalChecker([_SUBJECT])], credentials)
        )
        self.failureResultOf(
            checkCredentials([ExternalChecker(["CN=other"])], credentials),
            UnauthorizedLogin,
        )
        self.failureResultOf(
            checkCredentials([ExternalChecker()], ExternalCredentials("")),
            UnauthorizedLogin,
        )

    def test_peerSubject(self) -> None:
        """
        The subject of a TLS transport's peer certificate comes as an RFC 4514
        string; a cleartext transport or one without a client certificate
        gives L{None}.
        """
        self.assertEqual(
            peerSubject(_TLSTransport(_certificate())), "CN=client,O=amqptx tests"
        )
        self.assertIsNone(peerSubject(_TLSTransport(None)))
        self.assertIsNone(peerSubject(StringTransport()))


class SASLGateTests(SynchronousTestCase):
    """
    L{SASLGate} on a L{StringTransport} and a L{Clock}, against proton's
    client.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.events = EventLoggingObserver()
        globalLogPublisher.addObserver(self.events)
        self.addCleanup(globalLogPublisher.removeObserver, self.events)
        self.authenticated: list[tuple[AvatarId, bytes]] = []
        self.failures: list[str] = []

    def gate(
        self,
        checkers: tuple[ICredentialsChecker, ...] = (),
        transport: StringTransport | None = None,
        tls: bool = False,
        failed: Callable[[str], None] | None = None,
        **kw: object,
    ) -> tuple[SASLGate, StringTransport]:
        """
        Make and start a gate that records into C{self.authenticated} and
        C{self.failures}.

        @return: the gate and its transport.
        """
        wire = transport or StringTransport()

        def authenticated(avatarId: AvatarId, rest: bytes, outcome: bytes) -> None:
            # As the protocol does: the outcome goes out first.
            wire.write(outcome)
            self.authenticated.append((avatarId, rest))

        config = SASLConfig(checkers=checkers, **kw)  # type: ignore[arg-type]
        gate = SASLGate(
            config,
            wire,
            self.clock,
            tls=tls,
            authenticated=authenticated,
            failed=failed or self.failures.append,
        )
        return gate, wire

    def pump(self, client: Transport, gate: SASLGate, wire: StringTransport) -> None:
        """
        Move bytes between proton's client and the gate until both are quiet
        or the client is in (what it sends next is for proton).
        """
        while True:
            toServer = _take(client)
            if toServer:
                gate.dataReceived(toServer)
            toClient = wire.value()
            wire.clear()
            _give(client, toClient)
            if self.authenticated or not (toServer or toClient):
                return

    def assertPasswordNotLogged(self) -> None:
        """
        Fail if any logged event, raw or formatted, holds the password.
        """
        for event in self.events:
            for text in (repr(event), formatEvent(event)):
                self.assertNotIn(_PASSWORD, text)
                self.assertNotIn(repr(_PASSWORD.encode())[2:-1], text)

    def test_plain(self) -> None:
        """
        PLAIN with the right password reaches C{authenticated} with the
        avatar id and the bytes for proton, which opens the connection; the
        login is logged.
        """
        client, connection = _client()
        gate, wire = self.gate((_users(),), allowInsecure=True)
        self.pump(client, gate, wire)
        [(avatarId, rest)] = self.authenticated
        self.assertEqual((avatarId, gate.avatarId), (b"user", b"user"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        _protonServer(client, rest)
        self.assertTrue(connection.state & Endpoint.REMOTE_ACTIVE)
        self.assertFalse(wire.disconnecting)
        [event] = [e for e in self.events if e["log_level"] == LogLevel.info]
        self.assertEqual(
            formatEvent(event), "SASL PLAIN login of user from 192.168.1.1:54321"
        )
        self.assertPasswordNotLogged()

    def test_wrongPassword(self) -> None:
        """
        A wrong password is logged at once, with the user name and the peer
        but never the password; the C{auth} outcome goes out only after the
        failure delay, and then the connection is closed.  Bytes the client
        sends meanwhile are dropped.
        """
        client, connection = _client(password="wrong")
        gate, wire = self.gate((_users(),), tls=True, failureDelay=2.0)
        self.pump(client, gate, wire)
        self.assertEqual(wire.value(), b"")
        [event] = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(event["user"], "user")
        self.assertEqual(event["peer"], "192.168.1.1:54321")
        self.assertIn("refused", formatEvent(event))
        gate.dataReceived(b"junk")
        self.clock.advance(1.9)
        self.assertEqual(wire.value(), b"")
        self.assertFalse(wire.disconnecting)
        self.clock.advance(0.1)
        self.assertEqual(_outcome(wire.value()), SASLOutcome.AUTH)
        self.assertTrue(wire.disconnecting)
        self.assertEqual(self.failures, ["credentials refused"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.pump(client, gate, wire)
        assert client.condition is not None
        self.assertEqual(client.condition.name, _UNAUTHORIZED)
        self.assertFalse(connection.state & Endpoint.REMOTE_ACTIVE)
        self.assertEqual(self.authenticated, [])
        self.assertPasswordNotLogged()

    def test_noDelay(self) -> None:
        """
        With no failure delay, the refusal goes out at once.
        """
        client, _ = _client(password="wrong")
        gate, wire = self.gate((_users(),), tls=True, failureDelay=0)
        self.pump(client, gate, wire)
        self.assertTrue(wire.disconnecting)
        assert client.condition is not None
        self.assertEqual(client.condition.name, _UNAUTHORIZED)

    def test_checkerError(self) -> None:
        """
        A checker that breaks is logged as a failure and answered with
        C{sys-temp}, after the delay.
        """
        client, _ = _client()
        gate, wire = self.gate((_BrokenChecker(),), tls=True)
        self.pump(client, gate, wire)
        self.clock.advance(1.0)
        self.assertEqual(_outcome(wire.value()), SASLOutcome.SYS_TEMP)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertPasswordNotLogged()

    def test_anonymous(self) -> None:
        """
        ANONYMOUS with L{AllowAnonymousAccess} lets the client in as
        L{ANONYMOUS}; a client that skips SASL too.
        """
        for mechanisms in ("ANONYMOUS", None):
            del self.authenticated[:]
            client, connection = _client(mechanisms)
            gate, wire = self.gate((AllowAnonymousAccess(),))
            self.pump(client, gate, wire)
            [(avatarId, rest)] = self.authenticated
            self.assertEqual(avatarId, ANONYMOUS)
            _protonServer(client, rest)
            self.assertTrue(connection.state & Endpoint.REMOTE_ACTIVE, mechanisms)

    def test_anonymousNotOffered(self) -> None:
        """
        With only a password checker, neither ANONYMOUS nor a client that
        skips SASL gets in.
        """
        for mechanisms in ("ANONYMOUS", None):
            client, _ = _client(mechanisms)
            gate, wire = self.gate((_users(),), tls=True)
            self.pump(client, gate, wire)
            self.assertEqual(self.authenticated, [])
            self.assertIsNotNone(client.condition, mechanisms)

    def test_external(self) -> None:
        """
        Over TLS, the gate reads the client certificate from the transport and
        offers EXTERNAL.
        """
        client, connection = _client("EXTERNAL", user=None, password=None)
        gate, wire = self.gate(
            (ExternalChecker(),), transport=_TLSTransport(_certificate()), tls=True
        )
        self.pump(client, gate, wire)
        [(avatarId, rest)] = self.authenticated
        self.assertEqual(avatarId, b"CN=client,O=amqptx tests")
        _protonServer(client, rest)
        self.assertTrue(connection.state & Endpoint.REMOTE_ACTIVE)

    def test_timeout(self) -> None:
        """
        C{timedOut} (the handshake took too long) disconnects the client and
        ends the gate.
        """
        gate, wire = self.gate((AllowAnonymousAccess(),))
        gate.dataReceived(SASL_HEADER)
        self.assertFalse(wire.disconnecting)
        gate.timedOut()
        self.assertTrue(wire.disconnecting)
        self.assertEqual(self.failures, ["SASL handshake timed out"])
        gate.dataReceived(_init("ANONYMOUS"))
        self.assertEqual(self.authenticated, [])

    def test_timeoutWhileChecking(self) -> None:
        """
        A time-out during a slow check cancels the check.
        """
        slow = _SlowChecker()
        gate, wire = self.gate((slow,))
        gate.dataReceived(SASL_HEADER + _init("ANONYMOUS"))
        self.assertEqual(len(slow.checks), 1)
        gate.timedOut()
        self.assertTrue(wire.disconnecting)
        self.assertEqual(slow.cancelled, 1)

    def test_connectionLost(self) -> None:
        """
        Losing the connection during a check cancels it and every timer.
        """
        slow = _SlowChecker()
        gate, wire = self.gate((slow,))
        gate.dataReceived(SASL_HEADER + _init("ANONYMOUS"))
        gate.connectionLost()
        self.assertEqual(slow.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.authenticated, [])

    def test_connectionLostDuringDelay(self) -> None:
        """
        Losing the connection during the failure delay cancels the delayed
        answer.
        """
        client, _ = _client(password="wrong")
        gate, wire = self.gate((_users(),), tls=True)
        self.pump(client, gate, wire)
        gate.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(wire.value(), b"")

    def test_slowCheckSucceeds(self) -> None:
        """
        A check that answers later lets the client in then.
        """
        slow = _SlowChecker()
        client, connection = _client("ANONYMOUS")
        gate, wire = self.gate((slow,))
        self.pump(client, gate, wire)
        self.assertEqual(self.authenticated, [])
        slow.checks[0].callback(ANONYMOUS)
        self.pump(client, gate, wire)
        [(_, rest)] = self.authenticated
        _protonServer(client, rest)
        self.assertTrue(connection.state & Endpoint.REMOTE_ACTIVE)

    def test_garbage(self) -> None:
        """
        Garbage is answered and closed at once, and logged with its reason.
        """
        gate, wire = self.gate((AllowAnonymousAccess(),))
        gate.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(wire.value(), SASL_HEADER)
        self.assertTrue(wire.disconnecting)
        self.assertEqual(self.failures, ["not an AMQP protocol header"])
        [event] = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(event["reason"], "not an AMQP protocol header")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noFailedCallback(self) -> None:
        """
        Without a C{failed} callback, a failure just closes the connection.
        """
        wire = StringTransport()
        gate = SASLGate(
            SASLConfig(),
            wire,
            self.clock,
            tls=False,
            authenticated=lambda a, r, o: None,
        )
        gate.dataReceived(b"HTTP")
        self.assertTrue(wire.disconnecting)

    def test_peerAddresses(self) -> None:
        """
        IPv6 addresses are logged in brackets, other addresses as they are.
        """
        ipv6 = StringTransport(peerAddress=IPv6Address("TCP", "::1", 5672))
        self.assertEqual(self.gate(transport=ipv6)[0].peer, "[::1]:5672")
        unix = StringTransport(peerAddress=UNIXAddress("/tmp/amqp.sock"))
        self.assertIn("/tmp/amqp.sock", self.gate(transport=unix)[0].peer)
