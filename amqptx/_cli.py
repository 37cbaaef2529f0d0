# -*- test-case-name: tests.test_cli -*-
"""
C{amqptx}, the command-line tool: send, receive, request and ping, on the
Deferred API.

Every foreseeable failure ends the program with one line on standard error,
C{amqptx: error: ...}, and an exit status that says which kind of failure it
was (L{EXIT_CONNECTION}, L{EXIT_AUTHENTICATION}, L{EXIT_REJECTED},
L{EXIT_TIMEOUT}...; see L{exitStatus}); the passwords of the URLs never appear
in what it prints.  On a terminal, C{send} and C{receive} keep a status line
up to date on standard error (L{Progress}).
"""

from __future__ import annotations

import base64
import getopt
import json
import math
import re
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any, NoReturn, cast
from uuid import UUID

from twisted.internet import error as neterror
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    TimeoutError,
    gatherResults,
)
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.task import LoopingCall
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer, provider

from ._errors import (
    AMQPConnectionLost,
    AMQPError,
    AuthenticationFailed,
    ConnectionClosed,
    DeliveryNotAccepted,
    LinkDetached,
    MessageModified,
    MessageRejected,
    MessageReleased,
    OpenRefused,
    ProtocolError,
    RequestTimedOut,
    SessionEnded,
    TLSError,
)
from ._failover import FailoverExhausted
from ._parsers import _certificates, _privateCertificate
from ._url import AMQPURL, parseURL

if TYPE_CHECKING:
    from proton import Message
    from twisted.internet.interfaces import IReactorTime

    from ._client import AMQPConnection, Outcome, ReceivedMessage
    from ._reconnect import AMQPClientService

__all__ = [
    "EXIT_AUTHENTICATION",
    "EXIT_CONNECTION",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "Options",
    "main",
]

EXIT_OK = 0
"""
Everything asked for was done."""

EXIT_FAILURE = 1
"""
A failure none of the other statuses names: the program's standard output
closed, the server ending a session for a reason of its own, a bug..."""

EXIT_TIMEOUT = 2
"""
C{receive} got fewer messages than C{--count}, or C{request} no reply, or
no connection opened, within their C{--timeout}."""

EXIT_CONNECTION = 3
"""
No connection: refused, unknown host, no AMQP Open within
C{--connect-timeout}, a failed TLS handshake, every server of C{--failover}
failed; or the connection was lost or closed by the server."""

EXIT_AUTHENTICATION = 4
"""
The server refused the login (SASL: a wrong user or password, no mechanism in
common), or refused to open the connection with
C{amqp:unauthorized-access}."""

EXIT_REJECTED = 5
"""
The server refused what was asked: a message rejected, released or modified
(not accepted), or a link to the address refused or detached (not found, not
allowed...)."""

EXIT_USAGE = 64
"""
A mistake on the command line (an unknown option, a bad URL...)."""

EXIT_INTERRUPTED = 130
"""
Interrupted (Ctrl-C) or terminated before the end."""

_PROGRAM = "amqptx"
_PLACEHOLDER = "{n}"
_DEFAULT_CONNECT_TIMEOUT = "10"
_DEFAULT_REQUEST_TIMEOUT = "10"
_RECEIVE_WINDOW = 100
_CLOSE_TIMEOUT = 5.0
_ACKS = ("accept", "reject", "release")
_PROGRESS_INTERVAL = 0.25


class CommandFailed(Exception):
    """
    A command failed in a way that is the user's to fix: it ends the program
    with one line on standard error.

    @ivar message: the line to print (without the C{amqptx: error:} prefix).
    @ivar code: the exit status.
    """

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# --- values on the command line ---------------------------------------------------


def _wholeNumber(option: str, value: str, low: int) -> int:
    """
    @param option: the option, for the error message.
    @param value: its text.
    @param low: the smallest value allowed.
    @return: the number.
    @raise usage.UsageError: for anything else.
    """
    try:
        number = int(value)
    except ValueError:
        raise usage.UsageError(f"{option} {value!r}: not a whole number") from None
    if number < low:
        raise usage.UsageError(f"{option} {value!r}: must be at least {low}")
    return number


def _seconds(option: str, value: str) -> float:
    """
    @param option: the option, for the error message.
    @param value: its text.
    @return: a positive, finite number of seconds.
    @raise usage.UsageError: for anything else.
    """
    try:
        number = float(value)
    except ValueError:
        raise usage.UsageError(f"{option} {value!r}: not a number") from None
    if not (math.isfinite(number) and number > 0):
        raise usage.UsageError(f"{option} {value!r}: must be a positive number")
    return number


def _keyValue(option: str, text: str) -> tuple[str, str]:
    """
    Split a C{KEY=VALUE} argument at its first C{=}.

    @param option: the option, for the error message.
    @param text: the argument.
    @return: the key and the value.
    @raise usage.UsageError: without a C{=}, or with an empty key.
    """
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise usage.UsageError(f"{option} {text!r}: use KEY=VALUE")
    return key, value


def _ttl(value: str) -> float:
    seconds = _seconds("--property ttl", value)
    if seconds * 1000 >= 2**32:
        raise usage.UsageError(f"--property ttl {value!r}: too long")
    return seconds


def _priority(value: str) -> int:
    priority = _wholeNumber("--property priority", value, 0)
    if priority > 255:
        raise usage.UsageError(f"--property priority {value!r}: must be 0-255")
    return priority


def _text(value: str) -> str:
    return value


# How each key of --property is checked, and which attribute of a proton
# Message it sets.  Text values take the {n} of --count.
_PROPERTIES: dict[str, tuple[str, Callable[[str], object]]] = {
    "content-encoding": ("content_encoding", _text),
    "content-type": ("content_type", _text),
    "correlation-id": ("correlation_id", _text),
    "group-id": ("group_id", _text),
    "message-id": ("id", _text),
    "priority": ("priority", _priority),
    "reply-to": ("reply_to", _text),
    "subject": ("subject", _text),
    "ttl": ("ttl", _ttl),
}


def _propertyValue(key: str, value: str) -> object:
    """
    Check one C{--property}.

    @param key: its key.
    @param value: its value.
    @return: the value to set.
    @raise usage.UsageError: for an unknown key or a bad value.
    """
    known = _PROPERTIES.get(key.lower())
    if known is None:
        raise usage.UsageError(
            f"--property {key!r}: unknown; use one of {', '.join(sorted(_PROPERTIES))}"
        )
    return known[1](value)


# --- messages ---------------------------------------------------------------------


@dataclass(frozen=True)
class MessageTemplate:
    """
    The message C{send} and C{request} build, once per C{--count}.

    @ivar body: text (sent as an AMQP string value) or bytes (sent as a data
        section).
    @ivar properties: the C{--property} pairs, keys in lower case, values
        checked.
    @ivar applicationProperties: the C{--header} pairs.
    @ivar durable: whether the message is durable.
    """

    body: str | bytes
    properties: tuple[tuple[str, object], ...] = ()
    applicationProperties: tuple[tuple[str, str], ...] = ()
    durable: bool = False

    def build(self, number: int = 1) -> Message:
        """
        Build one message.

        @param number: the message's number, from 1: it replaces C{{n}} in a
            text body and in the text of properties and headers.
        @return: the message.
        """
        from proton import Message

        def numbered(text: str) -> str:
            return text.replace(_PLACEHOLDER, str(number))

        message = Message()
        if isinstance(self.body, bytes):
            message.body = self.body
            # A data section, as other clients and brokers expect for bytes,
            # rather than an AMQP binary value.
            message.inferred = True
        else:
            message.body = numbered(self.body)
        if self.durable:
            message.durable = True
        for key, value in self.properties:
            attribute = _PROPERTIES[key][0]
            setattr(
                message, attribute, numbered(value) if isinstance(value, str) else value
            )
        if self.applicationProperties:
            message.properties = {  # type: ignore[assignment]
                key: numbered(value) for key, value in self.applicationProperties
            }
        return message


def jsonable(value: object) -> Any:
    """
    Make an AMQP value fit for JSON: binary becomes text when it is UTF-8,
    else C{{"base64": ...}}; symbols, UUIDs and decimals become text; map
    keys become text.

    @param value: a decoded AMQP value.
    @return: a value C{json.dumps} takes.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(data).decode("ascii")}
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    elements = getattr(value, "elements", None)
    if isinstance(elements, (list, tuple)):
        return [jsonable(v) for v in elements]
    described = getattr(value, "descriptor", None)
    if described is not None and hasattr(value, "value"):
        return {
            "descriptor": jsonable(described),
            "value": jsonable(getattr(value, "value")),  # noqa: B009
        }
    return str(value)


# (JSON name, proton attribute, whether its unset value is 0 rather than None)
_JSON_PROPERTIES = (
    ("message-id", "id", False),
    ("user-id", "user_id", False),
    ("to", "address", False),
    ("subject", "subject", False),
    ("reply-to", "reply_to", False),
    ("correlation-id", "correlation_id", False),
    ("content-type", "content_type", False),
    ("content-encoding", "content_encoding", False),
    ("absolute-expiry-time", "expiry_time", True),
    ("creation-time", "creation_time", True),
    ("group-id", "group_id", False),
    ("group-sequence", "group_sequence", True),
    ("reply-to-group-id", "reply_to_group_id", False),
)


_SYMBOLS = frozenset(["content_type", "content_encoding"])


def messageRecord(message: Message) -> dict[str, Any]:
    """
    Describe a message for C{--json}.

    @param message: a received message.
    @return: its body, properties (those set, by their AMQP names),
        application properties, delivery count, and durable, priority and
        ttl (seconds, or L{None}) from its header.
    """
    properties: dict[str, Any] = {}
    for name, attribute, zeroIsUnset in _JSON_PROPERTIES:
        value = getattr(message, attribute)
        if value is None or (zeroIsUnset and not value) or value == b"":
            continue
        if attribute in _SYMBOLS and value == "None":
            # proton 0.40 gives symbol(None), "None", for an unset symbol.
            continue
        properties[name] = jsonable(value)
    return {
        "body": jsonable(message.body),
        "properties": properties,
        "application-properties": jsonable(dict(message.properties or {})),
        "delivery-count": int(message.delivery_count),
        "durable": bool(message.durable),
        "priority": int(message.priority),
        "ttl": float(message.ttl) or None,
    }


def messageLine(message: Message, asJSON: bool) -> bytes:
    """
    The line printed for a received message (without its newline).

    @param message: the message.
    @param asJSON: print L{messageRecord} as JSON, rather than the body.
    @return: the JSON record, or the body: text in UTF-8, bytes as they are,
        nothing for no body, other values as JSON.
    """
    if asJSON:
        return json.dumps(messageRecord(message), ensure_ascii=False).encode("utf-8")
    body = message.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8", "backslashreplace")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    return json.dumps(jsonable(body), ensure_ascii=False).encode("utf-8")


# --- options ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionPlan:
    """
    Where and how to connect, from the URL and the common options.

    @ivar url: the URL, path included (its C{str} masks the password).
    @ivar endpointOptions: keyword arguments of L{amqptx.AMQPClientEndpoint}.
    @ivar reconnect: whether to reconnect (L{amqptx.AMQPClientService}).
    @ivar connectTimeout: seconds each connection attempt may take.
    @ivar verbose: whether to log to standard error.
    @ivar failover: the servers of C{--failover} (without paths), tried in
        order after the URL's (L{amqptx.AMQPFailoverEndpoint}).
    """

    url: AMQPURL
    endpointOptions: dict[str, object] = field(default_factory=dict)
    reconnect: bool = False
    connectTimeout: float = float(_DEFAULT_CONNECT_TIMEOUT)
    verbose: bool = False
    failover: tuple[AMQPURL, ...] = ()

    @property
    def address(self) -> str:
        """
        The URL's path: the address to send to or receive from.
        """
        return self.url.path

    @property
    def server(self) -> str:
        """
        The URL without its path, as C{amqp://user:***@host:port}.
        """
        return str(replace(self.url, path=""))

    @property
    def servers(self) -> tuple[AMQPURL, ...]:
        """
        Every server to try, in order: the URL's (without its path), then
        those of C{--failover}.
        """
        return (replace(self.url, path=""), *self.failover)

    @property
    def secrets(self) -> tuple[str, ...]:
        """
        What must never be printed: the passwords, if any.
        """
        return tuple(url.password for url in self.servers if url.password)


class _CommandOptions(usage.Options):
    """
    The options every command takes: the URL, TLS files, --insecure,
    --reconnect, --verbose, --connect-timeout; options may come before or
    after the URL.
    """

    needsAddress = True

    optFlags = [
        [
            "insecure",
            None,
            "Allow the URL's password over amqp:// (no TLS): it then travels "
            "in clear. (It does not turn off certificate checks.)",
        ],
        [
            "reconnect",
            None,
            "Keep (re)connecting, with back-off, when the connection fails or "
            "drops; links and unsettled messages carry over.",
        ],
        ["verbose", "v", "Log what happens to standard error."],
    ]
    optParameters = [
        ["ca", None, None, "PEM file of the authorities to trust (amqps).", str],
        ["cert", None, None, "PEM file of a client certificate (amqps).", str],
        ["key", None, None, "PEM file of its private key (default: --cert).", str],
        ["sni", None, None, "Server name to ask for and check (amqps).", str],
        [
            "connect-timeout",
            None,
            _DEFAULT_CONNECT_TIMEOUT,
            "Seconds a connection attempt may take (TCP, TLS, SASL, Open).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["failover"] = []
        self.plan: ConnectionPlan | None = None

    def opt_failover(self, url: str) -> None:
        """URL: another server to try, after the URL's (repeatable, in order)."""
        self["failover"].append(url)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse the arguments, options and the URL in any order (C{getopt}
        stops at the first argument that is not an option; C{gnu_getopt}
        does not).

        @param options: the arguments after the command's name.
        """
        if options is None:
            options = sys.argv[1:]
        try:
            found, arguments = getopt.gnu_getopt(
                list(options), self.shortOpt, self.longOpt
            )
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from None
        takesValue = {f"--{name[:-1]}" for name in self.longOpt if name.endswith("=")}
        takesValue |= {
            f"-{letter}"
            for letter, after in zip(
                self.shortOpt, self.shortOpt[1:] + " ", strict=True
            )
            if letter != ":" and after == ":"
        }
        again: list[str] = []
        for name, value in found:
            again.append(name)
            if name in takesValue:
                again.append(value)
        super().parseOptions(  # type: ignore[no-untyped-call]
            [*again, "--", *arguments]
        )

    def opt_version(self) -> NoReturn:
        """
        Print the version and exit.
        """
        _version()

    def parseArgs(self, *arguments: str) -> None:
        """
        Take the URL.

        @param arguments: the arguments that are not options.
        """
        if len(arguments) != 1:
            example = "amqp://HOST" if not self.needsAddress else "amqp://HOST/ADDRESS"
            raise usage.UsageError(
                f"give one URL, as in {example} (got {len(arguments)} arguments)"
            )
        self["url"] = arguments[0]

    def postOptions(self) -> None:
        """
        Check the URL and the common options.
        """
        try:
            url = parseURL(self["url"])
        except (TypeError, ValueError) as e:
            raise usage.UsageError(f"bad URL: {e}") from None
        if self.needsAddress and not url.path:
            raise usage.UsageError(
                f"the URL {str(url)!r} names no address: add it as the path, "
                "as in amqp://HOST/ADDRESS"
            )
        failover = []
        for text in self["failover"]:
            try:
                other = parseURL(text)
            except (TypeError, ValueError) as e:
                raise usage.UsageError(f"bad --failover URL: {e}") from None
            if other.path and other.path != url.path:
                raise usage.UsageError(
                    f"--failover {str(other)!r}: give the server only, as in "
                    "amqp://HOST:PORT (the address comes from the URL)"
                )
            failover.append(replace(other, path=""))
        tlsFiles = [
            f"--{name}"
            for name in ("ca", "cert", "key", "sni")
            if self[name] is not None
        ]
        for each in (url, *failover):
            if tlsFiles and not each.tls:
                raise usage.UsageError(
                    f"{', '.join(tlsFiles)}: need an amqps:// URL "
                    f"({str(replace(each, path=''))} is not)"
                )
            if each.user is not None and not each.tls and not self["insecure"]:
                raise usage.UsageError(
                    "refusing to send a password in clear over amqp:// (no TLS): "
                    "use amqps://, or --insecure to allow it"
                )
        timeout = _seconds("--connect-timeout", self["connect-timeout"])
        options: dict[str, object] = {
            "allowInsecurePlain": bool(self["insecure"]),
            "timeout": timeout,
        }
        try:
            if self["ca"] is not None:
                from twisted.internet.ssl import trustRootFromCertificates

                options["trustRoot"] = trustRootFromCertificates(
                    _certificates("--ca", self["ca"])
                )
            if self["key"] is not None and self["cert"] is None:
                raise usage.UsageError("--key needs --cert")
            if self["cert"] is not None:
                options["clientCertificate"] = _privateCertificate(
                    "--cert", self["cert"], "--key", self["key"] or self["cert"]
                )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if self["sni"] is not None:
            options["sni"] = self["sni"]
        self.plan = ConnectionPlan(
            url,
            options,
            reconnect=bool(self["reconnect"]),
            connectTimeout=timeout,
            verbose=bool(self["verbose"]),
            failover=tuple(failover),
        )


class _MessageOptions(_CommandOptions):
    """
    The options of commands that send a message: its body, properties and
    application properties.
    """

    optFlags = [["durable", None, "Send durable messages."]]
    optParameters = [
        ["message", "m", None, "The body, as text.", str],
        ["file", "f", None, "Take the body, as bytes, from a file (- for stdin).", str],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["properties"] = []
        self["headers"] = []
        self.template: MessageTemplate | None = None

    def opt_property(self, text: str) -> None:
        """KEY=VALUE: set a message property (repeatable; keys below)."""
        key, value = _keyValue("--property", text)
        self["properties"].append((key.lower(), _propertyValue(key, value)))

    opt_p = opt_property

    def opt_header(self, text: str) -> None:
        """KEY=VALUE: set an application property, as text (repeatable)."""
        self["headers"].append(_keyValue("--header", text))

    opt_H = opt_header

    def _body(self) -> str | bytes:
        text, path = self["message"], self["file"]
        if text is not None and path is not None:
            raise usage.UsageError("give either -m TEXT or --file PATH, not both")
        if text is not None:
            return str(text)
        if path is None:
            raise usage.UsageError("give the body: -m TEXT, or --file PATH")
        try:
            if path == "-":
                return sys.stdin.buffer.read()
            with open(path, "rb") as body:
                return body.read()
        except OSError as e:
            raise usage.UsageError(
                f"cannot read --file {path!r}: {e.strerror or e}"
            ) from None

    def postOptions(self) -> None:
        """
        Check the common options, then build the message template.
        """
        super().postOptions()
        self.template = MessageTemplate(
            self._body(),
            tuple(self["properties"]),
            tuple(self["headers"]),
            bool(self["durable"]),
        )


class SendOptions(_MessageOptions):
    """
    C{amqptx send}.
    """

    synopsis = "[options] URL -m TEXT|--file PATH"
    longdesc = (
        "Send a message to the address in the URL's path, as in "
        "amqptx send amqp://localhost/queue -m hello. With --count N it is "
        "sent N times, {n} in its text (body, properties, headers) numbered "
        "1 to N. Prints one line per outcome (accepted, rejected, released, "
        "modified), or a summary with --quiet; exits with 5 if any message was "
        "not accepted. On a terminal, a status line on standard error shows "
        "how many were sent and how fast (not with --quiet or --no-progress). "
        "The keys of --property: subject, content-type, "
        "content-encoding, correlation-id, message-id, reply-to, group-id, "
        "priority (0-255) and ttl (seconds)."
    )
    optFlags = [
        ["presettled", None, "Send pre-settled (at most once): no outcomes."],
        ["quiet", "q", "Print only a summary (and no progress line)."],
        ["no-progress", None, "No progress line on a terminal."],
    ]
    optParameters = [["count", "c", "1", "Send the message N times."]]

    def postOptions(self) -> None:
        """
        Check the options.
        """
        self["count"] = _wholeNumber("--count", self["count"], 1)
        super().postOptions()


class ReceiveOptions(_CommandOptions):
    """
    C{amqptx receive}.
    """

    synopsis = "[options] URL"
    longdesc = (
        "Receive messages from the address in the URL's path and print their "
        "bodies, one per line (text as UTF-8, bytes as they are), or JSON "
        "lines with --json. Exits with 0 once --count messages came, with 2 "
        "when --timeout passed first. On a terminal, a status line on "
        "standard error shows how many came and how fast (not with "
        "--no-progress)."
    )
    optFlags = [
        [
            "json",
            "j",
            "Print each message as a JSON object: body, properties, "
            "application-properties, delivery-count, durable, priority, ttl.",
        ],
        ["no-progress", None, "No progress line on a terminal."],
    ]
    optParameters = [
        ["count", "c", "1", "Stop after N messages (0: no limit)."],
        [
            "timeout",
            "t",
            None,
            "Give up after S seconds, connecting included (default: never).",
        ],
        ["ack", "a", "accept", "Settle each message: accept, reject or release."],
    ]

    def postOptions(self) -> None:
        """
        Check the options.
        """
        self["count"] = _wholeNumber("--count", self["count"], 0)
        if self["timeout"] is not None:
            self["timeout"] = _seconds("--timeout", self["timeout"])
        ack = str(self["ack"]).lower()
        if ack not in _ACKS:
            raise usage.UsageError(
                f"--ack {self['ack']!r}: use accept, reject or release"
            )
        self["ack"] = ack
        super().postOptions()


class RequestOptions(_MessageOptions):
    """
    C{amqptx request}.
    """

    synopsis = "[options] URL -m TEXT|--file PATH"
    longdesc = (
        "Send a request to the address in the URL's path, with a temporary "
        "reply-to address and a correlation-id, and print the reply (its body, "
        "or JSON with --json). Exits with 2 when no reply came in time. The keys "
        "of --property are those of send."
    )
    optFlags = [["json", "j", "Print the reply as a JSON object (see receive)."]]
    optParameters = [
        [
            "timeout",
            "t",
            _DEFAULT_REQUEST_TIMEOUT,
            "Seconds to wait for the reply, connecting included.",
        ]
    ]

    def postOptions(self) -> None:
        """
        Check the options.
        """
        self["timeout"] = _seconds("--timeout", self["timeout"])
        super().postOptions()


class PingOptions(_CommandOptions):
    """
    C{amqptx ping}.
    """

    needsAddress = False
    synopsis = "[options] URL"
    longdesc = (
        "Open a connection (TCP, TLS, SASL, AMQP Open) and close it again; print "
        "how long opening took and what the server says of itself (its "
        "container-id, the properties of its Open such as product and version, "
        "its capabilities), the TLS protocol and certificate, and the SASL "
        "mechanism."
    )


class Options(usage.Options):
    """
    The command line of C{amqptx}.
    """

    longdesc = (
        "An AMQP 1.0 client for the command line. URLs are "
        "amqp[s]://[USER:PASSWORD@]HOST[:PORT]/ADDRESS (percent-encode special "
        "characters); --failover URL adds servers to try in turn. Exit "
        "status: 0 done; 1 failed (another reason); 2 timed out; 3 no "
        "connection (refused, TLS failed, lost, closed by the server); 4 "
        "authentication failed; 5 rejected (a message not accepted, an "
        "address refused); 64 bad command line; 130 interrupted. Run "
        "'amqptx COMMAND --help' for the options of a command."
    )
    subCommands = [
        ["send", None, SendOptions, "Send messages to an address."],
        ["receive", None, ReceiveOptions, "Receive messages from an address."],
        ["request", None, RequestOptions, "Send a request and print the reply."],
        ["ping", None, PingOptions, "Check that a server can be reached."],
    ]

    def getSynopsis(self) -> str:
        """
        @return: the synopsis: C{amqptx} under a command's own.
        """
        if self.subCommand is not None:
            return f"Usage: {_PROGRAM}"
        return f"Usage: {_PROGRAM} COMMAND [options] URL"

    def opt_version(self) -> NoReturn:
        """
        Print the version and exit.
        """
        _version()

    def postOptions(self) -> None:
        """
        Insist on a command.
        """
        if self.subCommand is None:
            raise usage.UsageError("give a command: send, receive, request or ping")


def _version() -> NoReturn:
    from . import __version__

    sys.stdout.write(f"{_PROGRAM} {__version__}\n")
    sys.exit(EXIT_OK)


def parseCommandLine(arguments: Sequence[str]) -> Options:
    """
    Parse C{amqptx}'s arguments.

    @param arguments: the arguments, without the program's name.
    @return: the parsed options; C{subOptions} holds the command's, with
        its L{ConnectionPlan} as C{plan}.
    @raise usage.UsageError: for a mistake.
    """
    options = Options()  # type: ignore[no-untyped-call]
    options.parseOptions(_commandFirst(arguments))  # type: ignore[no-untyped-call]
    return options


_TOP_LEVEL = frozenset(["--help", "--version"])


def _commandFirst(arguments: Sequence[str]) -> list[str]:
    """
    Move a command's options given before its name (C{amqptx -v send ...})
    after it, where they belong.

    @param arguments: the arguments.
    @return: the arguments, in order.
    """
    arguments = list(arguments)
    for index, argument in enumerate(arguments):
        if argument == "--":
            break
        if argument in _COMMANDS:
            before = arguments[:index]
            mine = [a for a in before if a in _TOP_LEVEL]
            theirs = [a for a in before if a not in _TOP_LEVEL]
            return [*mine, argument, *theirs, *arguments[index + 1 :]]
    return arguments


# --- output -----------------------------------------------------------------------


def _isTerminal(stream: object) -> bool:
    """
    @return: whether the stream is a terminal (and says so without failing).
    """
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (OSError, ValueError):
        return False


def _rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}"


class Progress:
    """
    The status line of a long C{send} or C{receive} on a terminal: how many
    messages so far, of how many, how fast.

    It is drawn on standard error over itself (after a C{\\r}), from a
    C{LoopingCall} on the reactor's clock: at most once per C{interval}, and
    the first time only once an interval has passed, so that a quick run
    shows nothing.  L{finish} draws it a last time and ends it with a
    newline (if it was ever drawn).

    @ivar done: the messages done so far (sent with their outcome, or
        received).
    @ivar notAccepted: of those, the messages sent that were not accepted.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        clock: IReactorTime,
        verb: str,
        total: int | None,
        interval: float = _PROGRESS_INTERVAL,
    ) -> None:
        """
        @param write: writes text to the terminal (and flushes it).
        @param clock: the clock of the updates and of the rate.
        @param verb: what is done to the messages: C{"sent"}, C{"received"}.
        @param total: how many messages are to be done, or L{None} for no
            limit.
        @param interval: the seconds between updates.
        """
        self._write = write
        self._clock = clock
        self._verb = verb
        self._total = total
        self._started = clock.seconds()
        self.done = 0
        self.notAccepted = 0
        self._drawn = ""
        self._hidden = False
        self._loop = LoopingCall(self.draw)
        self._loop.clock = clock
        self._loop.start(interval, now=False)

    def text(self) -> str:
        """
        @return: the status line, as in C{sent 1200 of 10000 (12%), 480
            msg/s, 2.5 s}.
        """
        if self._total:
            percent = 100 * self.done // self._total
            parts = [f"{self._verb} {self.done} of {self._total} ({percent}%)"]
        else:
            parts = [f"{self._verb} {self.done}"]
        if self.notAccepted:
            parts.append(f"{self.notAccepted} not accepted")
        elapsed = self._clock.seconds() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts.append(f"{_rate(rate)} msg/s")
        parts.append(f"{elapsed:.1f} s")
        return ", ".join(parts)

    def draw(self) -> None:
        """
        Draw the line as it is now, over the one before.
        """
        text = self.text()
        shown = "" if self._hidden else self._drawn
        self._write("\r" + text + " " * max(0, len(shown) - len(text)))
        self._drawn = text
        self._hidden = False

    def hide(self) -> bool:
        """
        Blank the line, for other output to take its place.

        @return: whether it was shown (and so should be L{restore}d).
        """
        if not self._drawn or self._hidden:
            return False
        self._write("\r" + " " * len(self._drawn) + "\r")
        self._hidden = True
        return True

    def restore(self) -> None:
        """
        Show the line again, as last drawn, after L{hide}.
        """
        if self._hidden:
            self._write(self._drawn)
            self._hidden = False

    def finish(self) -> None:
        """
        Stop updating; if the line was ever drawn, draw it a last time and
        end it with a newline.
        """
        if self._loop.running:
            self._loop.stop()
        if self._drawn:
            self.draw()
            self._write("\n")
            self._drawn = ""


class Console:
    """
    Where the program writes: lines of results on standard output (bytes,
    flushed at once), errors and logs on standard error, with every secret
    masked there; on a terminal, the L{Progress} line of a command, kept
    below the rest.

    @ivar secrets: texts to replace with C{***} on standard error.
    @ivar silent: whether to drop what L{note} and L{error} are given (once
        the program reported why it ends).
    @ivar reconnectWarnings: whether to show the reconnecting factory's
        warnings without C{--verbose} (not once the command stops it).
    @ivar progress: the progress line being shown, or L{None}.
    """

    def __init__(self, out: IO[bytes], err: IO[str]) -> None:
        """
        @param out: standard output, in binary.
        @param err: standard error.
        """
        self._out = out
        self._err = err
        self.secrets: tuple[str, ...] = ()
        self.silent = False
        self.reconnectWarnings = True
        self.progress: Progress | None = None
        self._sameTerminal = _isTerminal(out)

    def startProgress(
        self, clock: IReactorTime, verb: str, total: int | None
    ) -> Progress | None:
        """
        Start a progress line, when standard error is a terminal.

        @param clock: the clock of its updates.
        @param verb: what is done to the messages (C{"sent"}).
        @param total: how many messages are to be done, or L{None}.
        @return: the progress line, also in L{progress}; or L{None} when
            standard error is not a terminal.
        """
        self.finishProgress()
        if not _isTerminal(self._err):
            return None
        self.progress = Progress(self._raw, clock, verb, total)
        return self.progress

    def finishProgress(self) -> None:
        """
        End the progress line, if any (see L{Progress.finish}).
        """
        progress, self.progress = self.progress, None
        if progress is not None:
            progress.finish()

    def _raw(self, text: str) -> None:
        try:
            self._err.write(text)
            self._err.flush()
        except (OSError, ValueError):
            pass

    def scrub(self, text: str) -> str:
        """
        @param text: some text.
        @return: the text, every secret in it replaced with C{***}.
        """
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def line(self, data: bytes | str) -> None:
        """
        Write a line of results.

        @param data: the line, without its newline.
        @raise CommandFailed: when standard output is closed (a pipe to a
            program that has exited).
        """
        if isinstance(data, str):
            data = data.encode("utf-8", "backslashreplace")
        # On the terminal of the progress line, the line goes above it.
        hidden = (
            self.progress is not None and self._sameTerminal and self.progress.hide()
        )
        try:
            self._out.write(data + b"\n")
            self._out.flush()
        except (BrokenPipeError, ValueError):
            raise CommandFailed("standard output is closed") from None
        finally:
            if hidden and self.progress is not None:
                self.progress.restore()

    def write(self, text: str) -> None:
        """
        Write text to standard error, secrets masked (a file for
        C{textFileLogObserver}), above the progress line.

        @param text: the text.
        """
        hidden = self.progress is not None and self.progress.hide()
        try:
            self._err.write(self.scrub(text))
        except (OSError, ValueError):
            pass
        if hidden and self.progress is not None:
            if text.endswith("\n"):
                self.flush()
                self.progress.restore()

    def flush(self) -> None:
        """
        Flush standard error.
        """
        try:
            self._err.flush()
        except (OSError, ValueError):
            pass

    def error(self, message: str) -> None:
        """
        Report a failure: one line on standard error, below the last state of
        the progress line.

        @param message: what went wrong.
        """
        self.finishProgress()
        self.note(f"error: {message}")

    def note(self, message: str) -> None:
        """
        Write one line, prefixed with the program's name, on standard error.

        @param message: the line; newlines in it are turned into spaces.
        """
        if self.silent:
            return
        self.write(f"{_PROGRAM}: {' '.join(message.splitlines())}\n")
        self.flush()


def _observer(console: Console, verbose: bool) -> ILogObserver:
    """
    @param console: where to write.
    @param verbose: log everything (C{--verbose}), rather than only the
        reconnecting factory's warnings (of attempts that failed, to be tried
        again), on one line each.  Its errors (it gives up) are not shown:
        the command's own error line says why it ends; nor is the failed
        attempt of a refused login, which is not tried again.
    @return: the log observer for the run.
    """
    if verbose:
        observer: ILogObserver = textFileLogObserver(console)  # type: ignore[arg-type]
        return observer

    @provider(ILogObserver)
    def warnings(event: LogEvent) -> None:
        namespace = str(event.get("log_namespace", ""))
        if (
            console.reconnectWarnings
            and namespace.startswith("amqptx._reconnect")
            and event.get("log_level") == LogLevel.warn
            and AuthenticationFailed.__name__ not in str(event.get("reason", ""))
        ):
            console.note(f"warning: {formatEvent(event)}")

    return cast(ILogObserver, warnings)


# --- describing failures ------------------------------------------------------------


def _reason(failure: AMQPError) -> str:
    parts = [part for part in (failure.condition, failure.description) if part]
    return ": ".join(parts) if parts else "no reason given"


def _connectError(failure: neterror.ConnectError) -> str:
    """
    @return: what Twisted says of a failed connection, without its
        boilerplate.
    """
    reason = failure.args[0] if failure.args and failure.args[0] else None
    if reason is None and failure.osError:
        reason = failure.osError
    if reason is None:
        return str(failure).rstrip(".")
    return str(reason).rstrip(".")


_OPENSSL_REASON = re.compile(r"\('[^']*', '[^']*', '([^']*)'\)")


def _tlsText(text: str) -> str:
    """
    @param text: the message of a L{TLSError}.
    @return: the reasons in OpenSSL's list of C{(library, function, reason)},
        or the text as it is.
    """
    reasons = [reason for reason in _OPENSSL_REASON.findall(text) if reason]
    return "; ".join(reasons) if reasons else text


def describeConnectFailure(failure: BaseException, plan: ConnectionPlan) -> str:
    """
    Say in one line why the connection did not open.

    @param failure: the exception L{amqptx.connect} failed with.
    @param plan: where it tried to connect.
    @return: the line.
    """
    server = plan.server
    if isinstance(failure, FailoverExhausted):
        return _failoverText(failure, plan)
    if isinstance(failure, TLSError):
        text = _tlsText(_connectError(failure))
        hint = ""
        if "verify failed" in text:
            hint = " (is the server's authority in --ca PEM?)"
        elif "mismatch" in text.lower():
            hint = " (the server's certificate is for another name)"
        return f"TLS handshake with {server} failed: {text}{hint}"
    if isinstance(failure, neterror.ConnectionRefusedError):
        return f"cannot connect to {server}: connection refused"
    if isinstance(failure, neterror.DNSLookupError):
        return f"cannot connect to {server}: unknown host {plan.url.host!r}"
    if isinstance(failure, neterror.TimeoutError):
        return (
            f"cannot connect to {server}: no AMQP connection within "
            f"{plan.connectTimeout:g} s"
        )
    if isinstance(failure, neterror.ConnectError):
        return f"cannot connect to {server}: {_connectError(failure)}"
    if isinstance(failure, AuthenticationFailed):
        hint = ""
        if plan.url.user is None:
            hint = " (give a user and password in the URL: amqps://USER:PASSWORD@HOST)"
        return f"authentication failed at {server}: {_reason(failure)}{hint}"
    if isinstance(failure, OpenRefused):
        return f"{server} refused to open the connection: {_reason(failure)}"
    if isinstance(failure, AMQPConnectionLost):
        hint = ""
        if not plan.url.tls:
            hint = " (does the server want TLS, amqps://?)"
        return f"the connection to {server} ended before it opened{hint}"
    if isinstance(failure, ProtocolError):
        return f"{server} does not speak AMQP 1.0 as expected: {_reason(failure)}"
    if isinstance(failure, CancelledError):
        return f"gave up connecting to {server}"
    return describeFailure(failure, plan)


def _failoverText(failure: FailoverExhausted, plan: ConnectionPlan) -> str:
    """
    @return: why each server failed, in the order tried.
    """
    servers = plan.servers
    reasons = []
    for index, (endpoint, reason) in enumerate(failure.failures):
        if index < len(servers) and isinstance(reason.value, BaseException):
            one = replace(plan, url=servers[index], failover=())
            reasons.append(describeConnectFailure(reason.value, one))
        else:
            reasons.append(f"{endpoint!r}: {reason.getErrorMessage()}")
    return f"cannot connect to any of {len(servers)} servers: {'; '.join(reasons)}"


def describeFailure(failure: BaseException, plan: ConnectionPlan) -> str:
    """
    Say in one line why a command failed once connected.

    @param failure: the exception.
    @param plan: where the command was connected.
    @return: the line.
    """
    server = plan.server
    if isinstance(failure, CommandFailed):
        return failure.message
    if isinstance(failure, LinkDetached):
        return f"the server detached the link to {plan.address!r}: {_reason(failure)}"
    if isinstance(failure, SessionEnded):
        return f"the server ended the session: {_reason(failure)}"
    if isinstance(failure, ConnectionClosed):
        return f"{server} closed the connection: {_reason(failure)}"
    if isinstance(failure, ProtocolError):
        return f"the connection to {server} failed: {_reason(failure)}"
    if isinstance(failure, (AMQPConnectionLost, neterror.ConnectionLost)):
        return f"lost the connection to {server}"
    if isinstance(failure, neterror.ConnectionDone):
        return f"the connection to {server} was closed"
    if isinstance(failure, AuthenticationFailed):
        return f"authentication failed at {server}: {_reason(failure)}"
    if isinstance(failure, TLSError):
        return f"TLS failed with {server}: {_connectError(failure)}"
    if isinstance(failure, DeliveryNotAccepted):
        return f"not accepted: {outcomeText(failure)}"
    if isinstance(failure, (neterror.TimeoutError, TimeoutError)):
        return f"timed out: {failure}"
    if isinstance(failure, CancelledError):
        return "cancelled"
    return f"{type(failure).__name__}: {failure}"


# The conditions with which a server refuses what a client asks for (an
# address, a link): the session that RabbitMQ ends when a receiver's queue
# does not exist is a refusal, not a broken connection.
_REFUSALS = frozenset(
    [
        "amqp:not-found",
        "amqp:unauthorized-access",
        "amqp:not-allowed",
        "amqp:not-implemented",
        "amqp:precondition-failed",
        "amqp:resource-deleted",
        "amqp:resource-locked",
        "amqp:resource-limit-exceeded",
        "amqp:link:message-size-exceeded",
        "amqp:link:detach-forced",
    ]
)


def exitStatus(failure: BaseException) -> int:
    """
    The exit status for a failure.

    @param failure: why a command failed.
    @return: L{EXIT_AUTHENTICATION} for a refused login;
        L{EXIT_REJECTED} for a message not accepted or a link (an address)
        refused; L{EXIT_CONNECTION} for no connection, or one lost or closed
        by the server; L{EXIT_TIMEOUT} for a request without reply; the
        code of a L{CommandFailed}; else L{EXIT_FAILURE}.
    """
    if isinstance(failure, CommandFailed):
        return failure.code
    if isinstance(failure, AuthenticationFailed):
        return EXIT_AUTHENTICATION
    if isinstance(failure, OpenRefused):
        if failure.condition == "amqp:unauthorized-access":
            return EXIT_AUTHENTICATION
        return EXIT_CONNECTION
    if isinstance(failure, (DeliveryNotAccepted, LinkDetached)):
        return EXIT_REJECTED
    if isinstance(failure, SessionEnded):
        if failure.condition in _REFUSALS:
            return EXIT_REJECTED
        return EXIT_FAILURE
    if isinstance(failure, RequestTimedOut):
        return EXIT_TIMEOUT
    if isinstance(
        failure,
        (
            # TLSError, FailoverExhausted and the connect timeout are
            # ConnectErrors too.
            neterror.ConnectError,
            neterror.DNSLookupError,
            neterror.ConnectionLost,
            neterror.ConnectionDone,
            AMQPConnectionLost,
            ConnectionClosed,
            ProtocolError,
        ),
    ):
        return EXIT_CONNECTION
    if isinstance(failure, TimeoutError):
        return EXIT_TIMEOUT
    return EXIT_FAILURE


def outcomeText(failure: DeliveryNotAccepted) -> str:
    """
    @param failure: a message's outcome other than accepted.
    @return: the outcome's name, with its reason.
    """
    if isinstance(failure, MessageRejected):
        if failure.condition or failure.description:
            return f"rejected ({_reason(failure)})"
        return "rejected"
    if isinstance(failure, MessageReleased):
        return "released"
    if isinstance(failure, MessageModified):
        return (
            f"modified (delivery-failed={failure.deliveryFailed}, "
            f"undeliverable-here={failure.undeliverableHere})"
        )
    return f"not accepted ({_reason(failure)})"


# --- connecting ---------------------------------------------------------------------


@implementer(IStreamClientEndpoint)
class _Noting:
    """
    The endpoint of one server of C{--failover}: it tells the L{Client}
    when it connected.
    """

    def __init__(
        self, endpoint: IStreamClientEndpoint, url: AMQPURL, client: Client
    ) -> None:
        self._endpoint = endpoint
        self._url = url
        self._client = client

    def __repr__(self) -> str:
        return repr(self._endpoint)

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Connect, and note the server on success.
        """

        def connected(protocol: IProtocol) -> IProtocol:
            self._client.server = str(self._url)
            return protocol

        connecting: Deferred[IProtocol] = self._endpoint.connect(protocolFactory)
        return connecting.addCallback(connected)


class Client:
    """
    The connection of one command: opened with L{amqptx.connect}, or kept
    open by an L{amqptx.AMQPClientService} with C{--reconnect}.

    @ivar server: the server the connection is open with (or, before, the
        first to try), as C{amqp://user:***@host:port}.
    """

    def __init__(self, reactor: Any, plan: ConnectionPlan, console: Console) -> None:
        """
        @param reactor: the reactor.
        @param plan: where and how to connect.
        @param console: where the program writes.
        """
        self._reactor = reactor
        self.plan = plan
        self._console = console
        self._connection: AMQPConnection | None = None
        self._service: AMQPClientService | None = None
        self.server = plan.server

    async def open(self, within: float | None = None) -> AMQPConnection:
        """
        Connect; with C{--reconnect}, wait for the first connection.

        @param within: seconds to wait at most (besides C{--connect-timeout},
            which bounds each attempt), or L{None}.
        @return: the open connection.
        @raise CommandFailed: saying why there is none (with L{EXIT_TIMEOUT}
            when C{within} passed first).
        """
        plan = self.plan
        try:
            endpoint = self._endpoint()
            if plan.reconnect:
                from ._reconnect import AMQPClientService

                service = self._service = AMQPClientService(
                    endpoint, clock=self._reactor
                )
                service.startService()
                connecting: Deferred[AMQPConnection] = service.whenConnected()
            else:
                from ._connect import connect

                connecting = connect(self._reactor, endpoint)
        except (TypeError, ValueError) as e:
            raise CommandFailed(str(e), EXIT_USAGE) from None
        if within is not None:
            connecting.addTimeout(within, self._reactor)
        try:
            connection = await connecting
        except TimeoutError:
            raise CommandFailed(
                f"no connection to {plan.server} within {within:g} s", EXIT_TIMEOUT
            ) from None
        except Exception as e:
            raise CommandFailed(
                describeConnectFailure(e, plan), exitStatus(e)
            ) from None
        self._connection = connection
        return connection

    def _endpoint(self) -> IStreamClientEndpoint:
        """
        @return: the endpoint of the URL; with C{--failover}, a failover
            endpoint over it and the others, tried once each (C{--reconnect}
            tries them again, with back-off).
        @raise ValueError: for a bad option value.
        """
        from ._endpoints import AMQPClientEndpoint

        plan = self.plan
        endpoints = [
            AMQPClientEndpoint.fromURL(self._reactor, url, **plan.endpointOptions)
            for url in plan.servers
        ]
        if len(endpoints) == 1:
            return endpoints[0]
        from ._failover import AMQPFailoverEndpoint

        return AMQPFailoverEndpoint(
            self._reactor,
            [
                _Noting(endpoint, url, self)
                for endpoint, url in zip(endpoints, plan.servers, strict=True)
            ],
            policy=False,
        )

    async def current(self) -> AMQPConnection:
        """
        @return: the open connection: with C{--reconnect}, the one open now
            (or the next).
        """
        if self._service is not None:
            try:
                connection: AMQPConnection = await self._service.whenConnected()
            except Exception as e:
                raise CommandFailed(
                    describeConnectFailure(e, self.plan), exitStatus(e)
                ) from None
            return connection
        if self._connection is None:
            return await self.open()
        return self._connection

    async def close(self) -> None:
        """
        Close the connection (after the outcomes of the messages sent, for at
        most a few seconds); never fails.
        """
        service, self._service = self._service, None
        connection, self._connection = self._connection, None
        closing: Deferred[Any]
        if service is not None:
            # Stopping cancels an attempt in progress: not worth a warning.
            self._console.reconnectWarnings = False
            closing = service.stopService()
        elif connection is not None:
            closing = connection.close(settleTimeout=_CLOSE_TIMEOUT)
        else:
            return
        closing.addTimeout(_CLOSE_TIMEOUT * 2, self._reactor)
        try:
            await closing
        except Exception:
            pass


# --- the commands -------------------------------------------------------------------


async def _attached(attaching: Deferred[Any], plan: ConnectionPlan) -> Any:
    """
    Wait for a link to attach.

    @raise CommandFailed: when the server refused it, detaching the link or
        ending its session (as RabbitMQ does for an unknown address), with
        L{EXIT_REJECTED}.
    """
    try:
        return await attaching
    except LinkDetached as e:
        raise CommandFailed(
            f"cannot attach to {plan.address!r}: {_reason(e)}", EXIT_REJECTED
        ) from None
    except SessionEnded as e:
        raise CommandFailed(
            f"cannot attach to {plan.address!r}: the server ended the session: "
            f"{_reason(e)}",
            EXIT_REJECTED,
        ) from None


async def send(reactor: Any, options: SendOptions, console: Console) -> int:
    """
    C{amqptx send}.

    @return: the exit status.
    """
    from ._client import Outcome

    plan, template = options.plan, options.template
    assert plan is not None and template is not None
    count, quiet = int(options["count"]), bool(options["quiet"])
    client = Client(reactor, plan, console)
    tally: dict[str, int] = {}
    broken: list[BaseException] = []

    progress: Progress | None = None

    def settled(outcome: Outcome, number: int) -> None:
        name = "sent" if outcome is Outcome.SETTLED else "accepted"
        tally[name] = tally.get(name, 0) + 1
        if progress is not None:
            progress.done += 1
        if not quiet:
            console.line(f"message {number}: {name}")

    def refused(reason: Failure, number: int) -> None:
        failure = reason.value
        if isinstance(failure, DeliveryNotAccepted):
            text = outcomeText(failure)
            name = text.split(" ")[0]
            tally[name] = tally.get(name, 0) + 1
            if progress is not None:
                progress.done += 1
                progress.notAccepted += 1
            if not quiet:
                console.line(f"message {number}: {text}")
        elif isinstance(failure, BaseException):
            broken.append(failure)

    try:
        connection = await client.open()
        sender = await _attached(
            connection.sender(plan.address, presettled=bool(options["presettled"])),
            plan,
        )
        if count > 1 and not quiet and not options["no-progress"]:
            progress = console.startProgress(reactor, "sent", count)
        sending: list[Deferred[None]] = []
        for number in range(1, count + 1):
            try:
                await sender.whenReady()
            except CancelledError:
                raise
            except Exception as e:
                broken.append(e)
                break
            outcome = sender.send(template.build(number))
            sending.append(
                outcome.addCallbacks(
                    settled,
                    refused,
                    callbackArgs=(number,),
                    errbackArgs=(number,),
                )
                # A CommandFailed of a closed standard output, say.
                .addErrback(lambda reason: broken.append(reason.value))
            )
        await gatherResults(sending)
    finally:
        console.finishProgress()
        await client.close()
    if broken:
        raise broken[0]
    done = sum(tally.values())
    good = tally.get("accepted", 0) + tally.get("sent", 0)
    if quiet:
        parts = ", ".join(f"{n} {name}" for name, n in sorted(tally.items()))
        console.line(f"{_messages(done)}: {parts}")
    if good < count:
        console.error(f"{count - good} of {_messages(count)} not accepted")
        return EXIT_REJECTED
    return EXIT_OK


def _messages(count: int) -> str:
    return f"{count} message" if count == 1 else f"{count} messages"


async def receive(reactor: Any, options: ReceiveOptions, console: Console) -> int:
    """
    C{amqptx receive}.

    @return: the exit status.
    """
    plan = options.plan
    assert plan is not None
    count: int = options["count"]
    timeout: float | None = options["timeout"]
    asJSON, ack = bool(options["json"]), str(options["ack"])
    deadline = None if timeout is None else reactor.seconds() + timeout
    client = Client(reactor, plan, console)
    received = 0
    timedOut = False
    try:
        connection = await client.open(timeout)
        credit = min(count, _RECEIVE_WINDOW) if count else _RECEIVE_WINDOW
        receiver = await _attached(
            connection.receiver(plan.address, credit=credit, limit=count or None),
            plan,
        )
        progress = None
        if count != 1 and not options["no-progress"]:
            progress = console.startProgress(reactor, "received", count or None)
        while not count or received < count:
            getting: Deferred[ReceivedMessage] = receiver.get()
            if deadline is not None:
                getting.addTimeout(max(0.0, deadline - reactor.seconds()), reactor)
            try:
                delivery = await getting
            except TimeoutError:
                timedOut = True
                break
            received += 1
            if progress is not None:
                progress.done += 1
            try:
                console.line(messageLine(delivery.message, asJSON))
            except CommandFailed:
                delivery.release()
                raise
            getattr(delivery, ack)()
    finally:
        console.finishProgress()
        await client.close()
    if timedOut and count and received < count:
        console.error(f"received {received} of {_messages(count)} within {timeout:g} s")
        return EXIT_TIMEOUT
    return EXIT_OK


async def request(reactor: Any, options: RequestOptions, console: Console) -> int:
    """
    C{amqptx request}.

    @return: the exit status.
    """
    plan, template = options.plan, options.template
    assert plan is not None and template is not None
    timeout: float = options["timeout"]
    deadline = reactor.seconds() + timeout
    client = Client(reactor, plan, console)
    try:
        await client.open(timeout)
        connection = await client.current()
        try:
            reply = await connection.request(
                plan.address,
                template.build(1),
                timeout=max(0.001, deadline - reactor.seconds()),
            )
        except (RequestTimedOut, neterror.TimeoutError):
            raise CommandFailed(
                f"no reply from {plan.address!r} within {timeout:g} s", EXIT_TIMEOUT
            ) from None
        except LinkDetached as e:
            raise CommandFailed(
                f"cannot attach to {plan.address!r}: {_reason(e)}", EXIT_REJECTED
            ) from None
        except SessionEnded as e:
            raise CommandFailed(
                f"the server ended the session of the request to {plan.address!r}: "
                f"{_reason(e)}",
                EXIT_REJECTED,
            ) from None
        except DeliveryNotAccepted as e:
            raise CommandFailed(
                f"the request to {plan.address!r} was {outcomeText(e)}",
                EXIT_REJECTED,
            ) from None
        console.line(messageLine(reply, bool(options["json"])))
    finally:
        await client.close()
    return EXIT_OK


async def ping(reactor: Any, options: PingOptions, console: Console) -> int:
    """
    C{amqptx ping}.

    @return: the exit status.
    """
    plan = options.plan
    assert plan is not None
    client = Client(reactor, plan, console)
    try:
        started = reactor.seconds()
        connection = await client.open()
        elapsed = reactor.seconds() - started
        server = client.server
        console.line(f"connected to {server}: open in {elapsed * 1000:.1f} ms")
        for name, value in describeConnection(connection):
            console.line(f"{name}: {value}")
    finally:
        await client.close()
    return EXIT_OK


def describeConnection(connection: AMQPConnection) -> list[tuple[str, str]]:
    """
    What C{ping} prints of an open connection.

    @param connection: the connection.
    @return: C{(name, value)} pairs: TLS, SASL, the server's container-id,
        the properties of its Open (product and version first), its
        capabilities and limits.
    """
    lines: list[tuple[str, str]] = []
    lines.extend(_tlsDescription(connection.transport))
    engine = connection.engine
    if engine is not None:
        mechanism = engine.transport.sasl().mech
        if mechanism:
            user = engine.settings.user
            lines.append(("sasl", f"{mechanism}" + (f" as {user}" if user else "")))
    proton = connection.connection
    lines.append(("container-id", str(proton.remote_container)))
    properties = {
        str(key): value for key, value in dict(proton.remote_properties or {}).items()
    }
    for name in ("product", "version"):
        if name in properties:
            lines.append((name, _show(properties.pop(name))))
    for name in sorted(properties):
        lines.append((name, _show(properties[name])))
    if not proton.remote_properties:
        lines.append(("properties", "(none)"))
    capabilities = proton.remote_offered_capabilities
    if capabilities:
        lines.append(("capabilities", ", ".join(str(c) for c in capabilities)))
    if engine is not None:
        transport = engine.transport
        lines.append(("max-frame-size", str(transport.remote_max_frame_size)))
        if transport.remote_idle_timeout:
            lines.append(("idle-timeout", f"{transport.remote_idle_timeout:g} s"))
    return lines


def _show(value: object) -> str:
    shown = jsonable(value)
    return shown if isinstance(shown, str) else json.dumps(shown)


def _tlsDescription(transport: object) -> list[tuple[str, str]]:
    """
    @param transport: a connection's transport.
    @return: the TLS protocol and cipher and the server certificate's
        subject, when the transport is TLS.
    """
    getHandle = getattr(transport, "getHandle", None)
    if getHandle is None:
        return []
    try:
        handle = getHandle()
        version = handle.get_protocol_version_name()
        cipher = handle.get_cipher_name()
    except Exception:
        return []
    lines = [("tls", f"{version}, {cipher}")]
    try:
        certificate = handle.get_peer_certificate(as_cryptography=True)
    except TypeError:
        certificate = None
    except Exception:
        return lines
    if certificate is not None:
        lines.append(("certificate", certificate.subject.rfc4514_string()))
    return lines


_COMMANDS: dict[str, Callable[[Any, Any, Console], Coroutine[Any, Any, int]]] = {
    "send": send,
    "receive": receive,
    "request": request,
    "ping": ping,
}


# --- running --------------------------------------------------------------------------


async def execute(
    reactor: Any, command: str, options: _CommandOptions, console: Console
) -> int:
    """
    Run a command, and turn every failure into a line on standard error.

    @param reactor: the reactor.
    @param command: the command's name.
    @param options: its parsed options.
    @param console: where to write.
    @return: the exit status.
    """
    plan = options.plan
    assert plan is not None
    try:
        return await _COMMANDS[command](reactor, options, console)
    except CommandFailed as e:
        console.error(e.message)
        return e.code
    except Exception as e:
        console.error(describeFailure(e, plan))
        return exitStatus(e)


def _run(
    reactor: Any, command: str, options: _CommandOptions, console: Console
) -> Deferred[None]:
    """
    The C{main} of C{task.react}: run the command; when the reactor stops
    first (Ctrl-C, SIGTERM), end with L{EXIT_INTERRUPTED}.

    @return: a Deferred that fails with C{SystemExit} and the exit status.
    """
    finished: Deferred[None] = Deferred()

    def end(code: int) -> None:
        if not finished.called:
            finished.errback(SystemExit(code))

    def crashed(reason: Failure) -> None:
        console.error(f"{type(reason.value).__name__}: {reason.getErrorMessage()}")
        end(EXIT_FAILURE)

    work = Deferred.fromCoroutine(execute(reactor, command, options, console))
    work.addCallbacks(end, crashed)

    def interrupted() -> None:
        if not finished.called:
            console.error("interrupted")
            # The command's connection ends with the reactor: not news.
            console.silent = True
            end(EXIT_INTERRUPTED)

    reactor.addSystemEventTrigger("before", "shutdown", interrupted)
    return finished


def main(arguments: Sequence[str] | None = None) -> NoReturn:
    """
    Run C{amqptx} (its console script, and C{python -m amqptx}).

    @param arguments: the arguments, without the program's name; by default
        C{sys.argv[1:]}.
    """
    if arguments is None:
        arguments = sys.argv[1:]
    console = Console(sys.stdout.buffer, sys.stderr)
    try:
        options = parseCommandLine(arguments)
    except usage.UsageError as e:
        command = _commandOf(arguments)
        hint = f"{_PROGRAM} {command} --help" if command else f"{_PROGRAM} --help"
        console.error(f"{e} (see '{hint}')")
        sys.exit(EXIT_USAGE)
    command = options.subCommand
    sub = options.subOptions
    assert command is not None and isinstance(sub, _CommandOptions)
    assert sub.plan is not None
    console.secrets = sub.plan.secrets
    globalLogBeginner.beginLoggingTo(
        [_observer(console, sub.plan.verbose)], redirectStandardIO=False
    )
    from twisted.internet import task

    task.react(_run, (command, sub, console))


def _commandOf(arguments: Sequence[str]) -> str | None:
    """
    @return: the command named in the arguments, if any, for a hint.
    """
    for argument in arguments:
        if argument in _COMMANDS:
            return argument
        if not argument.startswith("-"):
            return None
    return None
