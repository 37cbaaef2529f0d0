# -*- test-case-name: tests.test_endpoints -*-
"""
The C{amqp:} and C{amqps:} endpoint-string parsers for C{clientFromString} and
C{serverFromString}.

This module is imported by Twisted's plugin system whenever any program looks
for endpoint parsers, so it imports neither proton nor the endpoints module
until a string is actually parsed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from twisted.python.filepath import FilePath
from zope.interface import implementer

from ._url import AMQPURL, parseURL

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IReactorCore,
        IStreamClientEndpoint,
        IStreamServerEndpoint,
    )
    from twisted.internet.ssl import Certificate, PrivateCertificate

__all__ = ["AMQPClientParser", "AMQPServerParser"]

_PORT_AT_END = re.compile(r":[0-9]+$")
_TRUE = {"yes", "true", "1", "on"}
_FALSE = {"no", "false", "0", "off"}

_CLIENT_OPTIONS = frozenset(
    [
        "host",
        "port",
        "user",
        "password",
        "mechanisms",
        "allowInsecurePlain",
        "virtualHost",
        "containerId",
        "idleTimeout",
        "maxFrameSize",
        "timeout",
        "bindAddress",
    ]
)
_CLIENT_TLS_OPTIONS = frozenset(["trustRoots", "certificate", "privateKey", "sni"])
_SERVER_OPTIONS = frozenset(
    ["port", "interface", "backlog", "containerId", "idleTimeout", "maxFrameSize"]
)
_SERVER_TLS_OPTIONS = frozenset(["privateKey", "certKey", "extraCertChain", "caCerts"])


def _checkOptions(
    prefix: str, given: dict[str, str], plain: frozenset[str], tls: frozenset[str]
) -> None:
    for name in given:
        if name in tls and prefix != "amqps":
            raise TypeError(f"option {name!r} of {prefix}: needs amqps: (TLS)")
        if name not in plain and name not in tls:
            known = ", ".join(sorted(plain | tls if prefix == "amqps" else plain))
            raise TypeError(f"unknown option {name!r} for {prefix}: (known: {known})")


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"invalid {name} {value!r}: use yes or no")


def _number(name: str, value: str, low: float, integer: bool = False) -> float:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"invalid {name} {value!r}: must be {kind}") from None
    if number != number or number < low:
        raise ValueError(f"invalid {name} {value!r}: must be at least {low:g}")
    return number


def _optionalFloat(name: str, value: str | None, low: float) -> float | None:
    return None if value is None else _number(name, value, low)


def _optionalInt(name: str, value: str | None, low: int) -> int | None:
    return None if value is None else int(_number(name, value, low, integer=True))


def _readFile(option: str, path: str) -> bytes:
    try:
        return FilePath(path).getContent()
    except OSError as e:
        raise ValueError(f"cannot read {option} file {path!r}: {e.strerror}") from None


def _certificates(option: str, path: str) -> list[Certificate]:
    from twisted.internet.ssl import Certificate

    data = _readFile(option, path)
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in data.split(marker)[:-1]]
    if not blocks:
        raise ValueError(f"{option} file {path!r} holds no PEM certificate")
    try:
        return [Certificate.loadPEM(block.strip()) for block in blocks]
    except Exception as e:
        raise ValueError(f"{option} file {path!r}: bad certificate ({e})") from None


def _privateCertificate(
    certOption: str, certPath: str, keyOption: str, keyPath: str
) -> PrivateCertificate:
    from twisted.internet.ssl import PrivateCertificate

    certificate = _certificates(certOption, certPath)[0]
    key = _readFile(keyOption, keyPath)
    try:
        loaded: PrivateCertificate = PrivateCertificate.loadPEM(
            certificate.dumpPEM() + key
        )
        return loaded
    except Exception as e:
        raise ValueError(
            f"{keyOption} file {keyPath!r} holds no private key matching the "
            f"certificate of {certPath!r} ({e})"
        ) from None


def _strings(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[tuple[str, ...], dict[str, str]]:
    for value in (*args, *kwargs.values()):
        if not isinstance(value, str):
            raise TypeError(f"endpoint string parts are text, not {value!r}")
    return tuple(map(str, args)), {k: str(v) for k, v in kwargs.items()}


def _hostPort(prefix: str, args: tuple[str, ...]) -> AMQPURL | None:
    """
    Read the positional arguments: C{HOST:PORT}, C{[IPv6]:PORT} or the URL
    form C{//user:password@host:port}.
    """
    joined = ":".join(args)
    if not joined:
        return None
    if joined.startswith("//"):
        return parseURL(f"{prefix}:{joined}")
    return parseURL(f"{prefix}://{joined}")


def _parseClient(
    prefix: str, reactor: object, args: tuple[str, ...], options: dict[str, str]
) -> IStreamClientEndpoint:
    from ._endpoints import AMQPClientEndpoint

    if args and args[0].startswith("//") and any("@" in v for v in options.values()):
        # Twisted split the URL's user information at an "=": don't quote it,
        # it is likely part of a password.
        raise ValueError(
            f"{prefix}: the user information of the URL holds an '='; "
            "percent-encode it as %3D (and '\\' as %5C)"
        )
    _checkOptions(prefix, options, _CLIENT_OPTIONS, _CLIENT_TLS_OPTIONS)
    url = _hostPort(prefix, args)
    host, port = options.get("host"), options.get("port")
    user, password = options.get("user"), options.get("password")
    if url is not None:
        if host is not None:
            raise ValueError(f"{prefix}: host given twice ({url.host!r}, {host!r})")
        host = url.host
        if port is None:
            port = str(url.port)
        elif _PORT_AT_END.search(":".join(args)):
            raise ValueError(f"{prefix}: port given twice")
        if url.path:
            raise ValueError(
                f"{prefix}: an endpoint has no address path ({url.path!r}); "
                "give the address to the sender or receiver"
            )
        if url.user is not None:
            if user is not None:
                raise ValueError(f"{prefix}: user given twice")
            user = url.user
        if url.password is not None:
            if password is not None:
                raise ValueError(f"{prefix}: password given twice")
            password = url.password
    if not host:
        raise ValueError(f"{prefix}: needs a host, as in {prefix}:HOST:PORT")
    tls = prefix == "amqps"
    trustRoot = None
    clientCertificate = None
    if tls:
        from twisted.internet.ssl import trustRootFromCertificates

        if "trustRoots" in options:
            trustRoot = trustRootFromCertificates(
                _certificates("trustRoots", options["trustRoots"])
            )
        certificate = options.get("certificate")
        privateKey = options.get("privateKey")
        if privateKey is not None and certificate is None:
            raise ValueError(f"{prefix}: privateKey needs certificate")
        if certificate is not None:
            clientCertificate = _privateCertificate(
                "certificate", certificate, "privateKey", privateKey or certificate
            )
    mechanisms = options.get("mechanisms")
    return AMQPClientEndpoint(
        reactor,
        host,
        _optionalInt("port", port, 1),
        tls=tls,
        user=user,
        password=password,
        mechanisms=(
            None
            if mechanisms is None
            else tuple(m for m in mechanisms.replace(",", " ").split() if m)
        ),
        allowInsecurePlain=_bool(
            "allowInsecurePlain", options.get("allowInsecurePlain", "no")
        ),
        virtualHost=options.get("virtualHost"),
        containerId=options.get("containerId"),
        idleTimeout=_optionalFloat("idleTimeout", options.get("idleTimeout"), 0),
        maxFrameSize=_optionalInt("maxFrameSize", options.get("maxFrameSize"), 512),
        timeout=_optionalFloat("timeout", options.get("timeout", "30"), 0.001),
        bindAddress=options.get("bindAddress"),
        trustRoot=trustRoot,
        clientCertificate=clientCertificate,
        sni=options.get("sni"),
    )


def _parseServer(
    prefix: str, reactor: object, args: tuple[str, ...], options: dict[str, str]
) -> IStreamServerEndpoint:
    from ._endpoints import AMQPServerEndpoint

    _checkOptions(prefix, options, _SERVER_OPTIONS, _SERVER_TLS_OPTIONS)
    if len(args) > 1:
        raise ValueError(
            f"{prefix}: takes one positional argument, the port, not {args!r} "
            r"(escape the colons of an IPv6 interface: interface=\:\:1)"
        )
    if args and "port" in options:
        raise ValueError(f"{prefix}: port given twice")
    port = args[0] if args else options.get("port")
    if port is None:
        raise ValueError(f"{prefix}: needs a port, as in {prefix}:5672")
    tlsOptions = None
    if prefix == "amqps":
        privateKey = options.get("privateKey")
        if privateKey is None:
            raise ValueError(f"{prefix}: needs privateKey=PATH (and certKey=PATH)")
        certificate = _privateCertificate(
            "certKey", options.get("certKey", privateKey), "privateKey", privateKey
        )
        from twisted.internet.ssl import CertificateOptions

        chain = options.get("extraCertChain")
        caCerts = options.get("caCerts")
        tlsOptions = CertificateOptions(
            privateKey=certificate.privateKey.original,
            certificate=certificate.original,
            extraCertChain=(
                [c.original for c in _certificates("extraCertChain", chain)]
                if chain
                else None
            ),
            # With caCerts, clients must present a certificate it signed
            # (their identity for SASL EXTERNAL).
            verify=caCerts is not None,
            requireCertificate=caCerts is not None,
            caCerts=(
                [c.original for c in _certificates("caCerts", caCerts)]
                if caCerts
                else None
            ),
        )
    backlog = _optionalInt("backlog", options.get("backlog", "50"), 1)
    assert backlog is not None
    return AMQPServerEndpoint(
        reactor,
        int(_number("port", port, 0, integer=True)),
        interface=options.get("interface", ""),
        backlog=backlog,
        tlsOptions=tlsOptions,
        containerId=options.get("containerId"),
        idleTimeout=_optionalFloat("idleTimeout", options.get("idleTimeout"), 0),
        maxFrameSize=_optionalInt("maxFrameSize", options.get("maxFrameSize"), 512),
    )


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class AMQPClientParser:
    """
    Parses C{amqp:} and C{amqps:} client endpoint strings.

    Forms: C{amqp:HOST:PORT}, C{amqp:host=HOST:port=PORT},
    C{amqp:[::1]:5672}, and the URL form C{amqp://user:password@host:port};
    options C{user}, C{password}, C{mechanisms} (comma-separated),
    C{allowInsecurePlain}, C{virtualHost}, C{containerId}, C{idleTimeout},
    C{maxFrameSize}, C{timeout}, C{bindAddress}; with C{amqps:} also
    C{trustRoots} (a PEM file of CA certificates), C{certificate} and
    C{privateKey} (PEM files of a client certificate and its key) and C{sni}.

    @ivar prefix: C{"amqp"} or C{"amqps"}.
    """

    def __init__(self, prefix: str) -> None:
        """
        @param prefix: C{"amqp"} or C{"amqps"}.
        """
        self.prefix = prefix

    def parseStreamClient(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamClientEndpoint:
        """
        Make a client endpoint from a parsed endpoint string.

        @param reactor: the reactor.
        @param args: the positional parts.
        @param kwargs: the C{name=value} parts.
        @return: an L{amqptx.AMQPClientEndpoint}.
        @raise TypeError: for an unknown option.
        @raise ValueError: for a bad value.
        """
        return _parseClient(self.prefix, reactor, *_strings(args, kwargs))


@implementer(IPlugin, IStreamServerEndpointStringParser)
class AMQPServerParser:
    """
    Parses C{amqp:} and C{amqps:} server endpoint strings.

    Forms: C{amqp:5672}, C{amqp:port=5672:interface=0.0.0.0},
    C{amqp:5672:interface=\\:\\:} (IPv6), C{amqps:5671:privateKey=key.pem:
    certKey=cert.pem}; options C{backlog}, C{containerId}, C{idleTimeout},
    C{maxFrameSize}, and with C{amqps:} C{extraCertChain} and C{caCerts} (a
    PEM file of the authorities whose client certificates are required and
    accepted, for SASL EXTERNAL).

    @ivar prefix: C{"amqp"} or C{"amqps"}.
    """

    def __init__(self, prefix: str) -> None:
        """
        @param prefix: C{"amqp"} or C{"amqps"}.
        """
        self.prefix = prefix

    def parseStreamServer(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamServerEndpoint:
        """
        Make a server endpoint from a parsed endpoint string.

        @param reactor: the reactor.
        @param args: the positional parts (the port).
        @param kwargs: the C{name=value} parts.
        @return: an L{amqptx.AMQPServerEndpoint}.
        @raise TypeError: for an unknown option.
        @raise ValueError: for a bad value.
        """
        return _parseServer(self.prefix, reactor, *_strings(args, kwargs))
