# -*- test-case-name: tests.test_sasl -*-
"""
Server-side SASL, done by amqptx in front of proton's engine.

proton's bundled server SASL has no PLAIN without Cyrus (the PyPI wheel has
none), so an amqptx server performs the SASL layer of AMQP 1.0 (part 5.3 of the
specification) itself and checks credentials through C{twisted.cred}.  Once the
exchange is over, every following byte, the client's AMQP protocol header
included, goes to a proton server transport on which SASL was never enabled.

Two layers:

  - L{SASLServer} is sans-I/O: bytes in (L{SASLServer.feed}), bytes out
    (L{SASLServer.takeOutput}), credentials out
    (L{SASLServer.pendingCredentials}), a verdict in (L{SASLServer.succeed},
    L{SASLServer.fail}), and the bytes for proton out
    (L{SASLServer.remainder}).  No clock, no transport, no Deferred.
  - L{SASLGate} runs a L{SASLServer} on a Twisted transport: it checks the
    credentials with L{checkCredentials}, delays the answer to a failed login
    on an injected clock, and logs (the protocol times the handshake).

L{SASLConfig} holds what a listening endpoint decides (checkers, mechanisms,
whether PLAIN may go over cleartext, delays and limits).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache
from typing import TYPE_CHECKING, Literal

from proton import Data, ProtonException
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import (
    Anonymous,
    IAnonymous,
    ICredentials,
    IUsernamePassword,
    UsernamePassword,
)
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, implementer

from ._sockets import writeNow

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport

__all__ = [
    "AMQP_HEADER",
    "SASL_HEADER",
    "AvatarId",
    "ExternalChecker",
    "ExternalCredentials",
    "IExternalCredentials",
    "SASLConfig",
    "SASLGate",
    "SASLOutcome",
    "SASLServer",
    "SASLState",
    "checkCredentials",
    "mechanismsFor",
    "peerSubject",
]

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
"""The protocol header of AMQP 1.0 itself (protocol id 0)."""

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
"""The protocol header of the AMQP 1.0 SASL layer (protocol id 3)."""

AvatarId = bytes | tuple[()]
"""What a C{twisted.cred} checker identifies a user with: bytes, or
L{twisted.cred.checkers.ANONYMOUS}."""

SASLState = Literal["waiting", "checking", "done", "failed"]
"""
The states of a L{SASLServer}:

  - C{"waiting"}: it needs more bytes from the client;
  - C{"checking"}: L{SASLServer.pendingCredentials} wait for a verdict;
  - C{"done"}: the client is authenticated; L{SASLServer.remainder} and
    what follows are for proton;
  - C{"failed"}: the exchange failed; write L{SASLServer.takeOutput} and
    close the connection.
"""

# The descriptors of the SASL frame bodies (part 5.3.3 of the specification).
_MECHANISMS = 0x40
_INIT = 0x41
_OUTCOME = 0x44
_DESCRIPTORS = {
    "amqp:sasl-mechanisms:list": _MECHANISMS,
    "amqp:sasl-init:list": _INIT,
    "amqp:sasl-challenge:list": 0x42,
    "amqp:sasl-response:list": 0x43,
    "amqp:sasl-outcome:list": _OUTCOME,
}

_FRAME_HEADER = struct.Struct(">IBBH")
_SASL_FRAME = 0x01

# The mechanisms amqptx implements, strongest first: the order they are
# offered in when a configuration leaves the order to amqptx.
_KNOWN = ("EXTERNAL", "PLAIN", "ANONYMOUS")

# Longest client-chosen text (user name, trace) copied into a log event.
_LOGGED = 256


class SASLOutcome(IntEnum):
    """
    The codes of a C{sasl-outcome} frame.
    """

    OK = 0
    """Authentication succeeded."""
    AUTH = 1
    """Authentication failed: bad credentials, or an unusable mechanism."""
    SYS = 2
    """A system error on the server."""
    SYS_PERM = 3
    """An unrecoverable error (here: the client broke the protocol)."""
    SYS_TEMP = 4
    """A transient error (here: a checker failed unexpectedly)."""


class IExternalCredentials(ICredentials):
    """
    The identity a client proved outside SASL, for SASL EXTERNAL: the subject
    of the certificate it presented in the TLS handshake, verified by the TLS
    layer against the server's trusted authorities.
    """

    subject = Attribute(
        "The certificate's subject as an RFC 4514 string, such as "
        "C{'CN=client,O=Example'} (L{str})."
    )


@implementer(IExternalCredentials)
@dataclass(frozen=True)
class ExternalCredentials:
    """
    Credentials for SASL EXTERNAL.

    @ivar subject: the subject of the client's verified TLS certificate, as
        an RFC 4514 string.
    """

    subject: str


@implementer(ICredentialsChecker)
class ExternalChecker:
    """
    A checker for SASL EXTERNAL: it accepts the subject of a client
    certificate that the TLS layer verified, and identifies the user by it.

    @ivar allowed: the subjects let in, or L{None} for every subject the TLS
        layer accepted.
    """

    credentialInterfaces = (IExternalCredentials,)

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        """
        @param allowed: the certificate subjects (RFC 4514 strings) to let in,
            or L{None} for all.
        """
        self.allowed = None if allowed is None else frozenset(allowed)

    def requestAvatarId(self, credentials: object) -> Deferred[AvatarId]:
        """
        Accept the certificate subject as the avatar id.

        @param credentials: an L{IExternalCredentials} provider.
        @return: a Deferred that fires with the subject, UTF-8 encoded, or
            fails with L{UnauthorizedLogin}.
        """
        subject = getattr(credentials, "subject", None)
        if not isinstance(subject, str) or not subject:
            return fail(UnauthorizedLogin("no certificate subject"))
        if self.allowed is not None and subject not in self.allowed:
            return fail(UnauthorizedLogin("certificate subject not allowed"))
        avatarId: Deferred[AvatarId] = Deferred()
        avatarId.callback(subject.encode("utf-8"))
        return avatarId


def mechanismsFor(checkers: Iterable[ICredentialsChecker]) -> tuple[str, ...]:
    """
    Name the SASL mechanisms that a list of checkers can check.

    L{IExternalCredentials} gives EXTERNAL, L{IUsernamePassword} PLAIN and
    L{IAnonymous} ANONYMOUS (so C{twistd}'s C{--auth anonymous} gives
    ANONYMOUS, C{--auth file:...} or C{--auth memory:...} PLAIN).

    @param checkers: credentials checkers.
    @return: the mechanisms, strongest first.
    """
    interfaces = {i for checker in checkers for i in checker.credentialInterfaces}
    found = {
        "EXTERNAL": IExternalCredentials,
        "PLAIN": IUsernamePassword,
        "ANONYMOUS": IAnonymous,
    }
    return tuple(
        name for name in _KNOWN if any(i.isOrExtends(found[name]) for i in interfaces)
    )


def checkCredentials(
    checkers: Iterable[ICredentialsChecker], credentials: ICredentials
) -> Deferred[AvatarId]:
    """
    Check credentials with the first checker that accepts them.

    The checkers that handle one of the interfaces C{credentials} provides are
    tried in order; a checker that refuses them (L{UnauthorizedLogin}) passes
    them to the next one.  This is C{twisted.cred.portal.Portal}'s check
    without the realm: a SASL server needs the avatar id only.

    @param checkers: the checkers, in order.
    @param credentials: the credentials from the client.
    @return: a Deferred that fires with the avatar id, or fails with
        L{UnauthorizedLogin} when no checker accepts the credentials (also
        when none handles them), or with whatever unexpected error the
        checker raised.  Cancelling it cancels the running check.
    """
    candidates = [
        checker
        for checker in checkers
        if any(i.providedBy(credentials) for i in checker.credentialInterfaces)
    ]
    if not candidates:
        return fail(UnauthorizedLogin("no checker handles these credentials"))

    def tryFrom(index: int) -> Deferred[AvatarId]:
        checker = candidates[index]
        attempt: Deferred[AvatarId] = maybeDeferred(
            checker.requestAvatarId, credentials
        )
        if index + 1 < len(candidates):

            def tryNext(failure: Failure) -> Deferred[AvatarId] | Failure:
                if failure.check(LoginFailed):
                    return tryFrom(index + 1)
                return failure

            attempt.addErrback(tryNext)
        return attempt

    return tryFrom(0)


def peerSubject(transport: object) -> str | None:
    """
    Get the subject of the certificate a TLS client presented.

    Twisted's TLS transports (L{twisted.protocols.tls.TLSMemoryBIOProtocol},
    used by C{ssl:} endpoints and by amqptx's C{amqps} server endpoint) have
    C{getPeerCertificate()}; the certificate is there once the handshake is
    over, which is before the first application byte arrives.  With
    Twisted's C{CertificateOptions(verify=True, caCerts=...)}, a server asks
    for a client certificate and refuses the handshake if it is not signed by
    one of C{caCerts}, so a certificate seen here has been verified.  Server
    options that accept unverified certificates must not be combined with
    EXTERNAL.

    @param transport: the protocol's transport.
    @return: the subject as an RFC 4514 string (C{"CN=client,O=Example"}), or
        L{None} when the transport is not TLS or the client sent no
        certificate.
    """
    getPeerCertificate = getattr(transport, "getPeerCertificate", None)
    if getPeerCertificate is None:
        return None
    certificate = getPeerCertificate()
    if certificate is None:
        return None
    subject: str = certificate.to_cryptography().subject.rfc4514_string()
    return subject or None


def _frame(descriptor: int, fill: Callable[[Data], None]) -> bytes:
    """
    Encode a SASL frame.

    @param descriptor: the frame body's descriptor code.
    @param fill: puts the list's fields into the codec, inside the list.
    @return: the frame: the 8-byte frame header, then the described list.
    """
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(descriptor)
    data.put_list()
    data.enter()
    fill(data)
    data.exit()
    data.exit()
    body = bytes(data.encode())
    return _FRAME_HEADER.pack(8 + len(body), 2, _SASL_FRAME, 0) + body


@cache
def _mechanismsFrame(mechanisms: tuple[str, ...]) -> bytes:
    def fill(data: Data) -> None:
        data.put_array(False, Data.SYMBOL)
        data.enter()
        for name in mechanisms:
            data.put_symbol(name)
        data.exit()

    return _frame(_MECHANISMS, fill)


@cache
def _outcomeFrame(code: SASLOutcome) -> bytes:
    def fill(data: Data) -> None:
        data.put_ubyte(int(code))

    return _frame(_OUTCOME, fill)


class _Malformed(Exception):
    """
    The client sent something that is not a well-formed SASL frame body.
    """


class _Other:
    """
    A decoded field of a type a SASL frame never uses here.
    """


_Field = str | bytes | None | _Other


def _decodeBody(body: bytes) -> tuple[int, list[_Field]]:
    """
    Decode a SASL frame body: one described list.

    @param body: the frame's body.
    @return: the descriptor code and the list's fields (symbols and strings
        as L{str}, binaries as L{bytes}, nulls as L{None},
        anything else as an L{_Other}).
    @raise _Malformed: when the body is not one described list.
    """
    try:
        return _readBody(body)
    except (ProtonException, UnicodeDecodeError) as e:
        raise _Malformed(f"undecodable frame body: {e}") from None


def _readBody(body: bytes) -> tuple[int, list[_Field]]:
    """
    Decode a SASL frame body; see L{_decodeBody}.

    @raise ProtonException: when proton cannot decode it.
    @raise UnicodeDecodeError: for a symbol or string that is not valid
        text.
    @raise _Malformed: when it is not one described list.
    """
    data = Data()
    consumed = data.decode(body)
    if consumed != len(body):
        raise _Malformed("bytes after the frame body")
    data.rewind()
    if data.next() != Data.DESCRIBED:
        raise _Malformed("the frame body is not a described type")
    data.enter()
    kind = data.next()
    if kind == Data.ULONG:
        descriptor = int(data.get_ulong())
    elif kind == Data.SYMBOL:
        descriptor = _DESCRIPTORS.get(str(data.get_symbol()), -1)
    else:
        raise _Malformed("bad descriptor")
    if data.next() != Data.LIST:
        raise _Malformed("the frame body is not a list")
    data.enter()
    fields: list[_Field] = []
    while (kind := data.next()) is not None:
        if kind == Data.NULL:
            fields.append(None)
        elif kind == Data.SYMBOL:
            fields.append(str(data.get_symbol()))
        elif kind == Data.STRING:
            fields.append(str(data.get_string()))
        elif kind == Data.BINARY:
            # A memory view into the codec's buffer: copy it while it lives.
            fields.append(bytes(data.get_binary()))
        else:
            fields.append(_Other())
    return descriptor, fields


def _printable(text: str) -> str:
    """
    Escape control characters (a line break, say) in client-chosen text, so
    that it cannot forge log lines.
    """
    return text if text.isprintable() else repr(text)[1:-1]


def _text(value: bytes, limit: int = _LOGGED) -> str:
    """
    Make client-chosen bytes safe to log.
    """
    return _printable(value[:limit].decode("utf-8", "replace"))


# The internal phases of a SASLServer, and the public state of each.
_Phase = Literal["header", "init", "check", "bypass", "done", "failed"]
_STATES: dict[_Phase, SASLState] = {
    "header": "waiting",
    "init": "waiting",
    "check": "checking",
    "bypass": "checking",
    "done": "done",
    "failed": "failed",
}


class SASLServer:
    """
    The server side of the AMQP 1.0 SASL exchange, sans I/O.

    Feed it the client's bytes; write out what L{takeOutput} returns.  When
    L{state} becomes C{"checking"}, check L{pendingCredentials} (see
    L{checkCredentials}) and call L{succeed} or L{fail}.  When it becomes
    C{"done"}, which it does as soon as it sends the C{ok} outcome, hand
    L{remainder} (what the client sent after its C{sasl-init}: its AMQP
    header and what followed, as far as they came) to a proton transport
    without SASL, and every later byte too: proton reads the header, and
    may write its own at once, with the outcome.  When it becomes
    C{"failed"}, write the output and close.

    A client that sends the plain AMQP header, skipping SASL, is let through
    as anonymous when ANONYMOUS is offered: the server then asks for a
    verdict on L{Anonymous} credentials with L{mechanism} L{None}, and on
    success L{remainder} is everything the client sent.  Otherwise, as for
    any other protocol header, the server answers with the SASL header and
    fails (part 2.2 of the specification).

    Nothing the client sends makes a method raise: broken, oversized or
    unexpected input fails the exchange (C{sys-perm} once frames are being
    exchanged), and L{failureReason} says why.

    @ivar offered: the mechanisms offered to the client, in order.
    @ivar mechanism: the mechanism the client chose, or L{None}.
    @ivar hostname: the C{hostname} field of the client's C{sasl-init}, or
        L{None}.
    @ivar user: the identity the client claims, for logging: the PLAIN user
        name or the EXTERNAL certificate subject (L{None} otherwise).
    @ivar trace: ANONYMOUS's trace information, or L{None}.
    @ivar pendingCredentials: the credentials to check while L{state} is
        C{"checking"} (L{UsernamePassword}, L{Anonymous} or
        L{ExternalCredentials}), else L{None}.
    @ivar avatarId: the avatar id given to L{succeed}, or L{None}.
    @ivar failureReason: why the exchange failed, or L{None}.
    @ivar failureCode: the code of the C{sasl-outcome} sent when the exchange
        failed with one; else L{None}.
    """

    def __init__(
        self,
        mechanisms: Iterable[str],
        *,
        tls: bool = False,
        allowInsecure: bool = False,
        peerSubject: str | None = None,
        maxFrameSize: int = 65536,
        maxFrames: int = 4,
    ) -> None:
        """
        @param mechanisms: the mechanisms to offer, in order of preference,
            from C{"PLAIN"}, C{"ANONYMOUS"} and C{"EXTERNAL"}; each is offered
            only when the connection allows it (below).
        @param tls: whether the connection is protected by TLS.  PLAIN is
            offered over TLS, and over cleartext only with C{allowInsecure}.
        @param allowInsecure: whether PLAIN may be offered without TLS.
        @param peerSubject: the subject of the client's verified TLS
            certificate (see L{peerSubject}), or L{None}; EXTERNAL is offered
            only with TLS and a subject.
        @param maxFrameSize: the largest SASL frame accepted, in bytes; also
            the most bytes buffered while a verdict is pending.
        @param maxFrames: how many frames the client may send before its
            C{sasl-init} is complete.
        @raise ValueError: for an unknown mechanism.
        """
        wanted = tuple(m.upper() for m in mechanisms)
        unknown = [m for m in wanted if m not in _KNOWN]
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms: {', '.join(unknown)}")
        usable = {
            "PLAIN": tls or allowInsecure,
            "ANONYMOUS": True,
            "EXTERNAL": tls and bool(peerSubject),
        }
        self.offered = tuple(dict.fromkeys(m for m in wanted if usable[m]))
        self._peerSubject = peerSubject
        self._maxFrameSize = maxFrameSize
        self._framesLeft = maxFrames
        self._phase: _Phase = "header"
        self._input = bytearray()
        self._output: list[bytes] = []
        self.mechanism: str | None = None
        self.hostname: str | None = None
        self.user: str | None = None
        self.trace: str | None = None
        self.pendingCredentials: ICredentials | None = None
        self.avatarId: AvatarId | None = None
        self.failureReason: str | None = None
        self.failureCode: SASLOutcome | None = None

    @property
    def state(self) -> SASLState:
        """
        Where the exchange is: see L{SASLState}.
        """
        return _STATES[self._phase]

    # --- bytes in, bytes out -----------------------------------------------------

    def feed(self, data: bytes) -> None:
        """
        Take bytes from the client and act on them.

        After the exchange is done, bytes fed are kept for L{remainder}; after
        it failed, they are dropped.

        @param data: bytes read from the connection.
        """
        if self._phase == "failed":
            return
        self._input += data
        if self._phase not in ("check", "bypass"):
            self._process()
        if self._phase in ("check", "bypass"):
            # Waiting for a verdict: bound what the client may send meanwhile.
            if len(self._input) > self._maxFrameSize:
                reason = "too many bytes before the SASL outcome"
                if self._phase == "bypass":
                    self._refuseHeader(reason)
                else:
                    self._failProtocol(reason)

    def takeOutput(self) -> bytes:
        """
        Take every byte there is for the client.

        @return: the bytes to write, possibly empty.
        """
        output, self._output = self._output, []
        return b"".join(output)

    def remainder(self) -> bytes:
        """
        Take the bytes that follow the SASL exchange, for proton.

        @return: once L{state} is C{"done"}, what the client sent after the
            SASL exchange (its AMQP protocol header first) up to now (the
            first call) or since the last call; before that, C{b""}.
        """
        if self._phase != "done":
            return b""
        data = bytes(self._input)
        del self._input[:]
        return data

    # --- the verdict -------------------------------------------------------------

    def succeed(self, avatarId: AvatarId) -> None:
        """
        Accept the pending credentials: send the C{ok} outcome.

        @param avatarId: who the client is, from the checker.
        @raise RuntimeError: unless L{state} is C{"checking"} or C{"failed"}
            (the latter, when the client broke the protocol during the check,
            makes this a no-op).
        """
        if self._noVerdict():
            return
        self.avatarId = avatarId
        self.pendingCredentials = None
        if self._phase != "bypass":
            self._output.append(_outcomeFrame(SASLOutcome.OK))
        self._phase = "done"

    def fail(self, code: SASLOutcome = SASLOutcome.AUTH) -> None:
        """
        Refuse the pending credentials: send the outcome C{code} (or, for a
        client that skipped SASL, the SASL header) and fail.

        @param code: the outcome: L{SASLOutcome.AUTH} for bad credentials,
            L{SASLOutcome.SYS_TEMP} when they could not be checked.
        @raise RuntimeError: unless L{state} is C{"checking"} or C{"failed"}
            (the latter makes this a no-op).
        """
        if self._noVerdict():
            return
        self.pendingCredentials = None
        if self._phase == "bypass":
            self._refuseHeader("anonymous access refused")
        else:
            self._fail(code, "credentials refused")

    def _noVerdict(self) -> bool:
        if self._phase == "failed":
            return True
        if self._phase not in ("check", "bypass"):
            raise RuntimeError(f"no credentials are pending (state {self.state})")
        return False

    # --- the exchange ----------------------------------------------------------------

    def _process(self) -> None:
        while True:
            phase = self._phase
            if phase == "header":
                if not self._readHeader():
                    return
            elif phase == "init":
                if not self._readFrame():
                    return
            else:
                return

    def _readHeader(self) -> bool:
        """
        Read the client's protocol header.

        @return: whether the phase changed.
        """
        data = self._input
        if bytes(data[:4]) != b"AMQP"[: len(data)]:
            self._refuseHeader("not an AMQP protocol header")
            return True
        if len(data) < 8:
            return False
        header = bytes(data[:8])
        if header == SASL_HEADER:
            del data[:8]
            self._output += [SASL_HEADER, _mechanismsFrame(self.offered)]
            self._phase = "init"
        elif header == AMQP_HEADER and "ANONYMOUS" in self.offered:
            # Left in the input: proton reads it.
            self.pendingCredentials = Anonymous()
            self._phase = "bypass"
        elif header == AMQP_HEADER:
            self._refuseHeader("the client skipped SASL")
        else:
            self._refuseHeader(f"unsupported protocol header {header!r}")
        return True

    def _readFrame(self) -> bool:
        """
        Read one SASL frame from the client, if it is all there.

        @return: whether a frame was read (or the exchange failed).
        """
        data = self._input
        if len(data) < 4:
            return False
        (size,) = struct.unpack_from(">I", data)
        if size > self._maxFrameSize:
            self._failProtocol(f"SASL frame too large ({size} bytes)")
            return True
        if size < 8:
            self._failProtocol(f"bad SASL frame size {size}")
            return True
        if len(data) < 8:
            return False
        _, doff, kind, _ = _FRAME_HEADER.unpack_from(data)
        if kind != _SASL_FRAME:
            self._failProtocol(f"frame of type {kind} during SASL")
            return True
        if doff < 2 or doff * 4 > size:
            self._failProtocol(f"bad SASL frame data offset {doff}")
            return True
        if len(data) < size:
            return False
        body = bytes(data[doff * 4 : size])
        del data[:size]
        self._framesLeft -= 1
        if self._framesLeft < 0:
            self._failProtocol("too many SASL frames")
            return True
        if not body:
            # An empty frame, as heartbeats are; it says nothing.
            return True
        try:
            descriptor, fields = _decodeBody(body)
        except _Malformed as e:
            self._failProtocol(str(e))
            return True
        if descriptor != _INIT:
            self._failProtocol(f"unexpected SASL frame {descriptor:#x}")
            return True
        self._readInit(fields)
        return True

    def _readInit(self, fields: list[_Field]) -> None:
        """
        Act on the client's C{sasl-init}.

        @param fields: its fields: mechanism, initial-response, hostname.
        """
        fields = fields + [None] * (3 - len(fields))
        mechanism, response, hostname = fields[:3]
        if not isinstance(mechanism, str) or not mechanism:
            self._failProtocol("sasl-init without a mechanism")
            return
        if response is not None and not isinstance(response, bytes):
            self._failProtocol("sasl-init's initial response is not binary")
            return
        if hostname is not None and not isinstance(hostname, str):
            self._failProtocol("sasl-init's hostname is not a string")
            return
        self.mechanism = mechanism = _printable(mechanism[:_LOGGED])
        self.hostname = hostname
        if mechanism not in self.offered:
            self._fail(SASLOutcome.AUTH, f"mechanism {mechanism!r} not offered")
            return
        credentials: ICredentials
        if mechanism == "PLAIN":
            parts = (response or b"").split(b"\0")
            if len(parts) != 3 or not parts[1]:
                self._fail(SASLOutcome.AUTH, "malformed PLAIN response")
                return
            authzid, authcid, password = parts
            self.user = _text(authcid)
            try:
                authcid.decode("utf-8")
                authzid.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(SASLOutcome.AUTH, "PLAIN user name is not UTF-8")
                return
            if authzid and authzid != authcid:
                self._fail(SASLOutcome.AUTH, "authorization identity refused")
                return
            credentials = UsernamePassword(authcid, password)
        elif mechanism == "EXTERNAL":
            subject = self._peerSubject
            assert subject is not None  # EXTERNAL is offered only with one
            self.user = subject
            if response and response != subject.encode("utf-8"):
                self._fail(SASLOutcome.AUTH, "authorization identity refused")
                return
            credentials = ExternalCredentials(subject)
        else:
            self.trace = _text(response) if response else None
            credentials = Anonymous()
        self.pendingCredentials = credentials
        self._phase = "check"

    def _refuseHeader(self, reason: str) -> None:
        """
        Answer an unacceptable protocol header with the SASL header, and fail.
        """
        self._output.append(SASL_HEADER)
        self.failureReason = reason
        self._phase = "failed"
        self.pendingCredentials = None
        del self._input[:]

    def _failProtocol(self, reason: str) -> None:
        self._fail(SASLOutcome.SYS_PERM, reason)

    def _fail(self, code: SASLOutcome, reason: str) -> None:
        """
        Send a failed outcome, and fail.
        """
        self._output.append(_outcomeFrame(code))
        self.failureReason = reason
        self.failureCode = code
        self._phase = "failed"
        self.pendingCredentials = None
        del self._input[:]


@dataclass(frozen=True)
class SASLConfig:
    """
    How an amqptx server authenticates its clients.

    @ivar checkers: the C{twisted.cred} checkers, tried in order (for
        instance C{twistd}'s C{--auth} checkers, L{ExternalChecker}, or
        L{twisted.cred.checkers.AllowAnonymousAccess}).
    @ivar mechanisms: the mechanisms to offer, in order; L{None} for those the
        checkers can check (see L{mechanismsFor}).
    @ivar allowInsecure: whether PLAIN may be offered without TLS.
    @ivar failureDelay: seconds a client waits for the outcome of a refused
        login, which slows password guessing down.
    @ivar timeout: seconds a client has to finish the handshake, SASL and
        the AMQP Open, from the moment the connection is made (the
        protocol's timer; see L{SASLGate.timedOut}).
    @ivar maxFrameSize: the largest SASL frame accepted.
    """

    checkers: tuple[ICredentialsChecker, ...] = field(default=(), hash=False)
    mechanisms: tuple[str, ...] | None = None
    allowInsecure: bool = False
    failureDelay: float = 1.0
    timeout: float = 30.0
    maxFrameSize: int = 65536

    # What offer() gives, worked out once: a server asks at every connection.
    _offered: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offered = self.mechanisms
        if offered is None:
            offered = mechanismsFor(self.checkers)
        object.__setattr__(self, "_offered", offered)

    def offer(self) -> tuple[str, ...]:
        """
        @return: the mechanisms to offer, in order, before the connection's
            TLS state narrows them down.
        """
        return self._offered


def _describePeer(transport: ITransport) -> str:
    """
    @return: the transport's peer address, for logging.
    """
    address = transport.getPeer()
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        return str(address)
    if ":" in str(host):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class SASLGate:
    """
    SASL in front of an AMQP server connection, on a Twisted transport.

    The gate builds a L{SASLServer} when the client's first bytes arrive (the
    TLS handshake, and with it the client certificate, is over by then),
    writes the server's answers to the transport, checks the client's
    credentials with L{checkCredentials}, and then either calls
    C{authenticated(avatarId, remainder, outcome)}, after which the caller
    sends C{outcome} (the C{ok} outcome frame, for the caller to send with
    its own first bytes: one send) and hands C{remainder} and every later
    byte to proton, or closes the transport.

    A refused login is logged at once and answered after
    L{SASLConfig.failureDelay} seconds; bytes arriving meanwhile are dropped.
    Whoever runs the gate times the handshake (L{SASLConfig.timeout}): the
    protocol, for SASL and the AMQP Open together, and calls L{timedOut}.

    @ivar server: the SASL server, once the first bytes arrived.
    @ivar avatarId: the authenticated client's avatar id, or L{None}.
    @ivar peer: the client's address, for logging.
    """

    _log = Logger()

    def __init__(
        self,
        config: SASLConfig,
        transport: ITransport,
        clock: IReactorTime,
        *,
        tls: bool,
        authenticated: Callable[[AvatarId, bytes, bytes], None],
        failed: Callable[[str], None] | None = None,
    ) -> None:
        """
        @param config: the server's SASL configuration.
        @param transport: the connection's transport.
        @param clock: the clock for the failure delay.
        @param tls: whether the connection is protected by TLS.
        @param authenticated: called with the avatar id, the bytes for
            proton and the outcome frame to send once the client is in.
        @param failed: called with the reason just before the gate closes
            the transport (refused credentials, a broken exchange, a timeout);
            or L{None}.
        """
        self._config = config
        self._transport = transport
        self._clock = clock
        self._tls = tls
        self._authenticated = authenticated
        self._failed = failed
        self.server: SASLServer | None = None
        self.avatarId: AvatarId | None = None
        self.peer = _describePeer(transport)
        self._over = False
        self._checking: Deferred[AvatarId] | None = None
        self._delayed: IDelayedCall | None = None

    def dataReceived(self, data: bytes) -> None:
        """
        Give the gate bytes from the client.

        @param data: bytes read from the transport.
        """
        if self._over or self._delayed is not None:
            return
        server = self.server
        if server is None:
            config = self._config
            self.server = server = SASLServer(
                config.offer(),
                tls=self._tls,
                allowInsecure=config.allowInsecure,
                peerSubject=peerSubject(self._transport) if self._tls else None,
                maxFrameSize=config.maxFrameSize,
            )
        server.feed(data)
        self._advance()

    def connectionLost(self) -> None:
        """
        Stop everything: the connection is gone.
        """
        self._stop()

    def _advance(self) -> None:
        server = self.server
        assert server is not None
        output = server.takeOutput()
        state = server.state
        if output and state != "done":
            # The client waits for it: at once, not at the reactor's next
            # turn.  (An C{ok} outcome goes with proton's header and Open,
            # which the caller writes next: one send carries all three.)
            writeNow(self._transport, output)
        if state == "checking" and self._checking is None:
            credentials = server.pendingCredentials
            assert credentials is not None
            self._checking = checkCredentials(self._config.checkers, credentials)
            self._checking.addCallbacks(self._accepted, self._refused)
        elif state == "done":
            self._stop()
            self.avatarId = server.avatarId
            self._log.info(
                "SASL {mechanism} login of {user} from {peer}",
                mechanism=server.mechanism or "none (no SASL)",
                user=server.user or "anonymous",
                peer=self.peer,
            )
            assert server.avatarId is not None
            self._authenticated(server.avatarId, server.remainder(), output)
        elif state == "failed":
            self._log.warn(
                "SASL {mechanism} login of {user} from {peer} failed: {reason}",
                mechanism=server.mechanism,
                user=server.user,
                peer=self.peer,
                reason=server.failureReason,
            )
            self._end(server.failureReason or "SASL failed")

    def _accepted(self, avatarId: AvatarId) -> None:
        # Once the gate is over, the check was cancelled: no result comes.
        self._checking = None
        server = self.server
        assert server is not None
        server.succeed(avatarId)
        self._advance()

    def _refused(self, failure: Failure) -> None:
        self._checking = None
        if self._over or failure.check(CancelledError):
            return
        server = self.server
        assert server is not None
        if failure.check(LoginFailed):
            code = SASLOutcome.AUTH
            self._log.warn(
                "SASL {mechanism} login of {user} from {peer} refused",
                mechanism=server.mechanism or "none (no SASL)",
                user=server.user or "anonymous",
                peer=self.peer,
            )
        else:
            code = SASLOutcome.SYS_TEMP
            self._log.failure(
                "Checking the SASL {mechanism} login of {user} from {peer} failed",
                failure,
                mechanism=server.mechanism or "none (no SASL)",
                user=server.user or "anonymous",
                peer=self.peer,
            )

        def answer() -> None:
            self._delayed = None
            server.fail(code)
            self._transport.write(server.takeOutput())
            self._end(server.failureReason or "SASL failed")

        delay = self._config.failureDelay
        if delay > 0:
            self._delayed = self._clock.callLater(delay, answer)
        else:
            answer()

    def timedOut(self) -> None:
        """
        End the handshake: it took too long.
        """
        self._log.warn("SASL handshake with {peer} timed out", peer=self.peer)
        self._end("SASL handshake timed out")

    def _end(self, reason: str) -> None:
        self._stop()
        if self._failed is not None:
            self._failed(reason)
        self._transport.loseConnection()

    def _stop(self) -> None:
        self._over = True
        delayed, self._delayed = self._delayed, None
        if delayed is not None and delayed.active():
            delayed.cancel()
        checking, self._checking = self._checking, None
        if checking is not None:
            checking.cancel()
