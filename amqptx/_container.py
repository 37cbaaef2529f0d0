# -*- test-case-name: tests.test_container -*-
"""
proton's C{Container} on the Twisted reactor.

Programs written for C{proton.reactor.Container} and C{MessagingHandler} run
with only the import changed::

    from amqptx import Container          # instead of proton.reactor

    Container(HelloWorld("amqp://localhost/examples")).run()

The handlers get the same proton objects (C{Connection}, C{Sender},
C{Delivery}, C{Message}) and the same callbacks, in the same order, as with
proton's own container: amqptx dispatches proton's own events, through the
handlers' own children (C{MessagingHandler}'s flow controller, handshaker and
acking handlers), and C{event.container} is the L{Container}.  What differs
is underneath: sockets, TLS, name resolution, timers and server-side SASL are
Twisted's and amqptx's (see L{Container} for the details).
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from uuid import uuid4

from OpenSSL import SSL, crypto
from proton import (
    Collector,
    Condition,
    Connection,
    Endpoint,
    Event,
    Handler,
    Session,
    Url,
)
from proton import SSLDomain as _ProtonSSLDomain
from service_identity import VerificationError
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionDone,
    NoProtocol,
)
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IReactorTime,
)
from twisted.internet.protocol import Factory
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._endpoints import AMQPClientEndpoint, AMQPServerEndpoint
from ._engine import ConnectionSettings, Engine
from ._protocol import AMQPProtocol
from ._reconnect import reconnectPolicy
from ._url import AMQPURL, DEFAULT_PORTS, parseURL

if TYPE_CHECKING:
    from proton import Link, Receiver, Sender
    from twisted.internet.interfaces import IDelayedCall

    from ._reconnect import IReconnectPolicy

__all__ = ["Container", "ContainerService", "SSLDomain"]

_UNAUTHORIZED = "amqp:unauthorized-access"

# Keyword arguments of Container.connect besides its named parameters, as
# proton's Container takes them.
_CONNECT_OPTIONS = frozenset(
    {
        "user",
        "password",
        "allowed_mechs",
        "allow_insecure_mechs",
        "sasl_enabled",
        "virtual_host",
        "sni",
        "max_frame_size",
        "container_id",
        "offered_capabilities",
        "desired_capabilities",
        "properties",
    }
)


def _globalReactor() -> Any:
    """
    @return: the global reactor, imported only when a container needs one.
    """
    from twisted.internet import reactor

    return reactor


# --- URLs ----------------------------------------------------------------------------


def _toURL(value: object) -> AMQPURL:
    """
    Read a connection URL the way proton's C{Url} does: the scheme may be
    left out (C{"localhost:5672/examples"} is C{amqp}).

    @param value: URL text, a C{proton.Url} or an L{AMQPURL}.
    @return: the URL.
    @raise ValueError: for a bad URL.
    @raise TypeError: for something that is not a URL.
    """
    if isinstance(value, AMQPURL):
        return value
    if isinstance(value, Url):
        scheme = value.scheme or "amqp"
        port = value.port
        return AMQPURL(
            scheme,
            value.host or "localhost",
            int(port) if port is not None else DEFAULT_PORTS[scheme],
            value.username or None,
            value.password if value.username else None,
            value.path or "",
        )
    if not isinstance(value, str):
        raise TypeError(f"not a URL: {value!r}")
    if "://" not in value:
        value = "amqp://" + value
    return parseURL(value)


# Port 0 in the authority of a URL to listen on.
_ANY_PORT = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^/]*?):0+(?=/|$)")


def _listenURL(value: object) -> tuple[AMQPURL, int]:
    """
    Read a URL to listen on, as L{_toURL} reads one, but with port 0 (any
    free port) allowed, as proton's C{Container.listen} allows it.

    @param value: URL text, a C{proton.Url} or an L{AMQPURL}.
    @return: the URL (with the scheme's port in place of 0), and the port to
        listen on.
    @raise ValueError: for a bad URL.
    @raise TypeError: for something that is not a URL.
    """
    if isinstance(value, Url) and value.port is not None and int(value.port) == 0:
        value = str(value)
    if isinstance(value, str):
        text, anyPort = _ANY_PORT.subn(r"\1", value)
        url = _toURL(text)
        return url, 0 if anyPort else url.port
    url = _toURL(value)
    return url, url.port


def _protonURL(url: AMQPURL) -> Url:
    """
    @param url: a connection URL.
    @return: the same as a C{proton.Url} without the password, for
        C{Connection.url} and C{Connection.connected_address}.
    """
    return Url(  # type: ignore[no-untyped-call]
        scheme=url.scheme, host=url.host, port=url.port, username=url.user
    )


def _linkName(container: str | None, remote: str | None, local: str | None) -> str:
    """
    Name a link as proton's container does: the container id, then the
    addresses, or a UUID when there is no address.
    """
    if remote and local:
        return f"{container}-{remote}-{local}"
    if remote or local:
        return f"{container}-{remote or local}"
    return f"{container}-{uuid4()}"


def _applyOptions(options: Any, link: Link) -> None:
    """
    Apply proton link options (C{AtMostOnce}, C{Selector}, ...): one, or a
    list; each only if its C{test(link)} accepts the link.
    """
    if not options:
        return
    for option in options if isinstance(options, list) else [options]:
        if option.test(link):
            option.apply(link)


# --- TLS ------------------------------------------------------------------------------


def _readFile(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"cannot read the {what} {path!r}: {e.strerror}") from None


def _certificates(path: str) -> list[Certificate]:
    """
    @param path: a PEM file of one or more certificates.
    @return: the certificates.
    @raise ValueError: when the file cannot be read or holds none.
    """
    data = _readFile(path, "certificate file")
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = [marker + block for block in data.split(marker)[1:]]
    if not blocks:
        raise ValueError(f"no PEM certificate in {path!r}")
    return [Certificate.loadPEM(block) for block in blocks]


class SSLDomain:
    """
    TLS settings in the shape of C{proton.SSLDomain}, for L{Container}.

    amqptx does TLS with Twisted and pyOpenSSL, not with proton's SSL layer,
    and a C{proton.SSLDomain} cannot be read back once set.  This class takes
    the same calls (C{set_credentials}, C{set_trusted_ca_db},
    C{set_peer_authentication}) and the same constants, records them, and
    makes Twisted's TLS options from them; a program using proton's
    C{SSLDomain} runs once it imports this one instead::

        from amqptx import Container, SSLDomain

        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db("ca.pem")
        container.connect("amqps://broker.example", ssl_domain=domain)

    Without a CA file, clients trust the platform's certificate authorities.
    Clients verify the server's certificate and name by default
    (C{VERIFY_PEER_NAME}); C{VERIFY_PEER} skips the name, C{ANONYMOUS_PEER}
    skips verification altogether.  Servers need C{set_credentials}, and ask
    clients for a certificate only with C{VERIFY_PEER} or C{VERIFY_PEER_NAME}
    (and the CAs to check it with).

    @since: amqptx NEXT
    """

    MODE_CLIENT = _ProtonSSLDomain.MODE_CLIENT
    MODE_SERVER = _ProtonSSLDomain.MODE_SERVER
    VERIFY_PEER = _ProtonSSLDomain.VERIFY_PEER
    VERIFY_PEER_NAME = _ProtonSSLDomain.VERIFY_PEER_NAME
    ANONYMOUS_PEER = _ProtonSSLDomain.ANONYMOUS_PEER

    def __init__(self, mode: int) -> None:
        """
        @param mode: L{MODE_CLIENT} or L{MODE_SERVER}.
        @raise ValueError: for another mode.
        """
        if mode not in (self.MODE_CLIENT, self.MODE_SERVER):
            raise ValueError(f"unknown SSLDomain mode {mode!r}")
        self.mode = mode
        self.certFile: str | None = None
        self.keyFile: str | None = None
        self._keyPassword: str | None = None
        self.caFile: str | None = None
        self.peerCAFile: str | None = None
        self.verifyMode = (
            self.VERIFY_PEER_NAME if mode == self.MODE_CLIENT else self.ANONYMOUS_PEER
        )

    def __repr__(self) -> str:
        mode = "client" if self.mode == self.MODE_CLIENT else "server"
        return f"<amqptx.SSLDomain {mode} ca={self.caFile!r} cert={self.certFile!r}>"

    def set_credentials(
        self, cert_file: str, key_file: str, password: str | None
    ) -> int:
        """
        Set the certificate (and key) this side presents.

        @param cert_file: a PEM certificate file (the chain may follow it).
        @param key_file: its PEM private key file (it may be C{cert_file}).
        @param password: the key's passphrase, or L{None}.
        @return: 0, as proton does.
        """
        self.certFile = cert_file
        self.keyFile = key_file
        self._keyPassword = password
        return 0

    def set_trusted_ca_db(self, certificate_db: str) -> int:
        """
        Set the certificate authorities to trust.

        @param certificate_db: a PEM file of CA certificates.
        @return: 0, as proton does.
        """
        self.caFile = certificate_db
        return 0

    def set_peer_authentication(
        self, verify_mode: int, trusted_CAs: str | None = None
    ) -> int:
        """
        Set how the peer is checked.

        @param verify_mode: L{VERIFY_PEER_NAME}, L{VERIFY_PEER} or
            L{ANONYMOUS_PEER}.
        @param trusted_CAs: (servers) the PEM file of the CAs that sign
            client certificates; by default those of L{set_trusted_ca_db}.
        @return: 0, as proton does.
        @raise ValueError: for an unknown mode.
        """
        if verify_mode not in (
            self.VERIFY_PEER,
            self.VERIFY_PEER_NAME,
            self.ANONYMOUS_PEER,
        ):
            raise ValueError(f"unknown verify mode {verify_mode!r}")
        self.verifyMode = verify_mode
        if trusted_CAs is not None:
            self.peerCAFile = trusted_CAs
        return 0

    def allow_unsecured_client(self) -> int:
        """
        Refuse: proton lets a TLS listener accept clients without TLS too;
        amqptx does not (listen on another port without TLS instead).

        @raise NotImplementedError: always.
        """
        raise NotImplementedError(
            "amqptx listeners are either TLS or not: listen twice, on two ports"
        )

    def _privateCertificate(self) -> PrivateCertificate | None:
        if self.certFile is None or self.keyFile is None:
            return None
        certificate = _certificates(self.certFile)[0]
        keyData = _readFile(self.keyFile, "private key file")
        try:
            if self._keyPassword is not None:
                key = crypto.load_privatekey(
                    crypto.FILETYPE_PEM, keyData, self._keyPassword.encode()
                )
            else:
                key = crypto.load_privatekey(crypto.FILETYPE_PEM, keyData)
        except crypto.Error as e:
            raise ValueError(
                f"cannot load the private key {self.keyFile!r}: {e}"
            ) from None
        credentials: PrivateCertificate = PrivateCertificate.fromCertificateAndKeyPair(
            certificate, KeyPair(key)
        )
        return credentials

    def clientOptions(self, hostname: str) -> IOpenSSLClientConnectionCreator:
        """
        Make Twisted's client TLS options.

        @param hostname: the name to ask for (SNI) and verify.
        @return: the options.
        @raise ValueError: for a file that cannot be read.
        """
        clientCertificate = self._privateCertificate()
        if self.verifyMode == self.VERIFY_PEER_NAME:
            trustRoot = (
                trustRootFromCertificates(_certificates(self.caFile))
                if self.caFile is not None
                else None
            )
            return optionsForClientTLS(
                hostname, trustRoot=trustRoot, clientCertificate=clientCertificate
            )
        # Certificate checked without its name, or not at all: Twisted's
        # CertificateOptions, a context factory that TLS accepts as well.
        keys: dict[str, Any] = {}
        if clientCertificate is not None:
            keys["privateKey"] = clientCertificate.privateKey.original
            keys["certificate"] = clientCertificate.original
        if self.verifyMode == self.VERIFY_PEER:
            keys["trustRoot"] = (
                trustRootFromCertificates(_certificates(self.caFile))
                if self.caFile is not None
                else platformTrust()
            )
        else:
            keys["verify"] = False
        return cast(IOpenSSLClientConnectionCreator, CertificateOptions(**keys))

    def serverOptions(self) -> CertificateOptions:
        """
        Make Twisted's server TLS options.

        @return: the options.
        @raise ValueError: without credentials, or for a file that cannot be
            read.
        """
        credentials = self._privateCertificate()
        if credentials is None:
            raise ValueError(
                "a TLS listener needs a certificate: call set_credentials on "
                "its SSLDomain (or on container.ssl.server)"
            )
        keys: dict[str, Any] = {}
        if self.verifyMode != self.ANONYMOUS_PEER:
            caFile = self.peerCAFile or self.caFile
            if caFile is None:
                raise ValueError(
                    "verifying client certificates needs the CAs that sign "
                    "them: set_trusted_ca_db or set_peer_authentication's "
                    "trusted_CAs"
                )
            keys.update(
                verify=True,
                requireCertificate=True,
                caCerts=[c.original for c in _certificates(caFile)],
            )
        return CertificateOptions(
            privateKey=credentials.privateKey.original,
            certificate=credentials.original,
            **keys,
        )


class _SSLConfig:
    """
    C{container.ssl}: the default client and server L{SSLDomain}s, as on
    proton's container.

    @ivar client: used by C{connect()} to C{amqps} URLs without C{ssl_domain}.
    @ivar server: used by C{listen()} on C{amqps} URLs without C{ssl_domain}.
    """

    def __init__(self) -> None:
        self.client = SSLDomain(SSLDomain.MODE_CLIENT)
        self.server = SSLDomain(SSLDomain.MODE_SERVER)

    def set_credentials(
        self, cert_file: str, key_file: str, password: str | None
    ) -> None:
        """
        Set the certificate of both domains.

        @param cert_file: see L{SSLDomain.set_credentials}.
        @param key_file: see L{SSLDomain.set_credentials}.
        @param password: see L{SSLDomain.set_credentials}.
        """
        self.client.set_credentials(cert_file, key_file, password)
        self.server.set_credentials(cert_file, key_file, password)

    def set_trusted_ca_db(self, certificate_db: str) -> None:
        """
        Set the trusted CAs of both domains.

        @param certificate_db: see L{SSLDomain.set_trusted_ca_db}.
        """
        self.client.set_trusted_ca_db(certificate_db)
        self.server.set_trusted_ca_db(certificate_db)


def _refuseProtonDomain(domain: object) -> None:
    if isinstance(domain, _ProtonSSLDomain):
        raise TypeError(
            "amqptx does TLS with Twisted and cannot read a proton.SSLDomain: "
            "use amqptx.SSLDomain (same methods), or Twisted TLS options "
            "(twisted.internet.ssl.optionsForClientTLS / CertificateOptions)"
        )


# --- the connection configuration file ------------------------------------------------


def _stripComments(text: str, path: str) -> str:
    """
    Remove C{//} and C{/* */} comments outside JSON strings, as AMQ's
    connection configuration files may have them.

    @param text: the file's text.
    @param path: the file's name, for errors.
    @return: the text with every comment replaced by a space.
    @raise ValueError: for an unterminated comment.
    """
    out: list[str] = []
    i, end = 0, len(text)
    while i < end:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < end and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = end if newline < 0 else newline
            out.append(" ")
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            if close < 0:
                raise ValueError(f"{path}: unterminated /* comment")
            out.append(" " + "\n" * text.count("\n", i, close))
            i = close + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _findConnectFile(environ: Mapping[str, str]) -> str | None:
    """
    Find AMQ's connection configuration file: C{MESSAGING_CONNECT_FILE}, else
    C{./connect.json}, C{~/.config/messaging/connect.json},
    C{/etc/messaging/connect.json}.

    @param environ: the environment.
    @return: the file's path, or L{None} when there is none.
    @raise ValueError: when C{MESSAGING_CONNECT_FILE} names no file.
    """
    named = environ.get("MESSAGING_CONNECT_FILE")
    if named:
        if not os.path.isfile(named):
            raise ValueError(
                f"MESSAGING_CONNECT_FILE names {named!r}, which is not a file"
            )
        return named
    for directory in (".", os.path.expanduser("~/.config/messaging"), "/etc/messaging"):
        path = os.path.join(directory, "connect.json")
        if os.path.isfile(path):
            return path
    return None


@dataclass(frozen=True)
class _ConnectConfig:
    """
    What a connection configuration file says.

    @ivar url: where to connect.
    @ivar user: the user name, or L{None}.
    @ivar password: the password, or L{None}.
    @ivar saslEnabled: whether to use SASL.
    @ivar mechanisms: the allowed SASL mechanisms (space-separated), or
        L{None}.
    @ivar allowInsecure: whether PLAIN may go over cleartext, or L{None} when
        the file does not say.
    @ivar ca: a CA file, or L{None}.
    @ivar cert: a client certificate file, or L{None}.
    @ivar key: its private key file, or L{None}.
    @ivar verify: whether to verify the server's certificate and name.
    """

    url: AMQPURL
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    saslEnabled: bool = True
    mechanisms: str | None = None
    allowInsecure: bool | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True

    def sslDomain(self) -> SSLDomain:
        """
        @return: the TLS settings of the file's C{tls} section.
        """
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        if self.ca is not None:
            domain.set_trusted_ca_db(self.ca)
        if self.cert is not None:
            domain.set_credentials(self.cert, self.key or self.cert, None)
        if not self.verify:
            domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
        return domain


_CONFIG_SECTIONS: dict[str | None, dict[str, tuple[type, ...]]] = {
    None: {
        "scheme": (str,),
        "host": (str,),
        "port": (int, str),
        "user": (str,),
        "password": (str,),
        "sasl": (dict,),
        "tls": (dict,),
    },
    "sasl": {"enabled": (bool,), "mechanisms": (str, list), "allow_insecure": (bool,)},
    "tls": {
        "enabled": (bool,),
        "ca": (str,),
        "cert": (str,),
        "key": (str,),
        "verify": (bool,),
    },
}


_TYPE_NAMES = {
    str: "a string",
    int: "a number",
    bool: "true or false",
    dict: "an object",
    list: "a list",
}


def _checkSection(values: object, section: str | None, path: str) -> dict[str, Any]:
    where = f"{path}: " + (f"in {section!r}: " if section else "")
    if not isinstance(values, dict):
        raise ValueError(f"{where}expected a JSON object, not {values!r}")
    allowed = _CONFIG_SECTIONS[section]
    for key, value in values.items():
        types = allowed.get(key)
        if types is None:
            raise ValueError(
                f"{where}unknown key {key!r} (known: {', '.join(sorted(allowed))})"
            )
        if (
            isinstance(value, bool)
            and bool not in types
            or not isinstance(value, types)
        ):
            shown = "***" if key == "password" else repr(value)
            names = " or ".join(_TYPE_NAMES[t] for t in types)
            raise ValueError(f"{where}{key!r} must be {names}, not {shown}")
    return values


def _readConnectFile(path: str) -> _ConnectConfig:
    """
    Read and check a connection configuration file.

    @param path: the file.
    @return: what it says.
    @raise ValueError: for a file that cannot be read, is not JSON, or does
        not follow AMQ's format; the message names the file and the problem.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the connection file {path!r}: {e}") from None
    try:
        document = json.loads(_stripComments(text, path))
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    top = _checkSection(document, None, path)
    sasl = _checkSection(top.get("sasl", {}), "sasl", path)
    tls = _checkSection(top.get("tls", {}), "tls", path)
    scheme = top.get("scheme", "amqps")
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"{path}: scheme must be 'amqp' or 'amqps', not {scheme!r}")
    if "enabled" in tls and tls["enabled"] != (scheme == "amqps"):
        raise ValueError(
            f"{path}: tls enabled is {tls['enabled']} but the scheme is {scheme!r}"
        )
    port = top.get("port", DEFAULT_PORTS[scheme])
    if isinstance(port, str):
        if not port.isdigit():
            raise ValueError(f"{path}: port must be a number, not {port!r}")
        port = int(port)
    user, password = top.get("user") or None, top.get("password")
    if password is not None and user is None:
        raise ValueError(f"{path}: a password needs a user")
    mechanisms = sasl.get("mechanisms")
    if isinstance(mechanisms, list):
        if not all(isinstance(m, str) for m in mechanisms):
            raise ValueError(f"{path}: in 'sasl': mechanisms must be names")
        mechanisms = " ".join(mechanisms)
    if tls.get("key") is not None and tls.get("cert") is None:
        raise ValueError(f"{path}: in 'tls': a key needs a cert")
    try:
        url = AMQPURL(scheme, top.get("host", "localhost"), port)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return _ConnectConfig(
        url=url,
        user=user,
        password=password,
        saslEnabled=sasl.get("enabled", True),
        mechanisms=mechanisms or None,
        allowInsecure=sasl.get("allow_insecure"),
        ca=tls.get("ca"),
        cert=tls.get("cert"),
        key=tls.get("key"),
        verify=tls.get("verify", True),
    )


# --- the engine and protocol of a container's connection ------------------------------


class _ContainerEngine(Engine):
    """
    The engine of a container's connection, as proton's container makes it:
    C{event.container} is the container; a client may go without a SASL
    layer (C{sasl_enabled=False}); a TLS failure is reported in proton's
    order.

    A client's engine drives the C{Connection} that C{Container.connect}
    returned, with the connection's collector, kept across attempts (see
    L{Engine.__init__}).

    @ivar errorFirst: set on a TLS failure, which proton's own SSL layer
        reports as it happens: the transport error then comes before the end
        of input that follows it (see L{nextEvent}).
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        container: Container,
        connection: Connection | None = None,
        collector: Collector | None = None,
        saslEnabled: bool = True,
    ) -> None:
        """
        @param settings: the connection's settings.
        @param container: the container, which C{event.container} finds
            through the transport as in proton.
        @param connection: the proton connection (a client's), or L{None}
            for a new one (a server's).
        @param collector: C{connection}'s collector, or L{None}.
        @param saslEnabled: whether a client uses a SASL layer.
        """
        self._saslEnabled = saslEnabled
        self.errorFirst = False
        self._held: Event | None = None
        super().__init__(settings, connection, collector)
        # proton's Event.container is the transport's "_reactor" attachment.
        setattr(self.transport, "_reactor", container)  # noqa: B010

    def _configureSASL(self, settings: ConnectionSettings) -> None:
        """
        Add proton's SASL layer as L{Engine} does, unless the client has
        C{sasl_enabled=False} (the AMQP header then goes first, as with
        proton's container).

        @param settings: the connection's settings.
        """
        if self._saslEnabled:
            super()._configureSASL(settings)

    def nextEvent(self) -> Event | None:
        """
        Take the next event; after a TLS failure (L{errorFirst}), the
        transport error comes before the end of input, which proton's
        collector holds first.

        @return: the event, or L{None}.
        """
        event, self._held = self._held, None
        if event is not None:
            return event
        event = super().nextEvent()
        if (
            self.errorFirst
            and event is not None
            and event.type is Event.TRANSPORT_TAIL_CLOSED
        ):
            following = self.collector.peek()
            if following is not None and following.type is Event.TRANSPORT_ERROR:
                self.collector.pop()
                self._held, event = event, following
        return event

    def release(self) -> None:
        """
        Unbind the transport, and drop the events the unbinding made: a
        client's collector stays, for the connection's next transport.
        """
        super().release()
        collector = self.collector
        while collector.peek() is not None:
            collector.pop()


def _tlsErrorText(error: BaseException) -> str:
    """
    @param error: a pyOpenSSL or service_identity error.
    @return: its reasons, as text.
    """
    details = error.args[0] if error.args else None
    if isinstance(details, list):
        reasons = [entry[-1] for entry in details if isinstance(entry, tuple) and entry]
        if reasons:
            return "; ".join(str(reason) for reason in reasons)
    return str(error)


class _Dispatcher:
    """
    The handler of a container's L{AMQPProtocol}: gives every proton event to
    the container, which dispatches it to the application's handlers.
    """

    def __init__(self, container: Container, owner: _Owner) -> None:
        self._container = container
        self._owner = owner

    def on_unhandled(self, method: str, event: Event) -> None:
        """
        Dispatch an event.

        @param method: the handler method's name.
        @param event: the event.
        """
        self._container._dispatch(event, self._owner)


class _ContainerProtocol(AMQPProtocol):
    """
    The protocol of one of a container's connections (client or server).
    """

    def __init__(self, container: Container, owner: _Owner) -> None:
        """
        @param container: the container.
        @param owner: the connection's owner, asked for the engine and told
            when the connection ends.
        """
        super().__init__(handler=_Dispatcher(container, owner))
        self._container = container
        self._owner = owner
        self.flushDepth = 0
        self.lost = False

    def makeEngine(self) -> Engine:
        """
        Get the owner's engine: a client's, bound to the C{Connection} that
        C{Container.connect} returned; a server's, made now.

        @return: the engine.
        """
        return self._owner.makeEngine(self)

    def flush(self) -> None:
        """
        Run proton, then the other connections that the handlers touched.
        """
        self.flushDepth += 1
        try:
            super().flush()
        finally:
            self.flushDepth -= 1
        self._container._sweep(onlyIfDirty=True)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """
        End the connection, describe a TLS failure to the handlers as
        proton's SSL layer would, and tell the owner.

        @param reason: why the transport ended.
        """
        self.lost = True
        engine = cast("_ContainerEngine | None", self.engine)
        if engine is None and isinstance(self._owner, _ServerConnection):
            # Lost before AMQP began (TLS or SASL failed, say): proton's
            # listener reports that on the accepted connection too.
            engine = cast("_ContainerEngine", self.makeEngine())
            self.engine = engine
        if (
            engine is not None
            and reason.value is not None
            and reason.check(SSL.Error, VerificationError)
        ):
            transport = engine.transport
            if transport.condition is None:
                transport.condition = Condition(
                    "amqp:connection:framing-error",
                    f"SSL Failure: {_tlsErrorText(reason.value)}",
                )
                engine.errorFirst = True
        super().connectionLost(reason)
        self._owner.protocolLost(self)
        self._container._sweep()

    def pump(self) -> bool:
        """
        Flush if proton has events, unless this protocol is flushing already
        or has ended.

        @return: whether there was anything to do.
        """
        engine = self.engine
        if (
            engine is None
            or self.lost
            or self.flushDepth
            or engine.collector.peek() is None
        ):
            return False
        self.flush()
        return True


# --- connection owners ----------------------------------------------------------------


class _Owner:
    """
    What a container keeps for each of its connections.
    """

    def pump(self) -> bool:
        """
        Dispatch the connection's pending events.

        @return: whether there were any.
        """
        raise NotImplementedError()

    def afterEvent(self, event: Event) -> None:
        """
        Act on an event after the handlers (as proton's global handlers do).

        @param event: the event.
        """

    def makeEngine(self, protocol: _ContainerProtocol) -> _ContainerEngine:
        """
        Make the engine of a protocol that has none.

        @param protocol: the protocol.
        @return: the engine.
        """
        raise NotImplementedError()

    def protocolLost(self, protocol: _ContainerProtocol) -> None:
        """
        The protocol's connection ended (its engine is released).

        @param protocol: the protocol.
        """

    def abort(self) -> None:
        """
        Drop the connection without an AMQP Close (L{Container.stop}).
        """


@dataclass(frozen=True)
class _Target:
    """
    One URL of a client connection, with what its attempts need.
    """

    url: AMQPURL
    endpoint: AMQPClientEndpoint
    settings: ConnectionSettings


class _Attempts:
    """
    The order of a client connection's attempts, as proton's container makes
    it: each delay of the reconnect policy, before each URL in turn.
    """

    def __init__(self, policy: IReconnectPolicy, count: int) -> None:
        self._policy = policy
        self._count = count
        self._pairs: Iterator[tuple[float, int]] = iter(())

    def restart(self) -> None:
        """
        Start the sequence over (reset the policy).
        """
        self._policy.reset()
        self._pairs = self._generate()

    def _generate(self) -> Iterator[tuple[float, int]]:
        while True:
            delay = self._policy.next()
            if delay is None:
                return
            if not isinstance(delay, (int, float)) or delay < 0:
                raise ValueError(
                    f"reconnect policy {self._policy!r} gave the delay {delay!r}"
                )
            for index in range(self._count):
                yield float(delay), index

    def next(self) -> tuple[float, int] | None:
        """
        @return: the next delay and URL index, or L{None} to give up.
        """
        return next(self._pairs, None)


class _ClientConnection(_Owner):
    """
    A connection made by C{Container.connect}: the proton C{Connection}
    returned at once, bound to a new transport for each attempt, with
    proton's reconnect rules.

      - Each attempt binds a new transport to the same C{Connection} (its
        sessions and links come back with it), as proton does.
      - After the transport closes, the next attempt follows unless this
        side closed the connection (the application, or C{MessagingHandler}
        on C{amqp:unauthorized-access}), the peer refused the credentials,
        C{reconnect=False} was given, or the policy gave up.
      - The sequence of delays starts over when the peer's Open arrives.
    """

    _log = Logger()

    def __init__(
        self,
        container: Container,
        connection: Connection,
        targets: list[_Target],
        policy: IReconnectPolicy | None,
        saslEnabled: bool,
    ) -> None:
        self._container = container
        self.connection = connection
        self.collector = Collector()
        connection.collect(self.collector)
        self._targets = targets
        self._policy = policy
        self._saslEnabled = saslEnabled
        self._attempts = _Attempts(policy, len(targets)) if policy is not None else None
        self.engine: _ContainerEngine | None = None
        self.protocol: _ContainerProtocol | None = None
        self._timer: IDelayedCall | None = None
        self._attempt: Deferred[IProtocol] | None = None
        self._unauthorized = False
        self.final = False
        self.session: Session | None = None
        self._factory = _ClientFactory(self)

    def __repr__(self) -> str:
        return f"<_ClientConnection to {self._targets[0].url}>"

    def defaultSession(self) -> Session:
        """
        @return: the connection's session for C{create_sender} and
            C{create_receiver}, opened on first use.
        """
        if self.session is None:
            self.session = self.connection.session()
            self.session.open()
        return self.session

    def begin(self) -> None:
        """
        Make the first attempt (to the first URL).
        """
        if self._attempts is not None:
            self._attempts.restart()
            self._attempts.next()
        self._try(0)

    def _try(self, index: int) -> None:
        self._timer = None
        container = self._container
        if container._stopped or self.connection.state & Endpoint.LOCAL_CLOSED:
            self._finish()
            return
        target = self._targets[index]
        self.connection.url = _protonURL(target.url)  # type: ignore[assignment]
        engine = _ContainerEngine(
            target.settings,
            container,
            self.connection,
            self.collector,
            self._saslEnabled,
        )
        self.engine = engine
        self._log.debug("Connecting to {url}", url=str(target.url))
        attempt: Deferred[IProtocol] = target.endpoint.connect(self._factory)
        self._attempt = attempt
        attempt.addErrback(self._connectFailed, engine)
        container._sweep()

    def buildProtocol(self) -> _ContainerProtocol | None:
        """
        Make the protocol of the attempt in progress.

        @return: the protocol, or L{None} when there is no attempt, or the
            connection was closed meanwhile (the protocol would open it
            again).
        """
        if (
            self.engine is None
            or self.protocol is not None
            or self.connection.state & Endpoint.LOCAL_CLOSED
        ):
            return None
        self.protocol = _ContainerProtocol(self._container, self)
        return self.protocol

    def makeEngine(self, protocol: _ContainerProtocol) -> _ContainerEngine:
        """
        @param protocol: the attempt's protocol.
        @return: the attempt's engine, made with its transport when the
            attempt began (its failure is reported on that transport).
        """
        assert self.engine is not None
        return self.engine

    def _connectFailed(self, reason: Failure, engine: _ContainerEngine) -> None:
        """
        An attempt failed.  Without a protocol (no TCP connection), the
        handlers learn it as proton's do: a transport error, then the
        transport's close.
        """
        if engine is not self.engine or self.protocol is not None:
            return
        self._attempt = None
        if reason.check(ConnectingCancelledError, NoProtocol) and (
            self._container._stopped or self.connection.state & Endpoint.LOCAL_CLOSED
        ):
            # Given up on by this side: nothing to tell the handlers.
            engine.release()
            self._ended()
            return
        transport = engine.transport
        if transport.condition is None:
            # The condition proton's container (its Python I/O) gives.
            transport.condition = Condition("proton.pythonio", reason.getErrorMessage())
        transport.close_tail()
        transport.close_head()
        self._container._sweep()

    def pump(self) -> bool:
        """
        Dispatch pending events: through the protocol once there is one, else
        here (before the TCP connection is made, or after it failed).

        @return: whether there were any.
        """
        engine = self.engine
        if engine is None:
            return False
        if self.protocol is not None:
            return self.protocol.pump()
        dispatched = False
        while self.engine is engine and (event := engine.nextEvent()) is not None:
            dispatched = True
            self._container._dispatch(event, self)
        return dispatched

    def afterEvent(self, event: Event) -> None:
        """
        Follow the connection: start the reconnect sequence over when the
        peer's Open arrives, note refused credentials, give up an attempt the
        application closed, and decide what follows the end of an attempt
        that made no TCP connection.

        @param event: the event the handlers saw.
        """
        kind = event.type
        if kind is Event.CONNECTION_REMOTE_OPEN:
            if self._attempts is not None:
                self._attempts.restart()
        elif kind is Event.TRANSPORT_ERROR or kind is Event.CONNECTION_REMOTE_CLOSE:
            condition = (
                event.transport.condition  # type: ignore[union-attr]
                if kind is Event.TRANSPORT_ERROR
                else self.connection.remote_condition
            )
            if condition is not None and condition.name == _UNAUTHORIZED:
                self._unauthorized = True
        elif kind is Event.CONNECTION_LOCAL_CLOSE:
            attempt = self._attempt
            if self.protocol is None and attempt is not None:
                # Closed before the TCP connection was made.
                attempt.cancel()
        elif kind is Event.TRANSPORT_CLOSED:
            engine = self.engine
            if self.protocol is None and engine is not None:
                engine.release()
                self._ended()

    def protocolLost(self, protocol: _ContainerProtocol) -> None:
        """
        The TCP connection ended.

        @param protocol: its protocol.
        """
        if protocol is self.protocol:
            self._ended()

    def _ended(self) -> None:
        """
        The attempt's transport is closed and unbound: try again or stop.
        """
        self.engine = None
        self.protocol = None
        self._attempt = None
        if self.final:
            return
        container = self._container
        if (
            container._stopped
            or not self.connection.state & Endpoint.LOCAL_ACTIVE
            or self._unauthorized
            or self._attempts is None
        ):
            self._finish()
            return
        try:
            following = self._attempts.next()
        except Exception:
            self._log.failure("The reconnect policy failed; not reconnecting")
            following = None
        if following is None:
            self._log.info("Giving up on {url}", url=str(self._targets[0].url))
            self._finish()
            return
        delay, index = following
        if delay == 0:
            self._try(index)
        else:
            self._timer = container._reactor.callLater(delay, self._try, index)

    def _finish(self) -> None:
        self.final = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self._container._ownerDone(self)

    def abort(self) -> None:
        """
        Drop the connection: cancel the attempt or the delay before the next
        one, or end the TCP connection.
        """
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.loseConnection()
        elif self._attempt is not None:
            self._attempt.cancel()
        elif self.engine is None and not self.final:
            self._finish()


class _ClientFactory(Factory):
    """
    The factory of one client connection's protocols (one per attempt).
    """

    noisy = False

    def __init__(self, owner: _ClientConnection) -> None:
        self._owner = owner

    def buildProtocol(self, addr: IAddress | None) -> AMQPProtocol | None:
        """
        @param addr: the server's address.
        @return: the protocol of the attempt in progress.
        """
        return self._owner.buildProtocol()


class _ServerConnection(_Owner):
    """
    A connection a container's listener accepted.
    """

    def __init__(self, container: Container, acceptor: _Acceptor) -> None:
        self._container = container
        self._acceptor = acceptor
        self.protocol = _ContainerProtocol(container, self)

    def makeEngine(self, protocol: _ContainerProtocol) -> _ContainerEngine:
        """
        Make the engine, with a new proton C{Connection}.

        @param protocol: the protocol.
        @return: the engine.
        """
        engine = _ContainerEngine(protocol.settings, self._container)
        transport = protocol.transport
        peer = transport.getPeer() if transport is not None else None
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        if host is not None and port is not None:
            engine.connection.url = Url(  # type: ignore[no-untyped-call,assignment]
                host=host, port=port
            )
        return engine

    def pump(self) -> bool:
        """
        @return: whether the protocol had events to dispatch.
        """
        return self.protocol.pump()

    def protocolLost(self, protocol: _ContainerProtocol) -> None:
        """
        The connection ended: forget it.

        @param protocol: its protocol.
        """
        self._container._ownerDone(self)

    def abort(self) -> None:
        """
        End the TCP connection.
        """
        transport = self.protocol.transport
        if transport is not None:
            transport.loseConnection()


class _ServerFactory(Factory):
    """
    The factory of a listener's protocols.
    """

    noisy = False

    def __init__(self, container: Container, acceptor: _Acceptor) -> None:
        self._container = container
        self._acceptor = acceptor

    def buildProtocol(self, addr: IAddress | None) -> AMQPProtocol | None:
        """
        @param addr: the client's address.
        @return: a protocol, or L{None} once the container stopped.
        """
        container = self._container
        if container._stopped or self._acceptor.closed:
            return None
        owner = _ServerConnection(container, self._acceptor)
        container._owners.append(owner)
        return owner.protocol


class _Acceptor:
    """
    What C{Container.listen} returns: the listening port, which C{close()}
    closes.

    @ivar closed: whether it was closed.
    """

    def __init__(self, container: Container) -> None:
        self._container = container
        self._port: IListeningPort | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"<amqptx Acceptor {self._port!r}>"

    @property
    def port(self) -> int:
        """
        The port number listened on (useful after listening on port 0).
        """
        assert self._port is not None
        port: int = self._port.getHost().port  # type: ignore[attr-defined]
        return port

    def close(self) -> None:
        """
        Stop listening; connections already accepted go on.
        """
        if self.closed:
            return
        self.closed = True
        if self._port is not None:
            self._port.stopListening()
        self._container._acceptorClosed(self)


class _Task:
    """
    What C{Container.schedule} returns.
    """

    def __init__(self, container: Container, handler: object | None) -> None:
        self._container = container
        self._handler = handler
        self.call: IDelayedCall | None = None

    @property
    def handler(self) -> object | None:
        """
        The handler of the task's C{on_timer_task}, or L{None} for the
        container's.
        """
        return self._handler

    @property
    def container(self) -> Container:
        """
        The container.
        """
        return self._container

    def cancel(self) -> None:
        """
        Cancel the task, if it has not run yet.
        """
        call, self.call = self.call, None
        if call is not None and call.active():
            call.cancel()
        self._container._taskDone(self)


# --- the container --------------------------------------------------------------------


class Container:
    """
    proton's C{Container} on the Twisted reactor: the same API
    (C{connect}, C{listen}, C{create_sender}, C{create_receiver},
    C{schedule}, C{run}, C{stop}), the same events to the same handlers.

    Running it:

      - L{run} runs the reactor until the container's work is done (no
        connection left, no listener, no scheduled task), or until L{stop};
        it raises the first exception a handler raised, as proton's does.
        It cannot be called while the reactor runs, and (the reactor being
        Twisted's) only once per process.
      - Inside a program whose reactor runs already (a Twisted service, a
        test), call L{start} instead, or add a L{ContainerService} to the
        application.

    Differences from proton's container:

      - Sockets, TLS (see L{SSLDomain}), name resolution and timers are
        Twisted's; C{ssl_domain} is an L{SSLDomain} or Twisted TLS options,
        not a C{proton.SSLDomain}.
      - Listeners authenticate clients with amqptx's SASL (ANONYMOUS).
      - Listeners may listen on IPv6 (proton 0.40's Python container listens
        on IPv4 only); port 0 is any free port (the acceptor's C{port}).
      - C{url} and C{urls} together are an error (proton ignores C{urls}).
      - An attempt (TCP, TLS, SASL, Open) that takes longer than 30 seconds
        fails, and the reconnect rules apply.
      - A handler that raises ends L{run} as with proton; after L{start}, the
        exception is logged and the container goes on.
      - After the handlers, amqptx answers the peer's Begin, End, Detach and
        Close, if they did not (as C{MessagingHandler} does).
      - After sending its Close, a connection waits for the peer's at most 5
        seconds, then ends the TCP connection (proton waits on); the
        handlers then see a transport error.
      - Code outside a handler (a Deferred's callback, say) that acts on
        proton objects directly calls L{flush} afterwards; the container's
        own methods do it themselves.
      - C{allow_insecure_mechs} is True by default, as in proton: a password
        may go in clear over C{amqp} (without TLS); set it to L{False} to
        refuse that.
      - The connection configuration file (C{connect.json}) is checked: a
        mistake in it is a L{ValueError} naming the file.
      - Not there: transactions, selectables and C{EventInjector}, and the
        methods of proton's own event loop (C{process}, C{do_work},
        C{wakeup}...): the loop is Twisted's reactor.

    @ivar container_id: the container id sent in the Open of each connection.
    @ivar ssl: the default TLS settings (C{ssl.client}, C{ssl.server}).
    @ivar user: the default user name of C{connect}.
    @ivar password: the default password of C{connect}.
    @ivar allowed_mechs: the default SASL mechanisms of C{connect}
        (space-separated), or L{None} for proton's choice.
    @ivar allow_insecure_mechs: the default of C{connect}'s option.
    @ivar sasl_enabled: the default of C{connect}'s option.
    @ivar errors: the failures of handlers, in order.

    @since: amqptx NEXT
    """

    _log = Logger()

    def __init__(
        self,
        *handlers: object,
        reactor: object = None,
        container_id: str | None = None,
    ) -> None:
        """
        @param handlers: the container's handlers (C{MessagingHandler}s,
            usually); every event without a handler of its own (set on its
            link, session or connection) goes to them, in order.
        @param reactor: the reactor (a clock with TCP and name resolution);
            by default the global reactor, when first needed.
        @param container_id: the container id; a random UUID by default.
        """
        self._givenReactor = reactor
        self._root = Handler()
        for handler in handlers:
            self._root.add(handler)
        self.container_id = container_id or str(uuid4())
        self.ssl = _SSLConfig()
        self.user: str | None = None
        self.password: str | None = None
        self.allowed_mechs: str | None = None
        self.allow_insecure_mechs = True
        self.sasl_enabled = True
        self.errors: list[Failure] = []
        self._owners: list[_Owner] = []
        self._clients: dict[Connection, _ClientConnection] = {}
        self._acceptors: list[_Acceptor] = []
        self._tasks: set[_Task] = set()
        self._events = Collector()
        self._pending: deque[tuple[object, Any]] = deque()
        self._firing = False
        self._depth = 0
        self._dirty = False
        self._sweeping = False
        self._started = False
        self._stopped = False
        self._running = False
        self._stopping = False
        self._quiet: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return f"<amqptx.Container {self.container_id!r}>"

    @property
    def _reactor(self) -> Any:
        reactor = self._givenReactor
        if reactor is None:
            reactor = self._givenReactor = _globalReactor()
        return reactor

    @property
    def handler(self) -> Any:
        """
        The container's handler (its handlers are its children).
        """
        return self._root

    @handler.setter
    def handler(self, handler: Any) -> None:
        self._root = handler

    @property
    def now(self) -> float:
        """
        The reactor's time, in seconds.
        """
        clock: IReactorTime = self._reactor
        return clock.seconds()

    # --- running ---------------------------------------------------------------

    def run(self) -> None:
        """
        Run the reactor until the container's work is done or L{stop} is
        called: C{on_start} first, then every event.

        @raise RuntimeError: when the reactor runs already (use L{start} or
            L{ContainerService} there), or the container was started.
        @raise Exception: the first exception a handler raised (which stopped
            the container).
        """
        reactor = self._reactor
        if reactor.running:
            raise RuntimeError(
                "Container.run() runs the reactor, which is running already: "
                "use container.start() or ContainerService inside a running "
                "reactor"
            )
        if self._started:
            raise RuntimeError("the container was started already")
        self._running = True
        reactor.callWhenRunning(self.start)
        reactor.run()
        self._running = False
        if not self._stopped:
            self._stopped = True
            for owner in list(self._owners):
                owner.abort()
        self._fire(self, Event.REACTOR_FINAL)
        if self.errors:
            self.errors[0].raiseException()

    def start(self) -> None:
        """
        Start the container in a reactor that runs (or will): fire
        C{on_start}, and start the connections made so far.

        @raise RuntimeError: when started already.
        """
        if self._started:
            raise RuntimeError("the container was started already")
        self._started = True
        self._fire(self, Event.REACTOR_INIT)
        for owner in list(self._owners):
            if isinstance(owner, _ClientConnection) and owner.engine is None:
                owner.begin()
        self._sweep()

    def stop(self) -> None:
        """
        Stop: close the listeners, cancel the scheduled tasks, drop every
        connection (without an AMQP Close) and dispatch no more events; L{run}
        returns.
        """
        if self._stopped:
            return
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        for acceptor in list(self._acceptors):
            acceptor.close()
        for owner in list(self._owners):
            owner.abort()
        if not self._running:
            self._fire(self, Event.REACTOR_FINAL)
        self._checkIdle()

    def flush(self) -> None:
        """
        Send what the application asked of proton outside a handler (from a
        Deferred's callback, say): dispatch the resulting events and write
        the frames of every connection.
        """
        self._sweep()

    def _whenQuiet(self) -> Deferred[None]:
        """
        @return: a Deferred that fires once no connection is left.
        """
        if not self._owners:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._quiet.append(d)
        return d

    # --- connections ---------------------------------------------------------------

    def connect(
        self,
        url: str | Url | AMQPURL | None = None,
        urls: Sequence[str | Url | AMQPURL] | None = None,
        address: str | None = None,
        handler: object = None,
        reconnect: object = None,
        heartbeat: float | None = None,
        ssl_domain: object = None,
        **kwargs: Any,
    ) -> Connection:
        """
        Open a connection, as proton's C{Container.connect}: the proton
        C{Connection} comes back at once, and the TCP connection, TLS, SASL
        and AMQP Open follow.

        @param url: the URL (C{amqp://} or C{amqps://}; the scheme may be left
            out; a path is ignored).
        @param urls: URLs to try in turn (failover); not with C{url}.
        @param address: ignored, as by proton.
        @param handler: the connection's own handler: its events go there
            instead of to the container's handlers.
        @param reconnect: L{None} or L{True} for the default backoff (0, 0.1,
            0.2 ... 10 seconds, forever); L{False} for a single attempt; a
            policy with C{reset()} and C{next()}; a list of delays or
            proton's C{Backoff}.
        @param heartbeat: the idle timeout to advertise, in seconds.
        @param ssl_domain: TLS settings for C{amqps} URLs (ignored for
            C{amqp}, as by proton): an L{SSLDomain}, or Twisted client TLS
            options; by default C{container.ssl.client} (the platform's
            certificate authorities, and the server's name checked).
        @param kwargs: C{user}, C{password}, C{allowed_mechs} (space-separated
            names), C{allow_insecure_mechs}, C{sasl_enabled}, C{virtual_host},
            C{sni}, C{max_frame_size}, C{container_id},
            C{offered_capabilities}, C{desired_capabilities}, C{properties}.
        @return: the connection.
        @raise ValueError: for C{url} and C{urls} together, for no URL at all
            with C{address}, for a bad URL or option, or for a malformed
            connection configuration file (read when neither C{url} nor
            C{urls} is given).
        @raise TypeError: for an unknown option, or a C{proton.SSLDomain}.
        @raise RuntimeError: once the container stopped.
        """
        unknown = set(kwargs) - _CONNECT_OPTIONS
        if unknown:
            raise TypeError(f"unknown connect() options: {', '.join(sorted(unknown))}")
        if url is not None and urls is not None:
            raise ValueError("give url or urls, not both")
        if self._stopped:
            raise RuntimeError("the container is stopped")
        if url is None and urls is None:
            if address is not None:
                raise ValueError("one of url or urls is required")
            config = self._defaultConfig()
            url = config.url
            if config.user is not None:
                kwargs["user"] = config.user
                if config.password is not None:
                    kwargs["password"] = config.password
            kwargs["sasl_enabled"] = config.saslEnabled
            if config.mechanisms is not None:
                kwargs["allowed_mechs"] = config.mechanisms
            if config.allowInsecure is not None:
                kwargs["allow_insecure_mechs"] = config.allowInsecure
            if config.url.tls:
                ssl_domain = config.sslDomain()
        given = [url] if url is not None else list(urls or ())
        if not given:
            raise ValueError("urls is empty")
        _refuseProtonDomain(ssl_domain)
        parsed = [_toURL(u) for u in given]
        connection = Connection()
        connection.container = kwargs.get("container_id") or self.container_id
        connection.offered_capabilities = kwargs.get("offered_capabilities")
        connection.desired_capabilities = kwargs.get("desired_capabilities")
        connection.properties = kwargs.get("properties")
        targets = [
            self._target(u, connection.container, heartbeat, ssl_domain, kwargs)
            for u in parsed
        ]
        policy = reconnectPolicy(reconnect)
        if handler is not None:
            connection.handler = handler  # type: ignore[assignment]
        owner = _ClientConnection(
            self,
            connection,
            targets,
            policy,
            bool(kwargs.get("sasl_enabled", self.sasl_enabled)),
        )
        connection.open()
        self._owners.append(owner)
        self._clients[connection] = owner
        if self._started:
            owner.begin()
        return connection

    def _defaultConfig(self) -> _ConnectConfig:
        path = _findConnectFile(os.environ)
        if path is None:
            return _ConnectConfig(url=AMQPURL("amqps", "localhost", 5671))
        return _readConnectFile(path)

    def _target(
        self,
        url: AMQPURL,
        containerId: str,
        heartbeat: float | None,
        sslDomain: object,
        options: Mapping[str, Any],
    ) -> _Target:
        """
        Make what the attempts to one URL need.
        """
        user = url.user or options.get("user", self.user)
        password = url.password if url.user else options.get("password", self.password)
        if password is not None and user is None:
            password = None
        mechanisms = options.get("allowed_mechs", self.allowed_mechs)
        mechanismList = tuple(mechanisms.split()) if mechanisms else None
        insecure = bool(options.get("allow_insecure_mechs", self.allow_insecure_mechs))
        virtualHost = options.get("virtual_host")
        hostname = url.host if virtualHost is None else (virtualHost or None)
        maxFrameSize = options.get("max_frame_size")
        tlsOptions: IOpenSSLClientConnectionCreator | None = None
        if url.tls:
            name = options.get("sni") or virtualHost or url.host
            domain = sslDomain if sslDomain is not None else self.ssl.client
            if isinstance(domain, SSLDomain):
                tlsOptions = domain.clientOptions(name)
            elif IOpenSSLClientConnectionCreator.providedBy(
                domain
            ) or IOpenSSLContextFactory.providedBy(domain):
                tlsOptions = cast(IOpenSSLClientConnectionCreator, domain)
            else:
                raise TypeError(f"not TLS settings: {domain!r}")
        endpoint = AMQPClientEndpoint(
            self._reactor,
            url.host,
            url.port,
            tls=url.tls,
            user=user,
            password=password,
            mechanisms=mechanismList,
            allowInsecurePlain=insecure,
            virtualHost=hostname or url.host,
            containerId=containerId,
            idleTimeout=heartbeat,
            maxFrameSize=maxFrameSize,
            tlsOptions=tlsOptions,
        )
        settings = ConnectionSettings(
            role="client",
            hostname=hostname,
            user=user,
            password=password,
            mechanisms=mechanismList,
            allowInsecureMechanisms=url.tls or insecure,
            containerId=containerId,
            idleTimeout=heartbeat,
            maxFrameSize=maxFrameSize,
        )
        return _Target(url, endpoint, settings)

    def listen(self, url: str | Url | AMQPURL, ssl_domain: object = None) -> _Acceptor:
        """
        Listen for connections, as proton's C{Container.listen}.

        @param url: where: C{"0.0.0.0:5672"} (every IPv4 interface),
            C{"[::0]:5672"} (every IPv6 one), C{"amqps://host:port"} (TLS)...
            Port 0 picks a free port (see the acceptor's C{port}).
        @param ssl_domain: TLS settings (which make the listener TLS): an
            L{SSLDomain} with credentials, or Twisted server TLS options; by
            default C{container.ssl.server} for C{amqps}.
        @return: the acceptor; its C{close()} stops listening.
        @raise twisted.internet.error.CannotListenError: when the port cannot
            be listened on.
        @raise ValueError: for a bad URL, or TLS without credentials.
        @raise TypeError: for a C{proton.SSLDomain}.
        """
        if self._stopped:
            raise RuntimeError("the container is stopped")
        _refuseProtonDomain(ssl_domain)
        parsed, port = _listenURL(url)
        tlsOptions: IOpenSSLServerConnectionCreator | IOpenSSLContextFactory | None = (
            None
        )
        domain = ssl_domain
        if domain is None and parsed.tls:
            domain = self.ssl.server
        if isinstance(domain, SSLDomain):
            tlsOptions = domain.serverOptions()
        elif domain is not None:
            tlsOptions = cast(IOpenSSLContextFactory, domain)
        endpoint = AMQPServerEndpoint(
            self._reactor,
            port,
            interface=parsed.host,
            tlsOptions=tlsOptions,
            containerId=self.container_id,
        )
        acceptor = _Acceptor(self)
        results: list[object] = []
        endpoint.listen(_ServerFactory(self, acceptor)).addBoth(results.append)
        [result] = results
        if isinstance(result, Failure):
            result.raiseException()
        acceptor._port = cast(IListeningPort, result)
        self._acceptors.append(acceptor)
        return acceptor

    # --- links ------------------------------------------------------------------------

    def _session(self, context: object) -> Session:
        if isinstance(context, Session):
            return context
        if isinstance(context, Connection):
            owner = self._clients.get(context)
            if owner is not None:
                return owner.defaultSession()
            session = context.session()
            session.open()
            return session
        session = context.session()  # type: ignore[attr-defined]
        return cast(Session, session)

    def create_sender(
        self,
        context: Connection | Session | str | Url | AMQPURL,
        target: str | None = None,
        source: str | None = None,
        name: str | None = None,
        handler: object = None,
        tags: Iterator[Any] | None = None,
        options: object = None,
    ) -> Sender:
        """
        Attach a sending link, as proton's C{Container.create_sender}.

        @param context: a connection (or session); or a URL, to connect to
            and attach to its path at once.
        @param target: the target address (by default a URL's path).
        @param source: the source address.
        @param name: the link name; by default made from the container id
            and addresses, as proton does.
        @param handler: the link's own handler.
        @param tags: a generator of delivery tags.
        @param options: proton link options (C{AtMostOnce()}, ...), one or a
            list.
        @return: the sender.
        """
        if isinstance(context, (str, Url, AMQPURL)):
            url = _toURL(context)
            target = target or url.path or None
            context = self.connect(url=url)
        session = self._session(context)
        sender = session.sender(
            name or _linkName(session.connection.container, target, source)
        )
        if source:
            sender.source.address = source
        if target:
            sender.target.address = target
        if handler is not None:
            sender.handler = handler  # type: ignore[assignment]
        if tags:
            sender.tag_generator = tags
        _applyOptions(options, sender)
        sender.open()
        self._sweep()
        return sender

    def create_receiver(
        self,
        context: Connection | Session | str | Url | AMQPURL,
        source: str | None = None,
        target: str | None = None,
        name: str | None = None,
        dynamic: bool = False,
        handler: object = None,
        options: object = None,
    ) -> Receiver:
        """
        Attach a receiving link, as proton's C{Container.create_receiver}.

        @param context: a connection (or session); or a URL, to connect to
            and attach to its path at once.
        @param source: the source address (by default a URL's path).
        @param target: the target address.
        @param name: the link name; by default made from the container id
            and addresses, as proton does.
        @param dynamic: ask the peer for a dynamic (temporary) source.
        @param handler: the link's own handler.
        @param options: proton link options (C{Selector(...)}, ...), one or a
            list.
        @return: the receiver.
        """
        if isinstance(context, (str, Url, AMQPURL)):
            url = _toURL(context)
            source = source or url.path or None
            context = self.connect(url=url)
        session = self._session(context)
        receiver = session.receiver(
            name or _linkName(session.connection.container, source, target)
        )
        if source:
            receiver.source.address = source
        if dynamic:
            receiver.source.dynamic = True
        if target:
            receiver.target.address = target
        if handler is not None:
            receiver.handler = handler  # type: ignore[assignment]
        _applyOptions(options, receiver)
        receiver.open()
        self._sweep()
        return receiver

    def get_connection_address(self, connection: Connection) -> str | None:
        """
        @param connection: a connection of this container.
        @return: its address as a URL, or L{None}.
        """
        address: str | None = connection.connected_address
        return address

    # --- timers -----------------------------------------------------------------------

    def schedule(self, delay: float, handler: object = None) -> _Task:
        """
        Fire C{on_timer_task} on C{handler} after C{delay} seconds of the
        reactor's clock.

        @param delay: the delay in seconds.
        @param handler: the handler; by default the container's handlers.
        @return: the task; its C{cancel()} cancels it.
        """
        task = _Task(self, handler)
        task.call = self._reactor.callLater(delay, self._runTask, task)
        self._tasks.add(task)
        return task

    def _runTask(self, task: _Task) -> None:
        task.call = None
        self._tasks.discard(task)
        self._fire(task, Event.TIMER_TASK)
        self._sweep()

    def _taskDone(self, task: _Task) -> None:
        if task in self._tasks:
            self._tasks.discard(task)
            self._checkIdle()

    # --- dispatching -----------------------------------------------------------------

    def _fire(self, context: object, kind: Any) -> None:
        """
        Dispatch a container event (C{reactor_init}, C{timer_task},
        C{reactor_final}) as proton's container makes it.
        """
        self._pending.append((context, kind))
        if self._firing:
            return
        self._firing = True
        collector = self._events
        try:
            while self._pending:
                context, kind = self._pending.popleft()
                collector.put(context, kind)
                event = collector.peek()
                assert event is not None
                try:
                    self._dispatch(event, None, force=True)
                finally:
                    collector.pop()
        finally:
            self._firing = False

    def _dispatch(
        self, event: Event, owner: _Owner | None, force: bool = False
    ) -> None:
        """
        Dispatch an event to its handler: that of its link, session or
        connection, else the container's; then let the connection's owner act
        on it.
        """
        if force or not self._stopped:
            handler = event.handler or self._root
            self._depth += 1
            self._dirty = True
            try:
                event.dispatch(handler)
            except Exception:
                self._handlerFailed(Failure(), event)
            finally:
                self._depth -= 1
        if owner is not None:
            owner.afterEvent(event)

    def _handlerFailed(self, failure: Failure, event: Event) -> None:
        self.errors.append(failure)
        if self._running:
            self.stop()
        else:
            self._log.failure(
                "Uncaught exception in a handler of {event}",
                failure,
                event=event.type.name,
            )

    def _sweep(self, onlyIfDirty: bool = False) -> None:
        """
        Run every connection that has events (the handlers may have acted on
        any of them), until none has; then stop if the work is done.
        """
        if self._depth or self._sweeping or not self._started:
            return
        if onlyIfDirty and not self._dirty:
            return
        self._sweeping = True
        try:
            busy = True
            while busy:
                self._dirty = False
                busy = False
                for owner in list(self._owners):
                    if owner.pump():
                        busy = True
        finally:
            self._sweeping = False
        self._checkIdle()

    # --- bookkeeping -----------------------------------------------------------------

    def _ownerDone(self, owner: _Owner) -> None:
        if owner in self._owners:
            self._owners.remove(owner)
        if isinstance(owner, _ClientConnection):
            self._clients.pop(owner.connection, None)
        if not self._owners:
            quiet, self._quiet = self._quiet, []
            for d in quiet:
                d.callback(None)
        self._checkIdle()

    def _acceptorClosed(self, acceptor: _Acceptor) -> None:
        if acceptor in self._acceptors:
            self._acceptors.remove(acceptor)
        self._checkIdle()

    def _checkIdle(self) -> None:
        """
        In L{run}, stop the reactor once there is nothing left to do.
        """
        if not self._running or self._stopping or self._depth or self._sweeping:
            return
        if self._stopped or not (self._owners or self._acceptors or self._tasks):
            self._stopping = True
            self._reactor.stop()


class ContainerService(Service):
    """
    A Twisted service that starts a L{Container} when the application starts
    and stops it when the application stops.

    @ivar container: the container.

    @since: amqptx NEXT
    """

    def __init__(self, container: Container) -> None:
        """
        @param container: the container to run.
        """
        self.container = container

    def startService(self) -> None:
        """
        Start the container (C{on_start} fires).
        """
        super().startService()  # type: ignore[no-untyped-call]
        self.container.start()

    def stopService(self) -> Deferred[None]:
        """
        Stop the container.

        @return: a Deferred that fires once its connections are gone.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        self.container.stop()
        return self.container._whenQuiet()
