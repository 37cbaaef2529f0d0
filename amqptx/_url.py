# -*- test-case-name: tests.test_url -*-
"""
Parsing and formatting of C{amqp://} and C{amqps://} URLs.

The accepted syntax is::

    scheme://[user[:password]@]host[:port][/path]

where C{scheme} is C{amqp} (plain TCP, default port 5672) or C{amqps} (TLS,
default port 5671).  AMQP URLs have no query and no fragment.

Passwords are secrets: the password of an L{AMQPURL} never appears in its
C{str} or C{repr}, and no error raised while parsing a URL ever quotes it.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Final
from urllib.parse import quote, unquote

__all__ = ["AMQPURL", "parseURL"]


DEFAULT_PORTS: Final[Mapping[str, int]] = MappingProxyType(
    {"amqp": 5672, "amqps": 5671}
)
"""
The port used for each supported scheme when a URL does not give one.  Its
keys are also the only supported schemes.
"""

_MASK: Final = "***"

# Characters left unencoded by toText: RFC 3986 sub-delims for the user name
# and password (":" and "@" are always encoded there), and sub-delims plus
# "/" and ":" for the path ("@" is encoded so naive parsers cannot mistake it
# for the end of the user information).
_USERINFO_SAFE: Final = "!$&'()*+,;="
_PATH_SAFE: Final = "/!$&'()*+,;=:"

_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DIGITS: Final = re.compile(r"[0-9]+")
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs"})


def _isForbidden(character: str) -> bool:
    """
    Is C{character} one that may not appear literally in an AMQP URL?

    @param character: A single character.
    @return: C{True} for whitespace, control, format and surrogate
        characters.
    """
    return (
        character.isspace() or unicodedata.category(character) in _FORBIDDEN_CATEGORIES
    )


def _passwordSpan(text: str) -> tuple[int, int] | None:
    """
    Find the part of a possibly malformed URL text that could be a password.

    This errs on the side of hiding too much: everything from the first
    C{":"} after the C{"://"} that follows a plausible scheme (or from the
    first C{":"} at all, if there is no such C{"://"}) up to the last C{"@"}
    is considered secret.  That covers the password as L{parseURL}
    understands it, and also passwords containing unencoded C{"/"}, C{"?"},
    C{"#"} or C{"@"}.

    @param text: The URL text.
    @return: The start and end indexes of the secret part, or C{None} if
        there is nothing to hide.
    """
    at = text.rfind("@")
    if at < 0:
        return None
    separator = text.find("://", 0, at)
    start = 0
    if separator >= 0 and _SCHEME.fullmatch(text[:separator]):
        start = separator + 3
    colon = text.find(":", start, at)
    if colon < 0:
        return None
    return colon + 1, at


def _normaliseScheme(scheme: object, context: str) -> str:
    """
    Check a URL scheme and return it in lower case.

    @param scheme: The scheme, in any case.
    @param context: Text appended to error messages to say where the scheme
        comes from.
    @return: C{"amqp"} or C{"amqps"}.
    @raise TypeError: If C{scheme} is not a L{str}.
    @raise ValueError: If C{scheme} is not supported.
    """
    if not isinstance(scheme, str):
        raise TypeError(f"scheme must be a str, not {type(scheme).__name__}")
    lowered = scheme.lower()
    if lowered not in DEFAULT_PORTS:
        raise ValueError(
            f"unsupported scheme {scheme!r}{context}: must be 'amqp' or 'amqps'"
        )
    return lowered


def _normaliseIPv6(address: str, context: str) -> str:
    """
    Check an IPv6 address and return its compressed form.

    @param address: The address, without brackets.
    @param context: Text appended to error messages.
    @return: The compressed form of the address, e.g. C{"::1"}.
    @raise ValueError: If C{address} is not a valid IPv6 address, or has a
        zone identifier.
    """
    if "%" in address:
        raise ValueError(
            f"IPv6 zone identifiers are not supported: {address!r}{context}"
        )
    try:
        return ipaddress.IPv6Address(address).compressed
    except ValueError:
        raise ValueError(f"invalid IPv6 address {address!r}{context}") from None


def _normaliseHost(host: str, context: str) -> str:
    """
    Check a host and return its normal form.

    @param host: A DNS name, an IPv4 address, or an IPv6 address without
        brackets.
    @param context: Text appended to error messages.
    @return: The host name in lower case, or the address in its canonical
        form.
    @raise ValueError: If C{host} is empty or invalid.
    """
    if not host:
        raise ValueError(f"missing host{context}")
    if ":" in host:
        return _normaliseIPv6(host, context)
    labels = host.split(".")
    if labels[-1].isascii() and labels[-1].isdigit():
        # No top-level domain is numeric, so this must be an IPv4 address.
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"invalid IPv4 address {host!r}{context}") from None
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"invalid host name {host!r}{context}: must be dot-separated labels"
            " of 1-63 letters, digits, '-' or '_' (not starting or ending with"
            " '-'), an IPv4 address or a bracketed IPv6 address"
        )
    return host.lower()


def _checkHost(host: object) -> str:
    """
    Check the C{host} given to L{AMQPURL} and return its normal form.

    @param host: A DNS name, an IPv4 address, or an IPv6 address without
        brackets.
    @return: The normalised host.
    @raise TypeError: If C{host} is not a L{str}.
    @raise ValueError: If C{host} is invalid.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if host.startswith("["):
        raise ValueError(f"IPv6 address {host!r} must be given without brackets")
    return _normaliseHost(host, "")


def _parsePort(portText: str, context: str) -> int:
    """
    Parse the port of a URL.

    @param portText: The text after the C{":"} that follows the host.
    @param context: Text appended to error messages.
    @return: The port number.
    @raise ValueError: If C{portText} is not a decimal number from 1 to
        65535.
    """
    if not portText:
        raise ValueError(f"missing port after ':'{context}")
    if not _DIGITS.fullmatch(portText):
        raise ValueError(
            f"invalid port {portText!r}{context}: must be a decimal number 1-65535"
        )
    significant = portText.lstrip("0")
    if len(significant) > 5 or not 1 <= int(significant or "0") <= 65535:
        raise ValueError(f"invalid port {portText!r}{context}: must be 1-65535")
    return int(significant)


def _checkPort(port: object) -> int:
    """
    Check the C{port} given to L{AMQPURL}.

    @param port: The port number.
    @return: C{port}.
    @raise TypeError: If C{port} is not an L{int}, or is a L{bool}.
    @raise ValueError: If C{port} is not from 1 to 65535.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid port {port!r}: must be 1-65535")
    return port


def _checkText(value: object, what: str, context: str, secret: bool) -> str:
    """
    Check a (decoded) user name, password or path.

    @param value: The value to check.
    @param what: What C{value} is, for error messages.
    @param context: Text appended to error messages.
    @param secret: If C{True}, never quote C{value} in error messages.
    @return: C{value}.
    @raise TypeError: If C{value} is not a L{str}.
    @raise ValueError: If C{value} cannot be encoded as UTF-8.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = "" if secret else f" {value!r}"
        raise ValueError(
            f"{what}{shown}{context} contains unpaired surrogates"
        ) from None
    return value


def _checkCredential(value: object, what: str, context: str, secret: bool) -> str:
    """
    Check a (decoded) user name or password.

    @param value: The value to check.
    @param what: What C{value} is, for error messages.
    @param context: Text appended to error messages.
    @param secret: If C{True}, never quote C{value} in error messages.
    @return: C{value}.
    @raise TypeError: If C{value} is not a L{str}.
    @raise ValueError: If C{value} cannot be encoded as UTF-8 or contains a
        NUL character (which SASL PLAIN cannot carry).
    """
    text = _checkText(value, what, context, secret)
    if "\x00" in text:
        shown = "" if secret else f" {text!r}"
        raise ValueError(f"{what}{shown}{context} contains a NUL character")
    return text


def _decode(raw: str, what: str, context: str, secret: bool = False) -> str:
    """
    Percent-decode part of a URL.

    @param raw: The encoded text.
    @param what: What C{raw} is, for error messages.
    @param context: Text appended to error messages.
    @param secret: If C{True}, never quote C{raw} in error messages.
    @return: The decoded text.
    @raise ValueError: If a C{"%"} is not followed by two hexadecimal digits,
        or the decoded bytes are not UTF-8.
    """
    shown = "" if secret else f" {raw!r}"
    if _BAD_PERCENT.search(raw):
        raise ValueError(
            f"invalid percent-encoding in {what}{shown}{context}:"
            " '%' must be followed by two hexadecimal digits"
        )
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(
            f"{what}{shown}{context} is not UTF-8 once percent-decoded"
        ) from None


def _parseHostAndPort(text: str, scheme: str, context: str) -> tuple[str, int]:
    """
    Parse the C{host[:port]} part of a URL.

    @param text: The part of the authority after the user information.
    @param scheme: The normalised scheme, which gives the default port.
    @param context: Text appended to error messages.
    @return: The normalised host and the port.
    @raise ValueError: If the host or port is missing or invalid.
    """
    portText: str | None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"unterminated '[' in host {text!r}{context}")
        host = _normaliseIPv6(text[1:close], context)
        after = text[close + 1 :]
        if after and not after.startswith(":"):
            raise ValueError(
                f"unexpected text {after!r} after IPv6 address"
                f" {text[: close + 1]!r}{context}: expected ':' and a port"
            )
        portText = after[1:] if after else None
    else:
        if text.count(":") > 1:
            raise ValueError(
                f"IPv6 address {text!r}{context} must be enclosed in square"
                " brackets, as in 'amqp://[::1]:5672'"
            )
        name, colon, afterColon = text.partition(":")
        host = _normaliseHost(name, context)
        portText = afterColon if colon else None
    if portText is None:
        return host, DEFAULT_PORTS[scheme]
    return host, _parsePort(portText, context)


@dataclass(frozen=True, repr=False)
class AMQPURL:
    """
    The location of an AMQP 1.0 peer, and optionally the credentials and
    address (path) to use there.

    Instances are immutable and validated on creation: the same rules as
    L{parseURL} apply, and the scheme and host are normalised (the scheme and
    host names to lower case, IP addresses to their canonical form), so
    C{AMQPURL("AMQP", "LocalHost", 5672) == parseURL("amqp://localhost")}.
    Use L{dataclasses.replace} to derive a modified URL; it is validated
    again.

    The password never appears in C{str()} or C{repr()}; use
    C{toText(revealPassword=True)} to get the full text.

    @ivar scheme: C{"amqp"} or C{"amqps"}.
    @ivar host: A DNS name, an IPv4 address, or an IPv6 address I{without}
        brackets (e.g. C{"::1"}).
    @ivar port: The port, from 1 to 65535.
    @ivar user: The user name (decoded), or C{None}.  Never empty.
    @ivar password: The password (decoded), or C{None}.  Only allowed with a
        C{user}.
    @ivar path: The decoded path, without the C{"/"} that separates it from
        the host and port: C{"queue"} for C{amqp://h/queue} and
        C{"/queue/x"} for C{amqp://h//queue/x}.  Empty if there is none.
    """

    scheme: str
    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str = ""

    def __post_init__(self) -> None:
        """
        Validate and normalise the fields.

        @raise TypeError: If a field has the wrong type.
        @raise ValueError: If a field has an invalid value, or a password is
            given without a user.
        """
        object.__setattr__(self, "scheme", _normaliseScheme(self.scheme, ""))
        object.__setattr__(self, "host", _checkHost(self.host))
        _checkPort(self.port)
        if self.user is not None:
            _checkCredential(self.user, "user name", "", secret=False)
            if not self.user:
                raise ValueError("empty user name")
        if self.password is not None:
            _checkCredential(self.password, "password", "", secret=True)
            if self.user is None:
                raise ValueError("password given without a user name")
        _checkText(self.path, "path", "", secret=False)

    @property
    def tls(self) -> bool:
        """
        Whether connections to this URL use TLS, i.e. the scheme is
        C{amqps}.
        """
        return self.scheme == "amqps"

    def toText(self, revealPassword: bool = False) -> str:
        """
        Format this URL in canonical form.

        The port is always given explicitly, IPv6 addresses are enclosed in
        brackets, and the user name, password and path are percent-encoded
        where needed, so that C{parseURL(url.toText(revealPassword=True))
        == url}.

        @param revealPassword: If C{True}, include the password; otherwise
            replace it with C{***}.
        @return: The URL text.
        """
        userInfo = ""
        if self.user is not None:
            userInfo = quote(self.user, safe=_USERINFO_SAFE)
            if self.password is not None:
                password = (
                    quote(self.password, safe=_USERINFO_SAFE)
                    if revealPassword
                    else _MASK
                )
                userInfo += ":" + password
            userInfo += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.scheme}://{userInfo}{host}:{self.port}"
        if self.path:
            text += "/" + quote(self.path, safe=_PATH_SAFE)
        return text

    def __str__(self) -> str:
        """
        @return: The canonical text of this URL, with the password masked.
        """
        return self.toText()

    def __repr__(self) -> str:
        """
        @return: A representation including the canonical text of this URL,
            with the password masked.
        """
        return f"{type(self).__name__}({self.toText()!r})"


def parseURL(text: str) -> AMQPURL:
    """
    Parse an AMQP URL of the form C{scheme://[user[:password]@]host[:port]
    [/path]}.

    Examples::

        >>> parseURL("amqp://localhost")
        AMQPURL('amqp://localhost:5672')
        >>> parseURL("AMQPS://guest:s%40cret@Broker.Example:5000//queue/a")
        AMQPURL('amqps://guest:***@broker.example:5000//queue/a')
        >>> parseURL("amqp://[::1]").host
        '::1'
        >>> parseURL("amqp://h/queue").path
        'queue'

    Rules:

        - The scheme is C{amqp} or C{amqps}, in any case.  The default port
          is 5672 for C{amqp} and 5671 for C{amqps} (see L{DEFAULT_PORTS}).
        - The host is a DNS name (normalised to lower case), an IPv4 address
          or an IPv6 address in square brackets.  IPv6 zone identifiers are
          not supported.
        - The port is a decimal number from 1 to 65535.
        - The user name and password are percent-decoded.  The I{last}
          C{"@"} before the host ends the user information, and the I{first}
          C{":"} in it ends the user name, so C{amqp://u:p@ss@h} has the
          password C{"p@ss"}; canonical text (L{AMQPURL.toText}) always
          percent-encodes C{"@"} and C{":"} there.  The user name may not be
          empty; the password may.  C{"/"}, C{"?"} and C{"#"} in a user name
          or password must be percent-encoded.
        - The path is everything after the C{"/"} that follows the host and
          port, percent-decoded.
        - There is no query and no fragment: C{"?"} and C{"#"} are errors.
        - Whitespace and control characters must be percent-encoded.

    Error messages quote the offending part, and the whole URL with any
    password replaced by C{***}; they never include the password.

    @param text: The URL.
    @return: The parsed URL.
    @raise TypeError: If C{text} is not a L{str}.
    @raise ValueError: If C{text} is not a valid AMQP URL.
    """
    if not isinstance(text, str):
        raise TypeError(f"AMQP URL must be a str, not {type(text).__name__}")
    return _parse(text)


@lru_cache(maxsize=256)
def _parse(text: str) -> AMQPURL:
    """
    L{parseURL}, remembering the last few URLs (L{AMQPURL} is immutable): a
    program connects to the same few URLs again and again, and a parse costs
    more than a connection's other set-up together.
    """
    span = _passwordSpan(text)
    masked = text if span is None else text[: span[0]] + _MASK + text[span[1] :]
    context = f" in AMQP URL {masked!r}"

    for index, character in enumerate(text):
        if _isForbidden(character):
            if span is not None and span[0] <= index < span[1]:
                raise ValueError(
                    f"invalid character in the password{context}: whitespace"
                    " and control characters must be percent-encoded"
                )
            raise ValueError(
                f"invalid character {character!r}{context}: whitespace and"
                " control characters must be percent-encoded"
            )

    rawScheme, separator, rest = text.partition("://")
    if not separator:
        raise ValueError(
            f"missing '://'{context}: must start with 'amqp://' or 'amqps://'"
        )
    if not _SCHEME.fullmatch(rawScheme):
        # Not even a scheme: do not quote it, in case it holds a password.
        raise ValueError(
            f"missing or invalid scheme{context}: must be 'amqp' or 'amqps'"
        )
    scheme = _normaliseScheme(rawScheme, context)

    end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter)
        if 0 <= found < end:
            end = found
    authority, tail = rest[:end], rest[end:]
    userInfo, atSign, hostAndPort = authority.rpartition("@")

    if not atSign and ":" in authority and "@" in tail:
        # Perhaps a password containing an unencoded "/", "?" or "#", as in
        # amqp://user:pa/ss@host; if so, the part after the ":" is secret and
        # must not be quoted as a bad port.
        try:
            _parseHostAndPort(hostAndPort, scheme, context)
        except ValueError:
            raise ValueError(
                f"cannot parse the host and port{context}: if the user name or"
                " password contains '/', '?' or '#', percent-encode them"
            ) from None

    for index, character in enumerate(tail):
        if character in "?#":
            raise ValueError(
                f"unexpected query or fragment {tail[index:]!r}{context}:"
                " AMQP URLs have neither"
            )

    user: str | None = None
    password: str | None = None
    if atSign:
        rawUser, colon, rawPassword = userInfo.partition(":")
        if not rawUser:
            raise ValueError(f"empty user name{context}")
        user = _checkCredential(
            _decode(rawUser, "user name", context),
            "user name",
            context,
            secret=False,
        )
        if colon:
            password = _checkCredential(
                _decode(rawPassword, "password", context, secret=True),
                "password",
                context,
                secret=True,
            )

    host, port = _parseHostAndPort(hostAndPort, scheme, context)
    path = _decode(tail[1:], "path", context) if tail else ""
    return AMQPURL(scheme, host, port, user, password, path)
